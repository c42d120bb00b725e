"""MetaImage (``.mhd``/``.mha``) and NRRD (``.nrrd``/``.nhdr``) in and out with SimpleITK.

ITK keeps geometry in LPS patient coordinates for these formats, the same frame as DICOM, so the
direction matrix maps straight onto ImageOrientationPatient: its first column is the direction of
increasing column index (DICOM row cosine), its second that of increasing row index. Spacing,
origin, direction and the metadata dictionary are also kept verbatim in ``meta`` so writing back
restores them without round-off.

Output is always a single file: ``.mhd`` and ``.nhdr`` normally put the pixels in a second file
named after the header, but writers here get a temporary name (see ``_fs.atomic_path``) that is
renamed afterwards, which would leave the header pointing at a temporary data file. So ``.mhd``
and ``.nhdr`` get the header and the (compressed) pixels in one file; ITK and other readers go by
the header's content, not the extension.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from medcodec.errors import InputError, MedcodecError, OutputError, UnsupportedError
from medcodec.image import MedImage
from medcodec.io.nifti import axes_from_geometry, geometry_from_axes

#: Extension of the single-file variant written in place of a header + data-file pair.
_ATTACHED = {".mhd": ".mha", ".nhdr": ".nrrd"}
#: What write_itk writes: one file each (other ITK formats may write pairs, e.g. .hdr/.img).
_WRITE_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr")
#: MetaImage header fields that say how and where the pixels are stored: kept metadata from an
#: input file must never set them (``ElementDataFile = /some/path`` would point the output's
#: pixels at another file).
_METAIMAGE_FIELDS = frozenset(name.lower() for name in (
    "ObjectType", "ObjectSubType", "NDims", "DimSize", "HeaderSize", "HeaderSizes",
    "ElementType", "ElementDataFile", "ElementNumberOfChannels", "ElementSize",
    "ElementSpacing", "ElementByteOrderMSB", "BinaryData", "BinaryDataByteOrderMSB",
    "CompressedData", "CompressedDataSize", "Offset", "Position", "Origin", "TransformMatrix",
    "Rotation", "Orientation", "CenterOfRotation", "AnatomicalOrientation", "SequenceID",
    "ElementMin", "ElementMax", "ElementToIntensityFunctionSlope",
    "ElementToIntensityFunctionOffset"))
_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_ .()\[\]-]{0,127}")


def _sitk() -> Any:
    import SimpleITK as sitk

    return sitk


def read_itk(path: str | os.PathLike[str]) -> MedImage:
    """Read a 2-D or 3-D scalar integer MetaImage or NRRD file."""
    path = Path(path)
    sitk = _sitk()
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()  # header only: reject colour/float before reading pixels
    except Exception as exc:
        problem = _first_line(exc)
        raise InputError(f"{path}: not a readable MetaImage/NRRD file ({problem})") from None
    components = reader.GetNumberOfComponents()
    if components != 1:
        raise UnsupportedError(
            f"{path}: images with {components} components per pixel (vector/colour) are not "
            "supported; medcodec handles grayscale images"
        )
    pixel_type = sitk.GetPixelIDValueAsString(reader.GetPixelID())
    if "float" in pixel_type or "complex" in pixel_type:
        raise UnsupportedError(
            f"{path}: pixel type {pixel_type} is not supported: medcodec codes stored integers"
        )
    dimension = reader.GetDimension()
    if dimension not in (2, 3):
        raise UnsupportedError(
            f"{path}: {dimension}-D images are not supported (only 2-D images and 3-D volumes)"
        )
    try:
        itk_image = reader.Execute()
        pixels = sitk.GetArrayFromImage(itk_image)  # (z, y, x)
    except Exception as exc:
        problem = _first_line(exc)
        raise InputError(f"{path}: pixel data is truncated or corrupt ({problem})") from None
    spacing = tuple(float(v) for v in itk_image.GetSpacing())
    origin = tuple(float(v) for v in itk_image.GetOrigin())
    direction = tuple(float(v) for v in itk_image.GetDirection())
    metadata = {key: itk_image.GetMetaData(key) for key in itk_image.GetMetaDataKeys()}
    axes, origin3 = _axes_3d(spacing, origin, direction)
    n_slices = pixels.shape[0] if pixels.ndim == 3 else 1
    geometry = geometry_from_axes(axes, origin3, n_slices)
    if dimension == 2:
        geometry.pop("slice_thickness", None)  # a 2-D image has no slice thickness
    try:
        return MedImage(
            pixels=pixels,
            bits_stored=pixels.dtype.itemsize * 8,
            modality=None,
            source_format="itk",
            source_path=str(path),
            meta={
                "itk_spacing": list(spacing),
                "itk_origin": list(origin),
                "itk_direction": list(direction),
                "itk_metadata": metadata,
            },
            **geometry,
        )
    except UnsupportedError as exc:
        raise UnsupportedError(f"{path}: {exc}") from None


def _first_line(exc: Exception) -> str:
    """The one line of an ITK exception that says what failed, without the C++ location."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    errors = [line.split("ERROR:", 1)[1].strip() for line in lines if "ERROR:" in line]
    if errors:
        return re.sub(r"^\w+\(0x[0-9a-fA-F]+\):\s*", "", errors[-1])
    return lines[-1] if lines else type(exc).__name__


