"""The benchmark: dataset adapters on stand-in trees, CSV columns, resume, summary and report."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from medcodec.bench import datasets, report, runner
from medcodec.cli import main

CT_SMALL = Path(pydicom.data.get_testdata_file("CT_small.dcm"))


def _ct_slices(n: int) -> list[pydicom.Dataset]:
    """n real CT slices (pydicom's CT_small, cropped and shifted per slice) of one series."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        template = pydicom.dcmread(CT_SMALL)
    base = template.pixel_array
    series = pydicom.uid.generate_uid()
    out = []
    for k in range(n):
        ds = template.copy()
        pixels = np.roll(base, 3 * k, axis=1)
        ds.PixelData = pixels.astype(np.int16).tobytes()
        ds.SeriesInstanceUID = series
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.ImagePositionPatient = [0.0, 0.0, float(k)]
        out.append(ds)
    return out


def _lidc_tree(root: Path) -> None:
    for patient, n in (("LIDC-IDRI-0001", 3), ("LIDC-IDRI-0002", 2)):
        folder = root / patient / "01-01-2000-30178" / "3000566.000000-62357"
        folder.mkdir(parents=True)
        for i, ds in enumerate(_ct_slices(n)):
            ds.PatientID = patient
            ds.save_as(folder / f"1-{i + 1:03d}.dcm")


def _luna_tree(root: Path) -> list[str]:
    uids = []
    for subset, n in (("subset0", 2), ("subset1", 1)):
        (root / subset).mkdir(parents=True)
        for _ in range(n):
            uid = pydicom.uid.generate_uid()
            volume = np.stack([ds.pixel_array for ds in _ct_slices(2)])
            image = sitk.GetImageFromArray(volume)
            image.SetSpacing((0.7, 0.7, 2.5))
            sitk.WriteImage(image, str(root / subset / f"{uid}.mhd"))
            uids.append(uid)
    with open(root / "annotations.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"])
        writer.writerow([uids[0], "1", "2", "3", "5.5"])
    return uids


def _mosmed_tree(root: Path) -> None:
    for category, study in (("CT-0", "study_0001"), ("CT-1", "study_0002")):
        (root / "studies" / category).mkdir(parents=True)
        volume = np.stack([ds.pixel_array for ds in _ct_slices(2)]).transpose(2, 1, 0)
        nib.save(nib.Nifti1Image(volume.astype(np.int16), np.eye(4)),
                 root / "studies" / category / f"{study}.nii.gz")


def test_lidc_adapter(tmp_path: Path) -> None:
    _lidc_tree(tmp_path / "LIDC")
    assert datasets.detect_collection(tmp_path / "LIDC") == "lidc"
    volumes = datasets.discover([tmp_path / "LIDC"])
    assert sorted(v.patient for v in volumes) == ["LIDC-IDRI-0001", "LIDC-IDRI-0002"]
    assert sorted(v.load().n_slices for v in volumes) == [2, 3]


def test_luna_adapter_with_annotations(tmp_path: Path) -> None:
    uids = _luna_tree(tmp_path / "LUNA16")
    volumes = datasets.discover([tmp_path / "LUNA16"])
    assert {v.series_uid for v in volumes} == set(uids)
    first = next(v for v in volumes if v.series_uid == uids[0])
    assert first.annotations[0]["diameter_mm"] == "5.5"
    image = first.load()
    assert image.n_slices == 2 and image.slice_thickness == pytest.approx(2.5)


def test_mosmed_adapter(tmp_path: Path) -> None:
    _mosmed_tree(tmp_path / "MosMed")
    volumes = datasets.discover([tmp_path / "MosMed"])
    assert sorted(v.patient for v in volumes) == ["MosMed:study_0001", "MosMed:study_0002"]
    assert all(v.load().n_slices == 2 for v in volumes)


def test_split_by_patient_never_splits_a_patient() -> None:
    volumes = [datasets.VolumeRef(id=f"v{i}", patient=f"p{i // 3}", collection="x", paths=[])
               for i in range(60)]
    train, test = datasets.split_by_patient(volumes, (0.7, 0.3), seed=1)
    assert {v.patient for v in train}.isdisjoint({v.patient for v in test})
    assert len(train) + len(test) == 60
    assert 0.4 < len(train) / 60 < 0.95
    again, _ = datasets.split_by_patient(list(reversed(volumes)), (0.7, 0.3), seed=1)
    assert {v.id for v in again} == {v.id for v in train}


