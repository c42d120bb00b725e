"""BD-rates of one codec against every other: ``python -m medcodec.bench.compare RESULTS.csv``.

``medcodec bench`` anchors its BD-rates on JPEG 2000; this reads the same ``results.csv`` and
anchors on each other codec in turn, over the images both codecs have (mean curves, PCHIP over
log-rate, BENCHMARK.md), for ``psnr``, ``psnr_soft8`` and ``ssim_db`` (SSIM as
``-10 log10(1 - SSIM)``, so that its BD-rate integrates over a scale where equal steps mean
equal relative changes of the remaining dissimilarity).
"""

from __future__ import annotations

import argparse
import collections
import csv
from collections.abc import Sequence

import numpy as np

from medcodec.bench.bdrate import bd_rate


def _curve(rows: dict, images: Sequence[str], metric: str) -> tuple[list[float], list[float]]:
    settings = sorted({s for i in images for s in rows[i]}, key=lambda s: float(s.split("=")[1]))
    rates, values = [], []
    for setting in settings:
        found = [rows[i][setting] for i in images if setting in rows[i]]
        if len(found) == len(images):  # a point only where every image has it
            rates.append(float(np.mean([float(r["bpp"]) for r in found])))
            values.append(float(np.mean([_value(r, metric) for r in found])))
    return rates, values


def _value(row: dict, metric: str) -> float:
    if metric == "ssim_db":
        return -10.0 * float(np.log10(max(1.0 - float(row["ssim"]), 1e-12)))
    return float(row[metric])


def compare(path: str, codec: str, metrics: Sequence[str] = ("psnr", "psnr_soft8", "ssim_db")
            ) -> list[dict]:
    by: dict[str, dict[str, dict[str, dict]]] = collections.defaultdict(
        lambda: collections.defaultdict(dict))
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            if row["mode"] == "lossy":
                by[row["codec"]][row["image"]][row["setting"]] = row
    out = []
    for metric in metrics:
        for other in sorted(c for c in by if c != codec):
            images = sorted(set(by[codec]) & set(by[other]))
            try:
                bd, (lo, hi) = bd_rate(*_curve(by[codec], images, metric),
                                       *_curve(by[other], images, metric))
            except (ValueError, KeyError):
                continue
            out.append({"metric": metric, "against": other, "bd_rate_percent": bd,
                        "interval": (lo, hi), "images": len(images)})
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results")
    parser.add_argument("--codec", default="medcodec")
    args = parser.parse_args(argv)
    for r in compare(args.results, args.codec):
        print(f"{r['metric']:10s} {args.codec} vs {r['against']:9s} {r['bd_rate_percent']:+6.1f}%"
              f"  interval {r['interval'][0]:.1f}-{r['interval'][1]:.1f} dB"
              f"  images {r['images']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
