"""The learned lossy codec: wavelet latent, cross-attention context, hyperprior, exact coding.

Following Dai (Sci Rep 2025), in the form that trains on a CPU and decodes bit-exactly:

* **Analysis**: a 5-level CDF 9/7 DWT of the native-depth image (no 8-bit conversion). The
  quantised wavelet coefficients are the VAE latent ``y``; quantisation is a dead-zone
  uniform quantiser with one global step (the rate/quality parameter: one model, every rate)
  times a per-subband weight.
* **Hyperprior**: the side information ``z``, a log-coded energy per 32x32 image block at the two
  finest levels, is coded first; the rate is ``-log2 p(z) - log2 p(y | z)`` (the KL term of a VAE
  with a uniform posterior), all of it real bytes from constriction's ANS coder.
* **CAL, cross-attention learning**: for every coefficient, multi-head query-key-value attention
  whose queries come from the coefficient's own context (step, siblings, neighbours, ``z``) and
  whose keys and values are the 9 co-located coefficients of the coarser level, in all three
  orientations. Its output steers the entropy model: where the coarse structure says a
  coefficient matters (an edge continuing across scales), the model expects, and spends, bits.
* **Entropy parameters** come from a small network per orientation (attention + MLP) run in exact
  integer arithmetic (:mod:`medcodec.models.intnet`, softmax through an integer table), so the
  decoder derives the same Laplace table index as the encoder on any machine. Each subband is
  coded in two checkerboard passes; the second pass sees its four decoded neighbours.
* **Synthesis**: learned reconstruction points inside each quantiser bin (decoder-side
  estimation), inverse DWT, then the trainable 3x3 spatial filter (integer taps, one set per
  rate band), a separate stage that can be switched off.
"""

from __future__ import annotations

import functools
import math
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from medcodec.entropy.coder import GroupedCoder, join_segments, split_segments
from medcodec.entropy.tables import LaplaceTables
from medcodec.errors import CorruptStreamError
from medcodec.models.context import box_sum, log_code, mirror_pad
from medcodec.models.intnet import ACT_LIMIT, IntLayer, IntMLP
from medcodec.models.threads import parallel_map
from medcodec.transforms.wavelet import WAVELET, Subbands, wavelet_forward, wavelet_inverse

LEVELS = 5
ORIENTS = ("LH", "HL", "HH")
SCALE_MIN, SCALE_MAX, SCALE_COUNT = 0.04, 1024.0, 96
#: Dead-zone rounding: |c| / step + ROUNDING, floored (0.5 would be plain rounding).
ROUNDING = 0.40
#: Hyperprior block, in image pixels; z exists for the two finest levels.
HYPER_BLOCK = 32
HYPER_LEVELS = 2
#: Attention: heads, key/query size, value size, coarse positions (3x3).
HEADS, KEY_DIM, VALUE_DIM, POSITIONS = 2, 4, 4, 9
#: Softmax table resolution: logits in 1/8 units, 256 entries.
SOFTMAX_STEPS, SOFTMAX_TABLE = 8, 256
STATIC = 10 + LEVELS  # see band_static
FEATURES = STATIC + 3  # see pass_features
FILTER_BANDS = np.array([4.0, 16.0, 64.0])  # step thresholds between filter tap sets
_HEADER = struct.Struct("<BBdBBI")  # version, levels, step, LL table, flags, crc of q
#: Header flag: the decoder applies the 3x3 filter.
_FLAG_FILTER = 1
_VERSION = 1


def scale_step() -> float:
    return math.log(SCALE_MAX / SCALE_MIN) / (SCALE_COUNT - 1)


def build_tables() -> LaplaceTables:
    return LaplaceTables.build(SCALE_MIN, SCALE_MAX, SCALE_COUNT, max_radius=8190)


