"""High-Throughput JPEG 2000 (ISO 15444-15) through OpenJPH: JPEG 2000's fast block coder.

imagecodecs' OpenJPH binding takes no sample precision: 8-bit arrays are coded at precision 8,
anything wider at precision 16 (lossless still exact, at a small cost on 12-bit CT). It has no
PSNR target either, only the 9/7 quantisation step relative to the full range of that precision,
so our knob is the step in *stored units* (``step / 2**precision`` is passed on): the same knob
value means the same quantisation at every bit depth.
"""

from __future__ import annotations

import sys
from typing import Any, ClassVar

import numpy as np

from medcodec.codecs.base import (
    CodingSpec,
    ImagecodecsCodec,
    Knob,
    Mode,
    checked_shape,
    unsigned_dtype,
)
from medcodec.codecs.jpeg2000 import check_siz, j2k_levels, set_j2k_precision
from medcodec.errors import CorruptStreamError

#: 5 decomposition levels, as for JPEG 2000 (OpenJPH's default too).
_LEVELS = 5


class Htj2kCodec(ImagecodecsCodec):
    library = "HTJ2K"
    name = "htj2k"
    description = "HTJ2K (OpenJPH): lossless 5/3, lossy 9/7 with a quantisation step"
    modes: ClassVar = frozenset({Mode.LOSSLESS, Mode.LOSSY})
    min_bits = 1
    max_bits = 16
    knob = Knob("qstep", 0.1, 2048.0, rate_increases=False, integer=False)
    dicom_method = "ISO_15444_15"
    #: lossless RPCL (.202: progressive display) and lossy (.203); plain lossless is .201
    dicom_syntaxes = ("1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203")

    def dicom_knob(self, bits: int) -> Knob:
        # the 9/7 quantisation step relative to the full range
        return Knob("relative_step", 2.0**-20, 0.25, rate_increases=False, log_scale=True)

    def dicom_encode(self, frame: np.ndarray, bits: int, signed: bool,
                     setting: float | None = None) -> bytes:
        """OpenJPH through imagecodecs, at the precision DICOM states.

        imagecodecs only codes 8- or 16-bit precision. Lossless: unsigned samples are offset so that
        OpenJPH's level shift by 2**(P-1) equals the level shift by 2**(B-1) of a B-bit stream (the
        5/3 wavelet then codes identical coefficients) and SIZ is rewritten to B bits. Lossy: the
        9/7 step sizes scale with 2**P, so samples are multiplied by 2**(P-B) and SIZ says B bits.
        The decoded output is compared with the input afterwards in every case.
        """
        import imagecodecs

        carrier = frame.dtype.itemsize * 8
        levels = j2k_levels(*frame.shape, rpcl=True)
        data = frame.astype(np.int64)
        if bits < carrier:
            if setting is not None:
                data = data << (carrier - bits)
            elif not signed:
                data = data + (1 << (carrier - 1)) - (1 << (bits - 1))
        data = np.ascontiguousarray(data.astype(frame.dtype))
        if setting is None:
            stream = imagecodecs.htj2k_encode(data, resolutions=levels + 1, reversible=True,
                                              tlm=True, tilepart=1)
        else:
            stream = imagecodecs.htj2k_encode(data, float(setting), resolutions=levels + 1,
                                              reversible=False, tlm=True, tilepart=1)
        stream = bytes(stream)
        return set_j2k_precision(stream, bits, signed) if bits < carrier else stream

    def encode(self, array: np.ndarray, bits: int, spec: CodingSpec) -> bytes:
        import imagecodecs

        data, qstep = self.prepared(array, bits, spec)
        if qstep is not None:
            precision = data.dtype.itemsize * 8
            step = qstep / 2.0**precision
            return bytes(
                imagecodecs.htj2k_encode(data, step, resolutions=_LEVELS + 1, reversible=False)
            )
        return bytes(imagecodecs.htj2k_encode(data, resolutions=_LEVELS + 1, reversible=True))

    def decode(self, data: bytes, shape: tuple[int, int], bits: int) -> np.ndarray:
        import imagecodecs

        check_siz(data, shape, "HTJ2K")
        out = np.empty(shape, dtype=unsigned_dtype(bits))
        # imagecodecs 2026.3.6 swallows OpenJPH's errors while it copies the decoded lines out
        # (they reach only sys.unraisablehook) and returns a half-decoded image: catch them there.
        # The hook is process-wide, so concurrent decodes in threads may see each other's errors.
        swallowed: list[Any] = []
        previous = sys.unraisablehook
        sys.unraisablehook = swallowed.append
        try:
            decoded = imagecodecs.htj2k_decode(data, out=out)
        except Exception as exc:  # the library raises its own error types
            raise CorruptStreamError(f"HTJ2K stream does not decode: {exc}") from None
        finally:
            sys.unraisablehook = previous
        if swallowed:
            raise CorruptStreamError(f"HTJ2K stream does not decode: {swallowed[0].exc_value}")
        decoded = checked_shape(decoded, shape, self.name)
        # Coded at precision 8/16: a lossy decode may overshoot the image's own range.
        return np.minimum(decoded, (1 << bits) - 1, out=decoded)
