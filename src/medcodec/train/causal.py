"""Training the raster-scan estimator's pixel-estimation network, and measuring the model.

The least-squares stage adapts to each image while coding and has nothing to fit. The network
after it is trained here: its inputs are a function of the image alone (the least-squares
stage never reads the network), so every pixel's inputs and target are computed once by the
codec's own kernel (:meth:`CausalEstimator.samples`), and a float MLP is fitted to them by
the discretised-Laplace code length (bits) of the residual, then quantised to an IntMLP.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from medcodec.models.causal import kernels
from medcodec.models.causal.model import CausalEstimator, tables
from medcodec.models.intnet import IntMLP
from medcodec.train.data import Series

#: The network's location output is in units of this many pixels (a better-conditioned
#: output scale for the float net; folded into the integer weights).
LOCATION_UNIT = 4.0
#: The table index output starts here (a typical CT noise scale), so training starts sane.
INDEX_START = 40.0


@dataclass(frozen=True)
class CausalSettings:
    steps: int = 20000
    hidden: int = 24
    slice_stride: int = 4
    pixels_per_slice: int = 40000
    batch: int = 4096
    learning_rate: float = 3e-3
    seed: int = 0
    threads: int = 1
    inter: bool = False
    #: Shape of the coding distribution (``LaplaceTables.build``): "laplace" or "logistic".
    distribution: str = "laplace"
    #: Near-lossless maximum errors whose samples join the lossless ones (a quarter of
    #: ``pixels_per_slice`` each); the network then also reads D. Empty: lossless only.
    max_errors: tuple[int, ...] = ()
    #: Train for bounded symbols (stream version 3): a pixel's probability at 0 or at the top
    #: of its range is the whole tail's mass there, as the coder folds it.
    bounded: bool = False

    @property
    def inputs(self) -> int:
        return kernels.FEATURES + int(bool(self.max_errors))


def feature_scales(inputs: int = kernels.FEATURES) -> np.ndarray:
    """Integer inputs -> float net inputs: pixel differences and errors by 1/64, log codes,
    the energy bin and the bias by 1/16, the maximum error D (when an input) by 1/4."""
    scales = np.full(inputs, 1 / 16)
    scales[:10] = 1 / 64
    scales[kernels.FEATURES:] = 1 / 4
    return scales


def collect(series: Sequence[Series], settings: CausalSettings,
            log: Callable[[str], None] = lambda m: None) -> np.ndarray:
    """Random pixels of every ``slice_stride``-th slice (with ``inter``: of every such slice
    that has a previous one, read with it): (n, inputs + 3) int64, the lossless samples and,
    with ``max_errors``, those of near-lossless coding at each D (D is then an input). The
    columns: the network's inputs, the residual, the pixel's value and the top of its range."""
    base = CausalEstimator.build(inter=settings.inter)
    rng = np.random.default_rng(settings.seed)
    with_d = bool(settings.max_errors)
    parts = []
    for s in series:
        items = s.pairs() if settings.inter else [(image, None) for image in s.slices]
        for image, previous in items[:: max(1, settings.slice_stride)]:
            bits = max(1, int(image.max()).bit_length())
            for d in (0, *settings.max_errors):
                samples = np.column_stack([base.samples(image, bits, previous, d, with_d),
                                           image.ravel(), np.full(image.size, (1 << bits) - 1)])
                want = settings.pixels_per_slice // (4 if d else 1)
                take = min(want, samples.shape[0])
                parts.append(samples[rng.choice(samples.shape[0], take, replace=False)])
    log(f"{len(parts)} training slices and errors, {sum(p.shape[0] for p in parts)} pixels")
    return np.concatenate(parts) if parts else np.zeros((0, settings.inputs + 3), np.int64)


def train(series: Sequence[Series], settings: CausalSettings,
          log: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
          log_rows: list[dict] | None = None) -> CausalEstimator:
    import torch

    torch.manual_seed(settings.seed)
    torch.set_num_threads(settings.threads)
    samples = collect(series, settings, log)
    if samples.shape[0] == 0:
        raise ValueError("no training pixels")
    n = settings.inputs
    x = torch.tensor(samples[:, :n] * feature_scales(n), dtype=torch.float32)
    target = torch.tensor(samples[:, n], dtype=torch.float32)
    max_error = (torch.tensor(samples[:, kernels.FEATURES], dtype=torch.float32)
                 if settings.max_errors else None)
    # the corrected prediction and the top of the range, for bounded symbols
    prediction = torch.tensor(samples[:, n + 1] - samples[:, n], dtype=torch.float32)
    top = torch.tensor(samples[:, n + 2], dtype=torch.float32)
    h = settings.hidden
    net = torch.nn.Sequential(torch.nn.Linear(n, h), torch.nn.ReLU(),
                              torch.nn.Linear(h, h), torch.nn.ReLU(), torch.nn.Linear(h, 2))
    with torch.no_grad():
        net[-1].bias[1] = INDEX_START
    t = tables(settings.distribution)
    log_min = math.log(float(t.scales[0]))
    log_step = math.log(float(t.scales[1] / t.scales[0]))
    opt = torch.optim.Adam(net.parameters(), lr=settings.learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, settings.steps))
    generator = torch.Generator().manual_seed(settings.seed)
    start, running = time.time(), 0.0
    for step in range(1, settings.steps + 1):
        batch = torch.randint(0, x.shape[0], (settings.batch,), generator=generator)
        out = net(x[batch])
        location, log_scale = out[:, 0] * LOCATION_UNIT, log_min + log_step * out[:, 1]
        if settings.bounded:
            d = max_error[batch] if max_error is not None else torch.zeros_like(location)
            bits = bounded_bits(target[batch], location, log_scale, d, prediction[batch],
                                top[batch], settings.distribution).mean()
        elif max_error is None:  # lossless only: the plain code length (what v4 trained on)
            bits = code_bits(target[batch], location, log_scale, settings.distribution).mean()
        else:
            bits = binned_bits(target[batch], location, log_scale, max_error[batch],
                               settings.distribution).mean()
        opt.zero_grad()
        bits.backward()
        opt.step()
        schedule.step()
        running += bits.item()
        if step % 1000 == 0 or step == settings.steps:
            mean = running / (1000 if step % 1000 == 0 else step % 1000)
            running = 0.0
            log(f"step {step}: {mean:.4f} bits/pixel, {time.time() - start:.0f} s")
            if log_rows is not None:
                log_rows.append({"step": step, "bits": round(mean, 5),
                                 "seconds": round(time.time() - start, 1)})
    return CausalEstimator(t, settings.inter, to_intnet(net, n))


def code_bits(target, location, log_scale, distribution: str = "laplace"):
    """Code length (bits) of integer ``target`` under the discretised distribution the
    tables are built for (torch): Laplace, or logistic."""
    import torch

    scale = torch.exp(log_scale).clamp(min=1e-3)
    p = (_cdf(target + 0.5, location, scale, distribution)
         - _cdf(target - 0.5, location, scale, distribution)).clamp(min=2.0**-16)
    return -torch.log2(p)


def _cdf(v, location, scale, distribution: str):
    """The distribution's CDF at ``v`` (torch): Laplace, or logistic."""
    import torch

    z = (v - location) / scale
    if distribution == "logistic":
        return torch.sigmoid(z)
    return torch.where(z < 0, 0.5 * torch.exp(z.clamp(max=0)),
                       1 - 0.5 * torch.exp(-z.clamp(min=0)))


