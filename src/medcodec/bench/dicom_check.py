"""Round-trip check of DICOM files through medcodec, file by file, the way a hospital user's
files go: compress, decompress, write DICOM, then compare with the input.

For every file and mode: pixels as pydicom decodes them (exact for lossless, within D for
near-lossless), every element's value bytes (only the lossy bookkeeping may change), pixels
inside BitsStored, no new dciodvfy errors (when dicom3tools is installed) and a read by GDCM
(when python-gdcm is installed, and only if GDCM reads the input). Prints a summary and writes
``DIR/dicom_check.csv``::

    python -m medcodec.bench.dicom_check INPUT... --out DIR [--modes lossless,near2,lossy,pen]
"""

from __future__ import annotations

import argparse
import csv
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

#: --modes name -> compress options.
MODES: dict[str, dict[str, Any]] = {
    "lossless": {},
    "near2": {"mode": "near-lossless", "max_error": 2},
    "lossy": {"mode": "lossy", "bpp": 1.0},
    "pen": {"codec": "medcodec"},
}
_PIXEL_TAGS = {0x7FE00010, 0x7FE00001, 0x7FE00002, 0x7FE00008, 0x7FE00009}
#: Elements PS3.3 C.7.6.1.1.5 bookkeeping changes in lossy outputs.
_LOSSY_TAGS = {0x00080008, 0x00080018, 0x00082111, 0x00282110, 0x00282112, 0x00282114}
_GDCM_READS = ("import gdcm, sys; r = gdcm.ImageReader(); r.SetFileName(sys.argv[1]); "
               "sys.exit(0 if r.Read() else 3)")


def read_dataset(path: Path) -> Any:
    """pydicom's dataset of any file it can parse, warnings silenced."""
    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, force=True)


def dciodvfy_errors(path: Path) -> set[str]:
    result = subprocess.run(["dciodvfy", "-new", str(path)], capture_output=True, text=True,
                            timeout=120)
    return {re.sub(r"\s+", " ", line) for line in (result.stderr + result.stdout).splitlines()
            if line.startswith("Error")}


def gdcm_reads(path: Path) -> bool:
    """GDCM in a process of its own: it aborts the process on some inputs."""
    return subprocess.run([sys.executable, "-c", _GDCM_READS, str(path)],
                          capture_output=True, timeout=120).returncode == 0


def _changed_elements(before: Any, after: Any, lossy: bool) -> list[str]:
    from medcodec.io.dicom_header import element_bytes, tag_text

    old, new = element_bytes(before), element_bytes(after)
    allowed = _LOSSY_TAGS if lossy else set()
    out = []
    for key, value in old.items():
        top = key[0]
        if top in _PIXEL_TAGS or key[-1] & 0xFFFF == 0 or (len(key) == 1 and top in allowed):
            continue
        if new.get(key) != value:
            out.append(tag_text(top))
    return out


def check_file(path: Path, mode: str, work: Path, dciodvfy: bool, gdcm: bool) -> dict[str, Any]:
    """One row: what happened to ``path`` in ``mode``."""
    import medcodec
    from medcodec.errors import MedcodecError, UnsupportedError
    from medcodec.io.dicom import ensure_transfer_syntax

    row: dict[str, Any] = {"file": str(path), "mode": mode, "outcome": "", "detail": ""}
    try:
        source = read_dataset(path)
        if "PixelData" not in source:
            row["outcome"] = "no pixel data"
            return row
        images = medcodec.read_all(path)
        back = medcodec.decompress(medcodec.compress(images[0], **MODES[mode]))
        out = medcodec.write(back, work / "out.dcm", force=True)[0]
        written = read_dataset(out)
        ensure_transfer_syntax(source)
        original, decoded = source.pixel_array.astype(np.int64), written.pixel_array
        error = int(np.abs(original - decoded.astype(np.int64)).max(initial=0))
        bits, signed = int(written.BitsStored), int(written.PixelRepresentation)
        low, high = ((-(1 << bits - 1), (1 << bits - 1) - 1) if signed else (0, (1 << bits) - 1))
        problems = []
        bound = {"lossless": 0, "pen": 0, "near2": 2}.get(mode)
        if bound is not None and error > bound:
            problems.append(f"max error {error}")
        if int(((decoded < low) | (decoded > high)).sum()):
            problems.append("pixels outside BitsStored")
        if source.original_encoding[1] is not False:  # big endian: values, not bytes
            changed = _changed_elements(source, written, mode in ("near2", "lossy"))
            if changed:
                problems.append(f"elements changed: {' '.join(changed[:5])}")
        if dciodvfy:
            new = dciodvfy_errors(out) - dciodvfy_errors(path)
            if new:
                problems.append(f"new dciodvfy errors: {sorted(new)[0][:120]}")
        if gdcm and not gdcm_reads(out) and gdcm_reads(path):
            problems.append("GDCM cannot read the output")
        row["outcome"] = "ok" if not problems else "FAIL"
        row["detail"] = "; ".join(problems) or f"max error {error}"
    except UnsupportedError as exc:
        row["outcome"], row["detail"] = "refused", str(exc).splitlines()[0][:200]
    except MedcodecError as exc:
        row["outcome"], row["detail"] = "error", str(exc).splitlines()[0][:200]
    except Exception as exc:  # what this check exists to find
        row["outcome"], row["detail"] = "INTERNAL", f"{type(exc).__name__}: {exc}"[:200]
    return row


def _dicom_files(inputs: list[str]) -> list[Path]:
    from medcodec.io import walk_files
    from medcodec.io.dicom import looks_like_dicom

    found: list[Path] = []
    for item in map(Path, inputs):
        candidates = walk_files(item) if item.is_dir() else [item]
        found += [p for p in candidates if looks_like_dicom(p)]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medcodec.bench.dicom_check",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", metavar="INPUT")
    parser.add_argument("--out", required=True, metavar="DIR")
    parser.add_argument("--modes", default="lossless,near2,lossy",
                        help=f"comma-separated, from {','.join(MODES)}")
    parser.add_argument("--stride", type=int, default=1, help="every K-th file")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"unknown mode(s) {', '.join(unknown)}")
    files = _dicom_files(args.inputs)[:: max(1, args.stride)]
    dciodvfy = shutil.which("dciodvfy") is not None
    try:
        import gdcm  # noqa: F401

        gdcm_ok = True
    except ImportError:
        gdcm_ok = False
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    from tqdm import tqdm

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in tqdm(files, desc="dicom check", unit="file", file=sys.stderr):
            for mode in modes:
                row = check_file(path, mode, Path(tmp), dciodvfy, gdcm_ok)
                rows.append(row)
                if row["outcome"] in ("FAIL", "INTERNAL", "error"):
                    tqdm.write(f"{row['outcome']}: {path} ({mode}): {row['detail']}",
                               file=sys.stderr)
    with open(out_dir / "dicom_check.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["file", "mode", "outcome", "detail"])
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(files)} DICOM files, modes {','.join(modes)}; dciodvfy "
          f"{'on' if dciodvfy else 'not installed'}, GDCM {'on' if gdcm_ok else 'not installed'}")
    for mode in modes:
        counts: dict[str, int] = {}
        for row in rows:
            if row["mode"] == mode:
                counts[row["outcome"]] = counts.get(row["outcome"], 0) + 1
        print(f"  {mode:<9} " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    print(f"rows in {out_dir / 'dicom_check.csv'}")
    return 1 if any(r["outcome"] in ("FAIL", "INTERNAL") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
