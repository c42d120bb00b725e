"""medcodec's own codec: the learned models behind the common codec interface.

* lossless and near-lossless: the pixel-estimation network
  (:mod:`medcodec.models.pixel_estimation`);
* lossy: the wavelet latent with cross-attention context and hyperprior
  (:mod:`medcodec.models.wavelet_latent`); the knob is the quantiser step in stored units.

Every stream starts with a kind tag and the first bytes of the SHA-256 of the weights that
made it, then the image size and depth it codes. Decoding looks the weights up by that id among
the shipped files, so older streams keep decoding after newer weights ship; unknown weights
or a stream for another size are clear errors, never silent garbage. Inside, the lossy stream
carries a CRC32 of its quantised coefficients and the container a CRC32 of every slice.
"""

from __future__ import annotations

import functools
import os
import struct
from typing import Any, ClassVar

import numpy as np

from medcodec import weights
from medcodec.codecs.base import Codec, CodingSpec, Knob, Mode, checked_shape, unsigned_dtype
from medcodec.errors import CodecUnavailableError, CorruptStreamError

#: Shipped models; MEDCODEC_PEN_WEIGHTS / MEDCODEC_LOSSY_WEIGHTS name other safetensors files.
DEFAULT_PEN_WEIGHTS = "pen-3x3-v1.safetensors"
DEFAULT_INTER_WEIGHTS = "pen-3x3-inter-v1.safetensors"
DEFAULT_LOSSY_WEIGHTS = "wavelet-v1.safetensors"
_KINDS = {b"MCP": ("pen", "pen-*.safetensors"), b"MCI": ("pen", "pen-*.safetensors"),
          b"MCW": ("wavelet", "wavelet-*.safetensors")}
_ID_BYTES = 4
_SHAPE = struct.Struct("<IIB")  # rows, cols, bits: a stream decodes only as what it was


def _env_or(variable: str, default: str) -> str:
    return os.environ.get(variable, default)


@functools.lru_cache(maxsize=8)
def load_model(kind: str, name: str) -> tuple[Any, bytes]:
    """(model, id) of a pixel-estimation ("pen") or lossy ("wavelet") weights file."""
    arrays, digest = weights.load(name)
    try:
        if kind == "pen":
            from medcodec.models.pixel_estimation import PixelEstimator

            model: Any = PixelEstimator.from_arrays(arrays)
        else:
            from medcodec.models.wavelet_latent import WaveletModel

            model = WaveletModel.from_arrays(arrays)
    except (KeyError, ValueError) as exc:
        raise CodecUnavailableError(f"{name} is not a medcodec {kind} model ({exc})") from None
    return model, bytes.fromhex(digest)[:_ID_BYTES]


