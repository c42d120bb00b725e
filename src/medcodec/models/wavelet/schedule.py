"""The band schedule's arithmetic: decomposition depth, per-band quantiser steps, dead-zone
quantisation and reconstruction, synthesis gains, and the checkerboard phases of a band."""

from __future__ import annotations

import functools

import numpy as np

from medcodec.transforms.wavelet import WAVELET

LEVELS = 5


ORIENTS = ("LH", "HL", "HH")


#: Dead-zone rounding: |c| / step + ROUNDING, floored (0.5 would be plain rounding).
ROUNDING = 0.40


def levels_for(shape: tuple[int, int]) -> int:
    """Up to LEVELS levels, fewer for tiny images (the coarsest band keeps >= 2 samples)."""
    levels = 0
    while levels < LEVELS and min(shape) >> (levels + 1) >= 2:
        levels += 1
    return max(levels, 1)


def band_steps(step: float, weights: np.ndarray, levels: int) -> list[float]:
    """Quantiser step of each band in decode order: LL, then (LH, HL, HH) coarse to fine."""
    steps = [step * float(weights[0])]
    for depth in range(levels):
        for o in range(3):
            steps.append(step * float(weights[1 + 3 * (LEVELS - levels + depth) + o]))
    return steps


def quantise(c: np.ndarray, step: float) -> np.ndarray:
    return (np.sign(c) * np.floor(np.abs(c) / step + ROUNDING)).astype(np.int64)


@functools.lru_cache(maxsize=64)
def synthesis_gain(level: int, orient: int) -> float:
    """Energy in pixels of a unit coefficient of a detail band ``level`` (1 = finest) and
    orientation (0 LH, 1 HL, 2 HH): products of the CDF 9/7 synthesis filters' norms."""
    import pywt

    wavelet = pywt.Wavelet(WAVELET)
    low, high = float(np.sum(np.square(wavelet.rec_lo))), float(np.sum(np.square(wavelet.rec_hi)))
    band = (low * high, high * low, high * high)[orient]
    return band * low ** (2 * (level - 1))


def dequantise(q: np.ndarray, step: float, offsets: np.ndarray) -> np.ndarray:
    """Reconstruction inside each bin: |q| + offset[min(|q|, 3) - 1] (learned, in 1/256)."""
    mag = np.abs(q)
    off = offsets[np.clip(mag, 1, 3) - 1] / 256.0
    return np.where(mag > 0, np.sign(q) * (mag + off) * step, 0.0)


def checkerboard(shape: tuple[int, int], phase: int) -> np.ndarray:
    rows, cols = np.indices(shape)
    return (rows + cols) % 2 == phase


#: Pass schedules of a detail band: 2 passes, the checkerboard ((row + col) even, then odd);
#: 4 passes, the 2x2 lattice: (even row, even col), (odd, odd), (even, odd), (odd, even), so
#: that half the band's coefficients see 4 decoded neighbours and 4 diagonals.
SCHEDULES = (2, 4)
_LATTICE = ((0, 0), (1, 1), (0, 1), (1, 0))


def pass_positions(shape: tuple[int, int], schedule: int, phase: int) -> np.ndarray:
    """The positions of a band coded in pass ``phase`` of ``schedule``."""
    if schedule == 2:
        return checkerboard(shape, phase)
    row, col = _LATTICE[phase]
    rows, cols = np.indices(shape)
    return (rows % 2 == row) & (cols % 2 == col)
