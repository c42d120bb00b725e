"""DICOM in and out with pydicom: stored pixels, geometry and every tag, kept faithfully.

Reading: single- and multi-frame files in any transfer syntax pydicom's pixel plugins decode;
folders become one volume per SeriesInstanceUID, slices sorted by ImagePositionPatient along the
slice normal (file names mean nothing). Each file's header, minus its pixel data, is kept as
bytes in ``MedImage.attachments`` so the file can be rebuilt tag for tag.

Writing: the kept headers with new pixel data in Explicit VR Little Endian. Lossy output follows
PS3.3 C.7.6.1.1.5: Lossy Image Compression "01", ratio and method appended, a new SOP Instance UID
and Image Type DERIVED; lossless output keeps every UID.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import warnings
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from medcodec._fs import atomic_path
from medcodec.errors import CorruptStreamError, InputError, OutputError, UnsupportedError
from medcodec.image import MedImage
from medcodec.io.dicom_header import capture_header, load_header, output_syntax

_GRAYSCALE = ("MONOCHROME1", "MONOCHROME2")
#: Where the notes on elements that could not be carried verbatim travel (``medcodec info``).
NOTES_KEY = "dicom_notes"


def _pydicom() -> ModuleType:
    """pydicom, imported late: it keeps `medcodec --help` fast."""
    import pydicom

    return pydicom


def looks_like_dicom(path: str | os.PathLike[str]) -> bool:
    """True for a Part 10 file (``DICM`` at byte 128) or a bare dataset pydicom can parse."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    if len(head) == 132 and head[128:132] == b"DICM":
        return True
    if len(head) < 8 or head[:2] not in (b"\x02\x00", b"\x08\x00"):
        return False  # bare datasets start with group 0002 or 0008
    try:
        ds = _pydicom().dcmread(path, stop_before_pixels=True, force=True)
    except Exception:
        return False
    return "SOPClassUID" in ds or "Modality" in ds


@dataclass(frozen=True)
class SeriesFacts:
    """What grouping files into series needs from one DICOM header (read without pixels)."""

    series_uid: str
    patient_id: str
    multiframe: bool


def series_facts(path: str | os.PathLike[str]) -> SeriesFacts | None:
    """The series facts of a DICOM file, or None when it is not a readable DICOM object: the
    one header scan behind batch units and the bench's volumes."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = _pydicom().dcmread(path, stop_before_pixels=True, force=True,
                                    specific_tags=["SeriesInstanceUID", "PatientID",
                                                   "NumberOfFrames", "Modality", "SOPClassUID"])
        if "SeriesInstanceUID" not in ds and "SOPClassUID" not in ds and "Modality" not in ds:
            return None
        return SeriesFacts(str(_optional(ds, "SeriesInstanceUID", "")),
                           str(_optional(ds, "PatientID", "")), "NumberOfFrames" in ds)
    except Exception:
        return None


def _read_dataset(path: Path, pixels: bool = True) -> Any:
    """pydicom's dataset of ``path`` (without the pixel data when ``pixels`` is False)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _pydicom().dcmread(path, stop_before_pixels=not pixels, force=True)
    except Exception as exc:
        raise InputError(f"{path}: not a readable DICOM file ({exc})") from None


def _required(ds: Any, keyword: str, path: Path, default: Any = None) -> Any:
    """An element medcodec cannot do without; a malformed one is named in the error."""
    try:
        value = ds.get(keyword, default)
        return value if value is not None else default
    except Exception as exc:
        raise InputError(f"{path}: element {keyword} is malformed ({exc})") from None


def _optional(ds: Any, keyword: str, default: Any = None) -> Any:
    """An element medcodec reads for convenience (geometry, rescale, UIDs): a malformed one
    counts as absent. It is carried verbatim in the header either way."""
    try:
        value = ds.get(keyword, default)
    except Exception:
        return default
    return default if value is None else value


def _int(ds: Any, keyword: str, path: Path, default: int) -> int:
    value = _required(ds, keyword, path, default)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InputError(f"{path}: element {keyword} = {value!r} is not an integer") from None


def _check_pixel_module(ds: Any, path: Path) -> None:
    if "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            raise UnsupportedError(f"{path}: floating-point pixel data is not supported")
        raise InputError(f"{path}: DICOM file has no pixel data (or it is truncated before it)")
    photometric = str(_required(ds, "PhotometricInterpretation", path, "")).strip()
    samples = _int(ds, "SamplesPerPixel", path, 1)
    if samples != 1 or photometric not in _GRAYSCALE:
        raise UnsupportedError(
            f"{path}: photometric interpretation {photometric or '?'} with {samples} sample(s) "
            "per pixel is not supported (grayscale MONOCHROME1/2 only)"
        )


