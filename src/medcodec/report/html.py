"""The page: one HTML file with its style, script, data and plots inline.

Tables are written here (they read without JavaScript); the viewer is drawn by ``report.js``
from the JSON data block. The Content-Security-Policy forbids every fetch, so the page cannot
reach the network even by mistake.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
import tempfile
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from medcodec._version import __version__
from medcodec.bench import report as bench_report
from medcodec.errors import InputError
from medcodec.report import pack
from medcodec.report.build import CT_PRESETS, Report, mean

ERROR_COLORMAP = "berlin"  # diverging, dark centre: zero error is near black


def _asset(name: str) -> str:
    return resources.files("medcodec.report").joinpath(name).read_text(encoding="utf-8")


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or value == "":
        return "-"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return _esc(value)
    if math.isinf(number):
        return "&infin;"
    if math.isnan(number):
        return "-"
    return f"{number:.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _png_tag(data: bytes, alt: str, caption: bool = True) -> str:
    text = f"<figcaption>{_esc(alt)}</figcaption>" if caption else ""
    return (f'<figure><img alt="{_esc(alt)}" src="data:image/png;base64,'
            f'{base64.b64encode(data).decode("ascii")}">{text}</figure>')


def _page(title: str, facts: str, viewer: str, sections: str, data: dict[str, Any],
          command: str) -> str:
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False)
    payload = payload.replace("</", "<\\/")  # no "</script>" inside the data block
    out = _asset("template.html")
    for key, value in (("TITLE", _esc(title)), ("FACTS", facts), ("VIEWER", viewer),
                       ("SECTIONS", sections), ("COMMAND", _esc(command)),
                       ("VERSION", _esc(__version__)), ("STYLE", _asset("report.css")),
                       ("SCRIPT", _asset("report.js")), ("DATA", payload)):
        out = out.replace(f"@@{key}@@", value)
    return out


# --------------------------------------------------------------------------------------------
# image reports


def _error_lut() -> list[int]:
    """256 RGB entries; entry 128 is zero error, 1 and 255 the ends of the scale."""
    import matplotlib

    cmap = matplotlib.colormaps[ERROR_COLORMAP]
    out: list[int] = []
    for i in range(256):
        t = (max(i, 1) - 128) / 127.0
        r, g, b, _ = cmap(0.5 + 0.5 * t)
        out += [round(255 * r), round(255 * g), round(255 * b)]
    return out


def _presets(report: Report) -> tuple[list[dict[str, Any]], int]:
    physical = report.original.astype(np.float64) * report.slope + report.intercept
    lo, hi = float(physical.min()), float(physical.max())
    full = {"name": "Full range", "width": max(hi - lo, 1.0), "level": (hi + lo) / 2}
    if report.is_ct:
        presets = [{"name": n, "width": w, "level": c} for n, w, c in CT_PRESETS]
        return [*presets, full], 1  # mediastinum / soft tissue first
    p1, p99 = (float(v) for v in np.percentile(physical, [1, 99]))
    auto = {"name": "Auto 1-99%", "width": max(p99 - p1, 1.0), "level": (p99 + p1) / 2}
    return [auto, full], 0


def _version_stats(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    def num(value: Any) -> float | None:
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None
        return number if math.isfinite(number) else None

    return [{"bytes": int(r["bytes"]), "bpp": num(r["bpp"]), "psnr": num(r["psnr"]),
             "psnrSoft": num(r["psnr_soft8"]), "maxAbs": int(r["max_abs_err"])} for r in rows]


def image_data(report: Report,
               progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """The JSON block the page's script reads: geometry, windows, and every slice packed."""
    presets, initial = _presets(report)
    original = []
    for values in report.original:
        original.append(pack.pack(values))
        if progress:
            progress(1)
    versions = []
    for version in report.versions:
        data = []
        for values, reference in zip(version.decoded, report.original, strict=True):
            data.append(pack.pack(values, reference))
            if progress:
                progress(1)
        versions.append({
            "label": version.label, "codec": version.task.codec,
            "mode": version.task.mode.value, "setting": version.task.setting,
            "maxAbs": int(np.abs(version.decoded - report.original).max()),
            "stats": _version_stats(version.rows), "data": data,
        })
    low = min(int(report.original.min()), *(int(v.decoded.min()) for v in report.versions))
    high = max(int(report.original.max()), *(int(v.decoded.max()) for v in report.versions))
    return {
        "kind": "image", "name": report.name, "rows": int(report.original.shape[1]),
        "cols": int(report.original.shape[2]), "slope": report.slope,
        "intercept": report.intercept, "unit": "HU" if report.is_ct else "",
        "photometric": report.photometric, "slices": report.source_slices,
        "nSource": report.n_source_slices, "range": [low, high], "presets": presets,
        "initial": initial, "errorLut": _error_lut(), "original": original,
        "versions": versions,
    }


