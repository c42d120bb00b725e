"""Training data: series read from folders, split by whole series, slices as integer arrays.

A series never lands on both sides of the split: slices of one scan are nearly copies of each
other, so mixing them would make validation numbers meaningless.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medcodec.errors import InputError, MedcodecError


@dataclass(frozen=True)
class Series:
    key: str  # SeriesInstanceUID or file path: what defines "the same scan"
    modality: str
    slices: tuple[np.ndarray, ...]  # int64, each shifted to a minimum of 0
    offsets: tuple[int, ...] = ()  # the minimum each slice was shifted by

    def pairs(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(slice, previous slice in the same value domain) for every slice after the first,
        as the codec's previous-slice mode sees them."""
        out = []
        for k in range(1, len(self.slices)):
            if self.slices[k].shape == self.slices[k - 1].shape:
                out.append((self.slices[k],
                            self.slices[k - 1] + (self.offsets[k - 1] - self.offsets[k])))
        return out


def read_series(paths: Iterable[str | Path], modalities: Sequence[str] | None = ("CT",),
                min_side: int = 32) -> list[Series]:
    """Every series under ``paths`` (files or folders), optionally only some modalities."""
    from medcodec.io import read_all

    found: list[Series] = []
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise InputError(f"training data {path} does not exist")
        try:
            images = list(read_all([path]))
        except MedcodecError:  # one unreadable file: read the rest one by one, skip it
            images = []
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                try:
                    images.extend(read_all([file]))
                except MedcodecError:
                    continue
        for image in images:
            modality = (image.modality or "").upper()
            if modalities and modality not in modalities:
                continue
            if min(image.rows, image.cols) < min_side:
                continue
            key = str(image.meta.get("series_instance_uid")
                      or image.source_path or id(image))
            slices = tuple((s.astype(np.int64) - int(s.min())) for s in image.pixels)
            found.append(Series(key, modality, slices,
                                tuple(int(s.min()) for s in image.pixels)))
    merged: dict[str, Series] = {}
    for series in found:  # single-file DICOM series arrive one slice at a time
        if series.key in merged:
            old = merged[series.key]
            merged[series.key] = Series(series.key, old.modality, old.slices + series.slices,
                                        old.offsets + series.offsets)
        else:
            merged[series.key] = series
    return list(merged.values())


def split_series(series: Sequence[Series], val_fraction: float = 0.15,
                 seed: int = 0) -> tuple[list[Series], list[Series]]:
    """Deterministic split by a hash of the series key (whole series on one side)."""
    def unit(key: str) -> float:
        digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    val = [s for s in series if unit(s.key) < val_fraction]
    train = [s for s in series if unit(s.key) >= val_fraction]
    if not train:
        raise InputError("no training series left after the validation split")
    return train, val
