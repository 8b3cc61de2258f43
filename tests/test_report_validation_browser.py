"""The report's validation section in a real browser (headless Chromium, as tests/test_report_browser.py).

Checks on the cohort page of a validated run: console clean, every figure decoded, no request leaves
the file system (test_report_browser._check_page), the validation table has one row per compared
action, the marked results rows are visible, and a coded participant's page shows the coders'
ethograms. Skips with the reason when Chromium, chromedriver or selenium is missing.
"""

from __future__ import annotations

import pandas as pd
import pytest

from test_report_browser import _check_page, _skip_reason, driver  # noqa: F401  (driver is a fixture)
from test_report_validation import validated  # noqa: F401  (fixture)

pytestmark = [pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or ""), pytest.mark.slow]


def test_validation_section_in_chromium(validated, driver, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By

    run, index, act = validated
    driver.get(index.resolve().as_uri())
    _check_page(driver, tmp_path, "validation_index")
    section = driver.find_element(By.ID, "validation")
    assert section.is_displayed() and "Validation against human coding" in section.text
    rows = driver.find_elements(By.CSS_SELECTOR, "#validation-table tbody tr")
    pairs = pd.read_parquet(run / "validation" / "pairs.parquet")
    assert len(rows) == pairs["action"].nunique()
    images = section.find_elements(By.TAG_NAME, "img")
    assert len(images) >= 2 and all(driver.execute_script("return arguments[0].naturalWidth;", i) > 0 for i in images)
    marked = driver.find_elements(By.CSS_SELECTOR, "#results-table tr.weakly-validated")
    assert marked and all(act in m.text and "‡" in m.text for m in marked)
    driver.find_element(By.CSS_SELECTOR, 'a[href="#validation"]').click()
    pages = sorted((index.parent / "participants").glob("*.html"))
    coded = next(p for p in pages if 'id="coder-ethograms"' in p.read_text())
    driver.get(coded.resolve().as_uri())
    _check_page(driver, tmp_path, "validation_participant")
    figs = driver.find_elements(By.CSS_SELECTOR, "figure.coder-ethogram img")
    assert len(figs) == 2 and all(driver.execute_script("return arguments[0].naturalWidth;", f) > 0 for f in figs)
