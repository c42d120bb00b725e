"""The pixel-estimation network (the paper's DNN that estimates a pixel from its window), used
as the probability model of lossless and near-lossless coding.

Decoding order is a 2x2 interlace, coarse to fine: the image's even-even grid is coded first
(recursively, down to a grid of at most ``COARSEST`` pixels a side), then at every level three
phases, each decoded in one vectorised step:

* ``D`` (odd row, odd column): its window holds the 4 diagonal pixels of the coarser grid;
* ``B`` (even row, odd column): left/right from the coarser grid, up/down from ``D``;
* ``C`` (odd row, even column): all 8 neighbours are known by then.

For every pixel of a phase the network reads a window (``3x3``: the known pixels of the 3x3
neighbourhood; ``1x8``: 8 known pixels along one row, the paper's alternative) and a few integer
context features, and outputs the location and the Laplace scale (as a table index) of the pixel.
The residual against the rounded location is entropy coded with that table. Windows read only
pixels the decoder already has, so decoding is ~3 vectorised steps per level, never a loop per
pixel. Near-lossless quantises the residual with step ``2d + 1`` (error <= d by construction)
and predicts from reconstructed pixels, exactly as the decoder will.
"""

from __future__ import annotations

from medcodec.models.pen.calibration import (
    CALIBRATION_BANDS,
    CALIBRATION_MAX,
    CALIBRATION_RANGE,
    SCALE_COUNT,
    SCALE_MAX,
    SCALE_MIN,
    apply_calibration,
    build_tables,
    calibrate,
    scale_step,
)
from medcodec.models.pen.estimator import (
    OUT_FRAC,
    WINDOW_IDS,
    Pass,
    PixelEstimator,
    coarse_reconstruct,
    coarse_residuals,
)
from medcodec.models.pen.features import (
    PREVIOUS_FEATURES,
    WIDE,
    PassInputs,
    coarse_activity_map,
    feature_count,
    feature_count_for,
    feature_scales,
    gather_padded,
    padded,
    phase_features,
    window_pad,
)
from medcodec.models.pen.schedule import (
    COARSEST,
    LEVEL_CLASSES,
    PARITY,
    PHASES,
    known_canvas,
    level_view,
    levels_for,
    passes,
    phase_coords,
    phase_view,
)

__all__ = [
    "CALIBRATION_BANDS",
    "CALIBRATION_MAX",
    "CALIBRATION_RANGE",
    "COARSEST",
    "LEVEL_CLASSES",
    "OUT_FRAC",
    "PARITY",
    "PHASES",
    "PREVIOUS_FEATURES",
    "SCALE_COUNT",
    "SCALE_MAX",
    "SCALE_MIN",
    "WIDE",
    "WINDOW_IDS",
    "Pass",
    "PassInputs",
    "PixelEstimator",
    "apply_calibration",
    "build_tables",
    "calibrate",
    "coarse_activity_map",
    "coarse_reconstruct",
    "coarse_residuals",
    "feature_count",
    "feature_count_for",
    "feature_scales",
    "gather_padded",
    "known_canvas",
    "level_view",
    "levels_for",
    "padded",
    "passes",
    "phase_coords",
    "phase_features",
    "phase_view",
    "scale_step",
    "window_pad",
]
