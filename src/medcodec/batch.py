"""Compress whole archives on Dask: one task per series (or file), a manifest, resumable runs.

An archive the size of LIDC-IDRI (about 1,000 series, 125 GB) takes hours on one machine and
will be interrupted at least once, so a run is built to be killed and re-run::

    IN_ROOT --discover (headers only)--> units: one DICOM series or one image file each
        --skip units the manifest already lists as ok (output present, SHA-256 matching)-->
        Dask tasks (largest first): read -> compress (verified) -> atomic write -> decode the
        written file again and compare --> one manifest row per unit, appended and fsync'ed as
        each task finishes --> the manifest compacted (one row per unit) at the end

The same task function runs under Dask's local scheduler (processes, the default), threads,
the synchronous scheduler, or a ``dask.distributed`` cluster (``--scheduler tcp://HOST:PORT``;
its workers must see IN_ROOT and OUT_ROOT at the same paths). A unit that fails (a corrupt file,
an unsupported image) is recorded with its one-line error and the run goes on. Outputs appear
only complete (temporary name, then rename), so a killed run leaves no half-written container;
its leftovers are removed on the next run, which redoes exactly the units not recorded as done.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import os
import socket
import sys
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from medcodec._fs import inside
from medcodec.errors import InputError, MedcodecError, OutputError

MANIFEST_NAME = "manifest.csv"
MANIFEST_FIELDS = (
    "unit", "kind", "inputs", "output", "status", "error", "codec", "mode", "slices", "pixels",
    "input_bytes", "raw_bytes", "output_bytes", "ratio", "bpp", "max_error", "pixels_sha1",
    "output_sha256", "seconds", "worker", "finished",
)
STATUSES = ("ok", "error")
_IMAGE_SUFFIXES = (".nii", ".nii.gz", ".mha", ".mhd", ".nrrd", ".nhdr", ".png", ".tif",
                   ".tiff", ".npy", ".dcm", ".dicom")


@dataclass(frozen=True)
class BatchSettings:
    """How every unit is coded (the options of ``medcodec compress``)."""

    codec: str = "auto"
    mode: str = "lossless"
    max_error: int | None = None
    quality: float | None = None

    def __post_init__(self) -> None:
        from medcodec.codecs.slice import make_spec

        make_spec(self.mode, self.max_error, self.quality)  # a bad combination fails now


@dataclass(frozen=True)
class Unit:
    """One task: a DICOM series (its files) or one image file, and where its output goes."""

    id: str
    kind: str  # "series" or "file"
    paths: tuple[str, ...]
    output: str  # relative to OUT_ROOT
    size: int


@dataclass
class BatchSummary:
    """What a run did; ``failed`` lists (unit, error) pairs."""

    units: int = 0
    done_before: int = 0
    ok: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    raw_bytes: int = 0
    output_bytes: int = 0
    pixels: int = 0
    seconds: float = 0.0
    #: From the first task submitted to the last result (discovery and set-up excluded).
    compute_seconds: float = 0.0
    manifest: str = ""

    @property
    def processed(self) -> int:
        return self.ok + len(self.failed)

    @property
    def megapixels_per_second(self) -> float:
        """Throughput of the compute phase (what adding workers speeds up)."""
        return self.pixels / 1e6 / max(self.compute_seconds or self.seconds, 1e-9)

    def text(self) -> str:
        ratio = self.raw_bytes / max(1, self.output_bytes)
        return (f"{self.units} unit(s): {self.done_before} done earlier, {self.ok} ok, "
                f"{len(self.failed)} failed in {self.seconds:.1f} s "
                f"({self.megapixels_per_second:.2f} Mpixel/s while computing); "
                f"{self.raw_bytes / 1e6:.1f} MB -> {self.output_bytes / 1e6:.1f} MB "
                f"(ratio {ratio:.2f}:1); manifest {self.manifest}")


# --------------------------------------------------------------------------------------------
# Discovery


def _safe_name(text: str) -> str:
    """A file-name stem from header text (a SeriesInstanceUID): data, never a path."""
    keep = "".join(c if (c.isascii() and c.isalnum()) or c in "._-" else "_" for c in text)
    return keep.strip(".")[:120].strip(".") or "series"


def extra_output(output: str, index: int) -> str:
    """Where image ``index`` (from 1) of a unit that yields several images goes."""
    stem = output[: -len(".mdcx")] if output.endswith(".mdcx") else output
    return output if index == 0 else f"{stem}-{index + 1}.mdcx"


def _unique_outputs(units: list[Unit]) -> list[Unit]:
    """Give every unit outputs no other unit writes (a series may yield one image per file).

    File units mirror their input's relative path, which is unique; series outputs come from a
    header value, so two series (or a series and a file) could otherwise get the same name and
    one output would silently replace the other.
    """
    from dataclasses import replace

    taken = {u.output.casefold() for u in units if u.kind == "file"}
    out = []
    for unit in units:
        if unit.kind != "series":
            out.append(unit)
            continue
        stem, n = unit.output[: -len(".mdcx")], 1
        while True:
            candidate = f"{stem}.mdcx" if n == 1 else f"{stem}_{n}.mdcx"
            names = [extra_output(candidate, i).casefold() for i in range(len(unit.paths))]
            if not taken.intersection(names):
                break
            n += 1
        taken.update(names)
        out.append(replace(unit, output=candidate))
    return out


def discover(in_root: str | os.PathLike[str], per: str = "series") -> list[Unit]:
    """Every unit under ``in_root``, largest first; file names mean nothing for series."""
    from medcodec.container import looks_like_container
    from medcodec.io import format_from_name, walk_files
    from medcodec.io.dicom import looks_like_dicom, series_facts

    root = Path(in_root)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    if per not in ("series", "file"):
        raise MedcodecError("--per must be series or file")
    series: dict[tuple[str, str], list[Path]] = defaultdict(list)
    units: list[Unit] = []

    def file_unit(path: Path) -> Unit:
        rel = path.relative_to(root).as_posix()
        return Unit(rel, "file", (str(path),), f"{rel}.mdcx", path.stat().st_size)

    for path in walk_files(root, follow_links=True):
        if not path.is_file() or looks_like_container(path):
            continue
        if not looks_like_dicom(path):
            if path.name.lower().endswith(_IMAGE_SUFFIXES) and format_from_name(path):
                units.append(file_unit(path))  # a bad one fails in its task, recorded
            continue
        facts = series_facts(path) if per == "series" else None
        if facts is None or facts.multiframe or not facts.series_uid:
            units.append(file_unit(path))
        else:
            rel_folder = path.parent.relative_to(root).as_posix()
            series[(rel_folder, facts.series_uid)].append(path)
    for (rel_folder, uid), paths in series.items():
        prefix = "" if rel_folder == "." else f"{rel_folder}/"
        units.append(Unit(f"{prefix}series:{uid}", "series", tuple(str(p) for p in sorted(paths)),
                          f"{prefix}{_safe_name(uid)}.mdcx", sum(p.stat().st_size for p in paths)))
    units = _unique_outputs(sorted(units, key=lambda u: u.id))
    units.sort(key=lambda u: (-u.size, u.id))
    ids = [u.id for u in units]
    if len(set(ids)) != len(ids):
        raise InputError(f"{root}: two units share an id (this is a bug, please report it)")
    return units


# --------------------------------------------------------------------------------------------
# The task


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _pixels_sha1(pixels: np.ndarray) -> str:
    data = np.ascontiguousarray(pixels, dtype=pixels.dtype.newbyteorder("<"))
    return hashlib.sha1(data.tobytes()).hexdigest()


def _one_line(exc: BaseException) -> str:
    text = str(exc).replace("\n", " ").strip()
    return text if isinstance(exc, MedcodecError) else f"{type(exc).__name__}: {text}"


def process_unit(unit: Unit, out_root: str, settings: BatchSettings) -> dict[str, Any]:
    """Read, compress, write atomically, decode the written file and compare; never raises."""
    from medcodec._fs import atomic_write_bytes
    from medcodec.io import read_file
    from medcodec.io.dicom import read_dicom_series
    from medcodec.pipeline import compress, decompress

    start = time.perf_counter()
    row: dict[str, Any] = {
        "unit": unit.id, "kind": unit.kind, "inputs": len(unit.paths), "output": "",
        "status": "error", "error": "", "codec": settings.codec, "mode": settings.mode,
        "input_bytes": unit.size, "worker": f"{socket.gethostname()}:{os.getpid()}",
    }
    written: list[Path] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            images = (list(read_dicom_series(unit.paths)) if unit.kind == "series"
                      else [read_file(unit.paths[0])])
        if not images:
            raise InputError(f"{unit.id}: no image found")
        outputs, hashes, sha1s = [], [], []
        slices = raw = out_bytes = pixels = max_error = 0
        codec_names = set()
        if len(images) > max(1, len(unit.paths)):
            raise InputError(f"{unit.id}: {len(images)} images from {len(unit.paths)} files")
        for index, image in enumerate(images):
            rel = extra_output(unit.output, index)
            target = Path(out_root) / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            data = compress(image, codec=settings.codec, mode=settings.mode,
                            max_error=settings.max_error, quality=settings.quality)
            atomic_write_bytes(target, data, force=True)
            written.append(target)
            back = decompress(target)  # what is on disk, not what we meant to write
            error = int(np.max(np.abs(back.pixels.astype(np.int64)
                                      - image.pixels.astype(np.int64)), initial=0))
            bound = {"lossless": 0, "near-lossless": settings.max_error or 0}.get(settings.mode)
            if back.pixels.shape != image.pixels.shape or (bound is not None and error > bound):
                raise MedcodecError(f"{rel}: the written file decodes with max error {error} "
                                    f"(allowed {bound}); output removed")
            codec_names.add(_container_codec(data))
            outputs.append(rel)
            hashes.append(_sha256(target))
            sha1s.append(_pixels_sha1(image.pixels))
            slices += image.n_slices
            raw += image.pixels.nbytes
            out_bytes += len(data)
            pixels += image.pixels.size
            max_error = max(max_error, error)
        row.update(
            output=";".join(outputs), status="ok", codec="+".join(sorted(codec_names)),
            slices=slices, pixels=pixels, raw_bytes=raw, output_bytes=out_bytes,
            ratio=f"{raw / max(1, out_bytes):.4f}", bpp=f"{8 * out_bytes / max(1, pixels):.4f}",
            max_error=max_error, pixels_sha1=";".join(sha1s), output_sha256=";".join(hashes))
    except Exception as exc:  # one bad unit must not stop an archive-sized run
        for path in written:
            with contextlib.suppress(OSError):
                path.unlink()
        row["error"] = _one_line(exc)[:500]
    row["seconds"] = f"{time.perf_counter() - start:.3f}"
    row["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return row


def _container_codec(data: bytes) -> str:
    from medcodec.pipeline import open_container

    return str(open_container(data).header["codec"]["name"])


# --------------------------------------------------------------------------------------------
# Manifest


def read_manifest(path: str | os.PathLike[str]) -> dict[str, dict[str, str]]:
    """Last valid row per unit; a torn last line (killed mid-write) is ignored."""
    path = Path(path)
    if not path.is_file():
        return {}
    rows: dict[str, dict[str, str]] = {}
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        for row in csv.DictReader(fh):
            if None in row or any(row.get(k) is None for k in MANIFEST_FIELDS):
                continue
            if row["status"] not in STATUSES or not row["unit"]:
                continue
            if row["status"] == "ok" and not row["output_sha256"]:
                continue
            rows[row["unit"]] = row
    return rows


def _write_manifest(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    from medcodec._fs import atomic_path

    with atomic_path(path, force=True) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=MANIFEST_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)


def _intact(out_root: Path, row: dict[str, str]) -> bool:
    """The row's outputs exist and hash to what the row says."""
    outputs = row["output"].split(";") if row["output"] else []
    hashes = row["output_sha256"].split(";")
    if not outputs or len(outputs) != len(hashes):
        return False
    for rel, digest in zip(outputs, hashes, strict=True):
        target = inside(out_root, rel)  # a manifest is data: its paths stay under OUT_ROOT
        if target is None or not target.is_file() or _sha256(target) != digest:
            return False
    return True


