"""JPEG (ISO 10918-1) DCT through libjpeg-turbo at 12 bits: the lossy codec most PACS still use.

Images of at most 8 bits are coded as baseline 8-bit JPEG, deeper ones (up to 12) as extended
12-bit JPEG (DICOM's JPEG Extended, process 4). Lossy only; the knob is the IJG quality 1..100.
Huffman tables are optimised, as a careful encoder would.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from medcodec.codecs.base import (
    CodingSpec,
    ImagecodecsCodec,
    Knob,
    Mode,
    decode_into,
)


class Jpeg12Codec(ImagecodecsCodec):
    library = "JPEG8"
    name = "jpeg12"
    description = "JPEG DCT (libjpeg-turbo): 8-bit baseline or 12-bit extended, quality 1-100"
    modes: ClassVar = frozenset({Mode.LOSSY})
    min_bits = 1
    max_bits = 12
    knob = Knob("quality", 1, 100, rate_increases=True, integer=True)
    dicom_method = "ISO_10918_1"
    max_side = 65535  # 16-bit frame dimensions

    @classmethod
    def available(cls) -> bool:
        try:
            import imagecodecs
        except ImportError:
            return False
        return bool(imagecodecs.JPEG8.available) and bool(
            getattr(imagecodecs.JPEG8, "all_precisions", False)
        )

    def encode(self, array: np.ndarray, bits: int, spec: CodingSpec) -> bytes:
        import imagecodecs

        data, setting = self.prepared(array, bits, spec)
        quality = round(setting or 0)
        return bytes(
            imagecodecs.jpeg8_encode(
                data, level=quality, bitspersample=8 if bits <= 8 else 12, optimize=True
            )
        )

    def decode(self, data: bytes, shape: tuple[int, int], bits: int) -> np.ndarray:
        import imagecodecs

        return decode_into(imagecodecs.jpeg8_decode, data, shape, bits, "JPEG")