class LearnedCodec(Codec):
    name = "medcodec"
    description = ("medcodec's learned codec: pixel-estimation network (lossless, "
                   "near-lossless), wavelet + cross-attention + hyperprior (lossy)")
    modes: ClassVar = frozenset({Mode.LOSSLESS, Mode.NEAR_LOSSLESS, Mode.LOSSY})
    min_bits = 1
    max_bits = 16
    knob = Knob("step", 0.5, 2048.0, rate_increases=False, integer=False)
    #: Lossless and near-lossless can use the previous decoded slice of a volume as context.
    uses_previous: ClassVar[bool] = True

    @classmethod
    def supports_previous(cls, spec: CodingSpec) -> bool:
        return spec.mode is not Mode.LOSSY and weights.weight_path(
            _env_or("MEDCODEC_INTER_WEIGHTS", DEFAULT_INTER_WEIGHTS)).is_file()

    @classmethod
    def available(cls) -> bool:
        try:
            import safetensors  # noqa: F401
        except ImportError:
            return False
        return weights.weight_path(DEFAULT_PEN_WEIGHTS).is_file()

    @classmethod
    def version(cls) -> str:
        parts = []
        for kind, variable, default in (("pen", "MEDCODEC_PEN_WEIGHTS", DEFAULT_PEN_WEIGHTS),
                                        ("pen-inter", "MEDCODEC_INTER_WEIGHTS",
                                         DEFAULT_INTER_WEIGHTS),
                                        ("wavelet", "MEDCODEC_LOSSY_WEIGHTS",
                                         DEFAULT_LOSSY_WEIGHTS)):
            try:  # the stream id (hash prefix), without parsing the weights
                digest = weights.sha256(_env_or(variable, default))[: 2 * _ID_BYTES]
                parts.append(f"{kind} {digest}")
            except CodecUnavailableError:
                parts.append(f"{kind} missing")
        return "models: " + ", ".join(parts)

    def check(self, bits: int, spec: CodingSpec) -> None:
        super().check(bits, spec)
        if (spec.mode is Mode.LOSSY and "MEDCODEC_LOSSY_WEIGHTS" not in os.environ
                and not weights.weight_path(DEFAULT_LOSSY_WEIGHTS).is_file()):
            raise CodecUnavailableError("the learned lossy model is not installed")

    def encode(self, array: np.ndarray, bits: int, spec: CodingSpec,
               previous: np.ndarray | None = None) -> bytes:
        """``previous``: the previous decoded slice, in this slice's value domain (volumes)."""
        self.check(bits, spec)
        array = np.asarray(array, dtype=np.int64)
        if previous is not None and spec.mode is not Mode.LOSSY:
            model, model_id = load_model(
                "pen", _env_or("MEDCODEC_INTER_WEIGHTS", DEFAULT_INTER_WEIGHTS))
            max_error = spec.max_error if spec.mode is Mode.NEAR_LOSSLESS else 0
            tag, body = b"MCI", model.encode(array, bits, max_error, previous=previous)
        elif spec.mode is Mode.LOSSY:
            step = self.knob_value(spec)
            model, model_id = load_model(
                "wavelet", _env_or("MEDCODEC_LOSSY_WEIGHTS", DEFAULT_LOSSY_WEIGHTS))
            tag, body = b"MCW", model.encode(array, bits, step)
        else:
            model, model_id = load_model(
                "pen", _env_or("MEDCODEC_PEN_WEIGHTS", DEFAULT_PEN_WEIGHTS))
            max_error = spec.max_error if spec.mode is Mode.NEAR_LOSSLESS else 0
            tag, body = b"MCP", model.encode(array, bits, max_error)
        return tag + model_id + _SHAPE.pack(*array.shape, bits) + body

    def decode(self, data: bytes, shape: tuple[int, int], bits: int,
               previous: np.ndarray | None = None) -> np.ndarray:
        if not 1 <= bits <= self.max_bits:
            raise CorruptStreamError(f"medcodec stream claims {bits} bits")
        head = 3 + _ID_BYTES + _SHAPE.size
        if len(data) < head or bytes(data[:3]) not in _KINDS:
            raise CorruptStreamError("not a medcodec learned-codec stream")
        tag = bytes(data[:3])
        kind, pattern = _KINDS[tag]
        if (tag == b"MCI") != (previous is not None):
            raise CorruptStreamError("medcodec stream and container disagree on whether this "
                                     "slice depends on the previous one")
        if _SHAPE.unpack_from(data, head - _SHAPE.size) != (*shape, bits):
            raise CorruptStreamError("medcodec stream was coded for another image size or depth")
        wanted = bytes(data[3 : 3 + _ID_BYTES])
        variable = {b"MCP": "MEDCODEC_PEN_WEIGHTS", b"MCI": "MEDCODEC_INTER_WEIGHTS",
                    b"MCW": "MEDCODEC_LOSSY_WEIGHTS"}[tag]
        extra = (os.environ[variable],) if variable in os.environ else ()
        name = weights.find_by_id(wanted, pattern, extra)
        if name is None:
            raise CorruptStreamError(
                f"this stream was made with {kind} model {wanted.hex()}, which this install "
                f"does not have: install the medcodec version that wrote it (or point "
                f"{variable} at its weights)")
        model, _ = load_model(kind, name)
        if getattr(model, "inter", False) != (tag == b"MCI"):
            raise CorruptStreamError("medcodec stream names a model of the wrong kind")
        try:
            out = model.decode(bytes(data[head:]), shape, bits, previous=previous) \
                if kind == "pen" else model.decode(bytes(data[head:]), shape, bits)
        except ValueError as exc:
            raise CorruptStreamError(f"medcodec stream does not decode: {exc}") from None
        return checked_shape(out.astype(unsigned_dtype(bits)), shape, self.name)
