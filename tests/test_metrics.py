"""Metrics against values worked out by hand, BD-rate on curves with a known answer, rate search."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medcodec.bench import metrics
from medcodec.bench.bdrate import bd_rate, clean_curve
from medcodec.codecs.base import Knob
from medcodec.codecs.rate import rate_search

# --- rate ---------------------------------------------------------------------------------------


def test_bpp_and_ratio16() -> None:
    assert metrics.bpp(1000, 100, 80) == pytest.approx(1.0)
    assert metrics.bpp(512 * 512 // 4, 512, 512) == pytest.approx(2.0)
    assert metrics.ratio16(2.0) == pytest.approx(8.0)
    assert metrics.ratio16(0.0) == math.inf
    with pytest.raises(ValueError):
        metrics.bpp(10, 0, 5)


# --- distortion on stored values ----------------------------------------------------------------


def test_psnr_by_hand() -> None:
    ref = np.zeros((2, 2), dtype=np.uint8)
    test = np.array([[0, 0], [0, 255]], dtype=np.uint8)
    # MSE = 255**2 / 4, so PSNR = 10 log10(4) whatever the peak's size.
    assert metrics.psnr(ref, test, 8) == pytest.approx(10 * math.log10(4))
    # 12 bits: one error of 2 in four pixels -> MSE 1 -> 20 log10(4095).
    ref12 = np.zeros((1, 4), dtype=np.uint16)
    test12 = np.array([[0, 0, 0, 2]], dtype=np.uint16)
    assert metrics.psnr(ref12, test12, 12) == pytest.approx(20 * math.log10(4095))
    assert metrics.psnr(ref12, ref12.copy(), 12) == math.inf


def test_psnr_does_not_wrap_unsigned() -> None:
    ref = np.array([[0]], dtype=np.uint16)
    test = np.array([[1]], dtype=np.uint16)
    assert metrics.psnr(ref, test, 16) == pytest.approx(20 * math.log10(65535))
    assert metrics.psnr(test, ref, 16) == pytest.approx(20 * math.log10(65535))


def test_max_abs_err() -> None:
    assert metrics.max_abs_err(np.array([[1, 5]], np.uint16), np.array([[3, 0]], np.uint16)) == 5
    assert metrics.max_abs_err(np.zeros((3, 3), np.uint8), np.zeros((3, 3), np.uint8)) == 0
    with pytest.raises(ValueError):
        metrics.max_abs_err(np.zeros((2, 3)), np.zeros((3, 2)))


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError):
        metrics.psnr(np.zeros((2, 3)), np.zeros((3, 2)), 8)


def test_effective_bits_is_the_benchmark_definition() -> None:
    assert metrics.effective_bits(np.array([[0, 4095]])) == 12
    assert metrics.effective_bits(np.array([[-1024, 3071]])) == 12
    assert metrics.effective_bits(np.array([[0, 4096]])) == 13
    assert metrics.effective_bits(np.array([[5, 6]])) == 8


# --- CT windows ---------------------------------------------------------------------------------


def test_render_window_by_hand() -> None:
    c, w = metrics.SOFT_WINDOW  # 40, 400: -160 HU -> 0, 240 HU -> 255
    hu = np.array([[-1000, -160, 40, 240, 3000]])
    # 40 HU -> (40 + 160) / 400 * 255 = 127.5 -> rint -> 128 (half to even).
    assert metrics.render_window(hu, c, w).tolist() == [[0, 0, 128, 255, 255]]
    # Stored 1024 with intercept -1024 is 0 HU -> 160 / 400 * 255 = 102.
    assert metrics.render_window(np.array([[1024]]), c, w, 1.0, -1024.0)[0, 0] == 102
    # Slope 2: stored 100 -> 200 HU -> 360 / 400 * 255 = 229.5 -> 230.
    assert metrics.render_window(np.array([[100]]), c, w, 2.0, 0.0)[0, 0] == 230
    with pytest.raises(ValueError):
        metrics.render_window(hu, c, 0)


def test_window_psnrs_by_hand() -> None:
    # Soft window: [-160, 240] HU renders to [0, 255]; flattening the bright pixel -> MSE 255**2/2.
    ref = np.array([[-160, 240]]) + 1024
    test = np.array([[-160, -160]]) + 1024
    assert metrics.psnr_soft8(ref, test, 1.0, -1024.0) == pytest.approx(10 * math.log10(2))
    # Lung window (-600, 1500): [-1350, 150] HU renders to [0, 255].
    ref_l = np.array([[-1350, 150]])
    test_l = np.array([[-1350, -1350]])
    assert metrics.psnr_lung8(ref_l, test_l) == pytest.approx(10 * math.log10(2))
    # Differences hidden by the window's clipping do not count.
    assert metrics.psnr_soft8(np.array([[-1000, 1000]]), np.array([[-900, 2000]])) == math.inf


# --- SSIM ---------------------------------------------------------------------------------------


def test_ssim_of_identical_images_is_one() -> None:
    image = np.random.default_rng(0).integers(0, 4096, (16, 16))
    assert metrics.ssim(image, image.copy(), 12) == pytest.approx(1.0)


def test_ssim_of_two_flat_images_by_hand() -> None:
    # Flat images: variances and covariance are 0, so SSIM = (2 a b + C1) / (a^2 + b^2 + C1)
    # with C1 = (0.01 * L)^2; here L = 255 (data_range of 8 bits).
    a, b, c1 = 100.0, 110.0, (0.01 * 255) ** 2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    got = metrics.ssim(np.full((9, 9), 100), np.full((9, 9), 110), 8)
    assert got == pytest.approx(expected)
    assert got == pytest.approx(0.995477, abs=1e-6)


def test_ssim_soft8_uses_the_rendering() -> None:
    ref = np.full((8, 8), 1024 + 40)  # 40 HU -> 128
    test = np.full((8, 8), 1024 + 240)  # 240 HU -> 255
    c1 = (0.01 * 255) ** 2
    expected = (2 * 128 * 255 + c1) / (128**2 + 255**2 + c1)
    assert metrics.ssim_soft8(ref, test, 1.0, -1024.0) == pytest.approx(expected)


def test_ssim_of_images_smaller_than_the_window_is_nan() -> None:
    assert math.isnan(metrics.ssim(np.zeros((3, 5)), np.zeros((3, 5)), 8))


# --- BD-rate ------------------------------------------------------------------------------------

RATES = [0.25, 0.5, 1.0, 2.0, 2.5]
PSNRS = [40.0, 45.0, 50.0, 55.0, 57.0]


def test_bd_rate_of_scaled_rates_is_exact() -> None:
    scaled = [0.8 * r for r in RATES]
    value, interval = bd_rate(scaled, PSNRS, RATES, PSNRS)
    assert value == pytest.approx(-20.0, abs=1e-9)
    assert interval == (40.0, 57.0)
    value, _ = bd_rate(RATES, PSNRS, scaled, PSNRS)
    assert value == pytest.approx(25.0, abs=1e-9)


def test_bd_rate_of_a_psnr_shift_on_a_log_linear_curve() -> None:
    # log2(rate) = (psnr - 40) / 10: rate doubles every 10 dB. Curve A is 1 dB better at every
    # rate, i.e. it needs rate * 2**(-1/10) for the same PSNR: BD-rate = 2**-0.1 - 1 = -6.70%.
    psnr_b = np.linspace(30.0, 60.0, 7)
    rate_b = 2.0 ** ((psnr_b - 40.0) / 10.0)
    value, (lo, hi) = bd_rate(rate_b, psnr_b + 1.0, rate_b, psnr_b)
    assert value == pytest.approx((2.0**-0.1 - 1.0) * 100.0, abs=1e-9)
    assert (lo, hi) == (31.0, 60.0)


def test_bd_rate_uses_only_the_shared_interval() -> None:
    psnr_a = [35.0, 40.0, 45.0, 50.0]
    psnr_b = [42.0, 47.0, 52.0, 57.0]
    rates = [0.5, 1.0, 2.0, 4.0]
    _, interval = bd_rate(rates, psnr_a, rates, psnr_b)
    assert interval == (42.0, 50.0)


def test_bd_rate_ignores_order_and_dominated_points() -> None:
    base, _ = bd_rate([0.8 * r for r in RATES], PSNRS, RATES, PSNRS)
    order = [3, 0, 4, 1, 2]
    shuffled, _ = bd_rate([0.8 * RATES[i] for i in order], [PSNRS[i] for i in order], RATES, PSNRS)
    assert shuffled == pytest.approx(base)
    # A setting that costs more for less PSNR, and a lossless (inf) point, are dropped.
    noisy_rates = [*RATES, 1.5, 6.0]
    noisy_psnrs = [*PSNRS, 44.0, math.inf]
    noisy, _ = bd_rate([0.8 * r for r in RATES], PSNRS, noisy_rates, noisy_psnrs)
    assert noisy == pytest.approx(base)


def test_clean_curve_keeps_the_upper_envelope() -> None:
    rates, psnrs = clean_curve([2.0, 1.0, 1.5, 1.0, 0.0, 3.0], [50, 45, 44, 46, 30, math.nan])
    assert rates.tolist() == [1.0, 2.0]
    assert psnrs.tolist() == [46.0, 50.0]


def test_bd_rate_errors() -> None:
    with pytest.raises(ValueError, match="overlap"):
        bd_rate([1, 2], [30, 35], [1, 2], [40, 45])
    with pytest.raises(ValueError, match="at least 2"):
        bd_rate([1], [30], [1, 2], [30, 35])
    with pytest.raises(ValueError, match="at least 2"):
        bd_rate([1, 2], [math.inf, math.inf], [1, 2], [30, 35])
    with pytest.raises(ValueError):
        bd_rate([1, 2, 3], [30, 35], [1, 2], [30, 35])


# --- rate search --------------------------------------------------------------------------------


class _Counting:
    """A fake encoder: bpp is a known monotone function of the setting; counts calls."""

    def __init__(self, fn) -> None:
        self.fn = fn
        self.calls: list[float] = []

    def __call__(self, value: float) -> float:
        self.calls.append(value)
        return float(self.fn(value))


def test_rate_search_integer_knob_hits_the_exact_setting() -> None:
    enc = _Counting(lambda q: 0.1 * q)
    knob = Knob("quality", 1, 100, rate_increases=True, integer=True)
    setting, achieved = rate_search(enc, knob, 2.5)
    assert (setting, achieved) == (25, pytest.approx(2.5))
    assert isinstance(setting, int)
    assert all(float(v).is_integer() for v in enc.calls)
    assert len(enc.calls) == len(set(enc.calls)) <= 12


def test_rate_search_integer_knob_between_two_settings_picks_the_closer() -> None:
    knob = Knob("quality", 1, 100, rate_increases=True, integer=True)
    setting, achieved = rate_search(_Counting(lambda q: 0.1 * q), knob, 2.54, rel_tol=0.001)
    assert setting == 25 and achieved == pytest.approx(2.5)


def test_rate_search_decreasing_continuous_knob_in_log_scale() -> None:
    enc = _Counting(lambda d: 10.0 / d)  # distance-like: larger = fewer bits
    knob = Knob("distance", 0.01, 25.0, rate_increases=False)
    setting, achieved = rate_search(enc, knob, 1.0, rel_tol=0.01)
    assert achieved == pytest.approx(1.0, rel=0.01)
    assert setting == pytest.approx(10.0, rel=0.01)
    assert len(enc.calls) <= 26


def test_rate_search_linear_knob() -> None:
    knob = Knob("psnr_db", 20.0, 100.0)
    setting, achieved = rate_search(lambda p: (p - 20.0) / 10.0, knob, 3.0, rel_tol=1e-4)
    assert setting == pytest.approx(50.0, rel=1e-3)
    assert achieved == pytest.approx(3.0, rel=1e-4)


def test_rate_search_unreachable_target_returns_the_nearest_end() -> None:
    knob = Knob("qp", 0, 51, rate_increases=False, integer=True)
    qp_rate = lambda qp: 1.2 * 2.0 ** (-qp / 6.0)  # noqa: E731 - HEVC-like: tops out at QP 0
    assert rate_search(qp_rate, knob, 2.5) == (0, pytest.approx(1.2))
    setting, achieved = rate_search(qp_rate, knob, 1e-6)
    assert setting == 51 and achieved == pytest.approx(1.2 * 2.0 ** (-51 / 6.0))


def test_rate_search_refuses_a_non_positive_target() -> None:
    with pytest.raises(ValueError):
        rate_search(lambda q: q, Knob("q", 1, 10), 0.0)


def test_rate_search_needs_few_encodes_on_a_power_law() -> None:
    """Rate is close to a power of the step for the real codecs: the search must exploit it
    (a plain bisection of this knob needs 8 encodes for 2%)."""
    enc = _Counting(lambda step: 40.0 * step**-0.9)
    knob = Knob("step", 0.5, 2048.0, rate_increases=False)
    setting, achieved = rate_search(enc, knob, 1.0)
    assert achieved == pytest.approx(1.0, rel=0.02)
    assert setting == pytest.approx(40.0 ** (1 / 0.9), rel=0.03)
    assert len(enc.calls) <= 5
