"""Trained weights shipped with medcodec (safetensors only; model cards beside them)."""

from __future__ import annotations

import functools
import hashlib
from importlib import resources
from pathlib import Path

import numpy as np

from medcodec.errors import CodecUnavailableError


def weight_path(name: str) -> Path:
    return Path(str(resources.files(__name__).joinpath(name)))


@functools.lru_cache(maxsize=8)
def load(name: str) -> tuple[dict[str, np.ndarray], str]:
    """The arrays of a shipped (or user-given) safetensors file and its SHA-256.

    ``name`` is a file name inside the package or a path. Cached: codecs decode many slices.
    """
    from safetensors.numpy import load_file

    path = _path(name)
    digest = sha256(name)
    try:
        arrays = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types
        raise CodecUnavailableError(f"model weights {path} are unreadable: {exc}") from None
    return arrays, digest


def _path(name: str) -> Path:
    path = Path(name) if ("/" in name or "\\" in name) else weight_path(name)
    if not path.is_file():
        raise CodecUnavailableError(f"model weights {name!r} not found")
    return path


@functools.lru_cache(maxsize=32)
def sha256(name: str) -> str:
    """SHA-256 of a weights file (hex): the identity streams refer to."""
    return hashlib.sha256(_path(name).read_bytes()).hexdigest()


def shipped(pattern: str = "*.safetensors") -> list[str]:
    """File names of the weights shipped in the package."""
    root = Path(str(resources.files(__name__)))
    return sorted(p.name for p in root.glob(pattern))


def find_by_id(model_id: bytes, pattern: str, extra: tuple[str, ...] = ()) -> str | None:
    """The weights file (shipped, or one of ``extra``) whose SHA-256 starts with ``model_id``.

    Streams name the model that made them, so older streams keep decoding after newer
    weights ship, as long as the older file ships too.
    """
    for name in (*extra, *shipped(pattern)):
        try:
            digest = sha256(name)
        except CodecUnavailableError:
            continue
        if bytes.fromhex(digest).startswith(model_id):  # only this one gets loaded
            return name
    return None
