"""Train the CompressAI baselines on CT: ``python -m medcodec.baselines.train --data DIR...``.

Every architecture gets the same schedule: ``--base-steps`` at the highest lambda of the ladder
from scratch, then ``--tune-steps`` per lower rung, each rung fine-tuned from the one above
(the usual way to get a rate ladder cheaply). Loss as CompressAI's examples: lambda * 255**2 *
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


def train(paths: Sequence[str], out: Path, archs: Sequence[str], base_steps: int,
          tune_steps: int, batch: int, crop: int, lr: float, seed: int, threads: int,
          stride: int, log_path: Path | None) -> None:
    import torch

    from medcodec.baselines import models

    torch.set_num_threads(threads)
    slices = [s for s in _slices(paths, stride) if min(s.shape) >= crop]
    print(f"{len(slices)} training slices")
    log = open(log_path, "a", newline="") if log_path else None  # noqa: SIM115
    writer = csv.writer(log) if log else None
    if log and log.tell() == 0:
        writer.writerow(["arch", "quality", "lambda", "step", "loss", "bpp", "psnr01", "seconds"])
    try:
        for arch in archs:
            torch.manual_seed(seed)
            rng = np.random.default_rng(seed)
            model = models.build(arch)
            start = time.time()
            for q in range(len(LAMBDAS), 0, -1):
                lam = LAMBDAS[q - 1]
                steps = base_steps if q == len(LAMBDAS) else tune_steps
                rate = lr if q == len(LAMBDAS) else lr / 2
                params = [p for n, p in model.named_parameters() if not n.endswith(".quantiles")]
                aux = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]
                opt = torch.optim.Adam(params, rate)
                aux_opt = torch.optim.Adam(aux, 1e-3)
                model.train()
                run = []
                for step in range(steps):
                    for group in opt.param_groups:  # cosine decay within each rung
                        group["lr"] = rate * 0.5 * (1 + math.cos(math.pi * step / steps))
                    crops = []
                    for _ in range(batch):
                        s = slices[int(rng.integers(len(slices)))]
                        r = int(rng.integers(s.shape[0] - crop + 1))
                        c = int(rng.integers(s.shape[1] - crop + 1))
                        crops.append(s[r:r + crop, c:c + crop])
                    x = torch.from_numpy(np.stack(crops)[:, None])
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
                    run.append((loss.item(), bpp.item(), mse.item()))
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
                models.save(model, weight_path(arch, q, out))
    finally:
        if log:
            log.close()


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
    a = p.parse_args(argv)
    train(a.data, a.out, [s.strip() for s in a.arch.split(",")], a.base_steps, a.tune_steps,
          a.batch, a.crop, a.lr, a.seed, a.threads, a.slice_stride, a.log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
