"""CompressAI baselines (optional): real bytes, round trip, the bench ladder, another process.

Skipped without compressai; the ladder plumbing of the bench is tested with a stand-in codec.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medcodec import codecs
from medcodec.bench import runner
from medcodec.codecs.base import Codec, CodingSpec, Knob, Mode


class _Ladder(Codec):
    name = "test-ladder"
    modes = frozenset({Mode.LOSSY})
    knob = Knob("quality", 1, 3, integer=True)
    ladder = (1, 2, 3)

    def encode(self, array, bits, spec):
        shift = 4 - int(spec.quality)
        return (np.asarray(array, np.uint16) >> shift).astype("<u2").tobytes() + bytes([shift])

    def decode(self, data, shape, bits):
        shift = data[-1]
        return (np.frombuffer(data[:-1], "<u2").reshape(shape) << shift).astype(np.uint16)


def test_bench_codes_each_rung_of_a_ladder() -> None:
    codecs.register(_Ladder)
    try:
        tasks = runner.plan_tasks(["test-ladder"], "lossy", [1], [0.5, 1.0])
        assert [(t.setting, t.quality) for t in tasks] == [("q=1", 1), ("q=2", 2), ("q=3", 3)]
        image = runner.BenchImage("x", "s", "p", "CT",
                                  np.arange(64 * 64, dtype=np.int64).reshape(64, 64) % 4096)
        rows = [runner.measure(image, t, repeat=1) for t in tasks]
        assert [r["knob"] for r in rows] == ["1", "2", "3"]
        assert rows[0]["psnr"] < rows[1]["psnr"] < rows[2]["psnr"]
    finally:
        codecs._REGISTRY.pop("test-ladder", None)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    pytest.importorskip("compressai")
    import torch

    from medcodec.baselines import ARCHS, LAMBDAS, models, weight_path

    root = tmp_path_factory.mktemp("baselines")
    torch.manual_seed(0)
    for arch in ("bmshj2018-hyperprior", "mbt2018-mean"):  # cheng2020 decodes serially: slow
        assert arch in ARCHS
        model = models.build(arch).eval()
        model.update(force=True)
        for q in range(1, len(LAMBDAS) + 1):
            models.save(model, weight_path(arch, q, root))
    return root


@pytest.mark.parametrize("arch", ["bmshj2018-hyperprior", "mbt2018-mean"])
def test_round_trip_real_bytes(weights, arch, monkeypatch) -> None:
    from medcodec.baselines.codec import CODECS, _model

    monkeypatch.setenv("MEDCODEC_BASELINES", str(weights))
    _model.cache_clear()
    [cls] = [c for c in CODECS if c.name == arch]
    assert cls.available()
    codec = cls()
    image = (np.add.outer(np.arange(80), np.arange(100)) * 20 % 4096).astype(np.uint16)
    data = codec.encode(image, 12, CodingSpec(Mode.LOSSY, 0, 2))
    assert data[:4] == b"CAI1" and len(data) > 12
    out = codec.decode(data, image.shape, 12)
    assert out.shape == image.shape and out.dtype == np.uint16 and out.max() <= 4095
    np.testing.assert_array_equal(codec.decode(data, image.shape, 12), out)  # same process


def test_decode_in_another_process(weights, tmp_path) -> None:
    """The determinism tool on a tiny volume: two fresh decoding processes, a report."""
    from tests.conftest import smooth_image

    volume = tmp_path / "v.npy"
    np.save(volume, np.stack([smooth_image((64, 64), 12, seed=k) for k in range(2)]))
    env = {**os.environ, "MEDCODEC_BASELINES": str(weights),
           "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    out = tmp_path / "det"
    subprocess.run([sys.executable, "-m", "medcodec.baselines.determinism", str(volume),
                    "--out", str(out), "--codecs", "bmshj2018-hyperprior", "--qualities", "1",
                    "--stride", "1"], env=env, check=True, capture_output=True, text=True)
    summary = json.loads((out / "determinism.json").read_text())["summary"]
    assert {s["threads"] for s in summary} == {"1", "2"}
    assert all(s["streams"] == 2 and s["failed"] == 0 for s in summary)
    assert "mismatch rate" in (out / "determinism.md").read_text()


def test_plan_steps_fills_the_budget() -> None:
    from medcodec.baselines.train import plan_steps

    base, tune = plan_steps(25, 0.04, 4, 0.5)
    assert (base, tune) == (18750, 6250)
    assert (base + 3 * tune) * 0.04 == pytest.approx(25 * 60)
    assert plan_steps(0.001, 10.0, 4, 0.5) == (1, 1)


def test_train_with_a_wall_clock_budget(tmp_path, monkeypatch) -> None:
    """``--minutes``: step counts fixed up front, every rung saved, the steps run logged."""
    pytest.importorskip("compressai")
    import csv

    from medcodec.baselines import LAMBDAS, train, weight_path

    rng = np.random.default_rng(0)
    monkeypatch.setattr(train, "_slices", lambda paths, stride: [
        rng.random((80, 80), dtype=np.float32) for _ in range(3)])
    log = tmp_path / "train.csv"
    summary = train.train(["unused"], tmp_path / "w", ["bmshj2018-hyperprior"], 0, 0, 1, 64,
                          2e-3, 0, 1, 1, log, minutes=0.01)
    s = summary["bmshj2018-hyperprior"]
    assert s["base_steps"] >= 1 and s["tune_steps"] >= 1
    for q in range(1, len(LAMBDAS) + 1):
        assert weight_path("bmshj2018-hyperprior", q, tmp_path / "w").is_file()
    with open(log) as fh:
        rows = list(csv.DictReader(fh))
    last = {int(r["quality"]): int(r["step"]) for r in rows}
    assert last[len(LAMBDAS)] == s["base_steps"] and last[1] == s["tune_steps"]
