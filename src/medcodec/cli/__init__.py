"""The ``medcodec`` command line: compress, decompress, info, demo.

Every error a user can cause ends as one line on stderr naming the file and the problem, with a
non-zero exit code; ``--debug`` (or MEDCODEC_DEBUG=1) shows the traceback for bug reports.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence

from medcodec._version import __version__
from medcodec.errors import MedcodecError

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def _add_coding_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("coding")
    group.add_argument("--codec", default="auto",
                       help="codec name (see `medcodec info --codecs`); auto = the best "
                            "available for the mode and bit depth (default)")
    group.add_argument("--mode", choices=["lossless", "near-lossless", "lossy"],
                       default="lossless", help="default: lossless")
    bound = group.add_mutually_exclusive_group()
    bound.add_argument("--max-error", type=int, metavar="D",
                       help="near-lossless: every pixel within D stored units")
    bound.add_argument("--max-error-hu", type=float, metavar="HU",
                       help="near-lossless, CT: every pixel within HU Hounsfield units "
                            "(converted through each image's rescale slope)")
    group.add_argument("--quality", type=float, metavar="Q",
                       help="lossy: the codec's quality knob")
    group.add_argument("--bpp", type=float, metavar="B",
                       help="lossy: search the quality knob for this many bits per pixel")
    group.add_argument("--inter-slice", type=int, metavar="K",
                       help="volumes, medcodec lossless/near-lossless: use the previous slice "
                            "as context, with a self-contained key slice every K slices")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medcodec",
        description="Compress medical images (DICOM, NIfTI, MHD/MHA, NRRD, PNG, TIFF, NPY) "
                    "losslessly, with a bounded error, or lossy.",
    )
    parser.add_argument("--version", action="version", version=f"medcodec {__version__}")
    # --debug and --quiet work before or after the sub-command
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks on errors")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="no progress bars")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True

    def add(name: str, **kwargs: str) -> argparse.ArgumentParser:
        return subparsers.add_parser(name, parents=[common], **kwargs)

    p = add("compress", help="compress images into .mdcx containers")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="files or folders (a folder of DICOM slices = one volume per series)")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output .mdcx file, or a folder when the inputs hold several images")
    p.add_argument("-f", "--force", action="store_true", help="overwrite existing outputs")
    _add_coding_options(p)

    p = add("decompress", help="decode a .mdcx container to DICOM/NIfTI/PNG/...")
    p.add_argument("input", metavar="IN")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output file or folder; the format comes from the extension")
    p.add_argument("--format", choices=["dicom", "nifti", "png", "tiff", "npy", "itk"],
                   help="output format when the extension does not say")
    p.add_argument("--slices", metavar="LIST", help="decode only these slices, e.g. 0,4,10-12")
    p.add_argument("-f", "--force", action="store_true", help="overwrite existing outputs")

    p = add("info", help="describe a container or image file")
    p.add_argument("file", nargs="?", metavar="FILE")
    p.add_argument("--codecs", action="store_true",
                   help="list the codecs available on this install, with library versions")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = add("bench", help="measure codecs on real images (BENCHMARK.md)")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="files or folders: DICOM series, LIDC-IDRI, LUNA16, MosMed, NIfTI, ...")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="results.csv, summary.json, report.md and plots go here; "
                        "re-running with the same DIR resumes")
    p.add_argument("--codecs", metavar="A,B,...",
                   help="codecs to measure (default: every available one)")
    p.add_argument("--mode", choices=["lossless", "near-lossless", "lossy", "all"],
                   default="all", help="default: all")
    p.add_argument("--max-error", metavar="D,...", default="1,2,4",
                   help="near-lossless bounds (default 1,2,4)")
    p.add_argument("--bpp", metavar="B,...", default="0.25,0.5,1,2,2.5",
                   help="lossy target rates; each codec's knob is searched per image")
    p.add_argument("--limit", type=int, metavar="N", help="at most N images (2-D slices)")
    p.add_argument("--stride", type=int, default=1, metavar="K",
                   help="take every K-th slice of each volume (default 1)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="parallel processes (default: 2); use 1 for speed figures")
    p.add_argument("--repeat", type=int, default=3, metavar="R",
                   help="timed runs per measurement after one warm-up (default 3)")

    from medcodec.cli.ecosystem import add_parsers

    add_parsers(subparsers, parents=[common])
    from medcodec.cli.train import add_parser as add_train_parser

    add_train_parser(subparsers, parents=[common])
    from medcodec.cli.report import add_parser as add_report_parser

    add_report_parser(subparsers, parents=[common])

    p = add("demo", help="compress and decompress a bundled real CT slice")
    p.add_argument("--out", metavar="DIR", help="keep the outputs in DIR (default: temporary)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get("MEDCODEC_DEBUG") == "1"
    if not debug:  # pydicom warns about every odd tag; the CLI reports problems itself
        warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom(\.|$)")
    from medcodec.cli import commands

    commands.current_file.clear()

    handler = getattr(args, "func", None) or {
        "compress": commands.compress,
        "decompress": commands.decompress,
        "info": commands.info,
        "demo": commands.demo,
        "bench": commands.bench,
    }[args.command]
    try:
        from medcodec.models.threads import threads_from_environment

        threads_from_environment()  # a bad MEDCODEC_THREADS is blamed by name, up front
        return handler(args) or 0
    except MedcodecError as exc:
        if debug:
            raise
        print(f"medcodec: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("medcodec: interrupted; no partial output was left", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError:
        print("medcodec: error: out of memory", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # a bug, not a user error: still one line unless --debug
        if debug:
            raise
        where = f" while working on {commands.current_file[0]}" if commands.current_file else ""
        first_line = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        print(f"medcodec: internal error{where}: {type(exc).__name__}: {first_line} "
              "(run with --debug for a traceback and please report it)", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
