"""Convolutions in exact integer arithmetic (the same contract as :mod:`medcodec.models.intnet`).

Every weight and activation is an integer held in float64; a convolution runs as an im2col
matrix product (BLAS) whose every partial sum stays below 2**53, so the result is the exact
integer whatever order, blocking or thread count the library uses. A power-of-two rescale and a
floor bring each output back to its fixed-point scale, and a clamp keeps the bound for any
input, even a forged stream. Written here because no maintained library offers exact integer
convolutions on the CPU (torch's quantised kernels round differently per backend).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from medcodec.models.intnet import ACT_LIMIT, MAX_FAN_IN, WEIGHT_LIMIT


@dataclass(frozen=True, eq=False)
class IntConv:
    """A 1x1 or 3x3 convolution (zero padding), optional stride 2 or nearest 2x upsampling
    before it, on channel-last (rows, cols, channels) integer maps."""

    weight: np.ndarray  # float64 integers (outputs, inputs * k * k)
    bias: np.ndarray  # float64 integers (outputs,)
    shift: int
    kernel: int
    stride: int = 1
    upsample: bool = False
    relu: bool = False

    def __post_init__(self) -> None:
        if self.weight.shape[1] > MAX_FAN_IN or np.abs(self.weight).max() >= WEIGHT_LIMIT:
            raise ValueError("integer convolution out of the exactness bounds")

    @property
    def outputs(self) -> int:
        return self.weight.shape[0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(rows, cols, inputs) integers -> (rows', cols', outputs) integers."""
        x = np.clip(np.asarray(x, np.float64), -ACT_LIMIT, ACT_LIMIT)
        if self.upsample:
            x = x.repeat(2, axis=0).repeat(2, axis=1)
        rows, cols, channels = x.shape
        if self.kernel == 1:
            out = x.reshape(-1, channels) @ self._taps[0]
            out = out.reshape(rows, cols, self.outputs)
        elif self.stride == 1:
            out = self._same(x)
        else:
            out = self._strided(x)
        out += self._bias
        np.floor(out, out=out)
        np.clip(out, 0.0 if self.relu else -ACT_LIMIT, ACT_LIMIT, out=out)
        return out

    def _same(self, x: np.ndarray) -> np.ndarray:
        """3x3, stride 1: nine matrix products on contiguous shifted slices of the padded
        map, flattened with two spare columns per row (dropped at the end): no im2col copy."""
        rows, cols, channels = x.shape
        wide = cols + 2
        padded = np.zeros((rows + 3, wide, channels))
        padded[1 : rows + 1, 1 : cols + 1] = x
        flat = padded.reshape(-1, channels)
        out = np.empty((rows * wide, self.outputs))
        part = np.empty_like(out)
        for k in range(9):
            start = (k // 3) * wide + k % 3
            target = out if k == 0 else part
            np.matmul(flat[start : start + rows * wide], self._taps[k], out=target)
            if k:
                out += part
        return out.reshape(rows, wide, self.outputs)[:, :cols]

    def _strided(self, x: np.ndarray) -> np.ndarray:
        """3x3, stride 2: im2col of the needed windows only."""
        padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
        windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(0, 1))
        windows = windows[::2, ::2]  # (rows', cols', C, 3, 3)
        out_rows, out_cols = windows.shape[:2]
        matrix = windows.reshape(out_rows * out_cols, -1)  # (C, 3, 3) order = the weights'
        return (matrix @ self._flat_t).reshape(out_rows, out_cols, self.outputs)

    @functools.cached_property
    def _flat_t(self) -> np.ndarray:
        return np.ascontiguousarray(self.weight.T) * 0.5**self.shift  # exact: a power of 2

    @functools.cached_property
    def _taps(self) -> list[np.ndarray]:
        """Per kernel position k = 3 * row + col, the (inputs, outputs) weights, prescaled."""
        w = self.weight.reshape(self.outputs, -1, self.kernel * self.kernel) * 0.5**self.shift
        return [np.ascontiguousarray(w[:, :, k].T) for k in range(self.kernel * self.kernel)]

    @functools.cached_property
    def _bias(self) -> np.ndarray:
        return self.bias * 0.5**self.shift

    @classmethod
    def from_float(cls, weight: np.ndarray, bias: np.ndarray, input_scale: float | np.ndarray,
                   out_bits: int, *, stride: int = 1, upsample: bool = False,
                   relu: bool = False) -> IntConv:
        """Quantise a float convolution ``weight`` (outputs, inputs, k, k).

        ``input_scale``: the float input per integer input unit (scalar or per input channel).
        The integer output carries ``out_bits`` fractional bits of the float output.
        """
        w = np.asarray(weight, np.float64)
        w = w * np.broadcast_to(np.asarray(input_scale, np.float64), (w.shape[1],))[
            None, :, None, None]
        flat = w.reshape(w.shape[0], -1)
        peak = max(float(np.abs(flat).max()), 1e-12)
        w_frac = int(np.floor(np.log2((WEIGHT_LIMIT - 1) / 2 / peak)))
        w_int = np.round(flat * 2.0**w_frac)
        b_int = np.round(np.asarray(bias, np.float64) * 2.0**w_frac)
        shift = w_frac - out_bits
        if shift < 0:  # never scale up: lower the weights' precision instead
            w_int = np.round(w_int * 2.0**shift)
            b_int = np.round(b_int * 2.0**shift)
            shift = 0
        return cls(w_int, b_int, shift, int(w.shape[-1]), stride, upsample, relu)

    def as_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}.weight": self.weight.astype(np.int32),
                f"{prefix}.bias": self.bias.astype(np.int64),
                f"{prefix}.meta": np.array([self.shift, self.kernel, self.stride,
                                            int(self.upsample), int(self.relu)], np.int32)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str) -> IntConv:
        shift, kernel, stride, upsample, relu = (int(v) for v in arrays[f"{prefix}.meta"])
        if kernel not in (1, 3) or stride not in (1, 2):
            raise ValueError(f"{prefix}: unsupported convolution geometry")
        return cls(np.asarray(arrays[f"{prefix}.weight"], np.float64),
                   np.asarray(arrays[f"{prefix}.bias"], np.float64), shift, kernel, stride,
                   bool(upsample), bool(relu))
