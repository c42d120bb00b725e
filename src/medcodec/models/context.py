"""Integer context helpers shared by the learned models (exact, vectorised, no floats)."""

from __future__ import annotations

import numpy as np

#: Values below this are log-coded by table lookup (several times faster than a search).
_LUT_SIZE = 1 << 16
_luts: dict[bytes, np.ndarray] = {}


def log_code(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Integer log-scale code of non-negative integers: the count of thresholds <= value."""
    values = np.asarray(values)
    key = thresholds.tobytes()
    lut = _luts.get(key)
    if lut is None:
        lut = np.searchsorted(thresholds, np.arange(_LUT_SIZE), side="right").astype(np.int64)
        _luts[key] = lut
    small = np.minimum(values, _LUT_SIZE - 1).astype(np.intp)
    codes = lut[small]
    large = values >= _LUT_SIZE
    if large.any():
        codes[large] = np.searchsorted(thresholds, values[large], side="right")
    return codes


def default_thresholds() -> np.ndarray:
    """Quarter-octave steps up to 2**24 (stored with a model; never recomputed by a decoder)."""
    steps = np.unique(np.round(2.0 ** (np.arange(0, 97) / 4.0)).astype(np.int64))
    return steps


def reflect(index: np.ndarray, size: int) -> np.ndarray:
    """Mirror indices into [0, size) without repeating the edge (keeps row/column parity)."""
    if size == 1:
        return np.zeros_like(index)
    period = 2 * (size - 1)
    index = np.abs(index) % period
    return np.where(index >= size, period - index, index)


def mirror_pad(grid: np.ndarray, pad: int, axes: tuple[int, int] = (-2, -1)) -> np.ndarray:
    """``grid`` mirrored by ``pad`` cells on each side of two axes, the edge not repeated (as
    :func:`reflect`; a single row or column repeats): the one padding of every context."""
    if all(grid.shape[a] > pad for a in axes):  # numpy's "reflect" is this mirror then
        width = [(0, 0)] * grid.ndim
        for a in axes:
            width[a] = (pad, pad)
        return np.pad(grid, width, mode="reflect")
    out = grid
    for a in axes:
        size = grid.shape[a]
        out = np.take(out, reflect(np.arange(-pad, size + pad), size), axis=a)
    return out


def box_sum(values: np.ndarray, radius: int) -> np.ndarray:
    """Sum over a (2r+1)^2 box, edges replicated (integer summed-area table: exact, fast)."""
    padded = np.pad(values, radius, mode="edge")
    table = np.zeros((padded.shape[0] + 1, padded.shape[1] + 1), np.int64)
    np.cumsum(np.cumsum(padded, axis=0), axis=1, out=table[1:, 1:])
    n = 2 * radius + 1
    h, w = values.shape
    return table[n:n + h, n:n + w] - table[:h, n:n + w] - table[n:n + h, :w] + table[:h, :w]