def test_luna_patients_follow_lidc(tmp_path: Path) -> None:
    _lidc_tree(tmp_path / "LIDC")
    lidc = datasets.discover([tmp_path / "LIDC"])
    (tmp_path / "LUNA16" / "subset0").mkdir(parents=True)
    uid = lidc[0].series_uid
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 4, 4), np.int16)),
                    str(tmp_path / "LUNA16" / "subset0" / f"{uid}.mhd"))
    volumes = datasets.discover([tmp_path / "LIDC", tmp_path / "LUNA16"])
    luna = next(v for v in volumes if v.collection == "LUNA16")
    assert luna.patient == lidc[0].patient


def test_bench_cli_columns_resume_and_report(tmp_path: Path) -> None:
    folder = tmp_path / "series"
    folder.mkdir()
    for i, ds in enumerate(_ct_slices(2)):
        ds.save_as(folder / f"{i}.dcm")
    out = tmp_path / "out"
    args = ["bench", str(folder), "--out", str(out), "--codecs", "jpegls,deflate",
            "--max-error", "2", "--workers", "1", "--repeat", "1", "-q"]
    assert main(["-q", *args[0:1], *args[1:]]) == 0
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    required = ["image", "modality", "rows", "cols", "bits", "codec", "mode", "setting", "bytes",
                "bpp", "psnr", "psnr_lung8", "psnr_soft8", "ssim", "max_abs_err", "enc_ms",
                "dec_ms"]
    assert all(c in rows[0] for c in required)
    # 2 images x (jpegls lossless + jpegls D=2 + deflate lossless)
    assert len(rows) == 6
    assert {r["mode"] for r in rows} == {"lossless", "near-lossless"}
    for row in rows:
        assert int(row["max_abs_err"]) <= (2 if row["mode"] == "near-lossless" else 0)
        if row["mode"] == "near-lossless":
            assert float(row["psnr"]) > 40 and row["psnr_soft8"] != ""
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["lossless"]) == {"jpegls", "deflate"}
    assert (out / "report.md").read_text().startswith("# medcodec benchmark")
    # re-running resumes: nothing is measured twice
    before = (out / "results.csv").read_text()
    assert main(args) == 0
    assert (out / "results.csv").read_text() == before


def test_one_bad_image_does_not_stop_the_run(tmp_path: Path) -> None:
    good = runner.BenchImage("good", "s", "p", "CT", np.arange(64, dtype=np.int16).reshape(8, 8))
    bad = runner.BenchImage("bad", "s", "p", "CT", np.zeros((0, 8), np.int16))
    tasks = runner.plan_tasks(["jpegls"], "lossless", [], [])
    rows, failures = runner.run(iter([bad, good]), tasks, tmp_path, workers=1, repeat=1)
    assert [r["image"] for r in rows] == ["good"]
    assert failures and failures[0][0] == "bad"


def test_bd_rate_table_from_rows() -> None:
    rows = []
    for codec, scale in (("jpeg2000", 1.0), ("fake", 0.8)):
        for i, bpp in enumerate((0.5, 1.0, 2.0, 4.0)):
            rows.append({"image": "a", "codec": codec, "mode": "lossy", "setting": f"s{i}",
                         "bpp": str(bpp * scale), "psnr": str(40 + 6 * np.log2(bpp)),
                         "psnr_lung8": "", "psnr_soft8": "", "ssim": "0.9", "ssim_soft8": "",
                         "max_abs_err": "3", "enc_ms": "1", "dec_ms": "1"})
    summary = report.summarize(rows)
    entry = summary["bd_rate_vs_jpeg2000"]["fake"]
    assert entry["bd_rate_percent"] == pytest.approx(-20.0, abs=0.01)
    lo, hi = entry["interval"]
    assert lo == pytest.approx(34.0) and hi == pytest.approx(52.0)
