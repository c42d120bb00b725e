"""DICOM in and out: stored pixels, series sorting, tags kept, lossy bookkeeping, bad files."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

import medcodec
from medcodec.errors import InputError, OutputError, UnsupportedError

from .conftest import pydicom_data_dir

DATA = pydicom_data_dir()
needs_pydicom_data = pytest.mark.skipif(DATA is None, reason="pydicom-data is not installed")


def _grayscale_files() -> list[Path]:
    if DATA is None:
        return []
    out = []
    for path in sorted(DATA.glob("*.dcm")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        if str(ds.get("PhotometricInterpretation", "")).startswith("MONOCHROME"):
            out.append(path)
    return out


def _tags(ds: pydicom.Dataset) -> dict:
    """Elements to compare; group lengths (gggg,0000) are retired and dropped by pydicom."""
    skip = {0x7FE00010, 0x00020010, 0x00020000, 0x00020012, 0x00020013}
    return {elem.tag: (None if elem.VR in ("SQ", "UN") else elem.value) for elem in ds
            if elem.tag not in skip and elem.tag.element != 0}


def _read(path: Path) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, force=True)


@needs_pydicom_data
@pytest.mark.parametrize("path", _grayscale_files(), ids=lambda p: p.name)
def test_pydicom_data_grayscale_lossless_round_trip(path: Path, tmp_path: Path) -> None:
    original = _read(path)
    if "PixelData" not in original:
        with pytest.raises(InputError, match="no pixel data"):
            medcodec.read(path)
        return
    image = medcodec.read(path)
    expected = original.pixel_array
    np.testing.assert_array_equal(image.pixels.reshape(expected.shape), expected)
    back = medcodec.decompress(medcodec.compress(image))
    np.testing.assert_array_equal(back.pixels, image.pixels)
    out = tmp_path / "out.dcm"
    medcodec.write(back, out)
    written = _read(out)
    np.testing.assert_array_equal(written.pixel_array, expected)
    assert written.SOPInstanceUID == original.SOPInstanceUID
    assert "LossyImageCompressionRatio" not in written or (
        written.LossyImageCompressionRatio == original.LossyImageCompressionRatio)
    before, after = _tags(original), _tags(written)
    assert set(before) <= set(after)
    changed = [t for t in before if before[t] is not None and after[t] is not None
               and before[t] != after[t] and str(before[t]) != str(after[t])]
    assert not changed, f"tags changed: {changed}"


@needs_pydicom_data
@pytest.mark.parametrize("name", ["SC_rgb.dcm", "OT-PAL-8-face.dcm", "US1_J2KR.dcm"])
def test_colour_and_palette_are_refused(name: str) -> None:
    with pytest.raises(UnsupportedError, match="not supported"):
        medcodec.read(DATA / name)


def test_dicom_without_pixel_data(tmp_path: Path) -> None:
    ds = _read(Path(pydicom.data.get_testdata_file("CT_small.dcm")))
    del ds.PixelData
    path = tmp_path / "nopixels.dcm"
    ds.save_as(path)
    with pytest.raises(InputError, match="nopixels.dcm: DICOM file has no pixel data"):
        medcodec.read(path)


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.dcm"
    path.write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 40)
    with pytest.raises(InputError, match="garbage.dcm"):
        medcodec.read(path)


def _make_series(folder: Path, n: int = 5) -> list[np.ndarray]:
    """A synthetic series whose file names run opposite to the slice positions."""
    template = _read(Path(pydicom.data.get_testdata_file("CT_small.dcm")))
    folder.mkdir()
    rng = np.random.default_rng(0)
    slices = []
    for k in range(n):
        ds = template.copy()
        pixels = rng.integers(-1000, 3000, size=(ds.Rows, ds.Columns)).astype(np.int16)
        ds.PixelData = pixels.tobytes()
        ds.ImagePositionPatient = [0.0, 0.0, -10.0 + 2.5 * k]
        ds.InstanceNumber = n - k
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(folder / f"z{n - k:03d}.dcm")
        slices.append(pixels)
    return slices


def test_series_sorted_by_position_not_file_name(tmp_path: Path) -> None:
    slices = _make_series(tmp_path / "series")
    image = medcodec.read(tmp_path / "series")
    assert image.n_slices == 5
    np.testing.assert_array_equal(image.pixels, np.stack(slices))
    assert np.all(np.diff(image.slice_positions[:, 2]) > 0)


def test_series_written_back_as_folder_with_same_names_and_uids(tmp_path: Path) -> None:
    _make_series(tmp_path / "series")
    image = medcodec.read(tmp_path / "series")
    back = medcodec.decompress(medcodec.compress(image))
    written = medcodec.write(back, tmp_path / "out")
    names = sorted(p.name for p in (tmp_path / "series").iterdir())
    assert sorted(p.name for p in written) == names
    for path in written:
        assert _read(path).SOPInstanceUID == _read(tmp_path / "series" / path.name).SOPInstanceUID
    again = medcodec.read(tmp_path / "out")
    np.testing.assert_array_equal(again.pixels, image.pixels)
    with pytest.raises(OutputError, match="use --force"):
        medcodec.write(back, tmp_path / "out")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_two_series_in_one_folder_are_two_volumes(tmp_path: Path) -> None:
    _make_series(tmp_path / "a", 3)
    _make_series(tmp_path / "b", 2)
    for path in (tmp_path / "b").iterdir():
        ds = _read(path)
        ds.SeriesInstanceUID = "1.2.3.4"
        ds.save_as(path)
    shutil.copytree(tmp_path / "b", tmp_path / "a" / "b")
    images = medcodec.read_all(tmp_path / "a")
    assert sorted(i.n_slices for i in images) == [2, 3]
    with pytest.raises(InputError, match="holds 2 images"):
        medcodec.read(tmp_path / "a")


def test_lossy_output_gets_lossy_tags_and_new_uid(tmp_path: Path) -> None:
    path = Path(pydicom.data.get_testdata_file("CT_small.dcm"))
    original = _read(path)
    image = medcodec.read(path)
    back = medcodec.decompress(medcodec.compress(image, mode="near-lossless", max_error=3))
    medcodec.write(back, tmp_path / "lossy.dcm")
    ds = _read(tmp_path / "lossy.dcm")
    assert ds.LossyImageCompression == "01"
    assert float(ds.LossyImageCompressionRatio) > 1
    assert ds.LossyImageCompressionMethod == "ISO_14495_1"
    assert ds.SOPInstanceUID != original.SOPInstanceUID
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.ImageType[0] == "DERIVED"
    assert "max error 3" in ds.DerivationDescription
    assert ds.PatientName == original.PatientName
    err = np.abs(ds.pixel_array.astype(int) - original.pixel_array.astype(int)).max()
    assert err <= 3
    # a second lossy step appends, never resets
    again = medcodec.decompress(medcodec.compress(medcodec.read(tmp_path / "lossy.dcm"),
                                                  mode="near-lossless", max_error=1))
    medcodec.write(again, tmp_path / "twice.dcm")
    ds2 = _read(tmp_path / "twice.dcm")
    assert len(ds2.LossyImageCompressionRatio) == 2
    assert list(ds2.LossyImageCompressionMethod) == ["ISO_14495_1", "ISO_14495_1"]


def test_non_dicom_source_written_as_dicom(tmp_path: Path) -> None:
    pixels = np.arange(-50, 50, dtype=np.int16).reshape(10, 10)
    image = medcodec.MedImage(pixels, bits_stored=16, pixel_spacing=(0.5, 0.5), modality="CT")
    medcodec.write(image, tmp_path / "new.dcm")
    ds = _read(tmp_path / "new.dcm")
    np.testing.assert_array_equal(ds.pixel_array, pixels)
    assert ds.Modality == "CT"
    assert [float(v) for v in ds.PixelSpacing] == [0.5, 0.5]


@needs_pydicom_data
def test_multiframe_round_trip(tmp_path: Path) -> None:
    image = medcodec.read(DATA / "emri_small.dcm")
    assert image.n_slices == 10
    back = medcodec.decompress(medcodec.compress(image))
    medcodec.write(back, tmp_path / "mf.dcm")
    ds = _read(tmp_path / "mf.dcm")
    assert int(ds.NumberOfFrames) == 10
    np.testing.assert_array_equal(ds.pixel_array, image.pixels)


def test_one_slice_of_a_series_is_written_with_its_own_name(tmp_path: Path) -> None:
    _make_series(tmp_path / "series", 3)
    image = medcodec.read(tmp_path / "series")
    one = image.slice(1)
    (tmp_path / "one").mkdir()
    written = medcodec.write(one, tmp_path / "one")  # into an existing folder
    assert [p.name for p in written] == [image.meta["dicom_filenames"][1]]
    np.testing.assert_array_equal(_read(written[0]).pixel_array, image.pixels[1])


def test_lossless_output_keeps_the_file_meta_as_the_source_had_it(tmp_path: Path) -> None:
    """A Media Storage SOP Instance UID that differs from the SOP Instance UID (a real file in
    the shared data does this) is the source's business: lossless output keeps both."""
    ds = _read(Path(pydicom.data.get_testdata_file("CT_small.dcm")))
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.77"
    source = tmp_path / "in.dcm"
    ds.save_as(source, enforce_file_format=False)
    back = medcodec.decompress(medcodec.compress(medcodec.read(source)))
    written = _read(medcodec.write(back, tmp_path / "out.dcm")[0])
    assert written.file_meta.MediaStorageSOPInstanceUID == "1.2.826.0.1.3680043.8.498.77"
    assert written.SOPInstanceUID == ds.SOPInstanceUID
