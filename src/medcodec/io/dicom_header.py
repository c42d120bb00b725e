"""DICOM headers carried as the file stored them: never re-interpreted, never silently dropped.

A hospital's files carry private elements whose value does not fit the VR a private dictionary
gives them, Implicit VR private tags nobody has a dictionary for, odd lengths and vendor
quirks. pydicom keeps every element it has not been asked about as a *raw* element (tag, VR,
value bytes), and writes raw elements back verbatim as long as the encoding does not change
(:meth:`pydicom.dataset.Dataset.set_original_encoding`). So a header is captured right after
reading, before anything is parsed, in the encoding of its file: Implicit VR Little Endian
stays implicit, everything else is Explicit VR Little Endian (a compressed transfer syntax's
dataset already is). Only Explicit VR Big Endian (retired) is converted element by element.

What cannot be carried (an item tag at the top level of a dataset, a big-endian element that
does not convert, nested encapsulated pixel data that does not decode) is listed in notes that
travel with the image and are shown by ``medcodec info``.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

#: Elements that describe the pixel data's encoding and must not survive a change of it.
PIXEL_ENCODING_TAGS = frozenset((0x7FE00010, 0x7FE00001, 0x7FE00002, 0x7FE00008, 0x7FE00009))
_PIXEL_DATA = 0x7FE00010
_UNDEFINED_LENGTH = 0xFFFFFFFF
#: Encapsulated pixel data starts with an item tag, in either VR encoding.
_NESTED_PIXEL_MARKERS = (b"\xe0\x7f\x10\x00OB\x00\x00\xff\xff\xff\xff",
                         b"\xe0\x7f\x10\x00\xff\xff\xff\xff")
#: Value sizes of the fixed-width VRs: a raw value whose length is not a multiple is not that VR.
_VR_WIDTH = {"AT": 4, "FL": 4, "FD": 8, "SL": 4, "SS": 2, "UL": 4, "US": 2, "SV": 8, "UV": 8,
             "OD": 8, "OF": 4, "OL": 4, "OV": 8, "OW": 2}


def tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _encoding_uid(implicit: bool) -> str:
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    return ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian


def capture_header(ds: Any) -> tuple[bytes, list[str]]:
    """``ds`` minus its pixel data, as Part 10 bytes in the file's own encoding, and notes.

    Call it right after reading: elements parsed since then are re-encoded from their parsed
    value, the others are copied byte for byte.
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset

    notes = drop_structural_tags(ds)
    elements = {}
    for tag in ds.keys():  # noqa: SIM118 - iterating a Dataset would parse every element
        if tag in PIXEL_ENCODING_TAGS:
            continue
        elem = ds.get_item(tag)
        if elem.is_raw and elem.length != 0xFFFFFFFF and elem.value is not None \
                and len(elem.value) < elem.length:
            notes.append(f"{tag_text(tag)}: truncated in the source file (declares "
                         f"{elem.length} bytes, holds {len(elem.value)}); what is there is "
                         "carried")
        elements[tag] = elem
    header = Dataset(elements)
    implicit, little = _actual_encoding(ds)
    if little is False:
        implicit = False
        _convert_big_endian(header, notes)
    else:
        header.set_original_encoding(implicit, True, ds.original_character_set)
        notes += _native_nested_pixels(header, _source_syntax(ds))
    meta = getattr(ds, "file_meta", None)
    header.file_meta = FileMetaDataset(  # a copy: Dataset(other) would share other's elements
        {tag: meta.get_item(tag) for tag in meta.keys()}  # noqa: SIM118 - raw, unparsed
        if meta is not None else {})
    if "TransferSyntaxUID" in header.file_meta:  # a new element: the old one is ds's too
        del header.file_meta.TransferSyntaxUID
    header.file_meta.TransferSyntaxUID = _encoding_uid(implicit)
    header.preamble = b"\0" * 128
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pydicom.dcmwrite(buf, header, implicit_vr=implicit, little_endian=True,
                         enforce_file_format=False)
    return buf.getvalue(), notes


def drop_structural_tags(ds: Any) -> list[str]:
    """Remove item and delimiter tags found at the top level of a dataset (they are not data
    elements, and no encoder can write them there); returns a note for each."""
    notes = []
    for tag in [t for t in ds.keys() if t >> 16 == 0xFFFE]:  # noqa: SIM118 - unparsed
        del ds[tag]
        notes.append(f"{tag_text(tag)}: an item or delimiter tag at the top level of the "
                     "dataset is not a data element; not carried")
    return notes


