"""The lossy model: the stream format (header, LL, hyperprior, two checkerboard passes per band),
rate-distortion optimised quantisation, the synthesis, and the weights' storage."""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from medcodec.entropy.coder import (
    BINARY,
    MAGNITUDE,
    SIGNED,
    GroupedCoder,
    split_segments,
)
from medcodec.entropy.tables import LaplaceTables
from medcodec.errors import CorruptStreamError
from medcodec.models.context import box_sum
from medcodec.models.intnet import IntMLP
from medcodec.models.threads import parallel_map
from medcodec.models.wavelet.attention import HEADS, VALUE_DIM, BandNet
from medcodec.models.wavelet.features import (
    STATIC,
    BandContext,
    attention_inputs,
    band_static,
    log4,
    neighbour_stats,
    parent_cells,
)
from medcodec.models.wavelet.hyperprior import (
    HYPER_LEVELS,
    block_code,
    block_shape,
    dpcm_reconstruct,
    dpcm_residuals,
    expand_blocks,
)
from medcodec.models.wavelet.passes import band_passes
from medcodec.models.wavelet.schedule import (
    LEVELS,
    ORIENTS,
    SCHEDULES,
    band_steps,
    dequantise,
    levels_for,
    quantise,
    synthesis_gain,
)
from medcodec.models.wavelet.signs import SIGN_POSITIVE, sign_context, sign_lengths
from medcodec.models.wavelet.synthesis import apply_filter, filter_band
from medcodec.models.wavelet.trellis import dependent_dequantise, trellis_levels
from medcodec.transforms.wavelet import Subbands, wavelet_forward, wavelet_inverse

SCALE_MIN, SCALE_MAX, SCALE_COUNT = 0.04, 1024.0, 96


_HEADER = struct.Struct("<BBdBBI")  # version, levels, step, LL table, flags, crc of q


#: Header flag: the decoder applies the 3x3 filter.
_FLAG_FILTER = 1
#: Header flag: the detail bands use dependent quantisation (:mod:`.trellis`).
_FLAG_DEPENDENT = 2
#: Header flag: a part after the LL band's carries per-image table shifts (see
#: :func:`best_shifts`), 5 per pass, with its own table byte.
_FLAG_SHIFTS = 4
#: Header flag (checkerboard schedule only): a u16 follows the header, bit b set where detail
#: band b (coding order) codes its second pass as magnitudes under the folded tables, then the
#: signs of the non-zero levels in context (:mod:`.signs`); the encoder sets the bit where
#: that costs fewer bits than the signs' 1 bit each.
_FLAG_SIGNS = 8
_SIGN_MASK = struct.Struct("<H")
_FLAGS = _FLAG_FILTER | _FLAG_DEPENDENT | _FLAG_SHIFTS | _FLAG_SIGNS

#: Table shifts: each pass's coefficients fall in 5 groups by their table index (edges at
#: Laplace scales of about 0.27, 0.72, 1.9 and 4.9 quantiser steps); the encoder moves each
#: group's index by up to SHIFT_MAX table steps (11% of the scale each) to what this image's
#: values cost least. It corrects the model where an image is unlike its training data.
SHIFT_EDGES = np.array([18, 27, 36, 45])
SHIFT_MAX = 12
#: The Laplace scale that prices a shift when the encoder chooses it (a regulariser: a shift
#: must save more than its own bits).
_SHIFT_SCALE = 0.5


#: Stream versions: 1 framed every pass as its own ANS segment (uint16 count, uint32 lengths;
#: a side part's table byte at its segment's start); 2 puts the side parts' table bytes after
#: the header and codes every part in one ANS stream (about 260 bytes less per 512x512 slice).
_VERSION_SEGMENTS = 1
_VERSION = 2


def scale_step() -> float:
    return math.log(SCALE_MAX / SCALE_MIN) / (SCALE_COUNT - 1)


def build_tables() -> LaplaceTables:
    return LaplaceTables.build(SCALE_MIN, SCALE_MAX, SCALE_COUNT, max_radius=8190)


