"""Code the slices of one image with every requested codec setting and keep what the page shows.

Every (slice, codec setting) pair is measured by the benchmark runner
(:func:`medcodec.bench.runner.measure_decoded`): the same rate search, checks, timings and
metrics as ``medcodec bench``, so a report row is a ``results.csv`` row. The runner also hands
back the decoded slice, which the page shows beside the original.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from medcodec import codecs
from medcodec.bench.runner import BenchImage, Task, measure_decoded
from medcodec.errors import InputError, MedcodecError
from medcodec.image import MedImage

#: (name, width, level) of the CT window presets, in Hounsfield units.
CT_PRESETS = (
    ("Lung", 1500.0, -600.0),
    ("Mediastinum", 350.0, 40.0),
    ("Bone", 2000.0, 300.0),
    ("Brain", 80.0, 40.0),
)
#: The DICOM elements of PS3.3 C.7.6.1.1.5 the page lists for each decoded version.
LOSSY_TAGS = (
    (0x00282110, "(0028,2110)", "Lossy Image Compression"),
    (0x00282112, "(0028,2112)", "Lossy Image Compression Ratio"),
    (0x00282114, "(0028,2114)", "Lossy Image Compression Method"),
    (0x00082111, "(0008,2111)", "Derivation Description"),
    (0x00080008, "(0008,0008)", "Image Type"),
)
DEFAULT_MAX_SLICES = 20


@dataclass
class Version:
    """One decoded version of the image: a codec at one setting, on every report slice."""

    task: Task
    rows: list[dict[str, Any]]  # one bench row per slice
    decoded: np.ndarray  # (slices, rows, cols) int64, stored values
    dicom: list[tuple[str, str, str]] = field(default_factory=list)  # (tag, name, value)

    @property
    def label(self) -> str:
        return f"{self.task.codec} {self.task.setting}"


@dataclass
class Report:
    """Everything :func:`medcodec.report.html.render` needs for an image report."""

    name: str
    description: str
    modality: str
    photometric: str
    slope: float
    intercept: float
    source_slices: list[int]  # index in the source volume of each report slice
    n_source_slices: int
    original: np.ndarray  # (slices, rows, cols) int64
    versions: list[Version]
    repeat: int
    notes: list[str] = field(default_factory=list)

    @property
    def is_ct(self) -> bool:
        return self.modality.upper() == "CT"

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [row for version in self.versions for row in version.rows]


def choose_slices(n_slices: int, slices: Sequence[int] | None = None,
                  max_slices: int = DEFAULT_MAX_SLICES) -> list[int]:
    """The slices a report shows: ``slices`` as given, else all of them up to ``max_slices``,
    else ``max_slices`` evenly spaced ones (first and last included)."""
    if slices is not None:
        bad = [i for i in slices if not 0 <= i < n_slices]
        if bad:
            raise InputError(f"slice {bad[0]} does not exist (the image has {n_slices})")
        return sorted(set(slices))
    if max_slices < 1:
        raise InputError(f"--max-slices must be at least 1, got {max_slices}")
    if n_slices <= max_slices:
        return list(range(n_slices))
    return sorted({round(float(x)) for x in np.linspace(0, n_slices - 1, max_slices)})


def read_one(path: str | os.PathLike[str]) -> MedImage:
    """The one image (or volume) at ``path``; a clear error when there are none or several."""
    from medcodec.io import read_all

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    images = read_all([path])
    first = next(images, None)
    if first is None:
        raise InputError(f"{path}: no images found")
    if next(images, None) is not None:
        raise InputError(f"{path}: holds several images or series; give one of them "
                         "(e.g. one series folder)")
    return first


def lossy_bookkeeping(image: MedImage, index: int, task: Task,
                      coded_bytes: int, original_bytes: int) -> list[tuple[str, str, str]]:
    """The lossy-compression elements a DICOM output of this version would carry.

    Built by the DICOM writer itself (:func:`medcodec.io.dicom.build_datasets`) from the
    ``lossy_compression`` meta the pipeline gives a decoded image, with the ratio of the coded
    bytes measured here; elements the output would not have read "(absent)".
    """
    from medcodec.io.dicom import build_datasets
    from medcodec.pipeline import lossy_compression_meta

    codec = codecs.get(task.codec)
    entry = {"name": task.codec, "mode": task.mode.value, "max_error": task.max_error,
             "dicom_method": codec.dicom_method}
    meta = dict(image.meta)
    meta.pop("lossy_compression", None)
    names = meta.pop("dicom_filenames", None)  # one output file: its own name only
    if meta.get("dicom_layout", "files") == "files" and isinstance(names, list) and len(
            names) == image.n_slices:
        meta["dicom_filenames"] = [names[index]]
    lossy = lossy_compression_meta(entry, original_bytes / max(1, coded_bytes))
    if lossy:
        meta["lossy_compression"] = lossy
    one = replace(image.slice(index), meta=meta)
    ds = build_datasets(one)[0][1]
    out = []
    for tag, label, name in LOSSY_TAGS:
        element = ds.get(tag)
        if element is None or element.value in (None, ""):
            value = "(absent)"
        elif isinstance(element.value, str | bytes | int | float):
            value = str(element.value)
        else:  # multi-valued: DICOM's backslash-separated form
            value = "\\".join(str(v) for v in element.value)
        out.append((label, name, value))
    return out


def build(
    image: MedImage,
    tasks: Sequence[Task],
    slices: Sequence[int] | None = None,
    max_slices: int = DEFAULT_MAX_SLICES,
    repeat: int = 1,
    name: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> Report:
    """Code the chosen slices of ``image`` with every task and collect the report.

    A codec setting that cannot carry some slice (e.g. 13 bits into a 12-bit codec) or fails is
    left out with a note; an error is raised only when nothing is left.
    """
    if not tasks:
        raise InputError("no codec setting to show")
    name = name or Path(image.source_path or "image").name
    indices = choose_slices(image.n_slices, slices, max_slices)
    notes = []
    if slices is None and len(indices) < image.n_slices:
        notes.append(f"{len(indices)} of {image.n_slices} slices, evenly spaced "
                     "(--slices or --max-slices choose others)")
    modality = image.modality or ""
    bench_images = [
        BenchImage(name if image.n_slices == 1 else f"{name}#{i:04d}", name, "", modality,
                   image.pixels[i], image.rescale_slope, image.rescale_intercept)
        for i in indices
    ]
    original = np.stack([b.pixels.astype(np.int64) for b in bench_images])
    versions = []
    for task in tasks:
        rows, decoded = [], []
        try:
            for bench_image in bench_images:
                row, restored = measure_decoded(bench_image, task, max(1, repeat))
                rows.append(row)
                decoded.append(restored)
                if progress:
                    progress(1)
        except MedcodecError as exc:  # unavailable, cannot carry this slice, or failed
            notes.append(f"{task.codec} {task.setting} left out: {exc}")
            if progress:
                progress(len(bench_images) - len(rows))
            continue
        version = Version(task, rows, np.stack(decoded))
        coded = sum(int(r["bytes"]) for r in rows)
        version.dicom = lossy_bookkeeping(image, indices[0], task, coded,
                                          sum(b.pixels.nbytes for b in bench_images))
        versions.append(version)
    if not versions:
        raise InputError("no codec setting could code this image: " + "; ".join(notes))
    return Report(
        name=name, description=image.describe(), modality=modality,
        photometric=image.photometric, slope=float(image.rescale_slope),
        intercept=float(image.rescale_intercept), source_slices=indices,
        n_source_slices=image.n_slices, original=original, versions=versions,
        repeat=max(1, repeat), notes=notes)


def mean(values: Sequence[Any]) -> float | None:
    """Mean of the finite numbers among ``values`` (None when there are none)."""
    finite = []
    for value in values:
        with contextlib.suppress(TypeError, ValueError):
            number = float(value)
            if math.isfinite(number):
                finite.append(number)
    return float(np.mean(finite)) if finite else None
