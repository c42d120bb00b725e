"""Hostile containers and inputs: clean one-line errors, bounded resources, nothing written
outside the output folder, and no broken file left behind by a failed compress.

Every forged container is built here from a valid one, with its CRCs recomputed (``pack``),
so each test reaches the check it is about instead of stopping at a checksum.
"""

from __future__ import annotations

import contextlib
import copy
import json
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import medcodec
from medcodec import weights
from medcodec.cli import main
from medcodec.container import MAGIC, pack, pack_attachments
from medcodec.container.schema import (
    ATTACHMENT_BASE_BYTES,
    ATTACHMENT_BYTES_PER_SLICE,
    HeaderError,
    attachment_limit,
    layout_crc32,
)
from medcodec.errors import (
    CodecUnavailableError,
    CorruptStreamError,
    MedcodecError,
    OutputError,
    SettingError,
    UnsupportedError,
)
from medcodec.image import MedImage
from medcodec.models.zoo import CAUSAL
from medcodec.pipeline import decompress, open_container

from .conftest import smooth_image


def _parts(data: bytes) -> tuple[dict[str, Any], list[bytes]]:
    container = open_container(data)
    chunks = [container.reader.read_chunk(i) for i in range(len(container.reader.entries))]
    return copy.deepcopy(container.header), chunks


def forge(data: bytes, mutate: Callable[[dict[str, Any]], None], fix_layout: bool = True,
          chunks: list[bytes] | None = None) -> bytes:
    """``data`` with its header edited by ``mutate``, every CRC recomputed."""
    header, own = _parts(data)
    mutate(header)
    img = header.get("image")
    if fix_layout and isinstance(img, dict) and "layout_crc32" in img:
        with contextlib.suppress(KeyError, TypeError, UnicodeEncodeError):
            img["layout_crc32"] = layout_crc32(img["dtype"], img["slices"], img["rows"],
                                               img["cols"])
    return pack(header, own if chunks is None else chunks)


def raw_container(header_text: str, tail: bytes = b"") -> bytes:
    """A container whose header is exactly ``header_text`` (CRC correct), no chunk table."""
    body = header_text.encode()
    return (MAGIC + struct.pack("<HHII", 1, 0, len(body), zlib.crc32(body)) + body
            + struct.pack("<I", zlib.crc32(b"")) + tail)


@pytest.fixture(scope="module")
def volume_stream() -> bytes:
    volume = np.stack([smooth_image((8, 9), 12, seed=s) for s in range(3)])
    image = MedImage(volume, bits_stored=12, slice_positions=[[0, 0, z] for z in range(3)],
                     pixel_spacing=(0.5, 0.5), orientation=(1, 0, 0, 0, 1, 0),
                     attachments={"note": b"side data"})
    return medcodec.compress(image)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(header: dict[str, Any]) -> None:
        node: Any = header
        keys = path.split(".")
        for key in keys[:-1]:
            node = node[int(key)] if isinstance(node, list) else node[key]
        last = keys[-1]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return mutate


# ---------------------------------------------------------------------------------------------
# 2. forged headers: one clean error naming the field


