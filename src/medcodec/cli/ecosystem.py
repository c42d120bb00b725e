"""``medcodec transcode`` and ``medcodec batch``: the sub-commands that fit other tools.

Wiring into the main parser takes :func:`add_parsers`; each sub-command sets ``func`` so the
dispatcher can call ``args.func(args)``. Errors are MedcodecErrors, which the main entry point
turns into one line and exit code 2; a batch with failed units exits with 1 (its manifest says
which and why).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

EXIT_SOME_FAILED = 1


def add_parsers(subparsers: Any, parents: Sequence[argparse.ArgumentParser] = ()) -> None:
    """Add ``transcode`` and ``batch`` to an ``argparse`` sub-parser collection.

    ``parents``: parsers whose options every sub-command accepts (``--debug``, ``--quiet``).
    """
    p = subparsers.add_parser(
        "transcode", parents=list(parents),
        help="write standard compressed DICOM (HTJ2K, JPEG-LS, JPEG 2000, JPEG XL)",
        description="DICOM files, series folders or .mdcx containers to DICOM with a standard "
                    "compressed transfer syntax. Every output is decoded again and compared "
                    "with its input before it is written.")
    p.add_argument("inputs", nargs="+", metavar="IN",
                   help="DICOM files, folders (mirrored under OUT) or .mdcx containers")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output file (one input file) or folder")
    p.add_argument("--to", required=True, choices=["htj2k", "jpegls", "jpeg2000", "jpegxl"],
                   help="codec family of the output transfer syntax")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--lossless", action="store_true",
                     help="pixel-identical output (default): .202 (HTJ2K RPCL), .80, .90, .110")
    how.add_argument("--max-error", type=int, metavar="D",
                     help="near-lossless, every pixel within D (JPEG-LS .81 only)")
    how.add_argument("--ratio", type=float, metavar="R",
                     help="lossy at about R:1 against Bits Allocated (.203, .81, .91, .112)")
    p.add_argument("--allow-lossy-mg", action="store_true",
                   help="allow lossy coding of mammography (refused by default)")
    p.add_argument("--no-rpcl", action="store_true",
                   help="HTJ2K lossless: write plain HTJ2K Lossless (.201) instead of RPCL (.202)")
    p.add_argument("--offset-table", choices=["auto", "basic", "extended"], default="auto",
                   help="basic offset table, extended (7FE0,0001/2), or auto (basic up to 4 GiB)")
    p.add_argument("-f", "--force", action="store_true", help="overwrite existing outputs")
    p.set_defaults(func=run_transcode)

    p = subparsers.add_parser(
        "batch", parents=list(parents),
        help="compress a whole archive on Dask, resumable, with a manifest",
        description="Compress every DICOM series and image file under IN_ROOT into .mdcx "
                    "containers under OUT_ROOT (same relative layout). Re-running resumes: units "
                    "the manifest lists as done (outputs intact) are skipped.")
    p.add_argument("in_root", metavar="IN_ROOT")
    p.add_argument("-o", "--output", required=True, metavar="OUT_ROOT")
    group = p.add_argument_group("coding")
    group.add_argument("--codec", default="auto", help="codec name (default: auto)")
    group.add_argument("--mode", choices=["lossless", "near-lossless", "lossy"],
                       default="lossless", help="default: lossless")
    group.add_argument("--max-error", type=int, metavar="D", help="near-lossless bound")
    group.add_argument("--quality", type=float, metavar="Q", help="lossy quality knob")
    p.add_argument("--scheduler", default="local", metavar="local|threads|sync|ADDRESS",
                   help="Dask local scheduler with processes (default), threads, synchronous, "
                        "or a dask.distributed scheduler address such as tcp://10.0.0.5:8786")
    p.add_argument("--workers", type=int, metavar="N",
                   help="local scheduler: worker processes (default: CPU count)")
    p.add_argument("--per", choices=["series", "file"], default="series",
                   help="one task per DICOM series (default) or per file")
    p.add_argument("--manifest", metavar="CSV", help="default: OUT_ROOT/manifest.csv")
    p.set_defaults(func=run_batch)


def run_transcode(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from medcodec.transcode import TranscodeOptions, transcode

    options = TranscodeOptions(target=args.to, max_error=args.max_error, ratio=args.ratio,
                               allow_lossy_mg=args.allow_lossy_mg, rpcl=not args.no_rpcl,
                               offset_table=args.offset_table)
    quiet = bool(getattr(args, "quiet", False))
    with tqdm(desc="transcode", unit="file", disable=quiet or None, leave=False,
              file=sys.stderr) as bar:
        results = transcode(args.inputs, args.output, options, force=args.force,
                            progress=bar.update)
    for result in results:
        print(result.summary())
        for note in result.notes:
            print(f"  note: {note}")
    raw = sum(r.raw_bytes for r in results)
    coded = sum(r.coded_bytes for r in results)
    if len(results) > 1:
        print(f"total: {len(results)} files, {raw} -> {coded} bytes "
              f"(ratio {raw / max(1, coded):.2f}:1), max error "
              f"{max(r.max_error for r in results)}")
    return 0


def run_batch(args: argparse.Namespace) -> int:
    from medcodec.batch import BatchSettings
    from medcodec.batch import run_batch as run

    settings = BatchSettings(codec=args.codec, mode=args.mode, max_error=args.max_error,
                             quality=args.quality)
    summary = run(args.in_root, args.output, settings, scheduler=args.scheduler,
                  workers=args.workers, per=args.per, manifest=args.manifest,
                  progress=not getattr(args, "quiet", False))
    print(summary.text())
    for unit, error in summary.failed[:20]:
        print(f"  failed: {unit}: {error}", file=sys.stderr)
    if len(summary.failed) > 20:
        print(f"  ... and {len(summary.failed) - 20} more (see the manifest)", file=sys.stderr)
    return EXIT_SOME_FAILED if summary.failed else 0
