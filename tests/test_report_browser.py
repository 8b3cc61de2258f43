"""The report in a real browser: headless Chromium driven by selenium opens the pages from disk.

Checks: no console errors; every image decoded (naturalWidth > 0); the results table has one row per
results row; links between the pages work; no request leaves the file system (every URL the browser
asked for, from Chrome's network log and the page's resource timing, is ``file:`` or ``data:``); a
participant ID ``<script>alert(1)</script>`` shows as text and runs nothing (console, DOM, no alert).
A screenshot of each page is saved in the test's tmp folder; with ``REPORT_SCREENSHOTS=DIR`` they are
also copied (downscaled) to DIR as report_index.png / report_participant.png (docs/img does that).

Skips with the reason when Chromium, chromedriver or selenium is missing
(``apt-get install chromium chromium-driver``; ``pip install selenium``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd
import pytest

from reports.build import build_report, page_name
from test_report_fixture import EVIL_ID, REAL_NAME, make_run

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def _skip_reason() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} not found: install Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
    if not CHROMEDRIVER.exists():
        return f"{CHROMEDRIVER} not found: apt-get install chromium-driver"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    return None


pytestmark = [pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or ""), pytest.mark.slow]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    run = make_run(root / "run")
    return build_report(run, root / "report")


@pytest.fixture(scope="module")
def driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-background-networking",
              "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-gpu",
              "--window-size=1280,1000", "--hide-scrollbars", "--force-device-scale-factor=1"):  # fmt: skip
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    d = webdriver.Chrome(options=opts, service=Service(str(CHROMEDRIVER)))
    d.set_page_load_timeout(60)
    try:
        yield d
    finally:
        d.quit()


def _console_errors(driver) -> list[dict]:
    return [e for e in driver.get_log("browser") if e.get("level") in ("SEVERE", "ERROR")]


def _requested_urls(driver) -> list[str]:
    """Every URL Chrome's network layer was asked for since the last call (performance log)."""
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def _check_page(driver, tmp_path: Path, shot: str, *, docs_anchor: str | None = None) -> None:
    """Console clean, images decoded, only file:/data: requests, no script; screenshot saved."""
    errors = _console_errors(driver)
    assert not errors, errors
    images = driver.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt, i.src.slice(0, 5)]);")
    assert images, "no figure on the page"
    for complete, width, alt, scheme in images:
        assert complete and width > 0, f"image not loaded: {alt[:60]!r}"
        assert alt.strip(), "figure without alt text"
        assert scheme == "data:"
    timing = driver.execute_script(
        "return performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource')).map(e => e.name);")
    for url in _requested_urls(driver) + timing:
        assert urlparse(url).scheme in ("file", "data"), f"request left the file system: {url[:80]}"
    assert driver.execute_script("return document.getElementsByTagName('script').length;") == 0
    banner = driver.find_elements("id", "demo-banner")
    assert banner and "not for clinical interpretation" in banner[0].text
    height = driver.execute_script("return document.documentElement.scrollHeight;")
    driver.set_window_size(1280, min(int(height) + 40, 12000))
    driver.save_screenshot(str(tmp_path / f"{shot}.png"))
    driver.set_window_size(1280, 1000)
    target = os.environ.get("REPORT_SCREENSHOTS")
    if target:
        _save_small(driver, Path(target) / f"report_{shot}.png")
        if docs_anchor:
            _save_small(driver, Path(target) / f"report_{shot}_{docs_anchor}.png", anchor=docs_anchor)