def levels_for(shape: tuple[int, int]) -> int:
    """Up to LEVELS levels, fewer for tiny images (the coarsest band keeps >= 2 samples)."""
    levels = 0
    while levels < LEVELS and min(shape) >> (levels + 1) >= 2:
        levels += 1
    return max(levels, 1)


def band_steps(step: float, weights: np.ndarray, levels: int) -> list[float]:
    """Quantiser step of each band in decode order: LL, then (LH, HL, HH) coarse to fine."""
    steps = [step * float(weights[0])]
    for depth in range(levels):
        for o in range(3):
            steps.append(step * float(weights[1 + 3 * (LEVELS - levels + depth) + o]))
    return steps


def quantise(c: np.ndarray, step: float) -> np.ndarray:
    return (np.sign(c) * np.floor(np.abs(c) / step + ROUNDING)).astype(np.int64)


@functools.lru_cache(maxsize=64)
def synthesis_gain(level: int, orient: int) -> float:
    """Energy in pixels of a unit coefficient of a detail band ``level`` (1 = finest) and
    orientation (0 LH, 1 HL, 2 HH): products of the CDF 9/7 synthesis filters' norms."""
    import pywt

    wavelet = pywt.Wavelet(WAVELET)
    low, high = float(np.sum(np.square(wavelet.rec_lo))), float(np.sum(np.square(wavelet.rec_hi)))
    band = (low * high, high * low, high * high)[orient]
    return band * low ** (2 * (level - 1))


def dequantise(q: np.ndarray, step: float, offsets: np.ndarray) -> np.ndarray:
    """Reconstruction inside each bin: |q| + offset[min(|q|, 3) - 1] (learned, in 1/256)."""
    mag = np.abs(q)
    off = offsets[np.clip(mag, 1, 3) - 1] / 256.0
    return np.where(mag > 0, np.sign(q) * (mag + off) * step, 0.0)


# --- context ----------------------------------------------------------------------------

