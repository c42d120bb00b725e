"""The container format: exact round trips, random access, and clear errors on damaged files."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import medcodec
from medcodec.cli import main
from medcodec.container import MAGIC, open_bytes, pack
from medcodec.container.schema import layout_crc32
from medcodec.errors import CorruptStreamError, MedcodecError
from medcodec.image import MedImage
from medcodec.pipeline import decompress, open_container

from .conftest import random_image, smooth_image

SHAPES = [(1, 1), (1, 17), (17, 1), (3, 5), (513, 511)]


@pytest.mark.parametrize("bits", range(1, 17))
@pytest.mark.parametrize("signed", [False, True])
def test_lossless_round_trip_every_bit_depth(bits: int, signed: bool) -> None:
    for shape in SHAPES[:4]:
        pixels = random_image(shape, bits, signed, seed=bits)
        image = MedImage(pixels, bits_stored=bits)
        back = medcodec.decompress(medcodec.compress(image))
        assert back.pixels.dtype == pixels.dtype
        np.testing.assert_array_equal(back.pixels[0], pixels)
        assert back.bits_stored == bits


@pytest.mark.parametrize("bits,signed", [(8, False), (12, False), (16, True), (16, False)])
def test_lossless_large_odd_size(bits: int, signed: bool) -> None:
    pixels = random_image((513, 511), bits, signed, seed=3)
    back = medcodec.decompress(medcodec.compress(MedImage(pixels, bits_stored=bits)))
    np.testing.assert_array_equal(back.pixels[0], pixels)


def test_constant_and_extreme_images() -> None:
    for pixels in (
        np.zeros((7, 9), np.uint16),
        np.full((4, 4), 65535, np.uint16),
        np.full((4, 4), -32768, np.int16),
        np.array([[-32768, 32767]], np.int16),
        np.array([[0, 65535]], np.uint16),
    ):
        back = medcodec.decompress(medcodec.compress(pixels))
        np.testing.assert_array_equal(back.pixels[0], pixels)


def test_32_bit_data_uses_deflate_and_round_trips() -> None:
    pixels = random_image((9, 11), 32, True, seed=1)
    data = medcodec.compress(MedImage(pixels, bits_stored=32))
    assert open_container(data).header["codec"]["name"] == "deflate"
    np.testing.assert_array_equal(medcodec.decompress(data).pixels[0], pixels)


def test_jpegls_refuses_32_bit_data_clearly() -> None:
    pixels = random_image((4, 4), 32, False)
    with pytest.raises(MedcodecError, match="at most 16 bits"):
        medcodec.compress(MedImage(pixels, bits_stored=32), codec="jpegls")


def test_volume_round_trip_and_random_access() -> None:
    volume = np.stack([smooth_image((33, 47), 12, seed=i) for i in range(6)]).astype(np.int16)
    volume -= 1024
    image = MedImage(volume, bits_stored=12, rescale_intercept=-1024.0, modality="CT",
                     slice_positions=np.array([[0, 0, z] for z in range(6)], float),
                     pixel_spacing=(0.7, 0.7), orientation=(1, 0, 0, 0, 1, 0))
    data = medcodec.compress(image)
    back = medcodec.decompress(data)
    np.testing.assert_array_equal(back.pixels, volume)
    assert back.pixel_spacing == (0.7, 0.7)
    assert back.rescale_intercept == -1024.0
    np.testing.assert_array_equal(back.slice_positions, image.slice_positions)
    part = medcodec.decompress(data, slices=[4, 1])
    np.testing.assert_array_equal(part.pixels, volume[[4, 1]])
    np.testing.assert_array_equal(part.slice_positions[:, 2], [4, 1])


def test_slice_decodes_without_reading_other_chunks() -> None:
    volume = np.stack([smooth_image((16, 16), 12, seed=i) for i in range(3)])
    data = bytearray(medcodec.compress(volume))
    container = open_container(bytes(data))
    entry0 = container.reader.entries[0]
    # destroy slice 0's bytes: slice 2 must still decode, slice 0 must fail loudly
    data[entry0.offset : entry0.offset + entry0.length] = b"\0" * entry0.length
    damaged = open_container(bytes(data))
    np.testing.assert_array_equal(damaged.decode_slice(2), volume[2])
    with pytest.raises(CorruptStreamError, match="chunk 0 checksum"):
        damaged.decode_slice(0)


@pytest.mark.parametrize("max_error", [1, 2, 4, 8])
def test_near_lossless_bound(max_error: int) -> None:
    pixels = smooth_image((64, 80), 12, seed=max_error)
    data = medcodec.compress(pixels, mode="near-lossless", max_error=max_error)
    back = medcodec.decompress(data)
    err = np.abs(back.pixels[0].astype(int) - pixels.astype(int)).max()
    assert 0 < err <= max_error
    assert all(s["max_abs_err"] == err for s in open_container(data).header["slices"])
    assert back.meta["lossy_compression"]["dicom_method"] == "ISO_14495_1"


def test_near_lossless_large_bound_on_narrow_data_is_not_capped() -> None:
    pixels = random_image((20, 20), 4, False)
    back = medcodec.decompress(medcodec.compress(pixels, mode="near-lossless", max_error=9))
    assert np.abs(back.pixels[0].astype(int) - pixels.astype(int)).max() <= 9


def test_header_is_json_and_names_codec() -> None:
    data = medcodec.compress(np.arange(12, dtype=np.uint16).reshape(3, 4))
    assert data.startswith(MAGIC)
    (length,) = struct.unpack_from("<I", data, 12)
    header = json.loads(data[20 : 20 + length])
    assert header["codec"]["name"] == "jpegls"
    assert header["codec"]["mode"] == "lossless"
    assert header["image"]["dtype"] == "uint16"


# ---------------------------------------------------------------------------------------------
# damaged and hostile input


@pytest.fixture(scope="module")
def sample_stream() -> bytes:
    volume = np.stack([smooth_image((24, 31), 12, seed=i) for i in range(3)])
    return medcodec.compress(MedImage(volume, bits_stored=12, attachments={"note": b"x" * 50}))


def test_every_truncation_is_a_clear_error(sample_stream: bytes) -> None:
    for cut in list(range(0, 64)) + list(range(64, len(sample_stream), 97)):
        with pytest.raises(CorruptStreamError):
            decompress(sample_stream[:cut])


def test_wrong_magic(sample_stream: bytes) -> None:
    with pytest.raises(CorruptStreamError, match="magic"):
        decompress(b"GIF89a" + sample_stream[6:])


def test_unknown_version(sample_stream: bytes) -> None:
    data = bytearray(sample_stream)
    data[8:10] = struct.pack("<H", 99)
    with pytest.raises(CorruptStreamError, match="version 99"):
        decompress(bytes(data))


def test_every_single_bit_flip_in_header_is_caught(sample_stream: bytes) -> None:
    (length,) = struct.unpack_from("<I", sample_stream, 12)
    for pos in range(12, 20 + length, 7):
        data = bytearray(sample_stream)
        data[pos] ^= 0x10
        with pytest.raises(CorruptStreamError):
            decompress(bytes(data))


def test_bit_flips_in_chunks_are_caught(sample_stream: bytes) -> None:
    container = open_container(sample_stream)
    for entry in container.reader.entries:
        for pos in range(entry.offset, entry.offset + entry.length, max(1, entry.length // 5)):
            data = bytearray(sample_stream)
            data[pos] ^= 0x01
            with pytest.raises(CorruptStreamError, match="checksum"):
                decompress(bytes(data))


def _forge(header_patch: dict, chunks: list[bytes] | None = None) -> bytes:
    """A container with a valid CRC but a hostile header."""
    header = {
        "codec": {"name": "jpegls", "mode": "lossless"},
        "image": {"slices": 1, "rows": 4, "cols": 4, "dtype": "uint16"},
        "slices": [{"shift": 0, "bits": 12, "max_abs_err": 0, "crc32": 0}],
    }
    for key, value in header_patch.items():
        section, _, field = key.partition(".")
        if field:
            header[section][field] = value
        else:
            header[section] = value
    return pack(header, chunks if chunks is not None else [b"\xff\xd8"])


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"image.rows": 10**9}, "rows"),
        ({"image.cols": -1}, "cols"),
        ({"image.slices": 2**40}, "slices"),
        ({"image.rows": 60000, "image.cols": 60000}, "larger than allowed"),
        ({"image.dtype": "float64"}, "dtype"),
        ({"image.dtype": "O"}, "dtype"),
        ({"slices": []}, "slice table"),
        ({"slices": [{"shift": 0, "bits": 99, "max_abs_err": 0, "crc32": 0}]}, "bit depth"),
        ({"codec": {"name": "no-such-codec", "mode": "lossless"}}, "unknown codec"),
        ({"codec": "jpegls"}, "codec"),
    ],
)
def test_absurd_headers_fail_before_allocation(patch: dict, message: str) -> None:
    with pytest.raises(MedcodecError, match=message):
        decompress(_forge(patch))


def test_chunk_table_pointing_outside_the_file() -> None:
    data = bytearray(_forge({}))
    (length,) = struct.unpack_from("<I", data, 12)
    table = 20 + length
    struct.pack_into("<QQI", data, table, 10, 2**40, 0)
    struct.pack_into("<I", data, table + 20, zlib.crc32(bytes(data[table : table + 20])))
    with pytest.raises(CorruptStreamError, match="outside the file"):
        open_bytes(bytes(data))


def test_absurd_chunk_count() -> None:
    data = _forge({})
    (length,) = struct.unpack_from("<I", data, 12)
    header = json.loads(data[20 : 20 + length])
    header["n_chunks"] = 2**31
    body = json.dumps(header).encode()
    forged = MAGIC + struct.pack("<HHII", 1, 0, len(body), zlib.crc32(body)) + body
    with pytest.raises(CorruptStreamError, match="chunk count"):
        open_bytes(forged)


def test_wrong_decoder_output_is_caught_by_pixel_checksum() -> None:
    pixels = smooth_image((8, 8), 12)
    data = medcodec.compress(pixels)
    container = open_container(data)
    header = dict(container.header)
    header["slices"] = [dict(header["slices"][0], crc32=123)]
    chunks = [container.reader.read_chunk(i) for i in range(len(container.reader.entries))]
    with pytest.raises(CorruptStreamError, match="checksum mismatch"):
        decompress(pack(header, chunks))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_decoder_never_crashes(data: st.DataObject) -> None:
    """Random damage to a valid stream: a MedcodecError or a correct image, nothing else."""
    stream = data.draw(st.sampled_from(_FUZZ_SEEDS))
    mutated = bytearray(stream)
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "cut", "insert", "set"]))
        pos = data.draw(st.integers(0, max(0, len(mutated) - 1)))
        if kind == "flip" and mutated:
            mutated[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "cut":
            del mutated[pos:]
        elif kind == "insert":
            mutated[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
        elif mutated:
            mutated[pos] = data.draw(st.integers(0, 255))
    try:
        image = decompress(bytes(mutated))
    except MedcodecError:
        return
    original = decompress(stream)
    np.testing.assert_array_equal(image.pixels, original.pixels)


@given(st.binary(max_size=300))
@settings(max_examples=200, deadline=None)
def test_fuzz_random_bytes(blob: bytes) -> None:
    with pytest.raises(MedcodecError):
        decompress(MAGIC + blob)


_FUZZ_SEEDS = [
    medcodec.compress(smooth_image((9, 13), 12, seed=5)),
    medcodec.compress(smooth_image((9, 13), 12, seed=6), mode="near-lossless", max_error=2),
    medcodec.compress(MedImage(random_image((2, 5, 3), 16, True), bits_stored=16,
                               attachments={"dicom/0": b"abc"})),
    medcodec.compress(MedImage(random_image((3, 3), 32, False), bits_stored=32)),
]


# ---------------------------------------------------------------------------------------------
# structure-aware fuzzing: edit header fields (types, values, nesting), recompute every CRC

_HEADER_SEEDS = [
    _FUZZ_SEEDS[0],
    _FUZZ_SEEDS[2],
    _FUZZ_SEEDS[3],
    medcodec.compress(MedImage(
        np.stack([smooth_image((6, 7), 12, seed=s) for s in range(3)]).astype(np.int16) - 1024,
        bits_stored=12, rescale_intercept=-1024.0, modality="CT", pixel_spacing=(0.7, 0.7),
        orientation=(1, 0, 0, 0, 1, 0), slice_positions=[[0, 0, z] for z in range(3)],
        meta={"dicom_layout": "files", "dicom_filenames": ["a.dcm", "b.dcm", "c.dcm"],
              "itk_spacing": [1.0, 1.0, 2.0], "itk_metadata": {"Comment": "x"}},
        attachments={"dicom/0": b"a", "dicom/1": b"b", "dicom/2": b"c"})),
    medcodec.compress(np.stack([smooth_image((6, 7), 10, seed=s) for s in range(2)]),
                      codec="medcodec", inter_slice=2),
]

_SPECIAL = st.sampled_from([2**63, -(2**63), 2**64, 2**32, 2**31, -1, 0, 1, 2, 16, 17, 65536,
                            70000, 1 << 28, "int16", "uint8", "float64", "O", "../x", "/abs",
                            "", "jpegls", "deflate", "medcodec", "lossy", "near-lossless",
                            "MONOCHROME1", "files", "multiframe", "MCP", "0" * 64])
_JSON = st.recursive(
    st.none() | st.booleans() | _SPECIAL | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=8)
_RAW = ["[" * 3000 + "]" * 3000, "9" * 5000, "NaN", "-Infinity", "1e999", '"\\ud800"',
        '{"a":' * 600 + "1" + "}" * 600]


def _nodes(value):
    """Every (parent, key) position in a JSON tree."""
    out = []
    if isinstance(value, dict):
        for key, item in value.items():
            out.append((value, key))
            out.extend(_nodes(item))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out.append((value, index))
            out.extend(_nodes(item))
    return out


def _edit_header(data: st.DataObject, header: dict) -> str | None:
    """Apply 1-3 random edits; returns a raw JSON value to splice in, if one was drawn."""
    raw = None
    for _ in range(data.draw(st.integers(1, 3))):
        nodes = _nodes(header)
        parent, key = data.draw(st.sampled_from(nodes))
        kind = data.draw(st.sampled_from(["replace", "replace", "delete", "add", "swap", "raw"]))
        if kind == "replace":
            parent[key] = data.draw(_JSON)
        elif kind == "delete":
            del parent[key]
        elif kind == "add":
            target = parent[key]
            if isinstance(target, dict):
                target[data.draw(st.text(max_size=8))] = data.draw(_JSON)
            elif isinstance(target, list):
                target.append(copy.deepcopy(target[0]) if target else data.draw(_JSON))
            else:
                parent[key] = [target, target]
        elif kind == "swap":
            other_parent, other_key = data.draw(st.sampled_from(nodes))
            parent[key] = copy.deepcopy(other_parent[other_key])
        else:
            parent[key] = "__RAW__"
            raw = data.draw(st.sampled_from(_RAW))
    return raw


def _fuzz_container(data: st.DataObject) -> bytes:
    stream = data.draw(st.sampled_from(_HEADER_SEEDS))
    container = open_container(stream)
    header = copy.deepcopy(container.header)
    chunks = [container.reader.read_chunk(i) for i in range(len(container.reader.entries))]
    raw = _edit_header(data, header)
    img = header.get("image")
    if data.draw(st.booleans()) and isinstance(img, dict):  # reach past the layout check
        with contextlib.suppress(Exception):
            img["layout_crc32"] = layout_crc32(img["dtype"], img["slices"], img["rows"],
                                               img["cols"])
    if data.draw(st.integers(0, 5)) == 0 and chunks:
        chunks = data.draw(st.sampled_from([chunks[:-1], chunks + chunks[-1:], chunks[::-1]]))
    if raw is None:
        return pack(header, chunks)
    # the raw JSON text in place of the marker; chunk offsets and CRCs computed for it
    header["n_chunks"] = len(chunks)
    text = json.dumps(header, sort_keys=True).replace('"__RAW__"', raw, 1).encode()
    start = 20 + len(text) + 20 * len(chunks) + 4
    table = b""
    for chunk in chunks:
        table += struct.pack("<QQI", start, len(chunk), zlib.crc32(chunk))
        start += len(chunk)
    return b"".join([MAGIC, struct.pack("<HHII", 1, 0, len(text), zlib.crc32(text)), text,
                     table, struct.pack("<I", zlib.crc32(table)), *chunks])


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_fuzz_header_fields(data: st.DataObject) -> None:
    """Edited header fields with every CRC recomputed: a MedcodecError or an image, nothing
    else; through the command line, one clean error line and no output, or a complete output."""
    forged = _fuzz_container(data)
    with contextlib.suppress(MedcodecError):
        decompress(forged)
    suffix = data.draw(st.sampled_from([".npy", ".nii", ".tiff", ".mha"]))
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "in.mdcx", Path(folder) / f"out{suffix}"
        source.write_bytes(forged)
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["decompress", "-q", str(source), "-o", str(target)])
        assert "internal error" not in err.getvalue(), err.getvalue()
        if code:
            assert err.getvalue().count("\n") == 1, err.getvalue()
            assert sorted(p.name for p in Path(folder).iterdir()) == ["in.mdcx"]
        else:
            assert sorted(p.name for p in Path(folder).iterdir()) == ["in.mdcx", target.name]


@pytest.mark.parametrize("codec", ["jpeg2000", "auto"])
def test_lossy_target_bpp_is_met_per_slice(codec: str) -> None:
    volume = np.stack([smooth_image((96, 80), 12, seed=s) for s in range(2)])
    data = medcodec.compress(volume, codec=codec, mode="lossy", bpp=1.5)
    container = open_container(data)
    assert container.header["codec"]["name"] == "jpeg2000"
    assert container.header["codec"]["target_bpp"] == 1.5
    for index, entry in enumerate(container.reader.entries[:2]):
        # JPEG 2000 hits rates in steps on a small image: within 10% of the target
        assert 8 * entry.length / (96 * 80) == pytest.approx(1.5, rel=0.1)
        assert "quality" in container.header["slices"][index]
    back = medcodec.decompress(data)
    assert back.meta["lossy_compression"]["dicom_method"] == "ISO_15444_1"
    assert 0 < np.abs(back.pixels.astype(int) - volume.astype(int)).max() < 200


def test_bpp_needs_lossy_mode() -> None:
    with pytest.raises(MedcodecError, match="--mode lossy"):
        medcodec.compress(np.zeros((8, 8), np.uint16), bpp=1.0)
    with pytest.raises(MedcodecError, match="no quality knob|no lossy mode"):
        medcodec.compress(np.zeros((8, 8), np.uint16), codec="jpegls", mode="lossy", bpp=1.0)
