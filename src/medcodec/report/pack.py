"""Stored pixels as compact text for the page: prediction residuals, byte planes, zlib, base64.

The page windows the stored values itself, so each slice travels at full bit depth, losslessly.
A slice is sent as one of two residuals, whichever deflates smaller:

- ``"med"``: the value minus the LOCO-I median edge predictor of its left, upper and upper-left
  neighbours (the previous value on the first row and column; 0 for the first pixel);
- ``"diff"``: the value minus the original slice at the same place (decoded versions only: a
  lossless version is then all zeros, a near-lossless one within +-D).

Residuals are zig-zag mapped to non-negative integers (0, -1, 1, -2, ... -> 0, 1, 2, 3, ...),
split into as many little-endian byte planes as the largest needs (all low bytes first), and
compressed with zlib, which the browser inflates with its built-in ``DecompressionStream``.
:func:`unpack` is the reference decoder the page's script follows.
"""

from __future__ import annotations

import base64
import zlib
from typing import Any

import numpy as np

LEVEL = 6  # zlib level: 9 saves about 1% here for twice the time


def med_prediction(values: np.ndarray) -> np.ndarray:
    """The LOCO-I / JPEG-LS median edge predictor of every pixel from its causal neighbours."""
    v = np.asarray(values, dtype=np.int64)
    a = np.zeros_like(v)  # left; on the first column the pixel above
    a[:, 1:] = v[:, :-1]
    a[1:, 0] = v[:-1, 0]
    b = np.zeros_like(v)  # above; on the first row the left neighbour
    b[1:] = v[:-1]
    b[0] = a[0]
    c = np.zeros_like(v)  # above-left; on the first row/column as the others
    c[1:, 1:] = v[:-1, :-1]
    c[0] = a[0]
    c[1:, 0] = b[1:, 0]
    low, high = np.minimum(a, b), np.maximum(a, b)
    return np.where(c >= high, low, np.where(c <= low, high, a + b - c))


def _planes(residual: np.ndarray) -> tuple[int, bytes]:
    zig = np.where(residual >= 0, 2 * residual, -2 * residual - 1).astype(np.uint64).ravel()
    top = int(zig.max(initial=0))
    n = max(1, (top.bit_length() + 7) // 8)
    planes = b"".join(((zig >> np.uint64(8 * k)) & np.uint64(255)).astype(np.uint8).tobytes()
                      for k in range(n))
    return n, planes


def pack(values: np.ndarray, reference: np.ndarray | None = None) -> dict[str, Any]:
    """One 2-D slice of stored values as ``{"m": kind, "n": planes, "z": base64}``."""
    values = np.asarray(values, dtype=np.int64)
    candidates = [("med", values - med_prediction(values))]
    if reference is not None:
        candidates.append(("diff", values - np.asarray(reference, dtype=np.int64)))
    best: dict[str, Any] | None = None
    for kind, residual in candidates:
        n, planes = _planes(residual)
        data = zlib.compress(planes, LEVEL)
        if best is None or len(data) < best["size"]:
            best = {"m": kind, "n": n, "size": len(data), "data": data}
    assert best is not None
    return {"m": best["m"], "n": best["n"], "z": base64.b64encode(best["data"]).decode("ascii")}


def unpack(entry: dict[str, Any], shape: tuple[int, int],
           reference: np.ndarray | None = None) -> np.ndarray:
    """The values :func:`pack` packed (the page's script does the same in the browser)."""
    rows, cols = shape
    raw = np.frombuffer(zlib.decompress(base64.b64decode(entry["z"])), dtype=np.uint8)
    planes = raw.reshape(int(entry["n"]), rows * cols).astype(np.uint64)
    zig = sum((planes[k] << np.uint64(8 * k) for k in range(len(planes))), np.uint64(0))
    zig = zig.astype(np.int64)
    residual = np.where(zig % 2 == 0, zig // 2, -(zig + 1) // 2).reshape(rows, cols)
    if entry["m"] == "diff":
        if reference is None:
            raise ValueError("a diff entry needs its reference slice")
        return np.asarray(reference, dtype=np.int64) + residual
    out = np.zeros((rows, cols), dtype=np.int64)
    for r in range(rows):  # causal: each pixel's prediction uses decoded neighbours
        for c in range(cols):
            a = out[r, c - 1] if c else (out[r - 1, 0] if r else 0)
            b = out[r - 1, c] if r else a
            d = out[r - 1, c - 1] if r and c else (b if r else a)
            low, high = min(a, b), max(a, b)
            pred = low if d >= high else high if d <= low else a + b - d
            out[r, c] = pred + residual[r, c]
    return out
