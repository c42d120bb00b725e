"""JPEG 2000 (ISO 15444-1) through OpenJPEG: the anchor every BD-rate in the benchmark refers to.

Raw J2K codestream (no JP2 boxes), one tile, 5 decomposition levels, the sample precision set to
the effective bit depth. Lossless is the reversible 5/3 wavelet; lossy is the irreversible 9/7
wavelet with OpenJPEG's fixed-quality rate allocation, so the knob is the target PSNR in dB
(OpenJPEG measures it against the peak ``2**precision - 1``, the same peak as our ``psnr``).
"""

from __future__ import annotations

import struct
from typing import ClassVar

import numpy as np

from medcodec.codecs.base import (
    CodingSpec,
    ImagecodecsCodec,
    Knob,
    Mode,
    decode_into,
    unsigned_dtype,
)
from medcodec.errors import CorruptStreamError

#: OpenJPEG counts resolutions, not decomposition levels: 5 levels = 6 resolutions.
_RESOLUTIONS = 6


class Jpeg2000Codec(ImagecodecsCodec):
    library = "JPEG2K"
    name = "jpeg2000"
    description = "JPEG 2000 (OpenJPEG): lossless 5/3, lossy 9/7 with a PSNR target"
    modes: ClassVar = frozenset({Mode.LOSSLESS, Mode.LOSSY})
    min_bits = 1
    max_bits = 16
    knob = Knob("psnr_db", 20.0, 100.0, rate_increases=True, integer=False)
    dicom_method = "ISO_15444_1"

    def encode(self, array: np.ndarray, bits: int, spec: CodingSpec) -> bytes:
        import imagecodecs

        self.check(bits, spec)
        data = np.ascontiguousarray(array, dtype=unsigned_dtype(bits))
        lossy = spec.mode is Mode.LOSSY
        if lossy:
            self.knob_value(spec)
        return bytes(
            imagecodecs.jpeg2k_encode(
                data,
                level=float(spec.quality) if lossy else None,
                codecformat="J2K",
                bitspersample=bits,
                resolutions=_RESOLUTIONS,
                reversible=not lossy,
                numthreads=1,
            )
        )

    def decode(self, data: bytes, shape: tuple[int, int], bits: int) -> np.ndarray:
        import imagecodecs

        check_siz(data, shape, "JPEG 2000")
        return decode_into(imagecodecs.jpeg2k_decode, data, shape, bits, "JPEG 2000",
                           numthreads=1)


def check_siz(data: bytes, shape: tuple[int, int], label: str) -> None:
    """Refuse a codestream whose SIZ marker is not the one-tile grey image we write.

    Checked before the library sees the stream: a damaged image/tile offset or tile size can
    make OpenJPEG or OpenJPH grind through a huge canvas for minutes before failing.
    """
    if len(data) < 47 or data[:4] != b"\xff\x4f\xff\x51":
        raise CorruptStreamError(f"{label} stream does not start with SOC and SIZ markers")
    xsiz, ysiz, xo, yo, xt, yt, xto, yto, csiz = struct.unpack_from(">8IH", data, 8)
    ssiz, xr, yr = data[42], data[43], data[44]
    rows, cols = shape
    if (ysiz, xsiz) != (rows, cols) or xo or yo or xto or yto:
        raise CorruptStreamError(
            f"{label} stream holds a {ysiz - yo}x{xsiz - xo} image at offset ({yo}, {xo}), "
            f"expected {rows}x{cols}"
        )
    if csiz != 1 or xt < xsiz or yt < ysiz or xr != 1 or yr != 1 or (ssiz & 0x7F) >= 16:
        raise CorruptStreamError(f"{label} stream is not a single-tile grey image")
