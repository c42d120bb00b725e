"""The filter-fitting bench: its objective is the decoder's filter, exactly, and it fits."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from medcodec.bench import filters
from medcodec.bench.runner import BenchImage
from medcodec.models import wavelet_latent as wl
from tests.conftest import smooth_image


@pytest.fixture(scope="module")
def model() -> wl.WaveletModel:
    from medcodec.codecs.learned import DEFAULT_LOSSY_WEIGHTS, load_model

    return load_model("wavelet", DEFAULT_LOSSY_WEIGHTS)[0]


def _images(n: int) -> list[BenchImage]:
    return [BenchImage(f"s{k}", "s", "p", "CT",
                       smooth_image((64, 64), 12, seed=k).astype(np.int64) - 1024,
                       1.0, 0.0) for k in range(n)]


def test_post_hoc_filter_is_the_decoders_filter(model) -> None:
    """Decoding unfiltered then filtering equals the decoder run with those taps switched on."""
    [coded] = filters.code_slices(model, _images(1), [20.0], log=lambda _: None)
    image = _images(1)[0].pixels - _images(1)[0].pixels.min()
    taps = model.filter_taps.copy()
    taps[wl.filter_band(20.0)] = filters.taps_from(np.full(8, 0.03))
    on = dataclasses.replace(model, filter_taps=taps, use_filter=True)
    data = on.encode(image, coded.bits, 20.0)
    direct = on.decode(data, image.shape, coded.bits)
    post = wl.apply_filter(coded.decoded, taps[wl.filter_band(20.0)], (1 << coded.bits) - 1)
    np.testing.assert_array_equal(direct, post)


def test_objective_is_exact_on_every_pixel(model) -> None:
    coded = filters.code_slices(model, _images(2), [6.0], log=lambda _: None)
    f = filters.BandObjective(coded, per_slice=64 * 64, rng=np.random.default_rng(0))
    taps = filters.taps_from(np.linspace(-0.05, 0.05, 8))
    assert taps.sum() == 4096
    expected = np.mean(np.concatenate([
        (wl.apply_filter(c.decoded, taps, (1 << c.bits) - 1) - (c.original - c.low)).ravel()
        for c in coded]).astype(np.float64) ** 2)
    assert f.mse_taps(taps) == pytest.approx(expected, rel=1e-12)


def test_every_method_fits_and_least_squares_is_best_on_training(model) -> None:
    coded = filters.code_slices(model, _images(2), [3.0, 24.0], log=lambda _: None)
    fits = filters.fit_all(coded, agents=8, iterations=15, per_slice=2000, seed=0,
                           gradient_steps=300, log=lambda _: None)
    assert set(fits) == {"none", "least squares", "gradient", "grey wolf", "PSO", "DE"}
    for name, fit in fits.items():
        if fit["taps"] is not None:
            assert np.all(np.asarray(fit["taps"]).sum(axis=1) == 4096), name
        assert fit["train_mse"] <= fits["none"]["train_mse"], name
    assert fits["least squares"]["train_mse"] <= fits["none"]["train_mse"]
    assert fits["grey wolf"]["evaluations"] == 2 * 8 * 16  # two bands, (15 + 1) x 8 wolves
    rows = filters.table(fits, {n: filters.score(coded, f["taps"]) for n, f in fits.items()})
    assert rows[0]["method"] == "none"
    assert "| grey wolf |" in filters.markdown(rows, len(coded), len(coded), 0.0)
