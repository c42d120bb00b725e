"""The raster-scan pixel estimator as a lossless / near-lossless model: online least squares,
bias correction and per-image scale tables (``kernels.py``), rANS bytes, in independent
horizontal stripes so that the cores share a slice.

Stream: header (version 3: symbols bounded by the pixel range, the tables' tails folded onto
the lowest and highest possible symbol), the table of every energy bin (one byte each: chosen
by the encoder for this image), then one rANS segment per stripe of ``STRIPE_ROWS`` rows
(fixed by the format, not by the thread count, so the bytes never depend on it).
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass

import numpy as np

from medcodec.entropy import rans
from medcodec.entropy.coder import join_segments, split_segments
from medcodec.entropy.tables import TOTAL, LaplaceTables
from medcodec.errors import CorruptStreamError
from medcodec.models.causal import kernels
from medcodec.models.intnet import IntMLP
from medcodec.models.threads import parallel_map

#: Rows of one independently coded stripe (the last one may be shorter).
STRIPE_ROWS = 256
#: Least-squares window radius.
RADIUS = 6
#: Residual magnitudes counted exactly when choosing tables; larger ones are escapes anyway.
_CHOICE_MAGNITUDE = 1024

_HEADER = struct.Struct("<BBHHB")  # version, radius, max error, stripe rows, stripes
#: Version 2 then says how the table map is sent: kind (0 identity, 1 one offset, 2 one byte a
#: bin) and the offset (signed) -- small images cannot afford 80 bytes of map.
_MAP_HEADER = struct.Struct("<Bb")
_MAP_IDENTITY, _MAP_OFFSET, _MAP_EXPLICIT = 0, 1, 2
_MAX_OFFSET = 24
#: Weights (and stream) versions: 1 without the network (energy bins), 2 with it.
_VERSION_BINS, _VERSION_NET = 1, 2
#: Stream version 3: the network, with symbols bounded by the pixel range (the tables' tails
#: folded onto the lowest and highest possible symbol, ``rans.code_symbol``). Encoders with a
#: network write it; version 2 streams still decode.
_VERSION_FOLDED = 3


@dataclass
class CausalEstimator:
    """The model: its integer Laplace tables (shipped with it) and, from version 2 on, the
    pixel-estimation network (``net``: location correction and table index)."""

    tables: LaplaceTables
    inter: bool = False
    net: IntMLP | None = None

    def __post_init__(self) -> None:
        t = self.tables
        self._radius = t.radius.astype(np.int64)
        self._offsets = t.offsets.astype(np.int64)
        self._freqs = t.freqs.astype(np.int64)
        self._starts = rans.cumulative(t)
        self.version = _VERSION_BINS if self.net is None else _VERSION_NET
        #: What the encoder writes: bounded symbols whenever there is a network.
        self.stream_version = _VERSION_FOLDED if self.net is not None else _VERSION_BINS
        #: Bins the per-image table map covers: energy bins, or the network's table indices.
        self.map_size = kernels.BINS if self.net is None else len(t)
        if self.net is not None and not _fits_kernel(self.net):
            raise ValueError("the network does not fit the raster-scan estimator")
        self._net_args = _kernel_network(self.net)

    def _kernel_tables(self) -> tuple[np.ndarray, ...]:
        return (self._radius, self._offsets, self._freqs, self._starts, *self._net_args)

    # -- coding -----------------------------------------------------------------------
    @property
    def _run(self):
        return kernels.RUN_INTER if self.inter else kernels.RUN

    def _previous(self, previous: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
        """The previous slice as the kernel reads it (the volume model needs one)."""
        if not self.inter:
            if previous is not None:
                raise ValueError("this model codes one slice at a time")
            return _NO_PREVIOUS
        if previous is None or tuple(previous.shape) != tuple(shape):
            raise ValueError("this model codes a slice together with the previous one")
        return np.ascontiguousarray(previous, dtype=np.int64)

    def encode(self, image: np.ndarray, bits: int, max_error: int = 0,
               previous: np.ndarray | None = None) -> bytes:
        return self.encode_with_reconstruction(image, bits, max_error, previous)[0]

    def encode_with_reconstruction(self, image: np.ndarray, bits: int, max_error: int = 0,
                                   previous: np.ndarray | None = None
                                   ) -> tuple[bytes, np.ndarray]:
        """The stream and the pixels a decoder gets from it (the encoder's own canvas)."""
        image = np.ascontiguousarray(image, dtype=np.int64)
        prior = self._previous(previous, image.shape)
        top = (1 << bits) - 1
        stripes = _stripes(image.shape[0])

        fold = self.stream_version == _VERSION_FOLDED

        canvas = np.zeros_like(image)

        def model(bounds: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            part = image[bounds[0] : bounds[1]]
            symbols = np.zeros_like(part)
            bins = np.zeros_like(part)
            locs = np.zeros_like(part)
            self._run(part, canvas[bounds[0] : bounds[1]], self._stripe(prior, bounds), top,
                      max_error, RADIUS, False, fold, self._no_tables, symbols, bins, locs,
                      np.zeros(3, np.int64), np.zeros(0, np.uint8), *self._kernel_tables(),
                      _NO_SAMPLES)
            return symbols, bins, locs

        coded = parallel_map(model, stripes)
        edges = ([_edges(c[0], c[2], top, max_error) for c in coded] if fold else None)
        table_of_bin, map_bytes = self.choose_map([c[0] for c in coded], [c[1] for c in coded],
                                                  edges)

        def entropy(part: tuple[np.ndarray, np.ndarray, np.ndarray]) -> bytes:
            start, freq, n = kernels.pairs(*part, table_of_bin, top, max_error, fold,
                                           *self._kernel_tables()[:4])
            return rans.encode_pairs(start, freq, n).tobytes()

        segments = parallel_map(entropy, coded)
        header = _HEADER.pack(self.stream_version, RADIUS, max_error, STRIPE_ROWS, len(stripes))
        return header + map_bytes + join_segments(segments), canvas

    def _stripe(self, prior: np.ndarray, bounds: tuple[int, int]) -> np.ndarray:
        return prior[bounds[0] : bounds[1]] if self.inter else prior

    def decode(self, data: bytes, shape: tuple[int, int], bits: int,
               previous: np.ndarray | None = None) -> np.ndarray:
        prior = self._previous(previous, shape)
        if len(data) < _HEADER.size:
            raise CorruptStreamError("pixel-estimation stream is truncated")
        version, radius, max_error, stripe_rows, count = _HEADER.unpack_from(data)
        known = (_VERSION_NET, _VERSION_FOLDED) if self.version == _VERSION_NET else (
            _VERSION_BINS,)
        if version not in known or radius != RADIUS or stripe_rows != STRIPE_ROWS:
            raise CorruptStreamError("pixel-estimation stream was made by another version of "
                                     "medcodec")
        fold = version == _VERSION_FOLDED
        stripes = _stripes(shape[0])
        if count != len(stripes):
            raise CorruptStreamError("pixel-estimation stream header is damaged")
        table_of_bin, start = self._read_map(data, _HEADER.size)
        segments = split_segments(data, start, count, "pixel-estimation stream")
        top = (1 << bits) - 1

        def decode_stripe(item: tuple[tuple[int, int], bytes]) -> np.ndarray:
            bounds, segment = item
            canvas = np.zeros((bounds[1] - bounds[0], shape[1]), np.int64)
            payload = np.frombuffer(segment, np.uint8)
            state = np.zeros(3, np.int64)
            rans.start_decoder(state, payload)
            self._run(canvas, canvas, self._stripe(prior, bounds), top, max_error, RADIUS, True,
                      fold, table_of_bin, canvas, canvas, canvas, state, payload,
                      *self._kernel_tables(), _NO_SAMPLES)
            if not rans.finished_cleanly(state, payload):
                raise CorruptStreamError("pixel-estimation stream does not decode (damaged)")
            return canvas

        parts = parallel_map(decode_stripe, list(zip(stripes, segments, strict=True)))
        return np.concatenate(parts) if parts else np.zeros(shape, np.int64)

    def _read_map(self, data: bytes, pos: int) -> tuple[np.ndarray, int]:
        """The table map and where the segments start; a clear error if it is damaged."""
        identity = np.arange(self.map_size, dtype=np.int64)
        if self.version == _VERSION_NET:
            if len(data) < pos + _MAP_HEADER.size:
                raise CorruptStreamError("pixel-estimation stream is truncated")
            kind, offset = _MAP_HEADER.unpack_from(data, pos)
            pos += _MAP_HEADER.size
            if kind == _MAP_IDENTITY:
                return identity, pos
            if kind == _MAP_OFFSET and abs(offset) <= _MAX_OFFSET:
                return np.clip(identity + offset, 0, len(self.tables) - 1), pos
            if kind != _MAP_EXPLICIT:
                raise CorruptStreamError("pixel-estimation stream header is damaged")
        if len(data) < pos + self.map_size:
            raise CorruptStreamError("pixel-estimation stream is truncated")
        table_of_bin = np.frombuffer(data, np.uint8, self.map_size, pos).astype(np.int64)
        if table_of_bin.max(initial=0) >= len(self.tables):
            raise CorruptStreamError("pixel-estimation stream names a table it does not have")
        return table_of_bin, pos + self.map_size

    # -- the encoder's second pass: tables per bin --------------------------------------
    def choose_map(self, symbols: list[np.ndarray], bins: list[np.ndarray],
                   edges: list[np.ndarray] | None = None) -> tuple[np.ndarray, bytes]:
        """The table map for this image and its bytes: one table per bin (the fewest bits for
        the bin's residuals) or, for the network's indices, the identity or one offset when
        that is cheaper once the map's own bytes are counted. ``edges`` (bounded symbols):
        which symbols sit on their lower (1) or upper (2) bound and cost their folded tail."""
        cost = self.bin_costs(symbols, bins, edges)
        best = np.argmin(cost, axis=1).astype(np.int64)
        explicit = best.astype(np.uint8).tobytes()
        if self.version != _VERSION_NET:
            return best, explicit
        rows = np.arange(self.map_size)
        options = [(float(cost[rows, best].sum()) + 8 * len(explicit), _MAP_EXPLICIT, 0)]
        for offset in range(-_MAX_OFFSET, _MAX_OFFSET + 1):
            mapped = np.clip(rows + offset, 0, len(self.tables) - 1)
            options.append((float(cost[rows, mapped].sum()),
                            _MAP_IDENTITY if offset == 0 else _MAP_OFFSET, offset))
        _, kind, offset = min(options)
        if kind == _MAP_EXPLICIT:
            return best, _MAP_HEADER.pack(kind, 0) + explicit
        return np.clip(rows + offset, 0, len(self.tables) - 1), _MAP_HEADER.pack(kind, offset)

    def bin_costs(self, symbols: list[np.ndarray], bins: list[np.ndarray],
                  edges: list[np.ndarray] | None = None) -> np.ndarray:
        """(bins, tables): the exact bits of each bin's residuals under each table (those on
        a bound, ``edges`` 1 or 2, with the folded tail's probability)."""
        def flat(parts: list[np.ndarray]) -> np.ndarray:
            return np.concatenate([a.ravel() for a in parts]) if parts else np.zeros(0, np.int64)

        s, b = flat(symbols), flat(bins)
        e = flat(edges) if edges is not None else np.zeros_like(s)
        m = _CHOICE_MAGNITUDE
        inside = np.abs(s) <= m
        cells = (e[inside] * self.map_size + b[inside]) * (2 * m + 1) + s[inside] + m
        hist = np.bincount(cells, minlength=3 * self.map_size * (2 * m + 1)).astype(np.float64)
        hist = hist.reshape(3, self.map_size, 2 * m + 1)
        cost = np.zeros((self.map_size, len(self.tables)))
        for edge, matrix in enumerate(self._cost_matrices):
            for bin_ in np.flatnonzero(hist[edge].any(axis=1)):
                used = np.flatnonzero(hist[edge, bin_])
                cost[bin_] += matrix[:, used] @ hist[edge, bin_, used]
        if not inside.all():
            for bin_, value in zip(b[~inside], s[~inside], strict=True):
                cost[bin_] += self._bits_of(int(value))
        return cost

    @functools.cached_property
    def _cost_matrices(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(tables, symbols -m .. m) bits: plain, on the lower bound, on the upper bound."""
        m = _CHOICE_MAGNITUDE
        values = np.arange(-m, m + 1)
        plain = np.stack([self.tables.code_lengths(values, np.full(values.size, k))
                          for k in range(len(self.tables))])
        lower, upper = plain.copy(), plain.copy()
        for k in range(len(self.tables)):
            r, o = int(self._radius[k]), int(self._offsets[k])
            covered = np.abs(values) <= r
            codes = o + values[covered] + r
            below = self._starts[codes] + self._freqs[codes]
            above = self._starts[o + 2 * r + 1] - self._starts[codes]
            lower[k, covered] = np.log2(TOTAL / below)
            upper[k, covered] = np.log2(TOTAL / above)
        return plain, lower, upper

    def _bits_of(self, value: int) -> np.ndarray:
        indices = np.arange(len(self.tables))
        return self.tables.code_lengths(np.full(indices.size, value), indices)

    @functools.cached_property
    def _no_tables(self) -> np.ndarray:
        return np.zeros(self.map_size, np.int64)

    # -- training ---------------------------------------------------------------------
    def samples(self, image: np.ndarray, bits: int, previous: np.ndarray | None = None,
                max_error: int = 0, with_error_input: bool = False) -> np.ndarray:
        """(pixels, FEATURES + 1): every pixel's network inputs and its residual to the
        bias-corrected least-squares prediction, in raster order (one stripe: the whole
        image), coding with maximum error ``max_error`` (the inputs then come from the
        reconstruction); ``with_error_input`` adds D as input FEATURES."""
        image = np.ascontiguousarray(image, dtype=np.int64)
        prior = self._previous(previous, image.shape)
        out = np.zeros((image.size, kernels.FEATURES + 1 + int(with_error_input)), np.int64)
        canvas = np.zeros_like(image)
        self._run(image, canvas, prior, (1 << bits) - 1, max_error, RADIUS, False, False,
                  self._no_tables, np.zeros_like(image), np.zeros_like(image),
                  np.zeros_like(image), np.zeros(3, np.int64),
                  np.zeros(0, np.uint8), *self._kernel_tables()[:4], *_kernel_network(None), out)
        return out

    # -- storage ----------------------------------------------------------------------
    def as_arrays(self) -> dict[str, np.ndarray]:
        out = {"causal.version": np.array([self.version], np.int32),
               "causal.inter": np.array([int(self.inter)], np.int32)}
        out.update(self.tables.as_arrays("causal.entropy."))
        if self.net is not None:
            out.update(self.net.as_arrays("causal.net."))
        return {k: np.ascontiguousarray(v) for k, v in out.items()}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> CausalEstimator:
        version = int(arrays["causal.version"][0])
        if version not in (_VERSION_BINS, _VERSION_NET):
            raise ValueError("unknown causal model version")
        net = IntMLP.from_arrays(arrays, "causal.net.") if version == _VERSION_NET else None
        return cls(LaplaceTables.from_arrays(arrays, "causal.entropy."),
                   bool(int(arrays["causal.inter"][0])), net)

    @classmethod
    def build(cls, net: IntMLP | None = None, inter: bool = False) -> CausalEstimator:
        """A model with the standard tables (Laplace scales 0.02 to 2048, 80 of them)."""
        return cls(tables(), inter, net)


def tables(shape: str = "laplace") -> LaplaceTables:
    """The standard tables (80 scales, 0.02 to 2048) of the given distribution shape."""
    return LaplaceTables.build(0.02, 2048.0, 80, shape=shape)


_NO_SAMPLES = np.zeros((0, kernels.FEATURES + 1), np.int64)
_NO_PREVIOUS = np.zeros((1, 1), np.int64)


def _kernel_network(net: IntMLP | None) -> tuple[np.ndarray, ...]:
    """An IntMLP as the kernel reads it (``kernels.forward``): the three layers' weights as
    (inputs, outputs) float64 arrays holding integers, their biases (one row per layer) and
    their shifts. No network: empty arrays."""
    if net is None:
        return (np.zeros((kernels.FEATURES, 0)), np.zeros((0, 0)), np.zeros((0, 2)),
                np.zeros((3, 2)), np.zeros(3, np.int64))
    w1, w2, w3 = (np.ascontiguousarray(layer.weight, np.float64) for layer in net.layers)
    biases = np.zeros((3, max(w1.shape[1], 2)))
    for row, layer in enumerate(net.layers):
        biases[row, : layer.bias.size] = layer.bias
    return w1, w2, w3, biases, np.array([layer.shift for layer in net.layers], np.int64)


def _fits_kernel(net: IntMLP) -> bool:
    """The shape ``kernels.forward`` runs: FEATURES (+ 1 with D) -> h -> h -> 2, ReLU on the
    hidden layers."""
    if len(net.layers) != 3:
        return False
    first, second, last = net.layers
    hidden = first.weight.shape[1]
    return (first.weight.shape[0] in (kernels.FEATURES, kernels.FEATURES + 1)
            and second.weight.shape == (hidden, hidden)
            and last.weight.shape == (hidden, 2) and first.relu and second.relu
            and not last.relu and 0 < hidden <= 1024)


def _edges(symbols: np.ndarray, locs: np.ndarray, top: int, max_error: int) -> np.ndarray:
    """1 where a symbol is the lowest its pixel allows, 2 where the highest (not also the
    lowest), else 0: ``kernels.symbol_bounds`` itself (its Python body), on arrays."""
    low, high = kernels.symbol_bounds.py_func(locs, top, max_error)
    return np.where(symbols == low, 1, np.where(symbols == high, 2, 0))


def _stripes(rows: int) -> list[tuple[int, int]]:
    return [(r, min(rows, r + STRIPE_ROWS)) for r in range(0, rows, STRIPE_ROWS)]
