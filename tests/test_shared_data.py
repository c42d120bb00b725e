"""Every file of ../shared/data round-trips losslessly (skipped when that folder is absent)."""

from __future__ import annotations

import hashlib
import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

import medcodec
from medcodec.io.dicom_header import element_bytes

from .conftest import SHARED_DATA, shared_manifest

ROWS = shared_manifest()
pytestmark = pytest.mark.shared_data


def _element_bytes(path: Path) -> dict:
    """Every element's stored value bytes (pixel data and group lengths aside)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, force=True)
    return {key: value for key, value in element_bytes(ds).items()
            if key[0] != 0x7FE00010 and key[-1] & 0xFFFF != 0}


def _manifest_sha1(pixels: np.ndarray) -> str:
    """The manifest's pixel hash: SHA-1 of the shape text and the pixels as little-endian int64."""
    array = pixels[0] if pixels.shape[0] == 1 else pixels
    return hashlib.sha1(str(array.shape).encode() + array.astype("<i8").tobytes()).hexdigest()


@pytest.mark.parametrize("row", ROWS, ids=[r["relpath"] for r in ROWS])
def test_manifest_file_round_trips(row: dict[str, str], shared_data: Path,
                                   tmp_path: Path) -> None:
    path = shared_data / row["relpath"]
    image = medcodec.read(path)
    assert _manifest_sha1(image.pixels) == row["sha1_pixels"], "pixels differ from the manifest"
    back = medcodec.decompress(medcodec.compress(image))
    assert back.pixels.dtype == image.pixels.dtype
    np.testing.assert_array_equal(back.pixels, image.pixels)
    if image.source_format == "dicom":
        out = tmp_path / "out.dcm"
        medcodec.write(back, out)
        np.testing.assert_array_equal(medcodec.read(out).pixels, image.pixels)
        before, after = _element_bytes(path), _element_bytes(out)
        changed = [key for key, value in before.items() if after.get(key) != value]
        assert not changed, f"elements changed or lost: {changed[:5]}"


def test_lidc_style_tree_gives_one_volume_per_series(shared_data: Path, tmp_path: Path) -> None:
    """patient/study/series/*.dcm, as the TCIA downloader lays LIDC-IDRI out."""
    series = sorted((shared_data / "vtk-data" / "DICOM_Stack_PancreasCTCB").glob("*.dcm"))[:6]
    head = sorted((shared_data / "dcm_qa_ct" / "In" / "Philips" / "S21570" / "S2010").iterdir())
    root = tmp_path / "LIDC-IDRI"
    a = root / "LIDC-IDRI-0001" / "01-01-2000-study" / "3000566-series"
    b = root / "LIDC-IDRI-0002" / "01-01-2000-study" / "3000567-series"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    for i, p in enumerate(reversed(series)):  # names in the wrong order on purpose
        shutil.copy(p, a / f"{i:06d}.dcm")
    for p in head[:4]:
        shutil.copy(p, b / f"{p.name}.dcm")
    images = medcodec.read_all(root)
    assert sorted(i.n_slices for i in images) == [4, 6]
    volume = next(i for i in images if i.n_slices == 6)
    assert np.all(np.diff(volume.slice_positions @ np.cross(volume.orientation[:3],
                                                            volume.orientation[3:])) > 0)


def test_manifest_is_complete() -> None:
    if not ROWS:
        pytest.skip("../shared/data is not available")
    assert all((SHARED_DATA / r["relpath"]).is_file() for r in ROWS)
