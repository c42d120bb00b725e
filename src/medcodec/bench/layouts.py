"""Lay one CT series out as the public collections ship it: ``python -m
medcodec.bench.layouts SERIES_DIR --out DIR``.

Writes, under ``DIR`` (a scratch folder; the copies are for testing the dataset adapters and
must not be distributed):

- ``tcia/LIDC-IDRI-XXXX/<study>/<series>/1-NNN.dcm``: the TCIA (NBIA) download tree, the DICOM
  files copied unchanged;
- ``luna16/subset0/<SeriesInstanceUID>.mhd`` + ``.raw`` and ``luna16/annotations.csv``: the
  LUNA16 release, int16 Hounsfield units with spacing and origin (SimpleITK);
- ``mosmed/studies/CT-0/study_0001.nii.gz``: MosMedData, int16 HU NIfTI (nibabel).

Every ``stride``-th slice is kept, so small versions serve tests.
"""

from __future__ import annotations

import argparse
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _series(src: Path, stride: int, limit: int | None) -> tuple[list[Path], object, str, str]:
    """The series' files in slice order (every ``stride``-th), its image, patient and UIDs."""
    import pydicom

    from medcodec.io import read_all
    from medcodec.io.dicom import looks_like_dicom

    files = sorted(p for p in src.rglob("*") if p.is_file() and not p.name.startswith(".")
                   and "_provenance" not in p.parts and looks_like_dicom(p))
    heads = [(pydicom.dcmread(p, stop_before_pixels=True), p) for p in files]
    heads.sort(key=lambda hp: float(hp[0].ImagePositionPatient[2]))
    kept = heads[::stride][:limit]
    [image] = list(read_all([p for _, p in kept]))
    ds = kept[0][0]
    return [p for _, p in kept], image, str(ds.PatientID), str(ds.SeriesInstanceUID)


def _hu(image) -> np.ndarray:
    hu = image.pixels.astype(np.float64) * image.rescale_slope + image.rescale_intercept
    return np.round(hu).astype(np.int16)


def build(src: Path, out: Path, stride: int = 1, limit: int | None = None) -> dict[str, Path]:
    """The three layouts of the series in ``src``; returns their roots."""
    import nibabel as nib
    import pydicom
    import SimpleITK as sitk

    files, image, patient, series_uid = _series(src, stride, limit)
    patient_dir = re.sub(r"[^A-Za-z0-9-]", "_", patient) or "LIDC-IDRI-0000"
    ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    study = f"01-01-2000-NA-NA-{str(ds.StudyInstanceUID)[-5:]}"
    series_dir = f"{int(ds.get('SeriesNumber', 3000) or 3000)}.000000-NA-{series_uid[-5:]}"
    tcia = out / "tcia"
    leaf = tcia / patient_dir / study / series_dir
    leaf.mkdir(parents=True, exist_ok=True)
    for n, path in enumerate(files, 1):
        shutil.copyfile(path, leaf / f"1-{n:03d}.dcm")

    hu = _hu(image)
    dy, dx = image.pixel_spacing or (1.0, 1.0)
    positions = np.asarray(image.slice_positions if image.slice_positions is not None
                           else np.arange(hu.shape[0]), np.float64)
    dz = float(np.median(np.diff(positions))) if len(positions) > 1 else 1.0
    origin = [float(v) for v in ds.ImagePositionPatient]
    luna = out / "luna16"
    (luna / "subset0").mkdir(parents=True, exist_ok=True)
    itk = sitk.GetImageFromArray(hu)
    itk.SetSpacing((float(dx), float(dy), abs(dz)))
    itk.SetOrigin(origin)
    sitk.WriteImage(itk, str(luna / "subset0" / f"{series_uid}.mhd"), useCompression=False)
    centre = [origin[0] + dx * hu.shape[2] / 2, origin[1] + dy * hu.shape[1] / 2,
              origin[2] + abs(dz) * hu.shape[0] / 2]
    (luna / "annotations.csv").write_text(
        "seriesuid,coordX,coordY,coordZ,diameter_mm\n"
        f"{series_uid},{centre[0]:.3f},{centre[1]:.3f},{centre[2]:.3f},6.0\n")

    mosmed = out / "mosmed" / "studies" / "CT-0"
    mosmed.mkdir(parents=True, exist_ok=True)
    affine = np.diag([-float(dx), -float(dy), abs(dz), 1.0])  # RAS, as MosMed ships
    nib.save(nib.Nifti1Image(np.ascontiguousarray(hu.transpose(2, 1, 0)), affine),
             str(mosmed / "study_0001.nii.gz"))
    return {"tcia": tcia, "luna16": luna, "mosmed": out / "mosmed"}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("series", type=Path, help="folder of one DICOM CT series")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--stride", type=int, default=1)
    p.add_argument("--limit", type=int)
    a = p.parse_args(argv)
    for name, root in build(a.series, a.out, a.stride, a.limit).items():
        print(f"{name}: {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
