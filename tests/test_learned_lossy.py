"""The learned lossy codec (wavelet latent + cross-attention + hyperprior): real, safe, exact."""

from __future__ import annotations

import numpy as np
import pytest

import medcodec
from medcodec.codecs import get
from medcodec.codecs.base import CodingSpec, Mode
from medcodec.errors import CorruptStreamError, MedcodecError
from medcodec.image import MedImage

from .conftest import random_image, smooth_image


def _lossy(step: float) -> CodingSpec:
    return CodingSpec(Mode.LOSSY, 0, step)


@pytest.mark.parametrize("bits", [1, 8, 12, 16])
@pytest.mark.parametrize("shape", [(1, 1), (1, 17), (17, 3), (33, 47), (96, 130)])
def test_any_size_and_depth_decodes_to_the_right_shape(bits: int, shape: tuple[int, int]) -> None:
    codec = get("medcodec")
    array = random_image(shape, bits, signed=False, seed=bits)
    data = codec.encode(array, bits, _lossy(4.0))
    out = codec.decode(data, shape, bits)
    assert out.shape == shape and int(out.max()) < (1 << bits)
    assert np.array_equal(out, codec.decode(data, shape, bits))  # deterministic


def test_rate_and_distortion_follow_the_step() -> None:
    codec = get("medcodec")
    image = smooth_image((128, 128), 12)
    sizes, errors = [], []
    for step in (2.0, 8.0, 32.0, 128.0):
        data = codec.encode(image, 12, _lossy(step))
        out = codec.decode(data, image.shape, 12)
        sizes.append(len(data))
        errors.append(float(np.mean((out.astype(float) - image) ** 2)))
    assert sizes == sorted(sizes, reverse=True)
    assert errors == sorted(errors)
    assert errors[0] < 2.0  # a fine step is nearly lossless


def test_pipeline_bpp_target_and_signed_ct() -> None:
    volume = np.stack([smooth_image((96, 80), 12, seed=s) for s in range(2)]).astype(np.int16)
    image = MedImage(volume - 1024, bits_stored=12, rescale_intercept=-1024.0)
    data = medcodec.compress(image, codec="medcodec", mode="lossy", bpp=1.0)
    back = medcodec.decompress(data)
    assert back.pixels.shape == image.pixels.shape and back.pixels.dtype == image.pixels.dtype
    assert 0.5 < 8 * len(data) / image.pixels.size < 1.6
    assert np.abs(back.pixels.astype(int) - image.pixels).mean() < 40


def test_damaged_streams_are_errors_not_garbage() -> None:
    codec = get("medcodec")
    image = smooth_image((64, 64), 12)
    data = codec.encode(image, 12, _lossy(8.0))
    for broken in (data[:10], data[:-3], data + b"\0"):
        with pytest.raises(CorruptStreamError):
            codec.decode(broken, image.shape, 12)
    with pytest.raises(CorruptStreamError):
        codec.decode(data, (64, 63), 12)
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x40
    try:
        out = codec.decode(bytes(flipped), image.shape, 12)
    except MedcodecError:
        return
    # the coefficient checksum must have caught any change that survived entropy decoding
    assert np.array_equal(out, codec.decode(data, image.shape, 12))


def test_attention_and_filter_stages_can_be_switched_off() -> None:
    """Variants are copies: the cached shipped model every other test uses stays as it is."""
    from dataclasses import replace

    from medcodec.codecs.learned import DEFAULT_LOSSY_WEIGHTS, load_model

    model, _ = load_model("wavelet", DEFAULT_LOSSY_WEIGHTS)
    before = (model.use_attention, model.use_filter)
    image = smooth_image((64, 64), 12).astype(np.int64)
    full = model.encode(image, 12, 16.0)
    no_attention = replace(model, use_attention=False)
    plain = no_attention.encode(image, 12, 16.0)
    assert plain != full
    assert no_attention.decode(plain, image.shape, 12).shape == image.shape
    filtered_stream = replace(model, use_filter=True).encode(image, 12, 16.0)
    plain_stream = replace(model, use_filter=False).encode(image, 12, 16.0)
    assert filtered_stream != plain_stream  # only the header flag differs
    filtered = model.decode(filtered_stream, image.shape, 12)  # the stream's flag decides
    unfiltered = model.decode(plain_stream, image.shape, 12)
    assert filtered.shape == unfiltered.shape == image.shape
    assert not np.array_equal(filtered, unfiltered)
    assert (model.use_attention, model.use_filter) == before
    assert model.encode(image, 12, 16.0) == full


