"""The CompressAI baselines behind medcodec's codec interface (bench only, never the container).

Stream: ``b"CAI1"``, the quality (1 byte), the latent grid of ``z`` (2 x uint16), then each of
CompressAI's strings (``y`` then ``z``) with a uint32 length. The decoder is told the image
shape and bit depth, as for every codec of the bench.
"""

from __future__ import annotations

import functools
import os
import struct
from typing import ClassVar

import numpy as np

from medcodec.baselines import (
    ARCHS,
    ENV,
    LAMBDAS,
    compressai_available,
    weight_path,
    weights_dir,
)
from medcodec.codecs.base import Codec, CodingSpec, Knob, Mode, unsigned_dtype
from medcodec.errors import CorruptStreamError

_MAGIC = b"CAI1"
_HEAD = struct.Struct("<4sBHH")
_PAD = 64  # every architecture downsamples y by 16 and z by 64


@functools.lru_cache(maxsize=16)
def _model(arch: str, quality: int):
    import torch

    from medcodec.baselines import models

    threads = int(os.environ.get("MEDCODEC_THREADS", "2"))
    torch.set_num_threads(threads)
    return models.load(arch, weight_path(arch, quality))


class BaselineCodec(Codec):
    arch: ClassVar[str]
    modes = frozenset({Mode.LOSSY})
    knob = Knob("quality", 1, len(LAMBDAS), rate_increases=True, integer=True)
    #: The bench codes every rung of the ladder instead of searching a rate.
    ladder: ClassVar[tuple[int, ...]] = tuple(range(1, len(LAMBDAS) + 1))

    @classmethod
    def available(cls) -> bool:
        root = weights_dir()
        return (compressai_available() and root is not None
                and all(weight_path(cls.arch, q, root).is_file() for q in cls.ladder))

    @classmethod
    def version(cls) -> str:
        import compressai

        return f"compressai {compressai.__version__}"

    def encode(self, array: np.ndarray, bits: int, spec: CodingSpec) -> bytes:
        import torch

        self.check(bits, spec)
        quality = int(self.knob_value(spec))
        model = _model(self.arch, quality)
        h, w = array.shape
        ph, pw = -(-h // _PAD) * _PAD, -(-w // _PAD) * _PAD
        x = np.pad(np.asarray(array, np.float32) / float((1 << bits) - 1),
                   ((0, ph - h), (0, pw - w)), mode="edge")
        with torch.no_grad():
            out = model.compress(torch.from_numpy(x)[None, None])
        zh, zw = (int(v) for v in out["shape"])
        parts = [_HEAD.pack(_MAGIC, quality, zh, zw)]
        for group in out["strings"]:
            [s] = group
            parts.append(struct.pack("<I", len(s)) + s)
        return b"".join(parts)

    def decode(self, data: bytes, shape: tuple[int, int], bits: int) -> np.ndarray:
        import torch

        try:
            magic, quality, zh, zw = _HEAD.unpack_from(data)
            if magic != _MAGIC or quality not in self.ladder:
                raise ValueError("bad header")
            strings, pos = [], _HEAD.size
            for _ in range(2):
                (n,) = struct.unpack_from("<I", data, pos)
                strings.append([data[pos + 4:pos + 4 + n]])
                pos += 4 + n
        except (struct.error, ValueError) as exc:
            raise CorruptStreamError(f"{self.name} stream is damaged: {exc}") from None
        model = _model(self.arch, quality)
        with torch.no_grad():
            x_hat = model.decompress(strings, (zh, zw))["x_hat"][0, 0].numpy()
        top = (1 << bits) - 1
        pixels = np.clip(np.round(x_hat[: shape[0], : shape[1]] * top), 0, top)
        return pixels.astype(unsigned_dtype(bits))


def _make(arch: str) -> type[BaselineCodec]:
    cls_name = ARCHS[arch][0]
    return type(f"{cls_name}Baseline", (BaselineCodec,), {
        "name": arch, "arch": arch,
        "description": f"CompressAI {arch} baseline (bench only; weights from {ENV})"})


CODECS = [_make(a) for a in ARCHS]


def register_all() -> None:
    """Add the baselines to the codec registry (done when MEDCODEC_BASELINES is set)."""
    from medcodec import codecs

    for cls in CODECS:
        codecs.register(cls)
