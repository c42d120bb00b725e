"""The paper-literal lossy codec in exact integer arithmetic: encode and decode.

Encoder: image -> 2-level CDF 9/7 DWT onto a 16-channel grid (:mod:`.layout`) -> CAL between
subbands (:mod:`.cal`) -> learned analysis branch -> latent ``y`` -> per-channel steps (the
rate knob times learned gain units) -> integer latent. Hyperprior: ``z`` (two stride-2
convolutions) is coded first under per-channel Laplace tables; its synthesis gives every latent
a mean and a Laplace table index. The latent is coded in two checkerboard passes: the anchors
with the hyperprior alone, the others also seeing their decoded anchor neighbours (a 3x3 context
convolution), so each pass decodes in parallel. Decoder: dequantise, learned synthesis branch,
inverse DWT, then the trainable 3x3 filter (integer taps per rate band).

Every network runs in integers (:mod:`.intconv`), the steps come from stored integer tables and
the entropy tables are stored, so decoding gives the same pixels in any process, on any
thread count.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

from medcodec.entropy.coder import GroupedCoder, join_segments, split_segments
from medcodec.entropy.tables import LaplaceTables
from medcodec.errors import CorruptStreamError
from medcodec.models.intnet import ACT_LIMIT
from medcodec.models.transform import layout as lay
from medcodec.models.transform.cal import IntCal
from medcodec.models.transform.intconv import IntConv
from medcodec.models.wavelet.synthesis import (
    FILTER_BANDS,
    FILTER_ONE,
    apply_filter,
    filter_band,
)

_VERSION = 1
_HEADER = struct.Struct("<BhBI")  # version, step code, flags, crc32 of the integer latent
_FLAG_FILTER = 1
#: The rate knob: quantiser step = 2 ** (code / STEP_UNITS) stored units.
STEP_UNITS = 64
STEP_CODE_MIN, STEP_CODE_MAX = -STEP_UNITS, 11 * STEP_UNITS
#: Fixed-point fractions: hidden activations, log-steps (gain units), corrections.
ACT_BITS = 8
LOG_BITS = 12
#: Integer inputs of the branches: the subband grid in stored units times 4.
GRID_UNIT = 4.0
#: Laplace tables of the latent and of z.
TABLE_COUNT = 96


def build_tables() -> LaplaceTables:
    return LaplaceTables.build(lay.SCALE_MIN, lay.SCALE_MAX, TABLE_COUNT)


def step_code(step: float) -> int:
    """The step code nearest a requested step (encoder side)."""
    code = round(STEP_UNITS * float(np.log2(max(step, 1e-6))))
    return int(np.clip(code, STEP_CODE_MIN, STEP_CODE_MAX))


@dataclass
class TransformModel:
    cal: IntCal | None  # None: the ablation without cross-attention
    analysis: list[IntConv]  # branch: grid -> correction (stored units, ACT_BITS fraction)
    hyper_analysis: list[IntConv]
    hyper_synthesis: list[IntConv]
    head: IntConv  # anchors: hyper features -> (mean, log-scale) per channel
    context: IntConv  # non-anchors: decoded anchors -> context features
    mix: list[IntConv]  # [hyper, context] -> (mean, log-scale)
    synthesis: list[IntConv]
    gains: np.ndarray  # (anchors, 16) int: log2 step offsets, LOG_BITS fraction
    z_tables: np.ndarray  # (HYPER,) int: table index of each z channel
    exp_table: np.ndarray  # (2**LOG_BITS,) int64: round(2**(k / 2**LOG_BITS) * 2**40)
    filter_taps: np.ndarray  # (len(FILTER_BANDS) + 1, 9) int taps / FILTER_ONE
    tables: LaplaceTables = field(default_factory=build_tables)
    use_filter: bool = True
    #: Encoder-side RDO quantisation strength (0: plain rounding); not part of the stream.
    rdo_strength: float = 1.5

    def __post_init__(self) -> None:
        self._coder = GroupedCoder(self.tables)
        logs = np.log(self.tables.scales)
        # log-scale outputs (natural log, ACT_BITS fraction) -> table: integer thresholds
        self._thresholds = np.round((logs[1:] + logs[:-1]) / 2 * 2**ACT_BITS)

    # -- steps ----------------------------------------------------------------------------
    def steps(self, code: int) -> np.ndarray:
        """(16,) float64 quantiser steps (stored units) of a step code: integer arithmetic
        on the stored gain units and exponent table, the same on every machine."""
        anchors = len(self.gains)
        pos = np.clip(code, 0, 8 * STEP_UNITS) * (anchors - 1)
        i = min(pos // (8 * STEP_UNITS), anchors - 2)
        frac = pos - i * 8 * STEP_UNITS
        g = (self.gains[i] * (8 * STEP_UNITS - frac) + self.gains[i + 1] * frac) // (
            8 * STEP_UNITS)
        log2_step = code * (1 << LOG_BITS) // STEP_UNITS + g  # LOG_BITS fraction
        whole, part = np.divmod(log2_step.astype(np.int64), 1 << LOG_BITS)
        return np.ldexp(self.exp_table[part].astype(np.float64), (whole - 40).astype(np.int32))

    # -- shared by encoder and decoder ------------------------------------------------------
    def _hyper(self, z: np.ndarray) -> np.ndarray:
        h = z
        for layer in self.hyper_synthesis:
            h = layer(h)
        return h

    def _params(self, out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(integer means, table indices) from a (..., 32) parameter map."""
        mean = np.floor(out[..., : lay.CHANNELS] * 2.0**-ACT_BITS + 0.5).astype(np.int64)
        index = np.searchsorted(self._thresholds, out[..., lay.CHANNELS :]).astype(np.int32)
        return mean, index

    def _anchor_params(self, hyper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._params(self.head(hyper))

    def _other_params(self, hyper: np.ndarray, anchors_q: np.ndarray, anchor: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
        """Means and tables of the non-anchor positions (the 1x1 layers run there only)."""
        ctx = self.context(anchors_q)
        out = np.concatenate([hyper[~anchor], ctx[~anchor]], axis=1)[None]
        for layer in self.mix:
            out = layer(out)
        return self._params(out[0])

    # -- encoder --------------------------------------------------------------------------
    def analyse(self, image: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        """(latent y in stored units (rows/4, cols/4, 16), padded shape)."""
        padded = _pad(np.asarray(image, np.float64))
        grid = lay.analysis_bands(padded).transpose(1, 2, 0) * lay.NORM  # stored units
        if self.cal is not None:
            fixed = np.clip(np.round(grid * GRID_UNIT), -ACT_LIMIT, ACT_LIMIT)
            grid = grid + self.cal(fixed) * 2.0**-ACT_BITS
        return grid + self._branch(self.analysis, grid), padded.shape

    @staticmethod
    def _branch(layers: list[IntConv], grid: np.ndarray) -> np.ndarray:
        h = np.clip(np.round(grid * GRID_UNIT), -ACT_LIMIT, ACT_LIMIT)
        for layer in layers:
            h = layer(h)
        return h * 2.0**-ACT_BITS

    def encode(self, image: np.ndarray, bits: int, step: float) -> bytes:
        code = step_code(step)
        y, _ = self.analyse(image)
        steps = self.steps(code)
        v = y / steps
        y_q = np.round(v).astype(np.int64)
        h = np.clip(np.round(v * (lay.HYPER_IN * 2**ACT_BITS)), -ACT_LIMIT, ACT_LIMIT)
        for layer in self.hyper_analysis:
            h = layer(h)
        z = np.floor(h * 2.0**-ACT_BITS + 0.5).astype(np.int64)
        z_index = np.broadcast_to(self.z_tables, z.shape)
        segments = [self._coder.encode(z, z_index)]
        hyper = self._hyper(z.astype(np.float64))
        anchor = lay.anchor_mask(*y.shape[:2])[0, 0].astype(bool)
        weight = self._distortion_weight(code, steps)
        mean, index = self._anchor_params(hyper[anchor][None])
        y_q[anchor] = self._rdo(v[anchor], y_q[anchor], mean[0], index[0], weight)
        segments.append(self._coder.encode(y_q[anchor] - mean[0], index[0]))
        anchors_q = np.where(anchor[..., None], y_q, 0).astype(np.float64)
        mean, index = self._other_params(hyper, anchors_q, anchor)
        y_q[~anchor] = self._rdo(v[~anchor], y_q[~anchor], mean, index, weight)
        segments.append(self._coder.encode(y_q[~anchor] - mean, index))
        flags = _FLAG_FILTER if self.use_filter else 0
        header = _HEADER.pack(_VERSION, code, flags, _crc(y_q))
        return header + join_segments(segments)

    def _distortion_weight(self, code: int, steps: np.ndarray) -> np.ndarray:
        """(16,) bits per squared quantiser unit of error in each channel: the slope
        lambda = 6 / (ln 2 * step**2) the model was trained at, times the channel's squared
        step and pixel-domain gain."""
        nominal = 2.0 ** (code / STEP_UNITS)
        return (self.rdo_strength * 6.0 / np.log(2.0) * (steps / nominal) ** 2
                * lay.channel_gains())

    def _rdo(self, v: np.ndarray, rounded: np.ndarray, mean: np.ndarray, index: np.ndarray,
             weight: np.ndarray) -> np.ndarray:
        """Rate-distortion optimised quantisation (encoder only): each value is also tried one
        step nearer its predicted mean, and the cheaper of the two in bits + weight * error**2
        under the entropy model's own table is kept."""
        if self.rdo_strength <= 0:
            return rounded
        toward = rounded - np.sign(rounded - mean)
        cost = [self.tables.code_lengths(k - mean, index) + weight * (v - k) ** 2
                for k in (rounded, toward)]
        return np.where(cost[1] < cost[0], toward, rounded)

    # -- decoder --------------------------------------------------------------------------
    def decode_latent(self, data: bytes, shape: tuple[int, int]
                      ) -> tuple[int, np.ndarray, bool]:
        if len(data) < _HEADER.size:
            raise CorruptStreamError("learned lossy stream is truncated")
        version, code, flags, crc = _HEADER.unpack_from(data)
        if version != _VERSION or not STEP_CODE_MIN <= code <= STEP_CODE_MAX:
            raise CorruptStreamError("not a transform-codec stream this version can decode")
        rows, cols = (-(-n // lay.BLOCK) * lay.BLOCK for n in shape)
        grid = (rows // 4, cols // 4)
        z_segment, a_segment, o_segment = split_segments(data, _HEADER.size, 3,
                                                         "learned lossy stream")
        zshape = (grid[0] // 4, grid[1] // 4, lay.HYPER)
        z = self._coder.decode(z_segment, np.broadcast_to(self.z_tables, zshape))
        hyper = self._hyper(z.astype(np.float64))
        anchor = lay.anchor_mask(*grid)[0, 0].astype(bool)
        y_q = np.zeros((*grid, lay.CHANNELS), np.int64)
        mean, index = self._anchor_params(hyper[anchor][None])
        y_q[anchor] = self._coder.decode(a_segment, index[0]) + mean[0]
        anchors_q = np.where(anchor[..., None], y_q, 0).astype(np.float64)
        mean, index = self._other_params(hyper, anchors_q, anchor)
        y_q[~anchor] = self._coder.decode(o_segment, index) + mean
        if _crc(y_q) != crc:
            raise CorruptStreamError(
                "learned lossy stream decoded to a different latent than was coded (checksum "
                "mismatch): damaged stream or a different model")
        return code, y_q, bool(flags & _FLAG_FILTER)

    def synthesise(self, code: int, y_q: np.ndarray, shape: tuple[int, int], bits: int,
                   use_filter: bool) -> np.ndarray:
        y_hat = y_q * self.steps(code)
        grid = y_hat + self._branch(self.synthesis, y_hat)
        x = lay.synthesis_image(grid.transpose(2, 0, 1) / lay.NORM)[: shape[0], : shape[1]]
        top = (1 << bits) - 1
        pixels = np.clip(np.round(x), 0, top).astype(np.int64)
        if use_filter:
            band = filter_band(2.0 ** (code / STEP_UNITS))
            pixels = apply_filter(pixels, self.filter_taps[band], top)
        return pixels

    def decode(self, data: bytes, shape: tuple[int, int], bits: int) -> np.ndarray:
        code, y_q, use_filter = self.decode_latent(data, shape)
        return self.synthesise(code, y_q, shape, bits, use_filter)

    # -- storage --------------------------------------------------------------------------
    def as_arrays(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        if self.cal is not None:
            out.update(self.cal.as_arrays("tf.cal."))
        for name in ("analysis", "hyper_analysis", "hyper_synthesis", "mix", "synthesis"):
            for k, layer in enumerate(getattr(self, name)):
                out.update(layer.as_arrays(f"tf.{name}{k}"))
        out.update(self.head.as_arrays("tf.head"))
        out.update(self.context.as_arrays("tf.context"))
        out.update(self.tables.as_arrays("tf.entropy."))
        out["tf.gains"] = self.gains.astype(np.int32)
        out["tf.z_tables"] = self.z_tables.astype(np.int32)
        out["tf.exp_table"] = self.exp_table.astype(np.int64)
        out["tf.filter_taps"] = self.filter_taps.astype(np.int32)
        out["tf.use_filter"] = np.array([int(self.use_filter)], np.int32)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> TransformModel:
        def stack(name: str) -> list[IntConv]:
            layers = []
            while f"tf.{name}{len(layers)}.weight" in arrays:
                layers.append(IntConv.from_arrays(arrays, f"tf.{name}{len(layers)}"))
            if not layers:
                raise KeyError(f"tf.{name}")
            return layers

        cal = IntCal.from_arrays(arrays, "tf.cal.") if "tf.cal.query.0.weight" in arrays \
            else None
        return cls(cal, stack("analysis"), stack("hyper_analysis"), stack("hyper_synthesis"),
                   IntConv.from_arrays(arrays, "tf.head"),
                   IntConv.from_arrays(arrays, "tf.context"), stack("mix"), stack("synthesis"),
                   np.asarray(arrays["tf.gains"], np.int64),
                   np.asarray(arrays["tf.z_tables"], np.int64),
                   np.asarray(arrays["tf.exp_table"], np.int64),
                   np.asarray(arrays["tf.filter_taps"], np.int64),
                   LaplaceTables.from_arrays(arrays, "tf.entropy."),
                   bool(int(arrays["tf.use_filter"][0])))

    @classmethod
    def from_float(cls, state: dict[str, np.ndarray], use_attention: bool = True
                   ) -> TransformModel:
        """Quantise the float twin (:mod:`medcodec.train.transform`) to the integer codec."""
        act = 2.0**-ACT_BITS
        # branches: input grid * GRID_UNIT (stored units) -> twin input grid_norm * BRANCH
        branch_in = lay.BRANCH_SCALE / (lay.NORM * GRID_UNIT)
        branch_out = lay.NORM / lay.BRANCH_SCALE  # twin output -> stored units

        def branch(prefix: str) -> list[IntConv]:
            first = IntConv.from_float(state[f"{prefix}0.weight"], state[f"{prefix}0.bias"],
                                       branch_in, ACT_BITS, relu=True)
            second = IntConv.from_float(state[f"{prefix}1.weight"] * branch_out,
                                        state[f"{prefix}1.bias"] * branch_out, act, ACT_BITS)
            return [first, second]

        cal = None
        if use_attention:
            scaled = dict(state)
            for g in range(lay.TOKENS):  # outputs in stored units
                scaled[f"cal.back.{g}.weight"] = state[f"cal.back.{g}.weight"] * (
                    lay.NORM / lay.CAL_SCALE)
                scaled[f"cal.back.{g}.bias"] = state[f"cal.back.{g}.bias"] * (
                    lay.NORM / lay.CAL_SCALE)
            cal = IntCal.from_float(scaled, lay.CAL_SCALE / (lay.NORM * GRID_UNIT), ACT_BITS)
        hyper_analysis = [
            IntConv.from_float(state["ha0.weight"], state["ha0.bias"], act, ACT_BITS,
                               stride=2, relu=True),
            IntConv.from_float(state["ha1.weight"], state["ha1.bias"], act, ACT_BITS, stride=2)]
        hyper_synthesis = [
            IntConv.from_float(state["hs0.weight"], state["hs0.bias"], 1.0, ACT_BITS,
                               upsample=True, relu=True),
            IntConv.from_float(state["hs1.weight"], state["hs1.bias"], act, ACT_BITS,
                               upsample=True, relu=True)]
        out_scale = np.r_[np.full(lay.CHANNELS, lay.MEAN_SCALE), np.ones(lay.CHANNELS)]
        head = IntConv.from_float(state["head.weight"] * out_scale[:, None, None, None],
                                  state["head.bias"] * out_scale, act, ACT_BITS)
        context = IntConv.from_float(state["ctx.weight"], state["ctx.bias"], lay.CTX_IN,
                                     ACT_BITS, relu=True)
        mix = [IntConv.from_float(state["mix0.weight"], state["mix0.bias"], act, ACT_BITS,
                                  relu=True),
               IntConv.from_float(state["mix1.weight"] * out_scale[:, None, None, None],
                                  state["mix1.bias"] * out_scale, act, ACT_BITS)]
        gains = np.round(np.asarray(state["gain"], np.float64) * (1 << LOG_BITS))
        tables = build_tables()
        z_scales = np.exp(np.clip(np.asarray(state["z_log_scale"], np.float64),
                                  np.log(lay.SCALE_MIN), np.log(lay.SCALE_MAX)))
        z_tables = tables.index_for(z_scales)
        exp_table = np.round(2.0 ** (np.arange(1 << LOG_BITS) / (1 << LOG_BITS) + 40))
        taps = np.zeros((len(FILTER_BANDS) + 1, 9), np.int64)
        taps[:, 4] = FILTER_ONE
        return cls(cal, branch("ga"), hyper_analysis, hyper_synthesis, head, context, mix,
                   branch("gs"), gains.astype(np.int64), z_tables.astype(np.int64),
                   exp_table.astype(np.int64), taps, tables, use_filter=False)


def _pad(image: np.ndarray) -> np.ndarray:
    rows, cols = (-(-n // lay.BLOCK) * lay.BLOCK for n in image.shape)
    return np.pad(image, ((0, rows - image.shape[0]), (0, cols - image.shape[1])),
                  mode="symmetric")


def _crc(y_q: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(y_q, dtype="<i8").tobytes()) & 0xFFFFFFFF
