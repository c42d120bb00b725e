"""Lossless volumes: medcodec alone and with the previous slice against the standard codecs.

``python -m medcodec.bench.volumes INPUT... --out DIR [--key-every 0,16] [--codecs ...]``

Every series is coded whole through the container (``medcodec.compress``), pixels only (no
carried DICOM headers, so every codec pays the same small container header), and decoded
again to check the round trip. ``--key-every K`` is ``--inter-slice K``; 0 means one key
slice for the whole series. bpp = container bits / pixels (``../shared/BENCHMARK.md``).
Writes ``DIR/volumes.csv`` and ``DIR/volumes.md``.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import medcodec
from medcodec.image import MedImage


def _pixels_only(image: MedImage, stride: int) -> MedImage:
    return MedImage(np.ascontiguousarray(image.pixels[:: max(1, stride)]),
                    bits_stored=image.bits_stored, rescale_slope=image.rescale_slope,
                    rescale_intercept=image.rescale_intercept, modality=image.modality)


def measure(image: MedImage, codecs: Sequence[str], keys: Sequence[int]) -> dict[str, float]:
    """bpp of every codec (and of medcodec with each key spacing) on one volume, checked."""
    pixels = image.pixels.size
    row: dict[str, float] = {}
    runs: list[tuple[str, dict]] = [(c, {"codec": c}) for c in codecs]
    for k in keys:
        runs.append((f"medcodec inter K={k or 'all'}",
                     {"codec": "medcodec", "inter_slice": k or image.pixels.shape[0]}))
    for label, kwargs in runs:
        start = time.perf_counter()
        data = medcodec.compress(image, **kwargs)
        row[f"{label} s"] = round(time.perf_counter() - start, 2)
        back = medcodec.decompress(data)
        if not np.array_equal(back.pixels, image.pixels):
            raise AssertionError(f"{label}: the volume does not round-trip")
        row[label] = round(8 * len(data) / pixels, 4)
    return row


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m medcodec.bench.volumes", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--codecs", default="medcodec,jpegxl,jpegxl-e9,jpegls,jpeg2000")
    p.add_argument("--key-every", default="0,16", help="key slice spacings (0: one key)")
    p.add_argument("--stride", type=int, default=1, help="every K-th slice of each series")
    p.add_argument("--min-slices", type=int, default=2)
    args = p.parse_args(argv)
    codecs = [c for c in args.codecs.split(",") if c]
    keys = [int(k) for k in args.key_every.split(",") if k != ""]
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in args.inputs:
        for image in medcodec.io.read_all([path]):
            volume = _pixels_only(image, args.stride)
            if volume.pixels.shape[0] < args.min_slices:
                continue
            row = {"series": Path(path).name, "slices": volume.pixels.shape[0],
                   **measure(volume, codecs, keys)}
            rows.append(row)
            print(row, file=sys.stderr, flush=True)
    if not rows:
        print("no volumes with enough slices", file=sys.stderr)
        return 1
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(args.out / "volumes.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    labels = [k for k in fields if k not in ("series", "slices") and not k.endswith(" s")]
    # the "best standard": JPEG XL effort 7, JPEG-LS, JPEG 2000 (effort 9 is a column)
    standard = [c for c in codecs if c not in ("medcodec", "jpegxl-e9")]
    lines = ["| series | slices | " + " | ".join(labels) + " | best inter / best standard |",
             "|---" * (len(labels) + 3) + "|"]
    for r in rows:
        inter = min((r[k] for k in labels if k.startswith("medcodec inter")), default=np.nan)
        best = min((r[c] for c in standard if c in r), default=np.nan)
        lines.append(f"| {r['series']} | {r['slices']} | "
                     + " | ".join(f"{r[k]:.3f}" for k in labels) + f" | {inter / best:.3f} |")
    (args.out / "volumes.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
