"""``medcodec report``: an HTML page comparing decoded versions of an image with the original.

Wiring into the main parser takes :func:`add_parser`; the sub-command sets ``func`` so the
dispatcher calls ``args.func(args)``. User errors are MedcodecErrors (one line, exit code 2).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_CODECS = "medcodec,jpeg2000,jpegls"


def add_parser(subparsers: Any, parents: Sequence[argparse.ArgumentParser] = ()) -> None:
    """Add ``report`` to an ``argparse`` sub-parser collection."""
    p = subparsers.add_parser(
        "report", parents=list(parents),
        help="HTML page: decoded slices beside the original, error maps, metrics",
        description="Code an image with each codec setting and write DIR/index.html, one "
                    "self-contained page (no server, no network): original and decoded slices "
                    "side by side with CT window presets, free window/level, zoom and pan, "
                    "signed error maps, the measurements, RD plots and the DICOM lossy "
                    "bookkeeping. Given a `medcodec bench` output folder, shows what that run "
                    "measured.")
    p.add_argument("input", metavar="INPUT",
                   help="an image file or one DICOM series folder, or a `medcodec bench` "
                        "output folder (holding results.csv)")
    p.add_argument("--out", required=True, metavar="DIR", help="index.html goes here")
    p.add_argument("--codecs", metavar="A,B,...",
                   help=f"codecs to show (default: those of {DEFAULT_CODECS} with the mode)")
    p.add_argument("--mode", choices=["lossless", "near-lossless", "lossy", "all"],
                   help="default: near-lossless when only --max-error is given, else lossy")
    p.add_argument("--bpp", metavar="B,...",
                   help="lossy target rates, each reached by searching the codec's knob per "
                        "slice as `medcodec bench` does (default 1)")
    p.add_argument("--max-error", metavar="D,...",
                   help="near-lossless bounds in stored units (default 1)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--slices", metavar="LIST", help="slices to show, e.g. 0,4,10-12")
    which.add_argument("--max-slices", type=int, default=20, metavar="N",
                       help="without --slices: all slices up to N, else N evenly spaced "
                            "(default 20)")
    p.add_argument("--repeat", type=int, default=1, metavar="R",
                   help="timed runs per measurement after one warm-up (default 1)")
    p.add_argument("-f", "--force", action="store_true", help="overwrite DIR/index.html")
    p.set_defaults(func=run_report)


def run_report(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from medcodec import codecs
    from medcodec.bench.runner import plan_tasks
    from medcodec.cli.commands import _number_list, _parse_slices
    from medcodec.errors import InputError
    from medcodec.report import (
        build,
        check_output,
        choose_slices,
        is_bench_folder,
        read_one,
        render_bench,
        render_image,
        write_html,
    )

    quiet = bool(getattr(args, "quiet", False))
    command = "medcodec " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    target = check_output(args.out, args.force)  # before any work
    source = Path(args.input)
    if not source.exists():
        raise InputError(f"{source}: no such file or folder")
    if is_bench_folder(source):
        page = render_bench(source, command)
        write_html(page, args.out, args.force)
        print(f"{target}: bench results of {source}, {len(page.encode()) / 1e6:.2f} MB")
        return 0

    mode = args.mode or ("near-lossless" if args.max_error and not args.bpp else "lossy")
    bpps = _number_list(args.bpp or "1", float, "--bpp")
    max_errors = _number_list(args.max_error or "1", int, "--max-error")
    if args.codecs:
        names = [c.strip() for c in args.codecs.split(",") if c.strip()]
        for name in names:
            codecs.get(name)  # unknown or unavailable: one clear error before any work
    else:
        available = {n for n, ok, _, _ in codecs.availability() if ok}
        names = [n for n in DEFAULT_CODECS.split(",") if n in available]
    tasks = plan_tasks(names, mode, max_errors, bpps)
    if not tasks:
        raise InputError(f"none of the codecs {', '.join(names)} has a {mode} mode "
                         "with a target bpp" if mode == "lossy" else
                         f"none of the codecs {', '.join(names)} has a {mode} mode")
    offered = {t.codec for t in tasks}
    for name in names:
        if args.codecs and name not in offered:
            print(f"note: codec {name} has no {mode} mode and is left out", file=sys.stderr)
    if args.repeat < 1:
        raise InputError(f"--repeat must be at least 1, got {args.repeat}")

    image = read_one(source)
    slices = _parse_slices(args.slices, image.n_slices) if args.slices else None
    count = len(choose_slices(image.n_slices, slices, args.max_slices))
    with tqdm(total=count * len(tasks), desc="coding", unit="slice", disable=quiet or None,
              leave=False, file=sys.stderr) as bar:
        report = build(image, tasks, slices, args.max_slices, args.repeat, source.name,
                       bar.update)
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    with tqdm(total=count * (1 + len(report.versions)), desc="page", unit="slice",
              disable=quiet or None, leave=False, file=sys.stderr) as bar:
        page = render_image(report, command, bar.update)
    write_html(page, args.out, args.force)
    print(f"{target}: {image.describe()}; {count} slice{'s' if count > 1 else ''} x "
          f"{1 + len(report.versions)} panels, {len(page.encode()) / 1e6:.2f} MB")
    for version in report.versions:
        rows = version.rows
        bpp = sum(float(r["bpp"]) for r in rows) / len(rows)
        print(f"  {version.label:<28} {bpp:7.3f} bpp, max |err| "
              f"{max(int(r['max_abs_err']) for r in rows)}")
    return 0
