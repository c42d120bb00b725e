"""The pixel-estimation network (the paper's DNN that estimates a pixel from its window), used
as the probability model of lossless and near-lossless coding.

Decoding order is a 2x2 interlace, coarse to fine: the image's even-even grid is coded first
(recursively, down to a grid of at most ``COARSEST`` pixels a side), then at every level three
phases, each decoded in one vectorised step:

* ``D`` (odd row, odd column): its window holds the 4 diagonal pixels of the coarser grid;
* ``B`` (even row, odd column): left/right from the coarser grid, up/down from ``D``;
* ``C`` (odd row, even column): all 8 neighbours are known by then.

For every pixel of a phase the network reads a window (``3x3``: the known pixels of the 3x3
neighbourhood; ``1x8``: 8 known pixels along one row, the paper's alternative) and a few integer
context features, and outputs the location and the Laplace scale (as a table index) of the pixel.
The residual against the rounded location is entropy coded with that table. Windows read only
pixels the decoder already has, so decoding is ~3 vectorised steps per level, never a loop per
pixel. Near-lossless quantises the residual with step ``2d + 1`` (error <= d by construction)
and predicts from reconstructed pixels, exactly as the decoder will.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from medcodec.entropy.coder import GroupedCoder
from medcodec.entropy.tables import LaplaceTables
from medcodec.errors import CorruptStreamError
from medcodec.models.context import box_sum, log_code, reflect
from medcodec.models.intnet import IntMLP

#: The coarsest grid is at most this many pixels a side; it is coded by row-DPCM.
COARSEST = 16
PHASES = ("D", "B", "C")
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
#: Phase positions inside a level: (row parity, column parity).
PARITY = {"D": (1, 1), "B": (0, 1), "C": (1, 0)}
#: Number of level one-hot features (levels 0, 1, 2 and "3 or coarser").
LEVEL_CLASSES = 4


def levels_for(shape: tuple[int, int]) -> int:
    """How many 2x2 interlace levels until the coarse grid is at most COARSEST a side."""
    levels, size = 0, max(shape)
    while size > COARSEST:
        size = (size + 1) // 2
        levels += 1
    return levels


def phase_coords(shape: tuple[int, int], phase: str) -> tuple[np.ndarray, np.ndarray]:
    pr, pc = PARITY[phase]
    return np.arange(pr, shape[0], 2), np.arange(pc, shape[1], 2)


def gather(grid: np.ndarray, start: tuple[int, int], count: tuple[int, int], step: int,
           offsets: tuple[tuple[int, int], ...]) -> np.ndarray:
    """(count[0] * count[1], len(offsets)) int64: ``grid`` at rows ``start[0] + step * i + dr``
    and columns ``start[1] + step * j + dc``, mirrored at the edges like :func:`reflect`.

    Mirrored padding plus strided views: no index arrays on the hot path.
    """
    out = np.empty((count[0] * count[1], len(offsets)), dtype=np.int64)
    if out.size == 0:
        return out
    pad = max(max(abs(dr), abs(dc)) for dr, dc in offsets)
    if min(grid.shape) > 1:
        padded = np.pad(grid, pad, mode="reflect")
        for k, (dr, dc) in enumerate(offsets):
            r, c = pad + start[0] + dr, pad + start[1] + dc
            out[:, k] = padded[r : r + step * (count[0] - 1) + 1 : step,
                               c : c + step * (count[1] - 1) + 1 : step].ravel()
        return out
    rows = start[0] + step * np.arange(count[0])
    cols = start[1] + step * np.arange(count[1])
    for k, (dr, dc) in enumerate(offsets):
        out[:, k] = grid[np.ix_(reflect(rows + dr, grid.shape[0]),
                                reflect(cols + dc, grid.shape[1]))].ravel()
    return out


def window_values(grid: np.ndarray, phase: str, window: str) -> np.ndarray:
    """(pixels of the phase, window size) int64: the window of every pixel of ``phase``."""
    rows, cols = phase_coords(grid.shape, phase)
    return gather(grid, PARITY[phase], (rows.size, cols.size), 2, WINDOWS[window][phase])


def _coarse_activity_map(coarse: np.ndarray) -> np.ndarray:
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


def context_features(grid: np.ndarray, phase: str, thresholds: np.ndarray,
                     ref: np.ndarray) -> np.ndarray:
    """Context every window shares, read from the coarser (even-even) grid only.

    Log-coded local activity over 3x3 and 7x7 coarse boxes (a noise and edge estimate twice
    and six times as wide as the window) and the 4x4 block of coarse pixels around the pixel,
    centred on the window's reference (a wider view for the location).
    """
    coarse = grid[0::2, 0::2].astype(np.int64)
    act = _coarse_activity_map(coarse)
    rows, cols = phase_coords(grid.shape, phase)
    n_r, n_c = rows.size, cols.size  # pixel (2i + pr, 2j + pc) sits at coarse (i, j)
    feats = [log_code(box_sum(act, k)[:n_r, :n_c].ravel(), thresholds) for k in (1, 3)]
    wide = gather(coarse, (0, 0), (n_r, n_c), 1, WIDE) - ref[:, None]
    return np.concatenate([feats[0][:, None], feats[1][:, None], wide], axis=1)


def previous_features(previous: np.ndarray, phase: str, window: str, ref: np.ndarray,
                      thresholds: np.ndarray) -> np.ndarray:
    """Context from the previous slice (decoded, same level grid): 3 integer features.

    Its pixel at the same position against this window's reference, and against the mean of
    its own pixels at the window positions (how the pixel stands out from its neighbours one
    slice away), plus the log size of the latter.
    """
    rows, cols = phase_coords(previous.shape, phase)
    centre = previous[np.ix_(rows, cols)].ravel().astype(np.int64)
    around = window_values(previous, phase, window)
    detail = centre - np.floor_divide(around.sum(axis=1), around.shape[1])
    return np.stack([centre - ref, detail, log_code(np.abs(detail), thresholds)], axis=1)


def phase_features(grid: np.ndarray, phase: str, window: str, level: int,
                   thresholds: np.ndarray, previous: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Integer features of every pixel of ``phase`` and its reference value (window mean).

    Features: window pixels minus the reference, the log-coded window activity, the shared
    context (:func:`context_features`) and a one-hot level code. The network predicts the
    pixel relative to the reference.
    """
    values = window_values(grid, phase, window)
    ref = np.floor_divide(values.sum(axis=1), values.shape[1])
    centred = values - ref[:, None]
    activity = log_code(np.abs(centred).sum(axis=1), thresholds)
    level_code = np.zeros((values.shape[0], LEVEL_CLASSES), np.int64)
    level_code[:, min(level, LEVEL_CLASSES - 1)] = 1
    parts = [centred, activity[:, None], context_features(grid, phase, thresholds, ref),
             level_code]
    if previous is not None:
        parts.append(previous_features(previous, phase, window, ref, thresholds))
    return np.concatenate(parts, axis=1), ref


