"""Decoding is bit-exact: across processes, thread counts, and against golden streams."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import medcodec
from medcodec.image import MedImage

from .conftest import random_image, smooth_image

GOLDEN = Path(__file__).parent / "data"

_DECODE = """
import hashlib, sys, numpy as np, medcodec
image = medcodec.decompress(sys.argv[1])
print(hashlib.sha256(np.ascontiguousarray(image.pixels).tobytes()).hexdigest())
"""


def golden_input() -> MedImage:
    """The fixed image behind the golden streams (made here, so no data file is needed)."""
    volume = np.stack([smooth_image((37, 29), 12, seed=s) for s in range(2)]).astype(np.int16)
    return MedImage(volume - 1024, bits_stored=12, rescale_intercept=-1024.0, modality="CT")


def golden_clipped_input() -> MedImage:
    """Like ``golden_input`` with a quarter of each slice clipped at the bottom of the range
    and a few pixels at its top (air and padding, bone): the golden streams of bounded
    symbols (raster-scan stream version 3) exercise both folded tails."""
    volume = golden_input().pixels.astype(np.int32)
    low, high = np.percentile(volume, [25, 99.5])
    return MedImage(np.clip(volume, low, high).astype(np.int16), bits_stored=12,
                    rescale_intercept=-1024.0, modality="CT")


def golden_padded_input() -> MedImage:
    """Like ``golden_input`` with padding (-2048) outside a circle, as CT outside its field of
    view: the lossy golden stream of a slice restored from a padding mask (``MCM``)."""
    volume = golden_input().pixels.copy()
    yy, xx = np.mgrid[0 : volume.shape[1], 0 : volume.shape[2]]
    volume[:, (yy - 18) ** 2 + (xx - 14) ** 2 > 15**2] = -2048
    return MedImage(volume, bits_stored=12, rescale_intercept=-1024.0, modality="CT")


GOLDEN_CASES = {
    "golden_v1_jpegls_lossless.mdcx": {"codec": "jpegls"},
    "golden_v1_jpegls_near2.mdcx": {"codec": "jpegls", "mode": "near-lossless", "max_error": 2},
    "golden_v1_deflate.mdcx": {"codec": "deflate"},
    "golden_v1_medcodec_lossless.mdcx": {"codec": "medcodec"},
    "golden_v1_medcodec_near2.mdcx": {"codec": "medcodec", "mode": "near-lossless",
                                      "max_error": 2},
    "golden_v1_medcodec_inter.mdcx": {"codec": "medcodec", "inter_slice": 2},
    "golden_v1_medcodec_lossy.mdcx": {"codec": "medcodec", "mode": "lossy", "quality": 16.0},
    # v3: the raster-scan estimator with its pixel-estimation network, alone and for volumes
    "golden_v3_medcodec_lossless.mdcx": {"codec": "medcodec"},
    "golden_v3_medcodec_near2.mdcx": {"codec": "medcodec", "mode": "near-lossless",
                                      "max_error": 2},
    "golden_v3_medcodec_inter.mdcx": {"codec": "medcodec", "inter_slice": 2},
    # v5: the raster-scan estimator with logistic tables and 32 hidden units (causal-v4)
    "golden_v5_medcodec_lossless.mdcx": {"codec": "medcodec"},
    "golden_v5_medcodec_near2.mdcx": {"codec": "medcodec", "mode": "near-lossless",
                                      "max_error": 2},
    "golden_v5_medcodec_inter.mdcx": {"codec": "medcodec", "inter_slice": 2},
    # v6: the raster-scan network that also reads D (causal-v5, near-lossless samples)
    "golden_v6_medcodec_lossless.mdcx": {"codec": "medcodec"},
    "golden_v6_medcodec_near2.mdcx": {"codec": "medcodec", "mode": "near-lossless",
                                      "max_error": 2},
    # v7: bounded symbols (raster-scan stream version 3), on the clipped input
    "golden_v7_medcodec_lossless.mdcx": {"codec": "medcodec", "input": "clipped"},
    "golden_v7_medcodec_near2.mdcx": {"codec": "medcodec", "mode": "near-lossless",
                                      "max_error": 2, "input": "clipped"},
    "golden_v7_medcodec_inter.mdcx": {"codec": "medcodec", "inter_slice": 2,
                                      "input": "clipped"},
    # v8: lossy medcodec with its padding restored from a mask (MCM around MCL and MCW)
    "golden_v8_medcodec_lossy_padded.mdcx": {"codec": "medcodec", "mode": "lossy",
                                             "quality": 16.0, "input": "padded"},
    # v9: wavelet stream version 2 (one ANS stream), dependent quantisation, table shifts
    "golden_v9_medcodec_wavelet_dq.mdcx": {"codec": "medcodec-wavelet", "mode": "lossy",
                                           "quality": 16.0},
    # v10: the same with context-coded signs in the second checkerboard pass
    "golden_v10_medcodec_wavelet_signs.mdcx": {"codec": "medcodec-wavelet", "mode": "lossy",
                                               "quality": 16.0},
    # v4: the paper-literal lossy codec (learned transform around the DWT)
    "golden_v4_medcodec_transform.mdcx": {"codec": "medcodec-transform", "mode": "lossy",
                                          "quality": 16.0},
}
#: Lossy golden streams: the SHA-256 of their decoded pixels is fixed (bit-exact forever).
LOSSY_GOLDEN = {"golden_v1_medcodec_lossy.mdcx", "golden_v4_medcodec_transform.mdcx",
                "golden_v8_medcodec_lossy_padded.mdcx", "golden_v9_medcodec_wavelet_dq.mdcx",
                "golden_v10_medcodec_wavelet_signs.mdcx"}


def _golden(case: str) -> tuple[MedImage, dict]:
    """The input image of a golden case and its compress options."""
    options = dict(GOLDEN_CASES[case])
    inputs = {"clipped": golden_clipped_input, "padded": golden_padded_input}
    return inputs.get(options.pop("input", ""), golden_input)(), options


def _sha(pixels: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()


@pytest.mark.parametrize("threads", ["1", "2"])
@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_other_process_decodes_identically(case: str, threads: str, tmp_path: Path) -> None:
    source, options = _golden(case)
    data = medcodec.compress(source, **options)
    path = tmp_path / "s.mdcx"
    path.write_bytes(data)
    env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads,
               OPENBLAS_NUM_THREADS=threads, MEDCODEC_THREADS=threads)
    result = subprocess.run([sys.executable, "-c", _DECODE, str(path)], capture_output=True,
                            text=True, env=env, timeout=120, check=True)
    assert result.stdout.strip() == _sha(medcodec.decompress(data).pixels)


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_golden_streams_still_decode(case: str) -> None:
    """Streams written by an earlier build must decode to the same pixels forever."""
    image = medcodec.decompress(GOLDEN / case)
    expected = _golden(case)[0].pixels
    error = np.abs(image.pixels.astype(int) - expected.astype(int)).max()
    if case in LOSSY_GOLDEN:
        assert _sha(image.pixels) == (GOLDEN / f"{case}.sha256").read_text().strip()
        assert error < 200
    else:
        assert error <= GOLDEN_CASES[case].get("max_error", 0)
    assert image.rescale_intercept == -1024.0


def test_encoding_is_deterministic() -> None:
    image = MedImage(random_image((3, 40, 33), 12, False, seed=9), bits_stored=12)
    assert medcodec.compress(image) == medcodec.compress(image)


if __name__ == "__main__":  # regenerate: python -m tests.test_determinism (format change only)
    for name in GOLDEN_CASES:
        if (GOLDEN / name).exists():
            continue  # a golden stream is never rewritten: add a new version instead
        source, kwargs = _golden(name)
        data = medcodec.compress(source, **kwargs)
        (GOLDEN / name).write_bytes(data)
        if name in LOSSY_GOLDEN:
            (GOLDEN / f"{name}.sha256").write_text(_sha(medcodec.decompress(data).pixels) + "\n")
