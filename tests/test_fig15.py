"""Fig. 15 figures and the operating point from a results.csv (synthetic rows)."""

from __future__ import annotations

import csv
import math

import pytest

from medcodec.bench import fig15
from medcodec.bench.runner import COLUMNS


def _rows() -> list[dict]:
    rows = []
    for image in ("a", "b"):
        for codec, gain in (("medcodec", 2.0), ("jpeg2000", 0.0)):
            rows.append({"image": image, "codec": codec, "mode": "lossless",
                         "setting": "lossless", "bpp": 4.5 + gain / 10, "enc_ms": 100,
                         "dec_ms": 50})
            for bpp in (0.25, 0.5, 1.0, 2.0, 4.0):
                q = 50 + 6 * math.log2(bpp) + gain
                rows.append({"image": image, "codec": codec, "mode": "lossy",
                             "setting": f"bpp={bpp:g}", "bpp": bpp, "psnr": q,
                             "psnr_soft8": q - 20, "psnr_lung8": q - 15,
                             "ssim": 1 - 0.1 / (1 + bpp), "ssim_soft8": 1 - 0.2 / (1 + bpp),
                             "enc_ms": 200, "dec_ms": 100})
    return rows


def test_figures_and_operating_point(tmp_path) -> None:
    path = tmp_path / "results.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(_rows())
    assert fig15.main([str(path), "--out", str(tmp_path / "f")]) == 0
    for name in ("rd_psnr.png", "rd_psnr_soft8.png", "rd_ssim.png", "lossless_near.png",
                 "timing.png", "operating_point.md", "bd_rates.md"):
        assert (tmp_path / "f" / name).stat().st_size > 0, name
    points = {p["codec"]: p for p in fig15.operating_point(fig15.curves(fig15.load(path)))}
    m = points["medcodec"]
    assert m["psnr@2.91"] == pytest.approx(52 + 6 * math.log2(2.91), abs=1e-9)
    # psnr_soft8 = 32 + 6 log2(bpp) reaches 40.43 at 2**(8.43 / 6)
    assert m["bpp@psnr_soft8=40.43"] == pytest.approx(2 ** (8.43 / 6), rel=1e-9)
    assert m["bpp@psnr=40.43"] == pytest.approx(2 ** ((40.43 - 52) / 6), rel=1e-9)
    assert fig15._bpp_at([{"bpp": 0.5, "psnr": 41.0}, {"bpp": 1.0, "psnr": 45.0}], "psnr",
                         40.43) == -0.5  # already above at the lowest rate coded
    assert math.isnan(points["jpeg2000"]["bpp@ssim=0.9715"]) is False
    bd = (tmp_path / "f" / "bd_rates.md").read_text()
    assert "| jpeg2000 | medcodec |" in bd and "| medcodec | jpeg2000 |" in bd
