"""Training of the paper-literal lossy codec: DWT -> CAL -> learned analysis -> quantised latent
with hyperprior and checkerboard context -> learned synthesis -> inverse DWT (-> 3x3 filter).

The float model here is the twin of the integer one in :mod:`medcodec.models.transform`: the
same layers, trained end to end on ``R + lambda(step) * D`` with the quantiser step drawn
log-uniformly over the whole rate range, so one model covers every rate. ``lambda(step) = 6 /
(ln 2 * step**2)`` is the slope of a uniform quantiser's rate-distortion curve at that step, so
the step the encoder is given and the trade-off the model learned for it agree. After training
the weights are quantised to integers (:meth:`TransformModel.from_float`) and the decoder's
3x3 filter taps are fitted by least squares on decoded training slices, per rate band.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medcodec.models.transform import layout as lay
from medcodec.train import cosine_lr
from medcodec.train.data import Series


@dataclass
class TransformSettings:
    steps: int = 20000
    batch: int = 8
    patch: int = 128  # pixels; the latent grid is patch / 4
    pool: int = 3000  # patches drawn once from the training slices
    lr: float = 2e-3
    hidden: int = lay.HIDDEN
    step_min: float = 1.0  # quantiser steps (stored units) drawn log-uniformly
    step_max: float = 256.0
    slice_stride: int = 2
    minutes: float = 0.0  # stop after this long (0: no limit); the cosine schedule follows
    seed: int = 0
    threads: int = 2
    use_attention: bool = True
    log_every: int = 250
    extra: dict = field(default_factory=dict)


def rd_lambda(step):
    """Bits per pixel worth one stored unit squared of MSE at quantiser step ``step``."""
    return 6.0 / (math.log(2.0) * step * step)


def make_pool(series: Sequence[Series], settings: TransformSettings,
              rng: np.random.Generator) -> np.ndarray:
    """(pool, 16, patch/4, patch/4) float32: the DWT subbands of random patches (stored units /
    NORM), flipped and transposed at random, from every ``slice_stride``-th slice."""
    every = [s for ser in series for s in ser.slices[:: settings.slice_stride]]
    p = settings.patch
    if every and not any(min(s.shape) >= p for s in every):  # small images: smaller patches
        p = max(lay.BLOCK, max(min(s.shape) for s in every) // lay.BLOCK * lay.BLOCK)
    slices = [s for s in every if min(s.shape) >= p]
    if not slices:
        raise ValueError(f"no training slice is at least {lay.BLOCK} pixels on a side")
    count = min(settings.pool, max(64, settings.steps * settings.batch))  # short runs: fewer
    out = np.empty((count, lay.CHANNELS, p // 4, p // 4), np.float32)
    for k in range(count):
        img = slices[int(rng.integers(len(slices)))]
        r = int(rng.integers(img.shape[0] - p + 1))
        c = int(rng.integers(img.shape[1] - p + 1))
        patch = img[r:r + p, c:c + p]
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        if rng.random() < 0.5:
            patch = patch.T
        out[k] = lay.analysis_bands(np.ascontiguousarray(patch, np.float64))
    return out


def build_net(settings: TransformSettings):
    """The float twin (torch), its layers named as the integer model's arrays."""
    import torch
    from torch import nn

    hidden = settings.hidden

    class Cal(nn.Module):
        """Cross-attention between subbands: at each latent position the 7 subband tokens
        (LL2, LH2, HL2, HH2: 1 coefficient each; LH1, HL1, HH1: 4 each) attend to each other."""

        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.ModuleList(nn.Linear(n, lay.TOKEN_DIM) for n in lay.GROUP_SIZES)
            self.position = nn.Parameter(0.1 * torch.randn(lay.TOKENS, lay.TOKEN_DIM))
            self.query = nn.Linear(lay.TOKEN_DIM, lay.HEADS * lay.KEY_DIM)
            self.key = nn.Linear(lay.TOKEN_DIM, lay.HEADS * lay.KEY_DIM)
            self.value = nn.Linear(lay.TOKEN_DIM, lay.HEADS * lay.KEY_DIM)
            self.back = nn.ModuleList(nn.Linear(lay.HEADS * lay.KEY_DIM, n)
                                      for n in lay.GROUP_SIZES)
            for b in self.back:
                nn.init.zeros_(b.weight)
                nn.init.zeros_(b.bias)

        def forward(self, s):  # (N, 16, h, w), CAL_SCALE units
            n, _, h, w = s.shape
            x = s.permute(0, 2, 3, 1)  # (N, h, w, 16)
            tokens = torch.stack([self.embed[g](x[..., a:b]) for g, (a, b) in
                                  enumerate(lay.GROUP_SLICES)], dim=3) + self.position
            tokens = torch.relu(tokens)
            q = self.query(tokens).view(n, h, w, lay.TOKENS, lay.HEADS, lay.KEY_DIM)
            k = self.key(tokens).view(n, h, w, lay.TOKENS, lay.HEADS, lay.KEY_DIM)
            v = self.value(tokens).view(n, h, w, lay.TOKENS, lay.HEADS, lay.KEY_DIM)
            scores = torch.einsum("nyxted,nyxsed->nyxets", q, k) / math.sqrt(lay.KEY_DIM)
            att = torch.softmax(scores, dim=-1)
            mixed = torch.einsum("nyxets,nyxsed->nyxted", att, v).reshape(
                n, h, w, lay.TOKENS, lay.HEADS * lay.KEY_DIM)
            out = torch.cat([self.back[g](mixed[..., g, :]) for g in range(lay.TOKENS)],
                            dim=-1)
            return out.permute(0, 3, 1, 2)

    def conv(cin, cout, stride=1, zero=False):
        layer = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        if zero:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        return layer

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            c = lay.CHANNELS
            self.cal = Cal()
            self.ga0, self.ga1 = conv(c, hidden), conv(hidden, c, zero=True)
            self.ha0, self.ha1 = conv(c, lay.HYPER, 2), conv(lay.HYPER, lay.HYPER, 2)
            self.hs0, self.hs1 = conv(lay.HYPER, lay.HYPER), conv(lay.HYPER, lay.HYPER)
            self.head = nn.Conv2d(lay.HYPER, 2 * c, 1)
            self.ctx = conv(c, lay.HYPER)
            self.mix0 = nn.Conv2d(2 * lay.HYPER, lay.HYPER, 1)
            self.mix1 = nn.Conv2d(lay.HYPER, 2 * c, 1)
            self.gs0, self.gs1 = conv(c, hidden), conv(hidden, c, zero=True)
            # per-channel log-step offsets at GAIN_ANCHORS steps (gain units)
            self.gain = nn.Parameter(torch.zeros(len(lay.GAIN_ANCHORS), c))
            self.z_log_scale = nn.Parameter(torch.zeros(lay.HYPER))
            self.use_attention = settings.use_attention

        def steps(self, step):  # (N,) stored units -> (N, 16, 1, 1) in NORM units
            t = (torch.log2(step) - lay.GAIN_LOG_LOW) / lay.GAIN_LOG_SPAN * (
                len(lay.GAIN_ANCHORS) - 1)
            t = t.clamp(0, len(lay.GAIN_ANCHORS) - 1 - 1e-6)
            i = t.floor().long()
            f = (t - i)[:, None]
            g = self.gain[i] * (1 - f) + self.gain[i + 1] * f
            return (step[:, None] / lay.NORM * torch.exp2(g))[:, :, None, None]

    return Net()


