"""The paper's Table 1 on CT: the decoder's 3x3 filter fitted by gradient, least squares,
grey-wolf, PSO and DE, against no filter: ``python -m medcodec.bench.filters``.

The learned lossy codec (:mod:`medcodec.models.wavelet_latent`) ends with an integer 3x3 filter
(taps / 2**12 summing to 2**12, one tap set per rate band of the quantiser step). Every method
here fits the same thing: per rate band, the 8 free taps (the centre tap makes the sum) that
minimise the mean squared error of filtered decoded slices against the originals, on
**training** slices coded at the model's operating steps, with the filter exactly as the
decoder runs it (integer taps, rounding, clipping) on a fixed sample of pixels. The fitted taps
are then scored on **validation** slices: PSNR and SSIM as ../shared/BENCHMARK.md defines them,
and BD-rate against no filter. The filter does not change the stream's size, so every method
has the same bpp at a step and differs only in distortion.

Rows:

- ``none``: the filter off (what the shipped model does);
- ``shipped``: the taps shipped in the weights (a least-squares fit at training time on other
  slices, one random step each);
- ``least squares``: the closed-form minimiser of the same objective on this run's samples
  (before rounding the taps to integers);
- ``gradient``: the paper's trainable filter, full-batch Adam on the squared error;
- ``grey wolf``, ``PSO``, ``DE``: :mod:`medcodec.optim`, the same number of evaluations each,
  the free taps searched in [-0.25, 0.25], one agent starting at the identity filter (the
  others uniformly at random), so none can end worse than no filter on the training sample.

Fitting cost is wall seconds and objective evaluations (gradient steps for ``gradient``),
summed over the rate bands; coding the training slices, shared by all, is reported apart.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medcodec.bench import metrics
from medcodec.bench.bdrate import bd_rate
from medcodec.image import effective_bits
from medcodec.models import wavelet_latent as wl

#: Quantiser steps the slices are coded at: two per rate band of the filter
#: (bands split at wl.FILTER_BANDS = 4, 16, 64), from about 3 bpp down to about 0.2 bpp.
DEFAULT_STEPS = (2.0, 3.0, 6.0, 10.0, 24.0, 40.0, 96.0, 160.0)
TAP_BOUND = 0.25  # search box of each free tap, in units of 1 (= 4096 / 4096)
FREE = [k for k in range(9) if k != 4]


@dataclass
class Coded:
    """One slice coded at one step, decoded without the filter."""

    image: str
    step: float
    bits: int
    low: int
    original: np.ndarray  # stored values (int64)
    decoded: np.ndarray  # shifted domain, unfiltered (int64)
    bpp: float
    slope: float = 1.0
    intercept: float = 0.0


def taps_from(free: np.ndarray) -> np.ndarray:
    """Integer taps (sum 4096) from the 8 free taps in units of 1."""
    t = np.zeros(9, np.int64)
    t[FREE] = np.round(np.asarray(free, np.float64) * 4096).astype(np.int64)
    t[4] = 4096 - int(t.sum())
    return t


def code_slices(model: wl.WaveletModel, images: Sequence, steps: Sequence[float],
                log: Callable[[str], None] = print) -> list[Coded]:
    """Encode every image at every step, decode without the filter."""
    out = []
    for n, image in enumerate(images):
        pixels = image.pixels.astype(np.int64)
        low = int(pixels.min())
        bits = effective_bits(pixels)
        shifted = pixels - low
        for step in steps:
            data = model.encode(shifted, bits, float(step))
            s, levels, q_all, flags = model.decode_coefficients(data, shifted.shape)
            decoded = model.synthesise(q_all, s, levels, shifted.shape, bits, use_filter=False,
                                       dependent=wl.is_dependent(flags))
            out.append(Coded(image.id, float(step), bits, low, pixels, decoded,
                             8 * len(data) / pixels.size, image.slope, image.intercept))
        log(f"  coded {n + 1}/{len(images)}: {image.id}")
    return out


class BandObjective:
    """Exact integer filter on a fixed pixel sample of one rate band: MSE as a function of taps."""

    def __init__(self, coded: Sequence[Coded], per_slice: int, rng: np.random.Generator,
                 band: int = 0):
        self.band = band
        cols, target, top = [], [], []
        for c in coded:
            h, w = c.decoded.shape
            p = np.pad(c.decoded, 1, mode="edge")
            pick = rng.choice(h * w, size=min(per_slice, h * w), replace=False)
            rr, cc = np.divmod(pick, w)
            cols.append(np.stack([p[rr + r, cc + k] for r in range(3) for k in range(3)], 1))
            target.append((c.original - c.low).ravel()[pick])
            top.append(np.full(pick.size, (1 << c.bits) - 1))
        self.a = np.concatenate(cols).astype(np.float64)  # integers < 2**17: exact in float64
        self.y = np.concatenate(target).astype(np.float64)
        self.top = np.concatenate(top).astype(np.float64)
        self.evaluations = 0

    def mse_taps(self, taps: np.ndarray) -> float:
        self.evaluations += 1
        acc = self.a @ taps.astype(np.float64) + 2048.0
        pred = np.clip(np.floor(acc / 4096.0), 0, self.top)
        return float(np.mean((pred - self.y) ** 2))

    def __call__(self, free: np.ndarray) -> float:
        return self.mse_taps(taps_from(free))

    def least_squares(self) -> np.ndarray:
        centre = self.a[:, 4:5]
        t, *_ = np.linalg.lstsq(self.a[:, FREE] - centre, self.y - centre[:, 0], rcond=None)
        return t

    def gradient(self, iterations: int, lr: float = 2e-3) -> np.ndarray:
        """Adam on the (unrounded) squared error, from the identity filter."""
        d = self.a[:, FREE] - self.a[:, 4:5]
        r0 = self.y - self.a[:, 4]
        x = np.zeros(len(FREE))
        m = np.zeros_like(x)
        v = np.zeros_like(x)
        scale = 1.0 / max(float(np.mean(d * d)), 1e-9)  # tap units: keep steps well sized
        for i in range(1, iterations + 1):
            g = -2.0 * (d.T @ (r0 - d @ x)) / len(r0) * scale
            m = 0.9 * m + 0.1 * g
            v = 0.999 * v + 0.001 * g * g
            x -= lr * (m / (1 - 0.9**i)) / (np.sqrt(v / (1 - 0.999**i)) + 1e-12)
            self.evaluations += 1
        return x


def fit_all(train: Sequence[Coded], agents: int, iterations: int, per_slice: int, seed: int,
            gradient_steps: int, log: Callable[[str], None] = print
            ) -> dict[str, dict[str, object]]:
    """method -> {"taps": (bands, 9) ints, "seconds", "evaluations", "train_mse"}."""
    from medcodec.optim import differential_evolution, grey_wolf, particle_swarm

    bands = len(wl.FILTER_BANDS) + 1
    by_band: dict[int, list[Coded]] = {}
    for c in train:
        by_band.setdefault(wl.filter_band(c.step), []).append(c)
    rng = np.random.default_rng(seed)
    objectives = {b: BandObjective(cs, per_slice, rng, b) for b, cs in sorted(by_band.items())}
    lo, hi = [-TAP_BOUND] * 8, [TAP_BOUND] * 8
    identity = np.zeros(8)  # one agent starts at the identity filter, as the gradient does
    methods: dict[str, Callable[[BandObjective], np.ndarray]] = {
        "least squares": lambda f: f.least_squares(),
        "gradient": lambda f: f.gradient(gradient_steps),
        "grey wolf": lambda f: grey_wolf(f, lo, hi, wolves=agents, iterations=iterations,
                                         seed=seed + f.band, x0=identity).x,
        "PSO": lambda f: particle_swarm(f, lo, hi, particles=agents, iterations=iterations,
                                        seed=seed + f.band, x0=identity).x,
        "DE": lambda f: differential_evolution(f, lo, hi, population=agents,
                                               iterations=iterations, seed=seed + f.band,
                                               x0=identity).x,
    }
    out: dict[str, dict[str, object]] = {}
    for name, fit in methods.items():
        taps = np.zeros((bands, 9), np.int64)
        taps[:, 4] = 4096
        seconds, evaluations, mse = 0.0, 0, []
        for band, f in objectives.items():
            f.evaluations = 0
            start = time.perf_counter()
            taps[band] = taps_from(fit(f))
            seconds += time.perf_counter() - start
            evaluations += f.evaluations
            mse.append(f.mse_taps(taps[band]))
        out[name] = {"taps": taps, "seconds": seconds, "evaluations": evaluations,
                     "train_mse": float(np.mean(mse))}
        log(f"  {name}: {seconds:.1f} s, {evaluations} evaluations, "
            f"training MSE {np.mean(mse):.3f}")
    ident = np.zeros(9, np.int64)
    ident[4] = 4096
    out["none"] = {"taps": None, "seconds": 0.0, "evaluations": 0,
                   "train_mse": float(np.mean([f.mse_taps(ident) for f in objectives.values()]))}
    return out


def score(val: Sequence[Coded], taps: np.ndarray | None) -> list[dict[str, float]]:
    """Per (slice, step): bpp and the BENCHMARK.md metrics of the filtered decode."""
    rows = []
    for c in val:
        top = (1 << c.bits) - 1
        pixels = c.decoded if taps is None else wl.apply_filter(
            c.decoded, taps[wl.filter_band(c.step)], top)
        restored = pixels + c.low
        rows.append({
            "image": c.image, "step": c.step, "bpp": c.bpp,
            "psnr": metrics.psnr(c.original, restored, c.bits),
            "ssim": metrics.ssim(c.original, restored, c.bits),
            "psnr_soft8": metrics.psnr_soft8(c.original, restored, c.slope, c.intercept),
            "ssim_soft8": metrics.ssim_soft8(c.original, restored, c.slope, c.intercept),
        })
    return rows


def _curve(rows: Sequence[dict[str, float]], metric: str) -> tuple[list[float], list[float]]:
    steps = sorted({r["step"] for r in rows}, reverse=True)  # low rate first
    rates = [float(np.mean([r["bpp"] for r in rows if r["step"] == s])) for s in steps]
    values = [float(np.mean([r[metric] for r in rows if r["step"] == s])) for s in steps]
    return rates, values


ORDER = ["none", "shipped", "least squares", "gradient", "grey wolf", "PSO", "DE"]


def table(fits: dict[str, dict[str, object]], scores: dict[str, list[dict[str, float]]]
          ) -> list[dict[str, object]]:
    out = []
    for name in [n for n in ORDER if n in scores]:
        rows = scores[name]
        entry: dict[str, object] = {"method": name}
        for metric in ("psnr", "psnr_soft8", "ssim", "ssim_soft8"):
            entry[metric] = float(np.mean([r[metric] for r in rows]))
        for anchor in ("none", "shipped"):
            if name == anchor or anchor not in scores:
                entry[f"bd_vs_{anchor}"] = 0.0 if name == anchor else math.nan
                continue
            try:
                bd, _ = bd_rate(*_curve(rows, "psnr"), *_curve(scores[anchor], "psnr"))
            except ValueError:
                bd = math.nan
            entry[f"bd_vs_{anchor}"] = bd
        fit = fits.get(name, {})
        entry["train_mse"] = fit.get("train_mse", math.nan)
        entry["fit_s"] = fit.get("seconds", math.nan)
        entry["evaluations"] = fit.get("evaluations", "")
        out.append(entry)
    return out


def markdown(rows: Sequence[dict[str, object]], n_val: int, n_train: int, code_s: float) -> str:
    lines = [
        f"Validation: {n_val} coded slice-steps; training: {n_train} (coding them: "
        f"{code_s:.0f} s, shared by every method).",
        "",
        "| filter | PSNR dB | psnr_soft8 dB | SSIM | ssim_soft8 | BD-rate vs none | "
        "BD-rate vs shipped | training MSE | fit s | evaluations |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['psnr']:.3f} | {r['psnr_soft8']:.3f} | {r['ssim']:.5f} | "
            f"{r['ssim_soft8']:.5f} | {r['bd_vs_none']:+.2f}% | {r['bd_vs_shipped']:+.2f}% | "
            f"{r['train_mse']:.3f} | {r['fit_s']:.2f} | {r['evaluations']} |")
    return "\n".join(lines) + "\n"


def plot(scores: dict[str, list[dict[str, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    base = _curve(scores["none"], "psnr")
    for name in [n for n in ORDER if n in scores]:
        rates, values = _curve(scores[name], "psnr")
        axes[0].plot(rates, values, marker="o", ms=3, label=name)
        axes[1].plot(rates, np.array(values) - np.array(base[1]), marker="o", ms=3, label=name)
    axes[0].set(xlabel="bits per pixel", ylabel="PSNR dB (peak 2^B-1)",
                title="validation CT, wavelet model")
    axes[1].set(xlabel="bits per pixel", ylabel="PSNR gain over no filter, dB",
                title="decoder 3x3 filter, per method")
    axes[1].axhline(0, color="k", lw=0.5)
    for ax in axes:
        ax.grid(True, alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _images(paths: Sequence[str], stride: int, limit: int | None) -> list:
    from medcodec.bench import datasets, runner

    return [im for im in runner.iter_images(datasets.discover(paths), stride=stride, limit=limit)
            if im.pixels.ndim == 2 and min(im.pixels.shape) >= 64]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", nargs="+", required=True, help="training CT folders/files")
    p.add_argument("--val", nargs="+", required=True, help="validation CT folders/files")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--train-stride", type=int, default=8)
    p.add_argument("--train-limit", type=int, default=24)
    p.add_argument("--val-stride", type=int, default=8)
    p.add_argument("--val-limit", type=int, default=None)
    p.add_argument("--steps", default=",".join(f"{s:g}" for s in DEFAULT_STEPS))
    p.add_argument("--agents", type=int, default=20)
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--gradient-steps", type=int, default=2000)
    p.add_argument("--pixels", type=int, default=8000, help="sampled pixels per slice-step")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    from medcodec.codecs.learned import DEFAULT_LOSSY_WEIGHTS, load_model

    steps = [float(s) for s in a.steps.split(",")]
    model, _ = load_model("wavelet", DEFAULT_LOSSY_WEIGHTS)
    shipped = np.asarray(model.filter_taps, np.int64).copy()
    a.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    print("coding training slices")
    train = code_slices(model, _images(a.train, a.train_stride, a.train_limit), steps)
    code_s = time.perf_counter() - start
    print("fitting")
    fits = fit_all(train, a.agents, a.iterations, a.pixels, a.seed, a.gradient_steps)
    fits["shipped"] = {"taps": shipped, "seconds": math.nan, "evaluations": "",
                       "train_mse": math.nan}
    print("coding validation slices")
    val = code_slices(model, _images(a.val, a.val_stride, a.val_limit), steps)
    scores = {name: score(val, fit["taps"]) for name, fit in fits.items()}  # type: ignore[arg-type]
    rows = table(fits, scores)
    text = markdown(rows, len(val), len(train), code_s)
    print(text)
    (a.out / "filters.md").write_text(text)
    with open(a.out / "filters.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(a.out / "per_slice.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["method", "image", "step", "bpp", "psnr", "psnr_soft8", "ssim",
                         "ssim_soft8"])
        for name, rs in scores.items():
            for r in rs:
                writer.writerow([name, r["image"], r["step"], f"{r['bpp']:.5f}",
                                 f"{r['psnr']:.4f}", f"{r['psnr_soft8']:.4f}",
                                 f"{r['ssim']:.6f}", f"{r['ssim_soft8']:.6f}"])
    (a.out / "taps.json").write_text(json.dumps(
        {n: None if f["taps"] is None else np.asarray(f["taps"]).tolist()
         for n, f in fits.items()}, indent=1))
    plot(scores, a.out / "filters.png")
    print(f"wrote {a.out}/filters.md, filters.csv, per_slice.csv, taps.json, filters.png "
          f"({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