def test_hot_path_network_input_order_matches_training() -> None:
    """The codec feeds the entropy MLP [static, attention, pass features] (one gather) through
    a row-permuted first layer; training's order is [static, pass features, attention].
    Both must give the same integers."""
    from medcodec.codecs.learned import DEFAULT_LOSSY_WEIGHTS, load_model
    from medcodec.models import wavelet_latent as wl

    model, _ = load_model("wavelet", DEFAULT_LOSSY_WEIGHTS)
    rng = np.random.default_rng(3)
    n = 5000
    static = rng.integers(0, 40, (n, wl.STATIC)).astype(np.float64)
    extra = rng.integers(0, 30, (n, wl.FEATURES - wl.STATIC)).astype(np.float64)
    attended = rng.integers(-4000, 4000, (n, wl.HEADS * wl.VALUE_DIM)).astype(np.float64)
    for net in model.nets:
        training_order = net.mlp(np.concatenate([static, extra, attended], axis=1))
        codec_order = net.mlp_static_first(np.concatenate([static, attended, extra], axis=1))
        assert np.array_equal(training_order, codec_order)
        assert np.ptp(training_order) > 0  # the inputs do reach the output


def test_high_rate_lossy_takes_the_bounded_error_stream_when_it_costs_less() -> None:
    """At a fine step ``medcodec`` lossy compares the wavelet stream with the raster-scan one
    of matching distortion and keeps the one lower in mse + lambda * bpp; the bounded-error
    stream then holds every pixel within its D. ``medcodec-wavelet`` never switches."""
    from medcodec.codecs.learned import HYBRID_MAX_ERROR

    hybrid, wavelet = get("medcodec"), get("medcodec-wavelet")
    image = smooth_image((96, 120), 12, seed=3).astype(np.int64)
    tags = set()
    for step in (3.0, 6.0, 10.0, 40.0):
        data = hybrid.encode(image, 12, _lossy(step))
        alone = wavelet.encode(image, 12, _lossy(step))
        assert alone[:3] == b"MCW"
        tags.add(data[:3])
        out = hybrid.decode(data, image.shape, 12).astype(np.int64)
        reference = wavelet.decode(alone, image.shape, 12).astype(np.int64)
        mse, mse_alone = (float(np.mean(np.square(x - image))) for x in (out, reference))
        slope = 2 * np.log(2) * mse_alone
        cost = mse + slope * 8 * len(data) / image.size
        assert cost <= mse_alone + slope * 8 * len(alone) / image.size + 1e-9
        if data[:3] == b"MCL":
            assert np.abs(out - image).max() <= HYBRID_MAX_ERROR
        if step == 40.0:
            assert data == alone  # a low rate: the wavelet stream, not even tried against
    assert b"MCL" in tags  # the smooth image's noise is cheaper to code within a bound
    back = medcodec.decompress(medcodec.compress(
        MedImage(image.astype(np.uint16), bits_stored=12), codec="medcodec", mode="lossy",
        quality=3.0))
    assert np.abs(back.pixels.astype(np.int64) - image).max() <= HYBRID_MAX_ERROR


def _padded_slice(seed: int = 0) -> np.ndarray:
    """A smooth 12-bit 'body' inside a circle, padding (0) outside, as CT outside its field
    of view."""
    body = smooth_image((90, 110), 12, seed=seed).astype(np.int64) // 2 + 1500
    yy, xx = np.mgrid[0:90, 0:110]
    body[(yy - 45) ** 2 + (xx - 55) ** 2 > 42**2] = 0
    return body


