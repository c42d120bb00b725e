"""Fig. 15-style figures and the paper's operating point from a bench run:
``python -m medcodec.bench.fig15 RESULTS.csv --out DIR [--title T]``.

Reads the ``results.csv`` of ``medcodec bench`` and writes:

- ``rd_psnr.png``, ``rd_psnr_soft8.png``, ``rd_ssim.png``: rate-distortion curves, each codec
  averaged over the images it coded (the legend gives the count when it is not every image);
- ``lossless_near.png``: mean bpp of lossless and of each near-lossless bound, per codec;
- ``timing.png`` and ``timing.md``: encode/decode ms per slice (median over images), lossless
  and lossy nearest 1 bpp;
- ``operating_point.md`` / ``.json``: each codec's PSNR/SSIM (every definition of
  ../shared/BENCHMARK.md) at 2.91 bpp, and the bpp at which it reaches the paper's 40.43 dB and
  SSIM 0.9715, interpolated in log bpp on its mean curve, with ms per slice there;
- ``bd_rates.md``: BD-rate (``psnr`` and ``psnr_soft8``) of every codec against JPEG 2000 and
  against medcodec, over the images both coded (:mod:`medcodec.bench.compare`).
"""

from __future__ import annotations

import argparse
import collections
import csv
import itertools
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medcodec.bench.compare import compare

PAPER = {"psnr": 40.43, "ssim": 0.9715, "bpp": 2.91, "ms": 635.1}
PSNRS = ("psnr", "psnr_soft8", "psnr_lung8")
SSIMS = ("ssim", "ssim_soft8")


