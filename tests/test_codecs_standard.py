"""Every registered codec: exact lossless, bounded near-lossless, sane lossy, clear errors.

Each codec is checked at 8, 12 and 16 bits on random (incompressible) and smooth images of odd
sizes; where it cannot carry a depth or a mode it must say so with CodecUnavailableError, and a
damaged stream must give CorruptStreamError, never another exception (or a crash).
"""

from __future__ import annotations

import numpy as np
import pytest

from medcodec import codecs
from medcodec.bench.metrics import psnr
from medcodec.codecs.base import Codec, CodingSpec, Mode, unsigned_dtype
from medcodec.codecs.rate import rate_search
from medcodec.errors import CodecUnavailableError, CorruptStreamError, MedcodecError

from .conftest import random_image, smooth_image

ALL = codecs.names()
STANDARD = ["jpeg2000", "htj2k", "jpegls", "jpegxl", "avif", "hevc", "jpeg12", "deflate"]
SHAPES = [(3, 5), (33, 17), (64, 64)]
BITS = [8, 12, 16]

#: Three lossy settings per codec, from fewest to most bits.
LOSSY_LADDER: dict[str, list[float]] = {
    "jpeg2000": [40, 55, 70],
    "htj2k": [64, 8, 1],
    "jpegxl": [8, 2, 0.5],
    "avif": [20, 60, 95],
    "hevc": [40, 25, 5],
    "vvc": [40, 28, 10],
    "jpeg12": [10, 50, 95],
    "medcodec": [64, 16, 4],
    "medcodec-wavelet": [64, 16, 4],
    "medcodec-transform": [64, 16, 4],
}


def _codec(name: str) -> Codec:
    cls = codecs._REGISTRY[name]
    if not cls.available():
        pytest.skip(f"{name} is not available on this install")
    return cls()


def _image(kind: str, shape: tuple[int, int], bits: int, seed: int = 0) -> np.ndarray:
    if kind == "random":
        return random_image(shape, bits, signed=False, seed=seed)
    return smooth_image(shape, bits, seed=seed).astype(unsigned_dtype(bits))


def _lossy(quality: float) -> CodingSpec:
    return CodingSpec(Mode.LOSSY, 0, quality)


def test_every_standard_codec_is_registered() -> None:
    assert set(STANDARD) <= set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_class_attributes_are_consistent(name: str) -> None:
    cls = codecs._REGISTRY[name]
    assert cls.name == name and cls.description
    assert cls.modes and cls.min_bits <= cls.max_bits
    assert (cls.knob is not None) == (Mode.LOSSY in cls.modes)
    if cls.knob is not None:
        assert cls.knob.low < cls.knob.high
    if cls.available():
        assert isinstance(cls.version(), str) and cls.version()


def test_dicom_methods() -> None:
    methods = {name: codecs._REGISTRY[name].dicom_method for name in STANDARD}
    assert methods == {
        "jpeg2000": "ISO_15444_1",
        "htj2k": "ISO_15444_15",
        "jpegls": "ISO_14495_1",
        "jpegxl": "ISO_18181_1",
        "avif": None,
        "hevc": "ISO_23008_2",
        "jpeg12": "ISO_10918_1",
        "deflate": None,
    }


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("name", ALL)
def test_lossless_round_trip(name: str, bits: int) -> None:
    codec = _codec(name)
    spec = CodingSpec()
    if Mode.LOSSLESS not in codec.modes or bits > codec.max_bits:
        with pytest.raises(CodecUnavailableError):
            codec.check(bits, spec)
        with pytest.raises(CodecUnavailableError):
            codec.encode(_image("smooth", (8, 8), min(bits, 12)), bits, spec)
        return
    for shape in SHAPES:
        for kind in ("random", "smooth"):
            image = _image(kind, shape, bits, seed=shape[0] + bits)
            data = codec.encode(image, bits, spec)
            assert isinstance(data, bytes) and data
            back = codec.decode(data, shape, bits)
            assert back.shape == shape, (name, kind, shape)
            assert np.array_equal(back.astype(np.int64), image.astype(np.int64)), (name, kind)