def _knob_range(rows: Sequence[dict[str, Any]], codec: str) -> str:
    values = [float(r["knob"]) for r in rows if r.get("knob") not in (None, "")]
    if not values:
        return "-"
    from medcodec import codecs

    knob = codecs.get(codec).knob
    name = knob.name if knob else "knob"
    lo, hi = min(values), max(values)
    return f"{name} {lo:.4g}" if lo == hi else f"{name} {lo:.4g}-{hi:.4g}"


def _measurements(report: Report) -> str:
    header = ["version", "setting found", "bytes", "bpp", "ratio16", "PSNR dB",
              "PSNR soft tissue dB", "SSIM", "max |err|", "enc ms", "dec ms"]
    rows = []
    for version in report.versions:
        members = version.rows
        bpp = mean([r["bpp"] for r in members])
        lossless = version.task.mode.value == "lossless"
        psnr = "&infin;" if lossless else _fmt(mean([r["psnr"] for r in members]))
        soft = ("&infin;" if lossless else _fmt(mean([r["psnr_soft8"] for r in members]))) \
            if report.is_ct else "-"
        ssim = "1" if lossless else _fmt(mean([r["ssim"] for r in members]), 4)
        rows.append([
            _esc(version.label), _esc(_knob_range(members, version.task.codec)),
            str(sum(int(r["bytes"]) for r in members)), _fmt(bpp, 3),
            _fmt(16 / bpp if bpp else None), psnr, soft, ssim,
            str(max(int(r["max_abs_err"]) for r in members)),
            _fmt(mean([r["enc_ms"] for r in members]), 1),
            _fmt(mean([r["dec_ms"] for r in members]), 1),
        ])
    n = len(report.source_slices)
    return (
        f"<h2>Measurements</h2><p>Over the {n} slice{'s' if n > 1 else ''} shown, each coded "
        "as one 2-D image the way <code>medcodec bench</code> does (BENCHMARK.md): bytes summed; "
        "bpp, PSNR (peak 2<sup>B</sup>-1 at the effective bit depth B), soft-tissue PSNR "
        "(HU window W400/L40 rendered to 8 bits, CT only), SSIM and times per slice averaged; "
        f"max |err| in stored units over all slices. Times: median of {report.repeat} "
        "run(s) after a warm-up, milliseconds per slice; a target bpp is met by searching the "
        "codec's knob per slice (\"setting found\").</p>"
        + _table(header, rows, "numbers")
    )


def _bookkeeping(report: Report) -> str:
    if not report.versions:
        return ""
    header = ["version"] + [f"{tag} {name}" for tag, name, _ in report.versions[0].dicom]
    rows = [[_esc(v.label)] + [_esc(value) for _, _, value in v.dicom] for v in report.versions]
    return (
        "<h2>DICOM lossy bookkeeping</h2><p>What <code>medcodec decompress</code> writes into a "
        "DICOM output of each version (first slice shown), so you see what a viewer will show. "
        "Lossless output keeps the source's elements and UIDs; any lossy step sets (0028,2110) "
        "to 01 and appends its ratio and method (the defined term, or the codec's name where "
        "DICOM has none), "
        "with a new SOP Instance UID. The ratio here is stored bytes over the coded bytes "
        "measured above; a <code>.mdcx</code> container adds its header and the DICOM headers "
        "it keeps.</p>" + _table(header, rows)
    )


