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
from medcodec.codecs.jpeg2000 import check_siz
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

    def encode(self, array: np.ndarray, bits: int, spec: CodingSpec) -> bytes:
        import imagecodecs

        self.check(bits, spec)
        dtype = unsigned_dtype(bits)
        data = np.ascontiguousarray(array, dtype=dtype)
        if spec.mode is Mode.LOSSY:
            self.knob_value(spec)
            precision = dtype.itemsize * 8
            step = float(spec.quality) / 2.0**precision
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
