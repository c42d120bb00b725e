"""Bjontegaard delta rate.

BD-rate follows ``shared/BENCHMARK.md``: PCHIP interpolation of log-rate as a function of PSNR,
averaged over the PSNR interval both curves cover; the interval is returned with the number,
because a BD-rate means little without the quality range it was taken over.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["bd_rate", "clean_curve"]


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
