"""What the entropy network reads about a coefficient: the band's static context (parent level,
sibling orientations, hyperprior, rate), the pass features of already-coded neighbours, and the
attention's queries and key sources. Shared by the codec and by training."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medcodec.models.context import box_sum, log_code, mirror_pad
from medcodec.models.wavelet.schedule import LEVELS

STATIC = 10 + LEVELS  # see band_static


FEATURES = STATIC + 3  # see pass_features


def log4(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    return log_code(4 * np.abs(values), thresholds)


def _ratio(parent: np.ndarray, shape: tuple[int, ...]) -> int:
    """2 when the parent is the coarser level, 1 at the coarsest level (parent = LL itself)."""
    return 1 if parent.shape == tuple(shape) else 2


def parent_cells(grid: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    """Flat index into a (rows, cols) grid of the cell (i // r, j // r) of every position of
    a band of ``shape`` (r = 1 when the shapes match, else 2; the last row and column
    serve positions beyond the grid, so a 1x1 grid serves all)."""
    ratio = 1 if tuple(grid) == tuple(shape) else 2
    r = np.minimum(np.arange(shape[0]) // ratio, grid[0] - 1)
    c = np.minimum(np.arange(shape[1]) // ratio, grid[1] - 1)
    return (r[:, None] * grid[1] + c[None, :]).ravel()


def _up(parent: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Parent value at (i // 2, j // 2) (or (i, j) beside LL) for every child position."""
    return parent.ravel()[parent_cells(parent.shape, shape)].reshape(shape)


def neighbour_stats(q: np.ndarray, known: np.ndarray, diagonal: bool = False
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Sum and max of |q| over the 4 neighbours (with ``diagonal``, the 8) already decoded
    (``known``), edges mirrored."""
    a = np.where(known, np.abs(q), 0)
    p = np.pad(a, 1, mode="reflect") if min(a.shape) > 1 else np.pad(a, 1, mode="edge")
    h, w = a.shape
    nb = [p[0:h, 1:w + 1], p[2:h + 2, 1:w + 1], p[1:h + 1, 0:w], p[1:h + 1, 2:w + 2]]
    if diagonal:
        nb += [p[0:h, 0:w], p[0:h, 2:w + 2], p[2:h + 2, 0:w], p[2:h + 2, 2:w + 2]]
    return sum(nb), np.maximum.reduce(nb)


@dataclass
class BandContext:
    """What the decoder knows when it codes one detail band (all integers)."""

    depth: int  # 0 = coarsest detail level
    orient: int
    step_code: int
    parent: list[np.ndarray]  # the three orientations of the coarser level (or LL activity)
    siblings: list[np.ndarray]  # bands of this level decoded before this one
    z: np.ndarray | None  # hyperprior per child position, or None
    levels: int = LEVELS


def band_static(ctx: BandContext, shape: tuple[int, int], thresholds: np.ndarray) -> np.ndarray:
    """(rows, cols, STATIC) features known before any coefficient of the band is decoded.

    Step code, parent (value and 3x3 activity), earlier siblings (value and 3x3 activity),
    hyperprior z, orientation and a one-hot decomposition depth.
    """
    feats = np.zeros((*shape, STATIC), np.int64)
    feats[..., 0] = ctx.step_code
    same = ctx.parent[ctx.orient]
    feats[..., 1] = _up(log4(same, thresholds), shape)
    feats[..., 2] = _up(log4(box_sum(np.abs(same), 1), thresholds), shape)
    for k, sib in enumerate(ctx.siblings[:2]):
        feats[..., 3 + 2 * k] = log4(sib, thresholds)
        feats[..., 4 + 2 * k] = log4(box_sum(np.abs(sib), 1), thresholds)
    if ctx.z is not None:
        feats[..., 7] = ctx.z
        feats[..., 8] = 1
    feats[..., 9] = ctx.orient
    feats[..., 10 + ctx.depth + (LEVELS - ctx.levels)] = 1
    return feats


def pass_features(static: np.ndarray, q: np.ndarray, known: np.ndarray,
                  positions: np.ndarray, thresholds: np.ndarray, phase: int | None = None,
                  diagonal: bool = False) -> np.ndarray:
    """(N, FEATURES): the band's static features plus what the earlier passes gave: the pass
    number (by default 0 before any coefficient is known, else 1: the checkerboard's two),
    and the neighbours' sum and max (4 neighbours, or 8 with ``diagonal``)."""
    total, peak = neighbour_stats(q, known, diagonal)
    started = int(known.any()) if phase is None else phase
    extra = np.stack([np.full(total.shape, started), log4(total, thresholds),
                      log4(peak, thresholds)], axis=-1)
    return np.concatenate([static[positions], extra[positions]], axis=1)


def attention_inputs(ctx: BandContext, static: np.ndarray, thresholds: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Queries and key/value sources of the cross-attention, on the parent (coarser) grid.

    Query of a parent cell: the band's static features at its first child. Keys/values: the
    three parent orientations' log magnitudes at every parent cell; the attention reads the
    3x3 cells around each one.
    """
    ratio = _ratio(ctx.parent[0], static.shape[:2])
    ph, pw = ctx.parent[0].shape
    query = static[::ratio, ::ratio][:ph, :pw]
    if query.shape[:2] != (ph, pw):  # odd band sizes cannot happen (padded DWT); be safe
        query = np.pad(query, ((0, ph - query.shape[0]), (0, pw - query.shape[1]), (0, 0)),
                       mode="edge")
    sources = np.stack([log4(p, thresholds) for p in ctx.parent], axis=-1)
    return query.reshape(ph * pw, STATIC), sources


def neighbourhood(grid: np.ndarray) -> np.ndarray:
    """(rows, cols, POSITIONS, C): the 3x3 cells around every cell of ``grid``, mirrored."""
    h, w = grid.shape[:2]
    p = mirror_pad(grid, 1, axes=(0, 1))  # then 9 shifted views: no index arrays
    return np.stack([p[r:r + h, c:c + w] for r in range(3) for c in range(3)], axis=2)


def step_code(step: float, thresholds: np.ndarray) -> int:
    return int(log_code(np.array([round(step * 4)]), thresholds)[0])
