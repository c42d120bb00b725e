"""``medcodec train``: train a model on image folders and write it as safetensors."""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medcodec.errors import InputError


def add_parser(subparsers: Any, parents: Sequence[argparse.ArgumentParser] = ()) -> None:
    p = subparsers.add_parser(
        "train", parents=list(parents), help="train a learned model (needs torch)",
        description="Train medcodec's pixel-estimation network on image folders. Whole series "
                    "are held out for validation; the result is written as safetensors with "
                    "the command, data, commit and validation figures in its metadata.")
    p.add_argument("--data", nargs="+", required=True, metavar="DIR",
                   help="training images: files or folders (DICOM series, NIfTI, ...)")
    p.add_argument("--val", nargs="+", metavar="DIR",
                   help="validation images (default: a hash split of --data by series)")
    p.add_argument("--val-fraction", type=float, default=0.15, metavar="F",
                   help="share of series held out when --val is not given (default 0.15)")
    p.add_argument("--out", required=True, metavar="FILE.safetensors")
    p.add_argument("--model", choices=["pen", "wavelet", "causal", "transform"], default="pen",
                   help="pen: the pixel-estimation network (lossless, near-lossless); "
                        "wavelet: the learned lossy codec; causal: the raster-scan "
                        "estimator (its tables; measured on --val); transform: the "
                        "paper-literal lossy codec (DWT, CAL, learned analysis and synthesis, "
                        "hyperprior)")
    p.add_argument("--inter", action="store_true",
                   help="pen, causal: train the previous-slice model (consecutive slices of a "
                        "series)")
    p.add_argument("--step-range", default="1,256", metavar="MIN,MAX",
                   help="wavelet, transform: quantiser steps sampled in training (default "
                        "1,256; equal "
                        "values train a fixed-rate model)")
    p.add_argument("--no-attention", action="store_true",
                   help="wavelet, transform: model without cross-attention (ablation)")
    p.add_argument("--passes", type=int, choices=[2, 4], default=2,
                   help="wavelet: coding passes per band: 2 (checkerboard, default) or 4 "
                        "(2x2 lattice, 8-neighbour context)")
    p.add_argument("--distribution", choices=["laplace", "logistic"], default="laplace",
                   help="causal: shape of the coding distribution the network's scales index "
                        "(default laplace)")
    p.add_argument("--near-lossless", default="", metavar="D,...",
                   help="causal: also train on near-lossless coding at these maximum errors "
                        "(the network then reads D; default: lossless only)")
    p.add_argument("--bounded", action="store_true",
                   help="causal: train for bounded symbols (stream version 3: a pixel at 0 or "
                        "at the top of its range carries the whole tail's probability)")
    p.add_argument("--window", choices=["3x3", "1x8"], default="3x3",
                   help="pixel-estimation window (the paper compares both; default 3x3)")
    p.add_argument("--modality", default="CT", metavar="M,...",
                   help="modalities to train on (default CT; 'any' for all)")
    p.add_argument("--steps", type=int, default=6000, help="optimiser steps per phase")
    p.add_argument("--hidden", type=int, default=32, help="hidden units per layer")
    p.add_argument("--slice-stride", type=int, default=1, metavar="K",
                   help="use every K-th slice of each training series")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--checkpoint", metavar="FILE",
                   help="save progress here and resume from it when it exists")
    p.add_argument("--log", metavar="FILE.csv", help="append per-step loss/bpp/MSE rows here")
    p.add_argument("-f", "--force", action="store_true", help="overwrite --out")
    p.set_defaults(func=run)


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, cwd=Path(__file__).parent,
                               timeout=10).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def run(args: argparse.Namespace) -> int:
    try:
        if args.model != "causal" or args.steps > 0:
            import torch  # noqa: F401
    except ImportError:
        raise InputError("training needs torch: pip install -c constraints.txt "
                         "'medcodec[train]'") from None

    from medcodec._fs import check_writable
    from medcodec.train.data import read_series, split_series
    from medcodec.train.pen import PenSettings, evaluate, train, training_items

    out = check_writable(args.out, args.force)
    args.commit = _commit()  # the code that runs: taken before, not after, a long training
    modalities = None if args.modality.lower() == "any" else \
        tuple(m.strip().upper() for m in args.modality.split(","))
    quiet = getattr(args, "quiet", False)
    series = read_series(args.data, modalities)
    if args.val:
        val = read_series(args.val, modalities)
        overlap = {s.key for s in series} & {s.key for s in val}
        if overlap:
            raise InputError(f"{len(overlap)} series are in both --data and --val")
        train_series = series
    else:
        train_series, val = split_series(series, args.val_fraction, args.seed)
    if not train_series:
        raise InputError("no training images found")
    if args.model == "wavelet":
        return _run_wavelet(args, out, train_series, val, quiet)
    if args.model == "transform":
        return _run_transform(args, out, train_series, val, quiet)
    if args.model == "causal":
        return _run_causal(args, out, train_series, val)
    settings = PenSettings(window=args.window, steps=args.steps, hidden=args.hidden,
                           slice_stride=args.slice_stride, seed=args.seed,
                           threads=args.threads, inter=args.inter)
    model = train(train_series, val, settings,
                  log_path=Path(args.log) if args.log else None,
                  checkpoint=Path(args.checkpoint) if args.checkpoint else None,
                  progress=not quiet, log=(lambda m: None) if quiet else
                  (lambda m: print(m, file=sys.stderr)))
    val_slices = training_items(val, args.inter)
    figures = evaluate(model, val_slices) if val_slices else {}
    name = "pixel-estimation network" + (" (previous slice)" if args.inter else "")
    return _save(args, out, model, name, settings, train_series, val, figures,
                 window=args.window)


