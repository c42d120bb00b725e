"""JPEG 2000 (ISO 15444-1) through OpenJPEG: the anchor every BD-rate in the benchmark refers to.

Raw J2K codestream (no JP2 boxes), one tile, 5 decomposition levels, the sample precision set to
the effective bit depth. Lossless is the reversible 5/3 wavelet; lossy is the irreversible 9/7
wavelet with OpenJPEG's fixed-quality rate allocation, so the knob is the target PSNR in dB
(OpenJPEG measures it against the peak ``2**precision - 1``, the same peak as our ``psnr``).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from medcodec.codecs.base import (
    CodingSpec,
    ImagecodecsCodec,
    Knob,
    Mode,
    decode_into,
)
from medcodec.errors import CorruptStreamError

#: OpenJPEG counts resolutions, not decomposition levels: 5 levels = 6 resolutions.
_RESOLUTIONS = 6
#: Decomposition levels of DICOM codestreams (JPEG 2000's usual), fewer for tiny frames.
J2K_LEVELS = 5


class Jpeg2000Codec(ImagecodecsCodec):
    library = "JPEG2K"
    name = "jpeg2000"
    description = "JPEG 2000 (OpenJPEG): lossless 5/3, lossy 9/7 with a PSNR target"
    modes: ClassVar = frozenset({Mode.LOSSLESS, Mode.LOSSY})
    min_bits = 1
    max_bits = 16
    knob = Knob("psnr_db", 20.0, 100.0, rate_increases=True, integer=False)
    dicom_method = "ISO_15444_1"
    dicom_syntaxes = ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91")

    def dicom_knob(self, bits: int) -> Knob:
        # OpenJPEG's fixed-quality target, PSNR in dB at peak 2**B - 1
        return Knob("psnr_db", 20.0, 6.02 * bits + 30.0, rate_increases=True, log_scale=False)

    def dicom_encode(self, frame: np.ndarray, bits: int, signed: bool,
                     setting: float | None = None) -> bytes:
        import imagecodecs

        levels = j2k_levels(*frame.shape, rpcl=False)
        return bytes(imagecodecs.jpeg2k_encode(
            np.ascontiguousarray(frame), level=setting, codecformat="J2K", bitspersample=bits,
            resolutions=levels + 1, reversible=setting is None, mct=False, numthreads=1))

    def encode(self, array: np.ndarray, bits: int, spec: CodingSpec) -> bytes:
        import imagecodecs

        data, psnr = self.prepared(array, bits, spec)
        return bytes(
            imagecodecs.jpeg2k_encode(
                data,
                level=psnr,
                codecformat="J2K",
                bitspersample=bits,
                resolutions=_RESOLUTIONS,
                reversible=psnr is None,
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


def j2k_levels(rows: int, cols: int, rpcl: bool) -> int:
    """5 levels (JPEG 2000's usual), fewer for tiny frames, more when RPCL needs a <= 64 base."""
    fit = max(0, math.floor(math.log2(max(1, min(rows, cols)))) - 1)
    levels = min(J2K_LEVELS, fit)
    if rpcl:
        levels = max(levels, math.ceil(math.log2(max(1, max(rows, cols)) / 64)))
    return max(0, min(levels, 32))


@dataclass(frozen=True)
class J2KInfo:
    """The parts of a JPEG 2000 / HTJ2K main header that DICOM cares about."""

    precision: int
    signed: bool
    components: int
    progression: str
    levels: int
    reversible: bool
    high_throughput: bool
    tlm: bool
    tile_parts: int
    rows: int
    cols: int


_PROGRESSIONS = ("LRCP", "RLCP", "RPCL", "PCRL", "CPRL")


def describe_j2k(stream: bytes) -> J2KInfo:
    """Parse SIZ, COD, TLM and SOT markers of a raw J2K codestream (a JP2 file is refused)."""
    if stream[:2] != b"\xff\x4f" or stream[2:4] != b"\xff\x51":
        kind = "a JP2 file" if stream[4:8] == b"jP  " else "not a J2K codestream"
        raise CorruptStreamError(f"JPEG 2000 frame is {kind} (DICOM needs a raw codestream)")
    pos, info = 2, {}
    tlm, tile_parts = False, 0
    while pos + 4 <= len(stream):
        marker, length = struct.unpack(">HH", stream[pos : pos + 4])
        body = stream[pos + 4 : pos + 2 + length]
        if marker == 0xFF51:
            xsiz, ysiz, xo, yo = struct.unpack(">IIII", body[2:18])
            count = struct.unpack(">H", body[34:36])[0]
            ssiz = body[36]
            info.update(rows=ysiz - yo, cols=xsiz - xo, components=count,
                        precision=(ssiz & 0x7F) + 1, signed=bool(ssiz & 0x80))
        elif marker == 0xFF52:
            info.update(progression=_PROGRESSIONS[body[1]] if body[1] < 5 else str(body[1]),
                        levels=body[5], high_throughput=bool(body[8] & 0x40),
                        reversible=body[9] == 1)
        elif marker == 0xFF55:
            tlm = True
        elif marker == 0xFF90:
            psot = struct.unpack(">I", body[2:6])[0]
            tile_parts += 1
            if psot == 0:
                break
            pos += psot
            continue
        elif marker == 0xFFD9:
            break
        pos += 2 + length
    return J2KInfo(tlm=tlm, tile_parts=tile_parts, **info)


def set_j2k_precision(stream: bytes, bits: int, signed: bool) -> bytes:
    """Rewrite the SIZ sample precision/sign of every component (see _encode_htj2k)."""
    out = bytearray(stream)
    count = struct.unpack(">H", out[40:42])[0]
    for index in range(count):
        out[42 + 3 * index] = (0x80 if signed else 0) | (bits - 1)
    return bytes(out)
