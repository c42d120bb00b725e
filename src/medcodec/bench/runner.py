"""``medcodec bench``: every codec on every image, measured as ../shared/BENCHMARK.md defines it.

One row per image x codec x setting goes to ``results.csv`` as soon as it is measured, so an
interrupted run resumes where it stopped. Images are 2-D slices taken from the volumes the dataset
adapters find; the work is spread over a process pool (one image per task), and a failing image is
recorded in ``failures.csv`` without stopping the run.
"""

from __future__ import annotations

import csv
import math
import os
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medcodec import codecs
from medcodec.bench import metrics
from medcodec.bench.datasets import VolumeRef
from medcodec.codecs.base import Codec, CodingSpec, Mode
from medcodec.codecs.rate import rate_search
from medcodec.codecs.slice import restore, to_unsigned
from medcodec.errors import CodecUnavailableError, MedcodecError
from medcodec.image import effective_bits

COLUMNS = [
    "image", "series", "patient", "modality", "rows", "cols", "bits", "codec", "mode", "setting",
    "knob", "bytes", "bpp", "ratio16", "psnr", "psnr_lung8", "psnr_soft8", "ssim", "ssim_soft8",
    "max_abs_err", "enc_ms", "dec_ms",
]
DEFAULT_BPP = (0.25, 0.5, 1.0, 2.0, 2.5)
DEFAULT_MAX_ERRORS = (1, 2, 4)


@dataclass
class BenchImage:
    """One 2-D image and what the metrics need to know about it."""

    id: str
    series: str
    patient: str
    modality: str
    pixels: np.ndarray
    slope: float = 1.0
    intercept: float = 0.0


@dataclass(frozen=True)
class Task:
    codec: str
    mode: Mode
    setting: str
    max_error: int = 0
    target_bpp: float | None = None
    #: A fixed knob value (codecs with a ladder of trained models), instead of a rate search.
    quality: float | None = None


def plan_tasks(codec_names: Sequence[str], mode: str, max_errors: Sequence[int],
               bpps: Sequence[float]) -> list[Task]:
    """The (codec, setting) pairs to run on each image; codecs without the mode are skipped."""
    tasks = []
    for name in codec_names:
        cls = codecs.get(name).__class__
        modes = [Mode(mode)] if mode != "all" else list(Mode)
        for m in modes:
            if m not in cls.modes:
                continue
            if m is Mode.LOSSLESS:
                tasks.append(Task(name, m, "lossless"))
            elif m is Mode.NEAR_LOSSLESS:
                tasks.extend(Task(name, m, f"D={d}", max_error=d) for d in max_errors)
            elif getattr(cls, "ladder", None):
                tasks.extend(Task(name, m, f"q={q}", quality=q) for q in cls.ladder)
            elif cls.knob is not None or getattr(cls, "ours", False):
                tasks.extend(Task(name, m, f"bpp={b:g}", target_bpp=b) for b in bpps)
    return tasks


def iter_images(volumes: Sequence[VolumeRef], stride: int = 1,
                limit: int | None = None,
                on_error: Callable[[str, str], None] | None = None) -> Iterator[BenchImage]:
    """2-D images of the volumes: every ``stride``-th slice, at most ``limit`` in all."""
    count = 0
    for volume in volumes:
        try:
            image = volume.load()
        except MedcodecError as exc:
            if on_error:
                on_error(volume.id, str(exc))
            continue
        for index in range(0, image.n_slices, stride):
            if limit is not None and count >= limit:
                return
            name = volume.id if image.n_slices == 1 else f"{volume.id}#{index:04d}"
            yield BenchImage(name, volume.id, volume.patient, image.modality or "",
                             image.pixels[index], image.rescale_slope, image.rescale_intercept)
            count += 1


def _timed(fn: Callable[[], Any], repeat: int) -> tuple[Any, float]:
    """Result and median wall time (ms) of ``repeat`` runs after one warm-up."""
    result = fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, 1000.0 * float(np.median(times)) if times else math.nan


def _coder(codec: Codec, shifted: np.ndarray, bits: int) -> tuple[Callable[[CodingSpec], bytes],
                                                                    Callable[[bytes], np.ndarray]]:
    """Encode/decode functions of ``codec`` on the shifted image (the codec's own stream)."""

    def encode(spec: CodingSpec) -> bytes:
        return codec.encode(shifted, bits, spec)

    def decode(data: bytes) -> np.ndarray:
        return codec.decode(data, shifted.shape, bits)

    return encode, decode


def measure(image: BenchImage, task: Task, repeat: int = 3) -> dict[str, Any]:
    """One row of results.csv: code, decode, check and score one image with one setting."""
    return measure_decoded(image, task, repeat)[0]


