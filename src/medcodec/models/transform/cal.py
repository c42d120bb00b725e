"""Cross-attention learning (CAL) between subbands, in exact integers.

At every latent position the 7 subbands (LL2, LH2, HL2, HH2 with one coefficient each; LH1,
HL1, HH1 with their 4 phases) become 7 tokens, and every token attends to all 7 with
multi-head query-key-value attention: the fine orientations see what the coarse ones say about
an edge, and the analysis transform reshapes the coefficients before they are quantised. The
softmax runs through an integer table (the scheme of :mod:`medcodec.models.wavelet.attention`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medcodec.models.intnet import ACT_LIMIT, IntLayer, IntMLP
from medcodec.models.threads import parallel_map
from medcodec.models.transform import layout as lay
from medcodec.models.wavelet.attention import SOFTMAX_STEPS, SOFTMAX_TABLE, softmax_table

#: Token activations carry this many fractional bits.
ACT_BITS = 8


@dataclass
class IntCal:
    embed: list[IntMLP]  # per group: its coefficients -> a token (position folded in the bias)
    query: IntMLP
    key: IntMLP
    value: IntMLP
    back: list[IntMLP]  # per group: mixed token -> correction of its coefficients

    def __call__(self, grid: np.ndarray) -> np.ndarray:
        """(rows, cols, 16) integers (the subband grid in fixed point) -> the correction to
        add, (rows, cols, 16) integers (the output scale of ``back``). Exact integers
        throughout: the order of the sums cannot change the result."""
        rows, cols, _ = grid.shape
        flat = grid.reshape(-1, lay.CHANNELS)
        n = flat.shape[0]
        tokens = np.concatenate([self.embed[g](flat[:, a:b]) for g, (a, b) in
                                 enumerate(lay.GROUP_SLICES)], axis=1)  # (n, T * D)
        t = tokens.reshape(n * lay.TOKENS, lay.TOKEN_DIM)
        shape = (n, lay.TOKENS, lay.HEADS, lay.KEY_DIM)
        # planar (head, token, dim, position) layout: every operation below is a long
        # vectorised one over the positions
        q, k, v = (np.ascontiguousarray(net(t).reshape(shape).transpose(2, 1, 3, 0))
                   for net in (self.query, self.key, self.value))
        planar = np.empty((lay.TOKENS, lay.HEADS, lay.KEY_DIM, n))
        scale = 2.0 ** -(2 * ACT_BITS + 1) * SOFTMAX_STEPS  # q, k: ACT_BITS each; / sqrt(4)

        def head(h: int) -> None:  # the heads are independent: one per thread
            for tok in range(lay.TOKENS):
                scores = q[h, tok, 0] * k[h, :, 0]  # (T, n) exact integers
                for d in range(1, lay.KEY_DIM):
                    scores += q[h, tok, d] * k[h, :, d]
                logits = np.floor(scores * scale)
                gap = np.clip(logits.max(axis=0) - logits, 0, SOFTMAX_TABLE - 1)
                weight = _TABLE[gap.astype(np.intp)]  # (T, n)
                total = weight.sum(axis=0)
                for d in range(lay.KEY_DIM):
                    np.floor(np.einsum("sn,sn->n", weight, v[h, :, d]) / total,
                             out=planar[tok, h, d])

        parallel_map(head, range(lay.HEADS))
        mixed = np.clip(planar.transpose(3, 0, 1, 2), -ACT_LIMIT, ACT_LIMIT).reshape(
            n, lay.TOKENS, lay.HEADS * lay.KEY_DIM)
        out = np.concatenate([self.back[g](mixed[:, g]) for g in range(lay.TOKENS)], axis=1)
        return out.reshape(rows, cols, lay.CHANNELS)

    @classmethod
    def from_float(cls, state: dict[str, np.ndarray], input_scale: float,
                   out_bits: int) -> IntCal:
        """From the float twin's ``cal.*`` arrays; inputs are integers worth ``input_scale``
        of the twin's input, outputs carry ``out_bits`` fractional bits of its output."""
        position = state["cal.position"]
        embed = [IntMLP.from_float([state[f"cal.embed.{g}.weight"].T],
                                   [state[f"cal.embed.{g}.bias"] + position[g]],
                                   np.full(n, input_scale), ACT_BITS)
                 for g, n in enumerate(lay.GROUP_SIZES)]
        embed = [IntMLP([IntLayer(m.layers[0].weight, m.layers[0].bias, m.layers[0].shift,
                                  True)]) for m in embed]  # tokens pass a ReLU
        unit = np.full(lay.TOKEN_DIM, 2.0**-ACT_BITS)
        q, k, v = (IntMLP.from_float([state[f"cal.{name}.weight"].T],
                                     [state[f"cal.{name}.bias"]], unit, ACT_BITS)
                   for name in ("query", "key", "value"))
        unit = np.full(lay.HEADS * lay.KEY_DIM, 2.0**-ACT_BITS)
        back = [IntMLP.from_float([state[f"cal.back.{g}.weight"].T],
                                  [state[f"cal.back.{g}.bias"]], unit, out_bits)
                for g in range(lay.TOKENS)]
        return cls(embed, q, k, v, back)

    def as_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for g, m in enumerate(self.embed):
            out.update(m.as_arrays(f"{prefix}embed{g}."))
        for name in ("query", "key", "value"):
            out.update(getattr(self, name).as_arrays(f"{prefix}{name}."))
        for g, m in enumerate(self.back):
            out.update(m.as_arrays(f"{prefix}back{g}."))
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str) -> IntCal:
        return cls([IntMLP.from_arrays(arrays, f"{prefix}embed{g}.") for g in range(lay.TOKENS)],
                   *(IntMLP.from_arrays(arrays, f"{prefix}{name}.")
                     for name in ("query", "key", "value")),
                   [IntMLP.from_arrays(arrays, f"{prefix}back{g}.") for g in range(lay.TOKENS)])


_TABLE = softmax_table()