def _laplace_bits(x, mean, log_scale):
    """-log2 of the probability of x's unit bin under a Laplace(mean, exp(log_scale))."""
    import torch

    b = torch.exp(log_scale.clamp(math.log(lay.SCALE_MIN), math.log(lay.SCALE_MAX)))
    d = (x - mean).abs()
    far = 0.5 * (torch.exp(-(d - 0.5).clamp(min=0) / b) - torch.exp(-(d + 0.5) / b))
    near = 1 - 0.5 * torch.exp(-(d + 0.5) / b) - 0.5 * torch.exp((d - 0.5).clamp(max=0) / b)
    p = torch.where(d < 0.5, near, far)
    return -torch.log2(p.clamp(min=2.0**-24))


def forward(net, s, step, train: bool = True):
    """(bits per pixel, MSE in stored units per pixel) for a batch of subband grids ``s``."""
    import torch

    _, c, h, w = s.shape
    x = s + net.cal(s * lay.CAL_SCALE) / lay.CAL_SCALE if net.use_attention else s
    y = x + net.ga1(torch.relu(net.ga0(x * lay.BRANCH_SCALE))) / lay.BRANCH_SCALE
    steps = net.steps(step)
    v = y / steps  # quantiser units
    v_round = v + (torch.round(v) - v).detach()
    v_noisy = v + (torch.rand_like(v) - 0.5) if train else v_round
    z = net.ha1(torch.relu(net.ha0(v * lay.HYPER_IN)))
    z_noisy = z + (torch.rand_like(z) - 0.5) if train else torch.round(z)
    z_round = z + (torch.round(z) - z).detach()
    hyper = torch.relu(net.hs0(torch.nn.functional.interpolate(z_round, scale_factor=2.0)))
    hyper = torch.relu(net.hs1(torch.nn.functional.interpolate(hyper, scale_factor=2.0)))
    anchor_params = net.head(hyper)
    mask = torch.from_numpy(lay.anchor_mask(h, w)).to(s.dtype)  # 1 on anchors
    ctx = net.ctx(v_round * mask * lay.CTX_IN)
    mixed = torch.relu(net.mix0(torch.cat([hyper, torch.relu(ctx)], dim=1)))
    other_params = net.mix1(mixed)
    params = anchor_params * mask + other_params * (1 - mask)
    mean, log_scale = params[:, :c] * lay.MEAN_SCALE, params[:, c:]
    bits_y = _laplace_bits(v_noisy, mean, log_scale).sum(dim=(1, 2, 3))
    zb = torch.exp(net.z_log_scale.clamp(math.log(lay.SCALE_MIN), math.log(lay.SCALE_MAX)))
    bits_z = _laplace_bits(z_noisy, torch.zeros_like(z), torch.log(zb)[None, :, None, None]
                           .expand_as(z)).sum(dim=(1, 2, 3))
    y_hat = v_round * steps
    x_hat = y_hat + net.gs1(torch.relu(net.gs0(y_hat * lay.BRANCH_SCALE))) / lay.BRANCH_SCALE
    gains = torch.from_numpy(lay.channel_gains()).to(s.dtype)[None, :, None, None]
    mse = ((x_hat - s) ** 2 * gains).sum(dim=(1, 2, 3)) * lay.NORM**2 / (16 * h * w)
    bpp = (bits_y + bits_z) / (16 * h * w)
    return bpp, mse


