"""The paper-literal lossy codec (DWT, CAL, learned analysis/synthesis, hyperprior)."""

from __future__ import annotations

import numpy as np
import pytest

import medcodec
from medcodec.codecs import get
from medcodec.codecs.base import CodingSpec, Mode
from medcodec.errors import CodecUnavailableError, CorruptStreamError
from medcodec.image import MedImage
from medcodec.models.transform import layout as lay
from medcodec.models.transform.intconv import IntConv
from medcodec.models.transform.model import STEP_UNITS, TransformModel, step_code
from medcodec.models.zoo import TRANSFORM, lossy_model

from .conftest import random_image, smooth_image


def _reference_conv(x: np.ndarray, conv: IntConv) -> np.ndarray:
    """The same integer convolution by direct int64 sums (no BLAS)."""
    x = np.clip(x, -2**20, 2**20).astype(np.int64)
    if conv.upsample:
        x = x.repeat(2, 0).repeat(2, 1)
    rows, cols, channels = x.shape
    k = conv.kernel
    w = conv.weight.astype(np.int64).reshape(conv.outputs, channels, k, k)
    p = np.pad(x, ((k // 2, k // 2), (k // 2, k // 2), (0, 0)))
    acc = np.zeros((rows, cols, conv.outputs), np.int64)
    for dr in range(k):
        for dc in range(k):
            acc += np.einsum("rci,oi->rco", p[dr:dr + rows, dc:dc + cols], w[:, :, dr, dc])
    acc = acc[:: conv.stride, :: conv.stride] + conv.bias.astype(np.int64)
    out = acc >> conv.shift  # floor division by 2**shift
    return np.clip(out, 0 if conv.relu else -2**20, 2**20)


@pytest.mark.parametrize(("kernel", "stride", "upsample"),
                         [(3, 1, False), (3, 2, False), (3, 1, True), (1, 1, False)])
@pytest.mark.parametrize("relu", [False, True])
def test_integer_convolution_is_exact(kernel: int, stride: int, upsample: bool,
                                      relu: bool) -> None:
    rng = np.random.default_rng(kernel * 10 + stride + upsample)
    weight = rng.normal(size=(5, 7, kernel, kernel))
    conv = IntConv.from_float(weight, rng.normal(size=5), 2.0**-8, 8, stride=stride,
                              upsample=upsample, relu=relu)
    x = rng.integers(-2**20, 2**20, size=(13, 10, 7)).astype(np.float64)
    out = conv(x)
    assert out.shape[2] == 5
    np.testing.assert_array_equal(out, _reference_conv(x, conv).astype(np.float64))


def test_integer_convolution_tracks_its_float_model() -> None:
    rng = np.random.default_rng(1)
    weight, bias = rng.normal(size=(4, 3, 3, 3)) * 0.3, rng.normal(size=4)
    x = rng.normal(size=(9, 11, 3))
    conv = IntConv.from_float(weight, bias, 2.0**-10, 10)
    out = conv(np.round(x * 2**10)) * 2.0**-10
    p = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    ref = sum(np.einsum("rci,oi->rco", p[a:a + 9, b:b + 11], weight[:, :, a, b])
              for a in range(3) for b in range(3)) + bias
    assert np.abs(out - ref).max() < 0.01


def test_layout_is_a_perfect_reconstruction() -> None:
    image = random_image((48, 32), 12, False, seed=3).astype(np.float64)
    grid = lay.analysis_bands(image)
    assert grid.shape == (16, 12, 8)
    np.testing.assert_allclose(lay.synthesis_image(grid), image, atol=1e-6)


def _model() -> TransformModel:
    try:
        model, _ = lossy_model(TRANSFORM)
    except CodecUnavailableError:
        pytest.skip("the transform model is not installed")
    return model  # type: ignore[return-value]


def test_steps_follow_the_code_and_are_positive() -> None:
    model = _model()
    codes = range(-STEP_UNITS, 11 * STEP_UNITS, 7)
    steps = np.array([model.steps(c) for c in codes])
    assert (steps > 0).all() and steps.shape[1] == 16
    assert (np.diff(steps.mean(axis=1)) > 0).all()
    assert step_code(16.0) == 4 * STEP_UNITS


@pytest.mark.parametrize(("bits", "shape"), [(8, (33, 47)), (12, (64, 64)), (16, (21, 70)),
                                             (10, (1, 1)), (12, (5, 300))])
def test_any_size_and_depth_round_trips(bits: int, shape: tuple[int, int]) -> None:
    model = _model()
    image = smooth_image(shape, bits, seed=bits)
    data = model.encode(image, bits, 4.0)
    out = model.decode(data, shape, bits)
    assert out.shape == shape
    assert out.min() >= 0 and out.max() <= (1 << bits) - 1
    assert np.abs(out - image).max() < 64 + (1 << max(0, bits - 9))


def test_rate_and_distortion_follow_the_step() -> None:
    model = _model()
    image = smooth_image((96, 80), 12, seed=4) + random_image((96, 80), 4, False, seed=5)
    sizes, errors = [], []
    for step in (2.0, 8.0, 32.0, 128.0):
        data = model.encode(image, 13, step)
        out = model.decode(data, image.shape, 13)
        sizes.append(len(data))
        errors.append(float(np.mean((out - image) ** 2.0)))
    assert sizes == sorted(sizes, reverse=True)
    assert errors == sorted(errors)
    assert errors[0] < 4.0


def test_damaged_streams_are_errors() -> None:
    model = _model()
    image = smooth_image((48, 48), 12, seed=6)
    data = model.encode(image, 12, 8.0)
    with pytest.raises(CorruptStreamError):
        model.decode(data[:-3], image.shape, 12)
    with pytest.raises(CorruptStreamError):
        model.decode(data[:5], image.shape, 12)
    flipped = bytearray(data)
    flipped[-2] ^= 0x5A
    with pytest.raises(CorruptStreamError):
        model.decode(bytes(flipped), image.shape, 12)
    bad_version = bytes([9]) + data[1:]
    with pytest.raises(CorruptStreamError):
        model.decode(bad_version, image.shape, 12)


def test_filter_stage_can_be_switched_off() -> None:
    model = _model()
    image = smooth_image((64, 48), 12, seed=7)
    saved = model.use_filter
    try:
        model.use_filter = True
        on = model.decode(model.encode(image, 12, 64.0), image.shape, 12)
        model.use_filter = False
        off = model.decode(model.encode(image, 12, 64.0), image.shape, 12)
    finally:
        model.use_filter = saved
    assert on.shape == off.shape


def test_codec_names_and_environment_choose_the_lossy_model(monkeypatch) -> None:
    _model()
    image = MedImage(smooth_image((40, 40), 12, seed=8), bits_stored=12, modality="CT")
    spec = dict(mode="lossy", quality=16.0)
    transform = medcodec.compress(image, codec="medcodec-transform", **spec)
    wavelet = medcodec.compress(image, codec="medcodec-wavelet", **spec)
    assert transform != wavelet
    for data in (transform, wavelet):
        out = medcodec.decompress(data).pixels.astype(int)
        assert np.abs(out - image.pixels.astype(int)).max() < 200
    monkeypatch.setenv("MEDCODEC_LOSSY_MODEL", "transform")
    codec = get("medcodec")
    body = codec.encode(image.pixels[0], 12, CodingSpec(Mode.LOSSY, quality=16.0))
    assert body[:3] == TRANSFORM.tag
    monkeypatch.setenv("MEDCODEC_LOSSY_MODEL", "nonsense")
    with pytest.raises(CodecUnavailableError, match="lossy models"):
        codec.encode(image.pixels[0], 12, CodingSpec(Mode.LOSSY, quality=16.0))
    with pytest.raises(Exception, match="lossy"):
        get("medcodec-transform").check(12, CodingSpec(Mode.LOSSLESS))


def test_cross_attention_matches_a_per_position_reference() -> None:
    """The vectorised integer CAL equals the textbook computation, position by position."""
    from medcodec.models.intnet import IntLayer, IntMLP
    from medcodec.models.transform.cal import ACT_BITS, IntCal
    from medcodec.models.wavelet.attention import SOFTMAX_STEPS, softmax_table

    rng = np.random.default_rng(11)

    def layer(n_in: int, n_out: int, relu: bool = False) -> IntMLP:
        return IntMLP([IntLayer(np.round(rng.normal(size=(n_in, n_out)) * 600),
                                np.round(rng.normal(size=n_out) * 2000), 10, relu)])

    dim = lay.HEADS * lay.KEY_DIM
    cal = IntCal([layer(n, lay.TOKEN_DIM, True) for n in lay.GROUP_SIZES],
                 layer(lay.TOKEN_DIM, dim), layer(lay.TOKEN_DIM, dim), layer(lay.TOKEN_DIM, dim),
                 [layer(dim, n) for n in lay.GROUP_SIZES])
    grid = np.round(rng.normal(size=(3, 5, 16)) * 3000)
    out = cal(grid)
    table = softmax_table()
    for r, c in [(0, 0), (2, 4), (1, 3)]:
        x = grid[r, c]
        tokens = np.stack([cal.embed[g](x[None, a:b])[0] for g, (a, b) in
                           enumerate(lay.GROUP_SLICES)])
        q, k, v = (net(tokens).reshape(lay.TOKENS, lay.HEADS, lay.KEY_DIM)
                   for net in (cal.query, cal.key, cal.value))
        mixed = np.zeros((lay.TOKENS, lay.HEADS, lay.KEY_DIM))
        for h in range(lay.HEADS):
            logits = np.floor(q[:, h] @ k[:, h].T * 2.0 ** -(2 * ACT_BITS + 1) * SOFTMAX_STEPS)
            gap = np.clip(logits.max(axis=1, keepdims=True) - logits, 0, 255).astype(int)
            w = table[gap]
            mixed[:, h] = np.floor(w @ v[:, h] / w.sum(axis=1, keepdims=True))
        mixed = mixed.reshape(lay.TOKENS, dim)
        expected = np.concatenate([cal.back[g](mixed[None, g])[0] for g in range(lay.TOKENS)])
        np.testing.assert_array_equal(out[r, c], expected)