@pytest.mark.parametrize("path, value, field", [
    ("slices.0.shift", 2**63, "slices[0].shift"),
    ("slices.1.shift", -(2**63), "slices[1].shift"),
    ("slices.2.shift", 70000, "slices[2].shift"),
    ("slices.0.crc32", 2**40, "slices[0].crc32"),
    ("slices.0.bits", "12", "slices[0].bits"),
    ("image.slice_positions", "abc", "image.slice_positions"),
    ("image.slice_positions", [[0, 0, 0]], "image.slice_positions"),
    ("image.slice_positions", [[0, 0], [1, 1], [2, 2]], "image.slice_positions[0]"),
    ("image.slice_positions", [[0, 0, 0], [0, 0, "x"], [0, 0, 2]], "image.slice_positions[1][2]"),
    ("image.meta", [1, 2], "image.meta"),
    ("image.meta", "text", "image.meta"),
    ("image.meta", {"dicom_filenames": 5}, "image.meta.dicom_filenames"),
    ("image.meta", {"itk_metadata": {"a": 5}}, "image.meta.itk_metadata.a"),
    ("image.meta", {"nifti_affine": [[1, 0, 0]]}, "image.meta.nifti_affine"),
    ("image.rescale_slope", "abc", "image.rescale_slope"),
    ("image.rescale_slope", [1.0], "image.rescale_slope"),
    ("image.rescale_intercept", {}, "image.rescale_intercept"),
    ("image.rescale_intercept", float("inf"), "image.rescale_intercept"),
    ("image.bits_stored", "12", "image.bits_stored"),
    ("image.bits_stored", 99, "image.bits_stored"),
    ("image.bits_stored", True, "image.bits_stored"),
    ("image.pixel_spacing", "ab", "image.pixel_spacing"),
    ("image.orientation", 5, "image.orientation"),
    ("image.photometric", "RGB", "image.photometric"),
    ("image.modality", 5, "image.modality"),
    ("image.value_range", [5, 1], "image.value_range[1]"),
    ("image.value_range", [0, 70000], "image.value_range[1]"),
    ("image.value_range", "x", "image.value_range"),
    ("original_bytes", "x", "original_bytes"),
    ("original_bytes", [1], "original_bytes"),
    ("original_bytes", 12345, "original_bytes"),
    ("codec.mode", "fast", "codec.mode"),
    ("codec.name", "../../jpegls", "codec.name"),
    ("codec.weights_sha256", "abc", "codec.weights_sha256"),
    ("attachments", [1], "attachments"),
    ("attachments", {"chunk": 0, "names": ["note"]}, "attachments.chunk"),
    ("attachments", {"chunk": 3, "names": ["note", "note"]}, "attachments.names"),
    ("inter_slice", 0, "inter_slice"),
    ("inter_slice", 2, "inter_slice"),  # jpegls takes no previous slice
])
def test_forged_field_is_a_clean_error_naming_it(volume_stream: bytes, path: str, value: Any,
                                                 field: str) -> None:
    with pytest.raises(HeaderError) as caught:
        decompress(forge(volume_stream, _set(path, value)))
    message = str(caught.value)
    assert message.startswith("not a valid medcodec file: ")
    assert field in message and "\n" not in message


def test_deep_json_and_long_integers_are_clean_errors(volume_stream: bytes) -> None:
    header, _ = _parts(volume_stream)
    text = json.dumps(header, sort_keys=True)
    for splice, needle in (("[" * 5000 + "]" * 5000, "nested too deeply"),
                           ("9" * 5000, "cannot be read")):
        forged = raw_container(text[:-1] + ',"zz":' + splice + "}")
        with pytest.raises(CorruptStreamError, match=needle):
            decompress(forged)
    # nesting the parser survives is still bounded where medcodec uses it (image.meta)
    nested: Any = 1
    for _ in range(200):
        nested = [nested]
    with pytest.raises(HeaderError, match="nested more than"):
        decompress(forge(volume_stream, _set("image.meta", {"x": nested})))


