"""The pixel estimator: per pass the network's integer prediction (location, scale), the
window-mean fallback, and the stream format (coarse grid, then one segment per pass)."""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from medcodec.entropy.coder import GroupedCoder, join_segments, split_segments
from medcodec.entropy.tables import LaplaceTables
from medcodec.errors import CorruptStreamError
from medcodec.models.intnet import IntMLP
from medcodec.models.pen.calibration import (
    CALIBRATION_BANDS,
    CALIBRATION_MAX,
    CALIBRATION_RANGE,
    SCALE_COUNT,
    apply_calibration,
    calibrate,
    scale_step,
)
from medcodec.models.pen.features import PassInputs
from medcodec.models.pen.schedule import PHASES, level_view, levels_for, passes, phase_view
from medcodec.models.threads import parallel_map

#: Pixels per block of a pass (about): small enough that a block's features and activations
#: stay in the CPU cache, large enough that NumPy's per-call cost stays small.
_BLOCK_PIXELS = 16384


#: Fractional bits of the networks' outputs.
OUT_FRAC = 8


_HEADER = struct.Struct("<BBHBBB")  # version, window id, max error, coarse table, shift_d, passes


_VERSION = 1


@dataclass(frozen=True)
class Pass:
    """One interlace pass as the network predicts it (``PixelEstimator.pass_predictions``)."""

    level: int
    phase: str
    view: np.ndarray  # the pass's pixels in the canvas, written by the consumer
    location: np.ndarray  # predicted value of every pixel of the pass
    index: np.ndarray  # table index (scale), shifted for near-lossless
    ref: np.ndarray  # window mean: the fallback predictor


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
                previous: np.ndarray | None = None,
                coarse: tuple[np.ndarray, np.ndarray] | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Integer location, table index and window mean of every pixel of ``phase`` (exact).

        Row blocks of the pass are featurised and evaluated in parallel; each is exact, so
        the result does not depend on the split. ``coarse`` is the level's shared context
        (:meth:`PassInputs.coarse_context`), computed once for its three phases.
        """
        inputs = PassInputs(grid, phase, self.window, level, self.thresholds, previous,
                            coarse)
        net = self.nets[phase]
        blocks = max(1, inputs.rows * inputs.cols // _BLOCK_PIXELS)
        bounds = np.linspace(0, inputs.rows, blocks + 1).astype(int)

        def run(block: int) -> tuple[np.ndarray, np.ndarray]:
            feats, ref = inputs.features((int(bounds[block]), int(bounds[block + 1])))
            return net(feats), ref

        results = parallel_map(run, range(blocks))
        out = np.concatenate([r[0] for r in results])
        ref = np.concatenate([r[1] for r in results])
        half = float(1 << (OUT_FRAC - 1))
        location = ref + np.floor((out[:, 0] + half) * 2.0**-OUT_FRAC).astype(np.int64)
        index = np.clip(np.floor((out[:, 1] + half) * 2.0**-OUT_FRAC), 0, SCALE_COUNT - 1)
        return np.clip(location, 0, top), index.astype(np.int64), ref

    def _pass_options(self, truth: np.ndarray, location: np.ndarray, index: np.ndarray,
                      ref: np.ndarray, max_error: int, top: int,
                      start: np.ndarray | None = None):
        """The network's prediction or, as a safety net for images unlike any training scan,
        the window mean with one scale: the network unless the fallback codes the pass in
        fewer bits (only tried when the network does worse than raw samples would).
        ``start``: where the network's calibration search starts (see :func:`calibrate`)."""
        step = 2 * max_error + 1
        options = []
        for mode, (loc, idx) in enumerate(((location, index), (ref, np.zeros_like(index)))):
            residual = truth - loc
            q = np.sign(residual) * ((np.abs(residual) + max_error) // step)
            deltas = calibrate(q, idx, self.tables, start if mode == 0 else None)
            coded = apply_calibration(idx, deltas)
            cost = float(self.tables.code_lengths(q, coded).sum())
            options.append((cost, mode, q, deltas, coded, np.clip(loc + q * step, 0, top)))
            if cost <= truth.size * (top.bit_length() + 1):
                break
        return min(options, key=lambda option: option[0])[1:]

    def pass_predictions(self, canvas: np.ndarray, top: int, shift_d: int,
                         prior: np.ndarray | None) -> Iterator[Pass]:
        """The interlace passes in coding order, each with the network's prediction from what
        ``canvas`` holds so far: the one pass loop of encoder and decoder. The consumer
        writes each pass's pixels into ``pass.view`` before asking for the next."""
        coarse = None
        for level, phase in passes(canvas.shape):
            grid = level_view(canvas, level)
            if phase == PHASES[0]:  # the coarse grid stays as it is for the level's phases
                coarse = PassInputs.coarse_context(grid, self.thresholds)
            location, index, ref = self.predict(
                grid, phase, level, top, None if prior is None else level_view(prior, level),
                coarse)
            yield Pass(level, phase, phase_view(grid, phase), location,
                       np.maximum(index - shift_d, 0), ref)

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
        coarse_res = coarse_residuals(coarse_src, step, top)
        coarse_index = self.tables.index_for_values(coarse_res)
        level_view(canvas, levels)[...] = coarse_reconstruct(coarse_res, step, top)
        segments = [self._coder.encode(coarse_res, np.full(coarse_res.shape, coarse_index))]
        start = None
        for pass_ in self.pass_predictions(canvas, top, shift_d, prior):
            truth = phase_view(level_view(image, pass_.level), pass_.phase).ravel()
            mode, q, deltas, coded, recon = self._pass_options(
                truth, pass_.location, pass_.index, pass_.ref, max_error, top, start)
            start = deltas if mode == 0 else start
            pass_.view[...] = recon.reshape(pass_.view.shape)
            segments.append(bytes([mode]) + deltas.astype(np.uint8).tobytes()
                            + self._coder.encode(q, coded))
        header = _HEADER.pack(_VERSION, WINDOW_IDS[self.window], max_error, coarse_index,
                              shift_d, len(segments))
        return header + join_segments(segments)

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
        segments = split_segments(data, _HEADER.size, n_seg, "pixel-estimation stream")
        step = 2 * max_error + 1
        top = (1 << bits) - 1
        canvas = np.zeros(shape, dtype=np.int64)
        levels = levels_for(shape)
        coarse_shape = level_view(canvas, levels).shape
        res = self._coder.decode(segments[0], np.full(coarse_shape, coarse_index))
        level_view(canvas, levels)[...] = coarse_reconstruct(res, step, top)
        bands = len(CALIBRATION_BANDS) + 1
        for segment, pass_ in zip(segments[1:], self.pass_predictions(canvas, top, shift_d, prior),
                                  strict=True):
            deltas = np.frombuffer(segment[1 : 1 + bands], np.uint8)
            if (len(deltas) != bands or segment[0] > 1
                    or deltas.max(initial=0) > CALIBRATION_RANGE + CALIBRATION_MAX):
                raise CorruptStreamError("pixel-estimation stream pass header is damaged")
            location, index = pass_.location, pass_.index
            if segment[0] == 1:  # the window-mean fallback
                location, index = pass_.ref, np.zeros_like(index)
            q = self._coder.decode(segment[1 + bands :], apply_calibration(index, deltas))
            pass_.view[...] = np.clip(location + q * step, 0, top).reshape(pass_.view.shape)
        return canvas

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


def coarse_residuals(coarse: np.ndarray, step: int, top: int) -> np.ndarray:
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


def coarse_reconstruct(res: np.ndarray, step: int, top: int) -> np.ndarray:
    recon = np.zeros(res.shape, np.int64)
    for r in range(res.shape[0]):
        for c in range(res.shape[1]):
            pred = recon[r, c - 1] if c else (recon[r - 1, 0] if r else (top + 1) // 2)
            recon[r, c] = min(max(pred + int(res[r, c]) * step, 0), top)
    return recon
