"""Dependent quantisation of the detail bands (VVC's trellis-coded quantisation, 4 states).

Two scalar quantisers share the band's step: Q0 reconstructs ``k`` at ``|k| + offset`` steps
(the plain quantiser, with the learned offsets), Q1 at ``|k| - 1/2`` steps (0, +-0.5, +-1.5,
...). Which one a coefficient uses follows from the parity of the levels coded before it in
its checkerboard phase (raster order), through VVC's 4-state machine: states 0 and 1 use Q0,
2 and 3 Q1. The decoder needs nothing but the levels to follow it; the entropy model still
sees plain levels (their magnitude in steps is the same to half a step), so the model and its
tables are unchanged.

The encoder picks the levels of a whole phase with a Viterbi search over the 4 states, in
``gain * error**2 + lambda * bits`` with each level's exact bits under the table the decoder
will use (the tables of a phase depend only on earlier phases). The union of the two
quantisers is twice as fine as either, and the trellis packs the choices so that the rate
stays near that of one: about a tenth of a bit per coefficient at the same distortion, where
noise dominates (CT at 50-65 dB).
"""

from __future__ import annotations

import numpy as np

from medcodec._jit import compiled
from medcodec.entropy.tables import LaplaceTables
from medcodec.models.wavelet.schedule import dequantise, pass_positions

__all__ = ["TRANSITIONS", "dependent_dequantise", "quantiser_of", "trellis_levels"]

#: next state = TRANSITIONS[state, |k| & 1] (VVC).
TRANSITIONS = np.array([[0, 2], [2, 0], [1, 3], [3, 1]], np.int64)


@compiled()
def _states(levels: np.ndarray, transitions: np.ndarray) -> np.ndarray:
    """Whether each level (in coding order, from state 0) is coded with Q1."""
    out = np.empty(levels.size, np.bool_)
    state = 0
    for i in range(levels.size):
        out[i] = state >= 2
        state = transitions[state, abs(levels[i]) & 1]
    return out


def quantiser_of(q: np.ndarray, schedule: int = 2) -> np.ndarray:
    """The Q1 mask of a decoded detail band: the state machine run over each pass of the
    band's schedule in its coding order (raster order of the pass's positions), from state 0."""
    mask = np.zeros(q.shape, bool)
    for phase in range(schedule):
        pos = pass_positions(q.shape, schedule, phase)
        mask[pos] = _states(np.ascontiguousarray(q[pos]), TRANSITIONS)
    return mask


def dependent_dequantise(q: np.ndarray, step: float, offsets: np.ndarray,
                         schedule: int = 2) -> np.ndarray:
    """Coefficients of a band coded with dependent quantisation: Q0's are the plain
    quantiser's (:func:`dequantise`), Q1's at ``|k| - 1/2`` steps."""
    out = dequantise(q, step, offsets)
    q1 = quantiser_of(q, schedule) & (q != 0)
    out[q1] = np.sign(q[q1]) * (np.abs(q[q1]) - 0.5) * step
    return out


@compiled()
def _trellis(a: np.ndarray, sign: np.ndarray, index: np.ndarray, step: float, gain: float,
             lam: float, offsets: np.ndarray, radius: np.ndarray, starts: np.ndarray,
             bits: np.ndarray, sign_bits: np.ndarray, transitions: np.ndarray) -> np.ndarray:
    """The cheapest path through the 4-state trellis. ``a`` is |coefficient| / step in coding
    order; each quantiser offers its two nearest levels and 0, priced by ideal code length
    under the coefficient's table (``radius`` / ``starts`` / ``bits``: the tables' layout, as
    :meth:`LaplaceTables.code_lengths`), plus ``sign_bits`` for a non-zero level (where the
    sign is coded apart from the table's implicit 1 bit: its cost minus 1)."""
    n = a.size
    big = 1e300
    acc = np.array([0.0, big, big, big])
    new = np.empty(4)
    back_state = np.zeros((n, 4), np.int8)
    back_level = np.zeros((n, 4), np.int64)
    mags = np.empty(3, np.int64)
    costs = np.empty(3)
    scale = step * step * gain
    for i in range(n):
        new[:] = big
        r = radius[index[i]]
        base = starts[index[i]]
        for quant in range(2):
            low = int(np.floor(a[i])) if quant == 0 else int(np.floor(a[i] + 0.5))
            mags[0], mags[1], mags[2] = low, low + 1, 0
            for j in range(3):
                m = mags[j]
                if m == 0:
                    recon = 0.0
                elif quant == 0:
                    recon = m + offsets[min(m, 3) - 1] / 256.0
                else:
                    recon = m - 0.5
                escaped = m > r  # the escape symbol, then 32 bits
                rate = (bits[base + 2 * r + 1] + 32.0 if escaped
                        else bits[base + m * sign[i] + r])
                if m > 0:
                    rate += sign_bits[i]
                error = a[i] - recon
                costs[j] = scale * error * error + lam * rate
            for s in range(2 * quant, 2 * quant + 2):
                if acc[s] >= big:
                    continue
                for j in range(3):
                    cost = acc[s] + costs[j]
                    t = transitions[s, mags[j] & 1]
                    if cost < new[t]:
                        new[t] = cost
                        back_state[i, t] = s
                        back_level[i, t] = mags[j] * sign[i]
        acc[:] = new
    state = int(np.argmin(acc))
    out = np.empty(n, np.int64)
    for i in range(n - 1, -1, -1):
        out[i] = back_level[i, state]
        state = back_state[i, state]
    return out


def trellis_levels(coeffs: np.ndarray, step: float, offsets: np.ndarray, index: np.ndarray,
                   tables: LaplaceTables, gain: float, lam: float,
                   sign_bits: np.ndarray | None = None) -> np.ndarray:
    """Levels of one phase (``coeffs`` in coding order) minimising ``gain * error**2 +
    lam * bits`` over the dependent-quantisation trellis; ``index`` is each coefficient's
    table, ``sign_bits`` what its sign costs beyond 1 bit (context-coded signs)."""
    coeffs = np.asarray(coeffs, np.float64)
    if sign_bits is None:
        sign_bits = np.zeros(coeffs.size)
    return _trellis(np.abs(coeffs) / step, np.where(coeffs < 0, -1, 1).astype(np.int64),
                    np.asarray(index, np.int64), float(step), float(gain), float(lam),
                    np.asarray(offsets, np.float64), tables.radius.astype(np.int64),
                    tables.offsets.astype(np.int64), tables.code_length_table,
                    np.asarray(sign_bits, np.float64), TRANSITIONS)
