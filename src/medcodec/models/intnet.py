"""Small networks evaluated in exact integer arithmetic, so that encoder and decoder agree bit
for bit on every machine, process and thread count.

Learned codecs desynchronise when the decoder's floating-point entropy parameters differ from the
encoder's in the last bit (CompressAI issues 279/309). Here every weight and activation is an
integer; matrix products run as float64 BLAS calls whose every partial sum stays below 2**53, so
each result is the exact integer whatever order the library sums in. Between layers a right shift
(floor division by a power of two, exact in float64) brings activations back to their fixed-point
scale, and they are clamped so the bound holds for any input, even a forged stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medcodec.models.threads import parallel_map

#: Activations are clamped to this magnitude; with weights below 2**15 and at most 2**10
#: inputs per unit every sum stays below 2**(20 + 15 + 10) < 2**53: exact in float64.
ACT_LIMIT = float(1 << 20)
WEIGHT_LIMIT = 1 << 15
MAX_FAN_IN = 1 << 10
#: Rows per block: a block's activations stay in the CPU cache.
_BLOCK = 4096


@dataclass(frozen=True)
class IntLayer:
    weight: np.ndarray  # float64 holding integers, (inputs, outputs)
    bias: np.ndarray  # float64 holding integers, (outputs,)
    shift: int  # the sum is floor-divided by 2**shift
    relu: bool


class IntMLP:
    """A multi-layer perceptron on integer features with integer outputs (fixed point)."""

    def __init__(self, layers: list[IntLayer]) -> None:
        for layer in layers:
            if layer.weight.shape[0] > MAX_FAN_IN or np.abs(layer.weight).max() >= WEIGHT_LIMIT:
                raise ValueError("integer layer out of the exactness bounds")
        self.layers = layers
        # weights and bias pre-scaled by 2**-shift: exact (a power of two), one pass fewer
        self._scaled = [(layer.weight * 0.5**layer.shift, layer.bias * 0.5**layer.shift,
                         0.0 if layer.relu else -ACT_LIMIT) for layer in layers]

    def __call__(self, features: np.ndarray) -> np.ndarray:
        features = np.asarray(features, dtype=np.float64)
        if features.size and (features.max() > ACT_LIMIT or features.min() < -ACT_LIMIT):
            features = np.clip(features, -ACT_LIMIT, ACT_LIMIT)  # only a forged input gets here
        out = np.empty((features.shape[0], self.layers[-1].weight.shape[1]), np.float64)

        def run(start: int) -> None:  # blocks that stay in cache, spread over the cores
            out[start : start + _BLOCK] = self._block(features[start : start + _BLOCK])

        parallel_map(run, range(0, features.shape[0], _BLOCK))
        return out

    def _block(self, x: np.ndarray) -> np.ndarray:
        for weight, bias, low in self._scaled:
            x = x @ weight  # == (x @ W) * 2**-shift exactly: every partial sum is exact
            x += bias
            np.floor(x, out=x)
            np.clip(x, low, ACT_LIMIT, out=x)
        return x

    @classmethod
    def from_float(cls, weights: list[np.ndarray], biases: list[np.ndarray],
                   input_scale: np.ndarray, act_bits: int = 8) -> IntMLP:
        """Quantise a float ReLU MLP (``y = W x + b``, weights as (in, out)).

        ``input_scale`` maps the integer features to the float net's inputs (x_float = x_int *
        scale). Hidden activations and outputs carry ``act_bits`` fractional bits.
        """
        layers = []
        in_frac = None  # integer inputs: the scale is folded into the first weights
        for k, (w, b) in enumerate(zip(weights, biases, strict=True)):
            w = np.asarray(w, np.float64)
            if k == 0:
                w = w * np.asarray(input_scale, np.float64)[:, None]
            peak = max(float(np.abs(w).max()), 1e-12)
            w_frac = int(np.floor(np.log2((WEIGHT_LIMIT - 1) / 2 / peak)))
            w_int = np.round(w * 2.0**w_frac)
            # the sum carries 2**-(w_frac + the input's fraction bits); we want 2**-act_bits
            total_frac = w_frac + (0 if k == 0 else in_frac)
            shift = total_frac - act_bits
            b_int = np.round(np.asarray(b, np.float64) * 2.0**total_frac)
            if shift < 0:  # never scale up: lower the weights' precision instead
                w_int = np.round(w_int * 2.0**shift)
                b_int = np.round(b_int * 2.0**shift)
                shift = 0
            layers.append(IntLayer(w_int, b_int, shift, relu=k < len(weights) - 1))
            in_frac = act_bits
        return cls(layers)

    def as_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for k, layer in enumerate(self.layers):
            out[f"{prefix}{k}.weight"] = np.ascontiguousarray(layer.weight, dtype=np.int32)
            out[f"{prefix}{k}.bias"] = layer.bias.astype(np.int64)
            out[f"{prefix}{k}.meta"] = np.array([layer.shift, int(layer.relu)], np.int32)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str) -> IntMLP:
        layers = []
        k = 0
        while f"{prefix}{k}.weight" in arrays:
            shift, relu = (int(v) for v in arrays[f"{prefix}{k}.meta"])
            layers.append(IntLayer(arrays[f"{prefix}{k}.weight"].astype(np.float64),
                                   arrays[f"{prefix}{k}.bias"].astype(np.float64),
                                   shift, bool(relu)))
            k += 1
        if not layers:
            raise KeyError(f"no layers under {prefix!r}")
        return cls(layers)
