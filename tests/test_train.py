"""`medcodec train`: a few-step smoke run of both models (never a real training in tests)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medcodec.cli import main

from .conftest import smooth_image

pytest.importorskip("torch")


def _folders(tmp_path: Path) -> tuple[Path, Path]:
    train, val = tmp_path / "train", tmp_path / "val"
    for folder, seeds in ((train, range(3)), (val, range(3, 4))):
        folder.mkdir()
        for s in seeds:
            np.save(folder / f"s{s}.npy", np.stack([smooth_image((64, 72), 12, seed=s)] * 2))
    return train, val


def test_pen_train_writes_a_usable_model_and_resumes(tmp_path: Path, capsys) -> None:
    from medcodec.models.pixel_estimation import PixelEstimator
    from medcodec.weights import load

    train, val = _folders(tmp_path)
    out, ckpt, log = tmp_path / "pen.safetensors", tmp_path / "pen.ckpt", tmp_path / "log.csv"
    args = ["train", "--data", str(train), "--val", str(val), "--modality", "any",
            "--steps", "20", "--out", str(out), "--checkpoint", str(ckpt), "--log", str(log),
            "-q"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["train_series"] == 3 and report["val_series"] == 1
    assert 0 < report["validation"]["bpp"] < 16
    arrays, _ = load(str(out))
    model = PixelEstimator.from_arrays(arrays)
    image = smooth_image((40, 33), 12).astype(np.int64)
    assert np.array_equal(model.decode(model.encode(image, 12), image.shape, 12), image)
    rows = log.read_text().splitlines()
    assert rows[0].startswith("phase,step") and len(rows) == 1 + 3  # one row per phase
    # resume: the checkpoint says every phase is done, so a re-run adds no training rows
    assert main([*args[:-1], "--force", "-q"]) == 0
    assert len(log.read_text().splitlines()) == len(rows)


def test_refuses_overwrite_and_overlapping_split(tmp_path: Path) -> None:
    train, _ = _folders(tmp_path)
    out = tmp_path / "m.safetensors"
    out.write_bytes(b"keep me")
    assert main(["train", "--data", str(train), "--modality", "any", "--steps", "1",
                 "--out", str(out), "-q"]) != 0
    assert out.read_bytes() == b"keep me"
    assert main(["train", "--data", str(train), "--val", str(train), "--modality", "any",
                 "--steps", "1", "--out", str(tmp_path / "x.safetensors"), "-q"]) != 0


@pytest.mark.parametrize("passes", ["2", "4"])
def test_wavelet_train_smoke(passes: str, tmp_path: Path, capsys) -> None:
    from medcodec.models.wavelet_latent import WaveletModel
    from medcodec.weights import load

    train, val = _folders(tmp_path)
    out = tmp_path / "wl.safetensors"
    assert main(["train", "--model", "wavelet", "--data", str(train), "--val", str(val),
                 "--modality", "any", "--steps", "10", "--passes", passes, "--out", str(out),
                 "-q"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["validation"]["bpp"]) == 3
    model = WaveletModel.from_arrays(load(str(out))[0])
    assert model.schedule == int(passes) and not model.use_filter
    image = smooth_image((40, 33), 12).astype(np.int64)
    data, pixels = model.encode_with_reconstruction(image, 12, 8.0)
    decoded = model.decode(data, image.shape, 12)
    assert np.array_equal(decoded, pixels)
    assert np.abs(decoded - image).mean() < 20


def test_transform_train_smoke(tmp_path: Path, capsys) -> None:
    from medcodec.models.transform.model import TransformModel
    from medcodec.weights import load

    train, val = _folders(tmp_path)
    out = tmp_path / "tf.safetensors"
    assert main(["train", "--model", "transform", "--data", str(train), "--val", str(val),
                 "--modality", "any", "--steps", "6", "--threads", "1", "--out", str(out),
                 "-q"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["validation"]["bpp"]) == 3
    model = TransformModel.from_arrays(load(str(out))[0])
    assert model.cal is not None
    image = smooth_image((40, 33), 12).astype(np.int64)
    decoded = model.decode(model.encode(image, 12, 8.0), image.shape, 12)
    assert decoded.shape == image.shape
    assert np.abs(decoded - image).mean() < 200


def test_causal_train_smoke_with_logistic_tables(tmp_path: Path, capsys) -> None:
    from medcodec.entropy.tables import LaplaceTables
    from medcodec.models.causal.model import CausalEstimator
    from medcodec.weights import load

    train, val = _folders(tmp_path)
    out = tmp_path / "causal.safetensors"
    assert main(["train", "--model", "causal", "--data", str(train), "--val", str(val),
                 "--modality", "any", "--steps", "5", "--hidden", "8", "--threads", "1",
                 "--distribution", "logistic", "--out", str(out), "-q"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["validation"]["lossless_bpp"] > 0
    model = CausalEstimator.from_arrays(load(str(out))[0])
    logistic = LaplaceTables.build(0.02, 2048.0, 80, shape="logistic")
    assert np.array_equal(model.tables.freqs, logistic.freqs)
    image = smooth_image((40, 33), 12).astype(np.int64)
    assert np.array_equal(model.decode(model.encode(image, 12), image.shape, 12), image)


def test_causal_train_with_near_lossless_samples_reads_the_error(tmp_path: Path,
                                                                  capsys) -> None:
    from medcodec.models.causal import kernels
    from medcodec.models.causal.model import CausalEstimator
    from medcodec.weights import load

    train, val = _folders(tmp_path)
    out = tmp_path / "causal-nl.safetensors"
    assert main(["train", "--model", "causal", "--data", str(train), "--val", str(val),
                 "--modality", "any", "--steps", "5", "--hidden", "8", "--threads", "1",
                 "--near-lossless", "2,1", "--out", str(out), "-q"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["validation"]["near_lossless_bpp"]) == {"1", "2"}
    model = CausalEstimator.from_arrays(load(str(out))[0])
    assert model.net is not None
    assert model.net.layers[0].weight.shape[0] == kernels.FEATURES + 1  # D is an input
    image = smooth_image((40, 33), 12).astype(np.int64)
    for max_error in (0, 2, 3):
        back = model.decode(model.encode(image, 12, max_error), image.shape, 12)
        assert np.abs(back - image).max() <= max_error


def test_bounded_bits_fold_the_tails_at_the_range_ends() -> None:
    """The bounded-symbol loss equals the plain binned code length inside the range and is
    the whole tail's mass (fewer bits) at 0 and at the top."""
    torch = pytest.importorskip("torch")
    from medcodec.train.causal import binned_bits, bounded_bits

    target = torch.tensor([-5.0, 0.0, 3.0, -2.0, 7.0, 1.0])
    prediction = torch.tensor([5.0, 50.0, 60.0, 2.0, 4088.0, 100.0])  # pixel = pred + target
    top = torch.full_like(target, 4095.0)
    location = torch.tensor([0.3, -0.2, 1.0, 0.0, -1.0, 0.4])
    log_scale = torch.full_like(target, 1.0)
    for d in (0.0, 1.0, 2.0):
        max_error = torch.full_like(target, d)
        plain = binned_bits(target, location, log_scale, max_error, "logistic")
        bounded = bounded_bits(target, location, log_scale, max_error, prediction, top,
                               "logistic")
        assert torch.allclose(plain[[1, 2, 5]], bounded[[1, 2, 5]])  # inside the range
        assert bool((bounded[[0, 4]] < plain[[0, 4]] - 0.1).all())  # pixel 0, pixel top
    # a location 12 below a prediction of 9: nearly all the mass is at or below pixel 0
    assert float(bounded_bits(torch.tensor([-9.0]), torch.tensor([-12.0]), torch.tensor([0.0]),
                              torch.tensor([0.0]), torch.tensor([9.0]), torch.tensor([9.0]),
                              "logistic")[0]) < 0.1


