"""NIfTI-1/2 (``.nii``, ``.nii.gz``) in and out with nibabel, keeping stored integers and header.

Reading keeps the integers as stored on disk (never nibabel's float-scaled data); scl_slope and
scl_inter become the rescale slope/intercept. The header is kept verbatim in
``attachments["nifti/header"]`` (and extensions, if any, in ``"nifti/extensions"``) so a read ->
compress -> decompress -> write cycle gives back the same header, not one nibabel made up.

Axes: NIfTI arrays are ``(x, y, z)`` with x fastest on disk; MedImage pixels are
``(slices, rows, cols)``, so pixels = data.transpose(2, 1, 0) and row = y, column = x.
NIfTI world space is RAS, DICOM patient space is LPS: x and y change sign between the two.

The module also holds the geometry helpers shared with :mod:`medcodec.io.itk`.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from medcodec.errors import InputError, MedcodecError, OutputError, UnsupportedError
from medcodec.image import MedImage

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])
_EXT_FLAG = 4  # the 4-byte "extensions follow" flag after a single-file header


# --- geometry shared with the ITK module ----------------------------------------------------------


def geometry_from_axes(axes: np.ndarray, origin: np.ndarray, n_slices: int) -> dict[str, Any]:
    """MedImage geometry fields from voxel step vectors in LPS millimetres.

    ``axes`` holds one column per array axis (column index, row index, slice index), each the
    step in patient space between neighbouring voxels; ``origin`` is the centre of voxel 0.
    Returns ``{}`` when the steps are degenerate (zero/NaN), so no nonsense spacing escapes.
    """
    axes = np.asarray(axes, dtype=np.float64).reshape(3, 3)
    origin = np.asarray(origin, dtype=np.float64).reshape(3)
    norms = np.linalg.norm(axes, axis=0)
    if not (np.all(np.isfinite(axes)) and np.all(np.isfinite(origin))) or min(norms[:2]) <= 0:
        return {}
    row_cos = axes[:, 0] / norms[0]
    col_cos = axes[:, 1] / norms[1]
    positions = origin[np.newaxis] + np.arange(n_slices)[:, np.newaxis] * axes[:, 2][np.newaxis]
    return {
        "pixel_spacing": (float(norms[1]), float(norms[0])),
        "slice_thickness": float(norms[2]) if norms[2] > 0 else None,
        "orientation": tuple(float(v) + 0.0 for v in (*row_cos, *col_cos)),
        "slice_positions": positions,
    }


def axes_from_geometry(image: MedImage) -> tuple[np.ndarray, np.ndarray, bool]:
    """Voxel step vectors (columns) and origin in LPS mm from MedImage geometry.

    Missing pieces default to unit spacing, identity orientation and origin 0. The flag says
    whether the image had real patient geometry (orientation and positions), so writers can mark
    the coordinates as scanner-based rather than arbitrary.
    """
    row_sp, col_sp = image.pixel_spacing or (1.0, 1.0)
    if image.orientation is not None and len(image.orientation) == 6:
        row_cos = np.asarray(image.orientation[:3], dtype=np.float64)
        col_cos = np.asarray(image.orientation[3:], dtype=np.float64)
    else:
        row_cos, col_cos = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    normal = np.cross(row_cos, col_cos)
    thickness = image.slice_thickness if image.slice_thickness else 1.0
    step = normal * thickness
    positions = image.slice_positions
    origin = np.zeros(3)
    if positions is not None and len(positions) >= 1:
        origin = np.asarray(positions[0], dtype=np.float64)
        if len(positions) >= 2:
            between = (positions[-1] - positions[0]) / (len(positions) - 1)
            if np.linalg.norm(between) > 0:
                step = between
    axes = np.column_stack([row_cos * float(col_sp), col_cos * float(row_sp), step])
    located = image.orientation is not None and positions is not None
    return axes, origin, located


def _strip_ones(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape without trailing length-1 axes: (x, y, 1) and (x, y) hold the same pixels."""
    shape = tuple(int(s) for s in shape)
    while shape and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def _rescale(slope: float, inter: float) -> tuple[float, float]:
    """NIfTI rule: a NaN, infinite or zero slope means no scaling at all (intercept ignored)."""
    if not math.isfinite(slope) or slope == 0:
        return 1.0, 0.0
    return float(slope), float(inter) if math.isfinite(inter) else 0.0


