"""Training of the learned lossy codec's entropy model, reconstruction points and filter.

The analysis transform is a fixed DWT, so the entropy model is trained by maximum likelihood of
the quantised coefficients (their code length in bits) under the model's Laplace scales, at
steps drawn log-uniformly over the whole rate range: one model for every rate. Samples come
from the context code the codec itself runs (:func:`band_static`, :func:`pass_features`). The
reconstruction offsets are the bins' centroids and the 3x3 filter taps a least-squares fit of
decoded to original pixels per rate band, both closed-form.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medcodec.models import wavelet_latent as wl
from medcodec.models.context import default_thresholds
from medcodec.models.intnet import IntMLP
from medcodec.train import cosine_lr
from medcodec.train.data import Series


@dataclass
class WaveletSettings:
    steps: int = 6000  # optimiser steps per orientation
    batch: int = 4096
    lr: float = 3e-3
    hidden: int = 32
    step_min: float = 1.0  # quantiser steps sampled log-uniformly in [min, max]
    step_max: float = 256.0
    steps_per_slice: int = 2
    sample_fraction: float = 0.04  # of the finest level's coefficients; 4x per coarser level
    slice_stride: int = 1
    val_every: int = 500
    seed: int = 0
    threads: int = 2
    use_attention: bool = True
    schedule: int = 2  # passes per band: 2 (checkerboard) or 4 (2x2 lattice, 8 neighbours)


def _torch_band_net(hidden: int):
    import torch

    class BandNet(torch.nn.Module):
        """Float twin of :class:`wl.BandNet` (softmax attention over 3x3 parent cells + MLP)."""

        def __init__(self) -> None:
            super().__init__()
            self.query = torch.nn.Linear(wl.STATIC, wl.HEADS * wl.KEY_DIM)
            self.key = torch.nn.Linear(3, wl.HEADS * wl.KEY_DIM)
            self.value = torch.nn.Linear(3, wl.HEADS * wl.VALUE_DIM)
            self.key_position = torch.nn.Parameter(
                0.1 * torch.randn(wl.POSITIONS, wl.HEADS * wl.KEY_DIM))
            self.value_position = torch.nn.Parameter(
                torch.zeros(wl.POSITIONS, wl.HEADS * wl.VALUE_DIM))
            self.mlp = torch.nn.Sequential(
                torch.nn.Linear(wl.FEATURES + wl.HEADS * wl.VALUE_DIM, hidden), torch.nn.ReLU(),
                torch.nn.Linear(hidden, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))

        def forward(self, feats, query, sources, use_attention: bool = True):
            n = feats.shape[0]
            if use_attention:
                q = self.query(query).view(n, 1, wl.HEADS, wl.KEY_DIM)
                k = (self.key(sources) + self.key_position).view(
                    n, wl.POSITIONS, wl.HEADS, wl.KEY_DIM)
                v = (self.value(sources) + self.value_position).view(
                    n, wl.POSITIONS, wl.HEADS, wl.VALUE_DIM)
                att = torch.softmax((q * k).sum(-1) / math.sqrt(wl.KEY_DIM), dim=1)
                mixed = (att[..., None] * v).sum(1).reshape(n, -1)
            else:
                mixed = feats.new_zeros(n, wl.HEADS * wl.VALUE_DIM)
            return self.mlp(torch.cat([feats, mixed], dim=1))[:, 0]

    return BandNet()


FEATURE_SCALE = 1 / 16  # every feature is a small integer code
KEY_SCALE = 1 / 16


def to_band_net(net) -> wl.BandNet:
    """Quantise a float band net to the integer one the codec runs."""
    def linear(layer, scale, n_in):
        return IntMLP.from_float([layer.weight.detach().numpy().T.astype(np.float64)],
                                 [layer.bias.detach().numpy().astype(np.float64)],
                                 np.full(n_in, scale))

    mlp_layers = [m for m in net.mlp if hasattr(m, "weight")]
    scales = np.concatenate([np.full(wl.FEATURES, FEATURE_SCALE),
                             np.full(wl.HEADS * wl.VALUE_DIM, 1 / 256)])
    mlp = IntMLP.from_float([m.weight.detach().numpy().T.astype(np.float64) for m in mlp_layers],
                            [m.bias.detach().numpy().astype(np.float64) for m in mlp_layers],
                            scales)
    return wl.BandNet(linear(net.query, FEATURE_SCALE, wl.STATIC),
                      linear(net.key, KEY_SCALE, 3), linear(net.value, KEY_SCALE, 3),
                      np.round(net.key_position.detach().numpy().astype(np.float64) * 256),
                      np.round(net.value_position.detach().numpy().astype(np.float64) * 256),
                      mlp, wl.softmax_table())


def code_length(scale_index, q):
    """Bits of integer ``q`` under a zero-mean discretised Laplace (torch)."""
    import torch

    raw = scale_index
    # clamped like the codec's table index, but with a straight-through gradient: a unit
    # pushed past either end must still learn its way back (a plain clamp would freeze it)
    index = raw + (raw.clamp(0, wl.SCALE_COUNT - 1) - raw).detach()
    b = torch.exp(math.log(wl.SCALE_MIN) + index * wl.scale_step())

    def cdf(v):
        z = v / b
        return torch.where(z < 0, 0.5 * torch.exp(z.clamp(max=0)),
                           1 - 0.5 * torch.exp(-z.clamp(min=0)))

    return -torch.log2((cdf(q + 0.5) - cdf(q - 0.5)).clamp(min=1e-9))


def initial_model(nets=None, use_attention: bool = True, schedule: int = 2) -> wl.WaveletModel:
    """A model with default step weights, midpoint reconstruction and an identity filter."""
    identity = np.zeros((len(wl.FILTER_BANDS) + 1, 9), np.int64)
    identity[:, 4] = 1 << 12
    if nets is None:
        import torch

        torch.manual_seed(0)
        nets = [_torch_band_net(16) for _ in wl.ORIENTS]
    return wl.WaveletModel([to_band_net(n) for n in nets],
                           np.ones(1 + 3 * wl.LEVELS), np.full((3, 3), 26, np.int64),
                           identity, default_thresholds(), wl.build_tables(),
                           use_attention=use_attention, schedule=schedule)


def extract(slices: Sequence[np.ndarray], settings: WaveletSettings, rng: np.random.Generator,
            model: wl.WaveletModel) -> tuple[dict[int, list[np.ndarray]], np.ndarray]:
    """Per orientation: features, queries, key sources and targets q, at random steps, as the
    decoder sees them; and the bins' centroid offsets (3 orientations x |q| = 1, 2, >= 3)."""
    out: dict[int, list[list[np.ndarray]]] = {o: [[], [], [], []] for o in range(3)}
    centroid: dict[int, list[list[float]]] = {o: [[0.0, 0.0] for _ in range(3)] for o in range(3)}
    for image in slices:
        bits = max(1, int(image.max()).bit_length())
        levels = wl.levels_for(image.shape)
        bands = wl.wavelet_forward(image.astype(np.float64) - float(1 << (bits - 1)), levels)
        for _ in range(settings.steps_per_slice):
            step = float(np.exp(rng.uniform(np.log(settings.step_min),
                                            np.log(settings.step_max))))
            steps = wl.band_steps(step, model.band_weights, levels)
            q_ll = wl.quantise(bands.ll, steps[0])

            def level_start(depth: int, shape: tuple[int, int], steps: list[float] = steps,
                            bands: wl.Subbands = bands, levels: int = levels):
                qs = [wl.quantise(bands.details[depth][o], steps[1 + 3 * depth + o])
                      for o in range(3)]
                z = None
                if depth >= levels - wl.HYPER_LEVELS:
                    z = wl.expand_blocks(model.hyper_code(qs, levels - depth), qs[0].shape,
                                         levels - depth)
                return qs, z

            for band in wl.band_passes(q_ll, model.ll_activity(q_ll), levels, steps,
                                       model.thresholds, level_start, model.schedule):
                o, depth, q = band.orient, band.depth, band.q
                mag = np.abs(q)
                ratio = np.abs(bands.details[depth][o]) / band.step
                for k in (1, 2, 3):
                    sel = (mag == k) if k < 3 else (mag >= 3)
                    centroid[o][k - 1][0] += float(np.sum(ratio[sel] - mag[sel]))
                    centroid[o][k - 1][1] += float(sel.sum())
                static = wl.band_static(band.ctx, q.shape, model.thresholds)
                query, sources = wl.attention_inputs(band.ctx, static, model.thresholds)
                cells = wl.neighbourhood(sources)
                ph, pw = sources.shape[:2]
                ratio = 1 if (ph, pw) == q.shape else 2
                for phase, (pos, known) in enumerate(band.phases()):
                    keep = pos & (rng.random(q.shape) < min(1.0, settings.sample_fraction
                                                            * 4 ** (levels - 1 - depth)))
                    if keep.any():
                        f = wl.pass_features(
                            static, np.where(known, q, 0), known, keep, model.thresholds,
                            phase if model.schedule == 4 else None, model.schedule == 4)
                        rr, cc = np.nonzero(keep)
                        cell = np.minimum(rr // ratio, ph - 1) * pw + \
                            np.minimum(cc // ratio, pw - 1)
                        out[o][0].append(f.astype(np.float32))
                        out[o][1].append(query[cell].astype(np.float32))
                        out[o][2].append(cells.reshape(ph * pw, wl.POSITIONS, 3)[cell]
                                         .astype(np.float32))
                        out[o][3].append(q[keep].astype(np.float32))
    result = {o: [np.concatenate(part).astype(np.float32) for part in v]
              for o, v in out.items()}
    offsets = np.array([[round(256 * s / max(n, 1)) for s, n in centroid[o]] for o in range(3)])
    return result, offsets


def fit_filter(model: wl.WaveletModel, slices: Sequence[np.ndarray], rng: np.random.Generator,
               settings: WaveletSettings) -> np.ndarray:
    """Least-squares 3x3 taps (integers / 2**12) per rate band, decoded -> original pixels."""
    model.use_filter = False
    rows: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    for image in slices:
        bits = max(1, int(image.max()).bit_length())
        step = float(np.exp(rng.uniform(np.log(settings.step_min), np.log(settings.step_max))))
        decoded = model.decode(model.encode(image, bits, step), image.shape, bits)
        h, w = decoded.shape
        p = np.pad(decoded, 1, mode="edge").astype(np.float64)
        cols = np.stack([p[r:r + h, c:c + w].ravel() for r in range(3) for c in range(3)], 1)
        pick = rng.random(h * w) < 0.2
        rows.setdefault(wl.filter_band(step), []).append((cols[pick],
                                                          image.ravel()[pick].astype(np.float64)))
    model.use_filter = True
    taps = np.zeros((len(wl.FILTER_BANDS) + 1, 9), np.int64)
    taps[:, 4] = wl.FILTER_ONE
    for band, parts in rows.items():
        a = np.concatenate([x for x, _ in parts])
        y = np.concatenate([t for _, t in parts])
        # residual form: y - centre = sum t_k (x_k - centre), taps summing to 1 overall
        centre = a[:, 4:5]
        t, *_ = np.linalg.lstsq(a - centre, y - centre[:, 0], rcond=None)
        t = np.round(t * wl.FILTER_ONE).astype(np.int64)
        t[4] = 0
        t[4] = wl.FILTER_ONE - int(t.sum())
        taps[band] = t
    return taps


def train(train_series: Sequence[Series], val_series: Sequence[Series],
          settings: WaveletSettings, log_path: Path | None = None, progress: bool = True,
          log: Callable[[str], None] = print) -> wl.WaveletModel:
    import torch
    from tqdm import tqdm

    torch.manual_seed(settings.seed)
    torch.set_num_threads(settings.threads)
    rng = np.random.default_rng(settings.seed)
    train_slices = [s for series in train_series for s in series.slices[:: settings.slice_stride]]
    val_slices = [s for series in val_series for s in series.slices]
    log(f"training on {len(train_slices)} slices of {len(train_series)} series; "
        f"validating on {len(val_slices)} slices of {len(val_series)} series")
    base = initial_model(schedule=settings.schedule)
    samples, offsets = extract(train_slices, settings, rng, base)
    val_samples = extract(val_slices[:8], settings, rng, base)[0] if val_slices else None
    nets = []
    log_file = open(log_path, "a", encoding="utf-8") if log_path else None  # noqa: SIM115
    if log_file and log_file.tell() == 0:
        log_file.write("orientation,step,train_bits,val_bits,lr,seconds\n")
    start = time.time()
    try:
        for o in range(3):
            feats = torch.from_numpy(samples[o][0] * FEATURE_SCALE)
            query = torch.from_numpy(samples[o][1] * FEATURE_SCALE)
            sources = torch.from_numpy(samples[o][2] * KEY_SCALE)
            target = torch.from_numpy(samples[o][3])
            net = _torch_band_net(settings.hidden)
            opt = torch.optim.Adam(net.parameters(), settings.lr)
            gen = torch.Generator().manual_seed(settings.seed + o)
            bar = tqdm(total=settings.steps, desc=f"band {wl.ORIENTS[o]}", disable=not progress,
                       unit="step")
            running = []
            for step in range(settings.steps):
                lr = cosine_lr(settings.lr, step, settings.steps)
                for group in opt.param_groups:
                    group["lr"] = lr
                idx = torch.randint(0, len(target), (settings.batch,), generator=gen)
                loss = code_length(net(feats[idx], query[idx], sources[idx],
                                       settings.use_attention), target[idx]).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                running.append(float(loss.detach()))
                bar.update(1)
                if (step + 1) % settings.val_every == 0 or step + 1 == settings.steps:
                    val_bits = float("nan")
                    if val_samples is not None:
                        with torch.no_grad():
                            v = val_samples[o]
                            out = net(torch.from_numpy(v[0] * FEATURE_SCALE),
                                      torch.from_numpy(v[1] * FEATURE_SCALE),
                                      torch.from_numpy(v[2] * KEY_SCALE), settings.use_attention)
                            val_bits = float(code_length(out, torch.from_numpy(v[3])).mean())
                    train_bits = float(np.mean(running))
                    running = []
                    bar.set_postfix(train=f"{train_bits:.3f}", val=f"{val_bits:.3f}")
                    if log_file:
                        log_file.write(f"{wl.ORIENTS[o]},{step + 1},{train_bits:.5f},"
                                       f"{val_bits:.5f},{lr:.6f},{time.time() - start:.1f}\n")
                        log_file.flush()
            bar.close()
            nets.append(net)
    finally:
        if log_file:
            log_file.close()
    model = initial_model(nets, settings.use_attention, settings.schedule)
    model.recon_offsets = np.clip(offsets, -128, 255)
    model.filter_taps = fit_filter(model, train_slices[:: max(1, len(train_slices) // 24)],
                                   rng, settings)
    model.use_filter = False  # fitted, but off: it cost PSNR on validation (RESULTS-LEARNED)
    return model


def evaluate(model: wl.WaveletModel, slices: Sequence[np.ndarray],
             steps: Sequence[float] = (4.0, 16.0, 64.0)) -> dict[str, list[float]]:
    """Real coded bpp and PSNR (peak 2**bits - 1) at a few steps, averaged over ``slices``."""
    out: dict[str, list[float]] = {"step": list(steps), "bpp": [], "psnr": []}
    for step in steps:
        bpp, psnr = [], []
        for image in slices:
            bits = max(1, int(image.max()).bit_length())
            data = model.encode(image, bits, step)
            decoded = model.decode(data, image.shape, bits)
            mse = max(float(np.mean((decoded - image).astype(np.float64) ** 2)), 1e-10)
            bpp.append(8 * len(data) / image.size)
            psnr.append(10 * math.log10(((1 << bits) - 1) ** 2 / mse))
        out["bpp"].append(float(np.mean(bpp)))
        out["psnr"].append(float(np.mean(psnr)))
    return out
