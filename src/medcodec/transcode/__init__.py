"""Standard compressed DICOM out: DICOM files, series folders or .mdcx containers -> DICOM.

A learned codec has no DICOM transfer syntax, so a PACS or viewer only ever sees what this module
writes: HTJ2K (lossless, lossless RPCL, lossy), JPEG-LS (lossless, near-lossless), JPEG 2000
(lossless, lossy) or JPEG XL (lossless, lossy)::

    DICOM / .mdcx --read--> stored pixels --encode frame by frame--> codestreams
        --encapsulate (one fragment per frame, basic or extended offset table)--> dataset bytes
        --parse and decode again (pydicom + plugins; imagecodecs for JPEG XL)--> compare --> write

Each codestream states exactly what DICOM states (PS3.5 8.2: "consistent with the compressed data
stream"): sample precision = Bits Stored, JPEG 2000 signedness = Pixel Representation, raw J2K
codestreams (never a JP2 file), bare JPEG XL codestreams (13-16-bit lossless JPEG XL needs
codestream level 10, which libjxl signals in its ISOBMFF container; those frames keep it). JPEG-LS
and JPEG XL have no signed samples: signed data travel as their two's-complement bit pattern in
Bits Stored bits, as PS3.5 prescribes for JPEG-LS. The HTJ2K RPCL syntax gets RPCL progression,
enough decomposition levels for a <= 64 pixel base resolution, and TLM markers with one tile-part
per resolution, so a viewer can show a thumbnail first.

The codecs of the registry code min-shifted, unsigned slices for our own container; DICOM needs
the stored values themselves, so each standard codec also has a ``dicom_encode`` (and the
knob ``--ratio`` searches, with :func:`medcodec.codecs.rate.fit_budget`). This package is the
planning (``files``), the per-dataset checks (``dataset``) and the encapsulation (``frames``).

Nothing is written before the output has been decoded again and compared with the input:
lossless must be identical, near-lossless within D. Lossy outputs get PS3.3 C.7.6.1.1.5
bookkeeping (Lossy Image Compression "01", ratio and method appended, a new SOP Instance UID,
Image Type DERIVED, the original referenced as "Uncompressed predecessor"); lossless outputs keep
every tag and UID. Mammography is never coded lossy unless explicitly allowed.
"""

from __future__ import annotations

from medcodec.codecs.jpeg2000 import J2KInfo
from medcodec.transcode.dataset import is_mammography, transcode_dataset
from medcodec.transcode.files import plan, transcode
from medcodec.transcode.frames import describe_j2k
from medcodec.transcode.options import (
    HTJ2K_LOSSLESS,
    HTJ2K_LOSSLESS_RPCL,
    TARGETS,
    TranscodeError,
    TranscodeOptions,
    TranscodeResult,
)

__all__ = ["HTJ2K_LOSSLESS", "HTJ2K_LOSSLESS_RPCL", "TARGETS", "J2KInfo", "TranscodeError",
           "TranscodeOptions", "TranscodeResult", "describe_j2k", "is_mammography", "plan",
           "transcode", "transcode_dataset"]
