"""Measuring the raster-scan pixel estimator on held-out series (it has nothing to train)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medcodec.models.causal.model import CausalEstimator
from medcodec.train.data import Series


def evaluate(model: CausalEstimator, series: Sequence[Series], stride: int = 1
             ) -> dict[str, float]:
    """Mean lossless bpp over every ``stride``-th slice of ``series`` (real bytes, checked)."""
    bits_total, pixels, count = 0, 0, 0
    for s in series:
        for image in s.slices[:: max(1, stride)]:
            bits = max(1, int(image.max()).bit_length())
            data = model.encode(image, bits)
            if not np.array_equal(model.decode(data, image.shape, bits), image):
                raise AssertionError(f"{s.key}: the decoded slice differs")
            bits_total += 8 * len(data)
            pixels += image.size
            count += 1
    return {"slices": count, "lossless_bpp": round(bits_total / max(pixels, 1), 4)}