def measure_decoded(image: BenchImage, task: Task,
                    repeat: int = 3) -> tuple[dict[str, Any], np.ndarray]:
    """:func:`measure`, and the decoded image (stored values, int64) it scored."""
    pixels = image.pixels.astype(np.int64)
    shifted, low, bits = to_unsigned(pixels, effective_bits(pixels))
    codec = codecs.get(task.codec)
    codec.check(bits, CodingSpec(task.mode, task.max_error, 0.0 if task.mode is Mode.LOSSY
                                 else None))
    encode, decode = _coder(codec, shifted, bits)
    knob_value: float | None = None
    if task.mode is Mode.LOSSY and task.quality is not None:
        knob_value = task.quality
        spec = CodingSpec(Mode.LOSSY, 0, knob_value)
    elif task.mode is Mode.LOSSY:
        knob = codec.knob
        rows, cols = shifted.shape

        def bpp_at(value: float) -> float:
            return 8 * len(encode(CodingSpec(Mode.LOSSY, 0, value))) / (rows * cols)

        knob_value = rate_search(bpp_at, knob, task.target_bpp).setting
        spec = CodingSpec(Mode.LOSSY, 0, knob_value)
    else:
        spec = CodingSpec(task.mode, task.max_error)
    data, enc_ms = _timed(lambda: encode(spec), repeat)
    decoded, dec_ms = _timed(lambda: decode(data), repeat)
    restored = restore(decoded, low, bits, np.dtype(np.int64))
    error = int(np.abs(restored - pixels).max())
    if task.mode is Mode.LOSSLESS and error:
        raise MedcodecError(f"{task.codec} lossless decode differs (max error {error})")
    if task.mode is Mode.NEAR_LOSSLESS and error > task.max_error:
        raise MedcodecError(f"{task.codec} near-lossless bound broken ({error} > {task.max_error})")
    rows, cols = pixels.shape
    bpp = 8 * len(data) / (rows * cols)
    is_ct = image.modality.upper() == "CT"
    row: dict[str, Any] = {
        "image": image.id, "series": image.series, "patient": image.patient,
        "modality": image.modality, "rows": rows, "cols": cols, "bits": bits,
        "codec": task.codec, "mode": task.mode.value, "setting": task.setting,
        "knob": "" if knob_value is None else f"{knob_value:.6g}",
        "bytes": len(data), "bpp": bpp, "ratio16": 16 / bpp if bpp else math.inf,
        "max_abs_err": error, "enc_ms": enc_ms, "dec_ms": dec_ms,
        "psnr": "", "psnr_lung8": "", "psnr_soft8": "", "ssim": "", "ssim_soft8": "",
    }
    if task.mode is not Mode.LOSSLESS:
        row["psnr"] = metrics.psnr(pixels, restored, bits)
        row["ssim"] = metrics.ssim(pixels, restored, bits)
        if is_ct:
            row["psnr_lung8"] = metrics.psnr_lung8(pixels, restored, image.slope, image.intercept)
            row["psnr_soft8"] = metrics.psnr_soft8(pixels, restored, image.slope, image.intercept)
            row["ssim_soft8"] = metrics.ssim_soft8(pixels, restored, image.slope, image.intercept)
    return row, restored


def _run_image(image: BenchImage, tasks: Sequence[Task], repeat: int) -> tuple[list[dict], list]:
    """Rows for one image, and (image, task, reason) for tasks that failed or were skipped.

    A codec that cannot carry the image (e.g. 13 bits into a 12-bit codec) is "skipped", which
    the report lists apart from real failures.
    """
    rows, failures = [], []
    for task in tasks:
        try:
            rows.append(measure(image, task, repeat))
        except CodecUnavailableError as exc:
            failures.append((image.id, f"{task.codec} {task.setting}", f"skipped: {exc}"))
        except Exception as exc:  # one bad codec/image pair must not stop the run
            detail = str(exc) if isinstance(exc, MedcodecError) else (
                f"{type(exc).__name__}: {exc} | {traceback.format_exc(limit=3)!r}")
            failures.append((image.id, f"{task.codec} {task.setting}", detail))
    return rows, failures


def _key(row: dict[str, Any]) -> tuple[str, str, str, str]:
    return str(row["image"]), str(row["codec"]), str(row["mode"]), str(row["setting"])


def load_results(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def run(
    images: Iterator[BenchImage],
    tasks: Sequence[Task],
    out_dir: Path,
    workers: int = 2,
    repeat: int = 3,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[dict[str, str]], list[tuple[str, str, str]]]:
    """Measure every pending (image, task) pair; returns all rows (old and new) and failures."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / "results.csv"
    existing = load_results(results_path)
    done = {_key(r) for r in existing}
    new_file = not results_path.exists()
    failures: list[tuple[str, str, str]] = []
    with open(results_path, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
        if new_file:
            writer.writeheader()

        def record(rows: list[dict], fails: list) -> None:
            for row in rows:
                writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v)
                                 for k, v in row.items()})
            fh.flush()
            failures.extend(fails)
            if progress:
                progress(1)

        pending: set[Future] = set()
        pool = ProcessPoolExecutor(workers) if workers > 1 else None
        try:
            for image in images:
                todo = [t for t in tasks
                        if (image.id, t.codec, t.mode.value, t.setting) not in done]
                if not todo:
                    if progress:
                        progress(1)
                    continue
                if pool is None:
                    record(*_run_image(image, todo, repeat))
                    continue
                pending.add(pool.submit(_run_image, image, todo, repeat))
                while len(pending) >= 2 * workers:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        record(*future.result())
            for future in pending:
                record(*future.result())
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
    if failures:
        fail_path = out_dir / "failures.csv"
        with open(fail_path, "a", newline="") as fh:
            csv.writer(fh).writerows(failures)
    return load_results(results_path), failures


def worker_count(requested: int | None) -> int:
    return max(1, requested if requested else min(2, os.cpu_count() or 1))
