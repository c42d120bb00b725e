"""Grayscale PNG (imagecodecs) and TIFF (tifffile) in and out.

These formats carry pixels but no patient geometry, so images read from them have none. PNG holds
one 2-D unsigned image of 8 or 16 bits; TIFF holds stacks (one page per slice), signed data and
up to 32 bits, which makes it the raster format for volumes. Colour is refused rather than
silently converted: converting RGB to gray would change the stored values.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from medcodec.errors import InputError, MedcodecError, OutputError, UnsupportedError
from medcodec.image import MedImage

_PNG = (".png",)
_TIFF = (".tif", ".tiff")


def read_raster(path: str | os.PathLike[str]) -> MedImage:
    """Read a grayscale PNG (one image) or TIFF (one image or a stack of pages)."""
    path = Path(path)
    suffix = path.suffix.lower()
    photometric = "MONOCHROME2"
    if suffix in _PNG:
        pixels = _read_png(path)
    elif suffix in _TIFF:
        pixels, photometric = _read_tiff(path)
    else:
        raise InputError(f"{path}: not a PNG or TIFF file name")
    if pixels.dtype.kind == "f":
        raise UnsupportedError(
            f"{path}: floating-point pixels ({pixels.dtype}) are not supported: medcodec codes "
            "stored integers"
        )
    try:
        return MedImage(
            pixels=pixels,
            bits_stored=pixels.dtype.itemsize * 8,
            photometric=photometric,
            source_format="png" if suffix in _PNG else "tiff",
            source_path=str(path),
        )
    except UnsupportedError as exc:
        raise UnsupportedError(f"{path}: {exc}") from None


def _read_png(path: Path) -> np.ndarray:
    import imagecodecs

    try:
        data = path.read_bytes()
        pixels = imagecodecs.png_decode(data)
    except Exception as exc:
        raise InputError(f"{path}: not a readable PNG file ({exc})") from None
    if pixels.ndim == 3:  # gray+alpha, RGB, RGBA; palette images arrive expanded to RGB
        pixels = _single_channel(pixels, path)
    return pixels


def _read_tiff(path: Path) -> tuple[np.ndarray, str]:
    import tifffile

    try:
        with _quiet_tifffile(), tifffile.TiffFile(path) as tif:
            series = tif.series
            if not series:
                raise InputError(f"{path}: TIFF file holds no image")
            page = series[0].keyframe
            photometric = int(page.photometric)
            extrasamples = tuple(int(v) for v in getattr(page, "extrasamples", ()) or ())
            if len(series) == 1:
                pixels, axes = series[0].asarray(), series[0].axes
            else:  # pages of one stack that tifffile could not group: stack them ourselves
                shapes = {(s.shape, s.dtype, s.axes) for s in series}
                if len(shapes) != 1 or len(series[0].shape) != 2:
                    raise UnsupportedError(
                        f"{path}: TIFF holds {len(series)} images of different shapes/types; "
                        "only one image or a stack of equal pages is supported"
                    )
                pixels, axes = np.stack([s.asarray() for s in series]), "Q" + series[0].axes
    except MedcodecError:
        raise
    except Exception as exc:
        raise InputError(f"{path}: not a readable TIFF file ({exc})") from None
    if photometric == tifffile.PHOTOMETRIC.PALETTE:
        raise UnsupportedError(f"{path}: colour images are not supported (palette TIFF)")
    if "S" in axes:  # samples per pixel: colour or extra channels
        pixels = _single_channel(np.moveaxis(pixels, axes.index("S"), -1), path,
                                 alpha=bool(extrasamples))
        axes = axes.replace("S", "")
    if pixels.ndim > 3:  # drop length-1 axes in front of rows/cols (e.g. T=1 in "TZYX")
        leading = tuple(n for n in pixels.shape[:-2] if n != 1)
        pixels = pixels.reshape(leading + pixels.shape[-2:])
    if pixels.ndim > 3:
        raise UnsupportedError(
            f"{path}: TIFF of shape {pixels.shape} (axes {axes}) has more than 3 dimensions; "
            "only 2-D images and stacks of 2-D pages are supported"
        )
    inverted = photometric == tifffile.PHOTOMETRIC.MINISWHITE
    return np.ascontiguousarray(pixels), "MONOCHROME1" if inverted else "MONOCHROME2"


@contextlib.contextmanager
def _quiet_tifffile() -> Iterator[None]:
    """tifffile logs warnings about damaged files; the InputError we raise says it already."""
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _single_channel(pixels: np.ndarray, path: Path, alpha: bool = True) -> np.ndarray:
    """The gray values of a multi-channel array (channels last), or UnsupportedError.

    A fully opaque alpha channel carries nothing and is dropped; the remaining channels must be
    identical (gray stored as RGB), otherwise the image is really in colour.
    """
    channels = pixels.shape[-1]
    if alpha and channels in (2, 4):
        opaque = np.iinfo(pixels.dtype).max if pixels.dtype.kind in "ui" else 1.0
        if np.all(pixels[..., -1] == opaque):
            pixels = pixels[..., :-1]
    first = pixels[..., 0]
    if all(np.array_equal(first, pixels[..., c]) for c in range(1, pixels.shape[-1])):
        return np.ascontiguousarray(first)
    raise UnsupportedError(
        f"{path}: colour images are not supported ({channels} channels that differ); "
        "medcodec handles grayscale images"
    )


def write_raster(image: MedImage, path: str | os.PathLike[str]) -> None:
    """Write ``image`` as PNG (one unsigned 8/16-bit slice) or TIFF (one page per slice)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in _PNG:
        _write_png(image, path)
    elif suffix in _TIFF:
        _write_tiff(image, path)
    else:
        raise OutputError(f"{path}: not a PNG or TIFF file name")


def _write_png(image: MedImage, path: Path) -> None:
    import imagecodecs

    if image.n_slices != 1:
        raise OutputError(
            f"{path}: PNG holds one 2-D image but this image has {image.n_slices} slices; "
            "write it as .tiff, .npy, NIfTI, MetaImage/NRRD or DICOM instead"
        )
    if image.signed:
        raise OutputError(
            f"{path}: PNG cannot hold signed pixels ({image.pixels.dtype}); "
            "use .npy, .tiff, NIfTI or DICOM instead"
        )
    if image.pixels.dtype.itemsize > 2:
        raise OutputError(
            f"{path}: PNG holds at most 16 bits per pixel, this image is {image.pixels.dtype}; "
            "use .npy, .tiff, NIfTI or DICOM instead"
        )
    try:
        path.write_bytes(imagecodecs.png_encode(np.ascontiguousarray(image.pixels[0])))
    except Exception as exc:
        raise OutputError(f"{path}: cannot write PNG ({exc})") from None


def _write_tiff(image: MedImage, path: Path) -> None:
    import tifffile

    pixels: Any = image.pixels[0] if image.n_slices == 1 else image.pixels
    photometric = "miniswhite" if image.photometric == "MONOCHROME1" else "minisblack"
    try:
        # zlib (deflate) is lossless and read by every TIFF reader that matters.
        tifffile.imwrite(path, pixels, photometric=photometric, compression="zlib")
    except Exception as exc:
        raise OutputError(f"{path}: cannot write TIFF ({exc})") from None
