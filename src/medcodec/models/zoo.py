"""The model zoo: one table from a learned stream's kind tag to its model and weights.

Every learned stream starts with a 3-byte kind tag. The table says which model kind decodes it,
which environment variable names other weights for it (e.g. your own from ``medcodec train``),
which file ships by default and which shipped files can hold older versions. The codec, the
container and ``medcodec info`` read the same table, so a new model is one new row.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast

import numpy as np

from medcodec import weights
from medcodec.errors import CodecUnavailableError

if TYPE_CHECKING:
    from medcodec.models.causal.model import CausalEstimator
    from medcodec.models.pixel_estimation import PixelEstimator
    from medcodec.models.transform.model import TransformModel
    from medcodec.models.wavelet_latent import WaveletModel

#: Bytes of the weights' SHA-256 a stream carries to name the model that made it.
ID_BYTES = 4


@dataclass(frozen=True)
class ModelEntry:
    """One row of the zoo."""

    tag: bytes  # the stream's kind tag
    kind: str  # "causal" / "pen" (pixel estimation) or "wavelet" (lossy)
    variable: str  # environment variable naming other weights
    default: str  # the shipped weights file
    pattern: str  # shipped files that may hold older versions of this model
    summary: str  # one line for `medcodec info --codecs`

    def weights_name(self) -> str:
        """The weights an encoder uses now: the environment's, else the shipped default."""
        return os.environ.get(self.variable, self.default)

    def extra_weights(self) -> tuple[str, ...]:
        """Weights a decoder also looks at, besides the shipped ones."""
        return (os.environ[self.variable],) if self.variable in os.environ else ()


PEN = ModelEntry(b"MCP", "pen", "MEDCODEC_PEN_WEIGHTS", "pen-3x3-v1.safetensors",
                 "pen-*.safetensors", "pen")
PEN_INTER = ModelEntry(b"MCI", "pen", "MEDCODEC_INTER_WEIGHTS", "pen-3x3-inter-v1.safetensors",
                       "pen-*.safetensors", "pen-inter")
#: The raster-scan pixel estimator (online least squares + network): lossless and
#: near-lossless slices, alone or with the previous slice of a volume.
CAUSAL = ModelEntry(b"MCL", "causal", "MEDCODEC_CAUSAL_WEIGHTS", "causal-v5.safetensors",
                    "causal-v*.safetensors", "causal")
CAUSAL_INTER = ModelEntry(b"MCV", "causal", "MEDCODEC_CAUSAL_INTER_WEIGHTS",
                          "causal-inter-v2.safetensors", "causal-inter-v*.safetensors",
                          "causal-inter")
WAVELET = ModelEntry(b"MCW", "wavelet", "MEDCODEC_LOSSY_WEIGHTS", "wavelet-v1.safetensors",
                     "wavelet-*.safetensors", "wavelet")
#: The paper-literal lossy codec: DWT -> CAL -> learned analysis -> hyperprior latent with
#: checkerboard context -> learned synthesis -> inverse DWT -> 3x3 filter.
TRANSFORM = ModelEntry(b"MCT", "transform", "MEDCODEC_TRANSFORM_WEIGHTS",
                       "transform-v1.safetensors", "transform-v*.safetensors", "transform")
ZOO: dict[bytes, ModelEntry] = {entry.tag: entry for entry in
                                 (CAUSAL, CAUSAL_INTER, PEN, PEN_INTER, WAVELET, TRANSFORM)}
#: The lossy models by name (``MEDCODEC_LOSSY_MODEL``, the ``medcodec-<name>`` codecs).
LOSSY_MODELS: dict[str, ModelEntry] = {"wavelet": WAVELET, "transform": TRANSFORM}


class LosslessModel(Protocol):
    """What the codec needs of a pixel-estimation model."""

    inter: bool

    def encode(self, array: np.ndarray, bits: int, max_error: int = 0,
               previous: np.ndarray | None = None) -> bytes: ...

    def decode(self, data: bytes, shape: tuple[int, int], bits: int,
               previous: np.ndarray | None = None) -> np.ndarray: ...


class LossyModel(Protocol):
    """What the codec needs of a lossy model."""

    def encode(self, array: np.ndarray, bits: int, step: float) -> bytes: ...

    def decode(self, data: bytes, shape: tuple[int, int], bits: int) -> np.ndarray: ...


@functools.lru_cache(maxsize=8)
def load_model(kind: str, name: str
               ) -> tuple[CausalEstimator | PixelEstimator | WaveletModel | TransformModel,
                          bytes]:
    """(model, stream id) of a pixel-estimation ("causal", "pen") or lossy ("wavelet",
    "transform") weights file."""
    arrays, digest = weights.load(name)
    try:
        if kind == "causal":
            from medcodec.models.causal.model import CausalEstimator

            model: CausalEstimator | PixelEstimator | WaveletModel | TransformModel = (
                CausalEstimator.from_arrays(arrays))
        elif kind == "pen":
            from medcodec.models.pixel_estimation import PixelEstimator

            model = PixelEstimator.from_arrays(arrays)
        elif kind == "transform":
            from medcodec.models.transform.model import TransformModel

            model = TransformModel.from_arrays(arrays)
        else:
            from medcodec.models.wavelet_latent import WaveletModel

            model = WaveletModel.from_arrays(arrays)
    except (KeyError, ValueError) as exc:
        raise CodecUnavailableError(f"{name} is not a medcodec {kind} model ({exc})") from None
    return model, bytes.fromhex(digest)[:ID_BYTES]


def lossless_model(entry: ModelEntry, name: str | None = None) -> tuple[LosslessModel, bytes]:
    """(model, stream id) of a pixel-estimation zoo entry (its current weights by default)."""
    model, model_id = load_model(entry.kind, name or entry.weights_name())
    return cast(LosslessModel, model), model_id


def lossy_model(entry: ModelEntry, name: str | None = None) -> tuple[LossyModel, bytes]:
    """(model, stream id) of a lossy zoo entry (its current weights by default)."""
    model, model_id = load_model(entry.kind, name or entry.weights_name())
    return cast(LossyModel, model), model_id


@functools.lru_cache(maxsize=8)
def is_installed(name: str) -> bool:
    """Whether a shipped weights file is present (asked once per process, not per slice)."""
    return weights.weight_path(name).is_file()
