"""The learned lossless / near-lossless codec (pixel-estimation network): exact, bounded, safe."""

from __future__ import annotations

import numpy as np
import pytest

import medcodec
from medcodec.codecs import get
from medcodec.codecs.base import CodingSpec, Mode
from medcodec.errors import CorruptStreamError, MedcodecError
from medcodec.image import MedImage
from medcodec.models.intnet import IntMLP

from .conftest import random_image, smooth_image

LOSSLESS = CodingSpec(Mode.LOSSLESS)


def _roundtrip(array: np.ndarray, bits: int, spec: CodingSpec = LOSSLESS) -> np.ndarray:
    codec = get("medcodec")
    data = codec.encode(array, bits, spec)
    return codec.decode(data, array.shape, bits)


@pytest.mark.parametrize("bits", [1, 2, 8, 12, 16])
@pytest.mark.parametrize("shape", [(1, 1), (1, 17), (17, 1), (3, 5), (33, 47), (130, 97)])
def test_lossless_random_every_depth_and_odd_size(bits: int, shape: tuple[int, int]) -> None:
    array = random_image(shape, bits, signed=False, seed=bits)
    assert np.array_equal(_roundtrip(array, bits), array)


@pytest.mark.parametrize("bits", [8, 12, 16])
def test_lossless_smooth_and_constant(bits: int) -> None:
    smooth = smooth_image((200, 171), bits)
    assert np.array_equal(_roundtrip(smooth, bits), smooth)
    constant = np.full((64, 65), (1 << bits) - 1, dtype=smooth.dtype)
    assert np.array_equal(_roundtrip(constant, bits), constant)


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("bits", [1, 8, 12, 16])
def test_pipeline_lossless_signed_and_unsigned(bits: int, signed: bool) -> None:
    image = MedImage(random_image((2, 31, 40), bits, signed, seed=3), bits_stored=bits)
    back = medcodec.decompress(medcodec.compress(image, codec="medcodec"))
    assert np.array_equal(back.pixels, image.pixels)


@pytest.mark.parametrize("max_error", [1, 2, 4, 8])
def test_near_lossless_bound_holds(max_error: int) -> None:
    spec = CodingSpec(Mode.NEAR_LOSSLESS, max_error)
    for array, bits in ((smooth_image((90, 77), 12), 12), (random_image((40, 41), 16, False), 16),
                        (random_image((9, 7), 8, False), 8)):
        decoded = _roundtrip(array, bits, spec)
        assert np.abs(decoded.astype(np.int64) - array).max() <= max_error


def test_near_lossless_saves_bits() -> None:
    array = smooth_image((128, 128), 12)
    codec = get("medcodec")
    sizes = [len(codec.encode(array, 12, CodingSpec(Mode.NEAR_LOSSLESS, d) if d else LOSSLESS))
             for d in (0, 1, 2, 4)]
    assert sizes == sorted(sizes, reverse=True) and sizes[3] < 0.7 * sizes[0]


def test_real_dicom_lossless_and_near_lossless() -> None:
    from pydicom.data import get_testdata_file

    image = medcodec.read(get_testdata_file("CT_small.dcm"))
    back = medcodec.decompress(medcodec.compress(image, codec="medcodec"))
    assert np.array_equal(back.pixels, image.pixels)
    near = medcodec.decompress(medcodec.compress(image, codec="medcodec", mode="near-lossless",
                                                 max_error=2))
    assert np.abs(near.pixels.astype(int) - image.pixels.astype(int)).max() <= 2


def test_corrupt_streams_are_clear_errors() -> None:
    codec = get("medcodec")
    array = smooth_image((64, 64), 12)
    data = codec.encode(array, 12, LOSSLESS)
    for broken in (b"", data[:3], b"XYZ" + data[3:], data[:-5], data + b"\0",
                   data[:3] + bytes([data[3] ^ 1]) + data[4:]):
        with pytest.raises(CorruptStreamError):
            codec.decode(broken, array.shape, 12)


def test_damaged_payload_never_returns_silently_wrong_pixels() -> None:
    image = MedImage(smooth_image((1, 48, 48), 12)[0][None], bits_stored=12)
    data = bytearray(medcodec.compress(image, codec="medcodec"))
    data[-20] ^= 0x10
    with pytest.raises(MedcodecError):
        medcodec.decompress(bytes(data))


