"""Codec registry: every codec behind one interface, looked up by name.

Like pydicom's pixel plugins, each codec answers whether it is available, so the CLI and the
benchmark can list what works on this install instead of failing half-way.
"""

from __future__ import annotations

import os

from medcodec.codecs.avif import AvifCodec
from medcodec.codecs.base import Codec, CodingSpec, Knob, Mode
from medcodec.codecs.deflate import DeflateCodec
from medcodec.codecs.hevc import HevcCodec
from medcodec.codecs.htj2k import Htj2kCodec
from medcodec.codecs.jpeg12 import Jpeg12Codec
from medcodec.codecs.jpeg2000 import Jpeg2000Codec
from medcodec.codecs.jpegls import JpegLsCodec
from medcodec.codecs.jpegxl import JpegXlCodec, JpegXlEffort9Codec
from medcodec.codecs.learned import LearnedCodec, TransformCodec, WaveletLatentCodec
from medcodec.codecs.lerc import LercCodec
from medcodec.codecs.vvc import VvcCodec
from medcodec.errors import CodecUnavailableError

_REGISTRY: dict[str, type[Codec]] = {}

#: What ``--codec auto`` picks for lossless/near-lossless data of at most 16 bits.
DEFAULT_CODEC = "jpegls"
#: What ``--codec auto`` picks for lossy coding (any depth up to 16 bits).
DEFAULT_LOSSY_CODEC = "jpeg2000"


def register(codec: type[Codec]) -> type[Codec]:
    """Add a codec class to the registry (usable as a decorator)."""
    _REGISTRY[codec.name] = codec
    return codec


for _codec in (
    JpegLsCodec,
    DeflateCodec,
    Jpeg2000Codec,
    Htj2kCodec,
    JpegXlCodec,
    JpegXlEffort9Codec,
    AvifCodec,
    HevcCodec,
    VvcCodec,
    Jpeg12Codec,
    LercCodec,
    LearnedCodec,
    WaveletLatentCodec,
    TransformCodec,
):
    register(_codec)

if os.environ.get("MEDCODEC_BASELINES"):  # optional CompressAI baselines, bench only
    from medcodec.baselines.codec import register_all

    register_all()


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str) -> Codec:
    """An instance of the codec called ``name``; a clear error if unknown or unavailable."""
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise CodecUnavailableError(
            f"unknown codec {name!r}; known codecs: {', '.join(names())}"
        ) from None
    if not cls.available():
        hint = getattr(cls, "install_hint", "")
        raise CodecUnavailableError(
            f"codec {name!r} is not available: its library is missing on this install"
            + (f"; {hint}" if hint else "")
        )
    return cls()


def choose(name: str, bits: int, spec: CodingSpec) -> Codec:
    """Resolve ``auto`` to a concrete codec for this bit depth and mode, then check it fits."""
    if name == "auto":
        if spec.mode is Mode.LOSSY:
            name = DEFAULT_LOSSY_CODEC
        else:
            name = DEFAULT_CODEC if bits <= 16 else "deflate"
    codec = get(name)
    codec.check(bits, spec)
    return codec


def availability() -> list[tuple[str, bool, str, str]]:
    """(name, available, version, description) for every registered codec."""
    rows = []
    for name in names():
        cls = _REGISTRY[name]
        ok = cls.available()
        rows.append((name, ok, cls.version() if ok else "-", cls.description))
    return rows


__all__ = [
    "DEFAULT_CODEC",
    "Codec",
    "CodingSpec",
    "Knob",
    "Mode",
    "availability",
    "choose",
    "get",
    "names",
    "register",
]
