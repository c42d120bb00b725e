"""The metaheuristics find the known optimum of standard test functions, reproducibly."""

from __future__ import annotations

import numpy as np
import pytest

from medcodec.optim import differential_evolution, grey_wolf, particle_swarm


def sphere(x: np.ndarray) -> float:
    return float(np.sum((x - 0.5) ** 2))  # optimum off the origin: no free win for 0-biased code


def rastrigin(x: np.ndarray) -> float:
    return float(10 * x.size + np.sum(x**2 - 10 * np.cos(2 * np.pi * x)))


def rosenbrock(x: np.ndarray) -> float:
    return float(np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2))


OPTIMISERS = [grey_wolf, particle_swarm, differential_evolution]


@pytest.mark.parametrize("method", OPTIMISERS)
def test_sphere_5d(method) -> None:
    res = method(sphere, [-5] * 5, [5] * 5, iterations=300, seed=1)
    assert res.fun < 1e-6
    np.testing.assert_allclose(res.x, 0.5, atol=1e-3)
    assert res.evaluations == 20 * 301
    assert all(a >= b for a, b in zip(res.history, res.history[1:], strict=False))


def test_grey_wolf_rastrigin_3d() -> None:
    res = grey_wolf(rastrigin, [-5.12] * 3, [5.12] * 3, wolves=30, iterations=300, seed=0)
    assert res.fun < 1e-6  # the global minimum 0 at the origin, past many local minima
    np.testing.assert_allclose(res.x, 0.0, atol=1e-3)


def test_differential_evolution_rosenbrock_3d() -> None:
    res = differential_evolution(rosenbrock, [-2] * 3, [2] * 3, iterations=400, seed=0)
    assert res.fun < 1e-4
    np.testing.assert_allclose(res.x, 1.0, atol=2e-2)


def test_grey_wolf_rosenbrock_2d_reaches_the_valley() -> None:
    res = grey_wolf(rosenbrock, [-2, -2], [2, 2], wolves=30, iterations=300, seed=0)
    assert res.fun < 1e-2  # GWO is known to crawl along the valley; it must get into it


@pytest.mark.parametrize("method", OPTIMISERS)
def test_same_seed_same_result(method) -> None:
    a = method(rastrigin, [-5.12] * 4, [5.12] * 4, iterations=20, seed=7)
    b = method(rastrigin, [-5.12] * 4, [5.12] * 4, iterations=20, seed=7)
    assert a.fun == b.fun
    np.testing.assert_array_equal(a.x, b.x)


@pytest.mark.parametrize("method", OPTIMISERS)
def test_stays_in_bounds_and_uses_start(method) -> None:
    seen = []

    def f(x: np.ndarray) -> float:
        seen.append(x.copy())
        return sphere(x)

    res = method(f, [0, 0], [0.25, 1], iterations=10, seed=0, x0=np.array([0.25, 0.5]))
    pts = np.array(seen)
    assert np.all(pts >= [0, 0]) and np.all(pts <= [0.25, 1])
    np.testing.assert_allclose(pts[0], [0.25, 0.5])  # the caller's guess is evaluated first
    np.testing.assert_allclose(res.x, [0.25, 0.5], atol=1e-3)  # the optimum is on the edge


def test_bad_bounds() -> None:
    with pytest.raises(ValueError):
        grey_wolf(sphere, [1, 0], [0, 1])
    with pytest.raises(ValueError):
        grey_wolf(sphere, [0], [1], wolves=3)
