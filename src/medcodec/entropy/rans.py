"""A byte-wise rANS coder over the integer Laplace tables, compiled with Numba.

Why not constriction here: the raster-scan pixel estimator (``models/causal``) chooses each
pixel's table from pixels decoded just before it, so decoding has to interleave model and
entropy decoder pixel by pixel inside one compiled loop. constriction's coders can only be
driven from Python, one call per symbol, which is a hundred times too slow for that. This is
the textbook coder (32-bit state, byte renormalisation, 16-bit probabilities: Duda's rANS as
in ryg_rans), in integer arithmetic only, so it decodes identically everywhere.

Table ``k`` of :class:`~medcodec.entropy.tables.LaplaceTables` covers symbols ``-r .. r`` and an
escape; an escaped value follows as two uniform symbols (9 + 8 bits, offset by 2**16).

**Bounded symbols.** When both sides know that a symbol lies in ``low .. high`` (a pixel
cannot go below 0 or above the top of its range, and its prediction is known), the table's
mass below ``low`` is folded onto ``low`` and the mass above ``high`` onto ``high``: a
pixel clipped at 0 (air outside the body, the padding around a scan's field of view) then
costs what the whole lower tail is worth, not one thin slice of it. ``low``/``high`` outside
the table's range change nothing (``UNBOUNDED`` for streams without folding).
"""

from __future__ import annotations

import numpy as np

from medcodec._jit import compiled
from medcodec.entropy.tables import TOTAL, LaplaceTables

#: Probability precision (TOTAL = 2**PRECISION) and the lower bound of the coder's state.
PRECISION = 16
STATE_LOW = 1 << 23
#: Escaped values are sent as ``value + ESCAPE_OFFSET`` in 17 bits (9 + 8).
ESCAPE_OFFSET = 1 << 16
MAX_ESCAPED = ESCAPE_OFFSET - 1
#: A bound no symbol reaches: coding without folding.
UNBOUNDED = 1 << 40

assert TOTAL == 1 << PRECISION


def cumulative(tables: LaplaceTables) -> np.ndarray:
    """Exclusive prefix sums of every table (same layout as ``tables.freqs``)."""
    freqs = tables.freqs.astype(np.int64)
    out = np.empty_like(freqs)
    for k in range(len(tables)):
        a, b = int(tables.offsets[k]), int(tables.offsets[k + 1])
        out[a] = 0
        np.cumsum(freqs[a : b - 1], out=out[a + 1 : b])
    return out


@compiled()
def code_symbol(symbol: int, table: int, low: int, high: int, radius: np.ndarray,
                offsets: np.ndarray, freqs: np.ndarray, starts: np.ndarray,
                out_start: np.ndarray, out_freq: np.ndarray, n: int) -> int:
    """Append the (start, freq) pairs of ``symbol`` (known to lie in ``low .. high``) under
    ``table`` at ``n``; new ``n``."""
    r = radius[table]
    o = offsets[table]
    if -r <= symbol <= r:
        code = symbol + r
        start = starts[o + code]
        freq = freqs[o + code]
        if symbol == low:  # the lower tail folds onto the lowest possible symbol
            freq += start
            start = 0
        elif symbol == high:  # the upper tail (not the escape) onto the highest
            freq = starts[o + 2 * r + 1] - start
        out_start[n] = start
        out_freq[n] = freq
        return n + 1
    code = 2 * r + 1
    out_start[n] = starts[o + code]
    out_freq[n] = freqs[o + code]
    u = symbol + ESCAPE_OFFSET
    out_start[n + 1] = (u >> 8) << (PRECISION - 9)
    out_freq[n + 1] = 1 << (PRECISION - 9)
    out_start[n + 2] = (u & 255) << (PRECISION - 8)
    out_freq[n + 2] = 1 << (PRECISION - 8)
    return n + 3


@compiled()
def encode_pairs(out_start: np.ndarray, out_freq: np.ndarray, n: int) -> np.ndarray:
    """The bytes of the first ``n`` (start, freq) pairs, which the decoder reads in order."""
    buf = np.empty(4 * n + 8, np.uint8)
    pos = 0
    x = STATE_LOW
    for i in range(n - 1, -1, -1):
        f = out_freq[i]
        limit = ((STATE_LOW >> PRECISION) << 8) * f
        while x >= limit:
            buf[pos] = x & 255
            pos += 1
            x >>= 8
        x = ((x // f) << PRECISION) + (x % f) + out_start[i]
    for _ in range(4):
        buf[pos] = x & 255
        pos += 1
        x >>= 8
    return buf[:pos][::-1].copy()


@compiled(inline="always")
def _renormalise(x: int, state: np.ndarray, data: np.ndarray) -> int:
    while x < STATE_LOW:
        p = state[1]
        if p < data.size:
            x = (x << 8) | data[p]
        else:
            x = x << 8
            state[2] = 1  # read past the end: damaged stream
        state[1] = p + 1
    return x


@compiled()
def start_decoder(state: np.ndarray, data: np.ndarray) -> None:
    """state = [x, position, damaged flag]."""
    x = 0
    for i in range(4):
        x = (x << 8) | (data[i] if i < data.size else 0)
    state[0] = x
    state[1] = 4
    state[2] = 0 if data.size >= 4 and x >= STATE_LOW else 1


@compiled()
def decode_symbol(table: int, low: int, high: int, state: np.ndarray, data: np.ndarray,
                  radius: np.ndarray, offsets: np.ndarray, freqs: np.ndarray,
                  starts: np.ndarray) -> int:
    """The next symbol under ``table``, known to lie in ``low .. high`` (an escape reads its
    value too)."""
    r = radius[table]
    o = offsets[table]
    x = state[0]
    c = x & (TOTAL - 1)
    lo = -1
    start = 0
    freq = 0
    if -r <= low <= r:
        end = starts[o + low + r] + freqs[o + low + r]
        if c < end:
            lo = low + r
            start, freq = 0, end
    if lo < 0 and -r <= high <= r and high != low:
        start = starts[o + high + r]
        if start <= c < starts[o + 2 * r + 1]:
            lo = high + r
            freq = starts[o + 2 * r + 1] - start
    if lo < 0:
        lo, hi = 0, 2 * r + 1
        while lo < hi:
            mid = (lo + hi + 1) >> 1
            if starts[o + mid] <= c:
                lo = mid
            else:
                hi = mid - 1
        start = starts[o + lo]
        freq = freqs[o + lo]
    x = freq * (x >> PRECISION) + c - start
    x = _renormalise(x, state, data)
    if lo <= 2 * r:
        state[0] = x
        return lo - r
    u = 0
    for bits in (9, 8):
        shift = PRECISION - bits
        c = x & (TOTAL - 1)
        v = c >> shift
        x = (1 << shift) * (x >> PRECISION) + c - (v << shift)
        x = _renormalise(x, state, data)
        u = (u << 8) | v if bits == 8 else v
    state[0] = x
    return u - ESCAPE_OFFSET


def finished_cleanly(state: np.ndarray, data: np.ndarray) -> bool:
    """A whole stream was read: the state is back at its start and no byte is left over."""
    return int(state[2]) == 0 and int(state[0]) == STATE_LOW and int(state[1]) == data.size