def _bin_edges(target, location, max_error):
    """The pixel edges (relative to the prediction, torch) of the near-lossless bin that
    holds ``target``: the codec rounds the location to an integer and quantises the residual
    with step 2D + 1."""
    import torch

    centre = torch.floor(location + 0.5)
    step = 2 * max_error + 1
    r = target - centre
    q = torch.sign(r) * torch.floor((r.abs() + max_error) / step)
    return q * step - max_error + centre - 0.5, q * step + max_error + centre + 0.5


def binned_bits(target, location, log_scale, max_error, distribution: str = "laplace"):
    """Code length (bits) of the near-lossless symbol of integer ``target`` (torch): the
    probability of its bin (``_bin_edges``) is the distribution's mass over the bin's pixels
    (D = 0: the lossless code length)."""
    import torch

    scale = torch.exp(log_scale).clamp(min=1e-3)
    low, high = _bin_edges(target, location, max_error)
    p = (_cdf(high, location, scale, distribution)
         - _cdf(low, location, scale, distribution)).clamp(min=2.0**-16)
    return -torch.log2(p)


def bounded_bits(target, location, log_scale, max_error, prediction, top,
                 distribution: str = "laplace"):
    """``binned_bits`` for bounded symbols (stream version 3): a bin that reaches 0 or the top
    of the range (``prediction`` + residual outside 0 .. ``top``) has all the mass of the tail
    beyond it, as the coder folds the tables' tails."""
    import torch

    scale = torch.exp(log_scale).clamp(min=1e-3)
    low, high = _bin_edges(target, location, max_error)
    below = torch.where(prediction + low <= -0.5, torch.zeros_like(low),
                        _cdf(low, location, scale, distribution))
    above = torch.where(prediction + high >= top + 0.5, torch.ones_like(high),
                        _cdf(high, location, scale, distribution))
    return -torch.log2((above - below).clamp(min=2.0**-16))


def to_intnet(net, inputs: int = kernels.FEATURES) -> IntMLP:
    linear = [m for m in net if hasattr(m, "weight")]
    weights = [m.weight.detach().double().numpy().T for m in linear]
    biases = [m.bias.detach().double().numpy() for m in linear]
    unit = np.array([LOCATION_UNIT, 1.0])
    weights[-1] = weights[-1] * unit
    biases[-1] = biases[-1] * unit
    return IntMLP.from_float(weights, biases, feature_scales(inputs), act_bits=kernels.OUT_FRAC)


def evaluate(model: CausalEstimator, series: Sequence[Series], stride: int = 1,
             max_errors: Sequence[int] = ()) -> dict:
    """Mean lossless bpp over every ``stride``-th slice of ``series`` (real bytes, checked;
    a volume model codes each slice after the first with its previous one), and the
    near-lossless bpp at each of ``max_errors`` (error bound checked)."""
    totals = {d: 0 for d in (0, *max_errors)}
    pixels, count = 0, 0
    for s in series:
        items = s.pairs() if model.inter else [(image, None) for image in s.slices]
        for image, previous in items[:: max(1, stride)]:
            bits = max(1, int(image.max()).bit_length())
            for d in totals:
                data = model.encode(image, bits, d, previous=previous)
                back = model.decode(data, image.shape, bits, previous=previous)
                if np.abs(back - image).max(initial=0) > d:
                    raise AssertionError(f"{s.key}: the decoded slice is off by more than {d}")
                totals[d] += 8 * len(data)
            pixels += image.size
            count += 1
    out: dict = {"slices": count, "lossless_bpp": round(totals[0] / max(pixels, 1), 4)}
    if max_errors:
        out["near_lossless_bpp"] = {str(d): round(totals[d] / max(pixels, 1), 4)
                                    for d in max_errors}
    return out
