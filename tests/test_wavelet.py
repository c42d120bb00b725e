"""Wavelet transforms: perfect reconstruction at every size, exact integer 5/3."""

from __future__ import annotations

import numpy as np
import pytest

from medcodec.transforms import int53_forward, int53_inverse, wavelet_forward, wavelet_inverse

from .conftest import random_image, smooth_image


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (64, 64), (513, 511), (37, 100)])
@pytest.mark.parametrize("levels", [1, 3, 5])
def test_int53_is_exactly_reversible(shape: tuple[int, int], levels: int) -> None:
    for image in (random_image(shape, 16, True, seed=levels).astype(np.int64),
                  random_image(shape, 12, False, seed=1).astype(np.int64)):
        bands = int53_forward(image, levels)
        assert bands.levels == levels
        np.testing.assert_array_equal(int53_inverse(bands), image)


def test_int53_compacts_energy() -> None:
    image = smooth_image((128, 128), 12).astype(np.int64)
    bands = int53_forward(image, 3)
    detail = np.concatenate([b.ravel() for level in bands.details for b in level])
    assert np.abs(detail).mean() < 0.1 * np.abs(image - image.mean()).mean()


@pytest.mark.parametrize("shape", [(64, 64), (513, 511), (17, 40)])
def test_cdf97_perfect_reconstruction(shape: tuple[int, int]) -> None:
    image = smooth_image(shape, 12).astype(np.float64)
    bands = wavelet_forward(image, 4)
    assert bands.ll.shape == tuple(-(-n // 16) for n in shape)
    np.testing.assert_allclose(wavelet_inverse(bands), image, atol=1e-8)
