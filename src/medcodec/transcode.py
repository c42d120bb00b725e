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

The medcodec codec registry codes min-shifted, unsigned slices for our own container; DICOM
needs the stored values themselves, so the encoders here call the same libraries (imagecodecs:
OpenJPEG, OpenJPH, libjxl; pyjpegls: CharLS) with DICOM's rules instead.

Nothing is written before the output has been decoded again and compared with the input:
lossless must be identical, near-lossless within D. Lossy outputs get PS3.3 C.7.6.1.1.5
bookkeeping (Lossy Image Compression "01", ratio and method appended, a new SOP Instance UID,
Image Type DERIVED, the original referenced as "Uncompressed predecessor"); lossless outputs keep
every tag and UID. Mammography is never coded lossy unless explicitly allowed.
"""

from __future__ import annotations

import io
import math
import os
import struct
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medcodec._fs import atomic_path, child_path
from medcodec.errors import InputError, MedcodecError, OutputError, UnsupportedError

#: --to name -> (lossless UID, lossy/near-lossless UID, Lossy Image Compression Method term).
TARGETS: dict[str, tuple[str, str, str]] = {
    "htj2k": ("1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203", "ISO_15444_15"),
    "jpegls": ("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81", "ISO_14495_1"),
    "jpeg2000": ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "ISO_15444_1"),
    "jpegxl": ("1.2.840.10008.1.2.4.110", "1.2.840.10008.1.2.4.112", "ISO_18181_1"),
}
#: HTJ2K Lossless without the RPCL constraints (what --no-rpcl writes).
HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"
HTJ2K_LOSSLESS_RPCL = "1.2.840.10008.1.2.4.202"

#: SOP Classes of mammography and breast tomosynthesis (never lossy without --allow-lossy-mg).
_MAMMOGRAPHY_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.1.2", "1.2.840.10008.5.1.4.1.1.1.2.1",
    "1.2.840.10008.5.1.4.1.1.13.1.3", "1.2.840.10008.5.1.4.1.1.13.1.4",
    "1.2.840.10008.5.1.4.1.1.13.1.5",
})
_GROUP_LENGTH = 0x0000
_EXTENDED_OFFSET_TAGS = (0x7FE00001, 0x7FE00002)
#: Basic Offset Table entries are 32-bit: past this the extended offset table is required.
_BOT_LIMIT = 2**32 - 1
_J2K_LEVELS = 5
#: Bisection steps of the --ratio search: 2**-14 of the knob range is finer than any codec cares.
_RATIO_STEPS = 14


class TranscodeError(MedcodecError):
    """An output failed its check (decoded pixels differ) or the request cannot be met."""


@dataclass(frozen=True)
class TranscodeOptions:
    """What to write: the codec family and lossless, near-lossless (max error) or a ratio."""

    target: str
    max_error: int | None = None
    ratio: float | None = None
    allow_lossy_mg: bool = False
    #: HTJ2K lossless: write the RPCL transfer syntax (.202) rather than plain (.201).
    rpcl: bool = True
    #: "auto" (basic, extended when offsets pass 4 GiB), "basic" or "extended".
    offset_table: str = "auto"

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise MedcodecError(f"unknown target {self.target!r}; choose one of "
                                f"{', '.join(TARGETS)}")
        if self.max_error is not None and self.ratio is not None:
            raise MedcodecError("give --max-error or --ratio, not both")
        if self.max_error is not None:
            if self.max_error < 1:
                raise MedcodecError("--max-error must be at least 1 (0 is --lossless)")
            if self.target != "jpegls":
                raise MedcodecError(
                    "--max-error needs --to jpegls: JPEG-LS near-lossless is the only standard "
                    "DICOM codec that bounds every pixel's error (use --ratio for the others)")
        if self.ratio is not None and not self.ratio > 1.0:
            raise MedcodecError("--ratio must be larger than 1")
        if self.offset_table not in ("auto", "basic", "extended"):
            raise MedcodecError("offset table must be auto, basic or extended")

    @property
    def mode(self) -> str:
        if self.max_error is not None:
            return "near-lossless"
        return "lossy" if self.ratio is not None else "lossless"

    @property
    def lossy(self) -> bool:
        return self.mode != "lossless"

    @property
    def transfer_syntax(self) -> str:
        lossless_uid, lossy_uid, _ = TARGETS[self.target]
        if self.lossy:
            return lossy_uid
        if self.target == "htj2k" and not self.rpcl:
            return HTJ2K_LOSSLESS
        return lossless_uid

    @property
    def method(self) -> str:
        return TARGETS[self.target][2]


@dataclass
class TranscodeResult:
    """What one output holds and how close it is to its input (measured on the decoded file)."""

    source: str
    output: str | None
    transfer_syntax: str
    frames: int
    rows: int
    cols: int
    bits_stored: int
    signed: bool
    raw_bytes: int
    coded_bytes: int
    max_error: int
    psnr_db: float | None
    lossy: bool
    seconds: float
    decoder: str
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.raw_bytes / max(1, self.coded_bytes)

    def summary(self) -> str:
        kind = f"max error {self.max_error}" + (
            f", PSNR {self.psnr_db:.2f} dB" if self.psnr_db is not None and self.lossy else "")
        return (f"{self.source} -> {self.output or '<memory>'}: {self.frames} frame(s) "
                f"{self.rows}x{self.cols} {'signed' if self.signed else 'unsigned'} "
                f"{self.bits_stored}-bit, TS {self.transfer_syntax}, {self.coded_bytes} bytes, "
                f"ratio {self.ratio:.2f}:1, {kind} (checked by {self.decoder})")


# --------------------------------------------------------------------------------------------
# Codestream facts (used to check our own output, and by the tests)


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
        raise TranscodeError(f"JPEG 2000 frame is {kind} (DICOM needs a raw codestream)")
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


def _set_j2k_precision(stream: bytes, bits: int, signed: bool) -> bytes:
    """Rewrite the SIZ sample precision/sign of every component (see _encode_htj2k)."""
    out = bytearray(stream)
    count = struct.unpack(">H", out[40:42])[0]
    for index in range(count):
        out[42 + 3 * index] = (0x80 if signed else 0) | (bits - 1)
    return bytes(out)


# --------------------------------------------------------------------------------------------
# Frame encoders: stored values in, one DICOM-conformant codestream out


def _levels(rows: int, cols: int, rpcl: bool) -> int:
    """5 levels (JPEG 2000's usual), fewer for tiny frames, more when RPCL needs a <= 64 base."""
    fit = max(0, math.floor(math.log2(max(1, min(rows, cols)))) - 1)
    levels = min(_J2K_LEVELS, fit)
    if rpcl:
        levels = max(levels, math.ceil(math.log2(max(1, max(rows, cols)) / 64)))
    return max(0, min(levels, 32))


def _bit_pattern(frame: np.ndarray, bits: int) -> np.ndarray:
    """Two's-complement bit pattern in ``bits`` bits, unsigned (JPEG-LS / JPEG XL carriers)."""
    mask = (1 << bits) - 1
    return (frame.astype(np.int64) & mask).astype(np.uint8 if bits <= 8 else np.uint16)


def _encode_jpeg2000(frame: np.ndarray, bits: int, signed: bool, psnr: float | None) -> bytes:
    import imagecodecs

    levels = _levels(*frame.shape, rpcl=False)
    return bytes(imagecodecs.jpeg2k_encode(
        np.ascontiguousarray(frame), level=psnr, codecformat="J2K", bitspersample=bits,
        resolutions=levels + 1, reversible=psnr is None, mct=False, numthreads=1))


def _encode_htj2k(frame: np.ndarray, bits: int, signed: bool, qstep: float | None) -> bytes:
    """OpenJPH through imagecodecs, at the precision DICOM states.

    imagecodecs only codes 8- or 16-bit precision. Lossless: unsigned samples are offset so that
    OpenJPH's level shift by 2**(P-1) equals the level shift by 2**(B-1) of a B-bit stream (the
    5/3 wavelet then codes identical coefficients) and SIZ is rewritten to B bits. Lossy: the
    9/7 step sizes scale with 2**P, so samples are multiplied by 2**(P-B) and SIZ says B bits.
    The decoded output is compared with the input afterwards in every case.
    """
    import imagecodecs

    carrier = frame.dtype.itemsize * 8
    levels = _levels(*frame.shape, rpcl=True)
    data = frame.astype(np.int64)
    if bits < carrier:
        if qstep is not None:
            data = data << (carrier - bits)
        elif not signed:
            data = data + (1 << (carrier - 1)) - (1 << (bits - 1))
    data = np.ascontiguousarray(data.astype(frame.dtype))
    if qstep is None:
        stream = imagecodecs.htj2k_encode(data, resolutions=levels + 1, reversible=True,
                                          tlm=True, tilepart=1)
    else:
        stream = imagecodecs.htj2k_encode(data, float(qstep), resolutions=levels + 1,
                                          reversible=False, tlm=True, tilepart=1)
    stream = bytes(stream)
    return _set_j2k_precision(stream, bits, signed) if bits < carrier else stream


def _encode_jpegls(frame: np.ndarray, bits: int, signed: bool, near: float | None) -> bytes:
    from medcodec import codecs
    from medcodec.codecs.base import CodingSpec, Mode

    codec = codecs.get("jpegls")
    near_int = int(near or 0)
    spec = (CodingSpec(Mode.NEAR_LOSSLESS, near_int) if near_int else CodingSpec(Mode.LOSSLESS))
    return codec.encode(_bit_pattern(frame, bits), bits, spec)


def _encode_jpegxl(frame: np.ndarray, bits: int, signed: bool, distance: float | None) -> bytes:
    import imagecodecs

    from medcodec.codecs.jpegxl import EFFORT

    options: dict[str, Any] = ({"lossless": True} if distance is None
                               else {"lossless": False, "distance": float(distance)})
    return bytes(imagecodecs.jpegxl_encode(
        _bit_pattern(frame, bits), effort=EFFORT, bitspersample=bits, usecontainer=False,
        numthreads=1, **options))


_ENCODERS: dict[str, Callable[[np.ndarray, int, bool, float | None], bytes]] = {
    "htj2k": _encode_htj2k,
    "jpegls": _encode_jpegls,
    "jpeg2000": _encode_jpeg2000,
    "jpegxl": _encode_jpegxl,
}


@dataclass(frozen=True)
class _Knob:
    """A lossy knob mapped to u in [0, 1], where u = 1 gives the most bytes."""

    low: float
    high: float
    more_bytes_when_high: bool
    log: bool = False
    integer: bool = False

    def value(self, u: float) -> float:
        u = u if self.more_bytes_when_high else 1.0 - u
        if self.log:
            value = math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        else:
            value = self.low + u * (self.high - self.low)
        return float(round(value)) if self.integer else value


def _knob(target: str, bits: int) -> _Knob:
    if target == "jpegls":  # NEAR; CharLS allows up to min(255, MAXVAL / 2)
        return _Knob(1, max(1, min(255, (1 << (bits - 1)) - 1)), False, integer=True)
    if target == "jpeg2000":  # OpenJPEG fixed-quality target, PSNR in dB at peak 2**B - 1
        return _Knob(20.0, 6.02 * bits + 30.0, True)
    if target == "htj2k":  # 9/7 quantisation step relative to the full range
        return _Knob(2.0**-20, 0.25, False, log=True)
    return _Knob(0.05, 25.0, False, log=True)  # JPEG XL Butteraugli distance


def _encode_for_ratio(target: str, frame: np.ndarray, bits: int, signed: bool,
                      budget: int) -> tuple[bytes, float]:
    """Most-bytes knob setting whose codestream fits ``budget`` bytes (bisection).

    Returns the codestream and the knob value used (for JPEG-LS: NEAR, the error bound).
    """
    encode = _ENCODERS[target]
    knob = _knob(target, bits)
    top = encode(frame, bits, signed, knob.value(1.0))
    if len(top) <= budget:
        return top, knob.value(1.0)
    low, high = 0.0, 1.0
    best = encode(frame, bits, signed, knob.value(0.0)), knob.value(0.0)  # fewest bytes
    for _ in range(_RATIO_STEPS):
        mid = (low + high) / 2
        data = encode(frame, bits, signed, knob.value(mid))
        if len(data) <= budget:
            best, low = (data, knob.value(mid)), mid
        else:
            high = mid
        if knob.integer and knob.value(low) == knob.value(high):
            break
    return best


# --------------------------------------------------------------------------------------------
# Datasets


def _pydicom() -> Any:
    import pydicom

    return pydicom


def is_mammography(ds: Any) -> bool:
    """MG modality or a mammography / breast tomosynthesis SOP Class."""
    return (str(ds.get("Modality", "")).strip().upper() == "MG"
            or str(ds.get("SOPClassUID", "")) in _MAMMOGRAPHY_CLASSES)


def _source_pixels(ds: Any, source: str) -> np.ndarray:
    """Stored values of every frame, shape (frames, rows, cols), checked against DICOM's rules."""
    from medcodec.io.dicom import _ensure_transfer_syntax

    if "PixelData" not in ds:
        raise InputError(f"{source}: no (integer) pixel data to transcode")
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise UnsupportedError(f"{source}: {photometric or '?'} with {samples} sample(s) per "
                               "pixel is not supported (grayscale MONOCHROME1/2 only)")
    allocated = int(ds.get("BitsAllocated", 0) or 0)
    bits = int(ds.get("BitsStored", allocated) or allocated)
    if allocated not in (8, 16) or not 2 <= bits <= 16:
        raise UnsupportedError(f"{source}: Bits Allocated {allocated} / Bits Stored {bits} is "
                               "not supported (8 or 16 allocated, 2-16 stored)")
    _ensure_transfer_syntax(ds)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pixels = np.asarray(ds.pixel_array)
    except Exception as exc:
        raise InputError(f"{source}: pixel data cannot be decoded ({exc})") from None
    rows, cols = int(ds.Rows), int(ds.Columns)
    pixels = pixels.reshape(-1, rows, cols)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    low, high = ((-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1))
    stored = _native_values(ds, pixels.size, allocated, signed)
    if stored is not None:  # pydicom masks native data to Bits Stored: look at the bytes too
        pixels_range = (int(stored.min()), int(stored.max())) if stored.size else (0, 0)
    else:
        pixels_range = (int(pixels.min()), int(pixels.max())) if pixels.size else (0, 0)
    if pixels_range[0] < low or pixels_range[1] > high:
        raise UnsupportedError(
            f"{source}: stored values {pixels_range[0]}..{pixels_range[1]} do not fit Bits "
            f"Stored {bits} ({'signed' if signed else 'unsigned'}): bits above it are set "
            "(overlays, or a wrong header), which a lossless transcode would drop")
    dtype = np.dtype(f"{'i' if signed else 'u'}{allocated // 8}")
    return pixels.astype(dtype, copy=False)


def _native_values(ds: Any, count: int, allocated: int, signed: bool) -> np.ndarray | None:
    """The stored words of native (uncompressed) pixel data as written, None if encapsulated."""
    uid = ds.file_meta.TransferSyntaxUID
    if uid.is_compressed:
        return None
    order = "<" if uid.is_little_endian else ">"
    dtype = np.dtype(f"{order}{'i' if signed else 'u'}{allocated // 8}")
    data = ds.PixelData
    if len(data) < count * dtype.itemsize:
        return None  # truncated: pydicom's own checks report it
    return np.frombuffer(data, dtype=dtype, count=count)


def _encapsulate(ds: Any, frames: list[bytes], offset_table: str) -> None:
    from pydicom.encaps import encapsulate, encapsulate_extended

    for tag in _EXTENDED_OFFSET_TAGS:
        if tag in ds:
            del ds[tag]
    total = sum(len(f) + (len(f) & 1) + 8 for f in frames)
    extended = offset_table == "extended" or (offset_table == "auto" and total > _BOT_LIMIT)
    if extended:
        data, offsets, lengths = encapsulate_extended(frames)
        ds.PixelData = data
        ds.ExtendedOffsetTable = offsets
        ds["ExtendedOffsetTable"].VR = "OV"
        ds.ExtendedOffsetTableLengths = lengths
        ds["ExtendedOffsetTableLengths"].VR = "OV"
    else:
        ds.PixelData = encapsulate(frames, has_bot=True)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True


_JPEG_XL_UIDS = {
    "1.2.840.10008.1.2.4.110": ("JPEG XL Lossless", "JPEGXLLossless"),
    "1.2.840.10008.1.2.4.111": ("JPEG XL JPEG Recompression", "JPEGXLJPEGRecompression"),
    "1.2.840.10008.1.2.4.112": ("JPEG XL", "JPEGXL"),
}


def _register_jpeg_xl_uids() -> None:
    """Teach pydicom < 3.1 the JPEG XL transfer syntaxes (PS3.6, 2024), so it can write them."""
    from pydicom import _uid_dict

    for uid, (name, keyword) in _JPEG_XL_UIDS.items():
        _uid_dict.UID_dictionary.setdefault(uid, (name, "Transfer Syntax", "", "", keyword))


def _decode_dicom(blob: bytes, frames: int, rows: int, cols: int, bits: int, signed: bool,
                  target: str) -> tuple[np.ndarray, str]:
    """Decode the written bytes the way a reader would; JPEG XL frames through imagecodecs."""
    pydicom = _pydicom()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(io.BytesIO(blob))
        if target != "jpegxl":
            try:
                return np.asarray(ds.pixel_array).reshape(frames, rows, cols), "pydicom"
            except Exception as exc:
                raise TranscodeError(f"the output does not decode in pydicom ({exc}); "
                                     "nothing was written") from None
    import imagecodecs
    from pydicom.encaps import generate_frames

    out = np.empty((frames, rows, cols), dtype=np.int64)
    for index, frame in enumerate(generate_frames(ds.PixelData, number_of_frames=frames)):
        decoded = np.asarray(imagecodecs.jpegxl_decode(frame)).reshape(rows, cols)
        values = decoded.astype(np.int64)
        if signed:
            values = np.where(values >= (1 << (bits - 1)), values - (1 << bits), values)
        out[index] = values
    return out, f"imagecodecs {imagecodecs.__version__} (libjxl)"


def _check_codestreams(frames: list[bytes], options: TranscodeOptions, bits: int,
                       signed: bool) -> None:
    """DICOM's codestream rules, checked on what we actually produced."""
    if options.target == "jpegxl":
        for data in frames:
            if data[:2] != b"\xff\x0a" and not (data[4:8] == b"JXL " and b"jxll" in data[:64]):
                raise TranscodeError("JPEG XL frame is neither a bare codestream nor a level-10 "
                                     "container")
    if options.target not in ("htj2k", "jpeg2000"):
        return
    for data in frames:
        info = describe_j2k(data)
        if info.precision != bits or info.signed != signed:
            raise TranscodeError(
                f"codestream says {info.precision}-bit {'signed' if info.signed else 'unsigned'}"
                f", DICOM says {bits}-bit {'signed' if signed else 'unsigned'}")
        if options.transfer_syntax == HTJ2K_LOSSLESS_RPCL:
            base = max(info.rows, info.cols) / 2**info.levels
            if info.progression != "RPCL" or not info.tlm or base > 64:
                raise TranscodeError("HTJ2K RPCL output lacks RPCL order, TLM or a <= 64 base")


def _reference_predecessor(ds: Any) -> None:
    """Source Image Sequence item pointing at the uncompressed predecessor (DCM 121320)."""
    pydicom = _pydicom()
    if "SOPInstanceUID" not in ds or "SOPClassUID" not in ds:
        return
    if "SharedFunctionalGroupsSequence" in ds or "PerFrameFunctionalGroupsSequence" in ds:
        return  # enhanced IODs keep derivation per frame, not in the top-level sequence
    item = pydicom.Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    code = pydicom.Dataset()
    code.CodeValue, code.CodingSchemeDesignator = "121320", "DCM"
    code.CodeMeaning = "Uncompressed predecessor"
    item.PurposeOfReferenceCodeSequence = pydicom.Sequence([code])
    existing = list(ds.get("SourceImageSequence", []))
    ds.SourceImageSequence = pydicom.Sequence([*existing, item])


def transcode_dataset(ds: Any, options: TranscodeOptions,
                      source: str = "<dataset>") -> tuple[bytes, TranscodeResult]:
    """Code ``ds`` (modified in place) into Part 10 bytes; raise unless the check passes."""
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

    from medcodec._version import __version__
    from medcodec.io.dicom import _mark_lossy
    from medcodec.io.dicom_header import drop_structural_tags, explicit_vr, is_implicit

    start = time.perf_counter()
    if options.lossy and is_mammography(ds) and not options.allow_lossy_mg:
        raise TranscodeError(f"{source}: mammography is never coded lossy here "
                             "(use --lossless, or --allow-lossy-mg if you really mean it)")
    notes = drop_structural_tags(ds)
    if is_implicit(ds):  # the output is explicit VR: give every element a VR, bytes unchanged
        notes += explicit_vr(ds)
    pixels = _source_pixels(ds, source)
    n_frames, rows, cols = pixels.shape
    bits = int(ds.get("BitsStored", ds.BitsAllocated))
    signed = pixels.dtype.kind == "i"
    if options.lossy and signed and options.target == "jpegxl":
        raise UnsupportedError(
            f"{source}: JPEG XL has no signed samples; lossy coding of the bit pattern would "
            "wrap around zero (use --to htj2k or jpeg2000 for signed data, or --lossless)")
    if options.target == "jpegxl":
        _register_jpeg_xl_uids()
    encode = _ENCODERS[options.target]
    raw_frame = rows * cols * int(ds.BitsAllocated) // 8
    coded: list[bytes] = []
    bound = options.max_error or 0  # JPEG-LS bounds the error in every mode: NEAR
    for frame in pixels:
        if options.ratio is not None:
            budget = int(raw_frame / options.ratio)
            data, knob = _encode_for_ratio(options.target, frame, bits, signed, budget)
            coded.append(data)
            bound = max(bound, int(knob)) if options.target == "jpegls" else bound
        else:
            coded.append(encode(frame, bits, signed, options.max_error))
    _check_codestreams(coded, options, bits, signed)
    coded_bytes = sum(len(c) for c in coded)
    raw_bytes = raw_frame * n_frames

    for tag in [t for t in list(ds.keys()) if t.element == _GROUP_LENGTH]:
        del ds[tag]  # group lengths describe the old encoding (and are retired)
    _encapsulate(ds, coded, options.offset_table)
    if "NumberOfFrames" in ds:
        ds.NumberOfFrames = n_frames
    ds.file_meta.TransferSyntaxUID = options.transfer_syntax
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta.ImplementationVersionName = f"MEDCODEC_{__version__}"[:16]
    if options.lossy:
        _reference_predecessor(ds)
        detail = (f"near-lossless max error {options.max_error}" if options.max_error
                  else f"target ratio {options.ratio:g}:1")
        _mark_lossy(ds, {"ratio": raw_bytes / max(1, coded_bytes),
                         "dicom_method": options.method,
                         "description": f"{options.method} {detail} (medcodec transcode)"})
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _pydicom().dcmwrite(buffer, ds, enforce_file_format=True)
    blob = buffer.getvalue()

    decoded, decoder = _decode_dicom(blob, n_frames, rows, cols, bits, signed, options.target)
    diff = np.abs(decoded.astype(np.int64) - pixels.astype(np.int64))
    max_error = int(diff.max(initial=0))
    if (not options.ratio or options.target == "jpegls") and max_error > bound:
        hint = (" (signed values at the ends of their range wrap around in JPEG-LS's unsigned "
                "bit pattern: use --lossless, or --to htj2k/jpeg2000 --ratio)"
                if signed and options.target == "jpegls" else "")
        raise TranscodeError(
            f"{source}: {options.target} output decodes with max error {max_error} > {bound} "
            f"({options.mode}); nothing was written{hint}")
    if options.ratio and max_error >= 1 << (bits - 1):
        raise TranscodeError(  # no lossy setting errs by half the range: a decoder wrapped
            f"{source}: {options.target} output decodes with max error {max_error}, half the "
            f"{bits}-bit range (sign or overflow wrap-around); nothing was written")
    psnr = None
    if options.lossy:
        mse = float(np.mean(diff.astype(np.float64) ** 2))
        peak = (1 << bits) - 1
        psnr = math.inf if mse == 0 else 10 * math.log10(peak * peak / mse)
    result = TranscodeResult(
        source=source, output=None, transfer_syntax=options.transfer_syntax, frames=n_frames,
        rows=rows, cols=cols, bits_stored=bits, signed=signed, raw_bytes=raw_bytes,
        coded_bytes=coded_bytes, max_error=max_error, psnr_db=psnr, lossy=options.lossy,
        seconds=time.perf_counter() - start, decoder=decoder, notes=notes)
    if options.ratio and result.ratio < options.ratio * 0.98:
        result.notes.append(f"ratio {options.ratio:g}:1 not reached even at the coarsest "
                            f"setting ({result.ratio:.2f}:1)")
    return blob, result


# --------------------------------------------------------------------------------------------
# Files and folders


@dataclass(frozen=True)
class _Job:
    source: Path
    kind: str  # "dicom" or "container"
    dest: Path
    #: True when dest is a file even for a container (single-file mode).
    dest_is_file: bool


def _read_dataset(path: Path) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _pydicom().dcmread(path, force=True)
    except Exception as exc:
        raise InputError(f"{path}: not a readable DICOM file ({exc})") from None


def _kind(path: Path) -> str | None:
    from medcodec.container import looks_like_container
    from medcodec.io.dicom import looks_like_dicom

    if looks_like_container(path):
        return "container"
    return "dicom" if looks_like_dicom(path) else None


def plan(inputs: Iterable[str | os.PathLike[str]], output: str | os.PathLike[str]) -> list[_Job]:
    """Every (source, destination) pair; folders are mirrored under ``output``."""
    inputs = [Path(p) for p in inputs]
    output = Path(output)
    single = (len(inputs) == 1 and inputs[0].is_file() and not output.is_dir()
              and not str(output).endswith(os.sep))
    jobs: list[_Job] = []
    for item in inputs:
        if item.is_dir():
            found = 0
            for root, dirs, files in os.walk(item):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    path = Path(root) / name
                    kind = None if name.startswith(".") else _kind(path)
                    if kind is None:
                        continue
                    found += 1
                    rel = path.relative_to(item)
                    dest = output / (rel.with_suffix("") if kind == "container" else rel)
                    jobs.append(_Job(path, kind, dest, False))
            if not found:
                raise InputError(f"{item}: no DICOM files or .mdcx containers in this folder")
        elif item.is_file():
            kind = _kind(item)
            if kind is None:
                raise InputError(f"{item}: neither DICOM nor a .mdcx container")
            if single:
                jobs.append(_Job(item, kind, output, True))
            else:
                name = item.name[: -len(".mdcx")] if kind == "container" and \
                    item.name.endswith(".mdcx") else item.name
                jobs.append(_Job(item, kind, output / name, False))
        else:
            raise InputError(f"{item}: no such file or folder")
    seen: dict[Path, Path] = {}
    for job in jobs:
        if job.dest in seen:
            raise OutputError(f"{job.dest}: both {seen[job.dest]} and {job.source} would be "
                              "written there")
        seen[job.dest] = job.source
    return jobs


def _job_datasets(job: _Job) -> list[tuple[Path, Any]]:
    """(destination file, dataset) pairs of one job."""
    if job.kind == "dicom":
        return [(job.dest, _read_dataset(job.source))]
    from medcodec.io.dicom import build_datasets
    from medcodec.pipeline import decompress

    pairs = build_datasets(decompress(job.source))
    if len(pairs) == 1 and (job.dest_is_file or job.dest.suffix.lower() in (".dcm", ".dicom")):
        return [(job.dest, pairs[0][1])]
    if job.dest_is_file and job.dest.suffix:
        raise OutputError(f"{job.dest}: {job.source} holds {len(pairs)} DICOM files; give a "
                          "folder as output")
    # the names come from the container: data, never paths (plain names, each once)
    out, seen = [], set()
    for name, ds in pairs:
        dest = child_path(job.dest, name, f"DICOM file name in {job.source}")
        if name.casefold() in seen:
            raise OutputError(f"{job.dest}: {job.source} names the DICOM file {name!r} twice; "
                              "nothing of it was written")
        seen.add(name.casefold())
        out.append((dest, ds))
    return out


def transcode(inputs: Iterable[str | os.PathLike[str]], output: str | os.PathLike[str],
              options: TranscodeOptions, force: bool = False,
              progress: Callable[[int], None] | None = None) -> list[TranscodeResult]:
    """Transcode files, folders and containers; each output is checked, then written atomically."""
    jobs = plan(inputs, output)
    for job in jobs:  # fail before any work rather than after an hour of it
        if job.kind == "dicom" and job.dest.exists() and not force:
            raise OutputError(f"{job.dest}: output exists (use --force to overwrite)")
    results = []
    for job in jobs:
        pairs = _job_datasets(job)
        for dest, _ in pairs:  # a container's files: all or none refused for existing
            if dest.exists() and not force:
                raise OutputError(f"{dest}: output exists (use --force to overwrite)")
        for dest, ds in pairs:
            blob, result = transcode_dataset(ds, options, source=str(job.source))
            dest.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(dest, force) as tmp:
                tmp.write_bytes(blob)
            result.output = str(dest)
            results.append(result)
        if progress:
            progress(1)
    return results
