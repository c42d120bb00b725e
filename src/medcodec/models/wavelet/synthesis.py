"""The decoder's last step: the trainable 3x3 spatial filter in integers, one tap set per rate
band."""

from __future__ import annotations

import numpy as np

FILTER_BANDS = np.array([4.0, 16.0, 64.0])  # step thresholds between filter tap sets


def filter_band(step: float) -> int:
    return int(np.searchsorted(FILTER_BANDS, step))


#: Fraction bits of the decoder filter's integer taps: a tap of FILTER_ONE is 1.0.
FILTER_FRACTION_BITS = 12


FILTER_ONE = 1 << FILTER_FRACTION_BITS


def apply_filter(pixels: np.ndarray, taps: np.ndarray, top: int) -> np.ndarray:
    """The decoder's 3x3 spatial filter in integers (taps / FILTER_ONE): exact everywhere."""
    h, w = pixels.shape
    p = np.pad(pixels, 1, mode="edge")
    acc = np.full((h, w), FILTER_ONE // 2, np.int64)  # rounds the shift below
    for k in range(9):
        r, c = divmod(k, 3)
        acc += int(taps[k]) * p[r:r + h, c:c + w]
    return np.clip(acc >> FILTER_FRACTION_BITS, 0, top)
