"""The HTML report in a real browser: headless Chromium renders it offline with no console errors."""

import io
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from synthgen.evaluate import evaluate
from synthgen.report import write_report, write_index
from synthgen.schema import infer_schema

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (CHROMIUM and DRIVER):
        message = "headless Chromium and chromedriver are needed (Debian packages chromium, chromium-driver)"
        if os.environ.get("SYNTHGEN_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    os.environ.setdefault("SE_AVOID_STATS", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1280,2000", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
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
    df = pd.DataFrame({"x": x.round(2), "y": (2 * x + rng.normal(size=n)).round(2),
                       "kind": rng.choice(["a", "b", None], n), "when": pd.Timestamp("2022-01-01") + pd.to_timedelta(rng.integers(0, 500, n), unit="D")})
    train, holdout = df.iloc[:1000].reset_index(drop=True), df.iloc[1000:].reset_index(drop=True)
    synthetic = train.sample(frac=1, random_state=1).reset_index(drop=True)
    synthetic["y"] = rng.permutation(synthetic["y"].to_numpy())
    schema = infer_schema(train)
    ev = evaluate(train, synthetic, holdout=holdout, target="kind", schema=schema, gate={"max_exact_copy_share": 0.0})
    root = tmp_path_factory.mktemp("reports")
    report = {"dataset": "demo", "run_id": "run-1", "primary_model": "vae", "schema": schema.explain(),
              "input": {"path": "demo.parquet", "rows": n}, "models": {"vae": {"evaluation": ev, "sample": {"rows": 1000}}}}
    write_report(report, root / "demo" / "run-1")
    write_index(root)
    return root


def _console_errors(driver) -> list:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def test_report_renders_with_plots_and_no_console_errors(browser, report_dir):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get((report_dir / "demo" / "run-1" / "report.html").as_uri())
    WebDriverWait(browser, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
    WebDriverWait(browser, 30).until(
        lambda d: d.execute_script("return document.querySelectorAll('.js-plotly-plot .main-svg').length") > 0)
    assert _console_errors(browser) == []
    n_plots = browser.execute_script("return document.querySelectorAll('.js-plotly-plot').length")
    n_rendered = browser.execute_script("return document.querySelectorAll('.js-plotly-plot .main-svg').length")
    assert n_plots >= 6 and n_rendered >= n_plots  # every figure drew its SVG
    banner = browser.find_element("id", "verdict").text
    assert "failed" in banner  # the copied rows trip the gate, and the banner says so


def test_screenshot_is_not_blank(browser, report_dir):
    from PIL import Image

    browser.get((report_dir / "demo" / "run-1" / "report.html").as_uri())
    png = browser.get_screenshot_as_png()
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    ink = (np.abs(image - image[0, 0]).sum(axis=2) > 30).mean()  # share of pixels unlike the background
    colors = len(np.unique(image.reshape(-1, 3)[::37], axis=0))
    assert ink > 0.05 and colors > 20, (ink, colors)


def test_run_index_lists_the_run(browser, report_dir):
    browser.get((report_dir / "index.html").as_uri())
    assert "run-1" in browser.page_source and "demo" in browser.find_element("tag name", "table").text
    assert _console_errors(browser) == []
