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
import io
import os
import shutil
import tempfile
import warnings
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from medcodec._fs import atomic_path
from medcodec.errors import InputError, OutputError, UnsupportedError
from medcodec.image import MedImage

_GRAYSCALE = ("MONOCHROME1", "MONOCHROME2")
#: Elements that describe the pixel data's encoding and must not survive a change of it.
_PIXEL_ENCODING_TAGS = (0x7FE00010, 0x7FE00001, 0x7FE00002, 0x7FE00008, 0x7FE00009)


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


def _read_dataset(path: Path, pixels: bool = True) -> Any:
    """pydicom's dataset of ``path`` (without the pixel data when ``pixels`` is False)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _pydicom().dcmread(path, stop_before_pixels=not pixels, force=True)
    except Exception as exc:
        raise InputError(f"{path}: not a readable DICOM file ({exc})") from None


def _check_pixel_module(ds: Any, path: Path) -> None:
    if "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            raise UnsupportedError(f"{path}: floating-point pixel data is not supported")
        raise InputError(f"{path}: DICOM file has no pixel data (or it is truncated before it)")
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    samples = int(ds.get("SamplesPerPixel", 1))
    if samples != 1 or photometric not in _GRAYSCALE:
        raise UnsupportedError(
            f"{path}: photometric interpretation {photometric or '?'} with {samples} sample(s) "
            "per pixel is not supported (grayscale MONOCHROME1/2 only)"
        )


def _header_bytes(ds: Any) -> bytes:
    """The dataset (with file meta) minus pixel data, as Explicit VR Little Endian bytes."""
    pydicom = _pydicom()
    from pydicom.uid import ExplicitVRLittleEndian

    header = pydicom.Dataset()
    header.update({tag: elem for tag, elem in ds.items() if tag not in _PIXEL_ENCODING_TAGS})
    file_meta = pydicom.dataset.FileMetaDataset(getattr(ds, "file_meta", pydicom.Dataset()))
    file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    header.file_meta = file_meta
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pydicom.dcmwrite(buf, header, enforce_file_format=False)
    return buf.getvalue()


def _floats(value: Any, count: int) -> tuple[float, ...] | None:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == count else None


def _frame_geometry(ds: Any, n_frames: int) -> tuple[tuple[float, ...] | None, np.ndarray | None,
                                                     tuple[float, float] | None]:
    """Orientation, per-frame positions and pixel spacing, from classic or enhanced headers."""
    orientation = _floats(ds.get("ImageOrientationPatient"), 6)
    spacing = _floats(ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing"), 2)
    position = _floats(ds.get("ImagePositionPatient"), 3)
    positions = None
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    shared = ds.get("SharedFunctionalGroupsSequence")
    if per_frame is not None and len(per_frame) == n_frames:
        found = []
        for item in per_frame:
            pos = item.get("PlanePositionSequence")
            found.append(_floats(pos[0].get("ImagePositionPatient"), 3) if pos else None)
        if all(p is not None for p in found):
            positions = np.array(found, dtype=np.float64)
    if shared:
        group = shared[0]
        if orientation is None and group.get("PlaneOrientationSequence"):
            orientation = _floats(group.PlaneOrientationSequence[0].get(
                "ImageOrientationPatient"), 6)
        if spacing is None and group.get("PixelMeasuresSequence"):
            spacing = _floats(group.PixelMeasuresSequence[0].get("PixelSpacing"), 2)
    if positions is None and position is not None and n_frames == 1:
        positions = np.array([position], dtype=np.float64)
    return orientation, positions, (spacing if spacing is None else (spacing[0], spacing[1]))


def _ensure_transfer_syntax(ds: Any) -> None:
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
    _ensure_transfer_syntax(ds)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pixels = ds.pixel_array
    except Exception as exc:
        raise InputError(f"{path}: pixel data cannot be decoded ({exc})") from None
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    pixels = np.asarray(pixels)
    if frames == 1 and pixels.ndim == 2:
        pixels = pixels[np.newaxis]
    if pixels.ndim != 3:
        raise UnsupportedError(f"{path}: unexpected pixel array shape {pixels.shape}")
    return pixels


def _rescale(ds: Any) -> tuple[float, float]:
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is None and ds.get("SharedFunctionalGroupsSequence"):
        group = ds.SharedFunctionalGroupsSequence[0]
        if group.get("PixelValueTransformationSequence"):
            item = group.PixelValueTransformationSequence[0]
            slope, intercept = item.get("RescaleSlope"), item.get("RescaleIntercept")
    return float(slope if slope is not None else 1.0), float(
        intercept if intercept is not None else 0.0
    )


def _image_from(datasets: list[tuple[Path, Any]], pixels: np.ndarray, layout: str) -> MedImage:
    path0, ds0 = datasets[0]
    slope, intercept = _rescale(ds0)
    if layout == "multiframe":
        orientation, positions, spacing = _frame_geometry(ds0, pixels.shape[0])
    else:
        orientation, _, spacing = _frame_geometry(ds0, 1)
        found = [_floats(ds.get("ImagePositionPatient"), 3) for _, ds in datasets]
        positions = np.array(found, dtype=np.float64) if all(found) else None
    thickness = ds0.get("SliceThickness")
    meta: dict[str, Any] = {
        "dicom_layout": layout,
        "dicom_filenames": [p.name for p, _ in datasets],
        "dicom_transfer_syntaxes": sorted({
            str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "")) for _, ds in
            datasets
        }),
        "bits_allocated": int(ds0.BitsAllocated),
        "pixel_representation": int(ds0.get("PixelRepresentation", 0)),
        "series_instance_uid": str(ds0.get("SeriesInstanceUID", "")),
    }
    attachments = {f"dicom/{i}": _header_bytes(ds) for i, (_, ds) in enumerate(datasets)}
    bits_stored = int(ds0.get("BitsStored", ds0.BitsAllocated))
    if pixels.dtype.itemsize * 8 < bits_stored:
        raise UnsupportedError(f"{path0}: bits stored {bits_stored} exceeds the decoded dtype")
    return MedImage(
        pixels=pixels,
        bits_stored=bits_stored,
        photometric=str(ds0.PhotometricInterpretation).strip(),
        rescale_slope=slope,
        rescale_intercept=intercept,
        pixel_spacing=spacing,
        slice_thickness=float(thickness) if thickness not in (None, "") else None,
        slice_positions=positions,
        orientation=orientation,
        modality=str(ds0.get("Modality", "")) or None,
        source_format="dicom",
        source_path=str(path0.parent if layout == "files" and len(datasets) > 1 else path0),
        meta=meta,
        attachments=attachments,
    )


def read_dicom_file(path: str | os.PathLike[str]) -> MedImage:
    """One DICOM file (single- or multi-frame) as a MedImage."""
    path = Path(path)
    ds = _read_dataset(path)
    _check_pixel_module(ds, path)
    pixels = _decode_pixels(ds, path)
    layout = "multiframe" if "NumberOfFrames" in ds else "files"
    return _image_from([(path, ds)], pixels, layout)


def _slice_order_key(ds: Any, path: Path) -> tuple[float, int, str]:
    """Position along the slice normal, then InstanceNumber, then file name."""
    orientation = _floats(ds.get("ImageOrientationPatient"), 6)
    position = _floats(ds.get("ImagePositionPatient"), 3)
    along = 0.0
    if orientation and position:
        normal = np.cross(orientation[:3], orientation[3:])
        along = float(np.dot(normal, position))
    try:
        number = int(ds.get("InstanceNumber", 0) or 0)
    except (TypeError, ValueError):
        number = 0
    return along, number, path.name


def read_dicom_series(paths: Iterable[str | os.PathLike[str]]) -> Iterator[MedImage]:
    """Group DICOM files into volumes (one per series and frame size) and read each one.

    Multi-frame files are images of their own. Headers are read first (no pixels), so memory
    holds one series at a time however large the folder is.
    """
    groups: dict[tuple[Any, ...], list[tuple[Path, Any]]] = defaultdict(list)
    singles: list[Path] = []
    for raw_path in paths:
        path = Path(raw_path)
        ds = _read_dataset(path, pixels=False)
        if "NumberOfFrames" in ds:
            singles.append(path)
            continue
        key = (
            str(ds.get("SeriesInstanceUID", "")),
            int(ds.get("Rows", 0) or 0),
            int(ds.get("Columns", 0) or 0),
            int(ds.get("BitsAllocated", 0) or 0),
            int(ds.get("PixelRepresentation", 0) or 0),
            _floats(ds.get("ImageOrientationPatient"), 6) or (),
        )
        groups[key].append((path, ds))
    for key in sorted(groups, key=lambda k: min(str(p) for p, _ in groups[k])):
        members = sorted(groups[key], key=lambda item: _slice_order_key(item[1], item[0]))
        yield _read_series(members)
    for path in singles:
        yield read_dicom_file(path)


def _read_series(members: list[tuple[Path, Any]]) -> MedImage:
    datasets = []
    slices = []
    for path, _ in members:
        ds = _read_dataset(path)
        _check_pixel_module(ds, path)
        slices.append(_decode_pixels(ds, path))
        del ds.PixelData  # the decoded array is all we keep; frees the encoded bytes
        datasets.append((path, ds))
    dtypes = {s.dtype for s in slices}
    if len(dtypes) != 1:
        raise UnsupportedError(f"{members[0][0].parent}: slices of one series differ in pixel type")
    return _image_from(datasets, np.concatenate(slices, axis=0), "files")


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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _pydicom().dcmread(io.BytesIO(blob), force=True)


def _as_list(value: Any) -> list[Any]:
    """A DICOM element value as a list, whether it is empty, single- or multi-valued."""
    if value is None or value == "":
        return []
    if isinstance(value, str | bytes | int | float):
        return [value]
    return list(value)


def _mark_lossy(ds: Any, lossy: dict[str, Any]) -> None:
    """PS3.3 C.7.6.1.1.5 bookkeeping for an image that went through a lossy step."""
    from pydicom.uid import generate_uid

    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionRatio = [
        *_as_list(ds.get("LossyImageCompressionRatio")), f"{float(lossy['ratio']):.4g}"
    ]
    method = lossy.get("dicom_method")
    if method:
        ds.LossyImageCompressionMethod = [*_as_list(ds.get("LossyImageCompressionMethod")), method]
    description = str(lossy.get("description", "")).strip()
    if description:
        old = str(ds.get("DerivationDescription", "")).strip()
        ds.DerivationDescription = (f"{old}; {description}" if old else description)[:1024]
    image_type = _as_list(ds.get("ImageType")) or ["DERIVED", "SECONDARY"]
    image_type[0] = "DERIVED"
    ds.ImageType = image_type
    ds.SOPInstanceUID = generate_uid()
    if getattr(ds, "file_meta", None) is not None:
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID


def build_datasets(image: MedImage) -> list[tuple[str, Any]]:
    """(file name, dataset) for every output file of ``image``."""
    from pydicom.uid import ExplicitVRLittleEndian

    layout = image.meta.get("dicom_layout", "files")
    names = image.meta.get("dicom_filenames") or []
    signed = image.signed
    lossy = image.meta.get("lossy_compression")
    if layout == "multiframe":
        groups = [(names[0] if names else "image.dcm", 0, image.pixels)]
    else:
        groups = [
            (names[i] if i < len(names) and len(names) == image.n_slices else f"{i:05d}.dcm", i,
             image.pixels[i])
            for i in range(image.n_slices)
        ]
    out = []
    for name, index, pixels in groups:
        ds = _header_dataset(image, index)
        bits_allocated = int(ds.get("BitsAllocated", max(8, image.pixels.dtype.itemsize * 8)))
        if layout == "multiframe":
            ds.NumberOfFrames = image.n_slices
        ds.Rows, ds.Columns = image.rows, image.cols
        ds.PixelRepresentation = int(signed)
        ds.PixelData = _pixel_bytes(np.asarray(pixels), bits_allocated, signed)
        ds["PixelData"].VR = "OB" if bits_allocated <= 8 else "OW"
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        if lossy:
            _mark_lossy(ds, lossy)
        out.append((name, ds))
    return out


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
            pydicom.dcmwrite(target, ds, enforce_file_format=True)

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