# --- reading --------------------------------------------------------------------------------------


def _raw_header(path: Path, header_class: Any) -> tuple[Any, bytes, bytes]:
    """The header as stored on disk, with its raw bytes and raw extension bytes.

    nibabel's loaded header has scl_slope/inter and vox_offset "consumed" (reset), so the
    attachment must come from the file itself.
    """
    from nibabel.openers import ImageOpener

    with ImageOpener(str(path)) as fh:
        raw = fh.read(header_class.template_dtype.itemsize)
        flag = fh.read(_EXT_FLAG)
        hdr = header_class.from_fileobj(io.BytesIO(raw + b"\0" * _EXT_FLAG), check=False)
        extensions = b""
        offset = int(hdr["vox_offset"])
        if len(flag) == _EXT_FLAG and flag[0] != 0 and offset > len(raw) + _EXT_FLAG:
            extensions = fh.read(offset - len(raw) - _EXT_FLAG)
    return hdr, raw, extensions


def read_nifti(path: str | os.PathLike[str]) -> MedImage:
    """Read a 2-D or 3-D integer NIfTI file into a MedImage of its stored integers."""
    import nibabel as nib

    path = Path(path)
    try:
        img = nib.load(str(path), mmap=False)
    except Exception as exc:
        raise InputError(f"{path}: not a readable NIfTI file ({exc})") from None
    if not isinstance(img, nib.Nifti1Image):  # Nifti2Image is a subclass
        raise UnsupportedError(f"{path}: {type(img).__name__} files are not supported")
    dtype = img.header.get_data_dtype()
    if dtype.kind not in "uib":
        raise UnsupportedError(
            f"{path}: NIfTI data type {dtype} is not supported: medcodec codes stored integers "
            "(floating-point, complex and RGB volumes cannot be coded losslessly as integers)"
        )
    shape = img.shape
    core = _strip_ones(shape)
    if len(core) > 3:
        raise UnsupportedError(
            f"{path}: {len(shape)}-D NIfTI of shape {shape} is not supported; medcodec handles "
            "2-D images and 3-D volumes (split 4-D series into 3-D volumes first)"
        )
    try:
        hdr, raw, extensions = _raw_header(path, type(img.header))
        data = np.asarray(img.dataobj.get_unscaled())
    except Exception as exc:
        raise InputError(f"{path}: NIfTI file is truncated or corrupt ({exc})") from None
    data = data.reshape((*core, 1, 1, 1)[:3]) if len(core) < 3 else data.reshape(core)
    pixels = np.ascontiguousarray(data.transpose(2, 1, 0))
    affine = np.asarray(img.affine, dtype=np.float64)
    slope, inter = _rescale(float(hdr["scl_slope"]), float(hdr["scl_inter"]))
    geometry = geometry_from_axes(
        _RAS_TO_LPS @ affine[:3, :3], _RAS_TO_LPS @ affine[:3, 3], pixels.shape[0]
    )
    attachments = {"nifti/header": raw}
    if extensions:
        attachments["nifti/extensions"] = extensions
    try:
        return MedImage(
            pixels=pixels,
            bits_stored=pixels.dtype.itemsize * 8,
            rescale_slope=slope,
            rescale_intercept=inter,
            modality=None,
            source_format="nifti",
            source_path=str(path),
            meta={"nifti_affine": affine.tolist()},
            attachments=attachments,
            **geometry,
        )
    except UnsupportedError as exc:
        raise UnsupportedError(f"{path}: {exc}") from None


# --- writing --------------------------------------------------------------------------------------


def _affine_from_geometry(image: MedImage) -> tuple[np.ndarray, bool]:
    """RAS affine from DICOM-style geometry (LPS -> RAS: negate x and y).

    An image with no orientation and no positions (PNG, NPY) has no patient frame to convert:
    it gets a plain scaling affine (identity without spacing), as nibabel would give it.
    """
    if image.orientation is None and image.slice_positions is None:
        row_sp, col_sp = image.pixel_spacing or (1.0, 1.0)
        return np.diag([col_sp, row_sp, image.slice_thickness or 1.0, 1.0]), False
    axes, origin, located = axes_from_geometry(image)
    affine = np.eye(4)
    affine[:3, :3] = _RAS_TO_LPS @ axes
    affine[:3, 3] = _RAS_TO_LPS @ origin
    return affine, located


