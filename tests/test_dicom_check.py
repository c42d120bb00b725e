"""The DICOM round-trip check command: a clean file passes, a colour file is refused, the CSV
says so, and a broken writer is caught."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pydicom
import pytest

from medcodec.bench import dicom_check


def test_check_passes_real_files_and_records_refusals(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(pydicom.data.get_testdata_file("CT_small.dcm"), folder / "ct.dcm")
    shutil.copy(pydicom.data.get_testdata_file("SC_rgb.dcm"), folder / "rgb.dcm")
    assert dicom_check.main([str(folder), "--out", str(tmp_path / "out"),
                             "--modes", "lossless,near2"]) == 0
    with open(tmp_path / "out" / "dicom_check.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    outcome = {(Path(r["file"]).name, r["mode"]): r["outcome"] for r in rows}
    assert outcome == {("ct.dcm", "lossless"): "ok", ("ct.dcm", "near2"): "ok",
                       ("rgb.dcm", "lossless"): "refused", ("rgb.dcm", "near2"): "refused"}
    assert "2 DICOM files" in capsys.readouterr().out


def test_check_catches_a_changed_element(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from medcodec.io import dicom

    original = dicom.build_datasets

    def tampering(image):  # a writer bug: one carried element loses its value
        pairs = original(image)
        for _, ds in pairs:
            ds.StudyDescription = "changed"
        return pairs

    monkeypatch.setattr(dicom, "build_datasets", tampering)
    path = Path(pydicom.data.get_testdata_file("CT_small.dcm"))
    row = dicom_check.check_file(path, "lossless", tmp_path, dciodvfy=False, gdcm=False)
    assert row["outcome"] == "FAIL" and "(0008,1030)" in row["detail"]
