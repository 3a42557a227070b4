"""The HTML report in a real browser: headless Chromium renders it offline with no console errors,
every figure draws, and the heatmaps' colour bars and labels cover no panel."""

import io
import itertools
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from synthgen.evaluate import evaluate
from synthgen.report import render_html, write_index, write_report
from synthgen.schema import infer_schema

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (CHROMIUM and DRIVER):
        message = (
            "headless Chromium and chromedriver are needed "
            "(Debian packages chromium, chromium-driver)"
        )
        if os.environ.get("SYNTHGEN_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    os.environ.setdefault("SE_AVOID_STATS", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,2000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    rng = np.random.default_rng(0)
    n = 1200
    x = rng.normal(size=n)
    df = pd.DataFrame(
        {
            "x": x.round(2),
            "y": (2 * x + rng.normal(size=n)).round(2),
            "kind": rng.choice(["a", "b", None], n),
            "when": pd.Timestamp("2022-01-01") + pd.to_timedelta(rng.integers(0, 500, n), unit="D"),
        }
    )
    train, holdout = df.iloc[:1000].reset_index(drop=True), df.iloc[1000:].reset_index(drop=True)
    synthetic = train.sample(frac=1, random_state=1).reset_index(drop=True)
    synthetic["y"] = rng.permutation(synthetic["y"].to_numpy())
    schema = infer_schema(train)
    ev = evaluate(
        train,
        synthetic,
        holdout=holdout,
        target="kind",
        schema=schema,
        gate={"max_exact_copy_share": 0.0},
    )
    root = tmp_path_factory.mktemp("reports")
    report = {
        "dataset": "demo",
        "run_id": "run-1",
        "primary_model": "vae",
        "schema": schema.explain(),
        "input": {"path": "demo.parquet", "rows": n},
        "models": {"vae": {"evaluation": ev, "sample": {"rows": 1000}}},
    }
    write_report(report, root / "demo" / "run-1")
    write_index(root)
    return root


def _console_errors(driver) -> list:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


# per figure: its drawn size and how many marks (bars, lines, cells) inside it have a visible size
FIGURES_JS = """return [...document.querySelectorAll('.plot svg')].map(svg => {
  const r = svg.getBoundingClientRect();
  const marks = [...svg.querySelectorAll('rect:not(.hv), path:not(.hv), circle')]
    .filter(e => { const b = e.getBoundingClientRect(); return b.width > 0 && b.height > 0; });
  return [svg.getAttribute('aria-label'), r.width, r.height, marks.length];
});"""


def _load(driver, path):
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(path.as_uri())
    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )


def test_report_renders_with_plots_and_no_console_errors(browser, report_dir):
    page = report_dir / "demo" / "run-1" / "report.html"
    assert page.stat().st_size < 300_000  # figures are inline SVG
    _load(browser, page)
    assert _console_errors(browser) == []
    assert browser.execute_script("return document.scripts.length") == 0  # no JavaScript to fail
    figures = browser.execute_script(FIGURES_JS)
    # headline scores, 4 columns, heatmaps, DCR: every one drawn at a real size, with its marks
    assert len(figures) == 7, figures
    for label, width, height, marks in figures:
        assert width > 300 and height > 150 and marks > 0, (label, width, height, marks)
    banner = browser.find_element("id", "verdict").text
    assert "failed" in banner  # the copied rows trip the gate, and the banner says so


def test_screenshot_is_not_blank(browser, report_dir):
    from PIL import Image

    browser.get((report_dir / "demo" / "run-1" / "report.html").as_uri())
    png = browser.get_screenshot_as_png()
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    ink = (
        np.abs(image - image[0, 0]).sum(axis=2) > 30
    ).mean()  # share of pixels unlike the background
    colors = len(np.unique(image.reshape(-1, 3)[::37], axis=0))
    assert ink > 0.05 and colors > 20, (ink, colors)


def test_run_index_lists_the_run(browser, report_dir):
    browser.get((report_dir / "index.html").as_uri())
    assert (
        "run-1" in browser.page_source and "demo" in browser.find_element("tag name", "table").text
    )
    assert _console_errors(browser) == []


# the heatmap's parts: bounding boxes (left, top, right, bottom) in the page, and the SVG's own
HEATMAP_JS = """const svg = document.querySelector('svg.heatmaps');
const box = e => { const r = e.getBoundingClientRect();
  return [r.left, r.top, r.right, r.bottom]; };
return [box(svg), [...svg.querySelectorAll('.hm-panel, .hm-bar, .hm-rows, .hm-cols')]
  .map(e => [e.getAttribute('class'), box(e)])];"""


def _heatmap_report(n: int) -> dict:
    """A report with only association matrices: n columns of long names (clipped on the page)."""
    rng = np.random.default_rng(n)
    names = [f"customer_attribute_number_{i:02d}" for i in range(n)]

    def matrix():
        m = rng.uniform(-1, 1, (n, n))
        m = (m + m.T) / 2
        np.fill_diagonal(m, 1.0)
        return {"columns": names, "matrix": m.round(4).tolist()}

    ev = {"associations": {"real": matrix(), "synthetic": matrix()}, "distributions": {}}
    return {
        "dataset": "wide",
        "run_id": "h",
        "primary_model": "vae",
        "models": {"vae": {"evaluation": ev}},
    }


@pytest.mark.parametrize("n", [0, 3, 12, 40])
def test_heatmap_colour_bars_and_labels_cover_no_panel(browser, report_dir, tmp_path, n):
    """No colour bar, row or column labels overlap a panel or each other, and all fit in the figure,
    from a few columns to 40 (the most the association matrices hold); n=0: the demo report."""
    page = report_dir / "demo" / "run-1" / "report.html"
    if n:
        page = tmp_path / "report.html"
        page.write_text(render_html(_heatmap_report(n)), encoding="utf-8")
    _load(browser, page)
    figure, parts = browser.execute_script(HEATMAP_JS)
    kinds = [kind for kind, _ in parts]
    assert [kinds.count(k) for k in ("hm-panel", "hm-bar", "hm-rows", "hm-cols")] == [3, 2, 1, 3]
    for (kind_a, a), (kind_b, b) in itertools.combinations(parts, 2):
        wide, tall = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
        assert not (wide > 0.5 and tall > 0.5), (kind_a, a, kind_b, b)  # boxes share no area
    for kind, (left, top, right, bottom) in parts:  # nothing cut off at the figure's edges
        assert left >= figure[0] - 0.5 and right <= figure[2] + 0.5, kind
        assert top >= figure[1] - 0.5 and bottom <= figure[3] + 0.5, kind
    panels = [box for kind, box in parts if kind == "hm-panel"]
    assert all(box[2] - box[0] > 60 for box in panels)  # the panels keep a readable size
    assert _console_errors(browser) == []