def _f(value: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def load(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def curves(rows: Sequence[dict[str, str]]) -> dict[str, dict]:
    """codec -> {"images": n, "points": [mean point per setting, by bpp]}."""
    groups: dict[str, dict[str, list]] = collections.defaultdict(
        lambda: collections.defaultdict(list))
    for r in rows:
        if r["mode"] == "lossy":
            groups[r["codec"]][r["setting"]].append(r)
    out = {}
    for codec, settings in groups.items():
        images = {r["image"] for rs in settings.values() for r in rs}
        points = []
        for setting, rs in settings.items():
            if len(rs) != len(images):  # only settings every image of this codec has
                continue
            p = {"setting": setting}
            for key in ("bpp", *PSNRS, *SSIMS, "enc_ms", "dec_ms"):
                vals = [_f(r.get(key, "")) for r in rs]
                vals = [v for v in vals if math.isfinite(v)]
                p[key] = float(np.median(vals) if key.endswith("_ms") else np.mean(vals)) \
                    if vals else math.nan
            points.append(p)
        out[codec] = {"images": len(images), "points": sorted(points, key=lambda p: p["bpp"])}
    return out


def _interp_at_bpp(points: list[dict], key: str, bpp: float) -> float:
    xs = np.log([p["bpp"] for p in points])
    ys = np.array([p[key] for p in points])
    if not points or math.log(bpp) < xs[0] - 0.03 or math.log(bpp) > xs[-1] + 0.03:
        return math.nan  # within 3% of an end counts as that end (the rate search's tolerance)
    return float(np.interp(math.log(bpp), xs, ys))


def _bpp_at(points: list[dict], key: str, target: float) -> float:
    """Lowest bpp where the (upper envelope of the) curve reaches ``target``; nan if never,
    ``< lowest`` coded when already above it at the lowest rate (returned negative)."""
    pts = [p for p in points if math.isfinite(p[key])]
    if not pts:
        return math.nan
    if pts[0][key] >= target:
        return -pts[0]["bpp"]
    for a, b in itertools.pairwise(pts):
        if a[key] < target <= b[key]:
            t = (target - a[key]) / (b[key] - a[key])
            return float(math.exp(math.log(a["bpp"]) + t * (math.log(b["bpp"]) -
                                                            math.log(a["bpp"]))))
    return math.nan


def operating_point(table: dict[str, dict]) -> list[dict]:
    out = []
    for codec, c in sorted(table.items()):
        pts = c["points"]
        if len(pts) < 2:
            continue
        entry: dict = {"codec": codec, "images": c["images"]}
        for key in (*PSNRS, *SSIMS):
            entry[f"{key}@2.91"] = _interp_at_bpp(pts, key, PAPER["bpp"])
        for key in PSNRS:
            entry[f"bpp@{key}=40.43"] = _bpp_at(pts, key, PAPER["psnr"])
        for key in SSIMS:
            entry[f"bpp@{key}=0.9715"] = _bpp_at(pts, key, PAPER["ssim"])
        entry["enc_ms@2.91"] = _interp_at_bpp(pts, "enc_ms", PAPER["bpp"])
        entry["dec_ms@2.91"] = _interp_at_bpp(pts, "dec_ms", PAPER["bpp"])
        out.append(entry)
    return out


def _bpp_text(v: float) -> str:
    if not math.isfinite(v):
        return "not reached"
    return f"< {-v:.3f} (lowest coded)" if v < 0 else f"{v:.3f}"


def operating_markdown(points: list[dict], title: str) -> str:
    lines = [f"Operating point, {title}: interpolated in log bpp on each codec's mean curve "
             "(- where the codec's curve does not reach 2.91 bpp).", "",
             "| codec | images | PSNR @2.91 | psnr_soft8 @2.91 | psnr_lung8 @2.91 | SSIM @2.91 | "
             "ssim_soft8 @2.91 | enc / dec ms @2.91 |", "|---|---|---|---|---|---|---|---|",
             f"| paper (Dai 2025) | ? | {PAPER['psnr']} (undefined PSNR) | | | {PAPER['ssim']} |"
             f" | {PAPER['ms']} (undefined) |"]
    for p in points:
        def v(key: str, digits: int, p: dict = p) -> str:
            return f"{p[key]:.{digits}f}" if math.isfinite(p[key]) else "-"

        lines.append(
            f"| {p['codec']} | {p['images']} | {v('psnr@2.91', 2)} | {v('psnr_soft8@2.91', 2)} "
            f"| {v('psnr_lung8@2.91', 2)} | {v('ssim@2.91', 4)} | {v('ssim_soft8@2.91', 4)} "
            f"| {v('enc_ms@2.91', 0)} / {v('dec_ms@2.91', 0)} |")
    lines += ["", "bpp at which each codec reaches the paper's quality:", "",
              "| codec | psnr = 40.43 | psnr_soft8 = 40.43 | psnr_lung8 = 40.43 | ssim = 0.9715 | "
              "ssim_soft8 = 0.9715 |", "|---|---|---|---|---|---|",
              "| paper (Dai 2025) | 2.91 | | | 2.91 | |"]
    for p in points:
        lines.append("| " + " | ".join([p["codec"]] + [
            _bpp_text(p[k]) for k in ("bpp@psnr=40.43", "bpp@psnr_soft8=40.43",
                                      "bpp@psnr_lung8=40.43", "bpp@ssim=0.9715",
                                      "bpp@ssim_soft8=0.9715")]) + " |")
    return "\n".join(lines) + "\n"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_rd(table: dict[str, dict], key: str, path: Path, title: str) -> None:
    plt = _plt()
    total = max((c["images"] for c in table.values()), default=0)
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for codec, c in sorted(table.items()):
        pts = [p for p in c["points"] if math.isfinite(p[key])]
        if not pts:
            continue
        label = codec if c["images"] == total else f"{codec} ({c['images']} img)"
        style = "-" if codec in ("medcodec", "jpeg2000") else "--"
        ax.plot([p["bpp"] for p in pts], [p[key] for p in pts], style, marker="o", ms=3,
                label=label, lw=2 if codec == "medcodec" else 1)
    ax.set_xscale("log")
    from matplotlib.ticker import NullFormatter

    ticks = [t for t in (0.03, 0.06, 0.12, 0.25, 0.5, 1, 2, 3)
             if any(p["bpp"] <= t * 1.5 for c in table.values() for p in c["points"])]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set(xlabel="bits per pixel (log)", ylabel=key, title=title)
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def plot_lossless(rows: Sequence[dict[str, str]], path: Path, title: str) -> dict:
    data: dict[str, dict[str, list[float]]] = collections.defaultdict(
        lambda: collections.defaultdict(list))
    for r in rows:
        if r["mode"] in ("lossless", "near-lossless"):
            data[r["setting"]][r["codec"]].append(_f(r["bpp"]))
    settings = sorted(data, key=lambda s: (s != "lossless", s))
    codecs = sorted({c for s in data.values() for c in s})
    means = {s: {c: float(np.mean(v)) for c, v in data[s].items()} for s in settings}
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    width = 0.8 / max(len(codecs), 1)
    for k, codec in enumerate(codecs):
        xs = [i + k * width for i, s in enumerate(settings) if codec in means[s]]
        ys = [means[s][codec] for s in settings if codec in means[s]]
        ax.bar(xs, ys, width, label=codec)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(settings))], settings)
    ax.set(ylabel="mean bpp", title=title)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)
    return means


def timing(rows: Sequence[dict[str, str]], table: dict[str, dict]) -> list[dict]:
    out = []
    for codec in sorted({r["codec"] for r in rows}):
        entry = {"codec": codec}
        ll = [r for r in rows if r["codec"] == codec and r["mode"] == "lossless"]
        if ll:
            entry["lossless_enc"] = float(np.median([_f(r["enc_ms"]) for r in ll]))
            entry["lossless_dec"] = float(np.median([_f(r["dec_ms"]) for r in ll]))
        pts = table.get(codec, {}).get("points", [])
        if pts:
            near = min(pts, key=lambda p: abs(math.log(p["bpp"] / 1.0)))
            entry["lossy_bpp"] = near["bpp"]
            entry["lossy_enc"] = near["enc_ms"]
            entry["lossy_dec"] = near["dec_ms"]
        out.append(entry)
    return out


