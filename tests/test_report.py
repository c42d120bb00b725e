"""``medcodec report``: the page's data, the command line, and the page in a real browser.

The browser tests open the generated file in headless Chromium through Selenium and read pixels
back from the canvases, comparing them with what Python computes from the arrays and the window
(``medcodec.bench.metrics.render_window``). They skip when Chromium, its driver or Selenium is
missing; CI installs the packages listed in .ci/apt-packages.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import medcodec
from medcodec.bench import metrics
from medcodec.bench.runner import plan_tasks
from medcodec.image import MedImage
from medcodec.report import build, pack, render_image, write_html
from medcodec.report.html import _error_lut

from .conftest import SHARED_DATA

SLOPE, INTERCEPT = 1.0, -1024.0


def ct_volume(slices: int = 3, size: int = 64) -> MedImage:
    """A small CT-like int16 volume (stored = HU + 1024): air, a body with soft tissue, a
    lung, a bone, noise; each slice moves the structures so slices differ."""
    rng = np.random.default_rng(17)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    out = []
    for k in range(slices):
        hu = np.full((size, size), -1000.0)
        body = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.42 * size) ** 2
        hu[body] = 40 + 25 * np.sin(xx[body] / 5 + k)
        lung = (yy - size * 0.45) ** 2 + (xx - size * (0.35 + 0.05 * k)) ** 2 < (0.13 * size) ** 2
        hu[lung] = -800 + 60 * np.cos(yy[lung] / 3)
        bone = (yy - size * 0.7) ** 2 + (xx - size * 0.6) ** 2 < (0.07 * size) ** 2
        hu[bone] = 700 + 40 * k
        hu += rng.normal(0, 12, hu.shape)
        out.append(np.round(hu - INTERCEPT))
    return MedImage(np.stack(out).astype(np.int16), bits_stored=16, modality="CT",
                    rescale_slope=SLOPE, rescale_intercept=INTERCEPT)


# --------------------------------------------------------------------------------------------
# packing: the page's data format


@pytest.mark.parametrize("dtype", ["int16", "uint16", "uint8", "int32"])
def test_pack_round_trip(dtype: str) -> None:
    rng = np.random.default_rng(3)
    info = np.iinfo(dtype)
    values = rng.integers(info.min, info.max, size=(9, 13), endpoint=True).astype(np.int64)
    values[0, 0], values[-1, -1] = info.min, info.max
    entry = pack.pack(values)
    assert entry["m"] == "med"
    np.testing.assert_array_equal(pack.unpack(entry, values.shape), values)
    near = values + rng.integers(-2, 3, size=values.shape)
    entry = pack.pack(near, values)
    assert entry["m"] == "diff" and entry["n"] == 1
    np.testing.assert_array_equal(pack.unpack(entry, values.shape, values), near)


def test_pack_lossless_version_is_tiny() -> None:
    values = ct_volume(1).pixels[0].astype(np.int64)
    assert len(pack.pack(values, values)["z"]) < 100
    bits = 6 * len(pack.pack(values)["z"]) / values.size  # base64: 6 bits a character
    assert bits < 8  # noisy 16-bit CT: about 7 bits per pixel


# --------------------------------------------------------------------------------------------
# the report built from an image


TASKS = [("jpegls", "lossless"), ("jpeg2000", "lossy"), ("jpegls", "near-lossless")]


def report_tasks():
    tasks = []
    for codec, mode in TASKS:
        tasks += plan_tasks([codec], mode, [3], [1.0, 2.0])
    return tasks


@pytest.fixture(scope="module")
def ct_report(tmp_path_factory: pytest.TempPathFactory):
    report = build(ct_volume(), report_tasks(), name="synthetic-ct")
    out = tmp_path_factory.mktemp("report")
    path = write_html(render_image(report, "medcodec report (test)"), out)
    return report, path


def test_report_rows_are_bench_rows(ct_report) -> None:
    report, _ = ct_report
    assert [v.label for v in report.versions] == ["jpegls lossless", "jpeg2000 bpp=1",
                                                  "jpeg2000 bpp=2", "jpegls D=3"]
    for version in report.versions:
        assert len(version.rows) == 3 and version.decoded.shape == (3, 64, 64)
        for row, decoded, original in zip(version.rows, version.decoded, report.original,
                                          strict=True):
            assert row["max_abs_err"] == int(np.abs(decoded - original).max())
            if version.task.mode.value == "lossy":
                assert abs(row["bpp"] - version.task.target_bpp) < 0.3
                assert row["psnr"] == metrics.psnr(original, decoded,
                                                   metrics.effective_bits(original))
    lossless, near = report.versions[0], report.versions[-1]
    np.testing.assert_array_equal(lossless.decoded, report.original)
    assert np.abs(near.decoded - report.original).max() <= 3


def test_dicom_bookkeeping(ct_report) -> None:
    report, _ = ct_report
    tags = {v.label: {tag: value for tag, _, value in v.dicom} for v in report.versions}
    assert tags["jpegls lossless"]["(0028,2110)"] == "(absent)"
    lossy = tags["jpeg2000 bpp=2"]
    assert lossy["(0028,2110)"] == "01"
    assert 6 < float(lossy["(0028,2112)"]) < 10  # 16 bits stored / about 2 bpp
    assert lossy["(0028,2114)"] == "ISO_15444_1"
    assert tags["jpegls D=3"]["(0028,2114)"] == "ISO_14495_1"
    assert "DERIVED" in lossy["(0008,0008)"]
    assert "max error 3" in tags["jpegls D=3"]["(0008,2111)"]


def test_page_is_self_contained(ct_report) -> None:
    _, path = ct_report
    text = path.read_text()
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", text)
    assert "<script src" not in text and 'rel="stylesheet"' not in text
    for needle in ("(0028,2110)", "(0028,2112)", "(0028,2114)", "Rate-distortion plots",
                   "data:image/png;base64,", "Mediastinum", "Lung", "Bone", "Brain"):
        assert needle in text, needle


# --------------------------------------------------------------------------------------------
# command line


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "medcodec", *args], capture_output=True,
                          text=True, timeout=300)


def one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def ct_series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("series") / "ct"
    medcodec.write(ct_volume(), folder, format="dicom")
    return folder


def test_cli_writes_once_and_refuses_to_overwrite(ct_series: Path, tmp_path: Path) -> None:
    out = tmp_path / "page"
    args = ["report", str(ct_series), "--out", str(out), "--codecs", "jpeg2000,jpegls",
            "--mode", "all", "--bpp", "1,2", "--max-error", "2", "-q"]
    result = run(*args)
    assert result.returncode == 0, result.stderr
    assert "jpeg2000 bpp=1" in result.stdout and "jpegls D=2" in result.stdout
    assert [p.name for p in out.iterdir()] == ["index.html"]
    first = (out / "index.html").read_text()
    assert "jpeg2000 lossless" in first and "3 slices" in first
    one_line_error(run(*args), "index.html", "--force")
    assert (out / "index.html").read_text() == first
    result = run(*args[:-1], "--slices", "1", "--force", "-q")
    assert result.returncode == 0, result.stderr
    assert "1 of 3 slices" in (out / "index.html").read_text()
    assert [p.name for p in out.iterdir()] == ["index.html"]  # no temporary file left


def test_cli_errors_are_one_line(ct_series: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "page")
    one_line_error(run("report", str(tmp_path / "missing"), "--out", out), "no such file")
    one_line_error(run("report", str(ct_series), "--out", out, "--codecs", "nope"),
                   "unknown codec")
    one_line_error(run("report", str(ct_series), "--out", out, "--codecs", "deflate"),
                   "lossy")
    one_line_error(run("report", str(ct_series), "--out", out, "--slices", "7"), "outside")
    one_line_error(run("report", str(ct_series), "--out", out, "--bpp", "x"), "--bpp")
    two = tmp_path / "two"
    two.mkdir()
    for name in ("a.npy", "b.npy"):
        np.save(two / name, np.zeros((8, 8), np.int16))
    one_line_error(run("report", str(two), "--out", out), "several images")
    (tmp_path / "file").write_text("x")
    one_line_error(run("report", str(ct_series), "--out", str(tmp_path / "file")),
                   "not a folder")
    assert not (tmp_path / "page").exists()


@pytest.fixture(scope="module")
def bench_page(ct_series: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from medcodec.cli import main

    out = tmp_path_factory.mktemp("bench") / "run"
    assert main(["bench", str(ct_series), "--out", str(out), "--codecs", "jpegls,jpeg2000,htj2k",
                 "--bpp", "1,2", "--max-error", "2", "--workers", "1", "--repeat", "1",
                 "-q"]) == 0
    result = run("report", str(out), "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out / "index.html"


def test_bench_folder_page(bench_page: Path) -> None:
    text = bench_page.read_text()
    summary = json.loads((bench_page.parent / "summary.json").read_text())
    assert f"on {summary['images']} images" in text
    for needle in ("Lossless", "Near-lossless", "BD-rate", "Lossy curves", "psnr vs bpp",
                   "data:image/png;base64,", "medcodec bench"):
        assert needle in text, needle


# --------------------------------------------------------------------------------------------
# in a real browser


def _browser_paths() -> tuple[str, str] | None:
    binary = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                   if shutil.which(n)), None)
    driver = shutil.which("chromedriver")
    return (binary, driver) if binary and driver else None


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver",
                                    reason="selenium is not installed (test extra)")
    paths = _browser_paths()
    if paths is None:
        pytest.skip("Chromium and its driver are not installed "
                    "(apt-get install chromium chromium-driver; see .ci/apt-packages)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(paths[1]), options=options)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


def open_page(driver, path: Path) -> None:
    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(path.resolve().as_uri())
    outcome = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "window.medcodecReport.ready.then(() => done('ok'), (e) => done(String(e)));")
    assert outcome == "ok"


def console_errors(driver) -> list[dict]:
    return [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def next_frame(driver) -> None:
    driver.execute_async_script(
        "const done = arguments[0];"
        "requestAnimationFrame(() => requestAnimationFrame(() => done()));")


def canvas_samples(driver, canvas_id: str, points: list[tuple[int, int]]) -> np.ndarray:
    """RGBA at the centre of each image pixel (x, y) as the canvas shows it."""
    return np.array(driver.execute_script(
        "const [id, pts] = arguments; const R = window.medcodecReport;"
        "const ctx = document.getElementById(id).getContext('2d');"
        "return pts.map(([x, y]) => { const [px, py] = R.canvasPoint(x, y);"
        "  return Array.from(ctx.getImageData(px, py, 1, 1).data); });", canvas_id, points))


def sample_points(n: int = 60) -> list[tuple[int, int]]:
    rng = np.random.default_rng(5)
    points = [(0, 0), (63, 0), (0, 63), (63, 63), (32, 32)]
    return points + [tuple(int(v) for v in p) for p in rng.integers(0, 64, size=(n, 2))]


def expected_gray(values: np.ndarray, points, width: float, level: float) -> np.ndarray:
    shown = metrics.render_window(values, level, width, SLOPE, INTERCEPT)
    return np.array([shown[y, x] for x, y in points])


def state(driver) -> dict:
    return driver.execute_script("return window.medcodecReport.state();")


def check_panels(driver, report, slice_index: int, points) -> None:
    """Every image panel shows its slice through the current window, pixel for pixel."""
    now = state(driver)
    panels = [("image-original", report.original[slice_index])] + [
        (f"image-{k}", v.decoded[slice_index]) for k, v in enumerate(report.versions)]
    for canvas_id, values in panels:
        got = canvas_samples(driver, canvas_id, points)
        want = expected_gray(values, points, now["width"], now["level"])
        np.testing.assert_array_equal(got[:, 0], want, err_msg=canvas_id)
        np.testing.assert_array_equal(got[:, 1], got[:, 0])
        np.testing.assert_array_equal(got[:, 3], 255)


def test_page_loads_without_console_errors(browser, ct_report) -> None:
    _, path = ct_report
    open_page(browser, path)
    assert console_errors(browser) == []
    assert browser.execute_script(
        "return performance.getEntriesByType('resource').length") == 0  # nothing fetched
    assert browser.execute_script("return window.medcodecReport.panelIds()") == [
        "image-original", "image-0", "error-0", "image-1", "error-1", "image-2", "error-2",
        "image-3", "error-3"]


def test_decoded_values_in_the_page_are_exact(browser, ct_report) -> None:
    report, path = ct_report
    open_page(browser, path)
    for s in range(3):
        values = browser.execute_async_script(
            "const [s, done] = arguments; window.medcodecReport.values(s).then(done);", s)
        np.testing.assert_array_equal(np.array(values["original"]).reshape(64, 64),
                                      report.original[s])
        for k, version in enumerate(report.versions):
            np.testing.assert_array_equal(np.array(values["versions"][k]).reshape(64, 64),
                                          version.decoded[s])


@pytest.mark.parametrize("preset, width, level", [("Mediastinum", 350, 40),
                                                  ("Lung", 1500, -600), ("Bone", 2000, 300),
                                                  ("Brain", 80, 40)])
def test_panels_show_the_window(browser, ct_report, preset: str, width: float,
                                level: float) -> None:
    from selenium.webdriver.common.by import By

    report, path = ct_report
    open_page(browser, path)
    button = browser.find_element(By.XPATH, f"//*[@id='presets']/button[.='{preset}']")
    button.click()
    now = state(browser)
    assert (now["width"], now["level"]) == (width, level)
    check_panels(browser, report, 0, sample_points())
    assert console_errors(browser) == []


def test_slice_slider_changes_the_slice(browser, ct_report) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    report, path = ct_report
    open_page(browser, path)
    points = sample_points()
    before = canvas_samples(browser, "image-original", points)
    slider = browser.find_element(By.ID, "slice")
    slider.send_keys(Keys.ARROW_RIGHT)
    browser.execute_async_script(  # the slice is decoded asynchronously
        "const done = arguments[0]; const wait = () => window.medcodecReport.state().slice"
        " === 1 ? done() : setTimeout(wait, 20); wait();")
    next_frame(browser)
    assert "2 / 3" in browser.find_element(By.ID, "slice-label").text
    check_panels(browser, report, 1, points)
    assert not np.array_equal(canvas_samples(browser, "image-original", points), before)
    slider.send_keys(Keys.END)
    browser.execute_async_script(
        "const done = arguments[0]; const wait = () => window.medcodecReport.state().slice"
        " === 2 ? done() : setTimeout(wait, 20); wait();")
    check_panels(browser, report, 2, points)


def test_error_maps(browser, ct_report) -> None:
    report, path = ct_report
    open_page(browser, path)
    lut = np.array(_error_lut()).reshape(256, 3)
    assert browser.execute_script("return window.medcodecReport.errorMax();") == [
        int(np.abs(v.decoded[0] - report.original[0]).max()) for v in report.versions]
    # the lossless row: every pixel of its error map is the zero colour
    pixels = np.array(browser.execute_script(
        "const R = window.medcodecReport; const c = document.getElementById('error-0');"
        "const [x0, y0] = R.canvasPoint(0, 0), [x1, y1] = R.canvasPoint(63, 63);"
        "return Array.from(c.getContext('2d').getImageData(x0, y0, x1 - x0 + 1, y1 - y0 + 1)"
        ".data);")).reshape(-1, 4)
    assert (pixels[:, :3] == lut[128]).all() and tuple(lut[128]) != (0, 0, 0)
    # lossy and near-lossless rows: the colour of decoded minus original on a +-max scale
    points = sample_points()
    for k in (1, 2, 3):
        error = report.versions[k].decoded[0] - report.original[0]
        scale = report.versions[k].decoded - report.original
        s = int(np.abs(scale).max())
        t = np.clip(np.array([error[y, x] for x, y in points]) / s, -1, 1)
        index = np.floor(t * 127 + 0.5).astype(int) + 128  # JavaScript's Math.round
        got = canvas_samples(browser, f"error-{k}", points)
        np.testing.assert_array_equal(got[:, :3], lut[index])
    assert browser.execute_script("return window.medcodecReport.errorMax();")[3] <= 3


def test_drag_changes_window_and_zoom_is_shared(browser, ct_report) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    report, path = ct_report
    open_page(browser, path)
    canvas = browser.find_element(By.ID, "image-original")
    start = state(browser)
    ActionChains(browser).move_to_element(canvas).click_and_hold().move_by_offset(60, 30) \
        .release().perform()
    next_frame(browser)
    now = state(browser)
    assert now["width"] > start["width"] and now["level"] > start["level"]
    check_panels(browser, report, 0, sample_points(20))
    # zoom with the wheel on one panel: every panel follows
    ActionChains(browser).scroll_from_origin(ScrollOrigin.from_element(canvas), 0, -300) \
        .perform()
    next_frame(browser)
    zoomed = state(browser)
    assert zoomed["zoom"] > 1.5 and zoomed["scale"] > now["scale"]
    inside = [(x, y) for x, y in sample_points(200)
              if all(0 <= v < canvas.size["width"]
                     for v in browser.execute_script(
                         "return window.medcodecReport.canvasPoint(...arguments)", x, y))]
    assert len(inside) > 10
    check_panels(browser, report, 0, inside[:30])
    # pan with Shift-drag on the error map: the shared centre moves
    error = browser.find_element(By.ID, "error-1")
    ActionChains(browser).move_to_element(error).key_down(Keys.SHIFT).click_and_hold() \
        .move_by_offset(-40, 0).release().key_up(Keys.SHIFT).perform()
    next_frame(browser)
    assert state(browser)["cx"] > zoomed["cx"]
    assert console_errors(browser) == []


def test_bench_folder_page_in_browser(browser, bench_page: Path) -> None:
    browser.get_log("browser")
    browser.get(bench_page.resolve().as_uri())
    assert "medcodec bench results" in browser.title
    assert console_errors(browser) == []
    images = browser.execute_script(
        "return Array.from(document.images).map(i => i.complete && i.naturalWidth > 0);")
    assert images and all(images)


@pytest.mark.shared_data
def test_real_ct_series(browser, tmp_path: Path) -> None:
    folder = SHARED_DATA / "TotalSegmentator/tests/reference_files/example_ct_dicom"
    if not folder.is_dir():
        pytest.skip("../shared/data is not available")
    image = medcodec.read(folder)
    report = build(image, plan_tasks(["jpeg2000"], "lossy", [], [1.0]), slices=[0, 10])
    path = write_html(render_image(report, "test"), tmp_path)
    open_page(browser, path)
    assert console_errors(browser) == []
    # one canvas pixel per image pixel, centred: the middle of the slice as stored
    fit = browser.execute_script("return window.medcodecReport.state().scale;")
    browser.execute_script("window.medcodecReport.setView(arguments[0], 256, 256);", 1 / fit)
    assert state(browser)["scale"] == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    points = [tuple(int(v) for v in p) for p in rng.integers(200, 312, size=(40, 2))]
    now = state(browser)
    for canvas_id, values in (("image-original", report.original[0]),
                              ("image-0", report.versions[0].decoded[0])):
        got = canvas_samples(browser, canvas_id, points)
        shown = metrics.render_window(values, now["level"], now["width"], image.rescale_slope,
                                      image.rescale_intercept)
        np.testing.assert_array_equal(got[:, 0], [shown[y, x] for x, y in points])
