"""The optional VVC (H.266) anchor: VVenC through imageio-ffmpeg's ffmpeg, 4:0:0 at 10 bits.

Skipped when imageio-ffmpeg is not installed or its ffmpeg lacks libvvenc or a VVC decoder.
"""

from __future__ import annotations

import numpy as np
import pytest

from medcodec import codecs
from medcodec.bench.metrics import psnr
from medcodec.codecs.base import CodingSpec, Mode
from medcodec.codecs.vvc import VvcCodec
from medcodec.errors import CodecUnavailableError, CorruptStreamError, MedcodecError

from .conftest import smooth_image

needs_vvc = pytest.mark.skipif(
    not VvcCodec.available(), reason="imageio-ffmpeg with libvvenc and a VVC decoder is missing"
)
SHAPE = (45, 67)  # odd on both sides, not a multiple of 8


def _lossy(qp: int) -> CodingSpec:
    return CodingSpec(Mode.LOSSY, 0, qp)


def _image(bits: int, seed: int = 0) -> np.ndarray:
    return smooth_image(SHAPE, bits, seed=seed).astype(np.uint16)


def test_registered_lossy_only_with_a_qp_knob() -> None:
    assert "vvc" in codecs.names()
    cls = codecs._REGISTRY["vvc"]
    assert cls.modes == frozenset({Mode.LOSSY})
    assert cls.knob is not None and (cls.knob.low, cls.knob.high) == (0, 63)
    assert cls.knob.integer and not cls.knob.rate_increases


def test_unavailable_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(VvcCodec, "available", classmethod(lambda cls: False))
    with pytest.raises(CodecUnavailableError, match=r"medcodec\[vvc\]"):
        codecs.get("vvc")
    assert ("vvc", False, "-", VvcCodec.description) in codecs.availability()


@needs_vvc
@pytest.mark.parametrize("bits", [10, 12])
def test_round_trip_of_an_odd_size(bits: int) -> None:
    codec = codecs.get("vvc")
    image = _image(bits)
    data = codec.encode(image, bits, _lossy(4))
    assert data.startswith((b"\x00\x00\x01", b"\x00\x00\x00\x01"))  # raw Annex B, no container
    back = codec.decode(data, SHAPE, bits)
    assert back.shape == SHAPE and back.dtype == np.uint16
    assert int(back.max()) <= (1 << bits) - 1
    error = np.abs(back.astype(np.int64) - image.astype(np.int64))
    step = 1 << max(0, bits - 10)  # deeper data lose their low bits: half a step of error more
    assert int(error.max()) <= 8 * step, int(error.max())
    assert psnr(image, back, bits) > 50


@needs_vvc
def test_12_bits_are_coded_as_their_top_10_with_mid_point_decoding() -> None:
    codec = codecs.get("vvc")
    image = np.full(SHAPE, 0b1011_0110_1101, dtype=np.uint16)  # flat: coded exactly at QP 0
    back = codec.decode(codec.encode(image, 12, _lossy(0)), SHAPE, 12)
    assert np.all(back == (0b1011_0110_1101 >> 2 << 2) + 2)


@needs_vvc
def test_bytes_fall_as_qp_rises() -> None:
    codec = codecs.get("vvc")
    image = _image(12, seed=3)
    sizes, scores = [], []
    for qp in (4, 16, 28, 40, 52):
        data = codec.encode(image, 12, _lossy(qp))
        sizes.append(len(data))
        scores.append(psnr(image, codec.decode(data, SHAPE, 12), 12))
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes), sizes
    assert scores == sorted(scores, reverse=True), scores


@needs_vvc
def test_encoding_is_deterministic() -> None:
    codec = codecs.get("vvc")
    image = _image(12, seed=5)
    assert codec.encode(image, 12, _lossy(30)) == codec.encode(image, 12, _lossy(30))


@needs_vvc
@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (7, 40), (16, 16), (33, 17)])
def test_small_sizes_are_preserved(shape: tuple[int, int]) -> None:
    codec = codecs.get("vvc")
    image = smooth_image(shape, 12, seed=1).astype(np.uint16)
    back = codec.decode(codec.encode(image, 12, _lossy(10)), shape, 12)
    assert back.shape == shape


@needs_vvc
def test_noise_above_8_bpp_still_codes() -> None:
    """ffmpeg's wrapper caps a stream at width x height bytes; extra padding rows lift that."""
    codec = codecs.get("vvc")
    image = np.random.default_rng(2).integers(0, 1024, SHAPE).astype(np.uint16)
    data = codec.encode(image, 10, _lossy(0))
    assert 8 * len(data) / image.size > 8
    back = codec.decode(data, SHAPE, 10)
    assert int(np.abs(back.astype(np.int64) - image).max()) <= 8


@needs_vvc
def test_damaged_streams_raise_corrupt_stream_error() -> None:
    codec = codecs.get("vvc")
    image = _image(12, seed=7)
    data = codec.encode(image, 12, _lossy(8))
    for bad in (
        b"",
        data[:6],
        data[:20],
        data[: len(data) // 2],
        b"\x00\x00\x00\x01" + bytes(64),
        np.random.default_rng(1).bytes(300),
    ):
        with pytest.raises(CorruptStreamError):
            codec.decode(bad, SHAPE, 12)
    with pytest.raises(CorruptStreamError):
        codec.decode(data, (SHAPE[0] - 1, SHAPE[1]), 12)  # a valid stream of another size


@needs_vvc
def test_knob_and_depth_limits() -> None:
    codec = codecs.get("vvc")
    with pytest.raises(CodecUnavailableError, match="lossless"):
        codec.encode(_image(12), 12, CodingSpec())
    with pytest.raises(MedcodecError, match="qp"):
        codec.encode(_image(12), 12, _lossy(64))
    image = _image(16)  # 16 bits: coded as the top 10, PSNR capped near 71 dB
    back = codec.decode(codec.encode(image, 16, _lossy(0)), SHAPE, 16)
    assert psnr(image, back, 16) > 55
