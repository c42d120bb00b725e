"""Output paths and messages as a user expects them (one test per trap a user fell into)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

import medcodec
from medcodec.cli import commands, main


def _run(*args: object) -> int:
    return main(["--quiet", *[str(a) for a in args]])


@pytest.fixture
def ct_file() -> Path:
    return Path(pydicom.data.get_testdata_file("CT_small.dcm"))


@pytest.fixture
def series(tmp_path: Path, ct_file: Path) -> Path:
    """A 3-slice series folder made from one real slice (positions along z)."""
    folder = tmp_path / "series"
    folder.mkdir()
    for k in range(3):
        ds = pydicom.dcmread(ct_file)
        ds.ImagePositionPatient = [0.0, 0.0, float(k)]
        ds.SOPInstanceUID = f"{ds.SOPInstanceUID}.{k}"
        ds.save_as(folder / f"slice{k}.dcm")
    return folder


def test_bpp_says_what_the_headers_cost(tmp_path: Path, ct_file: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert _run("compress", ct_file, "-o", tmp_path / "a.mdcx") == 0
    out = capsys.readouterr().out
    data = (tmp_path / "a.mdcx").read_bytes()
    total = 8 * len(data) / (128 * 128)
    assert f"{total:.3f} bpp (pixels " in out
    assert "bytes of headers and source metadata" in out


def test_several_images_into_a_mdcx_name_is_refused(tmp_path: Path, ct_file: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other.npy"
    np.save(other, np.zeros((4, 5), np.uint16))
    target = tmp_path / "out.mdcx"
    assert _run("compress", ct_file, other, "-o", target) == 2
    assert "give a folder" in capsys.readouterr().err
    assert not target.exists()


def test_compress_refuses_an_image_extension(tmp_path: Path, ct_file: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert _run("compress", ct_file, "-o", tmp_path / "x.png") == 2
    assert "compress writes .mdcx containers, not png" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_decompress_into_a_folder_with_trailing_separator(tmp_path: Path, ct_file: Path) -> None:
    container = tmp_path / "a.mdcx"
    assert _run("compress", ct_file, "-o", container) == 0
    folder = tmp_path / "restored"
    assert _run("decompress", container, "-o", f"{folder}/") == 0
    assert folder.is_dir()
    written = list(folder.iterdir())
    assert [p.name for p in written] == ["CT_small.dcm"]
    np.testing.assert_array_equal(pydicom.dcmread(written[0]).pixel_array,
                                  pydicom.dcmread(ct_file).pixel_array)
    assert _run("decompress", container, "-o", f"{tmp_path / 'nii'}/", "--format", "nifti") == 0
    assert (tmp_path / "nii" / "a.nii.gz").is_file()


def test_series_to_one_dcm_is_refused_before_decoding(tmp_path: Path, series: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    container = tmp_path / "s.mdcx"
    assert _run("compress", series, "-o", container) == 0
    from medcodec.pipeline import ContainerFile

    decoded: list[int] = []
    original = ContainerFile.decode_slice
    monkeypatch.setattr(ContainerFile, "decode_slice",
                        lambda self, i: decoded.append(i) or original(self, i))
    assert _run("decompress", container, "-o", tmp_path / "x.dcm") == 2
    assert "written as a folder" in capsys.readouterr().err
    assert decoded == []
    assert _run("decompress", container, "-o", tmp_path / "one.dcm", "--slices", "1") == 0
    assert decoded == [1]


def test_series_decompresses_into_a_folder_with_its_names(tmp_path: Path, series: Path) -> None:
    container = tmp_path / "s.mdcx"
    assert _run("compress", series, "-o", container) == 0
    assert _run("decompress", container, "-o", tmp_path / "back") == 0
    assert sorted(p.name for p in (tmp_path / "back").iterdir()) == [
        "slice0.dcm", "slice1.dcm", "slice2.dcm"]


def test_lossy_without_a_setting_names_the_options(tmp_path: Path, ct_file: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert _run("compress", ct_file, "-o", tmp_path / "a.mdcx", "--mode", "lossy") == 2
    err = capsys.readouterr().err
    assert "--quality" in err and "--bpp" in err


def test_demo_leaves_no_temporary_folder(monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    used: list[Path] = []

    def fake_table(image: medcodec.MedImage, out_dir: Path) -> None:
        (out_dir / "x.mdcx").write_bytes(b"x")
        used.append(out_dir)

    monkeypatch.setattr(commands, "_demo_table", fake_table)
    assert _run("demo") == 0
    assert used and not used[0].exists()
    assert "--out DIR" in capsys.readouterr().out


def test_internal_error_names_the_file(tmp_path: Path, ct_file: Path,
                                       monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    import medcodec.pipeline

    def broken(*args: object, **kwargs: object) -> bytes:
        raise RuntimeError("boom\nsecond line of a long message")

    monkeypatch.setattr(medcodec.pipeline, "compress", broken)
    source = tmp_path / "scan.dcm"
    shutil.copy(ct_file, source)
    assert _run("compress", source, "-o", tmp_path / "a.mdcx") == 2
    err = capsys.readouterr().err.strip()
    assert "internal error while working on" in err and "scan.dcm" in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "a.mdcx").exists()


def test_non_image_dicom_in_a_folder_is_passed_over(tmp_path: Path, ct_file: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A series folder from a PACS or CD also holds DICOMDIR, reports and RT objects."""
    folder = tmp_path / "study"
    folder.mkdir()
    shutil.copy(ct_file, folder / "ct.dcm")
    plan = Path(pydicom.data.get_testdata_file("rtplan.dcm"))
    shutil.copy(plan, folder / "plan.dcm")
    assert _run("compress", folder, "-o", tmp_path / "s.mdcx") == 0
    assert "passed over" in capsys.readouterr().err
    assert medcodec.decompress(tmp_path / "s.mdcx").n_slices == 1
    assert _run("compress", folder / "plan.dcm", "-o", tmp_path / "p.mdcx") == 2
    assert "plan.dcm" in capsys.readouterr().err
