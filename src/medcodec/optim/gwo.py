"""Grey-wolf optimiser (Mirjalili et al., Adv. Eng. Softw. 2014), with PSO and DE to compare.

Minimise ``f(x)`` over a box ``low <= x <= high``. All three keep the best point seen, count
every call of ``f`` and are reproducible from ``seed``. They exist to fit a handful of
parameters offline (the decoder filter's taps, :mod:`medcodec.bench.filters`), never in the
codec's hot path.

- **GWO**: the three best wolves (alpha, beta, delta) lead; every wolf moves to the mean of
  three points drawn around them, ``X_k = L_k - A |C L_k - X|`` with ``A = a (2 r1 - 1)``,
  ``C = 2 r2``, and ``a`` falling linearly from 2 to 0 (exploration, then exploitation).
- **PSO**: inertia 0.7298 and acceleration 1.49618 each way (Clerc's constriction values),
  velocities clamped to a fifth of the box.
- **DE**: DE/rand/1/bin, F = 0.6, CR = 0.9, greedy selection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

Objective = Callable[[np.ndarray], float]


@dataclass
class OptimResult:
    x: np.ndarray
    fun: float
    evaluations: int
    #: Best value after each iteration (the initial population counts as iteration 0).
    history: list[float] = field(default_factory=list)


class _Counted:
    def __init__(self, fn: Objective, low: np.ndarray, high: np.ndarray) -> None:
        self.fn, self.low, self.high = fn, low, high
        self.calls = 0
        self.best_x: np.ndarray | None = None
        self.best = np.inf

    def __call__(self, x: np.ndarray) -> float:
        x = np.clip(x, self.low, self.high)
        value = float(self.fn(x))
        self.calls += 1
        if not np.isfinite(value):
            value = np.inf
        if value < self.best:
            self.best, self.best_x = value, x.copy()
        return value

    def result(self, history: list[float]) -> OptimResult:
        assert self.best_x is not None
        return OptimResult(self.best_x, self.best, self.calls, history)


def _box(low: Sequence[float] | np.ndarray, high: Sequence[float] | np.ndarray
         ) -> tuple[np.ndarray, np.ndarray]:
    lo = np.asarray(low, np.float64).ravel()
    hi = np.asarray(high, np.float64).ravel()
    if lo.shape != hi.shape or lo.size == 0 or np.any(hi <= lo):
        raise ValueError("bounds need low < high in every dimension")
    return lo, hi


def _start(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, agents: int,
           x0: np.ndarray | None) -> np.ndarray:
    if agents < 4:
        raise ValueError("at least 4 agents are needed")
    pop = lo + rng.random((agents, lo.size)) * (hi - lo)
    if x0 is not None:  # one agent starts at the caller's guess
        pop[0] = np.clip(np.asarray(x0, np.float64).ravel(), lo, hi)
    return pop


def grey_wolf(fn: Objective, low, high, *, wolves: int = 20, iterations: int = 100,
              seed: int = 0, x0: np.ndarray | None = None) -> OptimResult:
    """Minimise ``fn`` with the grey-wolf optimiser; ``wolves * (iterations + 1)`` calls."""
    lo, hi = _box(low, high)
    rng = np.random.default_rng(seed)
    f = _Counted(fn, lo, hi)
    pack = _start(rng, lo, hi, wolves, x0)
    fitness = np.array([f(w) for w in pack])
    history = [f.best]
    for it in range(iterations):
        a = 2.0 * (1 - it / iterations)
        leaders = pack[np.argsort(fitness)[:3]].copy()
        moved = np.zeros_like(pack)
        for leader in leaders:
            big_a = a * (2 * rng.random(pack.shape) - 1)
            big_c = 2 * rng.random(pack.shape)
            moved += leader - big_a * np.abs(big_c * leader - pack)
        pack = np.clip(moved / 3, lo, hi)
        fitness = np.array([f(w) for w in pack])
        history.append(f.best)
    return f.result(history)


def particle_swarm(fn: Objective, low, high, *, particles: int = 20, iterations: int = 100,
                   seed: int = 0, x0: np.ndarray | None = None, inertia: float = 0.7298,
                   pull: float = 1.49618) -> OptimResult:
    """Minimise ``fn`` with a global-best particle swarm; ``particles * (iterations + 1)``
    calls."""
    lo, hi = _box(low, high)
    rng = np.random.default_rng(seed)
    f = _Counted(fn, lo, hi)
    x = _start(rng, lo, hi, particles, x0)
    vmax = 0.2 * (hi - lo)
    v = (2 * rng.random(x.shape) - 1) * vmax
    own = x.copy()
    own_f = np.array([f(p) for p in x])
    history = [f.best]
    for _ in range(iterations):
        best = own[np.argmin(own_f)]
        r1, r2 = rng.random(x.shape), rng.random(x.shape)
        v = np.clip(inertia * v + pull * r1 * (own - x) + pull * r2 * (best - x), -vmax, vmax)
        x = np.clip(x + v, lo, hi)
        fx = np.array([f(p) for p in x])
        better = fx < own_f
        own[better], own_f[better] = x[better], fx[better]
        history.append(f.best)
    return f.result(history)


def differential_evolution(fn: Objective, low, high, *, population: int = 20,
                           iterations: int = 100, seed: int = 0,
                           x0: np.ndarray | None = None, weight: float = 0.6,
                           crossover: float = 0.9) -> OptimResult:
    """Minimise ``fn`` with DE/rand/1/bin; ``population * (iterations + 1)`` calls."""
    lo, hi = _box(low, high)
    rng = np.random.default_rng(seed)
    f = _Counted(fn, lo, hi)
    pop = _start(rng, lo, hi, population, x0)
    fit = np.array([f(p) for p in pop])
    n, dim = pop.shape
    history = [f.best]
    for _ in range(iterations):
        for i in range(n):
            others = rng.choice([j for j in range(n) if j != i], 3, replace=False)
            a, b, c = pop[others]
            mutant = np.clip(a + weight * (b - c), lo, hi)
            mask = rng.random(dim) < crossover
            mask[rng.integers(dim)] = True
            trial = np.where(mask, mutant, pop[i])
            value = f(trial)
            if value <= fit[i]:
                pop[i], fit[i] = trial, value
        history.append(f.best)
    return f.result(history)
