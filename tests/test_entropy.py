"""Entropy coding: exact round trips, rates near the model's entropy, escapes, stable tables."""

from __future__ import annotations

import numpy as np
import pytest

from medcodec.entropy import GroupedCoder, LaplaceTables
from medcodec.entropy.tables import TOTAL


@pytest.fixture(scope="module")
def tables() -> LaplaceTables:
    return LaplaceTables.build()


def test_tables_are_valid_integer_distributions(tables: LaplaceTables) -> None:
    for k in range(len(tables)):
        table = tables.table(k)
        assert table.sum() == TOTAL
        assert table.min() >= 1
        assert len(table) == 2 * tables.radius[k] + 2
        centre = tables.radius[k]
        assert table[centre] == table[: 2 * centre + 1].max()  # peaked at zero


def test_tables_round_trip_through_arrays(tables: LaplaceTables) -> None:
    again = LaplaceTables.from_arrays(tables.as_arrays())
    np.testing.assert_array_equal(again.freqs, tables.freqs)
    np.testing.assert_array_equal(again.offsets, tables.offsets)


def test_round_trip_and_rate(tables: LaplaceTables) -> None:
    rng = np.random.default_rng(0)
    scales = np.exp(rng.uniform(np.log(0.3), np.log(300), size=50_000))
    symbols = np.round(rng.laplace(0, scales)).astype(np.int64)
    indices = tables.index_for(scales)
    coder = GroupedCoder(tables)
    data = coder.encode(symbols, indices)
    np.testing.assert_array_equal(coder.decode(data, indices), symbols)
    # ideal code length under the tables actually used
    ideal = 0.0
    for k in np.unique(indices):
        table = tables.table(int(k))
        r = tables.radius[k]
        sym = symbols[indices == k]
        ideal -= np.log2(table[np.clip(sym + r, 0, 2 * r + 1)] / TOTAL).sum()
    assert 8 * len(data) < ideal * 1.01 + 64


def test_escapes_carry_any_value(tables: LaplaceTables) -> None:
    symbols = np.array([0, 5, -(2**30), 2**30, 1, -70000, 3], dtype=np.int64)
    indices = np.zeros_like(symbols)
    coder = GroupedCoder(tables)
    np.testing.assert_array_equal(coder.decode(coder.encode(symbols, indices), indices), symbols)


def test_empty_and_shape(tables: LaplaceTables) -> None:
    coder = GroupedCoder(tables)
    empty = np.zeros((0,), dtype=np.int64)
    assert coder.decode(coder.encode(empty, empty), empty).size == 0
    grid = np.arange(12).reshape(3, 4) - 6
    idx = np.full((3, 4), 10)
    np.testing.assert_array_equal(coder.decode(coder.encode(grid, idx), idx), grid)


def test_encoding_is_deterministic(tables: LaplaceTables) -> None:
    rng = np.random.default_rng(1)
    symbols = rng.integers(-50, 50, 1000)
    indices = rng.integers(0, len(tables), 1000)
    assert GroupedCoder(tables).encode(symbols, indices) == GroupedCoder(tables).encode(
        symbols, indices)


def test_logistic_tables_are_rounder_at_the_peak_than_laplace() -> None:
    laplace = LaplaceTables.build(1.0, 64.0, 4)
    logistic = LaplaceTables.build(1.0, 64.0, 4, shape="logistic")
    assert np.array_equal(laplace.radius, logistic.radius)
    for k in range(4):
        lap, log = laplace.table(k), logistic.table(k)
        centre = laplace.radius[k]
        assert log.sum() == TOTAL and log.min() >= 1
        assert log[centre] == log[: 2 * centre + 1].max()
        # same scale parameter: the logistic's peak is lower and flatter
        assert log[centre] < lap[centre]
        assert log[centre] - log[centre + 1] < lap[centre] - lap[centre + 1]
    with pytest.raises(ValueError, match="unknown table shape"):
        LaplaceTables.build(shape="gaussian")
