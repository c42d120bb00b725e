"""The medcodec numcodecs codec inside Zarr: exact round trips, random access, metadata."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")
numcodecs = pytest.importorskip("numcodecs")

from medcodec.errors import CorruptStreamError, MedcodecError  # noqa: E402
from medcodec.image import MedImage  # noqa: E402
from medcodec.zarr_codec import (  # noqa: E402
    ATTRS_KEY,
    MedcodecCodec,
    MedcodecZarr3,
    from_zarr,
    resolve_codec,
    to_zarr,
)


def volume(signed: bool, slices: int = 5, shape: tuple[int, int] = (48, 40)) -> MedImage:
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    base = 800 * np.sin(xx / 6.0) + 600 * np.cos(yy / 9.0)
    stack = np.stack([base + 40 * k + rng.normal(0, 15, shape) for k in range(slices)])
    pixels = np.round(stack - (1024 if signed else -1500)).astype(np.int16 if signed else np.uint16)
    return MedImage(pixels=pixels, bits_stored=12 if not signed else 16, modality="CT",
                    rescale_intercept=-1024.0 if not signed else 0.0, pixel_spacing=(0.7, 0.7),
                    slice_thickness=1.25, orientation=(1, 0, 0, 0, 1, 0),
                    slice_positions=np.array([[0, 0, 1.25 * k] for k in range(slices)]))


@pytest.mark.parametrize("signed", [False, True])
def test_lossless_round_trip_and_random_access(tmp_path: Path, signed: bool) -> None:
    image = volume(signed)
    array = to_zarr(image, tmp_path / "ct.zarr", codec="jpegls")
    assert array.chunks == (1, 48, 40)
    again = zarr.open_array(tmp_path / "ct.zarr", mode="r")
    np.testing.assert_array_equal(again[:], image.pixels)
    np.testing.assert_array_equal(again[3], image.pixels[3])  # one chunk only
    np.testing.assert_array_equal(again[1:4, 10:20, 5:9], image.pixels[1:4, 10:20, 5:9])
    facts = again.attrs[ATTRS_KEY]
    assert facts["pixel_spacing"] == [0.7, 0.7]
    assert facts["rescale_intercept"] == image.rescale_intercept
    assert facts["orientation"] == [1, 0, 0, 0, 1, 0]
    back = from_zarr(str(tmp_path / "ct.zarr"), slice(2, 4))
    np.testing.assert_array_equal(back.pixels, image.pixels[2:4])
    np.testing.assert_allclose(back.slice_positions, image.slice_positions[2:4])
    assert back.bits_stored == image.bits_stored and back.modality == "CT"
    stored = sum(f.stat().st_size for f in (tmp_path / "ct.zarr").rglob("*") if f.is_file())
    assert stored < image.pixels.nbytes / 1.5


@pytest.mark.filterwarnings("ignore:Numcodecs codecs are not in the Zarr version 3")
def test_zarr_format_3(tmp_path: Path) -> None:
    if MedcodecZarr3 is None:
        pytest.skip("zarr >= 3.1.3 is needed for the v3 format")
    image = volume(True)
    to_zarr(image, tmp_path / "v3.zarr", codec="jpegls", zarr_format=3)
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "v3.zarr", mode="r")[:],
                                  image.pixels)


def test_registered_with_numcodecs_and_config_round_trip() -> None:
    codec = numcodecs.get_codec({"id": "medcodec", "codec": "jpegls", "mode": "near-lossless",
                                 "max_error": 2})
    assert isinstance(codec, MedcodecCodec)
    assert MedcodecCodec.from_config(codec.get_config()).get_config() == codec.get_config()
    pixels = volume(False).pixels
    decoded = codec.decode(codec.encode(pixels))
    error = np.abs(decoded.astype(np.int64) - pixels)
    assert 0 < error.max() <= 2


def test_every_available_lossless_codec(tmp_path: Path) -> None:
    pixels = volume(True, slices=2).pixels
    tried = []
    for name in ("jpegls", "deflate", "htj2k", "jpeg2000", "jpegxl", "lerc"):
        try:
            resolve_codec(name)
        except MedcodecError:
            continue
        codec = MedcodecCodec(codec=name)
        np.testing.assert_array_equal(codec.decode(codec.encode(pixels)), pixels)
        tried.append(name)
    assert "jpegls" in tried and "deflate" in tried


def test_decode_into_out_buffer() -> None:
    codec = MedcodecCodec()
    pixels = volume(False, slices=1).pixels
    out = np.zeros_like(pixels)
    codec.decode(codec.encode(pixels), out=out)
    np.testing.assert_array_equal(out, pixels)


def test_damage_is_reported_not_returned() -> None:
    codec = MedcodecCodec(codec="deflate")
    data = bytearray(codec.encode(volume(False, slices=1).pixels))
    with pytest.raises(CorruptStreamError):
        codec.decode(bytes(data[: len(data) // 2]))
    with pytest.raises(CorruptStreamError):
        codec.decode(b"XXXX" + bytes(data[4:]))
    data[-40] ^= 0xFF
    with pytest.raises(CorruptStreamError):
        codec.decode(bytes(data))


def test_flat_or_float_chunks_are_refused() -> None:
    with pytest.raises(MedcodecError, match="flat buffer"):
        MedcodecCodec().encode(np.arange(10, dtype=np.uint16))
    with pytest.raises(MedcodecError, match="integer"):
        MedcodecCodec().encode(np.zeros((4, 4), dtype=np.float32))


@pytest.mark.shared_data
def test_real_ct_series(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "vtk-data" / "DICOM_Stack_PancreasCTCB"
    if not folder.is_dir():
        pytest.skip("the PancreasCTCB series is not in ../shared/data")
    from medcodec.io.dicom import read_dicom_series

    [image] = read_dicom_series(sorted(folder.glob("*.dcm"))[:8])
    to_zarr(image, tmp_path / "ct.zarr", codec="jpegls")
    back = from_zarr(os.fspath(tmp_path / "ct.zarr"))
    np.testing.assert_array_equal(back.pixels, image.pixels)
    assert back.pixel_spacing == image.pixel_spacing
    assert back.rescale_intercept == image.rescale_intercept