def test_inter_slice_on_a_codec_without_context_cli(volume_stream: bytes, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "inter.mdcx"
    path.write_bytes(forge(volume_stream, _set("inter_slice", 2)))
    assert main(["decompress", "-q", str(path), "-o", str(tmp_path / "o.npy")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"medcodec: error: {path}: not a valid medcodec file: inter_slice")
    assert "internal error" not in err and not (tmp_path / "o.npy").exists()


# ---------------------------------------------------------------------------------------------
# 3. resource limits


def test_huge_shape_on_tiny_chunks_is_refused_before_allocating(volume_stream: bytes) -> None:
    def huge(header: dict[str, Any]) -> None:
        header["image"].update(rows=16384, cols=16384, slices=3)
        header["original_bytes"] = 3 * 16384 * 16384 * 2
    start = time.perf_counter()
    with pytest.raises(HeaderError, match="cannot hold a 16384x16384 slice"):
        decompress(forge(volume_stream, huge))
    assert time.perf_counter() - start < 1.0


def test_decompression_bomb_ratio_is_refused() -> None:
    """20 constant 16384x16384 slices in LERC are a few KB: refused by the expansion limit."""
    blank = medcodec.compress(np.zeros((2, 2), np.uint16), codec="lerc")

    def huge(header: dict[str, Any]) -> None:
        header["image"].update(rows=16384, cols=16384, slices=20)
        header["slices"] = header["slices"][:1] * 20
        header["original_bytes"] = 20 * 16384 * 16384 * 2
    _, chunks = _parts(blank)
    with pytest.raises(HeaderError, match="decompression bomb"):
        decompress(forge(blank, huge, chunks=chunks * 20))


def test_attachment_bomb_stops_at_the_cap(volume_stream: bytes) -> None:
    limit = attachment_limit(3)
    assert limit == ATTACHMENT_BASE_BYTES + 3 * ATTACHMENT_BYTES_PER_SLICE < 256 * 2**20
    bomb = zlib.compress(b"\0" * (limit + 2**20), 9)
    _, chunks = _parts(volume_stream)
    forged = forge(volume_stream, lambda h: None, chunks=[*chunks[:3], bomb])
    start = time.perf_counter()
    with pytest.raises(CorruptStreamError, match="more than"):
        decompress(forged)
    assert time.perf_counter() - start < 2.0
    # many empty records within the cap: refused at the first one the header does not name
    tiny = zlib.compress(b"\0" * 6 * 100_000, 9)
    with pytest.raises(CorruptStreamError, match="does not list"):
        decompress(forge(volume_stream, lambda h: None, chunks=[*chunks[:3], tiny]))


def test_attachment_records_must_match_the_header(volume_stream: bytes) -> None:
    _, chunks = _parts(volume_stream)
    for blob, needle in ((pack_attachments({"note": b"x", "more": b"y"}), "more records"),
                         (pack_attachments({"other": b"x"}), "does not list"),
                         (pack_attachments({}), "holds 0 records"),
                         (pack_attachments({"note": b"x"})[:-3], "truncated")):
        with pytest.raises(CorruptStreamError, match=needle):
            decompress(forge(volume_stream, lambda h: None, chunks=[*chunks[:3], blob]))


# ---------------------------------------------------------------------------------------------
# 4. compress never leaves a container medcodec cannot read


def _compress_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["compress", "-q", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("medcodec: error: ") and "\n" not in err, err
    return err


@pytest.mark.parametrize("codec", ["auto", "deflate", "lerc", "jpeg2000", "htj2k", "jpegxl",
                                   "medcodec"])
def test_compress_refuses_what_the_reader_would_refuse(tmp_path: Path, codec: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "tall.npy"
    np.save(source, np.arange(70000, dtype=np.uint16).reshape(70000, 1))
    out = tmp_path / "tall.mdcx"
    err = _compress_cli(tmp_path, capsys, str(source), "-o", str(out), "--codec", codec)
    assert str(source) in err and "image.rows = 70000" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tall.npy"]


def test_oversized_slice_is_refused_before_coding() -> None:
    pixels = np.zeros((16400, 16400), np.uint8)  # calloc'd: no page is touched
    start = time.perf_counter()
    with pytest.raises(UnsupportedError, match="larger than allowed"):
        medcodec.compress(pixels)
    assert time.perf_counter() - start < 2.0


def test_empty_array_and_unwritable_output_are_clean(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.npy"
    np.save(empty, np.zeros((0, 5), np.uint16))
    err = _compress_cli(tmp_path, capsys, str(empty), "-o", str(tmp_path / "e.mdcx"))
    assert "empty.npy" in err and "empty" in err
    small = tmp_path / "small.npy"
    np.save(small, np.arange(64, dtype=np.uint16).reshape(8, 8))
    err = _compress_cli(tmp_path, capsys, str(small), "-o", "/proc/medcodec-test.mdcx")
    assert "/proc/medcodec-test.mdcx" in err and "cannot write" in err
    err = _compress_cli(tmp_path, capsys, str(small), "-o", str(tmp_path / "no" / "x.mdcx"))
    assert "does not exist" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.npy", "small.npy"]


def test_codec_side_limit_is_checked_before_coding(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    wide = tmp_path / "wide.npy"
    np.save(wide, np.zeros((2, 65536), np.uint16))
    err = _compress_cli(tmp_path, capsys, str(wide), "-o", str(tmp_path / "w.mdcx"))
    assert "wide.npy" in err and "65535 pixels per side" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wide.npy"]


def test_a_failure_while_coding_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "v.npy"
    np.save(source, np.stack([smooth_image((16, 16), 12, seed=s) for s in range(4)]))
    from medcodec.codecs.jpegls import JpegLsCodec

    real, calls = JpegLsCodec.encode, []

    def flaky(self: Any, array: np.ndarray, bits: int, spec: Any) -> bytes:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("library failure on the third slice")
        return real(self, array, bits, spec)

    monkeypatch.setattr(JpegLsCodec, "encode", flaky)
    err = _compress_cli(tmp_path, capsys, str(source), "-o", str(tmp_path / "v.mdcx"))
    assert "v.npy" in err and "library failure" in err and "internal error" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.npy"]


def test_side_data_beyond_the_reader_cap_is_refused_by_the_writer() -> None:
    big = {"dicom/0": b"\0" * (attachment_limit(1) + 1)}
    with pytest.raises(UnsupportedError, match="side data"):
        medcodec.compress(MedImage(np.zeros((4, 4), np.uint16), bits_stored=12,
                                   attachments=big))


def test_writer_refuses_header_facts_the_reader_would_refuse() -> None:
    image = MedImage(np.zeros((2, 4, 4), np.uint16), bits_stored=12,
                     slice_positions=[[0, 0, 0]] * 3)  # three positions for two slices
    with pytest.raises(UnsupportedError, match="image.slice_positions"):
        medcodec.compress(image)


# ---------------------------------------------------------------------------------------------
# 5. integrity


def test_dtype_edit_is_caught(volume_stream: bytes) -> None:
    forged = forge(volume_stream, _set("image.dtype", "int16"), fix_layout=False)
    with pytest.raises(HeaderError, match="layout_crc32"):
        decompress(forged)


def test_old_streams_without_the_new_fields_still_decode(volume_stream: bytes) -> None:
    def strip(header: dict[str, Any]) -> None:
        del header["image"]["layout_crc32"]
        header["codec"]["weights_sha256"] = None
    back = decompress(forge(volume_stream, strip))
    np.testing.assert_array_equal(back.pixels, decompress(volume_stream).pixels)


@pytest.fixture(scope="module")
def learned_stream() -> bytes:
    return medcodec.compress(smooth_image((8, 8), 12, seed=3), codec="medcodec")


def test_weights_sha256_is_filled_and_checked(learned_stream: bytes) -> None:
    digests = open_container(learned_stream).header["codec"]["weights_sha256"]
    assert digests == {"MCL": weights.sha256(CAUSAL.default)}
    other = "0" * 64
    with pytest.raises(CorruptStreamError, match="edited or damaged"):
        decompress(forge(learned_stream, _set("codec.weights_sha256", {"MCL": other})))
    # same 4-byte id, different full digest: the expected and the found weights are named
    near = digests["MCL"][:8] + "0" * 56
    with pytest.raises(CodecUnavailableError) as caught:
        decompress(forge(learned_stream, _set("codec.weights_sha256", {"MCL": near})))
    assert near in str(caught.value) and digests["MCL"] in str(caught.value)
    with pytest.raises(CorruptStreamError, match="names no weights for MCL"):
        decompress(forge(learned_stream, _set("codec.weights_sha256", {"MCW": near})))


def test_bad_thread_count_is_blamed_on_the_variable(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from medcodec.models.threads import thread_count

    for value in ("abc", "0", "-2", "1e3"):
        monkeypatch.setenv("MEDCODEC_THREADS", value)
        with pytest.raises(SettingError, match="MEDCODEC_THREADS"):
            thread_count()
    monkeypatch.setenv("MEDCODEC_THREADS", "abc")
    path = tmp_path / "x.mdcx"
    path.write_bytes(medcodec.compress(np.zeros((4, 4), np.uint16)))
    assert main(["decompress", "-q", str(path), "-o", str(tmp_path / "x.npy")]) == 2
    err = capsys.readouterr().err
    assert "MEDCODEC_THREADS" in err and "does not decode" not in err
    monkeypatch.setenv("MEDCODEC_THREADS", " 3 ")
    assert thread_count() == 3


# ---------------------------------------------------------------------------------------------
# 1. names from a file are data, never paths


def _files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("names", [
    ["../escape.dcm", "b.dcm", "c.dcm"],
    ["/ABSOLUTE/victim.dcm", "b.dcm", "c.dcm"],
    ["same.dcm", "same.dcm", "same.dcm"],
    ["sub/x.dcm", "", "5"],
])
def test_transcode_writes_only_inside_its_folder(tmp_path: Path, names: list[str]) -> None:
    from medcodec.transcode import TranscodeOptions, transcode

    victim = tmp_path / "victim.dcm"
    victim.write_bytes(b"precious")
    names = [n.replace("/ABSOLUTE/victim.dcm", str(victim)) for n in names]
    volume = np.stack([smooth_image((8, 8), 12, seed=s) for s in range(3)])
    image = MedImage(volume, bits_stored=12, modality="CT",
                     meta={"dicom_layout": "files", "dicom_filenames": names})
    source = tmp_path / "in" / "v.mdcx"
    source.parent.mkdir()
    source.write_bytes(medcodec.compress(image))
    out = tmp_path / "out"
    out.mkdir()
    before = _files_under(tmp_path)
    for force in (False, True):
        try:
            results = transcode([source], out / "v", TranscodeOptions("jpegls"), force=force)
        except MedcodecError:
            results = []
        written = _files_under(tmp_path) - before
        assert all(out in p.parents for p in written), written  # nothing outside OUT
        assert victim.read_bytes() == b"precious"
        if results:  # success means every slice has its own file
            assert len({r.output for r in results}) == 3
    assert not (tmp_path / "escape.dcm").exists()


@pytest.mark.parametrize("kind", ["control", "parent", "absolute", "duplicates", "subfolder",
                                  "empty", "number", "dot", "backslash"])
def test_decompress_to_dicom_writes_only_inside_its_folder(kind: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    """The audit's traversal: names in ``image.meta.dicom_filenames`` are data, never paths."""
    from medcodec.cli import main

    victim = tmp_path / "victim.dcm"
    victim.write_bytes(b"precious")
    names = [f"{k:02d}.dcm" for k in range(20)]
    bad = {"parent": "../escape.dcm", "absolute": str(victim), "duplicates": "same.dcm",
           "subfolder": "sub/x.dcm", "empty": "", "number": 5, "dot": "..",
           "backslash": "..\\escape.dcm", "control": "03.dcm"}[kind]
    names[3] = bad
    if kind == "duplicates":
        names = ["same.dcm"] * 20
    volume = np.stack([smooth_image((6, 7), 12, seed=s) for s in range(20)])
    image = MedImage(volume, bits_stored=12, modality="CT",
                     meta={"dicom_layout": "files", "dicom_filenames": [f"{k}.dcm" for k in
                                                                         range(20)]})
    source = tmp_path / "v.mdcx"
    source.write_bytes(forge(medcodec.compress(image),
                             _set("image.meta.dicom_filenames", names)))
    out = tmp_path / "out" / "series"
    out.parent.mkdir()
    before = _files_under(tmp_path)
    if kind == "control":  # the same stream with plain names writes its 20 files, inside
        command = ["--quiet", "decompress", str(source), "-o", str(out), "--format", "dicom"]
        assert main(command) == 0
        assert sorted(p.name for p in _files_under(tmp_path) - before) == names
        assert all(out in p.parents for p in _files_under(tmp_path) - before)
        return
    for force in ([], ["--force"]):
        code = main(["--quiet", "decompress", str(source), "-o", str(out), "--format", "dicom",
                     *force])
        err = capsys.readouterr().err
        assert code == 2 and "internal error" not in err
        assert "dicom_filenames" in err and "not a valid medcodec file" in err
        assert _files_under(tmp_path) == before  # nothing written anywhere
    assert victim.read_bytes() == b"precious"


def test_itk_metadata_cannot_redirect_the_pixels(tmp_path: Path) -> None:
    from medcodec.io import read, write

    image = MedImage(np.arange(24, dtype=np.int16).reshape(2, 3, 4), bits_stored=16,
                     meta={"itk_metadata": {"ElementDataFile": str(tmp_path / "evil.raw"),
                                            "HeaderSize": "100", "Bad = key": "x",
                                            "Comment": "kept"}})
    back = medcodec.decompress(medcodec.compress(image))
    write(back, tmp_path / "v.mha")
    header = (tmp_path / "v.mha").read_bytes().split(b"ElementDataFile = LOCAL")[0]
    assert b"evil.raw" not in header and b"HeaderSize" not in header
    assert b"Comment = kept" in header
    np.testing.assert_array_equal(read(tmp_path / "v.mha").pixels, image.pixels)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mha"]


@pytest.mark.parametrize("name, fmt", [("x.img", "nifti"), ("x.hdr", "nifti"),
                                       ("y.hdr", "itk"), ("y.img", "itk")])
def test_pair_formats_are_refused_and_leave_nothing(tmp_path: Path, name: str, fmt: str) -> None:
    from medcodec.io import write

    image = MedImage(np.zeros((2, 3, 4), np.int16), bits_stored=16)
    with pytest.raises(OutputError, match=name):
        write(image, tmp_path / name, format=fmt)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom: these UIDs are invalid on purpose
def test_batch_outputs_stay_inside_and_never_collide(tmp_path: Path) -> None:
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    from medcodec.batch import discover, run_batch

    root = tmp_path / "in"
    root.mkdir()
    # two series whose UIDs reduce to the same safe name, one that tries to climb out
    for folder_uid, uid in (("a", "1.2/3"), ("b", "1.2_3"), ("c", "../../../escape")):
        for k in range(2):
            ds = Dataset()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
            ds.SOPClassUID = CTImageStorage
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.SeriesInstanceUID, ds.Modality = uid, "CT"
            ds.Rows = ds.Columns = 8
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
            ds.ImagePositionPatient, ds.InstanceNumber = [0, 0, k], k + 1
            ds.PixelData = smooth_image((8, 8), 12, seed=k).astype("<u2").tobytes()
            pydicom.dcmwrite(root / f"{folder_uid}{k}.dcm", ds, enforce_file_format=True)
    units = discover(root)
    outputs = [u.output for u in units]
    assert len(set(outputs)) == len(outputs) == 3
    assert all("/" not in o and not o.startswith(".") for o in outputs)
    out = tmp_path / "out"
    summary = run_batch(root, out, scheduler="sync", progress=False)
    assert summary.ok == 3 and not summary.failed
    assert all(out in p.parents for p in _files_under(tmp_path) - _files_under(root))
    assert not (tmp_path / "escape.mdcx").exists()


def test_batch_manifest_paths_are_data(tmp_path: Path) -> None:
    import csv

    from medcodec.batch import MANIFEST_FIELDS, run_batch

    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    out.mkdir()
    np.save(root / "a.npy", np.arange(64, dtype=np.uint16).reshape(8, 8))
    victim = tmp_path / "victim.bin"
    victim.write_bytes(b"precious")
    import hashlib

    row = dict.fromkeys(MANIFEST_FIELDS, "")
    row.update(unit="a.npy", status="ok", output="../victim.bin",
               output_sha256=hashlib.sha256(b"precious").hexdigest())
    with open(out / "manifest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=MANIFEST_FIELDS)
        writer.writeheader()
        writer.writerow(row)
    summary = run_batch(root, out, scheduler="sync", progress=False)
    assert summary.done_before == 0 and summary.ok == 1  # the forged row did not count
    assert victim.read_bytes() == b"precious"
    assert (out / "a.npy.mdcx").is_file()


def test_zarr_store_and_chunks(tmp_path: Path) -> None:
    from medcodec.zarr_codec import MedcodecCodec, to_zarr

    image = MedImage(np.arange(2 * 4 * 5, dtype=np.uint16).reshape(2, 4, 5), bits_stored=16)
    to_zarr(image, str(tmp_path / "v.zarr"))
    with pytest.raises(OutputError, match="exists"):
        to_zarr(image, str(tmp_path / "v.zarr"))
    codec = MedcodecCodec()
    for header, needle in (({"dtype": "O", "shape": [4, 5], "codec": "jpegls"}, "dtype"),
                           ({"dtype": "<V99", "shape": [4, 5], "codec": "jpegls"}, "dtype"),
                           ({"dtype": "<u2", "shape": [4, 5], "codec": "..x"}, "unknown codec"),
                           ({"dtype": "<u2", "shape": [99, 16384, 16384], "codec": "jpegls"},
                            "cannot hold")):
        text = json.dumps(header).encode()
        chunk = b"MDZ1" + bytes([len(text)]) + text + b"\0" * 17 * 100
        with pytest.raises(MedcodecError, match=needle):
            codec.decode(chunk)