def _axes_3d(
    spacing: tuple[float, ...], origin: tuple[float, ...], direction: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Voxel step vectors (columns) and origin in 3-D, padding 2-D geometry with z = 0."""
    dim = len(spacing)
    matrix = np.eye(3)
    matrix[:dim, :dim] = np.asarray(direction, dtype=np.float64).reshape(dim, dim)
    steps = np.ones(3)
    steps[:dim] = spacing
    origin3 = np.zeros(3)
    origin3[:dim] = origin
    return matrix * steps[np.newaxis], origin3


def _geometry_for(image: MedImage, dimension: int) -> tuple[list[float], list[float], list[float]]:
    """Spacing, origin, direction to write: the kept ITK values when they still describe this
    image (same dimension, same first-slice position), otherwise derived from its geometry."""
    spacing = image.meta.get("itk_spacing")
    origin = image.meta.get("itk_origin")
    direction = image.meta.get("itk_direction")
    if (
        spacing is not None and origin is not None and direction is not None
        and len(spacing) == dimension and len(origin) == dimension
        and len(direction) == dimension * dimension
    ):
        _, origin3 = _axes_3d(tuple(spacing), tuple(origin), tuple(direction))
        positions = image.slice_positions
        if positions is None or np.allclose(positions[0], origin3, atol=1e-4):
            return [float(v) for v in spacing], [float(v) for v in origin], [
                float(v) for v in direction
            ]
    axes, origin3, _ = axes_from_geometry(image)
    steps = np.linalg.norm(axes, axis=0)
    steps[steps == 0] = 1.0
    matrix = axes / steps[np.newaxis]
    if dimension == 2:
        return list(steps[:2]), list(origin3[:2]), list(matrix[:2, :2].ravel())
    return list(steps), list(origin3), list(matrix.ravel())


def _metadata_for(image: MedImage, suffix: str) -> dict[str, str]:
    """Metadata keys worth writing back.

    ``ITK_*`` keys are made by ITK's readers (some hold an unprintable placeholder with a newline
    that would break a text header); ``NRRD_*`` keys only mean something to NRRD files.
    """
    kept = image.meta.get("itk_metadata") or {}
    if not isinstance(kept, dict):
        return {}
    out = {}
    for key, value in kept.items():
        key, value = str(key), str(value)
        if key.startswith("ITK_") or not _KEY.fullmatch(key) or any(c in value for c in "\r\n\0"):
            continue
        if key.startswith("NRRD_") and suffix not in (".nrrd", ".nhdr"):
            continue
        if suffix in (".mha", ".mhd") and key.lower() in _METAIMAGE_FIELDS:
            continue  # a field ITK writes itself: a second copy could redirect the pixels
        out[key] = value
    return out


def write_itk(image: MedImage, path: str | os.PathLike[str]) -> None:
    """Write ``image`` as MetaImage or NRRD (by extension), compressed losslessly."""
    sitk = _sitk()
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _WRITE_SUFFIXES:
        raise OutputError(f"{path}: MetaImage/NRRD output needs a .mha, .mhd, .nrrd or .nhdr "
                          "name (one file)")
    kept_dims = len(image.meta.get("itk_spacing") or ())
    two_d = image.n_slices == 1 and (kept_dims == 2 or (kept_dims == 0 and image.slice_positions
                                                         is None))
    try:
        itk_image = sitk.GetImageFromArray(image.pixels[0] if two_d else image.pixels)
        spacing, origin, direction = _geometry_for(image, 2 if two_d else 3)
        itk_image.SetSpacing(spacing)
        itk_image.SetOrigin(origin)
        itk_image.SetDirection(direction)
        for key, value in _metadata_for(image, suffix).items():
            itk_image.SetMetaData(key, value)
        if suffix in _ATTACHED:
            _write_attached(sitk, itk_image, path, _ATTACHED[suffix])
        else:
            sitk.WriteImage(itk_image, str(path), True)
    except MedcodecError:
        raise
    except Exception as exc:
        raise OutputError(f"{path}: cannot write {suffix} file ({_first_line(exc)})") from None


def _write_attached(sitk: Any, itk_image: Any, path: Path, single_suffix: str) -> None:
    """Write a one-file variant beside ``path`` and move it onto ``path`` (see module doc)."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=single_suffix,
                                    dir=path.parent if str(path.parent) else ".")
    os.close(fd)
    try:
        sitk.WriteImage(itk_image, tmp_name, True)
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
