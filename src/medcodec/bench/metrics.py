"""Rate and distortion metrics, exactly as ``shared/BENCHMARK.md`` defines them.

Every function takes the *stored* integer arrays (after the shift to unsigned), so numbers from
different codecs are comparable; CT windows convert to Hounsfield units first with the image's
rescale slope and intercept.
"""

from __future__ import annotations

import math

import numpy as np

from medcodec.image import effective_bits

__all__ = [
    "LUNG_WINDOW",
    "SOFT_WINDOW",
    "bpp",
    "effective_bits",
    "max_abs_err",
    "psnr",
    "psnr_lung8",
    "psnr_soft8",
    "ratio16",
    "render_window",
    "ssim",
    "ssim_soft8",
]

#: (centre, width) in HU of the two CT windows BENCHMARK.md reports.
LUNG_WINDOW = (-600.0, 1500.0)
SOFT_WINDOW = (40.0, 400.0)


def bpp(nbytes: int, rows: int, cols: int) -> float:
    """Bits per pixel: ``8 * nbytes / (rows * cols)``."""
    if rows <= 0 or cols <= 0:
        raise ValueError(f"image size must be positive, got {rows}x{cols}")
    return 8.0 * nbytes / (rows * cols)


def ratio16(bpp_value: float) -> float:
    """Compression ratio against 16-bit storage: ``16 / bpp`` (inf for 0 bpp)."""
    return math.inf if bpp_value == 0 else 16.0 / bpp_value


def _pair(ref: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref = np.asarray(ref)
    test = np.asarray(test)
    if ref.shape != test.shape:
        raise ValueError(f"shapes differ: {ref.shape} vs {test.shape}")
    if ref.size == 0:
        raise ValueError("empty images have no distortion")
    return ref.astype(np.float64), test.astype(np.float64)


def _psnr_peak(ref: np.ndarray, test: np.ndarray, peak: float) -> float:
    a, b = _pair(ref, test)
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def psnr(ref: np.ndarray, test: np.ndarray, bits: int) -> float:
    """PSNR in dB on stored values with peak ``2**bits - 1`` (inf when identical)."""
    return _psnr_peak(ref, test, float(2**bits - 1))


def max_abs_err(ref: np.ndarray, test: np.ndarray) -> int:
    """Largest absolute difference in stored units (0 for lossless, <= d for NEAR=d)."""
    a = np.asarray(ref).astype(np.int64)
    b = np.asarray(test).astype(np.int64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    return int(np.max(np.abs(a - b))) if a.size else 0


def render_window(
    stored: np.ndarray, centre: float, width: float, slope: float = 1.0, intercept: float = 0.0
) -> np.ndarray:
    """8-bit display rendering of a CT image through a window, as a float64 array.

    ``hu = stored * slope + intercept``, then
    ``round(clip((hu - (centre - width / 2)) / width * 255, 0, 255))`` (``np.rint``: halves go
    to the even neighbour). This is the simple linear window (not DICOM's ``c - 0.5`` variant),
    so the same formula gives the same 8-bit image for every codec.
    """
    if width <= 0:
        raise ValueError(f"window width must be positive, got {width}")
    hu = np.asarray(stored).astype(np.float64) * slope + intercept
    return np.rint(np.clip((hu - (centre - width / 2.0)) / width * 255.0, 0.0, 255.0))


def _psnr_window(ref: np.ndarray, test: np.ndarray, window: tuple[float, float], slope: float,
                 intercept: float) -> float:
    c, w = window
    return _psnr_peak(
        render_window(ref, c, w, slope, intercept), render_window(test, c, w, slope, intercept), 255
    )


def psnr_lung8(
    ref: np.ndarray, test: np.ndarray, slope: float = 1.0, intercept: float = 0.0
) -> float:
    """PSNR (peak 255) of the lung-window renderings (centre -600, width 1500 HU)."""
    return _psnr_window(ref, test, LUNG_WINDOW, slope, intercept)


def psnr_soft8(
    ref: np.ndarray, test: np.ndarray, slope: float = 1.0, intercept: float = 0.0
) -> float:
    """PSNR (peak 255) of the soft-tissue-window renderings (centre 40, width 400 HU)."""
    return _psnr_window(ref, test, SOFT_WINDOW, slope, intercept)


def _ssim(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    from skimage.metrics import structural_similarity

    if min(a.shape) < 7:
        # skimage's default 7x7 window does not fit; no standard value exists for such images.
        return math.nan
    return float(structural_similarity(a, b, data_range=data_range))


def ssim(ref: np.ndarray, test: np.ndarray, bits: int) -> float:
    """SSIM of the stored values (skimage defaults, ``data_range = 2**bits - 1``).

    NaN for images smaller than the 7x7 window.
    """
    a, b = _pair(ref, test)
    return _ssim(a, b, float(2**bits - 1))


def ssim_soft8(
    ref: np.ndarray, test: np.ndarray, slope: float = 1.0, intercept: float = 0.0
) -> float:
    """SSIM of the soft-tissue-window renderings with ``data_range = 255``."""
    c, w = SOFT_WINDOW
    a, b = _pair(
        render_window(ref, c, w, slope, intercept), render_window(test, c, w, slope, intercept)
    )
    return _ssim(a, b, 255.0)