def test_padding_is_restored_from_a_mask_and_costs_fewer_bytes() -> None:
    from medcodec.codecs.learned import PADDED_TAG

    image = _padded_slice()
    hybrid, wavelet = get("medcodec"), get("medcodec-wavelet")
    for step in (24.0, 48.0):  # lower steps: the bounded-error stream wins on this image
        data = hybrid.encode(image, 12, _lossy(step))
        alone = wavelet.encode(image, 12, _lossy(step))
        assert data[:3] == PADDED_TAG and alone[:3] == b"MCW"
        assert len(data) < 0.9 * len(alone)
        out = hybrid.decode(data, image.shape, 12).astype(np.int64)
        assert np.array_equal(out == 0, image == 0)  # the padding, exactly
        mse = np.mean(np.square(out - image))
        assert mse <= np.mean(np.square(wavelet.decode(alone, image.shape, 12) - image)) * 1.2
        kinds = {kind for kind, _ in hybrid.weights_of(data)}
        assert kinds >= {"MCL"} and kinds & {"MCW", "MCL"}
    volume = np.stack([_padded_slice(s) for s in range(2)]).astype(np.int16) - 1024
    back = medcodec.decompress(medcodec.compress(
        MedImage(volume, bits_stored=12, rescale_intercept=-1024.0, modality="CT"),
        codec="medcodec", mode="lossy", quality=32.0))  # the wavelet stream and its mask
    assert np.array_equal(back.pixels == -1024, volume == -1024)


def test_no_padding_mask_for_clipped_air_or_small_regions() -> None:
    from medcodec.transforms.padding import fill_smooth, padding_mask

    image = _padded_slice()
    mask = padding_mask(image)
    assert mask is not None and np.array_equal(mask, image == 0)
    filled = fill_smooth(image, mask)
    assert np.array_equal(filled[~mask], image[~mask])
    assert filled[mask].min() >= image[~mask].min() - 1  # a continuation, not the padding
    assert np.abs(np.diff(filled, axis=1)).max() < 200  # no edge left at the circle
    touching = image.copy()
    touching[touching == 0] = 1  # air clipped at the bottom: its values touch the minimum
    touching[0, :5] = 0
    assert padding_mask(touching) is None
    assert padding_mask(np.full((8, 9), 7)) is None  # all padding: nothing to code


@pytest.mark.parametrize("damage", ["short", "version", "length", "nested", "value"])
def test_damaged_padded_streams_are_clear_errors(damage: str) -> None:
    import struct

    from medcodec.codecs.learned import PADDED_TAG

    codec = get("medcodec")
    image = _padded_slice()
    data = bytearray(codec.encode(image, 12, _lossy(24.0)))
    assert data[:3] == PADDED_TAG
    if damage == "short":
        data = data[:7]
    elif damage == "version":
        data[3] = 9
    elif damage == "length":
        struct.pack_into("<I", data, 8, len(data))
    elif damage == "nested":
        data = PADDED_TAG + data[3:12] + data
    else:
        struct.pack_into("<I", data, 4, 1 << 12)
    with pytest.raises(CorruptStreamError):
        codec.decode(bytes(data), image.shape, 12)


def test_dependent_quantisers_follow_the_parity_state_machine() -> None:
    from medcodec.models.wavelet.trellis import dependent_dequantise, quantiser_of

    # one row: phase 0 is columns 0, 2, 4, 6 and phase 1 columns 1, 3, 5, 7, each from state 0
    q = np.array([[1, 5, 0, 5, 2, 5, 1, 5]])
    # phase 0 levels 1, 0, 2, 1: states 0 -> 2 -> 1 -> 2, so Q0, Q1, Q0, Q1
    # phase 1 levels all odd: states 0 -> 2 -> 3 -> 1, so Q0, Q1, Q1, Q0
    expected = np.array([[0, 0, 1, 1, 0, 1, 1, 0]], bool)
    assert np.array_equal(quantiser_of(q), expected)
    values = dependent_dequantise(q, 10.0, np.zeros(3))
    assert values[0, 0] == 10.0 and values[0, 2] == 0.0 and values[0, 3] == 45.0
    assert values[0, 1] == 50.0  # Q0 at 5 steps