def test_causal_train_smoke_bounded(tmp_path: Path, capsys) -> None:
    from medcodec.models.causal.model import CausalEstimator
    from medcodec.weights import load

    train, val = _folders(tmp_path)
    out = tmp_path / "causal-b.safetensors"
    assert main(["train", "--model", "causal", "--data", str(train), "--val", str(val),
                 "--modality", "any", "--steps", "5", "--hidden", "8", "--threads", "1",
                 "--bounded", "--out", str(out), "-q"]) == 0
    assert json.loads(capsys.readouterr().out)["validation"]["lossless_bpp"] > 0
    model = CausalEstimator.from_arrays(load(str(out))[0])
    image = np.clip(smooth_image((40, 33), 12).astype(np.int64) - 1500, 0, None)
    assert np.array_equal(model.decode(model.encode(image, 12), image.shape, 12), image)


@pytest.mark.parametrize("value", ["0", "1,x", "300"])
def test_causal_train_refuses_a_bad_near_lossless_list(tmp_path: Path, value: str,
                                                       capsys) -> None:
    train, val = _folders(tmp_path)
    assert main(["train", "--model", "causal", "--data", str(train), "--val", str(val),
                 "--modality", "any", "--steps", "1", "--near-lossless", value,
                 "--out", str(tmp_path / "x.safetensors"), "-q"]) != 0
    assert "--near-lossless" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()
