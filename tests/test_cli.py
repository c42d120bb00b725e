"""The command line as a user meets it: real subprocesses, exit codes, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

import medcodec
from medcodec.container import MAGIC

from .conftest import pydicom_data_dir


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "medcodec", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=300)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def ct_file() -> Path:
    return Path(pydicom.data.get_testdata_file("CT_small.dcm"))


def test_compress_info_decompress(tmp_path: Path, ct_file: Path) -> None:
    out = tmp_path / "ct.mdcx"
    result = run("compress", str(ct_file), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "jpegls lossless" in result.stdout
    info = run("info", str(out))
    assert info.returncode == 0
    assert "shape: 1 x 128 x 128" in info.stdout
    assert "codec: jpegls" in info.stdout
    assert "Modality: CT" in info.stdout
    result = run("decompress", str(out), "-o", str(tmp_path / "back.dcm"))
    assert result.returncode == 0, result.stderr
    back = pydicom.dcmread(tmp_path / "back.dcm")
    np.testing.assert_array_equal(back.pixel_array, pydicom.dcmread(ct_file).pixel_array)
    for ext in ("npy", "nii.gz", "tiff"):
        result = run("decompress", str(out), "-o", str(tmp_path / f"back.{ext}"))
        assert result.returncode == 0, result.stderr
        np.testing.assert_array_equal(
            medcodec.read(tmp_path / f"back.{ext}").pixels.reshape(128, 128),
            back.pixel_array)


def test_near_lossless_cli(tmp_path: Path, ct_file: Path) -> None:
    out = tmp_path / "nl.mdcx"
    result = run("compress", str(ct_file), "-o", str(out), "--mode", "near-lossless",
                 "--max-error", "4")
    assert result.returncode == 0, result.stderr
    assert "max error 4" in result.stdout or "max error 3" in result.stdout
    image = medcodec.decompress(out)
    err = np.abs(image.pixels[0].astype(int) - pydicom.dcmread(ct_file).pixel_array).max()
    assert err <= 4


def test_existing_output_is_never_overwritten(tmp_path: Path, ct_file: Path) -> None:
    out = tmp_path / "ct.mdcx"
    out.write_bytes(b"precious")
    assert_one_line_error(run("compress", str(ct_file), "-o", str(out)), "ct.mdcx", "--force")
    assert out.read_bytes() == b"precious"
    assert run("compress", str(ct_file), "-o", str(out), "--force").returncode == 0
    assert out.read_bytes().startswith(MAGIC)


@pytest.mark.parametrize(
    "content, needle",
    [
        (b"", "not a medcodec container"),
        (b"hello world, not a container at all", "not a medcodec container"),
        (MAGIC + b"\1\0", "truncated"),
    ],
)
def test_bad_container_is_one_line_error(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "bad.mdcx"
    path.write_bytes(content)
    result = run("decompress", str(path), "-o", str(tmp_path / "out.npy"))
    assert_one_line_error(result, "bad.mdcx", needle)
    assert not (tmp_path / "out.npy").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.mdcx"]


def test_truncated_container_leaves_no_output(tmp_path: Path, ct_file: Path) -> None:
    data = medcodec.compress(ct_file)
    path = tmp_path / "cut.mdcx"
    path.write_bytes(data[: len(data) - 100])
    result = run("decompress", str(path), "-o", str(tmp_path / "out.dcm"))
    assert_one_line_error(result, "cut.mdcx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.mdcx"]


def test_bit_flipped_container(tmp_path: Path, ct_file: Path) -> None:
    data = bytearray(medcodec.compress(ct_file))
    data[len(data) // 2] ^= 0x40
    path = tmp_path / "flip.mdcx"
    path.write_bytes(bytes(data))
    assert_one_line_error(run("decompress", str(path), "-o", str(tmp_path / "o.npy")),
                          "flip.mdcx", "checksum")


@pytest.mark.skipif(pydicom_data_dir() is None, reason="pydicom-data is not installed")
def test_colour_dicom_is_refused(tmp_path: Path) -> None:
    result = run("compress", str(pydicom_data_dir() / "SC_rgb.dcm"), "-o",
                 str(tmp_path / "x.mdcx"))
    assert_one_line_error(result, "SC_rgb.dcm", "RGB", "not supported")
    assert not (tmp_path / "x.mdcx").exists()


def test_missing_and_unreadable_inputs(tmp_path: Path) -> None:
    assert_one_line_error(run("compress", str(tmp_path / "nope.dcm"), "-o",
                              str(tmp_path / "x.mdcx")), "nope.dcm")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(os.urandom(500))
    assert_one_line_error(run("compress", str(junk), "-o", str(tmp_path / "x.mdcx")),
                          "junk.bin", "unrecognised")
    assert_one_line_error(run("info", str(junk)), "junk.bin")


def test_bad_options(tmp_path: Path, ct_file: Path) -> None:
    out = str(tmp_path / "x.mdcx")
    assert_one_line_error(run("compress", str(ct_file), "-o", out, "--mode", "near-lossless"),
                          "max-error")
    assert_one_line_error(run("compress", str(ct_file), "-o", out, "--codec", "nosuch"),
                          "unknown codec")
    assert_one_line_error(run("compress", str(ct_file), "-o", out, "--mode", "lossy",
                              "--codec", "jpegls", "--quality", "5"), "no lossy mode")


def test_many_inputs_go_to_a_folder(tmp_path: Path, ct_file: Path) -> None:
    mr = Path(pydicom.data.get_testdata_file("MR_small.dcm"))
    result = run("compress", str(ct_file), str(mr), "-o", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["CT_small.mdcx",
                                                                     "MR_small.mdcx"]


def test_decompress_selected_slices(tmp_path: Path) -> None:
    volume = np.arange(5 * 6 * 7, dtype=np.uint16).reshape(5, 6, 7)
    (tmp_path / "v.mdcx").write_bytes(medcodec.compress(volume))
    result = run("decompress", str(tmp_path / "v.mdcx"), "-o", str(tmp_path / "s.npy"),
                 "--slices", "1,3-4")
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), volume[[1, 3, 4]])
    assert_one_line_error(run("decompress", str(tmp_path / "v.mdcx"), "-o",
                              str(tmp_path / "t.npy"), "--slices", "9"), "outside")


def test_info_names_the_weights_a_learned_container_uses(tmp_path: Path) -> None:
    """A padded lossy slice needs the raster-scan model for its mask: ``info`` names every
    model the streams use (from the header's weights_sha256), not only the codec."""
    yy, xx = np.mgrid[0:64, 0:72]
    volume = (1200 + 3 * xx + 2 * yy + (xx * yy) % 7).astype(np.int16)
    volume[(yy - 32) ** 2 + (xx - 36) ** 2 > 30**2] = -2000  # padding outside the circle
    source = tmp_path / "padded.npy"
    np.save(source, volume[None])
    out = tmp_path / "padded.mdcx"
    result = run("compress", str(source), "-o", str(out), "--codec", "medcodec", "--mode",
                 "lossy", "--quality", "16")
    assert result.returncode == 0, result.stderr
    info = run("info", str(out))
    assert info.returncode == 0, info.stderr
    used = next(line for line in info.stdout.splitlines() if line.startswith("weights used:"))
    assert "causal " in used
    lossless = tmp_path / "plain.mdcx"
    assert run("compress", str(source), "-o", str(lossless)).returncode == 0
    assert "weights used:" not in run("info", str(lossless)).stdout  # jpegls: no weights


def test_info_codecs_banner() -> None:
    result = run("info", "--codecs")
    assert result.returncode == 0
    assert "jpegls" in result.stdout and "CharLS" in result.stdout


@pytest.mark.skipif(pydicom_data_dir() is None, reason="pydicom-data is not installed")
def test_demo(tmp_path: Path) -> None:
    result = run("demo", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "lossless" in result.stdout and "inf" in result.stdout
    for name in ("lossless_jpegls", "lossless_medcodec", "lossy_medcodec", "lossy_jpeg2000"):
        assert (tmp_path / f"{name}.mdcx").exists()
        assert (tmp_path / f"{name}.dcm").exists()