def test_trellis_finds_the_cheapest_path() -> None:
    """Against every sequence of levels 0..4 (with the coefficient's sign) whose levels are
    among the candidates of the quantiser they land in."""
    import itertools

    from medcodec.codecs.learned import DEFAULT_LOSSY_WEIGHTS, load_model
    from medcodec.models.wavelet.trellis import TRANSITIONS, trellis_levels

    model, _ = load_model("wavelet", DEFAULT_LOSSY_WEIGHTS)
    tables, offsets = model.tables, np.array([0, 12, 21])
    rng = np.random.default_rng(5)
    coeffs = rng.laplace(0, 14, 6)
    index = rng.integers(20, 50, 6)
    step, gain, lam = 10.0, 1.1, 0.07 * 100

    def cost(levels: np.ndarray) -> float | None:
        total, state = 0.0, 0
        for c, k in zip(coeffs, levels, strict=True):
            a, m, q1 = abs(c) / step, abs(int(k)), state >= 2
            low = int(np.floor(a + 0.5)) if q1 else int(np.floor(a))
            if m not in (0, low, low + 1):
                return None
            recon = 0.0 if m == 0 else (m - 0.5 if q1 else m + offsets[min(m, 3) - 1] / 256)
            total += gain * ((a - recon) * step) ** 2
            state = TRANSITIONS[state, m & 1]
        return total + lam * float(tables.code_lengths(levels, index).sum())

    sign = np.where(coeffs < 0, -1, 1)
    costs = [cost(np.array(m) * sign) for m in itertools.product(range(5), repeat=6)]
    best = min(c for c in costs if c is not None)
    found = trellis_levels(coeffs, step, offsets, index, tables, gain, lam)
    assert cost(found) == pytest.approx(best, rel=1e-12)


def test_table_shifts_follow_the_data() -> None:
    from medcodec.codecs.learned import DEFAULT_LOSSY_WEIGHTS, load_model
    from medcodec.models.wavelet.model import SHIFT_EDGES, best_shifts, shifted

    model, _ = load_model("wavelet", DEFAULT_LOSSY_WEIGHTS)
    tables = model.tables
    rng = np.random.default_rng(2)
    levels = np.round(rng.laplace(0, 6.0, 20000)).astype(np.int64)
    right = int(tables.index_for(np.array([6.0]))[0])
    assert np.array_equal(best_shifts(tables, levels, np.full(levels.size, right)), [0] * 5)
    low = np.full(levels.size, right - 9)  # a model that expects too narrow a distribution
    shift = best_shifts(tables, levels, low)
    group = int(np.digitize(right - 9, SHIFT_EDGES))
    assert 7 <= shift[group] <= 11
    assert not np.delete(shift, group).any()  # groups with no values stay at 0
    before = tables.code_lengths(levels, low).sum()
    after = tables.code_lengths(levels, shifted(low, shift, len(tables))).sum()
    assert after < 0.9 * before


@pytest.mark.parametrize(("trellis", "shifts"), [(0.0, False), (0.07, False), (0.0, True),
                                                 (0.07, True)])
def test_dependent_quantisation_and_table_shifts_decode_exactly(trellis: float,
                                                                shifts: bool) -> None:
    from dataclasses import replace

    from medcodec.codecs.learned import DEFAULT_LOSSY_WEIGHTS, load_model

    model, _ = load_model("wavelet", DEFAULT_LOSSY_WEIGHTS)
    variant = replace(model, trellis=trellis, shifts=shifts)
    image = (smooth_image((70, 61), 12).astype(np.int64) // 2
             + random_image((70, 61), 5, False, seed=3).astype(np.int64))
    data, pixels = variant.encode_with_reconstruction(image, 12, 12.0)
    assert np.array_equal(model.decode(data, image.shape, 12), pixels)  # flags decide
    plain, plain_pixels = replace(model, trellis=0.0, shifts=False).encode_with_reconstruction(
        image, 12, 12.0)
    if trellis or shifts:
        assert data != plain
    if trellis:  # the union of the two quantisers is finer: less error at the same step
        assert np.mean((pixels - image) ** 2) < 0.9 * np.mean((plain_pixels - image) ** 2)


def test_damaged_single_stream_parts_are_clear_errors() -> None:
    from medcodec.codecs.learned import DEFAULT_LOSSY_WEIGHTS, load_model
    from medcodec.models.wavelet.model import _HEADER

    model, _ = load_model("wavelet", DEFAULT_LOSSY_WEIGHTS)
    image = smooth_image((64, 64), 12).astype(np.int64)
    data = model.encode(image, 12, 8.0)
    assert data[0] == 2  # stream version 2: one ANS stream
    bad_table = bytearray(data)
    bad_table[_HEADER.size] = 200  # the first side part's table byte
    extra = data + bytes(4)  # one more word: data left after the last part
    for broken in (bytes(bad_table), extra, data[: _HEADER.size + 1], data[:-4]):
        with pytest.raises(CorruptStreamError):
            model.decode(broken, image.shape, 12)


