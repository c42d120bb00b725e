"""The interlace schedule: the image's 2x2 levels, coarse to fine, and the three phases of each
(D, B, C): which pixels a pass codes and which it already knows."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

#: The coarsest grid is at most this many pixels a side; it is coded by row-DPCM.
COARSEST = 16


PHASES = ("D", "B", "C")


#: Phase positions inside a level: (row parity, column parity).
PARITY = {"D": (1, 1), "B": (0, 1), "C": (1, 0)}


#: Number of level one-hot features (levels 0, 1, 2 and "3 or coarser").
LEVEL_CLASSES = 4


def levels_for(shape: tuple[int, int]) -> int:
    """How many 2x2 interlace levels until the coarse grid is at most COARSEST a side."""
    levels, size = 0, max(shape)
    while size > COARSEST:
        size = (size + 1) // 2
        levels += 1
    return levels


def phase_coords(shape: tuple[int, int], phase: str) -> tuple[np.ndarray, np.ndarray]:
    pr, pc = PARITY[phase]
    return np.arange(pr, shape[0], 2), np.arange(pc, shape[1], 2)


def phase_view(grid: np.ndarray, phase: str) -> np.ndarray:
    """The pixels of ``phase`` as a strided (writable) view of ``grid``."""
    pr, pc = PARITY[phase]
    return grid[pr::2, pc::2]


def passes(shape: tuple[int, int]) -> Iterator[tuple[int, str]]:
    """The decoding order: (level, phase) from the coarsest level to full resolution."""
    for level in range(levels_for(shape) - 1, -1, -1):
        for phase in PHASES:
            yield level, phase


def level_view(canvas: np.ndarray, level: int) -> np.ndarray:
    """The level's grid as a writable view of the full-resolution canvas."""
    step = 1 << level
    return canvas[::step, ::step]


def known_canvas(image: np.ndarray, level: int, phase: str) -> np.ndarray:
    """The full-resolution canvas as the decoder has it just before (level, phase): pixels not
    decoded yet are 0. Training reads features from this, never from the full image."""
    canvas = np.zeros_like(image)
    coarse = 1 << (level + 1)
    canvas[::coarse, ::coarse] = image[::coarse, ::coarse]
    view, src = level_view(canvas, level), level_view(image, level)
    for earlier in PHASES[: PHASES.index(phase)]:
        pr, pc = PARITY[earlier]
        view[pr::2, pc::2] = src[pr::2, pc::2]
    return canvas
