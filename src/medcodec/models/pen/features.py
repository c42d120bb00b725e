"""What the pixel-estimation network reads: the 3x3 or 1x8 window of known pixels, the level's
coarse context, the previous slice's co-located pixels; and the feature scales. Shared by the
codec and by training."""

from __future__ import annotations

import numpy as np

from medcodec.models.context import box_sum, log_code, mirror_pad
from medcodec.models.pen.schedule import LEVEL_CLASSES, PARITY, phase_coords

#: (row offset, column offset) of window pixels, at the level's own resolution.
WINDOWS: dict[str, dict[str, tuple[tuple[int, int], ...]]] = {
    "3x3": {
        "D": ((-1, -1), (-1, 1), (1, -1), (1, 1)),
        "B": ((0, -1), (0, 1), (-1, 0), (1, 0)),
        "C": ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)),
    },
    "1x8": {
        "D": tuple((-1, c) for c in (-7, -5, -3, -1, 1, 3, 5, 7)),
        "B": tuple((0, c) for c in (-7, -5, -3, -1, 1, 3, 5, 7)),
        "C": tuple((0, c) for c in (-7, -5, -3, -1, 1, 3, 5, 7)),
    },
}


def padded(grid: np.ndarray, pad: int) -> np.ndarray:
    """``grid`` as int64, mirrored by ``pad`` pixels on every side (:func:`mirror_pad`)."""
    return mirror_pad(np.asarray(grid, np.int64), pad)


def window_pad(offsets: tuple[tuple[int, int], ...]) -> int:
    return max(max(abs(dr), abs(dc)) for dr, dc in offsets)


def gather_padded(pad_grid: np.ndarray, pad: int, start: tuple[int, int],
                  count: tuple[int, int], step: int, offsets: tuple[tuple[int, int], ...],
                  out: np.ndarray | None = None) -> np.ndarray:
    """(count[0] * count[1], len(offsets)): the grid that ``pad_grid`` pads (see
    :func:`padded`) at rows ``start[0] + step * i + dr`` and columns ``start[1] + step * j +
    dc``, into ``out`` if given (any numeric dtype), else a new int64 array. Strided views:
    no index arrays on the hot path."""
    if out is None:
        out = np.empty((count[0] * count[1], len(offsets)), dtype=np.int64)
    if out.size == 0:
        return out
    for k, (dr, dc) in enumerate(offsets):
        r, c = pad + start[0] + dr, pad + start[1] + dc
        out[:, k].reshape(count)[...] = pad_grid[r : r + step * (count[0] - 1) + 1 : step,
                                                 c : c + step * (count[1] - 1) + 1 : step]
    return out


def coarse_activity_map(coarse: np.ndarray) -> np.ndarray:
    """Sum of absolute differences to the 4 neighbours on the coarse grid (a noise/edge map)."""
    act = np.zeros_like(coarse)
    if coarse.shape[1] > 1:
        d = np.abs(np.diff(coarse, axis=1))
        act[:, :-1] += d
        act[:, 1:] += d
    if coarse.shape[0] > 1:
        d = np.abs(np.diff(coarse, axis=0))
        act[:-1] += d
        act[1:] += d
    return act


#: Offsets on the coarse grid, relative to (row // 2, col // 2), of the wide context.
WIDE = tuple((i, j) for i in (-1, 0, 1, 2) for j in (-1, 0, 1, 2))


_WIDE_PAD = window_pad(WIDE)