def test_integer_network_is_exact_and_close_to_float() -> None:
    rng = np.random.default_rng(0)
    weights = [rng.normal(0, 0.3, (6, 16)), rng.normal(0, 0.3, (16, 2))]
    biases = [rng.normal(0, 0.1, 16), rng.normal(0, 0.1, 2)]
    net = IntMLP.from_float(weights, biases, np.full(6, 1 / 64))
    feats = rng.integers(-3000, 3000, (5000, 6)).astype(np.float64)
    out = net(feats)
    assert np.array_equal(out, np.floor(out))  # integers
    assert np.array_equal(out[:100], net(feats[:100]))  # no dependence on block boundaries
    hidden = np.maximum(feats / 64 @ weights[0] + biases[0], 0)
    expected = (hidden @ weights[1] + biases[1]) * 256
    assert np.abs(out - expected).max() < 0.02 * np.abs(expected).max() + 4


def _volume(n: int = 5) -> MedImage:
    rng = np.random.default_rng(5)
    base = smooth_image((72, 65), 12, seed=1).astype(np.int64)
    slices = [np.clip(base + rng.normal(0, 12, base.shape).round(), 0, 4095) for _ in range(n)]
    return MedImage(np.stack(slices).astype(np.int16) - 1024, bits_stored=12,
                    rescale_intercept=-1024.0, modality="CT")


@pytest.mark.parametrize("mode,max_error", [("lossless", None), ("near-lossless", 2)])
def test_previous_slice_context_round_trip_and_random_access(mode: str, max_error) -> None:
    image = _volume()
    data = medcodec.compress(image, codec="medcodec", mode=mode, max_error=max_error,
                             inter_slice=3)
    bound = max_error or 0
    whole = medcodec.decompress(data)
    assert np.abs(whole.pixels.astype(int) - image.pixels).max() <= bound
    for index in (4, 1, 3):  # random access decodes from the key slice before it
        alone = medcodec.decompress(data, slices=[index]).pixels[0]
        assert np.array_equal(alone, whole.pixels[index])
    intra = medcodec.compress(image, codec="medcodec", mode=mode, max_error=max_error)
    assert intra != data


def test_previous_slice_stream_needs_its_context() -> None:
    codec = get("medcodec")
    image = _volume(2).pixels.astype(np.int64) + 1024
    data = codec.encode(image[1], 12, LOSSLESS, previous=image[0])
    assert np.array_equal(codec.decode(data, image[1].shape, 12, previous=image[0]), image[1])
    with pytest.raises(CorruptStreamError):
        codec.decode(data, image[1].shape, 12)


def test_max_error_in_hounsfield_units(tmp_path) -> None:
    from medcodec.cli import main

    image = _volume(2)
    image.rescale_slope = 0.5
    source = tmp_path / "ct.mdcx"
    source.write_bytes(medcodec.compress(image))
    out = tmp_path / "near.mdcx"
    assert main(["compress", str(source), "-o", str(out), "--codec", "medcodec",
                 "--mode", "near-lossless", "--max-error-hu", "2", "-q"]) == 0
    back = medcodec.decompress(out)
    error = np.abs(back.pixels.astype(int) - image.pixels).max()
    assert 0 < error <= 4  # 2 HU at 0.5 HU per stored unit
    assert main(["compress", str(source), "-o", str(tmp_path / "x.mdcx"), "--codec",
                 "medcodec", "--mode", "near-lossless", "--max-error-hu", "0.2", "-q"]) == 2


@pytest.mark.parametrize("mode", ["lossless", "near-lossless"])
def test_thread_count_changes_nothing(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Passes are split into row blocks run on a thread pool: 1 or 3 threads must give the
    same stream and the same pixels (an image large enough for several blocks per pass)."""
    image = smooth_image((601, 540), 12, seed=4)
    spec = LOSSLESS if mode == "lossless" else CodingSpec(Mode.NEAR_LOSSLESS, 2)
    codec = get("medcodec")
    streams, decoded = [], []
    for threads in ("1", "3"):
        monkeypatch.setenv("MEDCODEC_THREADS", threads)
        streams.append(codec.encode(image, 12, spec))
        decoded.append(codec.decode(streams[-1], image.shape, 12))
    assert streams[0] == streams[1]
    assert np.array_equal(decoded[0], decoded[1])
    bound = 0 if mode == "lossless" else 2
    assert np.abs(decoded[0].astype(int) - image.astype(int)).max() <= bound