@pytest.mark.parametrize("schedule", [2, 4])
def test_pass_schedules_cover_every_coefficient_once(schedule: int) -> None:
    from medcodec.models.wavelet.passes import BandPass
    from medcodec.models.wavelet.trellis import quantiser_of

    for shape in [(1, 1), (1, 5), (4, 4), (7, 9)]:
        band = BandPass(0, 0, 1.0, None, np.zeros(shape, np.int64), schedule)
        seen = np.zeros(shape, int)
        for pos, known in band.phases():
            assert not (known & pos).any()
            assert np.array_equal(known, seen > 0)
            seen += pos
        assert (seen == 1).all()
    # the lattice: (even, even), (odd, odd), (even, odd), (odd, even), each from state 0
    q = np.array([[1, 3], [0, 5]])
    if schedule == 4:  # one coefficient per pass: all at state 0
        assert not quantiser_of(q, 4).any()
    else:  # (0, 0) then (1, 1), and (0, 1) then (1, 0): the second of each after an odd level
        assert np.array_equal(quantiser_of(q, 2), [[False, False], [True, True]])
    row = np.array([[1, 0, 1, 0, 1]])
    if schedule == 4:  # columns 0, 2, 4 in the first pass: Q0 then Q1 (after an odd level)
        assert np.array_equal(quantiser_of(row, 4)[0, ::2], [False, True, True])


def test_sign_contexts_read_only_the_first_pass_neighbours() -> None:
    from medcodec.models.wavelet.schedule import checkerboard
    from medcodec.models.wavelet.signs import SIGN_POSITIVE, sign_context

    q = np.zeros((3, 3), np.int64)
    q[0, 1], q[2, 1], q[1, 0] = 4, 2, -1  # above, below (positive), left (negative)
    q[1, 1] = -7  # the coefficient itself: never read
    centre = np.zeros((3, 3), bool)
    centre[1, 1] = True
    assert sign_context(q, centre, 1)[0] == 25 + (2 + 2) * 5 + (-1 + 2)
    assert sign_context(np.zeros((3, 3), np.int64), centre, 2)[0] == 50 + 12
    second = checkerboard((5, 4), 1)
    assert sign_context(np.ones((5, 4), np.int64), second, 0).max() < 25  # edges count 0
    # the fitted probabilities say what the measurements say: LH (vertical high-pass) signs
    # are the opposite of their vertical neighbours', HL the opposite of the horizontal ones'
    assert SIGN_POSITIVE[0 * 25 + 4 * 5 + 2] < 1400 and SIGN_POSITIVE[0 * 25 + 0 * 5 + 2] > 2700
    assert SIGN_POSITIVE[25 + 2 * 5 + 4] < 1400 and SIGN_POSITIVE[25 + 2 * 5 + 0] > 2700


def test_context_coded_signs_cost_fewer_bytes_and_decode_exactly() -> None:
    from dataclasses import replace

    from medcodec.codecs.learned import DEFAULT_LOSSY_WEIGHTS, load_model
    from medcodec.models.wavelet.model import _HEADER

    model, _ = load_model("wavelet", DEFAULT_LOSSY_WEIGHTS)
    yy, xx = np.mgrid[0:96, 0:96]
    image = (2000 + 900 * ((yy - 48) ** 2 + (xx - 40) ** 2 < 30**2)
             + random_image((96, 96), 2, False, seed=1).astype(np.int64))  # edges, noise
    with_signs, pixels = model.encode_with_reconstruction(image, 12, 12.0)
    plain, plain_pixels = replace(model, signs=False).encode_with_reconstruction(image, 12, 12.0)
    flags = _HEADER.size - 5
    assert with_signs[flags] & 8 and not plain[flags] & 8
    assert len(with_signs) < 0.99 * len(plain)
    assert np.array_equal(model.decode(with_signs, image.shape, 12), pixels)
    assert np.array_equal(model.decode(plain, image.shape, 12), plain_pixels)
    damaged = bytearray(with_signs)
    damaged[flags] &= ~8  # the mask read as tables, the signs as levels: a clear error
    with pytest.raises(CorruptStreamError):
        model.decode(bytes(damaged), image.shape, 12)
    # a smooth image without edges: the encoder keeps the plain signs where contexts lose
    smooth = smooth_image((96, 96), 12).astype(np.int64)
    assert len(model.encode(smooth, 12, 12.0)) <= len(replace(model, signs=False).encode(
        smooth, 12, 12.0))
