"""Training of medcodec's learned models (needs the ``train`` extra: torch)."""

import math


def cosine_lr(base: float, step: int, total: int, floor: float = 1e-5) -> float:
    """Cosine learning-rate decay from ``base`` to ``floor`` over ``total`` steps."""
    return base * 0.5 * (1 + math.cos(math.pi * step / total)) + floor
