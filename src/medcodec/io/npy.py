"""NumPy ``.npy`` in and out: the plain way to hand arrays to and from Python code.

Pickled content is never loaded (``allow_pickle=False``): unpickling a file can run arbitrary
code, and medcodec reads files from anywhere. Arrays are 2-D ``(rows, cols)`` or 3-D
``(slices, rows, cols)`` integers; there is no geometry in this format.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from medcodec.errors import InputError, OutputError, UnsupportedError
from medcodec.image import MedImage


def read_npy(path: str | os.PathLike[str]) -> MedImage:
    """Read a 2-D or 3-D integer array saved with ``np.save``."""
    path = Path(path)
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object" in str(exc).lower():
            raise InputError(
                f"{path}: holds pickled Python objects, which are not loaded for safety; "
                "save a plain integer array with np.save"
            ) from None
        raise InputError(f"{path}: not a readable .npy file ({exc})") from None
    except Exception as exc:
        raise InputError(f"{path}: not a readable .npy file ({exc})") from None
    if not isinstance(array, np.ndarray):  # np.load returns an NpzFile for zip archives
        raise InputError(f"{path}: not a single .npy array (an .npz archive?)")
    if array.ndim not in (2, 3):
        raise UnsupportedError(
            f"{path}: array of shape {array.shape} is neither a 2-D image (rows, cols) nor a "
            "3-D volume (slices, rows, cols)"
        )
    if array.dtype.kind not in "uib":
        raise UnsupportedError(
            f"{path}: pixels of type {array.dtype} are not supported: medcodec codes stored "
            "integers (convert floating-point data to integers with a known slope/intercept)"
        )
    try:
        return MedImage(
            pixels=np.ascontiguousarray(array),
            bits_stored=array.dtype.itemsize * 8,
            source_format="npy",
            source_path=str(path),
        )
    except UnsupportedError as exc:
        raise UnsupportedError(f"{path}: {exc}") from None


def write_npy(image: MedImage, path: str | os.PathLike[str]) -> None:
    """Save the stored pixels; a single slice is saved 2-D, as a user would expect."""
    path = Path(path)
    pixels = image.pixels[0] if image.n_slices == 1 else image.pixels
    try:
        with open(path, "wb") as fh:  # a file object: np.save would append ".npy" to a name
            np.save(fh, np.ascontiguousarray(pixels), allow_pickle=False)
    except Exception as exc:
        raise OutputError(f"{path}: cannot write .npy ({exc})") from None