def train(series: Sequence[Series], settings: TransformSettings,
          log: Callable[[str], None] = print, log_rows: list | None = None):
    """Train the float twin; returns it (``TransformModel.from_float`` makes the codec)."""
    import torch

    torch.manual_seed(settings.seed)
    torch.set_num_threads(settings.threads)
    rng = np.random.default_rng(settings.seed)
    started = time.monotonic()
    pool = torch.from_numpy(make_pool(series, settings, rng))
    log(f"pool of {len(pool)} patches in {time.monotonic() - started:.0f} s")
    net = build_net(settings)
    opt = torch.optim.Adam(net.parameters(), lr=settings.lr)
    lo, hi = math.log(settings.step_min), math.log(settings.step_max)
    started = time.monotonic()
    total = settings.steps
    running = np.zeros(3)
    for it in range(total):
        elapsed = (time.monotonic() - started) / 60
        if settings.minutes and elapsed > settings.minutes:
            log(f"stopped at step {it} after {elapsed:.1f} min")
            break
        progress = it / total if not settings.minutes else max(it / total,
                                                               elapsed / settings.minutes)
        for group in opt.param_groups:
            group["lr"] = cosine_lr(settings.lr, int(progress * 10000), 10000)
        batch = pool[torch.from_numpy(rng.integers(0, len(pool), settings.batch))]
        step = torch.exp(torch.from_numpy(rng.uniform(lo, hi, settings.batch)))
        bpp, mse = forward(net, batch, step.to(batch.dtype))
        loss = (bpp + rd_lambda(step.to(batch.dtype)) * mse).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        running += (float(loss.detach()), float(bpp.detach().mean()), float(mse.detach().mean()))
        if (it + 1) % settings.log_every == 0:
            running /= settings.log_every
            row = {"step": it + 1, "loss": round(running[0], 5), "bpp": round(running[1], 5),
                   "mse": round(running[2], 4), "minutes": round(elapsed, 2)}
            if log_rows is not None:
                log_rows.append(row)
            log(" ".join(f"{k} {v}" for k, v in row.items()))
            running[:] = 0
    net.eval()
    return net


def to_model(net, settings: TransformSettings, train_series: Sequence[Series]):
    """The integer codec of a trained twin, with its 3x3 filter fitted on training slices."""
    from medcodec.models.transform.model import TransformModel
    from medcodec.train.wavelet import fit_filter

    state = {k: v.detach().double().numpy() for k, v in net.state_dict().items()}
    model = TransformModel.from_float(state, use_attention=settings.use_attention)
    slices = [s for ser in train_series for s in ser.slices[:: settings.slice_stride]]
    rng = np.random.default_rng(settings.seed + 1)
    model.filter_taps = fit_filter(model, slices[:: max(1, len(slices) // 24)], rng, settings)
    # shipped switched off, as the wavelet model's: on validation slices the top rate band's
    # taps (steps above 64, a wide range) smooth too much (docs/RESULTS-LEARNED.md)
    model.use_filter = False
    return model


def load_twin(path: Path, settings: TransformSettings):
    """A float twin from a safetensors state dict (``save_twin``)."""
    from safetensors.torch import load_file

    net = build_net(settings)
    net.load_state_dict(load_file(str(path)))
    net.eval()
    return net


def save_twin(net, path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
