"""The container header's schema: every field's type and range, checked before anything uses it.

A header is data from a file, so nothing in it is trusted: the reader validates the whole header
here (types, ranges, shapes, cross-field consistency) before any value is used or allocated
from, and the writer runs the same checks before it writes, so medcodec never writes a file it
would refuse to read. The limits live here and nowhere else (docs/FORMAT.md lists them).

Every failure is a :class:`HeaderError` (a CorruptStreamError) that names the field:
``not a valid medcodec file: image.rows = 70000 is out of range (1..65536)``.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Mapping
from typing import Any

from medcodec.errors import CorruptStreamError
from medcodec.models.zoo import ZOO

#: Shape limits: 1 .. 2**20 slices, 1 .. 65536 per side, at most 2**28 pixels per slice.
MAX_SLICES = 1 << 20
MAX_SIDE = 1 << 16
MAX_SLICE_PIXELS = 1 << 28
#: Pixel types a container may hold, with their width in bits.
DTYPE_BITS = {"uint8": 8, "int8": 8, "uint16": 16, "int16": 16, "uint32": 32, "int32": 32}
#: Side data (DICOM headers without pixels, the NIfTI header): a base allowance plus a few MiB
#: per slice, never more than the format's absolute ceiling.
MAX_ATTACHMENT_BYTES = 256 * 1024 * 1024
ATTACHMENT_BASE_BYTES = 8 * 1024 * 1024
ATTACHMENT_BYTES_PER_SLICE = 2 * 1024 * 1024
#: At most this many attachments beyond one per slice.
EXTRA_ATTACHMENTS = 16
MAX_ATTACHMENT_NAME = 1024
#: Decompression-bomb guard: a file may decode to at most max(DECODE_FLOOR_BYTES,
#: MAX_EXPANSION x its own size) bytes of pixels.
DECODE_FLOOR_BYTES = 1 << 30
MAX_EXPANSION = 1 << 16
#: Nesting allowed inside ``image.meta`` (format-specific facts are shallow).
MAX_META_DEPTH = 16
MAX_TEXT = 64 * 1024
#: Stream kinds of the learned codec, as ``codec.weights_sha256`` keys (the zoo's tags).
WEIGHT_KINDS = tuple(tag.decode("ascii") for tag in ZOO)
MODES = ("lossless", "near-lossless", "lossy")
PHOTOMETRIC = ("MONOCHROME1", "MONOCHROME2")
DICOM_LAYOUTS = ("files", "multiframe")

_CODEC_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_DICOM_CS = re.compile(r"[A-Z0-9_ ]{1,16}")


class HeaderError(CorruptStreamError):
    """A header field has the wrong type or an impossible value.

    ``HeaderError(field, problem)``; a single argument is taken as a finished message (so that
    ``type(exc)(f"{path}: {exc}")`` re-raises it with a file name, as for other errors).
    """

    def __init__(self, field: str, problem: str | None = None) -> None:
        if problem is None:
            self.field, self.detail = "", field
            super().__init__(field)
            return
        self.field = field
        self.detail = f"{field} {problem}"
        super().__init__(f"not a valid medcodec file: {self.detail}")


def attachment_limit(n_slices: int) -> int:
    """Largest inflated attachment chunk a container of ``n_slices`` slices may carry."""
    return min(MAX_ATTACHMENT_BYTES,
               ATTACHMENT_BASE_BYTES + ATTACHMENT_BYTES_PER_SLICE * max(1, n_slices))


def decode_limit(file_bytes: int) -> int:
    """Most pixel bytes a file of ``file_bytes`` bytes may decode to."""
    return max(DECODE_FLOOR_BYTES, MAX_EXPANSION * max(0, file_bytes))


def layout_crc32(dtype: str, slices: int, rows: int, cols: int) -> int:
    """``image.layout_crc32``: CRC32 of ``"<dtype> <slices>x<rows>x<cols>"`` in ASCII."""
    return zlib.crc32(f"{dtype} {slices}x{rows}x{cols}".encode("ascii")) & 0xFFFFFFFF


def decoded_bytes(image: Mapping[str, Any]) -> int:
    """Bytes of stored pixels a validated ``image`` section describes."""
    return (image["slices"] * image["rows"] * image["cols"] * DTYPE_BITS[image["dtype"]]) // 8


# --------------------------------------------------------------------------------------------
# Field checkers


def _show(value: Any) -> str:
    """A short rendering of a value for an error message (never a whole list or object)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:30]}...({len(text)} characters)"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _int(value: Any, field: str, low: int, high: int) -> int:
    if not _is_int(value):
        raise HeaderError(field, f"must be an integer, not {_show(value)}")
    if not low <= value <= high:
        raise HeaderError(field, f"= {_show(value)} is out of range ({low}..{high})")
    return value


