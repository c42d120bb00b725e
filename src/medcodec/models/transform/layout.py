"""Shapes and fixed scales shared by the float twin (training) and the integer codec.

The image (stored units / NORM) goes through a 2-level CDF 9/7 DWT; the level-1 bands are
rearranged (space to depth) onto the level-2 grid, so every latent position holds the 16
coefficients of one 4x4 pixel block: LL2, LH2, HL2, HH2 and the 2x2 phases of LH1, HL1, HH1.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np

from medcodec.transforms.wavelet import WAVELET

NORM = 4096.0  # stored units per latent unit
LEVELS = 2
BLOCK = 16  # images are padded to a multiple of this (latent grid / 4 for the hyperprior)
CHANNELS = 16
GROUP_SIZES = (1, 1, 1, 1, 4, 4, 4)
GROUP_SLICES = tuple((sum(GROUP_SIZES[:g]), sum(GROUP_SIZES[: g + 1]))
                     for g in range(len(GROUP_SIZES)))
TOKENS = len(GROUP_SIZES)
TOKEN_DIM, HEADS, KEY_DIM = 8, 2, 4
HIDDEN = 32
HYPER = 32
#: Gain units: per-channel log2 step offsets learned at these log2 steps, interpolated between.
GAIN_ANCHORS = (0.0, 2.0, 4.0, 6.0, 8.0)
GAIN_LOG_LOW, GAIN_LOG_SPAN = 0.0, 8.0
#: Laplace scales (quantiser units) the entropy model can ask for.
SCALE_MIN, SCALE_MAX = 0.08, 2048.0
#: Fixed input scales of the sub-networks (their inputs are then of order one).
CAL_SCALE = 16.0
BRANCH_SCALE = 16.0
HYPER_IN = 1.0 / 16
CTX_IN = 1.0 / 16
MEAN_SCALE = 16.0


def analysis_bands(image: np.ndarray) -> np.ndarray:
    """(16, rows/4, cols/4) subband grid of an image whose sides are multiples of 4."""
    import pywt

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ll, level2, level1 = pywt.wavedec2(np.asarray(image, np.float64) / NORM, WAVELET,
                                           mode="periodization", level=LEVELS)
    h, w = ll.shape
    out = np.empty((CHANNELS, h, w))
    out[0], out[1:4] = ll, level2
    for k, band in enumerate(level1):
        out[4 + 4 * k : 8 + 4 * k] = band.reshape(h, 2, w, 2).transpose(1, 3, 0, 2).reshape(
            4, h, w)
    return out


def synthesis_image(grid: np.ndarray) -> np.ndarray:
    """The inverse of :func:`analysis_bands`, in stored units (float64)."""
    import pywt

    _, h, w = grid.shape
    level1 = tuple(grid[4 + 4 * k : 8 + 4 * k].reshape(2, 2, h, w).transpose(2, 0, 3, 1)
                   .reshape(2 * h, 2 * w) for k in range(3))
    image = pywt.waverec2([grid[0], tuple(grid[1:4]), level1], WAVELET, mode="periodization")
    return image * NORM


@functools.lru_cache(maxsize=1)
def channel_gains() -> np.ndarray:
    """Pixel-domain energy of a unit coefficient in each channel (CDF 9/7 synthesis norms)."""
    import pywt

    wavelet = pywt.Wavelet(WAVELET)
    low = float(np.sum(np.square(wavelet.rec_lo)))
    high = float(np.sum(np.square(wavelet.rec_hi)))
    detail = (low * high, high * low, high * high)
    gains = [low**4, *(d * low**2 for d in detail)]
    for d in detail:
        gains += [d] * 4
    return np.array(gains, np.float32)


def anchor_mask(rows: int, cols: int) -> np.ndarray:
    """(1, 1, rows, cols) float32: 1 on the checkerboard's first pass (coded without context)."""
    r, c = np.indices((rows, cols))
    return ((r + c) % 2 == 0).astype(np.float32)[None, None]
