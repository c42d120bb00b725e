"""The one image/volume type every reader returns and every writer takes.

A :class:`MedImage` holds the *stored* integer pixels exactly as the source file had them (no
rescale, no inversion of MONOCHROME1, no conversion to 8 bits) plus the geometry and the source
header, so an image can go read -> compress -> decompress -> write and come back identical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medcodec.errors import UnsupportedError

SUPPORTED_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32")


@dataclass
class MedImage:
    """Stored pixels of one 2-D image or one volume, shape ``(slices, rows, cols)``.

    Geometry follows DICOM conventions (patient coordinates, LPS, millimetres):
    ``orientation`` is ImageOrientationPatient (row then column direction cosines),
    ``slice_positions`` holds ImagePositionPatient of each slice, ``pixel_spacing`` is
    (row spacing, column spacing).
    """

    pixels: np.ndarray
    bits_stored: int
    photometric: str = "MONOCHROME2"
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    pixel_spacing: tuple[float, float] | None = None
    slice_thickness: float | None = None
    slice_positions: np.ndarray | None = None
    orientation: tuple[float, ...] | None = None
    modality: str | None = None
    source_format: str = "array"
    source_path: str | None = None
    #: Format-specific, JSON-serialisable facts (NIfTI affine, ITK metadata, DICOM layout, ...).
    meta: dict[str, Any] = field(default_factory=dict)
    #: Binary side data kept verbatim, e.g. ``"dicom/0"``: the DICOM header of slice 0 without
    #: pixel data, ``"nifti/header"``: the 348-byte NIfTI header.
    attachments: dict[str, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        pixels = np.asarray(self.pixels)
        if pixels.ndim == 2:
            pixels = pixels[np.newaxis]
        if pixels.ndim != 3:
            raise UnsupportedError(
                f"expected a 2-D image or a 3-D volume, got an array of shape {pixels.shape}"
            )
        if pixels.dtype.kind == "b":
            pixels = pixels.astype(np.uint8)
        if pixels.dtype.kind not in "ui":
            raise UnsupportedError(
                f"pixels of type {pixels.dtype} are not supported: medcodec codes stored integers "
                "(convert floating-point data to integers with a known slope/intercept first)"
            )
        if pixels.dtype.name not in SUPPORTED_DTYPES:
            raise UnsupportedError(f"pixel type {pixels.dtype} is not supported (at most 32 bits)")
        self.pixels = pixels.astype(pixels.dtype.newbyteorder("="), copy=False)
        if not 1 <= int(self.bits_stored) <= pixels.dtype.itemsize * 8:
            raise UnsupportedError(
                f"bits stored {self.bits_stored} does not fit pixel type {pixels.dtype}"
            )
        self.bits_stored = int(self.bits_stored)
        if self.slice_positions is not None:
            self.slice_positions = np.asarray(self.slice_positions, dtype=np.float64).reshape(-1, 3)

    @property
    def signed(self) -> bool:
        return self.pixels.dtype.kind == "i"

    @property
    def n_slices(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def rows(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def cols(self) -> int:
        return int(self.pixels.shape[2])

    @property
    def effective_bits(self) -> int:
        """``max(8, ceil(log2(max - min + 1)))`` over the whole image (BENCHMARK.md)."""
        return effective_bits(self.pixels)

    def slice(self, index: int) -> MedImage:
        """One slice as its own image (geometry and header of that slice only)."""
        from dataclasses import replace

        positions = (None if self.slice_positions is None
                     else self.slice_positions[index : index + 1])
        attachments = {
            k: v for k, v in self.attachments.items() if not k.startswith("dicom/")
        }
        if self.meta.get("dicom_layout") == "files" and f"dicom/{index}" in self.attachments:
            attachments["dicom/0"] = self.attachments[f"dicom/{index}"]
        elif "dicom/0" in self.attachments:
            attachments["dicom/0"] = self.attachments["dicom/0"]
        meta = dict(self.meta)
        names = meta.get("dicom_filenames")
        if meta.get("dicom_layout") == "files" and isinstance(names, list) \
                and len(names) == self.n_slices:
            meta["dicom_filenames"] = [names[index]]
        return replace(
            self,
            pixels=self.pixels[index : index + 1],
            slice_positions=positions,
            meta=meta,
            attachments=attachments,
        )

    def to_hu(self) -> np.ndarray:
        """Pixels in physical units (Hounsfield units for CT) as float64."""
        return self.pixels.astype(np.float64) * self.rescale_slope + self.rescale_intercept

    def describe(self) -> str:
        sign = "signed" if self.signed else "unsigned"
        return (
            f"{self.n_slices}x{self.rows}x{self.cols} {self.pixels.dtype} ({sign}, "
            f"{self.bits_stored} bits stored, {self.effective_bits} effective), "
            f"{self.modality or '?'} {self.photometric}"
        )


def image_facts(image: MedImage) -> dict[str, Any]:
    """Everything about an image but its pixels, as JSON-ready values (container, Zarr attrs)."""
    import json
    import os

    return {
        "bits_stored": image.bits_stored,
        "photometric": image.photometric,
        "rescale_slope": image.rescale_slope,
        "rescale_intercept": image.rescale_intercept,
        "pixel_spacing": list(image.pixel_spacing) if image.pixel_spacing else None,
        "slice_thickness": image.slice_thickness,
        "slice_positions": (None if image.slice_positions is None
                            else image.slice_positions.tolist()),
        "orientation": list(image.orientation) if image.orientation else None,
        "modality": image.modality,
        "source_format": image.source_format,
        "source_name": os.path.basename(image.source_path) if image.source_path else None,
        "meta": json.loads(json.dumps(image.meta, default=str)),
    }


def image_from_facts(pixels: np.ndarray, facts: dict[str, Any], **overrides: Any) -> MedImage:
    """The inverse of :func:`image_facts`; ``overrides`` replace individual fields."""
    fields: dict[str, Any] = {
        "pixels": pixels,
        "bits_stored": int(facts.get("bits_stored") or pixels.dtype.itemsize * 8),
        "photometric": facts.get("photometric") or "MONOCHROME2",
        "rescale_slope": float(facts.get("rescale_slope", 1.0)),
        "rescale_intercept": float(facts.get("rescale_intercept", 0.0)),
        "pixel_spacing": tuple(facts["pixel_spacing"]) if facts.get("pixel_spacing") else None,
        "slice_thickness": facts.get("slice_thickness"),
        "slice_positions": facts.get("slice_positions"),
        "orientation": tuple(facts["orientation"]) if facts.get("orientation") else None,
        "modality": facts.get("modality"),
        "source_format": facts.get("source_format") or "array",
        "meta": dict(facts.get("meta") or {}),
    }
    fields.update(overrides)
    return MedImage(**fields)


def value_range_bits(low: int, high: int) -> int:
    """Bits needed to hold ``high - low`` as an unsigned value (at least 1)."""
    span = int(high) - int(low)
    return max(1, math.ceil(math.log2(span + 1))) if span > 0 else 1


def stored_value_range(image: MedImage) -> tuple[int, int]:
    """The values a decoder may output: what BitsStored and the pixel sign allow, widened to the
    image's own extremes when a file overstates its data (so clamping never moves a pixel away
    from its original value, and a lossy overshoot never wraps around in a 12-bit reader)."""
    bits = image.bits_stored
    low, high = ((-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if image.signed
                 else (0, (1 << bits) - 1))
    if image.pixels.size:
        low, high = min(low, int(image.pixels.min())), max(high, int(image.pixels.max()))
    return low, high


def effective_bits(pixels: np.ndarray) -> int:
    """Effective bit depth ``B`` of BENCHMARK.md: ``max(8, ceil(log2(max - min + 1)))``."""
    if pixels.size == 0:
        return 8
    return max(8, value_range_bits(int(pixels.min()), int(pixels.max())))
