"""Bjontegaard delta rate and the rate search that puts codecs at the same bpp.

BD-rate follows ``shared/BENCHMARK.md``: PCHIP interpolation of log-rate as a function of PSNR,
averaged over the PSNR interval both curves cover; the interval is returned with the number,
because a BD-rate means little without the quality range it was taken over.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from medcodec.codecs.base import Knob

__all__ = ["RateSearchResult", "bd_rate", "clean_curve", "rate_search"]


def clean_curve(rates: Sequence[float], psnrs: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """A rate-distortion curve reduced to points an interpolation can use, sorted by rate.

    Points with a non-finite PSNR (lossless: inf) or a non-positive rate are dropped. The rest
    are sorted by rate and reduced to their upper envelope: a point is kept only if its PSNR is
    higher than that of every cheaper point (a setting that costs more bits for no gain, e.g. a
    codec's noisy top end, would otherwise make log-rate a non-function of PSNR). Of equal rates
    the best PSNR is kept. The result is strictly increasing in both rate and PSNR.
    """
    r = np.asarray(rates, dtype=np.float64).ravel()
    q = np.asarray(psnrs, dtype=np.float64).ravel()
    if r.shape != q.shape:
        raise ValueError(f"{r.size} rates but {q.size} PSNR values")
    keep = np.isfinite(r) & np.isfinite(q) & (r > 0)
    r, q = r[keep], q[keep]
    order = np.lexsort((-q, r))  # by rate, best PSNR first among equal rates
    out_r: list[float] = []
    out_q: list[float] = []
    for rate, quality in zip(r[order], q[order], strict=True):
        if out_q and (quality <= out_q[-1] or rate == out_r[-1]):
            continue
        out_r.append(float(rate))
        out_q.append(float(quality))
    return np.array(out_r), np.array(out_q)


def bd_rate(
    rate_a: Sequence[float],
    psnr_a: Sequence[float],
    rate_b: Sequence[float],
    psnr_b: Sequence[float],
) -> tuple[float, tuple[float, float]]:
    """BD-rate of curve A against anchor B in percent, and the PSNR interval (lo, hi) used.

    Negative means A needs fewer bits than B for the same PSNR. Each curve is first passed
    through :func:`clean_curve`; log-rate is interpolated over PSNR with a PCHIP (monotone,
    no overshoot) and integrated exactly over the shared interval. Raises ValueError when a
    curve has fewer than 2 usable points or the curves share no PSNR range.
    """
    from scipy.interpolate import PchipInterpolator

    ra, qa = clean_curve(rate_a, psnr_a)
    rb, qb = clean_curve(rate_b, psnr_b)
    for label, q in (("A", qa), ("B", qb)):
        if q.size < 2:
            raise ValueError(f"curve {label} needs at least 2 points with distinct finite PSNR")
    lo = max(qa[0], qb[0])
    hi = min(qa[-1], qb[-1])
    if not hi > lo:
        raise ValueError(
            f"curves do not overlap in PSNR: A covers {qa[0]:.2f}-{qa[-1]:.2f} dB, "
            f"B covers {qb[0]:.2f}-{qb[-1]:.2f} dB"
        )
    mean_a = PchipInterpolator(qa, np.log(ra)).integrate(lo, hi) / (hi - lo)
    mean_b = PchipInterpolator(qb, np.log(rb)).integrate(lo, hi) / (hi - lo)
    return float((math.exp(mean_a - mean_b) - 1.0) * 100.0), (float(lo), float(hi))


class RateSearchResult(NamedTuple):
    """Outcome of :func:`rate_search`: the setting whose bpp came closest, and that bpp."""

    setting: float
    bpp: float


def rate_search(
    encode_fn: Callable[[float], float],
    knob: Knob,
    target_bpp: float,
    *,
    rel_tol: float = 0.02,
    max_iter: int = 24,
    log_scale: bool | None = None,
) -> RateSearchResult:
    """Bisect a codec's quality knob until ``encode_fn(setting)`` (the bpp) meets a target.

    Assumes bpp is monotone in the knob (``knob.rate_increases`` gives the direction); a codec
    that is only roughly monotone still ends on the closest setting seen. Integer knobs are
    searched over integers, so the bisection also stops when two neighbouring settings bracket
    the target. ``log_scale`` (default: when ``knob.low > 0`` and ``high / low >= 100``, e.g.
    quantisation steps or distances) bisects the logarithm of the setting. When the target
    lies outside what the knob can reach, the nearer end is returned. Returns
    ``(setting, bpp)`` of the evaluation closest to the target (``int`` setting for integer
    knobs); the caller can compare ``bpp`` with the target to see whether it was reached.
    """
    if target_bpp <= 0:
        raise ValueError(f"target bpp must be positive, got {target_bpp}")
    if log_scale is None:
        log_scale = knob.low > 0 and knob.high / knob.low >= 100
    if log_scale and knob.low <= 0:
        raise ValueError("a log-scale search needs a knob whose low end is positive")

    seen: dict[float, float] = {}

    def evaluate(value: float) -> float:
        if knob.integer:
            value = float(round(value))
        if value not in seen:
            seen[value] = float(encode_fn(int(value) if knob.integer else value))
        return seen[value]

    def best() -> tuple[float, float]:
        value = min(seen, key=lambda v: (abs(seen[v] - target_bpp), v))
        return value, seen[value]

    def done(rate: float) -> bool:
        return abs(rate - target_bpp) <= rel_tol * target_bpp

    def result() -> RateSearchResult:
        value, rate = best()
        return RateSearchResult(int(value) if knob.integer else value, rate)

    # Orient so that "low" is the cheap end and "high" the expensive one.
    cheap, rich = (knob.low, knob.high) if knob.rate_increases else (knob.high, knob.low)
    if evaluate(cheap) >= target_bpp or evaluate(rich) <= target_bpp:
        return result()
    for _ in range(max_iter):
        if done(best()[1]):
            break
        if log_scale:
            mid = math.exp((math.log(cheap) + math.log(rich)) / 2.0)
        else:
            mid = (cheap + rich) / 2.0
        if knob.integer:
            mid = float(round(mid))
            if mid in (round(cheap), round(rich)):
                break  # neighbouring integers bracket the target
        if evaluate(mid) < target_bpp:
            cheap = mid
        else:
            rich = mid
    return result()