def _load(path: Path) -> tuple[Any, bytes, list[str]]:
    """A file's dataset, its header captured verbatim before anything parses it, and notes."""
    ds = _read_dataset(path)
    try:
        blob, notes = capture_header(ds)
    except Exception as exc:  # pydicom could read it but not write it back: say which
        raise InputError(f"{path}: the header cannot be carried ({type(exc).__name__}: "
                         f"{exc})") from None
    _check_pixel_module(ds, path)
    return ds, blob, notes


def _floats(value: Any, count: int) -> tuple[float, ...] | None:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == count else None


def _frame_geometry(ds: Any, n_frames: int) -> tuple[tuple[float, ...] | None, np.ndarray | None,
                                                     tuple[float, float] | None]:
    """Orientation, per-frame positions and pixel spacing, from classic or enhanced headers.

    Geometry is a convenience (sorting, NIfTI output): what does not parse counts as absent.
    """
    orientation = _floats(_optional(ds, "ImageOrientationPatient"), 6)
    spacing = _floats(_optional(ds, "PixelSpacing") or _optional(ds, "ImagerPixelSpacing"), 2)
    position = _floats(_optional(ds, "ImagePositionPatient"), 3)
    positions = None
    per_frame = _optional(ds, "PerFrameFunctionalGroupsSequence")
    shared = _optional(ds, "SharedFunctionalGroupsSequence")
    if per_frame is not None and len(per_frame) == n_frames:
        found = []
        for item in per_frame:
            pos = _optional(item, "PlanePositionSequence")
            found.append(_floats(_optional(pos[0], "ImagePositionPatient"), 3) if pos else None)
        if all(p is not None for p in found):
            positions = np.array(found, dtype=np.float64)
    if shared:
        group = shared[0]
        planes = _optional(group, "PlaneOrientationSequence")
        if orientation is None and planes:
            orientation = _floats(_optional(planes[0], "ImageOrientationPatient"), 6)
        measures = _optional(group, "PixelMeasuresSequence")
        if spacing is None and measures:
            spacing = _floats(_optional(measures[0], "PixelSpacing"), 2)
    if positions is None and position is not None and n_frames == 1:
        positions = np.array([position], dtype=np.float64)
    return orientation, positions, (spacing if spacing is None else (spacing[0], spacing[1]))