#: Features the previous slice adds (see previous_features).
PREVIOUS_FEATURES = 3


def feature_count(window: str, phase: str, inter: bool = False) -> int:
    return (len(WINDOWS[window][phase]) + 1 + 2 + len(WIDE) + LEVEL_CLASSES
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


def passes(shape: tuple[int, int]) -> Iterator[tuple[int, str]]:
    """The decoding order: (level, phase) from the coarsest level to full resolution."""
    for level in range(levels_for(shape) - 1, -1, -1):
        for phase in PHASES:
            yield level, phase


def level_view(canvas: np.ndarray, level: int) -> np.ndarray:
    """The level's grid as a writable view of the full-resolution canvas."""
    step = 1 << level
    return canvas[::step, ::step]


def known_canvas(image: np.ndarray, level: int, phase: str) -> np.ndarray:
    """The full-resolution canvas as the decoder has it just before (level, phase): pixels not
    decoded yet are 0. Training reads features from this, never from the full image."""
    canvas = np.zeros_like(image)
    coarse = 1 << (level + 1)
    canvas[::coarse, ::coarse] = image[::coarse, ::coarse]
    view, src = level_view(canvas, level), level_view(image, level)
    for earlier in PHASES[: PHASES.index(phase)]:
        pr, pc = PARITY[earlier]
        view[pr::2, pc::2] = src[pr::2, pc::2]
    return canvas


# --- the coding engine ---------------------------------------------------------------------



#: Laplace scale tables the networks index (log-spaced; training uses the same spacing).
SCALE_MIN, SCALE_MAX, SCALE_COUNT = 0.25, 2048.0, 64
#: Fractional bits of the networks' outputs.
OUT_FRAC = 8
_HEADER = struct.Struct("<BBHBBB")  # version, window id, max error, coarse table, shift_d, passes
_VERSION = 1
#: Table-index bands within which the encoder may shift every index of a pass by one offset
#: (sent as side information): per-image calibration of the network's scales, worth ~2% on CT
#: whose noise differs from the training scans, and a safety net on images unlike any scan
#: (offsets reach every table).
CALIBRATION_BANDS = np.array([16, 24, 32, 40])
CALIBRATION_RANGE = 16
CALIBRATION_MAX = SCALE_COUNT - 1


def scale_step() -> float:
    return math.log(SCALE_MAX / SCALE_MIN) / (SCALE_COUNT - 1)


@dataclass
class PixelEstimator:
    """One trained pixel-estimation network per phase, with its tables, as integers."""

    window: str
    nets: dict[str, IntMLP]
    thresholds: np.ndarray
    tables: LaplaceTables
    #: True for the model that also reads the previous decoded slice (volumes).
    inter: bool = False

    def __post_init__(self) -> None:
        self._coder = GroupedCoder(self.tables)

    # -- one pass ---------------------------------------------------------------------
    def predict(self, grid: np.ndarray, phase: str, level: int, top: int,
                previous: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Integer location, table index and window mean of every pixel of ``phase`` (exact)."""
        feats, ref = phase_features(grid, phase, self.window, level, self.thresholds,
                                    previous)
        out = self.nets[phase](feats)
        half = float(1 << (OUT_FRAC - 1))
        location = ref + np.floor((out[:, 0] + half) * 2.0**-OUT_FRAC).astype(np.int64)
        index = np.clip(np.floor((out[:, 1] + half) * 2.0**-OUT_FRAC), 0, SCALE_COUNT - 1)
        return np.clip(location, 0, top), index.astype(np.int64), ref

    def _pass_options(self, truth: np.ndarray, location: np.ndarray, index: np.ndarray,
                      ref: np.ndarray, max_error: int, top: int):
        """The network's prediction or, as a safety net for images unlike any training scan,
        the window mean with one scale: the network unless the fallback codes the pass in
        fewer bits (only tried when the network does worse than raw samples would)."""
        step = 2 * max_error + 1
        options = []
        for mode, (loc, idx) in enumerate(((location, index), (ref, np.zeros_like(index)))):
            residual = truth - loc
            q = np.sign(residual) * ((np.abs(residual) + max_error) // step)
            deltas = self._calibrate(q, idx)
            coded = _apply_calibration(idx, deltas)
            cost = float(self.tables.code_lengths(q, coded).sum())
            options.append((cost, mode, q, deltas, coded, np.clip(loc + q * step, 0, top)))
            if cost <= truth.size * (top.bit_length() + 1):
                break
        return min(options, key=lambda option: option[0])[1:]

    # -- whole images -----------------------------------------------------------------
    def _previous(self, previous: np.ndarray | None, shape: tuple[int, int]
                  ) -> np.ndarray | None:
        if not self.inter:
            return None
        if previous is None or tuple(previous.shape) != tuple(shape):
            raise ValueError("this model codes a slice together with the previous one")
        return np.asarray(previous, np.int64)

    def encode(self, image: np.ndarray, bits: int, max_error: int = 0,
               previous: np.ndarray | None = None) -> bytes:
        image = np.asarray(image, dtype=np.int64)
        prior = self._previous(previous, image.shape)
        canvas = np.zeros_like(image)
        step = 2 * max_error + 1
        top = (1 << bits) - 1
        shift_d = round(math.log(step) / scale_step()) if max_error else 0
        levels = levels_for(image.shape)
        coarse_src = level_view(image, levels)
        coarse_res = _coarse_residuals(coarse_src, step, top)
        scale = max(float(np.mean(np.abs(coarse_res))), SCALE_MIN)
        coarse_index = int(self.tables.index_for(np.array([scale]))[0])
        level_view(canvas, levels)[...] = _coarse_reconstruct(coarse_res, step, top)
        segments = [self._coder.encode(coarse_res, np.full(coarse_res.shape, coarse_index))]
        for level, phase in passes(image.shape):
            grid = level_view(canvas, level)
            location, index, ref = self.predict(
                grid, phase, level, top, None if prior is None else level_view(prior, level))
            rows, cols = phase_coords(grid.shape, phase)
            truth = level_view(image, level)[np.ix_(rows, cols)].ravel()
            index = np.maximum(index - shift_d, 0)
            mode, q, deltas, coded, recon = self._pass_options(truth, location, index, ref,
                                                               max_error, top)
            grid[np.ix_(rows, cols)] = recon.reshape(rows.size, cols.size)
            segments.append(bytes([mode]) + deltas.astype(np.uint8).tobytes()
                            + self._coder.encode(q, coded))
        header = _HEADER.pack(_VERSION, WINDOW_IDS[self.window], max_error, coarse_index,
                              shift_d, len(segments))
        lengths = struct.pack(f"<{len(segments)}I", *(len(s) for s in segments))
        return header + lengths + b"".join(segments)

    def decode(self, data: bytes, shape: tuple[int, int], bits: int,
               previous: np.ndarray | None = None) -> np.ndarray:
        prior = self._previous(previous, shape)
        if len(data) < _HEADER.size:
            raise CorruptStreamError("pixel-estimation stream is truncated")
        version, window_id, max_error, coarse_index, shift_d, n_seg = _HEADER.unpack_from(data)
        if version != _VERSION or WINDOW_IDS.get(self.window) != window_id:
            raise CorruptStreamError("pixel-estimation stream was made by another model or "
                                     "version of medcodec")
        expected = 1 + 3 * levels_for(shape)
        if n_seg != expected or coarse_index >= len(self.tables):
            raise CorruptStreamError("pixel-estimation stream header is damaged")
        pos = _HEADER.size + 4 * n_seg
        if len(data) < pos:
            raise CorruptStreamError("pixel-estimation stream is truncated")
        lengths = struct.unpack_from(f"<{n_seg}I", data, _HEADER.size)
        if pos + sum(lengths) != len(data):
            raise CorruptStreamError("pixel-estimation stream is truncated or has extra bytes")
        segments = []
        for n in lengths:
            segments.append(data[pos : pos + n])
            pos += n
        step = 2 * max_error + 1
        top = (1 << bits) - 1
        canvas = np.zeros(shape, dtype=np.int64)
        levels = levels_for(shape)
        coarse_shape = level_view(canvas, levels).shape
        res = self._coder.decode(segments[0], np.full(coarse_shape, coarse_index))
        level_view(canvas, levels)[...] = _coarse_reconstruct(res, step, top)
        for segment, (level, phase) in zip(segments[1:], passes(shape), strict=True):
            grid = level_view(canvas, level)
            location, index, ref = self.predict(
                grid, phase, level, top, None if prior is None else level_view(prior, level))
            index = np.maximum(index - shift_d, 0)
            bands = len(CALIBRATION_BANDS) + 1
            deltas = np.frombuffer(segment[1 : 1 + bands], np.uint8)
            if (len(deltas) != bands or segment[0] > 1
                    or deltas.max(initial=0) > CALIBRATION_RANGE + CALIBRATION_MAX):
                raise CorruptStreamError("pixel-estimation stream pass header is damaged")
            if segment[0] == 1:  # the window-mean fallback
                location, index = ref, np.zeros_like(index)
            q = self._coder.decode(segment[1 + bands :], _apply_calibration(index, deltas))
            rows, cols = phase_coords(grid.shape, phase)
            recon = np.clip(location + q * step, 0, top)
            grid[np.ix_(rows, cols)] = recon.reshape(rows.size, cols.size)
        return canvas

    def _calibrate(self, q: np.ndarray, index: np.ndarray) -> np.ndarray:
        """Per band, the index offset (stored + CALIBRATION_RANGE) that codes ``q`` best.

        The code length is unimodal in the offset: a halving-step search (32, 16, ..., 1)
        on at most 16k samples of the band finds it in 13 evaluations.
        """
        band = np.digitize(index, CALIBRATION_BANDS)
        deltas = np.full(len(CALIBRATION_BANDS) + 1, CALIBRATION_RANGE, np.int64)
        for b in np.unique(band):
            members = np.flatnonzero(band == b)
            members = members[:: max(1, members.size // 16384)]
            qb, ib = q[members], index[members]
            costs: dict[int, float] = {}

            def cost(d: int, qb: np.ndarray = qb, ib: np.ndarray = ib,
                     costs: dict[int, float] = costs) -> float:
                if d not in costs:
                    shifted = np.clip(ib + d, 0, SCALE_COUNT - 1)
                    costs[d] = float(self.tables.code_lengths(qb, shifted).sum())
                return costs[d]

            best = 0
            for jump in (32, 16, 8, 4, 2, 1):
                candidates = [d for d in (best - jump, best, best + jump)
                              if -CALIBRATION_RANGE <= d <= CALIBRATION_MAX]
                best = min(candidates, key=cost)
            deltas[b] = best + CALIBRATION_RANGE
        return deltas

    # -- storage ----------------------------------------------------------------------
    def as_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for safetensors (C-contiguous: safetensors writes raw buffers)."""
        return {k: np.ascontiguousarray(v) for k, v in self._arrays().items()}

    def _arrays(self) -> dict[str, np.ndarray]:
        out = {"pen.window": np.array([WINDOW_IDS[self.window]], np.int32),
               "pen.inter": np.array([int(self.inter)], np.int32),
               "pen.thresholds": self.thresholds.astype(np.int64)}
        out.update(self.tables.as_arrays("pen.entropy."))
        for phase, net in self.nets.items():
            out.update(net.as_arrays(f"pen.{phase}."))
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> PixelEstimator:
        window = {v: k for k, v in WINDOW_IDS.items()}[int(arrays["pen.window"][0])]
        nets = {phase: IntMLP.from_arrays(arrays, f"pen.{phase}.") for phase in PHASES}
        inter = bool(int(arrays["pen.inter"][0])) if "pen.inter" in arrays else False
        return cls(window, nets, np.asarray(arrays["pen.thresholds"], np.int64),
                   LaplaceTables.from_arrays(arrays, "pen.entropy."), inter)


WINDOW_IDS = {"3x3": 1, "1x8": 2}


def _apply_calibration(index: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """Shift each index by its band's offset (``stored`` holds offset + CALIBRATION_RANGE)."""
    band = np.digitize(index, CALIBRATION_BANDS)
    offsets = stored.astype(np.int64) - CALIBRATION_RANGE
    return np.clip(index + offsets[band], 0, SCALE_COUNT - 1)


def build_tables() -> LaplaceTables:
    return LaplaceTables.build(SCALE_MIN, SCALE_MAX, SCALE_COUNT)


def _coarse_residuals(coarse: np.ndarray, step: int, top: int) -> np.ndarray:
    """Row DPCM of the coarsest grid (a few hundred pixels), quantised when step > 1.

    Done sequentially: the reconstruction each prediction uses must be the decoder's.
    """
    res = np.zeros(coarse.shape, np.int64)
    recon = np.zeros(coarse.shape, np.int64)
    half = step // 2
    for r in range(coarse.shape[0]):
        for c in range(coarse.shape[1]):
            pred = recon[r, c - 1] if c else (recon[r - 1, 0] if r else (top + 1) // 2)
            e = int(coarse[r, c]) - int(pred)
            q = (abs(e) + half) // step * (1 if e >= 0 else -1)
            res[r, c] = q
            recon[r, c] = min(max(pred + q * step, 0), top)
    return res


def _coarse_reconstruct(res: np.ndarray, step: int, top: int) -> np.ndarray:
    recon = np.zeros(res.shape, np.int64)
    for r in range(res.shape[0]):
        for c in range(res.shape[1]):
            pred = recon[r, c - 1] if c else (recon[r - 1, 0] if r else (top + 1) // 2)
            recon[r, c] = min(max(pred + int(res[r, c]) * step, 0), top)
    return recon
