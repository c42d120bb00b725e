"""medcodec's own codec: the learned models behind the common codec interface.

Lossless and near-lossless coding run the pixel-estimation network
(:mod:`medcodec.models.pixel_estimation`). Every stream starts with the first bytes of the
SHA-256 of the weights that made it, so decoding with other weights is a clear error, never
silent garbage; the container's per-slice pixel CRC32 catches anything else.
"""

from __future__ import annotations

import functools
import os
import struct
from typing import ClassVar

import numpy as np

from medcodec import weights
from medcodec.codecs.base import Codec, CodingSpec, Mode, checked_shape, unsigned_dtype
from medcodec.errors import CodecUnavailableError, CorruptStreamError

#: The shipped pixel-estimation model; MEDCODEC_PEN_WEIGHTS names another safetensors file.
DEFAULT_PEN_WEIGHTS = "pen-3x3-v1.safetensors"
_MAGIC = b"MCL"
_ID_BYTES = 4
_SHAPE = struct.Struct("<IIB")  # rows, cols, bits: a stream decodes only as what it was


@functools.lru_cache(maxsize=4)
def pixel_estimator(name: str):  # -> PixelEstimator, imported lazily
    from medcodec.models.pixel_estimation import PixelEstimator

    arrays, digest = weights.load(name)
    try:
        model = PixelEstimator.from_arrays(arrays)
    except (KeyError, ValueError) as exc:
        raise CodecUnavailableError(
            f"{name} is not a medcodec pixel-estimation model ({exc})") from None
    return model, bytes.fromhex(digest)[:_ID_BYTES]


class LearnedCodec(Codec):
    name = "medcodec"
    description = "medcodec's learned codec: pixel-estimation network (lossless, near-lossless)"
    modes: ClassVar = frozenset({Mode.LOSSLESS, Mode.NEAR_LOSSLESS})
    min_bits = 1
    max_bits = 16

    @classmethod
    def available(cls) -> bool:
        try:
            import safetensors  # noqa: F401
        except ImportError:
            return False
        return weights.weight_path(DEFAULT_PEN_WEIGHTS).is_file()

    @classmethod
    def version(cls) -> str:
        _, model_id = pixel_estimator(cls._pen_name())
        return f"pixel-estimation model {model_id.hex()}"

    @staticmethod
    def _pen_name() -> str:
        return os.environ.get("MEDCODEC_PEN_WEIGHTS", DEFAULT_PEN_WEIGHTS)

    def encode(self, array: np.ndarray, bits: int, spec: CodingSpec) -> bytes:
        self.check(bits, spec)
        model, model_id = pixel_estimator(self._pen_name())
        max_error = spec.max_error if spec.mode is Mode.NEAR_LOSSLESS else 0
        body = model.encode(np.asarray(array, dtype=np.int64), bits, max_error)
        return _MAGIC + model_id + _SHAPE.pack(*array.shape, bits) + body

    def decode(self, data: bytes, shape: tuple[int, int], bits: int) -> np.ndarray:
        if not 1 <= bits <= self.max_bits:
            raise CorruptStreamError(f"medcodec stream claims {bits} bits")
        head = len(_MAGIC) + _ID_BYTES + _SHAPE.size
        if len(data) < head or data[: len(_MAGIC)] != _MAGIC:
            raise CorruptStreamError("not a medcodec learned-codec stream")
        if _SHAPE.unpack_from(data, head - _SHAPE.size) != (*shape, bits):
            raise CorruptStreamError("medcodec stream was coded for another image size or depth")
        wanted = data[len(_MAGIC) : len(_MAGIC) + _ID_BYTES]
        name = weights.find_by_id(wanted, "pen-*.safetensors", (self._pen_name(),))
        if name is None:
            raise CorruptStreamError(
                f"this stream was made with pixel-estimation model {wanted.hex()}, which this "
                "install does not have: install the medcodec version that wrote it (or point "
                "MEDCODEC_PEN_WEIGHTS at its weights)")
        model, _ = pixel_estimator(name)
        out = model.decode(data[head:], shape, bits)
        return checked_shape(out.astype(unsigned_dtype(bits)), shape, self.name)
