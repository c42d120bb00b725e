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
from collections.abc import Mapping
from pathlib import Path
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
_VARIABLES = {b"MCP": "MEDCODEC_PEN_WEIGHTS", b"MCI": "MEDCODEC_INTER_WEIGHTS",
              b"MCW": "MEDCODEC_LOSSY_WEIGHTS"}
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
    uses_weights: ClassVar[bool] = True

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

    @staticmethod
    def _stream_kind(data: bytes) -> tuple[bytes, bytes]:
        """(kind tag, weights id) of a stream, or a clear error."""
        if len(data) < 3 + _ID_BYTES + _SHAPE.size or bytes(data[:3]) not in _KINDS:
            raise CorruptStreamError("not a medcodec learned-codec stream")
        return bytes(data[:3]), bytes(data[3 : 3 + _ID_BYTES])

    def weights_of(self, data: bytes) -> tuple[str, str]:
        """(kind tag, full SHA-256) of the weights file a decoder uses for this stream."""
        tag, wanted = self._stream_kind(data)
        variable = _VARIABLES[tag]
        extra = (os.environ[variable],) if variable in os.environ else ()
        name = weights.find_by_id(wanted, _KINDS[tag][1], extra)
        if name is None:
            raise CodecUnavailableError(f"no weights file with id {wanted.hex()} is installed")
        return tag.decode("ascii"), weights.sha256(name)

    def decode(self, data: bytes, shape: tuple[int, int], bits: int,
               previous: np.ndarray | None = None,
               weights_sha256: Mapping[str, str] | None = None) -> np.ndarray:
        """``weights_sha256``: the container's full digests by stream kind (when it has them);
        the weights used must then be exactly those."""
        if not 1 <= bits <= self.max_bits:
            raise CorruptStreamError(f"medcodec stream claims {bits} bits")
        head = 3 + _ID_BYTES + _SHAPE.size
        tag, wanted = self._stream_kind(data)
        kind, pattern = _KINDS[tag]
        if (tag == b"MCI") != (previous is not None):
            raise CorruptStreamError("medcodec stream and container disagree on whether this "
                                     "slice depends on the previous one")
        if _SHAPE.unpack_from(data, head - _SHAPE.size) != (*shape, bits):
            raise CorruptStreamError("medcodec stream was coded for another image size or depth")
        variable = _VARIABLES[tag]
        extra = (os.environ[variable],) if variable in os.environ else ()
        if weights_sha256 is not None:
            name = self._exact_weights(tag, wanted, weights_sha256, extra)
        else:
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

    @staticmethod
    def _exact_weights(tag: bytes, wanted: bytes, digests: Mapping[str, str],
                       extra: tuple[str, ...]) -> str:
        """The weights file whose SHA-256 is the one the container names for this kind."""
        kind, pattern = _KINDS[tag]
        expected = digests.get(tag.decode("ascii"))
        if expected is None:
            raise CorruptStreamError(f"the header's codec.weights_sha256 names no weights for "
                                     f"{tag.decode('ascii')} streams")
        if not expected.startswith(wanted.hex()):
            raise CorruptStreamError(
                f"the header names {kind} weights {expected[:16]}..., but the stream was made "
                f"with weights {wanted.hex()}... (the file was edited or damaged)")
        name = weights.find_by_id(bytes.fromhex(expected), pattern, extra)
        if name is None:
            near = weights.find_by_id(wanted, pattern, extra)
            found = (f"this install's {Path(near).name} has SHA-256 {weights.sha256(near)}"
                     if near is not None else "this install has no weights with that id")
            raise CodecUnavailableError(
                f"this stream needs {kind} weights with SHA-256 {expected}, but {found}: "
                f"install the medcodec version that wrote it (or point {_VARIABLES[tag]} at "
                "its weights)")
        return name