def _remove_leftovers(out_root: Path) -> int:
    """Temporary files of writes that a killed run never renamed (atomic_path's names)."""
    removed = 0
    for folder, _, files in os.walk(out_root):
        for name in files:
            if name.startswith(".") and ".part" in name:
                with contextlib.suppress(OSError):
                    (Path(folder) / name).unlink()
                    removed += 1
    return removed


class _ManifestJournal:
    """Append one row per finished unit, flushed and fsync'ed: a kill loses at most one row."""

    def __init__(self, path: Path) -> None:
        self.fh = open(path, "a", newline="", encoding="utf-8")  # noqa: SIM115
        self.writer = csv.DictWriter(self.fh, fieldnames=MANIFEST_FIELDS, extrasaction="ignore")

    def add(self, row: dict[str, Any]) -> None:
        self.writer.writerow(row)
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def close(self) -> None:
        self.fh.close()


# --------------------------------------------------------------------------------------------
# Running


TaskFn = Callable[[Unit, str, BatchSettings], dict[str, Any]]
LOCAL_SCHEDULERS = ("local", "processes", "threads", "sync")


def _run_local(units: list[Unit], task: TaskFn, out_root: str, settings: BatchSettings,
               scheduler: str, workers: int | None,
               on_result: Callable[[dict[str, Any]], None]) -> None:
    import dask
    from dask.callbacks import Callback

    keys = {f"unit-{i:07d}" for i in range(len(units))}
    tasks = [dask.delayed(task, pure=False)(unit, out_root, settings,
                                            dask_key_name=f"unit-{i:07d}")
             for i, unit in enumerate(units)]

    class _Recorder(Callback):
        def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
            if key in keys:
                on_result(result)

    kind = {"local": "processes"}.get(scheduler, scheduler)
    options: dict[str, Any] = {"scheduler": kind}
    if kind != "sync":
        options["num_workers"] = workers or os.cpu_count() or 1
    if kind == "processes":
        options["chunksize"] = 1  # one unit per dispatch: balanced load, rows as they finish
    with _Recorder():
        dask.compute(*tasks, **options)


