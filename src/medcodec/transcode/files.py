"""Files, folders and containers in; checked DICOM files out, never outside the output folder."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medcodec._fs import atomic_path, child_path
from medcodec.errors import InputError, OutputError
from medcodec.transcode.dataset import transcode_dataset
from medcodec.transcode.options import TranscodeOptions, TranscodeResult


@dataclass(frozen=True)
class _Job:
    source: Path
    kind: str  # "dicom" or "container"
    dest: Path
    #: True when dest is a file even for a container (single-file mode).
    dest_is_file: bool


def _read_dataset(path: Path) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pydicom

            return pydicom.dcmread(path, force=True)
    except Exception as exc:
        raise InputError(f"{path}: not a readable DICOM file ({exc})") from None


def _kind(path: Path) -> str | None:
    from medcodec.container import looks_like_container
    from medcodec.io.dicom import looks_like_dicom

    if looks_like_container(path):
        return "container"
    return "dicom" if looks_like_dicom(path) else None


def plan(inputs: Iterable[str | os.PathLike[str]], output: str | os.PathLike[str]) -> list[_Job]:
    """Every (source, destination) pair; folders are mirrored under ``output``."""
    inputs = [Path(p) for p in inputs]
    output = Path(output)
    single = (len(inputs) == 1 and inputs[0].is_file() and not output.is_dir()
              and not str(output).endswith(os.sep))
    jobs: list[_Job] = []
    for item in inputs:
        if item.is_dir():
            found = 0
            for root, dirs, files in os.walk(item):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    path = Path(root) / name
                    kind = None if name.startswith(".") else _kind(path)
                    if kind is None:
                        continue
                    found += 1
                    rel = path.relative_to(item)
                    dest = output / (rel.with_suffix("") if kind == "container" else rel)
                    jobs.append(_Job(path, kind, dest, False))
            if not found:
                raise InputError(f"{item}: no DICOM files or .mdcx containers in this folder")
        elif item.is_file():
            kind = _kind(item)
            if kind is None:
                raise InputError(f"{item}: neither DICOM nor a .mdcx container")
            if single:
                jobs.append(_Job(item, kind, output, True))
            else:
                name = item.name[: -len(".mdcx")] if kind == "container" and \
                    item.name.endswith(".mdcx") else item.name
                jobs.append(_Job(item, kind, output / name, False))
        else:
            raise InputError(f"{item}: no such file or folder")
    seen: dict[Path, Path] = {}
    for job in jobs:
        if job.dest in seen:
            raise OutputError(f"{job.dest}: both {seen[job.dest]} and {job.source} would be "
                              "written there")
        seen[job.dest] = job.source
    return jobs


def _job_datasets(job: _Job) -> list[tuple[Path, Any]]:
    """(destination file, dataset) pairs of one job."""
    if job.kind == "dicom":
        return [(job.dest, _read_dataset(job.source))]
    from medcodec.io.dicom import build_datasets
    from medcodec.pipeline import decompress

    pairs = build_datasets(decompress(job.source))
    if len(pairs) == 1 and (job.dest_is_file or job.dest.suffix.lower() in (".dcm", ".dicom")):
        return [(job.dest, pairs[0][1])]
    if job.dest_is_file and job.dest.suffix:
        raise OutputError(f"{job.dest}: {job.source} holds {len(pairs)} DICOM files; give a "
                          "folder as output")
    # the names come from the container: data, never paths (plain names, each once)
    out, seen = [], set()
    for name, ds in pairs:
        dest = child_path(job.dest, name, f"DICOM file name in {job.source}")
        if name.casefold() in seen:
            raise OutputError(f"{job.dest}: {job.source} names the DICOM file {name!r} twice; "
                              "nothing of it was written")
        seen.add(name.casefold())
        out.append((dest, ds))
    return out


def transcode(inputs: Iterable[str | os.PathLike[str]], output: str | os.PathLike[str],
              options: TranscodeOptions, force: bool = False,
              progress: Callable[[int], None] | None = None) -> list[TranscodeResult]:
    """Transcode files, folders and containers; each output is checked, then written atomically."""
    jobs = plan(inputs, output)
    for job in jobs:  # fail before any work rather than after an hour of it
        if job.kind == "dicom" and job.dest.exists() and not force:
            raise OutputError(f"{job.dest}: output exists (use --force to overwrite)")
    results = []
    for job in jobs:
        pairs = _job_datasets(job)
        for dest, _ in pairs:  # a container's files: all or none refused for existing
            if dest.exists() and not force:
                raise OutputError(f"{dest}: output exists (use --force to overwrite)")
        for dest, ds in pairs:
            blob, result = transcode_dataset(ds, options, source=str(job.source))
            dest.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(dest, force) as tmp:
                tmp.write_bytes(blob)
            result.output = str(dest)
            results.append(result)
        if progress:
            progress(1)
    return results