def ensure_transfer_syntax(ds: Any) -> None:
    """Bare datasets (no File Meta) get the transfer syntax they were actually read with."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import (
        ExplicitVRBigEndian,
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
    )

    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    implicit, little = getattr(ds, "original_encoding", (True, True))
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    meta.TransferSyntaxUID = (
        ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little
        else ExplicitVRBigEndian
    )


def _decode_pixels(ds: Any, path: Path) -> np.ndarray:
    ensure_transfer_syntax(ds)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pixels = ds.pixel_array
    except Exception as exc:
        raise InputError(f"{path}: pixel data cannot be decoded ({exc})") from None
    frames = _int(ds, "NumberOfFrames", path, 1) or 1
    pixels = np.asarray(pixels)
    if frames == 1 and pixels.ndim == 2:
        pixels = pixels[np.newaxis]
    if pixels.ndim != 3:
        raise UnsupportedError(f"{path}: unexpected pixel array shape {pixels.shape}")
    return pixels


def _unused_bits_note(ds: Any) -> list[str]:
    """A note when native pixel data has bits set above BitsStored (old overlay bits, or a
    BitsStored that understates the data): readers ignore them, and so does the output."""
    try:
        allocated, stored = int(ds.BitsAllocated), int(ds.BitsStored)
        if allocated != 16 or not 1 <= stored < 16 or ds.file_meta.TransferSyntaxUID.is_compressed:
            return []
        raw = np.frombuffer(ds.PixelData, dtype="<u2", count=len(ds.PixelData) // 2)
    except Exception:
        return []
    if int(ds.get("PixelRepresentation", 0) or 0) == 0:
        stray = int(np.count_nonzero(raw >> stored))
    else:  # signed: the unused bits must repeat the sign bit
        high = raw >> (stored - 1)
        stray = int(np.count_nonzero((high != 0) & (high != (1 << (17 - stored)) - 1)))
    if not stray:
        return []
    return [f"(7FE0,0010): {stray} pixels have bits set above BitsStored {stored}; DICOM "
            "readers ignore those bits and the output does not keep them"]


def _rescale(ds: Any) -> tuple[float, float]:
    """Rescale slope and intercept, classic or from the shared functional groups."""
    slope, intercept = _optional(ds, "RescaleSlope"), _optional(ds, "RescaleIntercept")
    shared = _optional(ds, "SharedFunctionalGroupsSequence")
    if slope is None and shared:
        items = _optional(shared[0], "PixelValueTransformationSequence")
        if items:
            slope = _optional(items[0], "RescaleSlope")
            intercept = _optional(items[0], "RescaleIntercept")
    try:
        slope = float(slope) if slope is not None else 1.0
        intercept = float(intercept) if intercept is not None else 0.0
    except (TypeError, ValueError):
        return 1.0, 0.0
    if not (np.isfinite(slope) and np.isfinite(intercept)) or slope == 0:
        return 1.0, 0.0
    return slope, intercept


def _unique_names(paths: list[Path]) -> list[str]:
    """Output file names, one per slice: the source names, made unique within the series."""
    taken: set[str] = set()
    out = []
    for path in paths:
        name, n = path.name, 1
        while name in taken:
            n += 1
            name = f"{path.stem}-{n}{path.suffix}"
        taken.add(name)
        out.append(name)
    return out


def _image_from(loaded: list[tuple[Path, Any, bytes, list[str]]], pixels: np.ndarray,
                layout: str) -> MedImage:
    path0, ds0 = loaded[0][0], loaded[0][1]
    slope, intercept = _rescale(ds0)
    if layout == "multiframe":
        orientation, positions, spacing = _frame_geometry(ds0, pixels.shape[0])
    else:
        orientation, _, spacing = _frame_geometry(ds0, 1)
        found = [_floats(_optional(ds, "ImagePositionPatient"), 3) for _, ds, _, _ in loaded]
        positions = np.array(found, dtype=np.float64) if all(found) else None
    try:
        thickness = float(_optional(ds0, "SliceThickness", ""))
    except (TypeError, ValueError):
        thickness = None
    bits_allocated = _int(ds0, "BitsAllocated", path0, pixels.dtype.itemsize * 8)
    meta: dict[str, Any] = {
        "dicom_layout": layout,
        "dicom_filenames": _unique_names([p for p, _, _, _ in loaded]),
        "dicom_transfer_syntaxes": sorted({
            str(_optional(getattr(ds, "file_meta", None) or {}, "TransferSyntaxUID", ""))
            for _, ds, _, _ in loaded
        }),
        "bits_allocated": bits_allocated,
        "pixel_representation": _int(ds0, "PixelRepresentation", path0, 0),
        "series_instance_uid": str(_optional(ds0, "SeriesInstanceUID", "")),
    }
    notes = [f"{p.name}: {note}" for p, _, _, file_notes in loaded for note in file_notes]
    if notes:
        meta[NOTES_KEY] = notes
    attachments = {f"dicom/{i}": blob for i, (_, _, blob, _) in enumerate(loaded)}
    bits_stored = _int(ds0, "BitsStored", path0, bits_allocated)
    if not 1 <= bits_stored <= pixels.dtype.itemsize * 8:
        bits_stored = min(max(bits_stored, 1), pixels.dtype.itemsize * 8)
        meta.setdefault(NOTES_KEY, []).append(
            f"{path0.name}: BitsStored does not fit the decoded {pixels.dtype}; "
            f"{bits_stored} is used")
    modality = str(_optional(ds0, "Modality", "")).strip()
    return MedImage(
        pixels=pixels,
        bits_stored=bits_stored,
        photometric=str(ds0.PhotometricInterpretation).strip(),
        rescale_slope=slope,
        rescale_intercept=intercept,
        pixel_spacing=spacing,
        slice_thickness=thickness if thickness is None or np.isfinite(thickness) else None,
        slice_positions=positions,
        orientation=orientation,
        modality=modality or None,
        source_format="dicom",
        source_path=str(path0.parent if layout == "files" and len(loaded) > 1 else path0),
        meta=meta,
        attachments=attachments,
    )


def read_dicom_file(path: str | os.PathLike[str]) -> MedImage:
    """One DICOM file (single- or multi-frame) as a MedImage."""
    path = Path(path)
    ds, blob, notes = _load(path)
    pixels = _decode_pixels(ds, path)
    notes += _unused_bits_note(ds)
    layout = "multiframe" if "NumberOfFrames" in ds else "files"
    return _image_from([(path, ds, blob, notes)], pixels, layout)


def _slice_order_key(ds: Any, path: Path) -> tuple[float, int, str]:
    """Position along the slice normal, then InstanceNumber, then file name."""
    orientation = _floats(_optional(ds, "ImageOrientationPatient"), 6)
    position = _floats(_optional(ds, "ImagePositionPatient"), 3)
    along = 0.0
    if orientation and position:
        normal = np.cross(orientation[:3], orientation[3:])
        along = float(np.dot(normal, position))
        if not np.isfinite(along):
            along = 0.0
    try:
        number = int(_optional(ds, "InstanceNumber", 0) or 0)
    except (TypeError, ValueError):
        number = 0
    return along, number, str(path)


def _optional_int(ds: Any, keyword: str) -> int:
    try:
        return int(_optional(ds, keyword, 0) or 0)
    except (TypeError, ValueError):
        return -1


def read_dicom_series(paths: Iterable[str | os.PathLike[str]],
                      skipped: list[Path] | None = None) -> Iterator[MedImage]:
    """Group DICOM files into volumes (one per series and frame size) and read each one.

    Multi-frame files are images of their own. Headers are read first (no pixels), so memory
    holds one series at a time however large the folder is. With a ``skipped`` list, files that
    are not images (DICOMDIR, structured reports, RT plans and structures, presentation states:
    no Rows) are listed there instead of failing the read, as a folder from a PACS or a CD holds.
    """
    groups: dict[tuple[Any, ...], list[tuple[Path, Any]]] = defaultdict(list)
    singles: list[Path] = []
    for raw_path in paths:
        path = Path(raw_path)
        ds = _read_dataset(path, pixels=False)
        if skipped is not None and "Rows" not in ds:
            skipped.append(path)
            continue
        if "NumberOfFrames" in ds:
            singles.append(path)
            continue
        key = (
            str(_optional(ds, "SeriesInstanceUID", "")),
            _optional_int(ds, "Rows"),
            _optional_int(ds, "Columns"),
            _optional_int(ds, "BitsAllocated"),
            _optional_int(ds, "PixelRepresentation"),
            _floats(_optional(ds, "ImageOrientationPatient"), 6) or (),
        )
        groups[key].append((path, ds))
    for key in sorted(groups, key=lambda k: min(str(p) for p, _ in groups[k])):
        members = sorted(groups[key], key=lambda item: _slice_order_key(item[1], item[0]))
        yield _read_series([path for path, _ in members])
    for path in singles:
        yield read_dicom_file(path)


def _read_series(paths: list[Path]) -> MedImage:
    loaded = []
    slices = []
    for path in paths:
        ds, blob, notes = _load(path)
        slices.append(_decode_pixels(ds, path))
        notes += _unused_bits_note(ds)
        del ds.PixelData  # the decoded array is all we keep; frees the encoded bytes
        loaded.append((path, ds, blob, notes))
    dtypes = {s.dtype for s in slices}
    if len(dtypes) != 1:
        raise UnsupportedError(f"{paths[0].parent}: slices of one series differ in pixel type")
    return _image_from(loaded, np.concatenate(slices, axis=0), "files")


# --------------------------------------------------------------------------------------------
# Writing


def _stored_dtype(bits_allocated: int, signed: bool) -> np.dtype:
    if bits_allocated not in (1, 8, 16, 32):
        raise OutputError(f"cannot write {bits_allocated}-bit allocated DICOM pixel data")
    width = max(bits_allocated, 8)
    return np.dtype(f"{'i' if signed else 'u'}{width // 8}").newbyteorder("<")


def _pixel_bytes(pixels: np.ndarray, bits_allocated: int, signed: bool) -> bytes:
    if bits_allocated == 1:
        from pydicom.pixels import pack_bits

        return pack_bits(pixels.astype(np.uint8))
    data = pixels.astype(_stored_dtype(bits_allocated, signed)).tobytes()
    return data + b"\0" if len(data) % 2 else data


def _new_dataset(image: MedImage, index: int | None) -> Any:
    """A minimal Secondary Capture dataset for an image that did not come from DICOM."""
    pydicom = _pydicom()
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    study = image.meta.setdefault("_new_study_uid", generate_uid())
    series = image.meta.setdefault("_new_series_uid", generate_uid())
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.Modality = image.modality or "OT"
    ds.ConversionType = "WSD"
    ds.InstanceNumber = (index or 0) + 1
    ds.PatientName, ds.PatientID = "", ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = image.photometric
    bits = max(8, image.pixels.dtype.itemsize * 8)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, image.bits_stored, image.bits_stored - 1
    ds.PixelRepresentation = int(image.signed)
    ds.RescaleSlope, ds.RescaleIntercept = image.rescale_slope, image.rescale_intercept
    if image.pixel_spacing:
        ds.PixelSpacing = list(image.pixel_spacing)
    if image.orientation:
        ds.ImageOrientationPatient = list(image.orientation)
    if image.slice_positions is not None and index is not None:
        ds.ImagePositionPatient = list(image.slice_positions[index])
    if image.slice_thickness:
        ds.SliceThickness = image.slice_thickness
    return ds


def _header_dataset(image: MedImage, index: int) -> Any:
    blob = image.attachments.get(f"dicom/{index}")
    if blob is None:
        return _new_dataset(image, index)
    try:
        return load_header(blob)
    except Exception as exc:
        raise CorruptStreamError(f"DICOM header of slice {index} does not parse ({exc})") from None


def _as_list(value: Any) -> list[Any]:
    """A DICOM element value as a list, whether it is empty, single- or multi-valued."""
    if value is None or value == "":
        return []
    if isinstance(value, str | bytes | int | float):
        return [value]
    return list(value)


def _is_enhanced(ds: Any) -> bool:
    """Enhanced (functional-group) multi-frame IODs: by their groups or their SOP Class."""
    if "SharedFunctionalGroupsSequence" in ds or "PerFrameFunctionalGroupsSequence" in ds:
        return True
    sop_class = _optional(ds, "SOPClassUID")
    name = str(getattr(sop_class, "name", "")) if sop_class else ""
    return "Enhanced" in name or "Legacy Converted" in name


def mark_lossy(ds: Any, lossy: dict[str, Any]) -> None:
    """PS3.3 C.7.6.1.1.5 bookkeeping for an image that went through a lossy step.

    Lossy Image Compression "01", a ratio and a method appended (one method per ratio, as the
    standard pairs them: a codec without a defined term is named by its own name), a new SOP
    Instance UID. Single-frame images become Image Type DERIVED; enhanced multi-frame images
    keep their Image Type, because their Frame Types and conditional modules (MR Pulse
    Sequence, Bulk Motion) are tied to it and would no longer validate.
    """
    from pydicom.uid import generate_uid

    ratios = _as_list(_optional(ds, "LossyImageCompressionRatio"))
    methods = _as_list(_optional(ds, "LossyImageCompressionMethod"))
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionRatio = [*ratios, f"{float(lossy['ratio']):.4g}"]
    method = lossy.get("dicom_method") or str(lossy.get("codec") or "UNKNOWN").upper()[:16]
    ds.LossyImageCompressionMethod = [*methods, method]
    description = str(lossy.get("description", "")).strip()
    if description:
        old = str(_optional(ds, "DerivationDescription", "")).strip()
        ds.DerivationDescription = (f"{old}; {description}" if old else description)[:1024]
    if not _is_enhanced(ds):
        image_type = _as_list(_optional(ds, "ImageType")) or ["DERIVED", "SECONDARY"]
        image_type[0] = "DERIVED"
        ds.ImageType = image_type
    ds.SOPInstanceUID = generate_uid()
    if getattr(ds, "file_meta", None) is not None:
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID


def _safe_names(names: Any, count: int) -> list[str] | None:
    """The output file names a stream asks for, checked: names are data, never paths.

    A name must be a plain base name (no separator, no ``..``, not absolute, not empty, no
    control characters) and unique; anything else is a forged or broken stream.
    """
    if not names or (isinstance(names, list) and len(names) != count):
        return None  # no names, or not one per file (a subset): numbered names instead
    if not isinstance(names, list):
        raise CorruptStreamError("not a valid medcodec file: image.meta.dicom_filenames is "
                                 "not a list of names")
    seen: set[str] = set()
    for k, name in enumerate(names):
        bad = (not isinstance(name, str) or not name or name in (".", "..") or len(name) > 255
               or any(c in name for c in "/\\:") or any(ord(c) < 32 for c in name)
               or Path(name).is_absolute() or Path(name).name != name)
        if bad:
            raise CorruptStreamError(f"not a valid medcodec file: image.meta.dicom_filenames[{k}]"
                                     f" = {name!r} is not a plain file name")
        if name.lower() in seen:
            raise CorruptStreamError(f"not a valid medcodec file: image.meta.dicom_filenames[{k}]"
                                     f" = {name!r} appears twice")
        seen.add(name.lower())
    return names


def build_datasets(image: MedImage) -> list[tuple[str, Any]]:
    """(file name, dataset) for every output file of ``image``.

    Each dataset keeps its source header's encoding (Implicit VR stays Implicit VR), so every
    element medcodec does not change is written back byte for byte.
    """
    layout = image.meta.get("dicom_layout", "files")
    signed = image.signed
    lossy = image.meta.get("lossy_compression")
    files = 1 if layout == "multiframe" else image.n_slices
    names = _safe_names(image.meta.get("dicom_filenames"), files) or (
        ["image.dcm"] if layout == "multiframe" else [f"{i:05d}.dcm" for i in range(files)])
    if layout == "multiframe":
        groups = [(names[0], 0, image.pixels)]
    else:
        groups = [(names[i], i, image.pixels[i]) for i in range(files)]
    out = []
    for name, index, pixels in groups:
        ds = _header_dataset(image, index)
        bits_allocated = int(ds.get("BitsAllocated", max(8, image.pixels.dtype.itemsize * 8)))
        wanted = {"Rows": image.rows, "Columns": image.cols, "PixelRepresentation": int(signed)}
        if layout == "multiframe":
            wanted["NumberOfFrames"] = image.n_slices
        for keyword, value in wanted.items():  # untouched when equal: the bytes stay as stored
            if _optional_int(ds, keyword) != value or keyword not in ds:
                setattr(ds, keyword, value)
        ds.PixelData = _pixel_bytes(np.asarray(pixels), bits_allocated, signed)
        ds["PixelData"].VR = "OB" if bits_allocated <= 8 else "OW"
        ds.file_meta.TransferSyntaxUID = output_syntax(ds)
        if lossy:
            mark_lossy(ds, lossy)
        out.append((name, ds))
    return out


#: File Meta elements of Type 1 (PS3.10 7.1): with all of them present the file meta is
#: written as the source had it (pydicom's enforcing writer would, for one, replace a Media
#: Storage SOP Instance UID that differs from the SOP Instance UID).
_FILE_META_TYPE1 = (0x00020001, 0x00020002, 0x00020003, 0x00020010, 0x00020012)


def _complete_file_meta(ds: Any) -> bool:
    meta = getattr(ds, "file_meta", None)
    return (getattr(ds, "preamble", None) is not None and meta is not None
            and all(tag in meta for tag in _FILE_META_TYPE1))


def write_dicom(image: MedImage, path: str | os.PathLike[str], force: bool = False) -> list[Path]:
    """Write ``image`` as DICOM: a file for one slice or a multi-frame, else a folder of slices.

    A new folder is filled under a temporary name and renamed into place at the end, so an
    interrupted run leaves nothing; into an existing folder (``force``) each file is replaced
    atomically.
    """
    pydicom = _pydicom()
    path = Path(path)
    datasets = build_datasets(image)

    def save(ds: Any, target: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pydicom.dcmwrite(target, ds, enforce_file_format=not _complete_file_meta(ds))

    if len(datasets) == 1 and (path.suffix or not path.is_dir()):
        with atomic_path(path, force) as tmp:
            save(datasets[0][1], tmp)
        return [path]
    if path.suffix.lower() in (".dcm", ".dicom"):
        raise OutputError(
            f"{path}: a series of {len(datasets)} slices is written as a folder; give a folder path"
        )
    written = []
    if path.exists():
        if not path.is_dir():
            raise OutputError(f"{path}: output exists and is not a folder")
        clashes = [name for name, _ in datasets if (path / name).exists()]
        if clashes and not force:
            raise OutputError(f"{path}: output folder already holds {clashes[0]} "
                              "(use --force to overwrite)")
        for name, ds in datasets:
            with atomic_path(path / name, force=True) as tmp:
                save(ds, tmp)
            written.append(path / name)
        return written
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{path}: folder {parent} does not exist")
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=parent))
    try:
        for name, ds in datasets:
            save(ds, staging / name)
        os.replace(staging, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(staging)
    return [path / name for name, _ in datasets]