def _run_distributed(units: list[Unit], task: TaskFn, out_root: str, settings: BatchSettings,
                     address: str, on_result: Callable[[dict[str, Any]], None]) -> None:
    from distributed import Client, as_completed

    with Client(address, set_as_default=False) as client:
        # one message for all units; equal priorities run in submission order, so the
        # largest-first order of ``units`` holds and a long series never starts last
        keys = [f"medcodec-unit-{hashlib.sha1(u.id.encode()).hexdigest()[:16]}-{time.time_ns()}"
                for u in units]
        submitted = client.map(task, units, out_root=out_root, settings=settings, key=keys,
                               pure=False)
        futures = dict(zip(submitted, units, strict=True))
        # results travel with the completion message: no round trip per unit
        for future, result in as_completed(futures, loop=client.loop, with_results=True,
                                           raise_errors=False):
            unit = futures.pop(future)
            if isinstance(result, BaseException):  # a worker died (crash, out of memory)
                result = {"unit": unit.id, "kind": unit.kind, "inputs": len(unit.paths),
                          "status": "error", "error": _one_line(result)[:500],
                          "codec": settings.codec, "mode": settings.mode,
                          "input_bytes": unit.size,
                          "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            on_result(result)


def run_batch(in_root: str | os.PathLike[str], out_root: str | os.PathLike[str],
              settings: BatchSettings | None = None, scheduler: str = "local",
              workers: int | None = None, per: str = "series",
              manifest: str | os.PathLike[str] | None = None, progress: bool = True,
              task: TaskFn = process_unit) -> BatchSummary:
    """Compress every unit under ``in_root`` into ``out_root``; resume from the manifest.

    ``scheduler``: ``local`` (Dask processes), ``threads``, ``sync`` or a ``dask.distributed``
    scheduler address. ``task`` is the per-unit function (tests slow it down to kill a run).
    """
    settings = settings or BatchSettings()
    start = time.perf_counter()
    in_root, out_root = Path(in_root).resolve(), Path(out_root).resolve()
    if not in_root.is_dir():
        raise InputError(f"{in_root}: not a folder")
    if out_root == in_root or in_root in out_root.parents:
        raise OutputError(f"{out_root}: the output folder must not lie inside the input folder")
    out_root.mkdir(parents=True, exist_ok=True)
    manifest_path = Path(manifest) if manifest else out_root / MANIFEST_NAME
    units = discover(in_root, per)
    previous = read_manifest(manifest_path)
    _remove_leftovers(out_root)
    done = {u.id for u in units if u.id in previous and previous[u.id]["status"] == "ok"
            and _intact(out_root, previous[u.id])}
    _write_manifest(manifest_path, previous.values())  # compact: drops a torn last line
    pending = [u for u in units if u.id not in done]
    summary = BatchSummary(units=len(units), done_before=len(done), manifest=str(manifest_path))
    journal = _ManifestJournal(manifest_path)
    from tqdm import tqdm

    bar = tqdm(total=len(pending), desc="batch", unit="unit", disable=not progress or None,
               file=sys.stderr, leave=False)

    def on_result(row: dict[str, Any]) -> None:
        journal.add(row)
        previous[row["unit"]] = {k: str(row.get(k, "")) for k in MANIFEST_FIELDS}
        if row.get("status") == "ok":
            summary.ok += 1
            summary.raw_bytes += int(row.get("raw_bytes") or 0)
            summary.output_bytes += int(row.get("output_bytes") or 0)
            summary.pixels += int(row.get("pixels") or 0)
        else:
            summary.failed.append((row["unit"], str(row.get("error", ""))))
        bar.update(1)
        bar.set_postfix(failed=len(summary.failed), refresh=False)

    compute_start = time.perf_counter()
    try:
        if pending:
            if scheduler in LOCAL_SCHEDULERS:
                _run_local(pending, task, str(out_root), settings, scheduler, workers, on_result)
            else:
                _run_distributed(pending, task, str(out_root), settings, scheduler, on_result)
    finally:
        summary.compute_seconds = time.perf_counter() - compute_start
        bar.close()
        journal.close()
        _write_manifest(manifest_path, previous.values())
        summary.seconds = time.perf_counter() - start
    return summary


__all__ = [
    "MANIFEST_FIELDS",
    "BatchSettings",
    "BatchSummary",
    "Unit",
    "discover",
    "process_unit",
    "read_manifest",
    "run_batch",
]
