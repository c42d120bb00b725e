"""LIDC-IDRI-0314 laid out as TCIA, LUNA16 and MosMed ship it: the adapters and the bench read
each as downloaded (small versions, built in a temporary folder)."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from medcodec.bench import datasets
from medcodec.bench.layouts import build

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    from tests.conftest import SHARED_DATA

    src = SHARED_DATA / "LIDC-IDRI-0314"
    if not src.is_dir():
        pytest.skip("../shared/data/LIDC-IDRI-0314 is not available")
    return build(src, tmp_path_factory.mktemp("layouts"), stride=43)  # 3 of its 128 slices


def test_each_layout_is_detected_and_read(layouts) -> None:
    assert datasets.detect_collection(layouts["tcia"]) == "lidc"
    assert datasets.detect_collection(layouts["luna16"]) == "luna16"
    assert datasets.detect_collection(layouts["mosmed"]) == "mosmed"
    [lidc] = datasets.discover([layouts["tcia"]])
    [luna] = datasets.discover([layouts["luna16"]])
    [mosmed] = datasets.discover([layouts["mosmed"]])
    assert (lidc.collection, lidc.patient) == ("LIDC-IDRI", "LIDC-IDRI-0314")
    assert luna.collection == "LUNA16" and len(luna.annotations) == 1
    assert mosmed.id == "MosMed:CT-0/study_0001"
    a, b, c = lidc.load(), luna.load(), mosmed.load()
    assert a.pixels.shape == b.pixels.shape == c.pixels.shape == (3, 512, 512)
    assert a.modality == b.modality == c.modality == "CT"
    hu = np.round(a.pixels * a.rescale_slope + a.rescale_intercept).astype(np.int64)
    np.testing.assert_array_equal(b.pixels, hu)  # same Hounsfield units in every layout
    np.testing.assert_array_equal(c.pixels, hu)


def test_luna16_patient_comes_from_the_lidc_tree(layouts) -> None:
    found = datasets.discover([layouts["tcia"], layouts["luna16"]])
    assert {v.collection: v.patient for v in found} == {"LIDC-IDRI": "LIDC-IDRI-0314",
                                                        "LUNA16": "LIDC-IDRI-0314"}
    [group] = [g for g in datasets.split_by_patient(found) if g]
    assert len(group) == 2  # one patient never lands on both sides of a split


@pytest.mark.parametrize("layout", ["tcia", "luna16", "mosmed"])
def test_bench_reads_the_layout(layouts, layout, tmp_path) -> None:
    from medcodec.cli import main

    out = tmp_path / "bench"
    rc = main(["bench", str(layouts[layout]), "--out", str(out), "--codecs", "jpegls",
               "--mode", "all", "--max-error", "2", "--workers", "1", "--repeat", "1",
               "--limit", "2", "--quiet"])
    assert rc == 0
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["mode"] for r in rows} == {"lossless", "near-lossless"}
    assert len({r["image"] for r in rows}) == 2
    assert all(r["modality"] == "CT" for r in rows)
    near = [r for r in rows if r["mode"] == "near-lossless"]
    assert all(int(r["max_abs_err"]) <= 2 and r["psnr_soft8"] for r in near)
