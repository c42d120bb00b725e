"""medcodec batch on Dask: a real two-worker LocalCluster on loopback, resume, a killed run."""

from __future__ import annotations

import csv
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
pytest.importorskip("dask")

from medcodec.batch import (  # noqa: E402
    MANIFEST_FIELDS,
    BatchSettings,
    discover,
    read_manifest,
    run_batch,
)
from medcodec.pipeline import decompress  # noqa: E402

SERIES = 5
SLICES = 3


def _write_series(folder: Path, seed: int) -> np.ndarray:
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:64, 0:48]
    ramp = 900 * np.sin(xx / 5.0) + 700 * np.cos(yy / 7.0) - 300
    volume = np.round(ramp + rng.normal(0, 4, size=(SLICES, 64, 48))).astype(np.int16)
    study, series = generate_uid(), generate_uid()
    for index in range(SLICES):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, generate_uid()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = study, series, "CT"
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0, 0, 2.5 * index]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = volume.shape[1:]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = volume[index].astype("<i2").tobytes()
        # file names deliberately out of slice order: position decides
        pydicom.dcmwrite(folder / f"z{SLICES - index:03d}.dcm", ds, enforce_file_format=True)
    return volume


@pytest.fixture
def archive(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """SERIES DICOM series, one .npy volume and one corrupt DICOM file."""
    root = tmp_path / "archive"
    volumes = {}
    for k in range(SERIES):
        volumes[f"patient{k}/ct"] = _write_series(root / f"patient{k}" / "ct", seed=k)
    np.save(root / "extra.npy", np.arange(2 * 64 * 64, dtype=np.uint16).reshape(2, 64, 64) // 7)
    bad = root / "patient0" / "broken.dcm"
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xffgarbage" * 3)
    return root, volumes


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A real dask.distributed LocalCluster: two single-threaded worker processes, loopback."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as local:
        yield local.scheduler_address


def _check_outputs(out: Path, volumes: dict[str, np.ndarray]) -> dict[str, dict[str, str]]:
    rows = read_manifest(out / "manifest.csv")
    for folder, volume in volumes.items():
        [row] = [r for r in rows.values() if r["unit"].startswith(f"{folder}/series:")]
        assert row["status"] == "ok", row
        target = out / row["output"]
        assert hashlib.sha256(target.read_bytes()).hexdigest() == row["output_sha256"]
        np.testing.assert_array_equal(decompress(target).pixels, volume)
    assert not [p for p in out.rglob("*") if p.name.startswith(".") and ".part" in p.name]
    return rows


def test_discover_groups_series_and_orders_largest_first(archive) -> None:
    root, _ = archive
    units = discover(root)
    kinds = sorted(u.kind for u in units)
    assert kinds == ["file", "file"] + ["series"] * SERIES
    assert [u.size for u in units] == sorted((u.size for u in units), reverse=True)
    per_file = discover(root, per="file")
    assert len(per_file) == SERIES * SLICES + 2


def test_distributed_cluster_batch_and_resume(archive, cluster: str, tmp_path: Path) -> None:
    root, volumes = archive
    out = tmp_path / "out"
    summary = run_batch(root, out, BatchSettings(), scheduler=cluster, progress=False)
    assert summary.ok == SERIES + 1 and summary.done_before == 0
    [(unit, error)] = summary.failed
    assert unit == "patient0/broken.dcm" and error
    rows = _check_outputs(out, volumes)
    assert len(rows) == SERIES + 2
    with open(out / "manifest.csv", newline="") as fh:
        header = next(csv.reader(fh))
    assert tuple(header) == MANIFEST_FIELDS
    ok = [r for r in rows.values() if r["status"] == "ok"]
    assert all(float(r["ratio"]) > 1 and r["max_error"] == "0" for r in ok)
    assert all(r["worker"] for r in rows.values())
    extra = rows["extra.npy"]
    np.testing.assert_array_equal(decompress(out / extra["output"]).pixels,
                                  np.load(root / "extra.npy"))

    again = run_batch(root, out, BatchSettings(), scheduler=cluster, progress=False)
    assert again.done_before == SERIES + 1 and again.ok == 0 and len(again.failed) == 1
    assert len(read_manifest(out / "manifest.csv")) == SERIES + 2

    victim = out / rows["patient2/ct/series:" + _uid(rows, "patient2/ct")]["output"]
    victim.write_bytes(victim.read_bytes()[:-10])  # damaged output: redone on the next run
    third = run_batch(root, out, BatchSettings(), scheduler=cluster, progress=False)
    assert third.done_before == SERIES and third.ok == 1
    _check_outputs(out, volumes)


def _uid(rows: dict[str, dict[str, str]], folder: str) -> str:
    return next(r["unit"].split("series:", 1)[1] for r in rows.values()
                if r["unit"].startswith(f"{folder}/series:"))


def test_local_scheduler_near_lossless(archive, tmp_path: Path) -> None:
    root, volumes = archive
    out = tmp_path / "nl"
    summary = run_batch(root, out, BatchSettings(mode="near-lossless", max_error=3),
                        scheduler="threads", workers=2, progress=False)
    assert summary.ok == SERIES + 1
    for row in read_manifest(out / "manifest.csv").values():
        if row["status"] == "ok":
            assert 0 <= int(row["max_error"]) <= 3
    folder, volume = next(iter(volumes.items()))
    row = next(r for r in read_manifest(out / "manifest.csv").values()
               if r["unit"].startswith(folder))
    decoded = decompress(out / row["output"]).pixels
    assert np.abs(decoded.astype(int) - volume).max() <= 3


_KILLED_RUN = textwrap.dedent("""
    import sys, time
    from medcodec.batch import BatchSettings, process_unit, run_batch

    def slow(unit, out_root, settings):
        time.sleep(0.6)
        return process_unit(unit, out_root, settings)

    if __name__ == "__main__":  # the process pool spawns: workers re-import this file
        run_batch(sys.argv[1], sys.argv[2], BatchSettings(), scheduler="local", workers=2,
                  progress=False, task=slow)
""")


def test_killed_run_resumes_with_every_unit_done_once(archive, tmp_path: Path) -> None:
    root, volumes = archive
    out = tmp_path / "killed"
    script = tmp_path / "killed_run.py"
    script.write_text(_KILLED_RUN)
    process = subprocess.Popen([sys.executable, str(script), str(root), str(out)],
                               start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    manifest = out / "manifest.csv"
    deadline = time.monotonic() + 45
    try:
        while time.monotonic() < deadline:  # kill once two units are recorded
            if manifest.is_file() and len(manifest.read_text().splitlines()) >= 3:
                break
            assert process.poll() is None, process.stderr.read().decode() if process.stderr \
                else "the batch ended early"
            time.sleep(0.05)
        else:
            pytest.fail("the batch recorded nothing in time")
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the client and its worker processes
        process.wait()
        if process.stderr:
            process.stderr.close()
    before = read_manifest(manifest)
    assert 2 <= len(before) < SERIES + 2  # midway
    done_before = {u for u, r in before.items() if r["status"] == "ok"}

    summary = run_batch(root, out, BatchSettings(), scheduler="sync", progress=False)
    assert summary.done_before == len(done_before)
    assert summary.processed == SERIES + 2 - len(done_before)  # nothing done twice
    rows = _check_outputs(out, volumes)
    assert len(rows) == SERIES + 2
    with open(manifest, newline="") as fh:
        units = [row["unit"] for row in csv.DictReader(fh)]
    assert len(units) == len(set(units)) == SERIES + 2  # one row per unit, none torn