class PassInputs:
    """Everything the features of one pass read, prepared once so that row blocks of the
    pass can be featurised independently (and in parallel): the level grid and the previous
    slice mirrored at the edges, and the shared context of the coarser (even-even) grid,
    which the three phases of a level share (``coarse``, from :meth:`coarse_context`)."""

    def __init__(self, grid: np.ndarray, phase: str, window: str, level: int,
                 thresholds: np.ndarray, previous: np.ndarray | None = None,
                 coarse: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        self.phase, self.offsets, self.thresholds = phase, WINDOWS[window][phase], thresholds
        self.pad = window_pad(self.offsets)
        self.grid = padded(grid, self.pad)
        self.previous = None if previous is None else padded(previous, self.pad)
        rows, cols = phase_coords(grid.shape, phase)
        self.rows, self.cols = rows.size, cols.size
        self.level = min(level, LEVEL_CLASSES - 1)
        self.coarse_codes, self.coarse_grid = coarse or self.coarse_context(grid, thresholds)

    @staticmethod
    def coarse_context(grid: np.ndarray, thresholds: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Log-coded local activity of the coarse grid over 3x3 and 7x7 boxes (a noise and
        edge estimate twice and six times as wide as the window), and the mirrored coarse
        grid for the wide context."""
        coarse = grid[0::2, 0::2].astype(np.int64)
        act = coarse_activity_map(coarse)
        codes = np.stack([log_code(box_sum(act, k), thresholds) for k in (1, 3)], axis=-1)
        return codes, padded(coarse, _WIDE_PAD)

    def window(self, pad_grid: np.ndarray, rows: tuple[int, int],
               out: np.ndarray | None = None) -> np.ndarray:
        pr, pc = PARITY[self.phase]
        return gather_padded(pad_grid, self.pad, (pr + 2 * rows[0], pc),
                             (rows[1] - rows[0], self.cols), 2, self.offsets, out)

    def features(self, rows: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Integer features (float64 holding integers, the network's input type) of the
        phase's pixel rows ``rows`` (all by default) and their reference value (window
        mean, int64); see :func:`phase_features`. Columns are filled in place: this is the
        codec's hot path."""
        i0, i1 = rows or (0, self.rows)
        n, k = (i1 - i0) * self.cols, len(self.offsets)
        feats = np.empty((n, feature_count_for(k, self.previous is not None)), np.float64)
        values = self.window(self.grid, (i0, i1), feats[:, :k])
        ref = values.sum(axis=1).astype(np.int64) // k
        ref_f = ref.astype(np.float64)[:, None]
        values -= ref_f
        feats[:, k] = log_code(np.abs(values).sum(axis=1).astype(np.int64), self.thresholds)
        # pixel (2i + pr, 2j + pc) sits at coarse (i, j)
        codes = feats[:, k + 1 : k + 3].reshape(i1 - i0, self.cols, 2)
        codes[...] = self.coarse_codes[i0:i1, : self.cols]
        wide = gather_padded(self.coarse_grid, _WIDE_PAD, (i0, 0), (i1 - i0, self.cols), 1,
                             WIDE, feats[:, k + 3 : k + 3 + len(WIDE)])
        wide -= ref_f
        level_code = feats[:, k + 3 + len(WIDE) : k + 3 + len(WIDE) + LEVEL_CLASSES]
        level_code[...] = 0.0
        level_code[:, self.level] = 1.0
        if self.previous is not None:
            feats[:, -PREVIOUS_FEATURES:] = self._previous_features((i0, i1), ref)
        return feats, ref

    def _previous_features(self, rows: tuple[int, int], ref: np.ndarray) -> np.ndarray:
        """Context from the previous slice (decoded, same level grid): 3 integer features.

        Its pixel at the same position against this window's reference, and against the mean
        of its own pixels at the window positions (how the pixel stands out from its
        neighbours one slice away), plus the log size of the latter.
        """
        pr, pc = PARITY[self.phase]
        count = (rows[1] - rows[0], self.cols)
        centre = gather_padded(self.previous, self.pad, (pr + 2 * rows[0], pc), count, 2,
                               ((0, 0),))[:, 0]
        around = self.window(self.previous, rows)
        detail = centre - np.floor_divide(around.sum(axis=1), around.shape[1])
        return np.stack([centre - ref, detail, log_code(np.abs(detail), self.thresholds)],
                        axis=1)


def phase_features(grid: np.ndarray, phase: str, window: str, level: int,
                   thresholds: np.ndarray, previous: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Integer features of every pixel of ``phase`` and its reference value (window mean).

    Features: window pixels minus the reference, the log-coded window activity, the shared
    context of the coarser grid (activity over two box sizes and the 4x4 block of coarse
    pixels around the pixel, centred on the reference), a one-hot level code and, for the
    volume model, 3 features of the previous slice. The network predicts the pixel relative
    to the reference.
    """
    return PassInputs(grid, phase, window, level, thresholds, previous).features()


#: Features the previous slice adds (see previous_features).
PREVIOUS_FEATURES = 3


def feature_count(window: str, phase: str, inter: bool = False) -> int:
    return feature_count_for(len(WINDOWS[window][phase]), inter)


def feature_count_for(window_size: int, inter: bool) -> int:
    """Window pixels, window activity, 2 coarse activities, the wide block, the level code
    and, for the volume model, the previous-slice features."""
    return (window_size + 1 + 2 + len(WIDE) + LEVEL_CLASSES
            + (PREVIOUS_FEATURES if inter else 0))


def feature_scales(window: str, phase: str, inter: bool = False) -> np.ndarray:
    """Fixed scaling of the integer features into the float network's inputs (training only).

    Pixel differences by 1/64, log codes by 1/16, level one-hots by 1.
    """
    n = len(WINDOWS[window][phase])
    scales = np.ones(feature_count(window, phase, inter))
    scales[:n] = 1 / 64
    scales[n : n + 3] = 1 / 16
    scales[n + 3 : n + 3 + len(WIDE)] = 1 / 64
    if inter:
        scales[-PREVIOUS_FEATURES:] = (1 / 64, 1 / 64, 1 / 16)
    return scales
