"""Frames in, DICOM pixel data out: encoding through the codec registry, encapsulation, and
the checks a written file must pass (the codestream's own header, a decode by a reader)."""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np

from medcodec import codecs
from medcodec.codecs import jpeg2000
from medcodec.codecs.rate import fit_budget
from medcodec.errors import CorruptStreamError
from medcodec.transcode.options import HTJ2K_LOSSLESS_RPCL, TranscodeError, TranscodeOptions

_EXTENDED_OFFSET_TAGS = (0x7FE00001, 0x7FE00002)
#: Offsets past 4 GiB need the extended offset table.
_BOT_LIMIT = 2**32 - 1
#: Halvings of the knob's axis when fitting a byte budget (--ratio).
_RATIO_STEPS = 14


def describe_j2k(stream: bytes) -> jpeg2000.J2KInfo:
    """The codestream facts DICOM cares about; a stream that is not raw J2K fails the transcode."""
    try:
        return jpeg2000.describe_j2k(stream)
    except CorruptStreamError as exc:
        raise TranscodeError(str(exc)) from None


def encode_frames(pixels: np.ndarray, options: TranscodeOptions, bits: int, signed: bool,
                  raw_frame: int) -> tuple[list[bytes], int]:
    """Every frame's codestream, and the error bound the result must meet (JPEG-LS bounds
    the error in every mode: a ratio target's NEAR becomes the bound)."""
    codec = codecs.get(options.target)
    coded: list[bytes] = []
    bound = options.max_error or 0
    for frame in pixels:
        if options.ratio is not None:
            data, setting = fit_budget(
                lambda value, frame=frame: codec.dicom_encode(frame, bits, signed, value),
                codec.dicom_knob(bits), int(raw_frame / options.ratio), steps=_RATIO_STEPS)
            coded.append(data)
            bound = max(bound, int(setting)) if options.target == "jpegls" else bound
        else:
            coded.append(codec.dicom_encode(frame, bits, signed, options.max_error))
    return coded, bound


def encapsulate_frames(ds: Any, frames: list[bytes], offset_table: str) -> None:
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


def register_jpeg_xl_uids() -> None:
    """Teach pydicom < 3.1 the JPEG XL transfer syntaxes (PS3.6, 2024), so it can write them."""
    from pydicom import _uid_dict

    for uid, (name, keyword) in _JPEG_XL_UIDS.items():
        _uid_dict.UID_dictionary.setdefault(uid, (name, "Transfer Syntax", "", "", keyword))


def decode_written(blob: bytes, frames: int, rows: int, cols: int, bits: int, signed: bool,
                  target: str) -> tuple[np.ndarray, str]:
    """Decode the written bytes the way a reader would; JPEG XL frames through imagecodecs."""
    import pydicom

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


def check_codestreams(frames: list[bytes], options: TranscodeOptions, bits: int,
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
