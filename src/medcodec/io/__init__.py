"""Reading and writing medical images: every format in, one :class:`~medcodec.image.MedImage` out.

``read`` returns exactly one image or volume; ``read_all`` walks files and folders and yields every
image it finds (one per DICOM series, per NIfTI/MetaImage/NRRD/PNG/TIFF/NPY file, per container).
The format comes from the file content where it can (DICOM, container) and from the extension
otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from medcodec._fs import atomic_path
from medcodec.errors import InputError, OutputError
from medcodec.image import MedImage

#: Extension -> format name, longest suffix first.
_EXTENSIONS = {
    ".nii.gz": "nifti",
    ".nii": "nifti",
    ".mhd": "itk",
    ".mha": "itk",
    ".nrrd": "itk",
    ".nhdr": "itk",
    ".png": "png",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".npy": "npy",
    ".dcm": "dicom",
    ".dicom": "dicom",
    ".mdcx": "container",
}
READ_FORMATS = ("dicom", "nifti", "itk", "png", "tiff", "npy", "container")
WRITE_FORMATS = ("dicom", "nifti", "png", "npy", "tiff", "itk")


#: Readers of formats whose code lives outside io, registered by the room that owns them (the
#: package root registers the ``.mdcx`` container's): io never imports the pipeline.
_REGISTERED_READERS: dict[str, Callable[[Path], MedImage]] = {}


def register_reader(fmt: str, reader: Callable[[Path], MedImage]) -> None:
    """Let :func:`read_file` read format ``fmt`` (as :func:`detect_format` names it)."""
    _REGISTERED_READERS[fmt] = reader


def format_from_name(path: str | os.PathLike[str]) -> str | None:
    name = str(path).lower()
    for ext in sorted(_EXTENSIONS, key=len, reverse=True):
        if name.endswith(ext):
            return _EXTENSIONS[ext]
    return None


def detect_format(path: str | os.PathLike[str]) -> str | None:
    """The format of an existing file, by content first (DICOM preamble, container magic)."""
    from medcodec.container import looks_like_container
    from medcodec.io.dicom import looks_like_dicom

    if looks_like_container(path):
        return "container"
    by_name = format_from_name(path)
    if by_name not in (None, "dicom") and by_name != "container":
        return by_name
    if looks_like_dicom(path):
        return "dicom"
    return by_name if by_name != "dicom" else None


def read_file(path: str | os.PathLike[str]) -> MedImage:
    """Read one file (not a folder) into a MedImage."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    fmt = detect_format(path)
    if fmt == "dicom":
        from medcodec.io.dicom import read_dicom_file

        return read_dicom_file(path)
    if fmt == "nifti":
        from medcodec.io.nifti import read_nifti

        return read_nifti(path)
    if fmt == "itk":
        from medcodec.io.itk import read_itk

        return read_itk(path)
    if fmt in ("png", "tiff"):
        from medcodec.io.raster import read_raster

        return read_raster(path)
    if fmt == "npy":
        from medcodec.io.npy import read_npy

        return read_npy(path)
    if fmt in _REGISTERED_READERS:
        return _REGISTERED_READERS[fmt](path)
    raise InputError(f"{path}: unrecognised file format (not DICOM, NIfTI, MHD/MHA, NRRD, "
                     "PNG, TIFF, NPY or .mdcx)")


def walk_files(root: str | os.PathLike[str], skip: tuple[str, ...] = (".",),
               follow_links: bool = False) -> Iterator[Path]:
    """Every file under ``root`` in sorted order, passing over files and folders whose names
    start with one of ``skip`` (hidden ones by default): the one folder walk of io, the
    bench's dataset discovery and batch."""
    for folder, dirs, files in os.walk(root, followlinks=follow_links):
        dirs[:] = sorted(d for d in dirs if not d.startswith(skip))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(folder) / name


def _is_sidecar(path: Path) -> bool:
    """Files that belong to another file (MetaImage .raw data) and must not be read alone."""
    return path.suffix.lower() in (".raw", ".zraw") and (
        path.with_suffix(".mhd").exists() or path.with_suffix(".MHD").exists()
    )


def read_all(paths: Iterable[str | os.PathLike[str]],
             skipped: list[Path] | None = None) -> Iterator[MedImage]:
    """Yield every image in ``paths``; folders are walked and DICOM files grouped by series.

    DICOM files given one by one are grouped too, so ``a.dcm b.dcm c.dcm`` of one series is one
    volume, as it would be when their folder is given. DICOM objects that are not images
    (DICOMDIR, SR, RT plans) found in folders are passed over and listed in ``skipped``; named
    one by one they are an error.
    """
    from medcodec.io.dicom import read_dicom_series

    dicom_files: list[Path] = []
    folder_dicom: list[Path] = []
    others: list[Path] = []
    for item in paths:
        item = Path(item)
        if item.is_dir():
            found = 0
            for p in walk_files(item):
                fmt = detect_format(p)
                if fmt == "dicom":
                    folder_dicom.append(p)
                    found += 1
                elif fmt is not None and not _is_sidecar(p):
                    others.append(p)
                    found += 1
            if not found:
                raise InputError(f"{item}: no readable images in this folder")
        elif item.is_file():
            if detect_format(item) == "dicom":
                dicom_files.append(item)
            else:
                others.append(item)
        else:
            raise InputError(f"{item}: no such file or folder")
    passed_over: list[Path] = []
    # one series may span the folders and the files named alone
    yield from read_dicom_series(folder_dicom + dicom_files, skipped=passed_over)
    named = set(dicom_files).intersection(passed_over)
    if named:
        raise InputError(f"{sorted(named)[0]}: not an image (a DICOM object without pixel data)")
    if skipped is not None:
        skipped.extend(passed_over)
    for p in others:
        yield read_file(p)


def read(path: str | os.PathLike[str]) -> MedImage:
    """Read exactly one image or volume (a file, or a folder holding one DICOM series)."""
    images = list(read_all([path]))
    if len(images) != 1:
        raise InputError(
            f"{path}: holds {len(images)} images/series; read them with read_all() or pass one"
        )
    return images[0]


def write(
    image: MedImage,
    path: str | os.PathLike[str],
    format: str | None = None,
    force: bool = False,
) -> list[Path]:
    """Write ``image`` to ``path`` atomically; returns the files written.

    DICOM output of a multi-file series goes to a folder (one file per slice); every other format
    writes one file. Nothing is left behind if writing fails half-way.
    """
    path = Path(path)
    fmt = format or format_from_name(path)
    if fmt is None:
        if image.source_format == "dicom":
            fmt = "dicom"
        else:
            raise OutputError(f"{path}: cannot tell the output format from the name; use --format")
    if fmt not in WRITE_FORMATS:
        raise OutputError(f"{path}: cannot write format {fmt!r} (choose from {WRITE_FORMATS})")
    if fmt == "dicom":
        from medcodec.io.dicom import write_dicom

        return write_dicom(image, path, force=force)
    writer = _writer(fmt)
    with atomic_path(path, force) as tmp:
        writer(image, tmp)
    return [path]


def _writer(fmt: str) -> Callable[[MedImage, Path], None]:
    if fmt == "nifti":
        from medcodec.io.nifti import write_nifti

        return write_nifti
    if fmt == "itk":
        from medcodec.io.itk import write_itk

        return write_itk
    if fmt in ("png", "tiff"):
        from medcodec.io.raster import write_raster

        return write_raster
    from medcodec.io.npy import write_npy

    return write_npy


__all__ = ["READ_FORMATS", "WRITE_FORMATS", "detect_format", "read", "read_all", "read_file",
           "register_reader", "walk_files", "write"]
