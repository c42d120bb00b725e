"""Train the CompressAI baselines on CT: ``python -m medcodec.baselines.train --data DIR...``.

Every architecture gets the same schedule: ``--base-steps`` at the highest lambda of the ladder
from scratch, then ``--tune-steps`` per lower rung, each rung fine-tuned from the one above
(the usual way to get a rate ladder cheaply). ``--minutes M`` instead gives each architecture a
wall-clock budget: a short timing run on a throw-away copy of the model fixes the step counts
(``--base-share`` of the budget for the base rung, the rest split over the lower rungs), then
training runs those counts exactly, so the run is the same as the one with ``--base-steps`` and
``--tune-steps`` set to the logged counts. Loss as CompressAI's examples: lambda * 255**2 *
MSE + bpp, plus the entropy bottleneck's auxiliary loss on its own optimiser. Input: random
crops of native-depth slices scaled to [0, 1] by their effective bit depth.
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medcodec.baselines import ARCHS, LAMBDAS, weight_path


def _slices(paths: Sequence[str], stride: int) -> list[np.ndarray]:
    from medcodec.train.data import read_series

    out = []
    for series in read_series(paths):
        for s in series.slices[::stride]:
            bits = max(8, int(s.max()).bit_length())
            out.append((s / float((1 << bits) - 1)).astype(np.float32))
    return out


def _crops(slices: list[np.ndarray], rng: np.random.Generator, batch: int,
           crop: int) -> np.ndarray:
    out = []
    for _ in range(batch):
        s = slices[int(rng.integers(len(slices)))]
        r = int(rng.integers(s.shape[0] - crop + 1))
        c = int(rng.integers(s.shape[1] - crop + 1))
        out.append(s[r:r + crop, c:c + crop])
    return np.stack(out)[:, None]


def _step(model, opt, aux_opt, params, x, lam: float):
    """One training step; returns (loss, bpp, mse on [0, 1])."""
    import torch

    res = model(x)
    mse = torch.mean((res["x_hat"] - x) ** 2)
    bpp = sum(torch.log(v).sum() for v in res["likelihoods"].values()) / (
        -math.log(2) * x.numel())
    loss = lam * 255**2 * mse + bpp
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    aux_loss = model.aux_loss()
    aux_opt.zero_grad()
    aux_loss.backward()
    aux_opt.step()
    return loss.item(), bpp.item(), mse.item()


def _optimisers(model, rate: float):
    import torch

    params = [p for n, p in model.named_parameters() if not n.endswith(".quantiles")]
    aux = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]
    return params, torch.optim.Adam(params, rate), torch.optim.Adam(aux, 1e-3)


def seconds_per_step(arch: str, slices: list[np.ndarray], batch: int, crop: int, lr: float,
                     seed: int, lam: float, steps: int = 40) -> float:
    """Median seconds per training step of ``arch``, timed on a throw-away model."""
    import torch

    from medcodec.baselines import models

    state = torch.random.get_rng_state()
    torch.manual_seed(seed + 1)
    model = models.build(arch).train()
    params, opt, aux_opt = _optimisers(model, lr)
    rng = np.random.default_rng(seed + 1)
    times = []
    for _ in range(steps):
        x = torch.from_numpy(_crops(slices, rng, batch, crop))
        t = time.perf_counter()
        _step(model, opt, aux_opt, params, x, lam)
        times.append(time.perf_counter() - t)
    torch.random.set_rng_state(state)
    return float(np.median(times[steps // 4:]))


def plan_steps(minutes: float, sec_per_step: float, rungs: int,
               base_share: float) -> tuple[int, int]:
    """(base steps, steps per lower rung) that fill ``minutes`` at ``sec_per_step``."""
    total = minutes * 60 / sec_per_step
    base = int(total * base_share)
    tune = int(total * (1 - base_share) / max(rungs - 1, 1))
    return max(base, 1), max(tune, 1)


def train(paths: Sequence[str], out: Path, archs: Sequence[str], base_steps: int,
          tune_steps: int, batch: int, crop: int, lr: float, seed: int, threads: int,
          stride: int, log_path: Path | None, minutes: float | None = None,
          base_share: float = 0.5, lambdas: Sequence[float] = LAMBDAS,
          save: bool = True) -> dict[str, dict]:
    """Train each of ``archs``; returns per architecture the steps run and the seconds."""
    import torch

    from medcodec.baselines import models

    torch.set_num_threads(threads)
    slices = [s for s in _slices(paths, stride) if min(s.shape) >= crop]
    print(f"{len(slices)} training slices")
    log = open(log_path, "a", newline="") if log_path else None  # noqa: SIM115
    writer = csv.writer(log) if log else None
    if log and log.tell() == 0:
        writer.writerow(["arch", "quality", "lambda", "step", "loss", "bpp", "psnr01", "seconds"])
    summary: dict[str, dict] = {}
    try:
        for arch in archs:
            base, tune = base_steps, tune_steps
            if minutes is not None:
                sps = seconds_per_step(arch, slices, batch, crop, lr, seed, lambdas[-1])
                base, tune = plan_steps(minutes, sps, len(lambdas), base_share)
                print(f"{arch}: {sps * 1e3:.1f} ms per step -> --base-steps {base} "
                      f"--tune-steps {tune} for {minutes:g} min", flush=True)
            torch.manual_seed(seed)
            rng = np.random.default_rng(seed)
            model = models.build(arch)
            start = time.time()
            for q in range(len(lambdas), 0, -1):
                lam = lambdas[q - 1]
                steps = base if q == len(lambdas) else tune
                rate = lr if q == len(lambdas) else lr / 2
                params, opt, aux_opt = _optimisers(model, rate)
                model.train()
                run = []
                for step in range(steps):
                    for group in opt.param_groups:  # cosine decay within each rung
                        group["lr"] = rate * 0.5 * (1 + math.cos(math.pi * step / steps))
                    x = torch.from_numpy(_crops(slices, rng, batch, crop))
                    run.append(_step(model, opt, aux_opt, params, x, lam))
                    if (step + 1) % 50 == 0 or step + 1 == steps:
                        lo, bp, ms = np.mean(run, axis=0)
                        run = []
                        psnr = 10 * math.log10(1 / max(ms, 1e-12))
                        print(f"{arch} q{q} step {step + 1}/{steps} loss {lo:.3f} bpp {bp:.3f} "
                              f"psnr01 {psnr:.2f} {time.time() - start:.0f} s", flush=True)
                        if writer:
                            writer.writerow([arch, q, lam, step + 1, f"{lo:.5f}", f"{bp:.5f}",
                                             f"{psnr:.3f}", f"{time.time() - start:.1f}"])
                            log.flush()
                model.eval()
                model.update(force=True)
                if save:
                    models.save(model, weight_path(arch, q, out))
            summary[arch] = {"base_steps": base, "tune_steps": tune,
                             "seconds": round(time.time() - start, 1)}
            print(f"{arch}: ran {base} + {len(lambdas) - 1} x {tune} steps in "
                  f"{time.time() - start:.0f} s", flush=True)
    finally:
        if log:
            log.close()
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", nargs="+", required=True, help="training CT folders or files")
    p.add_argument("--out", required=True, type=Path, help="folder for the weights")
    p.add_argument("--arch", default=",".join(ARCHS), help="comma-separated architectures")
    p.add_argument("--base-steps", type=int, default=400)
    p.add_argument("--tune-steps", type=int, default=100)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--slice-stride", type=int, default=2)
    p.add_argument("--log", type=Path)
    p.add_argument("--minutes", type=float,
                   help="wall-clock budget per architecture; sets the step counts (logged)")
    p.add_argument("--base-share", type=float, default=0.5,
                   help="share of --minutes for the base rung (default 0.5)")
    a = p.parse_args(argv)
    train(a.data, a.out, [s.strip() for s in a.arch.split(",")], a.base_steps, a.tune_steps,
          a.batch, a.crop, a.lr, a.seed, a.threads, a.slice_stride, a.log, a.minutes,
          a.base_share)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