def _number(value: Any, field: str) -> float:
    if not _is_number(value):
        raise HeaderError(field, f"must be a number, not {_show(value)}")
    if not math.isfinite(value):
        raise HeaderError(field, f"= {_show(value)} is not a finite number")
    return float(value)


def _text(value: Any, field: str, limit: int = MAX_TEXT) -> str:
    if not isinstance(value, str):
        raise HeaderError(field, f"must be a string, not {_show(value)}")
    if len(value) > limit:
        raise HeaderError(field, f"is longer than {limit} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise HeaderError(field, "is not valid text (lone surrogate)") from None
    return value


def _optional_text(value: Any, field: str, limit: int = MAX_TEXT) -> str | None:
    return None if value is None else _text(value, field, limit)


def _object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise HeaderError(field, f"must be an object, not {_show(value)}")
    return value


def _numbers(value: Any, field: str, lengths: tuple[int, ...]) -> None:
    if not isinstance(value, list) or len(value) not in lengths:
        wanted = " or ".join(str(n) for n in lengths)
        raise HeaderError(field, f"must be a list of {wanted} numbers, not {_show(value)}")
    for i, item in enumerate(value):
        _number(item, f"{field}[{i}]")


def _json_value(value: Any, field: str, depth: int) -> None:
    """Any JSON value, nested at most ``depth`` levels, holding only valid text."""
    if depth < 0:
        raise HeaderError(field, f"is nested more than {MAX_META_DEPTH} levels deep")
    if isinstance(value, str):
        _text(value, field)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _json_value(item, f"{field}[{i}]", depth - 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            _text(key, f"{field} key", 1024)
            _json_value(item, f"{field}.{key}", depth - 1)
    elif value is not None and not _is_number(value):  # bools are ints
        raise HeaderError(field, f"holds a value of type {type(value).__name__}")


# --------------------------------------------------------------------------------------------
# Sections


def validate_image(img: Any) -> dict[str, Any]:
    """The ``image`` section: shape, pixel type and every fact a writer later uses."""
    img = _object(img, "image")
    for key, limit in (("slices", MAX_SLICES), ("rows", MAX_SIDE), ("cols", MAX_SIDE)):
        _int(img.get(key), f"image.{key}", 1, limit)
    if img["rows"] * img["cols"] > MAX_SLICE_PIXELS:
        raise HeaderError("image.rows x image.cols",
                          f"= {img['rows']}x{img['cols']} is larger than allowed "
                          f"(at most {MAX_SLICE_PIXELS} pixels per slice)")
    dtype = img.get("dtype")
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        raise HeaderError("image.dtype", f"= {_show(dtype)} is invalid "
                          f"(one of {', '.join(DTYPE_BITS)})")
    if img.get("bits_stored") is not None:
        _int(img["bits_stored"], "image.bits_stored", 1, DTYPE_BITS[dtype])
    if img.get("value_range") is not None:
        width, signed = DTYPE_BITS[dtype], dtype.startswith("int")
        low, high = ((-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed
                     else (0, (1 << width) - 1))
        bounds = img["value_range"]
        if not isinstance(bounds, list) or len(bounds) != 2:
            raise HeaderError("image.value_range",
                              f"must be a list [low, high], not {_show(bounds)}")
        _int(bounds[0], "image.value_range[0]", low, high)
        _int(bounds[1], "image.value_range[1]", bounds[0], high)
    if "layout_crc32" in img:
        _int(img["layout_crc32"], "image.layout_crc32", 0, 0xFFFFFFFF)
        if img["layout_crc32"] != layout_crc32(dtype, img["slices"], img["rows"], img["cols"]):
            raise HeaderError("image.layout_crc32", "does not match image.dtype and the shape "
                              "(the header was edited or damaged)")
    photometric = img.get("photometric")
    if photometric is not None and photometric not in PHOTOMETRIC:
        raise HeaderError("image.photometric",
                          f"= {_show(photometric)} is invalid (MONOCHROME1 or MONOCHROME2)")
    for key in ("rescale_slope", "rescale_intercept"):
        if key in img:
            _number(img[key], f"image.{key}")
    if img.get("pixel_spacing") is not None:
        _numbers(img["pixel_spacing"], "image.pixel_spacing", (2,))
    if img.get("slice_thickness") is not None:
        _number(img["slice_thickness"], "image.slice_thickness")
    if img.get("orientation") is not None:
        _numbers(img["orientation"], "image.orientation", (6,))
    positions = img.get("slice_positions")
    if positions is not None:
        if not isinstance(positions, list) or len(positions) != img["slices"]:
            raise HeaderError("image.slice_positions",
                              f"must be a list of {img['slices']} positions (one per slice), "
                              f"not {_show(positions)}")
        for k, position in enumerate(positions):
            _numbers(position, f"image.slice_positions[{k}]", (3,))
    for key in ("modality", "source_format", "source_name"):
        _optional_text(img.get(key), f"image.{key}", 1024)
    if img.get("meta") is not None:
        _validate_meta(img["meta"], img["slices"])
    return img


def _validate_meta(meta: Any, n_slices: int) -> None:
    meta = _object(meta, "image.meta")
    _json_value(meta, "image.meta", MAX_META_DEPTH)
    layout = meta.get("dicom_layout")
    if layout is not None and layout not in DICOM_LAYOUTS:
        raise HeaderError("image.meta.dicom_layout",
                          f"= {_show(layout)} is invalid (files or multiframe)")
    for key in ("dicom_filenames", "dicom_transfer_syntaxes"):
        names = meta.get(key)
        if names is None:
            continue
        if not isinstance(names, list) or len(names) > n_slices:
            raise HeaderError(f"image.meta.{key}",
                              f"must be a list of at most {n_slices} strings, not {_show(names)}")
        for i, name in enumerate(names):
            _text(name, f"image.meta.{key}[{i}]", 4096)
    if meta.get("bits_allocated") is not None:
        _int(meta["bits_allocated"], "image.meta.bits_allocated", 1, 64)
    if meta.get("pixel_representation") is not None:
        _int(meta["pixel_representation"], "image.meta.pixel_representation", 0, 1)
    for key in ("series_instance_uid", "_new_study_uid", "_new_series_uid"):
        _optional_text(meta.get(key), f"image.meta.{key}", 1024)
    lossy = meta.get("lossy_compression")
    if lossy is not None:
        lossy = _object(lossy, "image.meta.lossy_compression")
        _number(lossy.get("ratio"), "image.meta.lossy_compression.ratio")
        _optional_text(lossy.get("codec"), "image.meta.lossy_compression.codec")
        _optional_text(lossy.get("dicom_method"), "image.meta.lossy_compression.dicom_method")
        _optional_text(lossy.get("description"), "image.meta.lossy_compression.description")
    affine = meta.get("nifti_affine")
    if affine is not None:
        if not isinstance(affine, list) or len(affine) != 4:
            raise HeaderError("image.meta.nifti_affine", "must be a 4x4 list of numbers")
        for i, row in enumerate(affine):
            _numbers(row, f"image.meta.nifti_affine[{i}]", (4,))
    for key, lengths in (("itk_spacing", (2, 3)), ("itk_origin", (2, 3)),
                         ("itk_direction", (4, 9))):
        if meta.get(key) is not None:
            _numbers(meta[key], f"image.meta.{key}", lengths)
    kept = meta.get("itk_metadata")
    if kept is not None:
        for key, value in _object(kept, "image.meta.itk_metadata").items():
            _text(value, f"image.meta.itk_metadata.{key}")


def _validate_slices(records: Any, img: dict[str, Any]) -> None:
    if not isinstance(records, list) or len(records) != img["slices"]:
        count = len(records) if isinstance(records, list) else _show(records)
        raise HeaderError("slices", f"has {count} records but image.slices is {img['slices']} "
                          "(the slice table does not match the slice count)")
    width = DTYPE_BITS[img["dtype"]]
    signed = img["dtype"].startswith("int")
    low, high = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
    for k, record in enumerate(records):
        field = f"slices[{k}]"
        record = _object(record, field)
        _int(record.get("shift"), f"{field}.shift", low, high)
        bits = record.get("bits")
        if not _is_int(bits) or not 1 <= bits <= width:
            raise HeaderError(f"{field}.bits", f"= {_show(bits)}: the slice bit depth is out of "
                              f"range (1..{width} for {img['dtype']})")
        _int(record.get("max_abs_err"), f"{field}.max_abs_err", 0, (1 << width) - 1)
        _int(record.get("crc32"), f"{field}.crc32", 0, 0xFFFFFFFF)
        if record.get("quality") is not None:
            _number(record["quality"], f"{field}.quality")


def _validate_codec(codec: Any) -> None:
    codec = _object(codec, "codec")
    name = codec.get("name")
    if not isinstance(name, str) or not _CODEC_NAME.fullmatch(name):
        raise HeaderError("codec.name", f"= {_show(name)} is not a codec name")
    mode = codec.get("mode")
    if mode not in MODES:
        raise HeaderError("codec.mode", f"= {_show(mode)} is invalid ({', '.join(MODES)})")
    if mode == "near-lossless":
        _int(codec.get("max_error"), "codec.max_error", 1, 0xFFFFFFFF)
    elif codec.get("max_error") is not None:
        _int(codec["max_error"], "codec.max_error", 0, 0)
    for key in ("quality", "target_bpp"):
        if codec.get(key) is not None:
            _number(codec[key], f"codec.{key}")
    _optional_text(codec.get("version"), "codec.version", 1024)
    method = codec.get("dicom_method")
    if method is not None and not (isinstance(method, str) and _DICOM_CS.fullmatch(method)):
        raise HeaderError("codec.dicom_method", f"= {_show(method)} is not a DICOM defined term")
    digests = codec.get("weights_sha256")
    if digests is not None:
        for kind, digest in _object(digests, "codec.weights_sha256").items():
            if kind not in WEIGHT_KINDS:
                raise HeaderError("codec.weights_sha256",
                                  f"names an unknown stream kind {_show(kind)}")
            if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
                raise HeaderError(f"codec.weights_sha256.{kind}",
                                  f"= {_show(digest)} is not a SHA-256 in hex")


def _validate_attachments(info: Any, n_slices: int, n_chunks: int) -> None:
    info = _object(info, "attachments")
    chunk = info.get("chunk")
    if _is_int(chunk) and not n_slices <= chunk < n_chunks:
        where = (f"chunks {n_slices}..{n_chunks - 1} are the ones after the slices"
                 if n_chunks > n_slices else "the file has no chunk after its slices")
        raise HeaderError("attachments.chunk",
                          f"= {chunk} is not a side-data chunk of this file ({where})")
    _int(chunk, "attachments.chunk", n_slices, n_chunks - 1)
    names = info.get("names")
    limit = n_slices + EXTRA_ATTACHMENTS
    if not isinstance(names, list) or len(names) > limit:
        raise HeaderError("attachments.names",
                          f"must be a list of at most {limit} names, not {_show(names)}")
    for i, name in enumerate(names):
        _text(name, f"attachments.names[{i}]", MAX_ATTACHMENT_NAME)
        if not name:
            raise HeaderError(f"attachments.names[{i}]", "is empty")
    if len(set(names)) != len(names):
        raise HeaderError("attachments.names", "lists a name twice")


def validate_header(header: Any, n_chunks: int) -> None:
    """Check the whole header of a container with ``n_chunks`` chunk-table entries."""
    header = _object(header, "header")
    img = validate_image(header.get("image"))
    n_slices = img["slices"]
    if n_chunks < n_slices:
        raise HeaderError("n_chunks", f"= {n_chunks} is smaller than image.slices = {n_slices} "
                          "(the container has fewer chunks than slices)")
    _validate_slices(header.get("slices"), img)
    _validate_codec(header.get("codec"))
    inter = header.get("inter_slice")
    if inter is not None:
        _int(inter, "inter_slice", 1, MAX_SLICES)
    if header.get("original_bytes") is not None:
        _int(header["original_bytes"], "original_bytes", 0, 1 << 62)
        if header["original_bytes"] != decoded_bytes(img):
            raise HeaderError("original_bytes", f"= {header['original_bytes']} does not match "
                              f"the image size ({decoded_bytes(img)} bytes)")
    if header.get("attachments") is not None:
        _validate_attachments(header["attachments"], n_slices, n_chunks)
    _optional_text(header.get("writer"), "writer", 1024)


__all__ = [
    "ATTACHMENT_BASE_BYTES",
    "ATTACHMENT_BYTES_PER_SLICE",
    "DECODE_FLOOR_BYTES",
    "DTYPE_BITS",
    "MAX_ATTACHMENT_BYTES",
    "MAX_EXPANSION",
    "MAX_SIDE",
    "MAX_SLICES",
    "MAX_SLICE_PIXELS",
    "HeaderError",
    "attachment_limit",
    "decode_limit",
    "decoded_bytes",
    "layout_crc32",
    "validate_header",
    "validate_image",
]
