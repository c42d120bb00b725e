"""One DICOM dataset transcoded: stored pixels read and checked against DICOM's rules, frames
coded and encapsulated, lossy bookkeeping, and the written bytes decoded again and compared."""

from __future__ import annotations

import io
import math
import time
import warnings
from typing import Any

import numpy as np

from medcodec.errors import InputError, UnsupportedError
from medcodec.transcode.frames import (
    check_codestreams,
    decode_written,
    encapsulate_frames,
    encode_frames,
    register_jpeg_xl_uids,
)
from medcodec.transcode.options import TranscodeError, TranscodeOptions, TranscodeResult

#: SOP Classes of mammography and breast tomosynthesis (never lossy without --allow-lossy-mg).
_MAMMOGRAPHY_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.1.2", "1.2.840.10008.5.1.4.1.1.1.2.1",
    "1.2.840.10008.5.1.4.1.1.13.1.3", "1.2.840.10008.5.1.4.1.1.13.1.4",
    "1.2.840.10008.5.1.4.1.1.13.1.5",
})
_GROUP_LENGTH = 0x0000


def _pydicom() -> Any:
    import pydicom

    return pydicom


def is_mammography(ds: Any) -> bool:
    """MG modality or a mammography / breast tomosynthesis SOP Class."""
    return (str(ds.get("Modality", "")).strip().upper() == "MG"
            or str(ds.get("SOPClassUID", "")) in _MAMMOGRAPHY_CLASSES)


def _source_pixels(ds: Any, source: str) -> np.ndarray:
    """Stored values of every frame, shape (frames, rows, cols), checked against DICOM's rules."""
    from medcodec.io.dicom import ensure_transfer_syntax

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
    ensure_transfer_syntax(ds)
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
    from medcodec.io.dicom import mark_lossy
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
        register_jpeg_xl_uids()
    raw_frame = rows * cols * int(ds.BitsAllocated) // 8
    coded, bound = encode_frames(pixels, options, bits, signed, raw_frame)
    check_codestreams(coded, options, bits, signed)
    coded_bytes = sum(len(c) for c in coded)
    raw_bytes = raw_frame * n_frames

    for tag in [t for t in list(ds.keys()) if t.element == _GROUP_LENGTH]:
        del ds[tag]  # group lengths describe the old encoding (and are retired)
    encapsulate_frames(ds, coded, options.offset_table)
    if "NumberOfFrames" in ds:
        ds.NumberOfFrames = n_frames
    ds.file_meta.TransferSyntaxUID = options.transfer_syntax
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta.ImplementationVersionName = f"MEDCODEC_{__version__}"[:16]
    if options.lossy:
        _reference_predecessor(ds)
        detail = (f"near-lossless max error {options.max_error}" if options.max_error
                  else f"target ratio {options.ratio:g}:1")
        mark_lossy(ds, {"ratio": raw_bytes / max(1, coded_bytes),
                         "dicom_method": options.method,
                         "description": f"{options.method} {detail} (medcodec transcode)"})
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _pydicom().dcmwrite(buffer, ds, enforce_file_format=True)
    blob = buffer.getvalue()

    decoded, decoder = decode_written(blob, n_frames, rows, cols, bits, signed, options.target)
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
