"""What medcodec writes is valid DICOM: no new dciodvfy errors against its input, readable by a
second toolkit (GDCM), pixels inside BitsStored; and every test file pydicom ships goes
through (exact lossless round trip, or a clean refusal).

CI installs dicom3tools (``.ci/apt-packages``), so the dciodvfy tests run there.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

import medcodec
from medcodec.bench.dicom_check import dciodvfy_errors, gdcm_reads, read_dataset
from medcodec.errors import InputError, UnsupportedError
from medcodec.io.dicom_header import element_bytes

from .conftest import pydicom_data_dir
from .test_dicom_awkward import _case

DATA = pydicom_data_dir()
PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
needs_dciodvfy = pytest.mark.skipif(shutil.which("dciodvfy") is None,
                                    reason="dciodvfy (dicom3tools) is not installed")


def _inputs() -> list[tuple[str, Path | None]]:
    files = [("CT implicit VR", PYDICOM_FILES / "CT_small.dcm"),
             ("MR explicit VR", PYDICOM_FILES / "MR_small.dcm")]
    if DATA is not None:
        files += [("enhanced MR multi-frame", DATA / "emri_small.dcm"),
                  ("enhanced MR, JPEG-LS", DATA / "emri_small_jpeg_ls_lossless.dcm"),
                  ("CT JPEG 2000", DATA / "693_J2KR.dcm"),
                  ("MR 1024, JPEG-LS", DATA / "MR-SIEMENS-DICOM-WithOverlays.dcm")]
    files += [("Philips private FD/DS quirk", None), ("icon sequence, JPEG-LS", None)]
    return [(label, path) for label, path in files if path is None or path.is_file()]


_AWKWARD = {"Philips private FD/DS quirk":
            "private value does not fit its dictionary VR (Philips, implicit)",
            "icon sequence, JPEG-LS": "icon sequence with encapsulated pixel data (JPEG-LS)"}
MODES = {"lossless": {}, "near-lossless D=2": {"mode": "near-lossless", "max_error": 2},
         "lossy 1 bpp": {"mode": "lossy", "bpp": 1.0},
         "medcodec lossy": {"codec": "medcodec", "mode": "lossy", "quality": 24.0}}


def _source(label: str, path: Path | None, tmp_path: Path) -> Path:
    if path is not None:
        return path
    source = tmp_path / "awkward.dcm"
    source.write_bytes(_case(_AWKWARD[label])[0])
    return source


@needs_dciodvfy
@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("label, path", _inputs(), ids=[label for label, _ in _inputs()])
def test_output_validates_and_reads_in_gdcm(label: str, path: Path | None, mode: str,
                                            tmp_path: Path) -> None:
    source = _source(label, path, tmp_path)
    image = medcodec.read(source)
    back = medcodec.decompress(medcodec.compress(image, **MODES[mode]))
    out = medcodec.write(back, tmp_path / "out.dcm")[0]
    new = dciodvfy_errors(out) - dciodvfy_errors(source)
    assert not new, f"{label}, {mode}: new dciodvfy errors {sorted(new)}"
    assert gdcm_reads(out) or not gdcm_reads(source)
    written = read_dataset(out)
    stored, signed = int(written.BitsStored), int(written.PixelRepresentation)
    low, high = (-(1 << stored - 1), (1 << stored - 1) - 1) if signed else (0, (1 << stored) - 1)
    pixels = written.pixel_array
    original = read_dataset(source).pixel_array
    assert pixels.min() >= min(low, original.min()) and pixels.max() <= max(high, original.max())
    if mode == "lossless":
        np.testing.assert_array_equal(pixels, original)


def _all_test_files() -> list[Path]:
    found = sorted(PYDICOM_FILES.glob("*.dcm"))
    if DATA is not None:
        found += sorted(DATA.glob("*.dcm"))
    return found


@pytest.mark.parametrize("path", _all_test_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_pydicom_test_file_round_trips_or_is_refused_cleanly(path: Path,
                                                                    tmp_path: Path) -> None:
    """The bar: a grayscale image pydicom decodes comes back exactly, element bytes included;
    anything else is a MedcodecError naming the file (never another exception)."""
    original = read_dataset(path)
    try:
        decodable = "PixelData" in original and original.pixel_array is not None
    except Exception:
        decodable = False
    try:
        images = list(medcodec.read_all(path))
    except (InputError, UnsupportedError) as exc:
        assert path.name in str(exc)
        photometric = str(original.get("PhotometricInterpretation", ""))
        assert not (decodable and photometric.startswith("MONOCHROME")
                    and int(original.get("SamplesPerPixel", 1)) == 1), str(exc)
        return
    assert len(images) == 1
    image = images[0]
    back = medcodec.decompress(medcodec.compress(image))
    np.testing.assert_array_equal(back.pixels, image.pixels)
    out = medcodec.write(back, tmp_path / "out.dcm")[0]
    written = read_dataset(out)
    if decodable:
        np.testing.assert_array_equal(written.pixel_array, original.pixel_array)
    if original.original_encoding[1] is False:
        return  # big endian: written as little endian, values compared above
    before, after = element_bytes(original), element_bytes(written)
    pixel_tags = {0x7FE00010, 0x7FE00001, 0x7FE00002, 0x7FE00008, 0x7FE00009}
    notes = " ".join(image.meta.get("dicom_notes", []))
    for key, value in before.items():
        if key[0] in pixel_tags or key[-1] & 0xFFFF == 0:  # group lengths are retired
            continue
        top = f"({key[0] >> 16:04X},{key[0] & 0xFFFF:04X})"
        if top in notes:
            continue  # said so: not carried verbatim
        assert after.get(key) == value, f"element {key} changed or lost"