def is_implicit(ds: Any) -> bool:
    """Whether ``ds`` was really read as Implicit VR (whatever its transfer syntax says)."""
    return _actual_encoding(ds)[0]


def _actual_encoding(ds: Any) -> tuple[bool, bool]:
    """(implicit VR, little endian) as the elements were really read.

    Files lie: a dataset announced as explicit may be implicit (pydicom notices and reads it
    so); the raw elements know.
    """
    for tag in ds.keys():  # noqa: SIM118 - iterating a Dataset would parse every element
        elem = ds.get_item(tag)
        if elem.is_raw:
            return bool(elem.is_implicit_VR), bool(elem.is_little_endian)
    implicit, little = ds.original_encoding
    return bool(implicit), little is not False


def _source_syntax(ds: Any) -> str | None:
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    return str(uid) if uid else None


def _convert_big_endian(header: Any, notes: list[str]) -> None:
    """Parse every element (pydicom swaps the bytes on writing); drop the ones that do not."""
    for tag in list(header.keys()):
        try:
            header[tag]
        except Exception as exc:  # a malformed element: it cannot be re-encoded
            del header[tag]
            notes.append(f"{tag_text(tag)}: big-endian value does not convert ({exc}); "
                         "not carried")


def _nested_datasets(header: Any) -> Iterator[tuple[int, Any]]:
    """(top-level tag, item) for every item nested anywhere under ``header``'s sequences that
    may hold encapsulated pixel data (a cheap test on the bytes skips all the others)."""

    def items_of(dataset: Any, tag: int) -> list[Any]:
        elem = dataset.get_item(tag)
        if elem.VR not in ("SQ", None):
            return []
        if elem.is_raw and isinstance(elem.value, bytes) and not any(
                marker in elem.value for marker in _NESTED_PIXEL_MARKERS):
            return []
        try:
            parsed = dataset[tag]
        except Exception:
            return []
        return list(parsed.value or []) if parsed.VR == "SQ" else []

    def walk(dataset: Any) -> Iterator[Any]:
        for tag in list(dataset.keys()):
            for item in items_of(dataset, tag):
                yield item
                yield from walk(item)

    for tag in list(header.keys()):
        for item in items_of(header, tag):
            yield tag, item
            for nested in walk(item):
                yield tag, nested


def _native_nested_pixels(header: Any, syntax: str | None) -> list[str]:
    """Decode encapsulated pixel data inside sequences (icons, vendor previews) to native.

    The output's transfer syntax is a native one, where encapsulated pixel data is invalid. An
    item that does not decode takes its whole top-level element with it, and says so.
    """
    from pydicom.dataset import FileMetaDataset

    notes: list[str] = []
    dropped: set[int] = set()
    for top, item in list(_nested_datasets(header)):
        if top in dropped or _PIXEL_DATA not in item:
            continue
        elem = item.get_item(_PIXEL_DATA)
        if getattr(elem, "length", None) != _UNDEFINED_LENGTH and not getattr(
                elem, "is_undefined_length", False):
            continue
        try:
            item.file_meta = FileMetaDataset()
            item.file_meta.TransferSyntaxUID = syntax
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pixels = np.ascontiguousarray(item.pixel_array)
            del item.file_meta
            samples = int(item.get("SamplesPerPixel", 1))
            if samples > 1:
                item.PhotometricInterpretation = "RGB"  # pydicom decodes YBR to RGB
                item.PlanarConfiguration = 0
            data = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
            del item[_PIXEL_DATA]  # a new element: the old one is marked undefined-length
            item.add_new(_PIXEL_DATA, "OB" if int(item.BitsAllocated) <= 8 else "OW",
                         data + b"\0" * (len(data) % 2))
            notes.append(f"{tag_text(top)}: encapsulated pixel data inside the sequence was "
                         "decoded and is carried uncompressed")
        except Exception as exc:
            if hasattr(item, "file_meta"):
                del item.file_meta
            del header[top]
            dropped.add(top)
            notes.append(f"{tag_text(top)}: holds encapsulated pixel data that does not decode "
                         f"({type(exc).__name__}); not carried")
    return notes


