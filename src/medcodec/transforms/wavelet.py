"""Multi-level 2-D discrete wavelet transforms: LL plus (LH, HL, HH) per level.

- ``wavelet_forward``/``wavelet_inverse``: the CDF 9/7 wavelet (PyWavelets' ``bior4.4``) in
  float64, for lossy coding. Images are padded by symmetric extension to a multiple of
  ``2**levels`` (periodised transform, so every subband has exactly half the size of the one
  above) and cropped back after the inverse.
- ``int53_forward``/``int53_inverse``: the reversible integer 5/3 lifting of JPEG 2000 Part 1
  (ISO 15444-1 Annex F), exact on integers, for lossless coding. Written here because no maintained
  Python library offers the reversible integer transform.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

WAVELET = "bior4.4"  # PyWavelets' name for CDF 9/7


@dataclass
class Subbands:
    """``ll`` is the coarsest approximation; ``details[0]`` is the coarsest (LH, HL, HH) level."""

    ll: np.ndarray
    details: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
    shape: tuple[int, int]  # the image shape before padding

    @property
    def levels(self) -> int:
        return len(self.details)


def padded_shape(shape: tuple[int, int], levels: int) -> tuple[int, int]:
    block = 1 << levels
    return tuple(-(-n // block) * block for n in shape)  # type: ignore[return-value]


def _pad(x: np.ndarray, levels: int) -> np.ndarray:
    rows, cols = padded_shape(x.shape, levels)
    return np.pad(x, ((0, rows - x.shape[0]), (0, cols - x.shape[1])), mode="symmetric")


def wavelet_forward(image: np.ndarray, levels: int = 5) -> Subbands:
    import pywt

    x = _pad(np.asarray(image, dtype=np.float64), levels)
    with warnings.catch_warnings():  # "level too high": expected on small periodised images
        warnings.simplefilter("ignore", UserWarning)
        coeffs = pywt.wavedec2(x, WAVELET, mode="periodization", level=levels)
    return Subbands(coeffs[0], [tuple(level) for level in coeffs[1:]], tuple(image.shape))


def wavelet_inverse(bands: Subbands) -> np.ndarray:
    import pywt

    x = pywt.waverec2([bands.ll, *bands.details], WAVELET, mode="periodization")
    return x[: bands.shape[0], : bands.shape[1]]


def _lift53_forward_1d(x: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """One level of reversible 5/3 along ``axis`` (even length), symmetric boundaries."""
    x = np.moveaxis(x, axis, 0)
    even, odd = x[0::2].copy(), x[1::2].copy()
    right = np.concatenate([even[1:], even[-1:]], axis=0)  # even[n+1], mirrored at the end
    odd -= (even + right) >> 1
    left = np.concatenate([odd[:1], odd[:-1]], axis=0)  # odd[n-1], mirrored at the start
    even += (left + odd + 2) >> 2
    return np.moveaxis(even, 0, axis), np.moveaxis(odd, 0, axis)


def _lift53_inverse_1d(low: np.ndarray, high: np.ndarray, axis: int) -> np.ndarray:
    low = np.moveaxis(low, axis, 0).copy()
    high = np.moveaxis(high, axis, 0).copy()
    left = np.concatenate([high[:1], high[:-1]], axis=0)
    low -= (left + high + 2) >> 2
    right = np.concatenate([low[1:], low[-1:]], axis=0)
    high += (low + right) >> 1
    out = np.empty((low.shape[0] * 2, *low.shape[1:]), dtype=low.dtype)
    out[0::2], out[1::2] = low, high
    return np.moveaxis(out, 0, axis)


def int53_forward(image: np.ndarray, levels: int = 5) -> Subbands:
    """Reversible integer 5/3 DWT (int64 coefficients)."""
    x = _pad(np.asarray(image, dtype=np.int64), levels)
    details = []
    for _ in range(levels):
        low, high = _lift53_forward_1d(x, axis=1)
        ll, lh = _lift53_forward_1d(low, axis=0)
        hl, hh = _lift53_forward_1d(high, axis=0)
        details.append((lh, hl, hh))
        x = ll
    return Subbands(x, details[::-1], tuple(image.shape))


def int53_inverse(bands: Subbands) -> np.ndarray:
    x = bands.ll
    for lh, hl, hh in bands.details:
        low = _lift53_inverse_1d(x, lh, axis=0)
        high = _lift53_inverse_1d(hl, hh, axis=0)
        x = _lift53_inverse_1d(low, high, axis=1)
    return x[: bands.shape[0], : bands.shape[1]]
