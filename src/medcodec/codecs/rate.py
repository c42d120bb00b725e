"""Rate control: find the setting of a codec's quality knob that meets a target.

:func:`rate_search` meets a target bpp (``medcodec compress --bpp`` per slice, the benchmark per
image), so every codec can be compared, or asked for, at the same rate whatever its knob
means; :func:`fit_budget` finds the richest setting whose output fits a byte budget
(``medcodec transcode --ratio``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

from medcodec.codecs.base import Knob


class RateSearchResult(NamedTuple):
    """Outcome of :func:`rate_search`: the setting whose bpp came closest, and that bpp."""

    setting: float
    bpp: float


def rate_search(
    encode_fn: Callable[[float], float],
    knob: Knob,
    target_bpp: float,
    *,
    rel_tol: float = 0.02,
    max_iter: int = 24,
    log_scale: bool | None = None,
) -> RateSearchResult:
    """Search a codec's quality knob until ``encode_fn(setting)`` (the bpp) meets a target.

    Assumes bpp is monotone in the knob (``knob.rate_increases`` gives the direction); a codec
    that is only roughly monotone still ends on the closest setting seen. Integer knobs are
    searched over integers, so the search also stops when two neighbouring settings bracket
    the target. The search is a safeguarded regula falsi (Illinois) on log bpp against the
    setting, or its logarithm with ``log_scale`` (default: when ``knob.low > 0`` and
    ``high / low >= 100``, e.g. quantisation steps or distances): about half the encodes of a
    bisection for the same tolerance. When the target
    lies outside what the knob can reach, the nearer end is returned. Returns
    ``(setting, bpp)`` of the evaluation closest to the target (``int`` setting for integer
    knobs); the caller can compare ``bpp`` with the target to see whether it was reached.
    """
    if target_bpp <= 0:
        raise ValueError(f"target bpp must be positive, got {target_bpp}")
    if log_scale is None:
        log_scale = _log_axis(knob)
    if log_scale and knob.low <= 0:
        raise ValueError("a log-scale search needs a knob whose low end is positive")

    seen: dict[float, float] = {}

    def evaluate(value: float) -> float:  # cached: each setting is encoded once
        if knob.integer:
            value = float(round(value))
        if value not in seen:
            seen[value] = max(float(encode_fn(int(value) if knob.integer else value)), 1e-12)
        return seen[value]

    def best() -> tuple[float, float]:
        value = min(seen, key=lambda v: (abs(seen[v] - target_bpp), v))
        return value, seen[value]

    def done(rate: float) -> bool:
        return abs(rate - target_bpp) <= rel_tol * target_bpp

    def result() -> RateSearchResult:
        value, rate = best()
        return RateSearchResult(int(value) if knob.integer else value, rate)

    # Orient so that "low" is the cheap end and "high" the expensive one.
    cheap, rich = (knob.low, knob.high) if knob.rate_increases else (knob.high, knob.low)
    if evaluate(cheap) >= target_bpp or evaluate(rich) <= target_bpp:
        return result()

    def axis(value: float) -> float:
        return math.log(value) if log_scale else value

    def from_axis(x: float) -> float:
        return math.exp(x) if log_scale else x

    goal = math.log(target_bpp)
    # log bpp of each bracket end, minus the goal (Illinois: halved when an end is kept twice)
    f_cheap, f_rich = math.log(evaluate(cheap)) - goal, math.log(evaluate(rich)) - goal
    kept = 0  # +1: the cheap end was kept last time, -1: the rich end
    for _ in range(max_iter):
        if done(best()[1]):
            break
        a, b = axis(cheap), axis(rich)
        # regula falsi on (knob axis, log bpp), which is close to a straight line for every
        # codec here; kept inside the middle 90% of the bracket, so it never stalls
        x = a + (b - a) * (-f_cheap) / (f_rich - f_cheap) if f_rich != f_cheap else (a + b) / 2
        lo, hi = min(a, b), max(a, b)
        x = min(max(x, lo + 0.05 * (hi - lo)), hi - 0.05 * (hi - lo))
        mid = from_axis(x)
        if knob.integer:
            mid = float(round(mid))
            if mid in (round(cheap), round(rich)):
                mid = float(round(from_axis((a + b) / 2)))
                if mid in (round(cheap), round(rich)):
                    break  # neighbouring integers bracket the target
        f_mid = math.log(evaluate(mid)) - goal
        if f_mid < 0:
            cheap, f_cheap = mid, f_mid
            if kept == 1:
                f_rich /= 2
            kept = 1
        else:
            rich, f_rich = mid, f_mid
            if kept == -1:
                f_cheap /= 2
            kept = -1
    return result()


def _log_axis(knob: Knob) -> bool:
    if knob.log_scale is not None:
        return knob.log_scale
    return knob.low > 0 and knob.high / knob.low >= 100


def fit_budget(encode_fn: Callable[[float], bytes], knob: Knob, budget: int, *,
               steps: int = 14) -> tuple[bytes, float]:
    """The output and setting with the most bytes that still fit in ``budget`` bytes.

    Bisection on the knob's axis (log or linear, as :func:`rate_search`), ``steps`` halvings at
    most, stopping early when an integer knob's bracket closes. When even the cheapest setting
    does not fit, its output is returned: the caller compares the size with the budget.
    """
    log = _log_axis(knob)
    cheap, rich = (knob.low, knob.high) if knob.rate_increases else (knob.high, knob.low)

    def value(u: float) -> float:  # u = 0: the cheapest setting, u = 1: the richest
        if log:
            a, b = math.log(cheap), math.log(rich)
            setting = math.exp(a + u * (b - a))
        else:
            setting = cheap + u * (rich - cheap)
        return float(round(setting)) if knob.integer else setting

    top = encode_fn(value(1.0))
    if len(top) <= budget:
        return top, value(1.0)
    low, high = 0.0, 1.0
    best = encode_fn(value(0.0)), value(0.0)
    for _ in range(steps):
        mid = (low + high) / 2
        data = encode_fn(value(mid))
        if len(data) <= budget:
            best, low = (data, value(mid)), mid
        else:
            high = mid
        if knob.integer and value(low) == value(high):
            break
    return best
