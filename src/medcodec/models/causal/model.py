"""The raster-scan pixel estimator as a lossless / near-lossless model: online least squares,
bias correction and per-image scale tables (``kernels.py``), rANS bytes, in independent
horizontal stripes so that the cores share a slice.

Stream: header, the table of every energy bin (one byte each: chosen by the encoder for this
image), then one rANS segment per stripe of ``STRIPE_ROWS`` rows (fixed by the format, not
by the thread count, so the bytes never depend on it).
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass

import numpy as np

from medcodec.entropy import rans
from medcodec.entropy.coder import join_segments, split_segments
from medcodec.entropy.tables import LaplaceTables
from medcodec.errors import CorruptStreamError
from medcodec.models.causal import kernels
from medcodec.models.threads import parallel_map

#: Rows of one independently coded stripe (the last one may be shorter).
STRIPE_ROWS = 256
#: Least-squares window radius.
RADIUS = 6
#: Residual magnitudes counted exactly when choosing tables; larger ones are escapes anyway.
_CHOICE_MAGNITUDE = 1024

_HEADER = struct.Struct("<BBHHB")  # version, radius, max error, stripe rows, stripes
_VERSION = 1


@dataclass
class CausalEstimator:
    """The model: its integer Laplace tables (shipped with it) and the window radius."""

    tables: LaplaceTables
    inter: bool = False

    def __post_init__(self) -> None:
        t = self.tables
        self._radius = t.radius.astype(np.int64)
        self._offsets = t.offsets.astype(np.int64)
        self._freqs = t.freqs.astype(np.int64)
        self._starts = rans.cumulative(t)

    # -- coding -----------------------------------------------------------------------
    def encode(self, image: np.ndarray, bits: int, max_error: int = 0,
               previous: np.ndarray | None = None) -> bytes:
        if previous is not None:
            raise ValueError("this model codes one slice at a time")
        image = np.ascontiguousarray(image, dtype=np.int64)
        top = (1 << bits) - 1
        stripes = _stripes(image.shape[0])

        def model(bounds: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
            part = image[bounds[0] : bounds[1]]
            canvas = np.zeros_like(part)
            symbols = np.zeros_like(part)
            bins = np.zeros_like(part)
            kernels.run(part, canvas, top, max_error, RADIUS, False, self._no_tables, symbols,
                        bins, np.zeros(3, np.int64), np.zeros(0, np.uint8), self._radius,
                        self._offsets, self._freqs, self._starts)
            return symbols, bins

        coded = parallel_map(model, stripes)
        table_of_bin = self.choose_tables([s for s, _ in coded], [b for _, b in coded])

        def entropy(part: tuple[np.ndarray, np.ndarray]) -> bytes:
            start, freq, n = kernels.pairs(part[0], part[1], table_of_bin, self._radius,
                                           self._offsets, self._freqs, self._starts)
            return rans.encode_pairs(start, freq, n).tobytes()

        segments = parallel_map(entropy, coded)
        header = _HEADER.pack(_VERSION, RADIUS, max_error, STRIPE_ROWS, len(stripes))
        return header + table_of_bin.astype(np.uint8).tobytes() + join_segments(segments)

    def decode(self, data: bytes, shape: tuple[int, int], bits: int,
               previous: np.ndarray | None = None) -> np.ndarray:
        if previous is not None:
            raise ValueError("this model codes one slice at a time")
        if len(data) < _HEADER.size + kernels.BINS:
            raise CorruptStreamError("pixel-estimation stream is truncated")
        version, radius, max_error, stripe_rows, count = _HEADER.unpack_from(data)
        if version != _VERSION or radius != RADIUS or stripe_rows != STRIPE_ROWS:
            raise CorruptStreamError("pixel-estimation stream was made by another version of "
                                     "medcodec")
        stripes = _stripes(shape[0])
        if count != len(stripes):
            raise CorruptStreamError("pixel-estimation stream header is damaged")
        table_of_bin = np.frombuffer(data, np.uint8, kernels.BINS, _HEADER.size).astype(np.int64)
        if table_of_bin.max(initial=0) >= len(self.tables):
            raise CorruptStreamError("pixel-estimation stream names a table it does not have")
        segments = split_segments(data, _HEADER.size + kernels.BINS, count,
                                  "pixel-estimation stream")
        top = (1 << bits) - 1

        def decode_stripe(item: tuple[tuple[int, int], bytes]) -> np.ndarray:
            (r0, r1), segment = item
            canvas = np.zeros((r1 - r0, shape[1]), np.int64)
            payload = np.frombuffer(segment, np.uint8)
            state = np.zeros(3, np.int64)
            rans.start_decoder(state, payload)
            kernels.run(canvas, canvas, top, max_error, RADIUS, True, table_of_bin, canvas,
                        canvas, state, payload, self._radius, self._offsets, self._freqs,
                        self._starts)
            if not rans.finished_cleanly(state, payload):
                raise CorruptStreamError("pixel-estimation stream does not decode (damaged)")
            return canvas

        parts = parallel_map(decode_stripe, list(zip(stripes, segments, strict=True)))
        return np.concatenate(parts) if parts else np.zeros(shape, np.int64)

    # -- the encoder's second pass: tables per bin --------------------------------------
    def choose_tables(self, symbols: list[np.ndarray], bins: list[np.ndarray]) -> np.ndarray:
        """For each energy bin, the table that codes this image's residuals in that bin in
        the fewest bits (exact code lengths; the map is sent, 1 byte a bin)."""
        s = np.concatenate([a.ravel() for a in symbols]) if symbols else np.zeros(0, np.int64)
        b = np.concatenate([a.ravel() for a in bins]) if bins else np.zeros(0, np.int64)
        m = _CHOICE_MAGNITUDE
        inside = np.abs(s) <= m
        cells = b[inside] * (2 * m + 1) + s[inside] + m
        hist = np.bincount(cells, minlength=kernels.BINS * (2 * m + 1)).astype(np.float64)
        hist = hist.reshape(kernels.BINS, 2 * m + 1)
        cost = np.zeros((kernels.BINS, len(self.tables)))
        matrix = self._cost_matrix
        for bin_ in np.flatnonzero(hist.any(axis=1)):
            used = np.flatnonzero(hist[bin_])
            cost[bin_] = matrix[:, used] @ hist[bin_, used]
        if not inside.all():
            for bin_, value in zip(b[~inside], s[~inside], strict=True):
                cost[bin_] += self._bits_of(int(value))
        return np.argmin(cost, axis=1).astype(np.int64)

    @functools.cached_property
    def _cost_matrix(self) -> np.ndarray:
        m = _CHOICE_MAGNITUDE
        values = np.arange(-m, m + 1)
        return np.stack([self.tables.code_lengths(values, np.full(values.size, k))
                         for k in range(len(self.tables))])

    def _bits_of(self, value: int) -> np.ndarray:
        indices = np.arange(len(self.tables))
        return self.tables.code_lengths(np.full(indices.size, value), indices)

    @functools.cached_property
    def _no_tables(self) -> np.ndarray:
        return np.zeros(kernels.BINS, np.int64)

    # -- storage ----------------------------------------------------------------------
    def as_arrays(self) -> dict[str, np.ndarray]:
        out = {"causal.version": np.array([_VERSION], np.int32),
               "causal.inter": np.array([int(self.inter)], np.int32)}
        out.update(self.tables.as_arrays("causal.entropy."))
        return {k: np.ascontiguousarray(v) for k, v in out.items()}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> CausalEstimator:
        if int(arrays["causal.version"][0]) != _VERSION:
            raise ValueError("unknown causal model version")
        return cls(LaplaceTables.from_arrays(arrays, "causal.entropy."),
                   bool(int(arrays["causal.inter"][0])))

    @classmethod
    def build(cls) -> CausalEstimator:
        """A fresh model (its tables: Laplace scales 0.02 to 2048, 80 of them)."""
        return cls(LaplaceTables.build(0.02, 2048.0, 80))


def _stripes(rows: int) -> list[tuple[int, int]]:
    return [(r, min(rows, r + STRIPE_ROWS)) for r in range(0, rows, STRIPE_ROWS)]
