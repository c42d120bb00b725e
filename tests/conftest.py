"""Shared fixtures: the real-data folder (skipped when absent) and small synthetic images."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MEDCODEC_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_manifest() -> list[dict[str, str]]:
    """Rows of ../shared/data/manifest.csv, or [] when the folder is not there."""
    manifest = SHARED_DATA / "manifest.csv"
    if not manifest.is_file():
        return []
    with open(manifest, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "manifest.csv").is_file():
        pytest.skip("../shared/data is not available")
    return SHARED_DATA


def pydicom_data_dir() -> Path | None:
    try:
        import data_store
    except ImportError:
        return None
    return Path(data_store.__file__).parent / "data"


def random_image(shape: tuple[int, ...], bits: int, signed: bool, seed: int = 0) -> np.ndarray:
    """Uniform random integers that use the full range of ``bits`` bits."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(f"{'i' if signed else 'u'}{1 if bits <= 8 else 2 if bits <= 16 else 4}")
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    return rng.integers(low, high, size=shape, endpoint=True).astype(dtype)


def smooth_image(shape: tuple[int, int], bits: int, seed: int = 0) -> np.ndarray:
    """A smooth gradient plus mild noise: compressible like a real scan."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    top = (1 << bits) - 1
    base = (np.sin(xx / 9.0) + np.cos(yy / 13.0) + 2) / 4 * top
    noisy = base + rng.normal(0, top / 200, size=shape)
    return np.clip(np.round(noisy), 0, top).astype(np.uint16 if bits > 8 else np.uint8)
