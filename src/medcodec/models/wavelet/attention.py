"""The cross-attention learning (CAL) part: multi-head query-key-value attention over the parent
level's 3x3 neighbourhood, in integers (a fixed-point softmax table), and the MLP that turns a
coefficient's context into a Laplace table index."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from medcodec.models.context import mirror_pad
from medcodec.models.intnet import ACT_LIMIT, IntLayer, IntMLP
from medcodec.models.threads import parallel_map
from medcodec.models.wavelet.features import FEATURES, STATIC

#: Attention: heads, key/query size, value size, coarse positions (3x3).
HEADS, KEY_DIM, VALUE_DIM, POSITIONS = 2, 4, 4, 9


#: Softmax table resolution: logits in 1/8 units, 256 entries.
SOFTMAX_STEPS, SOFTMAX_TABLE = 8, 256


#: (row, column) offsets of the 3x3 neighbourhood, in the order of the position codes.
_NEIGHBOURS = tuple((a, b) for a in (-1, 0, 1) for b in (-1, 0, 1))


#: Parent grids of at least this many cells run their attention heads in parallel (measured:
#: 128x128 cells gain, 64x64 lose to the threads' overhead).
_PARALLEL_CELLS = 16384


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


def softmax_table() -> np.ndarray:
    return np.round(2.0**15 * np.exp(-np.arange(SOFTMAX_TABLE) / SOFTMAX_STEPS))