def _save_small(driver, dest: Path, anchor: str | None = None) -> None:
    """The viewport (the top, or from an element id down), scaled to 800 px wide, palette PNG (small for docs)."""
    from io import BytesIO

    from PIL import Image

    if anchor:
        driver.execute_script("document.getElementById(arguments[0]).scrollIntoView();", anchor)
    else:
        driver.execute_script("window.scrollTo(0, 0);")
    img = Image.open(BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    img = img.resize((800, round(img.height * 800 / img.width)), Image.LANCZOS)
    dest.parent.mkdir(parents=True, exist_ok=True)
    img.quantize(colors=128).save(dest, optimize=True)


def test_cohort_and_participant_pages_in_chromium(report: Path, driver, tmp_path: Path) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    run = report.parent.parent / "run"
    results = pd.read_parquet(run / "hurdle" / "results.parquet")
    driver.get(report.resolve().as_uri())
    assert driver.title.startswith("Cohort report")
    _check_page(driver, tmp_path, "index", docs_anchor="results")

    rows = driver.find_elements(By.CSS_SELECTOR, "#results-table tbody tr:not(.note-row)")
    assert len(rows) == len(results)
    pub = driver.find_elements(By.CSS_SELECTOR, "#publication-table tbody tr")
    assert 0 < len(pub) <= 10
    body = driver.find_element(By.TAG_NAME, "body").text
    assert REAL_NAME not in driver.page_source and REAL_NAME not in body
    # every in-page anchor points at an element that exists
    for href in driver.execute_script("return Array.from(document.querySelectorAll('a[href^=\"#\"]')).map(a => a.getAttribute('href'));"):
        assert driver.find_elements(By.ID, href[1:]), f"dangling anchor {href}"

    # the participant link of the hostile ID: shown as text, opens its page
    link = driver.find_element(By.CSS_SELECTOR, f"#participants a[href='participants/{page_name(EVIL_ID)}']")
    assert link.text == EVIL_ID
    link.click()
    assert driver.current_url.endswith(page_name(EVIL_ID))
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text
    assert driver.find_element(By.ID, "participant-id").text == EVIL_ID
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in driver.page_source
    _check_page(driver, tmp_path, "participant")
    assert driver.find_elements(By.CSS_SELECTOR, "#actions-table tbody tr")

    # previous / next and back to the cohort page
    driver.find_element(By.CSS_SELECTOR, "a[rel=prev]").click()
    assert "participants/" in driver.current_url and not _console_errors(driver)
    driver.find_element(By.ID, "back-link").click()
    assert driver.current_url == report.resolve().as_uri()
    assert driver.find_elements(By.ID, "results-table")

    # a participant with two videos, and one with a no-pose stretch: pages load cleanly too
    driver.get((report.parent / "participants" / page_name("P00001")).resolve().as_uri())
    _check_page(driver, tmp_path, "participant_two_videos")
    assert len(driver.find_elements(By.CSS_SELECTOR, "#video-qc-table tbody tr")) == 2
    driver.get((report.parent / "participants" / page_name("P00000")).resolve().as_uri())
    _check_page(driver, tmp_path, "participant_no_pose")
    assert REAL_NAME not in driver.page_source
    assert (tmp_path / "index.png").stat().st_size > 10_000


def test_print_stylesheet_hides_navigation(report: Path, driver) -> None:
    """Print media: navigation hidden, banner kept (emulated through the DevTools protocol)."""
    from selenium.webdriver.common.by import By

    driver.get(report.resolve().as_uri())
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    try:
        assert not driver.find_element(By.CSS_SELECTOR, "nav.toc").is_displayed()
        assert driver.find_element(By.ID, "demo-banner").is_displayed()
    finally:
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})
    # a full PDF print works without errors
    pdf = driver.execute_cdp_cmd("Page.printToPDF", {"printBackground": False})
    assert len(pdf["data"]) > 10_000
    assert not _console_errors(driver)
    shutil.rmtree(report.parent / "pdf", ignore_errors=True)


def test_checks_catch_a_leaking_page(tmp_path: Path, driver) -> None:
    """Negative control: each detector used above fires on a page that breaks its rule."""
    bad = tmp_path / "bad.html"
    bad.write_text('<html><body><img alt="x" src="https://example.invalid/x.png">'
                   '<script>console.error("boom")</script></body></html>')
    driver.get(bad.resolve().as_uri())
    assert any(urlparse(u).scheme == "https" for u in _requested_urls(driver))
    messages = " ".join(e["message"] for e in _console_errors(driver))
    assert "boom" in messages
    assert driver.execute_script("return document.images[0].naturalWidth;") == 0
    assert driver.execute_script("return document.getElementsByTagName('script').length;") == 1
