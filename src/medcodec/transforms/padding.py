"""Padding outside a scan's field of view, for lossy coding.

CT slices often carry a padding value (e.g. -2000 or -3024 HU) outside the reconstruction
circle, far below air. Its sharp edge against air costs a wavelet coder many bits at every
rate, and none of them carry anything: the decoder can restore the padding exactly from a
one-bit mask that costs a few hundred bytes. :func:`padding_mask` finds such padding and
:func:`fill_smooth` replaces it, for the lossy coder only, by a smooth continuation of the
pixels around it (push-pull: mask-weighted means down a 2x2 pyramid, then back up).
"""

from __future__ import annotations

import numpy as np

#: Padding is the slice's lowest value only when the next value used is at least this far
#: above it (air clipped at the bottom of the range is not padding: its values touch it).
MIN_GAP = 16
#: ... and only when it covers at least this share of the slice.
MIN_FRACTION = 0.01


def padding_mask(array: np.ndarray) -> np.ndarray | None:
    """Where the slice holds its padding value (its minimum, isolated from the values above
    it by ``MIN_GAP``), or None when it has none worth a mask."""
    low = array.min(initial=0)
    mask = array == low
    if mask.mean() < MIN_FRACTION or mask.all():
        return None
    if int(array[~mask].min()) - int(low) < MIN_GAP:
        return None
    return mask


def fill_smooth(array: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``array`` with the ``mask`` pixels replaced by a smooth continuation of the others
    (rounded to integers, in the array's range)."""
    values = np.where(mask, 0.0, array.astype(np.float64))
    weights = (~mask).astype(np.float64)
    pyramid = [(values, weights)]
    while min(values.shape) > 1 and not weights.all():
        values, weights = _halve(values), _halve(weights)
        pyramid.append((values, weights))
    filled = np.where(weights > 0, values / np.maximum(weights, 1e-12), 0.0)
    for values, weights in reversed(pyramid[:-1]):
        coarse = np.repeat(np.repeat(filled, 2, axis=0), 2, axis=1)[: values.shape[0],
                                                                       : values.shape[1]]
        hole = weights == 0
        filled = np.where(hole, coarse, values / np.maximum(weights, 1e-12))
        for _ in range(2):  # smooth the blocky upsampling inside the hole only
            filled = np.where(hole, _box3(filled), filled)
    out = np.rint(filled).astype(np.int64)
    return np.clip(out, int(array.min(initial=0)), int(array.max(initial=0)))


def _box3(a: np.ndarray) -> np.ndarray:
    """3x3 mean (edges repeated)."""
    p = np.pad(a, 1, mode="edge")
    rows, cols = a.shape
    return sum(p[i : i + rows, j : j + cols] for i in range(3) for j in range(3)) / 9.0


def _halve(a: np.ndarray) -> np.ndarray:
    """2x2 block sums (odd edges padded with zeros)."""
    rows, cols = a.shape
    padded = np.zeros((rows + rows % 2, cols + cols % 2))
    padded[:rows, :cols] = a
    return padded[0::2, 0::2] + padded[1::2, 0::2] + padded[0::2, 1::2] + padded[1::2, 1::2]