def timing_markdown(entries: list[dict]) -> str:
    lines = ["| codec | lossless enc ms | lossless dec ms | lossy point bpp | lossy enc ms | "
             "lossy dec ms |", "|---|---|---|---|---|---|"]
    for e in entries:
        def g(k: str, fmt: str = "{:.0f}", e: dict = e) -> str:
            return fmt.format(e[k]) if k in e and math.isfinite(e[k]) else "-"
        lines.append(f"| {e['codec']} | {g('lossless_enc')} | {g('lossless_dec')} | "
                     f"{g('lossy_bpp', '{:.2f}')} | {g('lossy_enc')} | {g('lossy_dec')} |")
    return "\n".join(lines) + "\n"


def plot_timing(entries: list[dict], path: Path, title: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    names = [e["codec"] for e in entries]
    keys = [("lossless_enc", "lossless enc"), ("lossless_dec", "lossless dec"),
            ("lossy_enc", "lossy enc (~1 bpp)"), ("lossy_dec", "lossy dec (~1 bpp)")]
    width = 0.2
    for k, (key, label) in enumerate(keys):
        ax.bar([i + k * width for i in range(len(names))],
               [e.get(key, math.nan) for e in entries], width, label=label)
    ax.set_yscale("log")
    ax.set_xticks([i + 0.3 for i in range(len(names))], names, rotation=30, fontsize=7)
    ax.set(ylabel="ms per slice (median)", title=title)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def bd_markdown(results: Path, codecs: Sequence[str]) -> str:
    lines = ["| codec | anchor | BD-rate psnr | interval dB | BD-rate psnr_soft8 | images |",
             "|---|---|---|---|---|---|"]
    rows = load(results)
    table = curves(rows)
    for anchor in ("jpeg2000", "medcodec"):
        try:
            res = compare(str(results), anchor)
        except KeyError:
            continue
        by = {(r["metric"], r["against"]): r for r in res}
        for codec in codecs:
            if codec == anchor or anchor not in table:
                continue
            if ("psnr", codec) not in by:  # e.g. a ladder that collapsed to one useful point
                best = max(table[codec]["points"], key=lambda p: p["psnr"])
                mine = {r["image"] for r in rows if r["codec"] == codec}
                same = curves([r for r in rows if r["image"] in mine]).get(anchor)
                ref = [p for p in (same or {"points": []})["points"]
                       if math.isfinite(p["psnr"])]
                need = _bpp_at(ref, "psnr", best["psnr"])
                if need > 0:
                    lines.append(f"| {codec} | {anchor} | no BD-rate (one useful point): "
                                 f"{best['bpp']:.3f} bpp for {best['psnr']:.2f} dB, the anchor "
                                 f"needs {need:.3f} ({100 * (best['bpp'] / need - 1):+.0f}%) | "
                                 f"- | - | {table[codec]['images']} |")
                continue
            p, s = by[("psnr", codec)], by.get(("psnr_soft8", codec))
            # compare() gives anchor-vs-codec; the codec against the anchor is the inverse
            inv = 100 * (1 / (1 + p["bd_rate_percent"] / 100) - 1)
            inv_s = 100 * (1 / (1 + s["bd_rate_percent"] / 100) - 1) if s else math.nan
            lines.append(f"| {codec} | {anchor} | {inv:+.1f}% | {p['interval'][0]:.1f}-"
                         f"{p['interval'][1]:.1f} | {inv_s:+.1f}% | {p['images']} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--title", default="CT")
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    rows = load(a.results)
    table = curves(rows)
    for key in ("psnr", "psnr_soft8", "ssim"):
        plot_rd(table, key, a.out / f"rd_{key}.png", f"{a.title}: {key} vs bpp")
    means = plot_lossless(rows, a.out / "lossless_near.png",
                          f"{a.title}: lossless and near-lossless")
    entries = timing(rows, table)
    plot_timing(entries, a.out / "timing.png", f"{a.title}: time per slice")
    points = operating_point(table)
    text = operating_markdown(points, a.title)
    (a.out / "operating_point.md").write_text(text)
    (a.out / "operating_point.json").write_text(json.dumps(points, indent=1))
    (a.out / "timing.md").write_text(timing_markdown(entries))
    lossless_lines = ["| setting | " + " | ".join(sorted({c for m in means.values() for c in m}))
                      + " |"]
    codecs_ll = sorted({c for m in means.values() for c in m})
    lossless_lines.append("|---" * (len(codecs_ll) + 1) + "|")
    for s, m in means.items():
        lossless_lines.append(f"| {s} | " + " | ".join(
            f"{m[c]:.3f}" if c in m else "-" for c in codecs_ll) + " |")
    (a.out / "lossless_near.md").write_text("\n".join(lossless_lines) + "\n")
    bd = bd_markdown(a.results, sorted(table))
    (a.out / "bd_rates.md").write_text(bd)
    print(text)
    print("\n".join(lossless_lines))
    print(timing_markdown(entries))
    print(bd)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