def _save(args: argparse.Namespace, out: Path, model, name: str, settings, train_series, val,
          figures: dict, **extra: str) -> int:
    """Write the weights with what made them (command, commit, data, figures) as metadata."""
    from safetensors.numpy import save_file

    from medcodec._fs import atomic_path

    metadata = {
        "model": name, **extra,
        "command": "medcodec " + shlex.join(sys.argv[1:]) if sys.argv else "",
        "commit": args.commit, "settings": json.dumps(settings.__dict__),
        "train_series": json.dumps(sorted(s.key for s in train_series)),
        "val_series": json.dumps(sorted(s.key for s in val)),
        "validation": json.dumps(figures),
    }
    with atomic_path(out, force=args.force) as tmp:
        save_file(model.as_arrays(), str(tmp), metadata=metadata)
    print(json.dumps({"out": str(out), "train_series": len(train_series),
                      "val_series": len(val), "validation": figures}, indent=1))
    return 0


def _step_range(args: argparse.Namespace) -> tuple[float, float]:
    try:
        step_min, step_max = (float(v) for v in args.step_range.split(","))
    except ValueError:
        raise InputError(f"--step-range: cannot read {args.step_range!r} (e.g. 1,256)") from None
    if not 0 < step_min <= step_max:
        raise InputError("--step-range needs 0 < MIN <= MAX")
    return step_min, step_max


def _lossy_settings(args: argparse.Namespace) -> dict:
    """The settings both lossy trainers take from the command line."""
    step_min, step_max = _step_range(args)
    return dict(steps=args.steps, hidden=args.hidden, slice_stride=args.slice_stride,
                seed=args.seed, threads=args.threads, use_attention=not args.no_attention,
                step_min=step_min, step_max=step_max)


def _lossy_figures(model, val) -> dict:
    """Real bpp and PSNR at a few steps on up to 8 validation slices (the weights' metadata)."""
    from medcodec.train.wavelet import evaluate

    val_slices = [s for v in val for s in v.slices]
    return evaluate(model, val_slices[:: max(1, len(val_slices) // 8)]) if val_slices else {}


def _run_transform(args: argparse.Namespace, out: Path, train_series, val, quiet: bool) -> int:
    """Train the float twin end to end, quantise it to the integer codec, fit the filter."""
    from medcodec.train.transform import TransformSettings, to_model, train

    settings = TransformSettings(**_lossy_settings(args))
    rows: list[dict] = []
    net = train(train_series, settings, log=(lambda m: None) if quiet else
                (lambda m: print(m, file=sys.stderr)), log_rows=rows)
    if args.log and rows:
        _write_log(Path(args.log), rows)
    model = to_model(net, settings, train_series)
    return _save(args, out, model, "DWT + CAL + learned transform + hyperprior (lossy)",
                 settings, train_series, val, _lossy_figures(model, val))


def _run_wavelet(args: argparse.Namespace, out: Path, train_series, val, quiet: bool) -> int:
    from medcodec.train.wavelet import WaveletSettings, train

    settings = WaveletSettings(**_lossy_settings(args), schedule=args.passes)
    model = train(train_series, val, settings, log_path=Path(args.log) if args.log else None,
                  progress=not quiet,
                  log=(lambda m: None) if quiet else (lambda m: print(m, file=sys.stderr)))
    return _save(args, out, model, "wavelet latent + cross-attention + hyperprior (lossy)",
                 settings, train_series, val, _lossy_figures(model, val))


def _run_causal(args: argparse.Namespace, out: Path, train_series, val) -> int:
    """The least-squares stage adapts to each image while coding; ``--steps 0`` writes the
    model without a network (its tables only), otherwise the pixel-estimation network is
    trained on --data. The lossless bpp on --val is recorded."""
    from medcodec.models.causal.model import CausalEstimator
    from medcodec.train.causal import CausalSettings, evaluate, train

    settings = CausalSettings(steps=args.steps, hidden=args.hidden,
                              slice_stride=args.slice_stride, seed=args.seed,
                              threads=args.threads, inter=args.inter,
                              distribution=args.distribution,
                              max_errors=_max_errors(args.near_lossless),
                              bounded=args.bounded)
    if args.steps > 0:
        rows: list[dict] = []
        model = train(train_series, settings, log_rows=rows)
        if args.log:
            _write_log(Path(args.log), rows)
    else:
        model = CausalEstimator.build(inter=args.inter)
    figures = evaluate(model, val, args.slice_stride, settings.max_errors)
    name = "raster-scan pixel estimator (online least squares" + (
        " + pixel-estimation network)" if model.net is not None else ")") + (
        ", previous slice" if args.inter else "")
    return _save(args, out, model, name, settings, train_series, val, figures)


def _max_errors(text: str) -> tuple[int, ...]:
    """--near-lossless D,...: distinct whole numbers from 1 to 255, ascending."""
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        values = [0]
    if values and not all(1 <= v <= 255 for v in values):
        raise InputError("--near-lossless needs whole numbers from 1 to 255, e.g. 1,2,4")
    return tuple(values)


def _write_log(path: Path, rows: list[dict]) -> None:
    import csv

    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["step"])
        if f.tell() == 0:
            writer.writeheader()
        writer.writerows(rows)
