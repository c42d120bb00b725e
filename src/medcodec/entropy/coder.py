"""Code integer symbols, each with a table index, into one byte string (constriction's ANS).

Symbols are grouped by table and each group is coded with one categorical model, so coding is
a handful of vectorised calls, not a loop per symbol. The decoder must know every symbol's table
index before decoding (indices come from data decoded earlier: a coarser subband, a previous
pass), which is what makes decoding parallel over whole passes.

Values outside a table's range are coded as its escape symbol, followed (at the end) by the
value itself as two 16-bit halves; with tables reaching 14 scales into the tail this is rare.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from medcodec.entropy.tables import LaplaceTables
from medcodec.errors import CorruptStreamError

_HALF = 1 << 16

#: Kinds of part (:meth:`GroupedCoder.encode_parts`).
SIGNED, MAGNITUDE, BINARY = "signed", "magnitude", "binary"
#: Probabilities of binary parts are integers in 1 / BINARY_ONE.
BINARY_ONE = 1 << 12


class _Groups(NamedTuple):
    order: np.ndarray  # positions sorted by table index, stable (original order within)
    runs: list[tuple[int, int, int]]  # (index, start, stop) in ``order``, ascending index


def _groups(indices: np.ndarray) -> _Groups:
    """Symbols grouped by table index with one stable sort (not one scan per index)."""
    order = np.argsort(indices, kind="stable")
    values = indices[order]
    starts = np.flatnonzero(np.diff(values)) + 1 if values.size else np.zeros(0, np.int64)
    bounds = np.concatenate([[0], starts, [values.size]]).astype(np.int64)
    runs = [(int(values[a]), int(a), int(b)) for a, b in itertools.pairwise(bounds) if b > a]
    return _Groups(order, runs)


class GroupedCoder:
    def __init__(self, tables: LaplaceTables) -> None:
        import constriction

        self.tables = tables
        self._model = constriction.stream.model
        self._stack = constriction.stream.stack
        self._models: dict[int, object] = {}
        self._folded_models: dict[int, object] = {}
        self._binary_models: dict[int, object] = {}

    def _categorical(self, index: int) -> object:
        model = self._models.get(index)
        if model is None:
            freqs = self.tables.table(index).astype(np.float64)
            model = self._model.Categorical(freqs, perfect=False)
            self._models[index] = model
        return model

    def encode(self, symbols: np.ndarray, indices: np.ndarray) -> bytes:
        return self.encode_parts([(symbols, indices)])

    def encode_parts(self, parts: Sequence[tuple]) -> bytes:
        """Several parts in one ANS stream, to be read back in order with :meth:`decoder`: no
        framing and one final state instead of one per part. A part is ``(symbols, table
        indices)``, or ``(symbols, indices, kind)`` with kind SIGNED (the default),
        MAGNITUDE (symbols >= 0 under the folded tables) or BINARY (bits; each "index" is the
        probability of a 1 in 1 / BINARY_ONE)."""
        coder = self._stack.AnsCoder()
        for part in reversed(parts):  # a stack: push what is read last first
            self._push(coder, *part)
        return coder.get_compressed().astype("<u4").tobytes()

    def _push(self, coder: object, symbols: np.ndarray, indices: np.ndarray,
              kind: str = SIGNED) -> None:
        symbols = np.asarray(symbols, dtype=np.int64).ravel()
        indices = np.asarray(indices, dtype=np.int64).ravel()
        if symbols.shape != indices.shape:
            raise ValueError("every symbol needs exactly one table index")
        if kind == BINARY:
            groups = _groups(indices)
            ordered = symbols[groups.order].astype(np.int32)
            for p, start, stop in reversed(groups.runs):
                coder.encode_reverse(ordered[start:stop], self._model_for(BINARY)(p))
            return
        radius = self.tables.radius[indices].astype(np.int64)
        if kind == MAGNITUDE:
            escaped = symbols > radius
            codes = np.where(escaped, radius + 1, symbols)
        else:
            escaped = np.abs(symbols) > radius
            codes = np.where(escaped, 2 * radius + 1, symbols + radius)
        if escaped.any():  # read after the part's symbols
            values = symbols[escaped]
            payload = (values + (1 << 31)).astype(np.uint64)
            halves = np.stack([payload >> 16, payload & 0xFFFF], axis=1).ravel()
            coder.encode_reverse(halves.astype(np.int32), self._model.Uniform(_HALF))
        groups = _groups(indices)
        ordered = codes[groups.order].astype(np.int32)
        model = self._model_for(kind)
        for index, start, stop in reversed(groups.runs):
            coder.encode_reverse(ordered[start:stop], model(index))

    def _model_for(self, kind: str):
        """The model of a part's group, by its index (a table, or a binary probability)."""
        return {SIGNED: self._categorical, MAGNITUDE: self._folded, BINARY: self._binary}[kind]

    def _folded(self, index: int) -> object:
        """Table ``index`` folded onto magnitudes: 0, then |s| = 1 .. radius (the masses of
        s and -s added, integers), then the escape."""
        model = self._folded_models.get(index)
        if model is None:
            table = self.tables.table(index).astype(np.int64)
            r = (table.size - 2) // 2
            folded = np.concatenate([[table[r]], table[r + 1 : 2 * r + 1] + table[r - 1 :: -1][:r],
                                     [table[-1]]])
            model = self._model.Categorical(folded.astype(np.float64), perfect=False)
            self._folded_models[index] = model
        return model

    def _binary(self, p: int) -> object:
        """A bit that is 1 with probability ``p`` / BINARY_ONE."""
        if not 0 < p < BINARY_ONE:
            raise CorruptStreamError("binary probability out of range")
        model = self._binary_models.get(p)
        if model is None:
            model = self._model.Categorical(np.array([BINARY_ONE - p, p], np.float64),
                                            perfect=False)
            self._binary_models[p] = model
        return model

    def decode(self, data: bytes, indices: np.ndarray) -> np.ndarray:
        return self.decoder(data).decode(indices)

    def decoder(self, data: bytes) -> PartDecoder:
        """A reader of the parts of :meth:`encode_parts`, one :meth:`PartDecoder.decode` per
        part, in order."""
        if len(data) % 4:
            raise CorruptStreamError("entropy-coded stream has a partial word")
        try:
            coder = self._stack.AnsCoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
        except (ValueError, RuntimeError, AssertionError) as exc:
            raise CorruptStreamError(f"entropy-coded stream does not decode: {exc}") from None
        return PartDecoder(self, coder)


