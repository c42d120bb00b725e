"""Ablations of the learned lossy codecs: ``python -m medcodec.bench.ablation INPUT... --out DIR``.

Each variant codes every slice at a fixed ladder of quantiser steps (real bytes, no rate
search); JPEG 2000 codes them at a ladder of PSNR targets. Curves are means over the slices
(BENCHMARK.md's PSNR with peak 2**B - 1), and BD-rates are taken against JPEG 2000 over the
shared PSNR interval. Variants: the shipped model; without RDO quantisation; with the decoder
filter switched the other way; with 4 and 3 wavelet levels instead of 5; and any extra weights
files given with ``--variant NAME=FILE``
(e.g. a model trained without cross-attention, or at a single rate). With ``--model
transform`` the same for the paper-literal codec: the shipped model, without RDO, with the
filter switched, and ``--variant`` files of that kind.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from medcodec.bench import metrics
from medcodec.bench.bdrate import bd_rate
from medcodec.codecs import get
from medcodec.codecs.base import CodingSpec, Mode
from medcodec.image import effective_bits, value_range_bits

STEPS = (3.0, 6.0, 12.0, 24.0, 48.0, 96.0, 192.0)
J2K_PSNR = (44.0, 48.0, 52.0, 56.0, 60.0, 64.0, 68.0, 72.0)


def _slices(inputs: Sequence[str]) -> list[np.ndarray]:
    from medcodec.io import read_all

    return [s for image in read_all(inputs) if image.modality in ("CT", None, "")
            for s in image.pixels]


def _curve(slices: Sequence[np.ndarray], settings: Sequence[float],
           code: Callable[[np.ndarray, int, float], tuple[int, np.ndarray]]
           ) -> tuple[list[float], list[float]]:
    rates, psnrs = [], []
    for setting in settings:
        r, p = [], []
        for pixels in slices:
            low = int(pixels.min())
            bits = value_range_bits(low, int(pixels.max()))
            shifted = pixels.astype(np.int64) - low
            nbytes, decoded = code(shifted, bits, setting)
            r.append(8 * nbytes / pixels.size)
            p.append(metrics.psnr(pixels, decoded + low, effective_bits(pixels)))
        rates.append(float(np.mean(r)))
        psnrs.append(float(np.mean(p)))
    return rates, psnrs


def _model_coder(model) -> Callable[[np.ndarray, int, float], tuple[int, np.ndarray]]:
    def code(shifted: np.ndarray, bits: int, step: float) -> tuple[int, np.ndarray]:
        data = model.encode(shifted, bits, step)
        return len(data) + 16, model.decode(data, shifted.shape, bits)  # + codec header
    return code


def _j2k(shifted: np.ndarray, bits: int, target: float) -> tuple[int, np.ndarray]:
    codec = get("jpeg2000")
    data = codec.encode(shifted.astype(np.uint16), bits, CodingSpec(Mode.LOSSY, 0, target))
    return len(data), codec.decode(data, shifted.shape, bits).astype(np.int64)


def run(inputs: Sequence[str], out: Path, variants: dict[str, str],
        kind: str = "wavelet") -> dict:
    from medcodec.models.zoo import LOSSY_MODELS, load_model

    slices = _slices(inputs)
    anchor = _curve(slices, J2K_PSNR, _j2k)
    results = {"images": len(slices), "model": kind,
               "jpeg2000": {"bpp": anchor[0], "psnr": anchor[1]}}

    def measure(name: str, model) -> None:
        rates, psnrs = _curve(slices, STEPS, _model_coder(model))
        try:
            bd, interval = bd_rate(rates, psnrs, *anchor)
        except ValueError:
            bd, interval = float("nan"), (float("nan"), float("nan"))
        results[name] = {"bpp": rates, "psnr": psnrs, "bd_rate_vs_jpeg2000": bd,
                         "interval": interval}
        print(f"{name:28s} BD-rate vs jpeg2000 {bd:+.1f}% over {interval[0]:.1f}-"
              f"{interval[1]:.1f} dB", flush=True)

    entry = LOSSY_MODELS[kind]
    shipped, _ = load_model(entry.kind, entry.default)
    shipped = dataclasses.replace(shipped)  # a copy: the cached model stays as shipped
    measure("shipped", shipped)
    rdo = {"rdo": 0.0} if kind == "wavelet" else {"rdo_strength": 0.0}
    changes = [("without RDO quantisation", rdo),
               ("3x3 filter switched on" if not shipped.use_filter
                else "3x3 filter switched off", {"use_filter": not shipped.use_filter})]
    if kind == "wavelet":
        changes += [("4 wavelet levels", {"max_levels": 4}),
                    ("3 wavelet levels", {"max_levels": 3})]
    for name, change in changes:
        measure(name, dataclasses.replace(shipped, **change))
    for name, path in variants.items():
        model, _ = load_model(entry.kind, path)
        measure(name, model)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ablation.json").write_text(json.dumps(results, indent=1))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=FILE")
    parser.add_argument("--model", choices=["wavelet", "transform"], default="wavelet",
                        help="which lossy model to ablate (default wavelet)")
    args = parser.parse_args(argv)
    variants = dict(v.split("=", 1) for v in args.variant)
    run(args.inputs, args.out, variants, args.model)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
