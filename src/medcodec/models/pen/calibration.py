"""The Laplace tables the network's scale index points into, and the per-pass calibration: an
index offset per scale band, searched by the encoder and sent, so a scan unlike the training
ones still gets well-fitting tables."""

from __future__ import annotations

import math

import numpy as np

from medcodec.entropy.tables import LaplaceTables

#: Laplace scale tables the networks index (log-spaced; training uses the same spacing).
SCALE_MIN, SCALE_MAX, SCALE_COUNT = 0.25, 2048.0, 64


#: Table-index bands within which the encoder may shift every index of a pass by one offset
#: (sent as side information): per-image calibration of the network's scales, worth ~2% on CT
#: whose noise differs from the training scans, and a safety net on images unlike any scan
#: (offsets reach every table).
CALIBRATION_BANDS = np.array([16, 24, 32, 40])


CALIBRATION_RANGE = 16


CALIBRATION_MAX = SCALE_COUNT - 1


#: Residual magnitudes above this count as this one while calibrating (a dense cost table).
_CALIBRATION_MAGNITUDE = 1024


def scale_step() -> float:
    return math.log(SCALE_MAX / SCALE_MIN) / (SCALE_COUNT - 1)


def calibrate(q: np.ndarray, index: np.ndarray, tables: LaplaceTables,
              start: np.ndarray | None = None) -> np.ndarray:
    """Per band, the index offset (stored + CALIBRATION_RANGE) that codes ``q`` best.

    The code length is unimodal in the offset. The search starts from ``start`` (the
    previous pass's offsets, stored form: neighbouring passes need similar ones), walks
    in steps of 8 while that helps, then halves the step to 1: about 9 evaluations of at
    most 4k samples of the band (16k samples gave the same bpp to 4 decimals on the
    validation CT, 4x slower).
    """
    band = np.digitize(index, CALIBRATION_BANDS)
    deltas = np.full(len(CALIBRATION_BANDS) + 1, CALIBRATION_RANGE, np.int64)
    for b in np.unique(band):
        members = np.flatnonzero(band == b)
        members = members[:: max(1, members.size // 4096)]
        qb, ib = q[members], index[members]
        costs: dict[int, float] = {}

        def cost(d: int, qb: np.ndarray = qb, ib: np.ndarray = ib,
                 costs: dict[int, float] = costs) -> float:
            if not -CALIBRATION_RANGE <= d <= CALIBRATION_MAX:
                return math.inf
            if d not in costs:
                shifted = np.clip(ib + d, 0, SCALE_COUNT - 1)
                costs[d] = float(tables.code_lengths(qb, shifted).sum())
            return costs[d]

        best = 0 if start is None else int(start[b]) - CALIBRATION_RANGE
        for direction in (1, -1):
            while cost(best + 8 * direction) < cost(best):
                best += 8 * direction
        for jump in (4, 2, 1):
            best = min((best - jump, best, best + jump), key=cost)
        deltas[b] = best + CALIBRATION_RANGE
    return deltas


def apply_calibration(index: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """Shift each index by its band's offset (``stored`` holds offset + CALIBRATION_RANGE)."""
    band = np.digitize(index, CALIBRATION_BANDS)
    offsets = stored.astype(np.int64) - CALIBRATION_RANGE
    return np.clip(index + offsets[band], 0, SCALE_COUNT - 1)


def build_tables() -> LaplaceTables:
    return LaplaceTables.build(SCALE_MIN, SCALE_MAX, SCALE_COUNT)