@pytest.mark.parametrize("name", ALL)
def test_one_pixel_image(name: str) -> None:
    codec = _codec(name)
    image = np.array([[200]], dtype=np.uint16)
    spec = CodingSpec() if Mode.LOSSLESS in codec.modes else _lossy(LOSSY_LADDER[name][-1])
    data = codec.encode(image, 12, spec)  # every codec here codes a single pixel
    back = codec.decode(data, (1, 1), 12)
    assert back.shape == (1, 1)
    if spec.mode is Mode.LOSSLESS:
        assert int(back[0, 0]) == 200
    else:  # the finest lossy setting keeps one flat pixel close
        assert abs(int(back[0, 0]) - 200) <= 16


@pytest.mark.parametrize(
    "name", [n for n in ALL if Mode.NEAR_LOSSLESS in codecs._REGISTRY[n].modes]
)
@pytest.mark.parametrize("bits", BITS)
def test_near_lossless_bound(name: str, bits: int) -> None:
    codec = _codec(name)
    for d in (1, 2, 4):
        for shape in ((33, 17), (64, 64)):
            for kind in ("random", "smooth"):
                image = _image(kind, shape, bits, seed=d)
                spec = CodingSpec(Mode.NEAR_LOSSLESS, d)
                back = codec.decode(codec.encode(image, bits, spec), shape, bits)
                err = np.abs(back.astype(np.int64) - image.astype(np.int64)).max()
                assert err <= d, (name, bits, d, kind, err)


@pytest.mark.parametrize("name", ALL)
def test_no_near_lossless_where_the_codec_cannot_bound_the_error(name: str) -> None:
    codec = _codec(name)
    if Mode.NEAR_LOSSLESS not in codec.modes:
        with pytest.raises(CodecUnavailableError, match="near-lossless"):
            codec.check(12, CodingSpec(Mode.NEAR_LOSSLESS, 2))


@pytest.mark.parametrize("name", sorted(LOSSY_LADDER))
def test_lossy_psnr_increases_with_the_knob(name: str) -> None:
    codec = _codec(name)
    image = _image("smooth", (64, 64), 12, seed=3)
    scores, sizes = [], []
    for quality in LOSSY_LADDER[name]:
        data = codec.encode(image, 12, _lossy(quality))
        back = codec.decode(data, image.shape, 12)
        assert back.shape == image.shape and back.dtype == np.uint16
        assert int(back.max()) <= 4095
        scores.append(psnr(image, back, 12))
        sizes.append(len(data))
    assert scores == sorted(scores) and len(set(scores)) == 3, (name, scores)
    assert sizes == sorted(sizes), (name, sizes)


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("name", sorted(LOSSY_LADDER))
def test_lossy_shapes_and_depths(name: str, bits: int) -> None:
    codec = _codec(name)
    quality = LOSSY_LADDER[name][1]
    if bits > codec.max_bits:
        with pytest.raises(CodecUnavailableError, match="at most"):
            codec.encode(_image("smooth", (8, 8), 12), bits, _lossy(quality))
        return
    for shape in SHAPES:
        image = _image("smooth", shape, bits, seed=1)
        back = codec.decode(codec.encode(image, bits, _lossy(quality)), shape, bits)
        assert back.shape == shape
        assert back.dtype == unsigned_dtype(bits)
        assert int(back.max()) <= (1 << bits) - 1
        if min(shape) >= 33:  # tiny images are dominated by edge effects
            assert psnr(image, back, bits) > 30, (name, bits, shape)


@pytest.mark.parametrize("name", sorted(LOSSY_LADDER))
def test_knob_out_of_range_is_a_clear_error(name: str) -> None:
    codec = _codec(name)
    assert codec.knob is not None
    with pytest.raises(MedcodecError, match=codec.knob.name):
        codec.encode(_image("smooth", (8, 8), 8), 8, _lossy(codec.knob.high + 1000))


