"""Integer frequency tables of discretised Laplace distributions, one per scale.

Built once (``LaplaceTables.build``) and then stored as integers (e.g. next to a model's weights
in safetensors): the decoder never recomputes them from floats. This is CompressAI's
"scale table" idea with the tables themselves, not their parameters, as the contract.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

#: Total of every table's frequencies; constriction codes with 24-bit precision, so 2**16
#: leaves room and keeps the smallest probability (1 / 2**16) cheap to represent.
TOTAL = 1 << 16
#: The table reaches this many scales into the tail; values beyond are escaped.
TAIL = 14.0


def _laplace_cdf(z: np.ndarray) -> np.ndarray:
    return np.where(z < 0, 0.5 * np.exp(np.minimum(z, 0)), 1.0 - 0.5 * np.exp(-np.maximum(z, 0)))


def _logistic_cdf(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


#: Distribution shapes a table set can be built for (the CDF of the unit-scale shape).
SHAPES = {"laplace": _laplace_cdf, "logistic": _logistic_cdf}


@dataclass(frozen=True)
class LaplaceTables:
    """``K`` tables; table ``k`` covers symbols ``-radius[k] .. radius[k]`` plus an escape.
    Laplace-shaped unless built with another ``shape`` (the name is historical)."""

    scales: np.ndarray  # float64 (K,), for choosing a table; never used by the decoder
    radius: np.ndarray  # int32 (K,)
    offsets: np.ndarray  # int64 (K + 1,), start of table k in ``freqs``
    freqs: np.ndarray  # int32, concatenated tables, each 2 * radius + 2 long (escape last)

    @classmethod
    def build(cls, min_scale: float = 0.08, max_scale: float = 2048.0, count: int = 96,
              max_radius: int = 1 << 15, shape: str = "laplace") -> LaplaceTables:
        """Tables for log-spaced scales of zero-mean symbols: the Laplace ``b`` parameter, or
        with ``shape="logistic"`` the logistic ``s`` (the same exponential tail, a rounder
        peak: CT noise residuals fit it better). The decoder reads only the stored integer
        tables, so the shape is the builder's choice alone."""
        if shape not in SHAPES:
            raise ValueError(f"unknown table shape {shape!r} (one of {', '.join(SHAPES)})")
        scales = np.exp(np.linspace(math.log(min_scale), math.log(max_scale), count))
        radius = np.minimum(np.ceil(scales * TAIL).astype(np.int64) + 1, max_radius)
        tables = []
        for b, r in zip(scales, radius, strict=True):
            edges = np.arange(-r, r + 2, dtype=np.float64) - 0.5  # symbol k covers [k-.5, k+.5)
            cdf = SHAPES[shape](edges / b)
            probs = np.diff(cdf)
            escape = max(cdf[0] + (1.0 - cdf[-1]), 0.0)
            tables.append(_quantise(np.append(probs, escape)))
        offsets = np.zeros(count + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(t) for t in tables])
        return cls(scales, radius.astype(np.int32), offsets,
                   np.concatenate(tables).astype(np.int32))

    def __len__(self) -> int:
        return len(self.scales)

    def table(self, index: int) -> np.ndarray:
        return self.freqs[self.offsets[index] : self.offsets[index + 1]]

    def index_for(self, scale: np.ndarray) -> np.ndarray:
        """The table index whose scale is nearest (in log) to each requested scale.

        Encoder-side helper: the indices it returns must be sent or derived exactly by the
        decoder, never recomputed there from floats.
        """
        logs = np.log(self.scales)
        mids = (logs[1:] + logs[:-1]) / 2
        return np.searchsorted(mids, np.log(np.maximum(scale, 1e-12))).astype(np.int32)

    def index_for_values(self, values: np.ndarray) -> int:
        """The one table for a block of symbols sent with a single index (encoder side): the
        scale nearest their mean magnitude, at least the smallest scale."""
        scale = float(np.mean(np.abs(values))) if values.size else 0.0
        return int(self.index_for(np.array([max(scale, float(self.scales[0]))]))[0])

    def code_lengths(self, symbols: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """Ideal bits of each symbol under its table (escapes: the escape symbol + 32 bits).

        Encoder-side, for choosing among coding options; never used to decode.
        """
        symbols = np.asarray(symbols, np.int64)
        indices = np.asarray(indices, np.int64)
        radius = self.radius[indices].astype(np.int64)
        escaped = np.abs(symbols) > radius
        codes = np.where(escaped, 2 * radius + 1, symbols + radius)
        return self.code_length_table[self.offsets[indices] + codes] + 32.0 * escaped

    @functools.cached_property
    def code_length_table(self) -> np.ndarray:
        """Code length in bits of every entry of ``freqs`` (computed once)."""
        return np.log2(TOTAL / self.freqs.astype(np.float64))

    def as_arrays(self, prefix: str = "entropy.") -> dict[str, np.ndarray]:
        """Arrays for a safetensors file."""
        return {f"{prefix}scales": self.scales, f"{prefix}radius": self.radius,
                f"{prefix}offsets": self.offsets, f"{prefix}freqs": self.freqs}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str = "entropy.") -> LaplaceTables:
        return cls(np.asarray(arrays[f"{prefix}scales"], np.float64),
                   np.asarray(arrays[f"{prefix}radius"], np.int32),
                   np.asarray(arrays[f"{prefix}offsets"], np.int64),
                   np.asarray(arrays[f"{prefix}freqs"], np.int32))


def _quantise(probs: np.ndarray) -> np.ndarray:
    """Integer frequencies summing to TOTAL, every symbol at least 1.

    Rounding leftovers are taken from (or given to) the largest entries, one unit each per
    round, which they barely notice.
    """
    if len(probs) > TOTAL:
        raise ValueError("a table cannot have more symbols than TOTAL")
    freqs = np.maximum(1, np.floor(probs / probs.sum() * TOTAL)).astype(np.int64)
    order = np.argsort(-freqs, kind="stable")
    excess = int(freqs.sum()) - TOTAL
    while excess > 0:
        movable = order[freqs[order] > 1][:excess]
        freqs[movable] -= 1
        excess -= len(movable)
    if excess < 0:
        freqs[order[: -excess]] += 1  # -excess < len(freqs): flooring lost < 1 per entry
    return freqs