def _header_from_attachment(image: MedImage) -> Any | None:
    """The kept header (NIfTI-1 or -2 by its size), or None when the image has none."""
    import nibabel as nib

    raw = image.attachments.get("nifti/header")
    if raw is None:
        return None
    header_class = {348: nib.Nifti1Header, 540: nib.Nifti2Header}.get(len(raw))
    if header_class is None:
        return None
    extensions = image.attachments.get("nifti/extensions", b"")
    flag = b"\x01\x00\x00\x00" if extensions else b"\x00\x00\x00\x00"
    try:
        return header_class.from_fileobj(io.BytesIO(raw + flag + extensions), check=False)
    except Exception:
        return None  # a damaged attachment must not stop the pixels from being written


def write_nifti(image: MedImage, path: str | os.PathLike[str]) -> None:
    """Write ``image`` as NIfTI; with a kept header the file gets that header back unchanged."""
    import nibabel as nib

    path = Path(path)
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        # nibabel would write a .hdr/.img pair (or guess a format): two files, one of them
        # under a name nobody asked for
        raise OutputError(f"{path}: NIfTI output is one .nii or .nii.gz file; give such a name")
    data = image.pixels.transpose(2, 1, 0)  # (x, y, z)
    slope, inter = image.rescale_slope, image.rescale_intercept
    hdr = _header_from_attachment(image)
    try:
        if hdr is not None and _strip_ones(hdr.get_data_shape()) == _strip_ones(data.shape):
            out = _image_with_header(nib, hdr, data, slope, inter)
        else:
            out = _image_from_geometry(nib, hdr, image, data)
            out.header["scl_slope"] = slope
            out.header["scl_inter"] = inter
        nib.save(out, str(path))
    except MedcodecError:
        raise
    except Exception as exc:
        raise OutputError(f"{path}: cannot write NIfTI ({exc})") from None


def _image_with_header(nib: Any, hdr: Any, data: np.ndarray, slope: float, inter: float) -> Any:
    """The image rebuilt on its own header: same dtype, sform/qform, pixdim, scaling, descrip."""
    image_class = nib.Nifti2Image if isinstance(hdr, nib.Nifti2Header) else nib.Nifti1Image
    raw_slope, raw_inter = float(hdr["scl_slope"]), float(hdr["scl_inter"])
    if _rescale(raw_slope, raw_inter) != (slope, inter):  # rescale was changed since reading
        raw_slope, raw_inter = slope, inter
    if hdr.get_data_dtype().newbyteorder("=") != data.dtype.newbyteorder("="):
        hdr.set_data_dtype(data.dtype.newbyteorder(hdr.endianness))
    # affine=None keeps the header's sform and qform exactly as they were.
    out = image_class(data.reshape(hdr.get_data_shape()), None, hdr)
    # The constructor resets these "consumable" fields; put the stored values back, so that
    # nibabel writes them as they are instead of recomputing a scaling.
    out.header["scl_slope"] = raw_slope
    out.header["scl_inter"] = raw_inter
    return out


def _image_from_geometry(nib: Any, hdr: Any | None, image: MedImage, data: np.ndarray) -> Any:
    """A new image whose affine comes from MedImage geometry (or identity when it has none).

    A kept header of another shape (one slice written out of a volume) still supplies the
    descriptive fields; its shape, dtype and affine are replaced.
    """
    affine, located = _affine_from_geometry(image)
    if hdr is None:
        out = nib.Nifti1Image(data, affine, dtype=data.dtype)
        out.header.set_xyzt_units("mm")
        if located:
            out.set_sform(affine, code="scanner")
            out.set_qform(affine, code="scanner")
        return out
    image_class = nib.Nifti2Image if isinstance(hdr, nib.Nifti2Header) else nib.Nifti1Image
    hdr = hdr.copy()
    hdr.set_data_shape(data.shape)
    hdr.set_data_dtype(data.dtype.newbyteorder(hdr.endianness))
    out = image_class(data, affine, hdr)
    out.set_sform(affine)
    out.set_qform(affine)
    return out