def load_header(blob: bytes) -> Any:
    """The dataset of a captured header; unparsed elements stay raw and are written verbatim."""
    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(io.BytesIO(blob), force=True)


def output_syntax(ds: Any) -> str:
    """The native transfer syntax a loaded header is written back in: its own encoding."""
    return _encoding_uid(is_implicit(ds))


def explicit_vr(ds: Any) -> list[str]:
    """Give every element of an Implicit VR dataset an explicit VR, without parsing values.

    A standard element gets its dictionary VR when its value fits it; a private element, or a
    value that does not fit (a decimal string where a vendor dictionary says FD), becomes UN,
    whose value is by definition the Implicit VR bytes (PS3.5 6.2.2). Afterwards the dataset
    writes as Explicit VR Little Endian with every value byte unchanged. Returns notes.
    """
    from pydicom.datadict import dictionary_VR

    notes: list[str] = []
    try:
        pixel_signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    except (TypeError, ValueError):
        pixel_signed = False

    def fix(dataset: Any) -> None:
        for tag in list(dataset.keys()):
            elem = dataset.get_item(tag)
            if not elem.is_raw:
                if elem.VR == "SQ":
                    for item in elem.value:
                        fix(item)
                continue
            if elem.VR is not None:
                continue
            vr = "UN"
            if tag >> 16 & 1:
                if 0x0010 <= tag & 0xFFFF <= 0x00FF:
                    vr = "LO"  # private creator
            else:
                try:
                    vr = dictionary_VR(tag)
                except KeyError:
                    vr = "UN"
                if " or " in vr:
                    vr = ("SS" if pixel_signed else "US") if "SS" in vr else "OW"
                if vr == "SQ" or elem.length == _UNDEFINED_LENGTH:
                    try:  # pydicom parses implicit sequences item by item
                        parsed = dataset[tag]
                    except Exception:
                        parsed = elem
                    if parsed.VR == "SQ":
                        for item in parsed.value:
                            fix(item)
                        continue
                    vr = "UN"
                width = _VR_WIDTH.get(vr)
                if width and elem.length % width:
                    notes.append(f"{tag_text(tag)}: value of {elem.length} bytes does not fit "
                                 f"its VR {vr}; carried as UN")
                    vr = "UN"
            # Dataset.__setitem__ would parse a private raw element by its dictionary VR
            # (the very failure this avoids): store the relabelled raw element directly.
            dataset._dict[tag] = elem._replace(VR=vr)
        dataset.set_original_encoding(False, True, dataset.original_character_set)

    fix(ds)
    return notes


def element_bytes(ds: Any) -> dict[tuple[int, ...], bytes]:
    """Every element's value bytes as stored, keyed by its path (tag, item, tag, ...).

    Raw elements give their bytes unparsed; sequences are walked item by item. This is how a
    round trip is checked element for element without trusting any dictionary.
    """
    out: dict[tuple[int, ...], bytes] = {}

    def walk(dataset: Any, prefix: tuple[int, ...]) -> None:
        for tag in list(dataset.keys()):
            elem = dataset.get_item(tag)
            if elem.is_raw and elem.VR != "SQ":
                out[(*prefix, tag)] = bytes(elem.value or b"")
                continue
            if not elem.is_raw and elem.VR != "SQ":
                out[(*prefix, tag)] = _encoded_value(elem, dataset)
                continue
            try:
                items = dataset[tag].value
            except Exception:
                out[(*prefix, tag)] = bytes(elem.value or b"") if elem.is_raw else b""
                continue
            for k, item in enumerate(items or []):
                walk(item, (*prefix, tag, k))

    walk(ds, ())
    return out


def _encoded_value(elem: Any, dataset: Any) -> bytes:
    """The bytes pydicom would write for a parsed element's value (no tag, VR or length)."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_data_element
    from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

    buf = DicomBytesIO()
    implicit = dataset.original_encoding[0]
    buf.is_implicit_VR = True if implicit is None else bool(implicit)
    buf.is_little_endian = True
    write_data_element(buf, elem, dataset.get("SpecificCharacterSet"))
    data = buf.getvalue()
    if buf.is_implicit_VR:
        return data[8:]
    return data[12 if elem.VR in EXPLICIT_VR_LENGTH_32 else 8:]
