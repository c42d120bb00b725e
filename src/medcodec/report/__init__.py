"""``medcodec report``: a self-contained HTML page of what compression did to an image.

The page (``DIR/index.html``, one file: no server, no network) shows the original and every
decoded version side by side, one slice at a time, windowed in the browser from the embedded
stored values (CT presets in HU, free window/level by dragging), signed error maps, the
measurements of each codec setting, the RD plots and the DICOM lossy bookkeeping. Given a
``medcodec bench`` output folder it shows what that run measured. See docs/REPORT.md.

Python use::

    from medcodec.bench.runner import plan_tasks
    from medcodec.report import build, write_html, render_image

    report = build(medcodec.read("series/"), plan_tasks(["jpeg2000"], "lossy", [], [1.0]))
    write_html(render_image(report, command="..."), "out/", force=False)
"""

from __future__ import annotations

import os
from pathlib import Path

from medcodec._fs import atomic_path, check_writable
from medcodec.errors import OutputError
from medcodec.report.build import CT_PRESETS, Report, Version, build, choose_slices, read_one
from medcodec.report.html import is_bench_folder, render_bench, render_image

__all__ = [
    "CT_PRESETS",
    "Report",
    "Version",
    "build",
    "check_output",
    "choose_slices",
    "is_bench_folder",
    "read_one",
    "render_bench",
    "render_image",
    "write_html",
]


def check_output(out_dir: str | os.PathLike[str], force: bool = False) -> Path:
    """``out_dir/index.html``, refused early when it exists (without ``force``) or cannot be."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir}: exists and is not a folder")
    target = out_dir / "index.html"
    if target.exists() and not force:
        raise OutputError(f"{target}: output exists (use --force to overwrite)")
    if not out_dir.exists() and not (out_dir.parent if str(out_dir.parent) else Path(".")
                                     ).is_dir():
        raise OutputError(f"{out_dir}: folder {out_dir.parent} does not exist")
    return target


def write_html(page: str, out_dir: str | os.PathLike[str], force: bool = False) -> Path:
    """Write ``page`` to ``out_dir/index.html`` atomically (the folder is made if needed)."""
    target = check_output(out_dir, force)
    target.parent.mkdir(exist_ok=True)
    check_writable(target, force)
    with atomic_path(target, force) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return target
