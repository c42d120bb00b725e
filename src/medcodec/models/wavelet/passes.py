"""The one iterator of band passes: detail bands in coding order with their contexts, used by
the encoder, the decoder and training alike."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from medcodec.models.wavelet.features import BandContext, step_code
from medcodec.models.wavelet.schedule import pass_positions


@dataclass(frozen=True)
class BandPass:
    """One detail band in coding order: its context and its quantised values ``q`` (filled by
    the encoder or trainer, zeros the decoder fills pass by pass)."""

    depth: int
    orient: int
    step: float
    ctx: BandContext
    q: np.ndarray
    schedule: int = 2  # passes per band (schedule.SCHEDULES)

    def phases(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(positions of each pass, positions known before it), in coding order."""
        known = np.zeros(self.q.shape, bool)
        for phase in range(self.schedule):
            pos = pass_positions(self.q.shape, self.schedule, phase)
            yield pos, known.copy()
            known |= pos


#: A level's quantised bands and hyperprior, given at the start of the level: ``(qs, z)``
#: from the coefficients (encoder, trainer), or ``(None, z)`` with z read from the stream.
LevelStart = Callable[[int, tuple[int, int]], tuple[list[np.ndarray] | None, np.ndarray | None]]


def band_passes(q_ll: np.ndarray, ll_parent: np.ndarray, levels: int, steps: list[float],
                thresholds: np.ndarray, level_start: LevelStart, schedule: int = 2
                ) -> Iterator[BandPass]:
    """The detail bands in coding order, coarse to fine, LH, HL, HH: the one schedule of the
    encoder, the decoder and training. Each band's context reads the parent level and the
    orientations already coded at this level, so the consumer finishes a band (the decoder
    decodes it in place) before asking for the next."""
    parent = [ll_parent] * 3
    for depth in range(levels):
        band_shape = q_ll.shape if depth == 0 else tuple(2 * s for s in parent[0].shape)
        given, z = level_start(depth, band_shape)
        qs: list[np.ndarray] = []
        for o in range(3):
            band_step = steps[1 + 3 * depth + o]
            ctx = BandContext(depth, o, step_code(band_step, thresholds), parent, qs[:o], z,
                              levels)
            q = given[o] if given is not None else np.zeros(band_shape, np.int64)
            yield BandPass(depth, o, band_step, ctx, q, schedule)
            qs.append(q)
        parent = qs
