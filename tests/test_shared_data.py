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

from .conftest import SHARED_DATA, shared_manifest

ROWS = shared_manifest()
pytestmark = pytest.mark.shared_data


def _dicom_tags(path: Path) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, force=True)
    skip = {0x7FE00010, 0x00020010, 0x00020000, 0x00020012, 0x00020013, 0x00020001}
    return {e.tag: (None if e.VR in ("SQ", "UN") else e.value) for e in ds
            if e.tag not in skip and e.tag.element != 0}


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
        before, after = _dicom_tags(path), _dicom_tags(out)
        assert set(before) <= set(after)
        changed = [t for t, v in before.items()
                   if v is not None and after[t] is not None and str(v) != str(after[t])]
        assert not changed


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