def _plots(report: Report) -> str:
    summary = bench_report.summarize(report.rows)
    figures = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        jobs: list[tuple[str, str]] = [("psnr", "PSNR (peak 2^B-1) vs bpp")]
        if report.is_ct:
            jobs.append(("psnr_soft8", "PSNR, soft-tissue window W400/L40, vs bpp"))
        jobs.append(("ssim", "SSIM vs bpp"))
        curves = summary["lossy_curves"]
        if any(len(points) > 1 for points in curves.values()):
            for metric, title in jobs:
                path = folder / f"{metric}.png"
                if bench_report._plot(curves, metric, path, title):
                    figures.append(_png_tag(path.read_bytes(), title, caption=False))
        path = folder / "lossless.png"
        if len(summary["lossless"]) > 1 and bench_report._bar(summary["lossless"], path):
            figures.append(_png_tag(path.read_bytes(), "Lossless: mean bits per pixel",
                                    caption=False))
    if figures:
        return ("<h2>Rate-distortion plots</h2><p>Mean over the slices shown, one point per "
                "codec setting.</p>" + '<div class="plots">' + "".join(figures) + "</div>")
    if summary["lossy_curves"]:
        return ("<h2>Rate-distortion plots</h2><p>One target rate per codec: a curve needs "
                "at least two (e.g. <code>--bpp 0.5,1,2</code>).</p>")
    return ""


def render_image(report: Report, command: str,
                 progress: Callable[[int], None] | None = None) -> str:
    data = image_data(report, progress)
    n = len(report.source_slices)
    if n == report.n_source_slices:
        which = f"{n} slice{'s' if n > 1 else ''}"
    else:
        which = f"{n} of {report.n_source_slices} slices"
    facts = (f"<p class=\"facts\">{_esc(report.description)}; rescale slope "
             f"{report.slope:g}, intercept {report.intercept:g}; {which}.</p>")
    if report.notes:
        facts += "".join(f'<p class="note">{_esc(note)}</p>' for note in report.notes)
    sections = _measurements(report) + _bookkeeping(report) + _plots(report)
    return _page(f"medcodec report: {report.name}", facts, _asset("viewer.html"), sections,
                 data, command)


# --------------------------------------------------------------------------------------------
# bench folders


def is_bench_folder(path: Path) -> bool:
    return path.is_dir() and (path / "results.csv").is_file()