def _log4(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    return log_code(4 * np.abs(values), thresholds)


def _ratio(parent: np.ndarray, shape: tuple[int, ...]) -> int:
    """2 when the parent is the coarser level, 1 at the coarsest level (parent = LL itself)."""
    return 1 if parent.shape == tuple(shape) else 2


def _parent_cells(grid: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    """Flat index into a (rows, cols) grid of the cell (i // r, j // r) of every position of
    a band of ``shape`` (r = 1 when the shapes match, else 2; the last row and column
    serve positions beyond the grid, so a 1x1 grid serves all)."""
    ratio = 1 if tuple(grid) == tuple(shape) else 2
    r = np.minimum(np.arange(shape[0]) // ratio, grid[0] - 1)
    c = np.minimum(np.arange(shape[1]) // ratio, grid[1] - 1)
    return (r[:, None] * grid[1] + c[None, :]).ravel()


def _up(parent: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Parent value at (i // 2, j // 2) (or (i, j) beside LL) for every child position."""
    return parent.ravel()[_parent_cells(parent.shape, shape)].reshape(shape)


def checkerboard(shape: tuple[int, int], phase: int) -> np.ndarray:
    rows, cols = np.indices(shape)
    return (rows + cols) % 2 == phase


def _neighbour_stats(q: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum and max of |q| over the 4 neighbours already decoded (``known``), edges mirrored."""
    a = np.where(known, np.abs(q), 0)
    p = np.pad(a, 1, mode="reflect") if min(a.shape) > 1 else np.pad(a, 1, mode="edge")
    h, w = a.shape
    nb = [p[0:h, 1:w + 1], p[2:h + 2, 1:w + 1], p[1:h + 1, 0:w], p[1:h + 1, 2:w + 2]]
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
    feats[..., 1] = _up(_log4(same, thresholds), shape)
    feats[..., 2] = _up(_log4(box_sum(np.abs(same), 1), thresholds), shape)
    for k, sib in enumerate(ctx.siblings[:2]):
        feats[..., 3 + 2 * k] = _log4(sib, thresholds)
        feats[..., 4 + 2 * k] = _log4(box_sum(np.abs(sib), 1), thresholds)
    if ctx.z is not None:
        feats[..., 7] = ctx.z
        feats[..., 8] = 1
    feats[..., 9] = ctx.orient
    feats[..., 10 + ctx.depth + (LEVELS - ctx.levels)] = 1
    return feats


def pass_features(static: np.ndarray, q: np.ndarray, known: np.ndarray,
                  positions: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(N, FEATURES): the band's static features plus what the first checkerboard pass gave."""
    total, peak = _neighbour_stats(q, known)
    extra = np.stack([np.full(total.shape, int(known.any())), _log4(total, thresholds),
                      _log4(peak, thresholds)], axis=-1)
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
    sources = np.stack([_log4(p, thresholds) for p in ctx.parent], axis=-1)
    return query.reshape(ph * pw, STATIC), sources


def neighbourhood(grid: np.ndarray) -> np.ndarray:
    """(rows, cols, POSITIONS, C): the 3x3 cells around every cell of ``grid``, mirrored."""
    h, w = grid.shape[:2]
    p = mirror_pad(grid, 1, axes=(0, 1))  # then 9 shifted views: no index arrays
    return np.stack([p[r:r + h, c:c + w] for r in range(3) for c in range(3)], axis=2)


#: (row, column) offsets of the 3x3 neighbourhood, in the order of the position codes.
_NEIGHBOURS = tuple((a, b) for a in (-1, 0, 1) for b in (-1, 0, 1))
#: Parent grids of at least this many cells run their attention heads in parallel (measured:
#: 128x128 cells gain, 64x64 lose to the threads' overhead).
_PARALLEL_CELLS = 16384
#: Coefficients per block of the entropy-parameter network.
_INDEX_BLOCK = 16384


# --- the integer entropy-parameter network ----------------------------------------------

@dataclass
class BandNet:
    """Cross-attention over the coarse neighbourhood + MLP -> Laplace table index."""

    query: IntMLP
    key: IntMLP
    value: IntMLP
    key_position: np.ndarray  # (POSITIONS, HEADS * KEY_DIM) integers, 8 fractional bits
    value_position: np.ndarray  # (POSITIONS, HEADS * VALUE_DIM)
    mlp: IntMLP
    softmax_table: np.ndarray  # float64 integers: round(2**15 * exp(-k / SOFTMAX_STEPS))

    def attention(self, query: np.ndarray, sources: np.ndarray) -> np.ndarray:
        """(parent rows, parent cols, HEADS * VALUE_DIM) attention output, exact integers.

        Every parent cell's query attends to the keys of the 3x3 cells around it (plus a
        learned code per position) and mixes their values. Computed channel-first, one
        whole-grid plane per (head, channel) and shifted views of the neighbours: a few
        hundred vectorised operations per band whatever its size (one step for all heads
        and channels at once measured slower: its temporaries leave the cache). Every
        quantity is an exact integer, so the order of the sums cannot change it.
        """
        ph, pw = sources.shape[:2]
        n = ph * pw
        flat = sources.reshape(n, 3)
        q = self.query(query).T
        keys = mirror_pad(self.key(flat).T.reshape(HEADS, KEY_DIM, ph, pw), 1)
        values = mirror_pad(self.value(flat).T.reshape(HEADS, VALUE_DIM, ph, pw), 1)
        key_pos = self.key_position.reshape(POSITIONS, HEADS, KEY_DIM)
        value_pos = self.value_position.reshape(POSITIONS, HEADS, VALUE_DIM)
        q = q.reshape(HEADS, KEY_DIM, n)
        out = np.empty((HEADS, VALUE_DIM, ph, pw))

        def head(h: int) -> None:  # the heads are independent
            # q, k carry 8 fractional bits each: scores carry 16; / sqrt(KEY_DIM) = / 2
            scores = (key_pos[:, h] @ q[h]).reshape(POSITIONS, ph, pw)  # position codes
            qh = q[h].reshape(KEY_DIM, ph, pw)
            product = np.empty((ph, pw))
            for p, (dr, dc) in enumerate(_NEIGHBOURS):
                shifted = keys[h, :, 1 + dr : 1 + dr + ph, 1 + dc : 1 + dc + pw]
                for d in range(KEY_DIM):
                    np.multiply(qh[d], shifted[d], out=product)
                    scores[p] += product
            logits = np.floor(scores * (2.0 ** -(16 + 1) * SOFTMAX_STEPS))
            gap = np.clip(logits.max(axis=0) - logits, 0, SOFTMAX_TABLE - 1)
            weight = self.softmax_table[gap.astype(np.intp)]  # (POSITIONS, rows, cols)
            total = weight.sum(axis=0)  # >= 2**15: the best position has gap 0
            mixed = (value_pos[:, h].T @ weight.reshape(POSITIONS, n)).reshape(
                VALUE_DIM, ph, pw)
            for p, (dr, dc) in enumerate(_NEIGHBOURS):
                shifted = values[h, :, 1 + dr : 1 + dr + ph, 1 + dc : 1 + dc + pw]
                for d in range(VALUE_DIM):
                    np.multiply(weight[p], shifted[d], out=product)
                    mixed[d] += product
            out[h] = np.floor(mixed / total)

        if n >= _PARALLEL_CELLS:  # one head per thread pays off only on large grids
            parallel_map(head, range(HEADS))
        else:
            for h in range(HEADS):
                head(h)
        out = np.clip(out, -ACT_LIMIT, ACT_LIMIT)
        return np.ascontiguousarray(out.transpose(2, 3, 0, 1)).reshape(ph, pw, HEADS * VALUE_DIM)

    @functools.cached_property
    def mlp_static_first(self) -> IntMLP:
        """The same MLP reading its inputs as [static, attention, pass extras]: the codec's
        hot path gathers static and attention columns in one go. Permuting the first
        layer's rows changes no sum (every sum is exact)."""
        first = self.mlp.layers[0]
        order = np.r_[0:STATIC, FEATURES:first.weight.shape[0], STATIC:FEATURES]
        layer = IntLayer(np.ascontiguousarray(first.weight[order]), first.bias, first.shift,
                         first.relu)
        return IntMLP([layer, *self.mlp.layers[1:]])


#: The entropy MLP's output carries 8 fraction bits (IntMLP act_bits: 256 per table step): adding
#: half a step and flooring rounds it to the nearest table index.
_OUT_ONE = 1 << 8


def _table_index(out: np.ndarray) -> np.ndarray:
    index = np.floor((out[:, 0] + _OUT_ONE / 2) / _OUT_ONE)
    return np.clip(index, 0, SCALE_COUNT - 1).astype(np.int64)


def softmax_table() -> np.ndarray:
    return np.round(2.0**15 * np.exp(-np.arange(SOFTMAX_TABLE) / SOFTMAX_STEPS))


# --- the codec -------------------------------------------------------------------------

@dataclass(frozen=True)
class BandPass:
    """One detail band in coding order: its context and its quantised values ``q`` (filled by
    the encoder or trainer, zeros the decoder fills pass by pass)."""

    depth: int
    orient: int
    step: float
    ctx: BandContext
    q: np.ndarray

    def phases(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(positions of the checkerboard phase, positions known before it), in order."""
        known = np.zeros(self.q.shape, bool)
        for phase in (0, 1):
            pos = checkerboard(self.q.shape, phase)
            yield pos, known.copy()
            known |= pos


#: A level's quantised bands and hyperprior, given at the start of the level: ``(qs, z)``
#: from the coefficients (encoder, trainer), or ``(None, z)`` with z read from the stream.
LevelStart = Callable[[int, tuple[int, int]], tuple[list[np.ndarray] | None, np.ndarray | None]]


def band_passes(q_ll: np.ndarray, ll_parent: np.ndarray, levels: int, steps: list[float],
                thresholds: np.ndarray, level_start: LevelStart) -> Iterator[BandPass]:
    """The detail bands in coding order, coarse to fine, LH, HL, HH: the one schedule of the
    encoder, the decoder and training. Each band's context reads the parent level and the
    orientations already coded at this level, so the consumer finishes a band (the decoder
    decodes it in place) before asking for the next."""
    parent = [ll_parent] * 3
    for depth in range(levels):
        band_shape = q_ll.shape if depth == 0 else tuple(2 * s for s in parent[0].shape)
        given, z = level_start(depth, band_shape)
        qs: list[np.ndarray] = []
        for o in range(3):
            band_step = steps[1 + 3 * depth + o]
            ctx = BandContext(depth, o, step_code(band_step, thresholds), parent, qs[:o], z,
                              levels)
            q = given[o] if given is not None else np.zeros(band_shape, np.int64)
            yield BandPass(depth, o, band_step, ctx, q)
            qs.append(q)
        parent = qs


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
        parent_cell = _parent_cells(attended.shape[:2], shape)
        attended = attended.reshape(-1, attended.shape[-1])
        static = static.reshape(-1, STATIC)
        width = STATIC + HEADS * VALUE_DIM

        def index(q: np.ndarray, known: np.ndarray, positions: np.ndarray) -> np.ndarray:
            """Table index of every coefficient at ``positions``: the MLP on the band's
            static features, the attention output and the pass features of
            :func:`pass_features` (the inputs training sees), in row blocks on the pool."""
            where = np.flatnonzero(positions)
            total, peak = _neighbour_stats(q, known)
            total, peak = total.ravel(), peak.ravel()
            started = float(known.any())

            def run(block: np.ndarray) -> np.ndarray:
                feats = np.empty((block.size, width + 3))
                feats[:, :STATIC] = static[block]
                feats[:, STATIC:width] = attended[parent_cell[block]]
                feats[:, -3] = started
                feats[:, -2] = _log4(total[block], self.thresholds)
                feats[:, -1] = _log4(peak[block], self.thresholds)
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

    def hyper_code(self, details_q: list[np.ndarray], level: int) -> np.ndarray:
        """z for one level: log-coded energy of the three orientations per block."""
        energy = sum(np.abs(d) for d in details_q)
        return _block_code(energy, level, self.thresholds)

    def ll_activity(self, ll_q: np.ndarray) -> np.ndarray:
        mean = np.floor_divide(box_sum(ll_q, 1), 9)
        return ll_q - mean

    # -- encode ------------------------------------------------------------------------
    def encode(self, image: np.ndarray, bits: int, step: float) -> bytes:
        levels = min(levels_for(image.shape), self.max_levels)
        mid = float(1 << (bits - 1))
        bands = wavelet_forward(np.asarray(image, np.float64) - mid, levels)
        steps = band_steps(step, self.band_weights, levels)
        q_ll = quantise(bands.ll, steps[0])
        segments: list[bytes] = []
        ll_res = _dpcm_residuals(q_ll)
        ll_table = self.tables.index_for_values(ll_res)
        segments.append(self._coder.encode(ll_res, np.full(ll_res.shape, ll_table)))
        q_all = [q_ll]

        def level_start(depth: int, shape: tuple[int, int]):
            qs = [quantise(bands.details[depth][o], steps[1 + 3 * depth + o]) for o in range(3)]
            z = None
            if depth >= levels - HYPER_LEVELS:
                zb = self.hyper_code(qs, levels - depth)
                z_res = _dpcm_residuals(zb)
                z_table = self.tables.index_for_values(z_res)
                segments.append(bytes([z_table])
                                + self._coder.encode(z_res, np.full(z_res.shape, z_table)))
                z = expand_blocks(zb, qs[0].shape, levels - depth)
            return qs, z

        for band in band_passes(q_ll, self.ll_activity(q_ll), levels, steps, self.thresholds,
                                level_start):
            q, o = band.q, band.orient
            band_index = self._band_coder(band.ctx, q.shape)
            for pos, known in band.phases():
                index = band_index(np.where(known, q, 0), known, pos)
                if self.rdo:
                    q[pos] = self._rdo_choice(
                        bands.details[band.depth][o][pos], q[pos], index, band.step, o,
                        synthesis_gain(levels - band.depth, o))
                segments.append(self._coder.encode(q[pos], index))
            q_all.append(q)
        crc = _q_crc(q_all)
        flags = _FLAG_FILTER if self.use_filter else 0
        header = _HEADER.pack(_VERSION, levels, step, ll_table, flags, crc)
        return header + struct.pack("<H", len(segments)) + join_segments(segments)

    # -- decode ------------------------------------------------------------------------
    def decode_coefficients(self, data: bytes, shape: tuple[int, int]
                            ) -> tuple[float, int, list[np.ndarray], bool]:
        """(step, levels, quantised bands in decode order, whether to filter) of a stream."""
        head = _HEADER.size + 2
        if len(data) < head:
            raise CorruptStreamError("learned lossy stream is truncated")
        version, levels, step, ll_table, flags, crc = _HEADER.unpack_from(data)
        (count,) = struct.unpack_from("<H", data, _HEADER.size)
        if version != _VERSION or not 1 <= levels <= levels_for(shape):
            raise CorruptStreamError("learned lossy stream header does not match its image")
        if (not (math.isfinite(step) and 1e-3 <= step <= 1e6) or ll_table >= len(self.tables)
                or flags & ~_FLAG_FILTER):
            raise CorruptStreamError("learned lossy stream header is damaged")
        expected = 1 + 6 * levels + min(HYPER_LEVELS, levels)
        if count != expected:
            raise CorruptStreamError("learned lossy stream is truncated or damaged")
        seg = iter(split_segments(data, head, count, "learned lossy stream"))
        steps = band_steps(step, self.band_weights, levels)
        ll_shape = tuple(-(-s // (1 << levels)) for s in shape)
        ll_res = self._coder.decode(next(seg), np.full(ll_shape, ll_table))
        q_ll = _dpcm_reconstruct(ll_res)
        q_all = [q_ll]

        def level_start(depth: int, band_shape: tuple[int, int]):
            z = None
            if depth >= levels - HYPER_LEVELS:
                blob = next(seg)
                if not blob or blob[0] >= len(self.tables):
                    raise CorruptStreamError("learned lossy stream side information is damaged")
                zshape = _block_shape(band_shape, levels - depth)
                zb = _dpcm_reconstruct(self._coder.decode(blob[1:], np.full(zshape, blob[0])))
                z = expand_blocks(zb, band_shape, levels - depth)
            return None, z

        for band in band_passes(q_ll, self.ll_activity(q_ll), levels, steps, self.thresholds,
                                level_start):
            band_index = self._band_coder(band.ctx, band.q.shape)
            for pos, known in band.phases():
                band.q[pos] = self._coder.decode(next(seg), band_index(band.q, known, pos))
            q_all.append(band.q)
        if _q_crc(q_all) != crc:
            raise CorruptStreamError(
                "learned lossy stream decoded to different coefficients than were coded "
                "(checksum mismatch): damaged stream or a different model")
        return step, levels, q_all, bool(flags & _FLAG_FILTER)

    def synthesise(self, q_all: list[np.ndarray], step: float, levels: int,
                   shape: tuple[int, int], bits: int, use_filter: bool | None = None
                   ) -> np.ndarray:
        """Pixels from decoded coefficients; the 3x3 filter runs when the stream says so."""
        steps = band_steps(step, self.band_weights, levels)
        ll = dequantise(q_all[0], steps[0], np.zeros(3))
        details = []
        for depth in range(levels):
            details.append(tuple(
                dequantise(q_all[1 + 3 * depth + o], steps[1 + 3 * depth + o],
                           self.recon_offsets[o]) for o in range(3)))
        x = wavelet_inverse(Subbands(ll, details, shape)) + float(1 << (bits - 1))
        top = (1 << bits) - 1
        pixels = np.clip(np.round(x), 0, top).astype(np.int64)
        if self.use_filter if use_filter is None else use_filter:
            pixels = apply_filter(pixels, self.filter_taps[filter_band(step)], top)
        return pixels

    def decode(self, data: bytes, shape: tuple[int, int], bits: int) -> np.ndarray:
        step, levels, q_all, use_filter = self.decode_coefficients(data, shape)
        return self.synthesise(q_all, step, levels, shape, bits, use_filter)

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
               "wl.use_filter": np.array([int(self.use_filter)], np.int32)}
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
                   if "wl.use_filter" in arrays else True)


def step_code(step: float, thresholds: np.ndarray) -> int:
    return int(log_code(np.array([round(step * 4)]), thresholds)[0])


def filter_band(step: float) -> int:
    return int(np.searchsorted(FILTER_BANDS, step))


#: Fraction bits of the decoder filter's integer taps: a tap of FILTER_ONE is 1.0.
FILTER_FRACTION_BITS = 12
FILTER_ONE = 1 << FILTER_FRACTION_BITS


def apply_filter(pixels: np.ndarray, taps: np.ndarray, top: int) -> np.ndarray:
    """The decoder's 3x3 spatial filter in integers (taps / FILTER_ONE): exact everywhere."""
    h, w = pixels.shape
    p = np.pad(pixels, 1, mode="edge")
    acc = np.full((h, w), FILTER_ONE // 2, np.int64)  # rounds the shift below
    for k in range(9):
        r, c = divmod(k, 3)
        acc += int(taps[k]) * p[r:r + h, c:c + w]
    return np.clip(acc >> FILTER_FRACTION_BITS, 0, top)


def _q_crc(q_all: list[np.ndarray]) -> int:
    crc = 0
    for q in q_all:
        crc = zlib.crc32(np.ascontiguousarray(q, dtype="<i8").tobytes(), crc)
    return crc & 0xFFFFFFFF


def _dpcm_residuals(q: np.ndarray) -> np.ndarray:
    """Residual against the left neighbour (first column: the one above). Integer, exact."""
    pred = np.zeros_like(q)
    pred[:, 1:] = q[:, :-1]
    pred[1:, 0] = q[:-1, 0]
    return q - pred


def _dpcm_reconstruct(res: np.ndarray) -> np.ndarray:
    first = np.cumsum(res[:, 0])
    out = res.copy()
    out[:, 0] = first
    return np.cumsum(out, axis=1)


def _block_size(level: int) -> int:
    """Band samples per hyperprior block side at decomposition level ``level`` (1 = finest)."""
    return max(1, HYPER_BLOCK >> level)


def _block_shape(band_shape: tuple[int, ...], level: int) -> tuple[int, int]:
    block = _block_size(level)
    return (-(-band_shape[0] // block), -(-band_shape[1] // block))


def _block_code(energy: np.ndarray, level: int, thresholds: np.ndarray) -> np.ndarray:
    """Log-coded sum of |q| over each hyperprior block (integers): the side information z."""
    block = _block_size(level)
    bh, bw = _block_shape(energy.shape, level)
    padded = np.zeros((bh * block, bw * block), np.int64)
    padded[: energy.shape[0], : energy.shape[1]] = energy
    sums = padded.reshape(bh, block, bw, block).sum(axis=(1, 3))
    return log_code(sums, thresholds)


def expand_blocks(zb: np.ndarray, band_shape: tuple[int, int], level: int) -> np.ndarray:
    block = _block_size(level)
    r = np.arange(band_shape[0]) // block
    c = np.arange(band_shape[1]) // block
    return zb[np.ix_(r, c)]
