"""medcodec: compression of medical images at native bit depth, lossless to learned lossy.

Quick use::

    import medcodec
    image = medcodec.read("series_folder/")          # DICOM, NIfTI, MHD/MHA, NRRD, PNG, TIFF, NPY
    data = medcodec.compress(image, mode="lossless")  # bytes of a .mdcx container
    back = medcodec.decompress(data)                  # MedImage, pixels identical
    medcodec.write(back, "out_folder/")               # DICOM with every original tag

medcodec is not a medical device; see the README before using lossy modes clinically.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from medcodec._version import __version__
from medcodec.errors import (
    CodecUnavailableError,
    CorruptStreamError,
    InputError,
    MedcodecError,
    OutputError,
    SettingError,
    UnsupportedError,
)
from medcodec.image import MedImage
from medcodec.io import register_reader as _register_reader


def _read_container(path: os.PathLike[str]) -> MedImage:
    from medcodec.pipeline import decompress as _decompress

    return _decompress(path)


_register_reader("container", _read_container)  # io reads .mdcx through the pipeline's decoder


def read(path: str | os.PathLike[str]) -> MedImage:
    """Read one image or volume (a file, or a folder holding one DICOM series)."""
    from medcodec.io import read as _read

    return _read(path)


def read_all(*paths: str | os.PathLike[str]) -> list[MedImage]:
    """Every image under ``paths`` (one per DICOM series or file)."""
    from medcodec.io import read_all as _read_all

    return list(_read_all(paths))


def write(image: MedImage, path: str | os.PathLike[str], format: str | None = None,
          force: bool = False) -> list[os.PathLike[str]]:
    """Write an image as DICOM, NIfTI, PNG, TIFF, MHA/NRRD or NPY (chosen by extension)."""
    from medcodec.io import write as _write

    return _write(image, path, format=format, force=force)


def compress(source: MedImage | np.ndarray | str | os.PathLike[str], codec: str = "auto",
             mode: str = "lossless", max_error: int | None = None,
             quality: float | None = None, **kwargs: Any) -> bytes:
    """Compress an image, an integer array or a file into container bytes."""
    from medcodec.pipeline import compress as _compress

    if isinstance(source, np.ndarray):
        source = MedImage(source, bits_stored=np.dtype(source.dtype).itemsize * 8)
    elif not isinstance(source, MedImage):
        source = read(source)
    return _compress(source, codec=codec, mode=mode, max_error=max_error, quality=quality,
                     **kwargs)


def decompress(source: bytes | str | os.PathLike[str], slices: list[int] | None = None) -> MedImage:
    """Decode container bytes or a ``.mdcx`` file; ``slices`` decodes only those slices."""
    from medcodec.pipeline import decompress as _decompress

    return _decompress(source, slices)


__all__ = [
    "CodecUnavailableError",
    "CorruptStreamError",
    "InputError",
    "MedImage",
    "MedcodecError",
    "OutputError",
    "SettingError",
    "UnsupportedError",
    "__version__",
    "compress",
    "decompress",
    "read",
    "read_all",
    "write",
]
