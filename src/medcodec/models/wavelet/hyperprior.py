"""The hyperprior: block energies of a level's three orientations, log-coded (the side
information z), and the DPCM residuals that code z and the LL band."""

from __future__ import annotations

import numpy as np

from medcodec.models.context import log_code

#: Hyperprior block, in image pixels; z exists for the two finest levels.
HYPER_BLOCK = 32


HYPER_LEVELS = 2


def dpcm_residuals(q: np.ndarray) -> np.ndarray:
    """Residual against the left neighbour (first column: the one above). Integer, exact."""
    pred = np.zeros_like(q)
    pred[:, 1:] = q[:, :-1]
    pred[1:, 0] = q[:-1, 0]
    return q - pred


def dpcm_reconstruct(res: np.ndarray) -> np.ndarray:
    first = np.cumsum(res[:, 0])
    out = res.copy()
    out[:, 0] = first
    return np.cumsum(out, axis=1)


def _block_size(level: int) -> int:
    """Band samples per hyperprior block side at decomposition level ``level`` (1 = finest)."""
    return max(1, HYPER_BLOCK >> level)


def block_shape(band_shape: tuple[int, ...], level: int) -> tuple[int, int]:
    block = _block_size(level)
    return (-(-band_shape[0] // block), -(-band_shape[1] // block))


def block_code(energy: np.ndarray, level: int, thresholds: np.ndarray) -> np.ndarray:
    """Log-coded sum of |q| over each hyperprior block (integers): the side information z."""
    block = _block_size(level)
    bh, bw = block_shape(energy.shape, level)
    padded = np.zeros((bh * block, bw * block), np.int64)
    padded[: energy.shape[0], : energy.shape[1]] = energy
    sums = padded.reshape(bh, block, bw, block).sum(axis=(1, 3))
    return log_code(sums, thresholds)


def expand_blocks(zb: np.ndarray, band_shape: tuple[int, int], level: int) -> np.ndarray:
    block = _block_size(level)
    r = np.arange(band_shape[0]) // block
    c = np.arange(band_shape[1]) // block
    return zb[np.ix_(r, c)]
