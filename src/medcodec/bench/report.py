"""Turn results.csv into summary.json, report.md and PNG plots.

Curves follow BENCHMARK.md: per codec and setting, the mean bpp and the mean metric over the
images every codec finished (so codecs are compared on the same images); BD-rates are against
``jpeg2000`` on ``psnr``, each with the PSNR interval it was computed over.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medcodec.bench import bdrate

ANCHOR = "jpeg2000"


def _num(value: str | float | None) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _images_by_codec(rows: Sequence[dict[str, str]], mode: str) -> dict[str, set[str]]:
    by_codec: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        if row["mode"] == mode:
            by_codec[row["codec"]].add(row["image"])
    return by_codec


def _common_images(rows: Sequence[dict[str, str]], mode: str,
                   codecs: Sequence[str] | None = None) -> set[str]:
    """Images that every codec (of ``codecs``, default all) has rows for in this mode.

    Codecs that could not carry some images (e.g. 13-bit CT into a 12-bit codec) would empty
    the intersection, so when no ``codecs`` are named only codecs that handled at least half of
    the images take part.
    """
    by_codec = _images_by_codec(rows, mode)
    if codecs is not None:
        sets = [by_codec.get(c, set()) for c in codecs]
    else:
        everything = set().union(*by_codec.values()) if by_codec else set()
        sets = [s for s in by_codec.values() if len(s) * 2 >= len(everything)]
    return set.intersection(*sets) if sets else set()


def curves(rows: Sequence[dict[str, str]], mode: str = "lossy",
           images: set[str] | None = None) -> dict[str, list[dict]]:
    """codec -> points sorted by bpp: mean bpp, psnr, ssim, ... over the same images."""
    if images is None:
        images = _common_images(rows, mode)
    groups: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        if row["mode"] == mode and row["image"] in images:
            groups[(row["codec"], row["setting"])].append(row)
    out: dict[str, list[dict]] = defaultdict(list)
    for (codec, setting), members in groups.items():
        point: dict[str, Any] = {"setting": setting, "images": len(members)}
        for key in ("bpp", "psnr", "psnr_lung8", "psnr_soft8", "ssim", "ssim_soft8",
                    "max_abs_err", "enc_ms", "dec_ms"):
            values = [_num(r[key]) for r in members if r.get(key) not in (None, "")]
            finite = [v for v in values if math.isfinite(v)]
            point[key] = float(np.mean(finite)) if finite else None
        out[codec].append(point)
    for points in out.values():
        points.sort(key=lambda p: p["bpp"])
    return dict(out)


def lossless_means(rows: Sequence[dict[str, str]]) -> dict[str, dict[str, float]]:
    """Mean lossless bpp per codec over the images the main codecs all handled."""
    images = _common_images(rows, "lossless")
    table: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        if row["mode"] == "lossless" and row["image"] in images:
            table[row["codec"]].append(row)
    return {
        codec: {
            "bpp": float(np.mean([_num(r["bpp"]) for r in members])),
            "images": len(members),
            "enc_ms": float(np.median([_num(r["enc_ms"]) for r in members])),
            "dec_ms": float(np.median([_num(r["dec_ms"]) for r in members])),
        }
        for codec, members in sorted(table.items())
    }


def bd_rates(rows: Sequence[dict[str, str]], anchor: str = ANCHOR,
             metric: str = "psnr") -> dict[str, dict[str, Any]]:
    """BD-rate of every codec against ``anchor`` on the images both coded, with the interval."""
    by_codec = _images_by_codec(rows, "lossy")
    if anchor not in by_codec:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for codec in sorted(by_codec):
        if codec == anchor:
            continue
        images = by_codec[codec] & by_codec[anchor]
        table = curves(rows, "lossy", images)
        ref = [(p["bpp"], p[metric]) for p in table.get(anchor, []) if p.get(metric) is not None]
        test = [(p["bpp"], p[metric]) for p in table.get(codec, []) if p.get(metric) is not None]
        try:
            value, (lo, hi) = bdrate.bd_rate([r for r, _ in test], [q for _, q in test],
                                             [r for r, _ in ref], [q for _, q in ref])
            out[codec] = {"bd_rate_percent": value, "interval": [lo, hi], "metric": metric,
                          "images": len(images)}
        except ValueError as exc:
            out[codec] = {"bd_rate_percent": None, "error": str(exc), "metric": metric,
                          "images": len(images)}
    return out


def near_lossless_table(rows: Sequence[dict[str, str]]) -> dict[str, dict[str, dict]]:
    table: dict[str, dict[str, list[dict[str, str]]]] = defaultdict(lambda: defaultdict(list))
    images = _common_images(rows, "near-lossless")
    for row in rows:
        if row["mode"] == "near-lossless" and row["image"] in images:
            table[row["codec"]][row["setting"]].append(row)
    return {
        codec: {
            setting: {"bpp": float(np.mean([_num(r["bpp"]) for r in members])),
                      "max_abs_err": int(max(_num(r["max_abs_err"]) for r in members)),
                      "images": len(members)}
            for setting, members in sorted(settings.items())
        }
        for codec, settings in sorted(table.items())
    }


def summarize(rows: Sequence[dict[str, str]]) -> dict[str, Any]:
    lossy = curves(rows, "lossy")
    return {
        "images": len({r["image"] for r in rows}),
        "lossless": lossless_means(rows),
        "near_lossless": near_lossless_table(rows),
        "lossy_curves": lossy,
        "bd_rate_vs_jpeg2000": bd_rates(rows, ANCHOR, "psnr"),
        "bd_rate_vs_jpeg2000_psnr_soft8": bd_rates(rows, ANCHOR, "psnr_soft8"),
    }


def _plot(curve_table: dict[str, list[dict]], metric: str, path: Path, title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 5))
    drawn = False
    for codec, points in sorted(curve_table.items()):
        xs = [p["bpp"] for p in points if p.get(metric) is not None]
        ys = [p[metric] for p in points if p.get(metric) is not None]
        if xs:
            ax.plot(xs, ys, marker="o", label=codec)
            drawn = True
    ax.set_xlabel("bits per pixel")
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if drawn:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return drawn


def _bar(means: dict[str, dict[str, float]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    if not means:
        return False
    names = sorted(means, key=lambda c: means[c]["bpp"])
    fig, ax = plt.subplots(figsize=(7, 4))
    bars = ax.bar(names, [means[c]["bpp"] for c in names], color="tab:blue")
    ax.bar_label(bars, fmt="%.2f")
    ax.set_ylabel("mean bpp (lossless)")
    ax.set_title("Lossless: mean bits per pixel (lower is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(summary: dict[str, Any], command: str, plots: dict[str, str],
             failures: int, unavailable: Sequence[str], wall_s: float | None,
             notes: Sequence[str] = ()) -> str:
    lines = ["# medcodec benchmark", "", f"Command: `{command}`", "",
             f"Images: {summary['images']}" + (f"; wall time {wall_s:.0f} s" if wall_s else ""),
             ""]
    if unavailable:
        lines += [f"Codecs not available on this install: {', '.join(unavailable)}", ""]
    if failures:
        lines += [f"Failures: {failures} (see failures.csv)", ""]
    for note in notes:
        lines += [f"Note: {note}", ""]
    if summary["lossless"]:
        lines += ["## Lossless", "", "| codec | mean bpp | ratio16 | images | enc ms | dec ms |",
                  "|---|---|---|---|---|---|"]
        for codec, m in sorted(summary["lossless"].items(), key=lambda kv: kv[1]["bpp"]):
            lines.append(f"| {codec} | {m['bpp']:.3f} | {16 / m['bpp']:.2f} | {m['images']} | "
                         f"{m['enc_ms']:.1f} | {m['dec_ms']:.1f} |")
        lines.append("")
        if "lossless" in plots:
            lines += [f"![lossless]({plots['lossless']})", ""]
    if summary["near_lossless"]:
        lines += ["## Near-lossless", "", "| codec | setting | mean bpp | max error | images |",
                  "|---|---|---|---|---|"]
        for codec, settings in summary["near_lossless"].items():
            for setting, m in settings.items():
                lines.append(f"| {codec} | {setting} | {m['bpp']:.3f} | {m['max_abs_err']} | "
                             f"{m['images']} |")
        lines.append("")
    if summary["lossy_curves"]:
        lines += ["## Lossy: BD-rate against jpeg2000 (psnr)", "",
                  "| codec | BD-rate | PSNR interval (dB) | images |", "|---|---|---|---|"]
        for codec, entry in summary["bd_rate_vs_jpeg2000"].items():
            if entry.get("bd_rate_percent") is None:
                lines.append(f"| {codec} | - | {entry.get('error', '')} | {entry['images']} |")
            else:
                lo, hi = entry["interval"]
                lines.append(f"| {codec} | {entry['bd_rate_percent']:+.1f}% | {lo:.1f} - {hi:.1f} "
                             f"| {entry['images']} |")
        lines += ["", "### Curves (mean over images)", "",
                  "| codec | setting | bpp | psnr | psnr_soft8 | ssim |",
                  "|---|---|---|---|---|---|"]
        for codec, points in sorted(summary["lossy_curves"].items()):
            for p in points:
                lines.append(f"| {codec} | {p['setting']} | {_fmt(p['bpp'])} | "
                             f"{_fmt(p['psnr'], 2)} | {_fmt(p['psnr_soft8'], 2)} | "
                             f"{_fmt(p['ssim'], 4)} |")
        lines.append("")
        for key in ("psnr", "ssim"):
            if key in plots:
                lines += [f"![{key}]({plots[key]})", ""]
    return "\n".join(lines) + "\n"


def write_report(rows: Sequence[dict[str, str]], out_dir: Path, command: str, failures: int,
                 unavailable: Sequence[str] = (), wall_s: float | None = None,
                 notes: Sequence[str] = ()) -> dict[str, Any]:
    summary = summarize(rows)
    summary["command"] = command
    summary["unavailable_codecs"] = list(unavailable)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    plots: dict[str, str] = {}
    if summary["lossy_curves"]:
        if _plot(summary["lossy_curves"], "psnr", out_dir / "psnr_vs_bpp.png",
                 "PSNR (peak 2^B-1) vs bpp"):
            plots["psnr"] = "psnr_vs_bpp.png"
        if _plot(summary["lossy_curves"], "ssim", out_dir / "ssim_vs_bpp.png", "SSIM vs bpp"):
            plots["ssim"] = "ssim_vs_bpp.png"
    if _bar(summary["lossless"], out_dir / "lossless_bpp.png"):
        plots["lossless"] = "lossless_bpp.png"
    summary["notes"] = list(notes)
    (out_dir / "report.md").write_text(markdown(summary, command, plots, failures, unavailable,
                                                wall_s, notes))
    return summary