def _bench_sections(summary: dict[str, Any]) -> str:
    parts = []
    lossless = summary.get("lossless") or {}
    if lossless:
        rows = [[_esc(c), _fmt(m["bpp"], 3), _fmt(16 / m["bpp"] if m["bpp"] else None),
                 str(m["images"]), _fmt(m["enc_ms"], 1), _fmt(m["dec_ms"], 1)]
                for c, m in sorted(lossless.items(), key=lambda kv: kv[1]["bpp"])]
        parts.append("<h2>Lossless</h2>" + _table(
            ["codec", "mean bpp", "ratio16", "images", "enc ms", "dec ms"], rows, "numbers"))
    near = summary.get("near_lossless") or {}
    if near:
        rows = [[_esc(c), _esc(s), _fmt(m["bpp"], 3), str(m["max_abs_err"]), str(m["images"])]
                for c, settings in near.items() for s, m in settings.items()]
        parts.append("<h2>Near-lossless</h2>" + _table(
            ["codec", "setting", "mean bpp", "max |err|", "images"], rows, "numbers"))
    for key, metric in (("bd_rate_vs_jpeg2000", "psnr"),
                        ("bd_rate_vs_jpeg2000_psnr_soft8", "psnr_soft8")):
        entries = summary.get(key) or {}
        if not entries:
            continue
        rows = []
        for codec, entry in entries.items():
            if entry.get("bd_rate_percent") is None:
                rows.append([_esc(codec), "-", _esc(entry.get("error", "")),
                             str(entry.get("images", ""))])
            else:
                lo, hi = entry["interval"]
                rows.append([_esc(codec), f"{entry['bd_rate_percent']:+.1f}%",
                             f"{lo:.1f} - {hi:.1f}", str(entry.get("images", ""))])
        parts.append(f"<h2>Lossy: BD-rate against jpeg2000 ({metric})</h2>" + _table(
            ["codec", "BD-rate", "interval (dB)", "images"], rows, "numbers"))
    curves = summary.get("lossy_curves") or {}
    if curves:
        rows = [[_esc(codec), _esc(p.get("setting", "")), str(p.get("images", "")),
                 _fmt(p.get("bpp"), 3), _fmt(p.get("psnr")), _fmt(p.get("psnr_soft8")),
                 _fmt(p.get("ssim"), 4), _fmt(p.get("max_abs_err"), 1),
                 _fmt(p.get("enc_ms"), 1), _fmt(p.get("dec_ms"), 1)]
                for codec, points in sorted(curves.items()) for p in points]
        parts.append("<h2>Lossy curves (mean over images)</h2>" + _table(
            ["codec", "setting", "images", "bpp", "PSNR dB", "PSNR soft tissue dB", "SSIM",
             "mean max |err|", "enc ms", "dec ms"], rows, "numbers"))
    return "".join(parts)


def render_bench(folder: Path, command: str) -> str:
    """A page of what a ``medcodec bench`` run in ``folder`` measured, plots included."""
    with open(folder / "results.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"image", "codec", "mode", "setting", "bpp"} - set(reader.fieldnames or [])
        if missing:
            raise InputError(f"{folder / 'results.csv'}: not a medcodec bench results file "
                             f"(no column {sorted(missing)[0]!r})")
        rows = list(reader)
    summary_path = folder / "summary.json"
    summary: dict[str, Any] = {}
    if summary_path.is_file():
        try:
            summary = json.loads(summary_path.read_text())
        except ValueError:
            raise InputError(f"{summary_path}: not valid JSON") from None
    if not summary.get("images") and rows:  # no summary yet (interrupted run): compute it
        summary = {**bench_report.summarize(rows), **summary, "images": len(
            {r["image"] for r in rows})}
    facts = [f"{len(rows)} measurements on {summary.get('images', 0)} images"]
    if summary.get("command"):
        facts.append(f"command: <code>{_esc(summary['command'])}</code>")
    if summary.get("unavailable_codecs"):
        facts.append("codecs not available: " + _esc(", ".join(summary["unavailable_codecs"])))
    failures = folder / "failures.csv"
    if failures.is_file():
        with open(failures, newline="") as fh:
            count = sum(1 for row in csv.reader(fh) if row)
        if count:
            facts.append(f"{count} failed or skipped measurements (failures.csv)")
    notes = "".join(f'<p class="note">{_esc(n)}</p>' for n in summary.get("notes") or [])
    figures = [_png_tag(p.read_bytes(), p.stem.replace("_", " "))
               for p in sorted(folder.glob("*.png"))]
    plots = ("<h2>Plots</h2><div class=\"plots\">" + "".join(figures) + "</div>"
             if figures else "")
    viewer = ('<p class="note">A bench folder holds measurements, not pixels: run '
              "<code>medcodec report IMAGE --out DIR</code> on an image to see decoded slices "
              "beside the original.</p>")
    return _page(f"medcodec bench results: {folder.resolve().name}",
                 '<p class="facts">' + "; ".join(facts) + ".</p>" + notes, viewer,
                 _bench_sections(summary) + plots, {"kind": "bench"}, command)