#: Coefficients per block of the entropy-parameter network.
_INDEX_BLOCK = 16384


#: The entropy MLP's output carries 8 fraction bits (IntMLP act_bits: 256 per table step): adding
#: half a step and flooring rounds it to the nearest table index.
_OUT_ONE = 1 << 8


def _table_index(out: np.ndarray) -> np.ndarray:
    index = np.floor((out[:, 0] + _OUT_ONE / 2) / _OUT_ONE)
    return np.clip(index, 0, SCALE_COUNT - 1).astype(np.int64)


@dataclass
class WaveletModel:
    nets: list[BandNet]  # per orientation
    band_weights: np.ndarray  # (1 + 3 * LEVELS,) step weight of LL and each detail band
    recon_offsets: np.ndarray  # (3, 3) int: per orientation, |q| = 1, 2, >= 3 (1/256 units)
    filter_taps: np.ndarray  # (len(FILTER_BANDS) + 1, 9) int taps / FILTER_ONE, summing to it
    thresholds: np.ndarray
    tables: LaplaceTables
    use_attention: bool = True
    use_filter: bool = True
    #: Decomposition levels used at most (fewer for small images); an ablation knob.
    max_levels: int = LEVELS
    #: Rate-distortion optimised quantisation (encoder only): the Lagrange factor, in
    #: units of the band's step squared per bit; 0 keeps the plain dead-zone quantiser.
    #: 0.11 measured best (BD-rate -3.0% against 0, 6 held-out CT slices; 0.04: -1.0%,
    #: 0.07: -2.4%, 0.13: -3.0%, 0.2: -2.0%, 0.3: +0.5%).
    rdo: float = 0.11
    #: Dependent (trellis-coded) quantisation of the detail bands (encoder choice, flagged in
    #: the stream): the trellis's Lagrange factor, as ``rdo``; 0 codes without it. BD-rate
    #: against the RDO quantiser on 8 validation CT slices: with table shifts, 0.06 / 0.08 /
    #: 0.10: -1.4 / -1.5 / -1.2%; alone, 0.03 / 0.06 / 0.08 / 0.11 / 0.15: +0.6 / -1.4 / -1.4
    #: / -0.9 / +0.5%.
    trellis: float = 0.07
    #: Per-image table shifts (encoder choice, flagged in the stream): -2.9% BD-rate on the
    #: same slices, -3 to -7% on the slices least like the training CT.
    shifts: bool = True
    #: Passes per detail band (schedule.SCHEDULES): 2, the checkerboard, or 4, the 2x2
    #: lattice with 8-neighbour context; a property of the trained network.
    schedule: int = 2
    #: Context-coded signs in the checkerboard's second pass (encoder choice, flagged).
    signs: bool = True

    def __post_init__(self) -> None:
        self._coder = GroupedCoder(self.tables)

    # -- pieces shared by encoder and decoder ------------------------------------------
    def _band_coder(self, ctx: BandContext, shape: tuple[int, int]):
        """Per band: static features and attention once; a function of the pass after."""
        static = band_static(ctx, shape, self.thresholds)
        net = self.nets[ctx.orient]
        mlp = net.mlp_static_first
        if self.use_attention:  # on the parent grid; each position reads its parent cell
            attended = net.attention(*attention_inputs(ctx, static, self.thresholds))
        else:
            attended = np.zeros((1, 1, HEADS * VALUE_DIM))
        parent_cell = parent_cells(attended.shape[:2], shape)
        attended = attended.reshape(-1, attended.shape[-1])
        static = static.reshape(-1, STATIC)
        width = STATIC + HEADS * VALUE_DIM

        def index(q: np.ndarray, known: np.ndarray, positions: np.ndarray,
                  phase: int) -> np.ndarray:
            """Table index of every coefficient at ``positions`` (pass ``phase``): the MLP
            on the band's static features, the attention output and the pass features of
            :func:`pass_features` (the inputs training sees), in row blocks on the pool."""
            where = np.flatnonzero(positions)
            total, peak = neighbour_stats(q, known, self.schedule == 4)
            total, peak = total.ravel(), peak.ravel()
            started = float(phase if self.schedule == 4 else known.any())

            def run(block: np.ndarray) -> np.ndarray:
                feats = np.empty((block.size, width + 3))
                feats[:, :STATIC] = static[block]
                feats[:, STATIC:width] = attended[parent_cell[block]]
                feats[:, -3] = started
                feats[:, -2] = log4(total[block], self.thresholds)
                feats[:, -1] = log4(peak[block], self.thresholds)
                return _table_index(mlp(feats))

            blocks = [where[i : i + _INDEX_BLOCK] for i in range(0, where.size, _INDEX_BLOCK)]
            return np.concatenate(parallel_map(run, blocks)) if blocks else where

        return index

    def _rdo_choice(self, coeffs: np.ndarray, q: np.ndarray, index: np.ndarray, step: float,
                    orient: int, gain: float) -> np.ndarray:
        """Per coefficient, the nearer of {nearest level, one level toward zero} in
        ``gain * error**2 + lambda * bits``, bits under the table the decoder will use.

        The table index of a coefficient depends only on coefficients coded before it, so
        its own rate is exact; the effect on later contexts is ignored (as HEVC's RDOQ).
        """
        nearest = (np.sign(coeffs) * np.floor(np.abs(coeffs) / step + 0.5)).astype(np.int64)
        smaller = nearest - np.sign(nearest)
        lam = self.rdo * step * step

        def cost(levels: np.ndarray) -> np.ndarray:
            error = coeffs - dequantise(levels, step, self.recon_offsets[orient])
            return gain * error * error + lam * self.tables.code_lengths(levels, index)

        return np.where(cost(smaller) < cost(nearest), smaller, nearest)

    def _levels(self, coeffs: np.ndarray, plain: np.ndarray, index: np.ndarray, step: float,
                orient: int, gain: float, extra_sign_bits: np.ndarray | None = None
                ) -> np.ndarray:
        """The levels the encoder codes for one pass: the trellis (dependent quantisation),
        the RDO choice, or the plain dead-zone levels."""
        if self.trellis:
            return trellis_levels(coeffs, step, self.recon_offsets[orient], index, self.tables,
                                  gain, self.trellis * step * step, extra_sign_bits)
        if self.rdo:
            return self._rdo_choice(coeffs, plain, index, step, orient, gain)
        return plain

    def hyper_code(self, details_q: list[np.ndarray], level: int) -> np.ndarray:
        """z for one level: log-coded energy of the three orientations per block."""
        energy = sum(np.abs(d) for d in details_q)
        return block_code(energy, level, self.thresholds)

    def ll_activity(self, ll_q: np.ndarray) -> np.ndarray:
        mean = np.floor_divide(box_sum(ll_q, 1), 9)
        return ll_q - mean

    # -- encode ------------------------------------------------------------------------
    def encode(self, image: np.ndarray, bits: int, step: float) -> bytes:
        return self.encode_with_reconstruction(image, bits, step, reconstruct=False)[0]

    def encode_with_reconstruction(self, image: np.ndarray, bits: int, step: float,
                                   reconstruct: bool = True
                                   ) -> tuple[bytes, np.ndarray | None]:
        """The stream and, with ``reconstruct``, the pixels a decoder gets from it (the
        encoder's own synthesis of the coded coefficients: no entropy decoding)."""
        levels = min(levels_for(image.shape), self.max_levels)
        mid = float(1 << (bits - 1))
        bands = wavelet_forward(np.asarray(image, np.float64) - mid, levels)
        steps = band_steps(step, self.band_weights, levels)
        q_ll = quantise(bands.ll, steps[0])
        ll_res = dpcm_residuals(q_ll)
        ll_table = self.tables.index_for_values(ll_res)
        parts: list[tuple[np.ndarray, np.ndarray]] = [(ll_res, np.full(ll_res.shape, ll_table))]
        side_tables: list[int] = []  # the table of each side part (z per level, shifts)
        q_all = [q_ll]
        pass_shifts: list[np.ndarray] = []

        def level_start(depth: int, shape: tuple[int, int]):
            qs = [quantise(bands.details[depth][o], steps[1 + 3 * depth + o]) for o in range(3)]
            z = None
            if depth >= levels - HYPER_LEVELS:
                zb = self.hyper_code(qs, levels - depth)
                z_res = dpcm_residuals(zb)
                z_table = self.tables.index_for_values(z_res)
                side_tables.append(z_table)
                parts.append((z_res, np.full(z_res.shape, z_table)))
                z = expand_blocks(zb, qs[0].shape, levels - depth)
            return qs, z

        signs = self.signs and self.schedule == 2
        sign_mask = 0
        bands_in_order = band_passes(q_ll, self.ll_activity(q_ll), levels, steps,
                                     self.thresholds, level_start, self.schedule)
        for band_number, band in enumerate(bands_in_order):
            q, o = band.q, band.orient
            band_index = self._band_coder(band.ctx, q.shape)
            for phase, (pos, known) in enumerate(band.phases()):
                index = band_index(np.where(known, q, 0), known, pos, phase)
                coeffs = bands.details[band.depth][o][pos]
                gain = synthesis_gain(levels - band.depth, o)
                context = extra = None
                if signs and phase == 1:  # its neighbours (the first pass) are final
                    context = sign_context(q, pos, o)
                    extra = sign_lengths(coeffs >= 0, context) - 1.0  # beyond the table's bit
                if self.shifts:  # chosen on the levels picked under the unshifted tables
                    first = self._levels(coeffs, q[pos], index, band.step, o, gain, extra)
                    pass_shifts.append(best_shifts(self.tables, first, index))
                    index = shifted(index, pass_shifts[-1], len(self.tables))
                q[pos] = self._levels(coeffs, q[pos], index, band.step, o, gain, extra)
                pass_parts = _pass_parts(q[pos], index, context)
                if len(pass_parts) == 2:
                    sign_mask |= 1 << band_number
                parts.extend(pass_parts)
            q_all.append(q)
        crc = _q_crc(q_all)
        flags = ((_FLAG_FILTER if self.use_filter else 0)
                 | (_FLAG_DEPENDENT if self.trellis else 0)
                 | (_FLAG_SHIFTS if self.shifts else 0)
                 | (_FLAG_SIGNS if signs else 0))
        if self.shifts:  # read right after the LL band
            values = np.concatenate(pass_shifts)
            table = self.tables.index_for_values(values)
            side_tables.insert(0, table)
            parts.insert(1, (values, np.full(values.shape, table)))
        header = _HEADER.pack(_VERSION, levels, step, ll_table, flags, crc)
        mask = _SIGN_MASK.pack(sign_mask) if signs else b""
        data = header + mask + bytes(side_tables) + self._coder.encode_parts(parts)
        pixels = (self.synthesise(q_all, step, levels, image.shape, bits, self.use_filter,
                                  bool(self.trellis)) if reconstruct else None)
        return data, pixels

    # -- decode ------------------------------------------------------------------------
    def decode_coefficients(self, data: bytes, shape: tuple[int, int]
                            ) -> tuple[float, int, list[np.ndarray], int]:
        """(step, levels, quantised bands in decode order, header flags) of a stream."""
        if len(data) < _HEADER.size:
            raise CorruptStreamError("learned lossy stream is truncated")
        version, levels, step, ll_table, flags, crc = _HEADER.unpack_from(data)
        if version not in (_VERSION_SEGMENTS, _VERSION) or not 1 <= levels <= levels_for(shape):
            raise CorruptStreamError("learned lossy stream header does not match its image")
        allowed = _FLAG_FILTER if version == _VERSION_SEGMENTS else _FLAGS
        if self.schedule != 2:
            allowed &= ~_FLAG_SIGNS
        if (not (math.isfinite(step) and 1e-3 <= step <= 1e6) or ll_table >= len(self.tables)
                or flags & ~allowed):
            raise CorruptStreamError("learned lossy stream header is damaged")
        passes = 3 * self.schedule * levels
        sides = min(HYPER_LEVELS, levels) + bool(flags & _FLAG_SHIFTS)
        reader = _PartReader(self._coder, data, version, 1 + passes + sides, sides,
                             _SIGN_MASK.size if flags & _FLAG_SIGNS else 0)
        (sign_mask,) = _SIGN_MASK.unpack(reader.prefix) if flags & _FLAG_SIGNS else (0,)
        steps = band_steps(step, self.band_weights, levels)
        ll_shape = tuple(-(-s // (1 << levels)) for s in shape)
        q_ll = dpcm_reconstruct(reader.read(np.full(ll_shape, ll_table)))
        q_all = [q_ll]
        groups = len(SHIFT_EDGES) + 1
        pass_shifts = np.zeros((passes, groups), np.int64)
        if flags & _FLAG_SHIFTS:
            table = reader.table(len(self.tables))
            values = reader.read(np.full(passes * groups, table))
            if np.abs(values).max() > SHIFT_MAX:
                raise CorruptStreamError("learned lossy stream table shifts are damaged")
            pass_shifts = values.reshape(passes, groups)
        count_tables = len(self.tables)
        pass_number = 0

        def level_start(depth: int, band_shape: tuple[int, int]):
            z = None
            if depth >= levels - HYPER_LEVELS:
                table = reader.table(len(self.tables))
                zshape = block_shape(band_shape, levels - depth)
                zb = dpcm_reconstruct(reader.read(np.full(zshape, table)))
                z = expand_blocks(zb, band_shape, levels - depth)
            return None, z

        bands_in_order = band_passes(q_ll, self.ll_activity(q_ll), levels, steps,
                                     self.thresholds, level_start, self.schedule)
        for band_number, band in enumerate(bands_in_order):
            band_index = self._band_coder(band.ctx, band.q.shape)
            for phase, (pos, known) in enumerate(band.phases()):
                index = shifted(band_index(band.q, known, pos, phase),
                                pass_shifts[pass_number], count_tables)
                pass_number += 1
                if sign_mask >> band_number & 1 and phase == 1:
                    magnitude = reader.read(index, MAGNITUDE)
                    nonzero = magnitude != 0
                    context = sign_context(band.q, pos, band.orient)[nonzero]
                    positive = reader.read(SIGN_POSITIVE[context], BINARY)
                    magnitude[nonzero] *= np.where(positive == 1, 1, -1)
                    band.q[pos] = magnitude
                else:
                    band.q[pos] = reader.read(index)
            q_all.append(band.q)
        reader.finish()
        if _q_crc(q_all) != crc:
            raise CorruptStreamError(
                "learned lossy stream decoded to different coefficients than were coded "
                "(checksum mismatch): damaged stream or a different model")
        return step, levels, q_all, flags

    def synthesise(self, q_all: list[np.ndarray], step: float, levels: int,
                   shape: tuple[int, int], bits: int, use_filter: bool | None = None,
                   dependent: bool = False) -> np.ndarray:
        """Pixels from decoded coefficients; the 3x3 filter runs when the stream says so,
        and ``dependent`` reconstructs the detail bands with dependent quantisation."""
        steps = band_steps(step, self.band_weights, levels)
        ll = dequantise(q_all[0], steps[0], np.zeros(3))
        def band(k: int, o: int) -> np.ndarray:
            if dependent:
                return dependent_dequantise(q_all[k], steps[k], self.recon_offsets[o],
                                            self.schedule)
            return dequantise(q_all[k], steps[k], self.recon_offsets[o])

        details = [tuple(band(1 + 3 * depth + o, o) for o in range(3))
                   for depth in range(levels)]
        x = wavelet_inverse(Subbands(ll, details, shape)) + float(1 << (bits - 1))
        top = (1 << bits) - 1
        pixels = np.clip(np.round(x), 0, top).astype(np.int64)
        if self.use_filter if use_filter is None else use_filter:
            pixels = apply_filter(pixels, self.filter_taps[filter_band(step)], top)
        return pixels

    def decode(self, data: bytes, shape: tuple[int, int], bits: int) -> np.ndarray:
        step, levels, q_all, flags = self.decode_coefficients(data, shape)
        return self.synthesise(q_all, step, levels, shape, bits, bool(flags & _FLAG_FILTER),
                               is_dependent(flags))

    # -- storage -----------------------------------------------------------------------
    def as_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for safetensors (C-contiguous: safetensors writes raw buffers)."""
        return {k: np.ascontiguousarray(v) for k, v in self._arrays().items()}

    def _arrays(self) -> dict[str, np.ndarray]:
        out = {"wl.band_weights": self.band_weights.astype(np.float64),
               "wl.recon_offsets": self.recon_offsets.astype(np.int32),
               "wl.filter_taps": self.filter_taps.astype(np.int32),
               "wl.thresholds": self.thresholds.astype(np.int64),
               "wl.softmax": self.nets[0].softmax_table.astype(np.int64),
               "wl.use_filter": np.array([int(self.use_filter)], np.int32),
               "wl.schedule": np.array([self.schedule], np.int32)}
        out.update(self.tables.as_arrays("wl.entropy."))
        for o, net in enumerate(self.nets):
            for part in ("query", "key", "value", "mlp"):
                out.update(getattr(net, part).as_arrays(f"wl.{ORIENTS[o]}.{part}."))
            out[f"wl.{ORIENTS[o]}.key_position"] = net.key_position.astype(np.int64)
            out[f"wl.{ORIENTS[o]}.value_position"] = net.value_position.astype(np.int64)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> WaveletModel:
        table = arrays["wl.softmax"].astype(np.float64)
        nets = [BandNet(*(IntMLP.from_arrays(arrays, f"wl.{name}.{part}.")
                          for part in ("query", "key", "value")),
                        arrays[f"wl.{name}.key_position"].astype(np.float64),
                        arrays[f"wl.{name}.value_position"].astype(np.float64),
                        IntMLP.from_arrays(arrays, f"wl.{name}.mlp."), table)
                for name in ORIENTS]
        return cls(nets, np.asarray(arrays["wl.band_weights"], np.float64),
                   np.asarray(arrays["wl.recon_offsets"], np.int64),
                   np.asarray(arrays["wl.filter_taps"], np.int64),
                   np.asarray(arrays["wl.thresholds"], np.int64),
                   LaplaceTables.from_arrays(arrays, "wl.entropy."),
                   use_filter=bool(int(arrays["wl.use_filter"][0]))
                   if "wl.use_filter" in arrays else True,
                   schedule=_schedule(arrays))


class _PartReader:
    """The parts of a stream in coding order, whichever the stream's version (see _VERSION):
    ``table`` gives a side part's table byte, ``read`` a part's symbols."""

    def __init__(self, coder: GroupedCoder, data: bytes, version: int, count: int,
                 sides: int, prefix: int = 0) -> None:
        """``count`` parts in all, ``sides`` of them side parts (with a table byte), after
        ``prefix`` bytes of header extension (version 2: :attr:`prefix`)."""
        self._coder = coder
        self._pending: bytes | None = None
        self.prefix = b""
        if version == _VERSION_SEGMENTS:
            if len(data) < _HEADER.size + 2:
                raise CorruptStreamError("learned lossy stream is truncated")
            (stored,) = struct.unpack_from("<H", data, _HEADER.size)
            if stored != count:
                raise CorruptStreamError("learned lossy stream is truncated or damaged")
            self._segments = iter(split_segments(data, _HEADER.size + 2, count,
                                                 "learned lossy stream"))
            self._parts = None
        else:
            start = _HEADER.size + prefix + sides
            if len(data) < start:
                raise CorruptStreamError("learned lossy stream is truncated")
            self.prefix = data[_HEADER.size : _HEADER.size + prefix]
            self._tables = iter(data[_HEADER.size + prefix : start])
            self._parts = coder.decoder(data[start:])

    def table(self, count: int) -> int:
        if self._parts is None:  # version 1: the first byte of the next segment
            blob = next(self._segments)
            table, self._pending = (blob[0], blob[1:]) if blob else (count, b"")
        else:
            table = next(self._tables)
        if table >= count:
            raise CorruptStreamError("learned lossy stream side information is damaged")
        return table

    def read(self, indices: np.ndarray, kind: str = SIGNED) -> np.ndarray:
        if self._parts is not None:
            return self._parts.decode(indices, kind)
        blob, self._pending = self._pending, None
        return self._coder.decode(next(self._segments) if blob is None else blob, indices)

    def finish(self) -> None:
        if self._parts is not None:
            self._parts.finish("learned lossy stream")


def _pass_parts(coded: np.ndarray, index: np.ndarray, context: np.ndarray | None) -> list:
    """The parts that code one pass's levels: the signed levels, or, where ``context`` is
    given (a second checkerboard pass) and context-coded signs cost less than 1 bit each,
    the magnitudes and then the signs of the non-zero levels."""
    if context is not None:
        nonzero = coded != 0
        positive = coded[nonzero] > 0
        if sign_lengths(positive, context[nonzero]).sum() < positive.size:
            return [(np.abs(coded), index, MAGNITUDE),
                    (positive.astype(np.int64), SIGN_POSITIVE[context[nonzero]], BINARY)]
    return [(coded, index)]


def is_dependent(flags: int) -> bool:
    """Whether a stream's header flags (:meth:`WaveletModel.decode_coefficients`) say its
    detail bands use dependent quantisation."""
    return bool(flags & _FLAG_DEPENDENT)


def shift_table(tables: LaplaceTables) -> int:
    """The table index that prices the shifts."""
    return int(tables.index_for(np.array([_SHIFT_SCALE]))[0])


def shifted(index: np.ndarray, shift: np.ndarray, count: int) -> np.ndarray:
    """Table indices moved by their group's shift, kept inside the table range."""
    return np.clip(index + shift[np.digitize(index, SHIFT_EDGES)], 0, count - 1)


#: (value, table) pairs as one integer: value * _KEY + table (tables number fewer than _KEY).
_KEY = 1 << 10


def best_shifts(tables: LaplaceTables, levels: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Per group of table index, the shift in -SHIFT_MAX..SHIFT_MAX that codes ``levels``
    in the fewest bits, the shift's own bits included.

    Exact ideal code lengths, computed once per distinct (value, table) pair and shift."""
    count = len(tables)
    candidates = np.arange(-SHIFT_MAX, SHIFT_MAX + 1)
    side_bits = tables.code_lengths(candidates, np.full(candidates.size, shift_table(tables)))
    keys, counts = np.unique(levels * _KEY + index, return_counts=True)
    value, table = np.divmod(keys, _KEY)
    lengths = tables.code_lengths(np.repeat(value[:, None], candidates.size, axis=1),
                                  np.clip(table[:, None] + candidates, 0, count - 1))
    group = np.digitize(table, SHIFT_EDGES)
    bits = np.zeros((len(SHIFT_EDGES) + 1, candidates.size))
    np.add.at(bits, group, counts[:, None] * lengths)
    present = np.zeros(bits.shape[0], bool)
    present[group] = True
    return np.where(present, candidates[np.argmin(bits + side_bits, axis=1)], 0)


def _schedule(arrays: dict[str, np.ndarray]) -> int:
    """A weights file's pass schedule (files before it was stored: the checkerboard)."""
    schedule = int(arrays["wl.schedule"][0]) if "wl.schedule" in arrays else 2
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown pass schedule {schedule}")
    return schedule


def _q_crc(q_all: list[np.ndarray]) -> int:
    crc = 0
    for q in q_all:
        crc = zlib.crc32(np.ascontiguousarray(q, dtype="<i8").tobytes(), crc)
    return crc & 0xFFFFFFFF