class PartDecoder:
    """Reads the parts of one ANS stream in the order they were given to the encoder."""

    def __init__(self, owner: GroupedCoder, coder: object) -> None:
        self._owner = owner
        self._coder = coder

    def decode(self, indices: np.ndarray, kind: str = SIGNED) -> np.ndarray:
        """The next part's symbols, given every symbol's table index (its kind as encoded)."""
        owner, coder = self._owner, self._coder
        indices = np.asarray(indices, dtype=np.int64)
        shape = indices.shape
        indices = indices.ravel()
        if kind != BINARY and indices.size and (indices.min() < 0
                                                or indices.max() >= len(owner.tables)):
            raise CorruptStreamError("table index out of range")
        try:
            groups = _groups(indices)
            ordered = np.empty(indices.size, dtype=np.int64)
            model = owner._model_for(kind)
            for index, start, stop in groups.runs:
                ordered[start:stop] = coder.decode(model(index), stop - start)
            codes = np.empty(indices.size, dtype=np.int64)
            codes[groups.order] = ordered
            if kind == BINARY:
                return codes.reshape(shape)
            radius = owner.tables.radius[indices].astype(np.int64)
            if kind == MAGNITUDE:
                escaped = codes == radius + 1
                symbols = codes
            else:
                escaped = codes == 2 * radius + 1
                symbols = codes - radius
            count = int(escaped.sum())
            if count:
                halves = coder.decode(owner._model.Uniform(_HALF), 2 * count).astype(np.int64)
                values = (halves[0::2] << 16 | halves[1::2]) - (1 << 31)
                symbols[escaped] = values
        except (ValueError, RuntimeError, AssertionError) as exc:
            raise CorruptStreamError(f"entropy-coded stream does not decode: {exc}") from None
        return symbols.reshape(shape)

    def finish(self, what: str) -> None:
        """Every word read: anything left means a damaged stream or a different model."""
        if not self._coder.is_empty():
            raise CorruptStreamError(f"{what} has data left after its last part")


def join_segments(segments: Sequence[bytes]) -> bytes:
    """How the learned codecs frame their coded passes: every segment's length (uint32,
    little-endian), then the segments. The count is the caller's to store (in its header)."""
    return struct.pack(f"<{len(segments)}I", *map(len, segments)) + b"".join(segments)


def split_segments(data: bytes, start: int, count: int, what: str) -> list[bytes]:
    """The ``count`` segments framed by :func:`join_segments` at ``data[start:]``, which must
    end the stream exactly; anything else is a :class:`CorruptStreamError` naming ``what``."""
    pos = start + 4 * count
    if len(data) < pos:
        raise CorruptStreamError(f"{what} is truncated")
    lengths = struct.unpack_from(f"<{count}I", data, start)
    if pos + sum(lengths) != len(data):
        raise CorruptStreamError(f"{what} is truncated or has extra bytes")
    segments = []
    for n in lengths:
        segments.append(data[pos : pos + n])
        pos += n
    return segments