def test_lossy_only_codec_refuses_lossless() -> None:
    codec = _codec("jpeg12")
    with pytest.raises(CodecUnavailableError, match="lossless"):
        codec.encode(_image("smooth", (8, 8), 8), 8, CodingSpec())


@pytest.mark.parametrize("name", ["avif", "hevc", "jpeg12"])
def test_depth_above_12_bits_is_refused(name: str) -> None:
    codec = _codec(name)
    assert codec.max_bits == 12
    spec = _lossy(LOSSY_LADDER[name][1])
    with pytest.raises(CodecUnavailableError, match="at most 12 bits"):
        codec.encode(_image("smooth", (16, 16), 16), 13, spec)


@pytest.mark.parametrize("name", ALL)
def test_damaged_streams_raise_corrupt_stream_error(name: str) -> None:
    codec = _codec(name)
    # Random pixels: CharLS 2.4.3 needs ~4 s to reject a truncated JPEG-LS stream of a smooth
    # image (run mode), whatever its size; noise keeps this test fast for every codec.
    image = _image("random", (48, 40), 12, seed=7)
    spec = CodingSpec() if Mode.LOSSLESS in codec.modes else _lossy(LOSSY_LADDER[name][1])
    data = codec.encode(image, 12, spec)
    rng = np.random.default_rng(11)
    # Clearly invalid: nothing, a few bytes, noise, and a valid stream for another shape.
    for bad in (b"", data[:6], rng.bytes(300)):
        with pytest.raises(CorruptStreamError):
            codec.decode(bad, image.shape, 12)
    with pytest.raises(CorruptStreamError):
        codec.decode(data, (47, 40), 12)
    # Truncated or bit-flipped: some codecs conceal damage (HEVC, JPEG 2000 truncation), so
    # the contract is only "CorruptStreamError or an image of the right shape".
    damaged = [data[: len(data) * k // 8] for k in range(1, 8)]
    for _ in range(24):
        flipped = bytearray(data)
        for pos in rng.integers(0, len(data), size=3):
            flipped[pos] ^= 1 << int(rng.integers(0, 8))
        damaged.append(bytes(flipped))
    for bad in damaged:
        try:
            back = codec.decode(bad, image.shape, 12)
        except CorruptStreamError:
            continue
        assert back.shape == image.shape


def test_hevc_stream_is_raw_annex_b() -> None:
    codec = _codec("hevc")
    data = codec.encode(_image("smooth", (64, 64), 12), 12, CodingSpec())
    assert data.startswith(b"\x00\x00\x00\x01")
    assert (data[4] >> 1) & 0x3F == 32  # VPS first, as an elementary stream starts
    assert b"ftyp" not in data[:64] and b"mdat" not in data[:64]


def test_avif_and_hevc_pick_the_av1_hevc_depth() -> None:
    """10-bit data is coded at depth 10 (not 12) and still comes back exactly."""
    for name in ("avif", "hevc"):
        codec = _codec(name)
        image = _image("random", (33, 17), 10, seed=2)
        back = codec.decode(codec.encode(image, 10, CodingSpec()), image.shape, 10)
        assert np.array_equal(back, image)


@pytest.mark.parametrize("name", ["jpeg2000", "jpeg12"])
def test_rate_search_on_a_real_codec(name: str) -> None:
    codec = _codec(name)
    image = _image("smooth", (64, 64), 12, seed=5)
    assert codec.knob is not None

    def bpp_at(value: float) -> float:
        return 8 * len(codec.encode(image, 12, _lossy(value))) / image.size

    setting, achieved = rate_search(bpp_at, codec.knob, 2.0, rel_tol=0.05)
    assert codec.knob.low <= setting <= codec.knob.high
    # An integer knob may only bracket the target; a continuous one must reach it.
    assert abs(achieved - 2.0) <= (0.5 if codec.knob.integer else 0.1)
