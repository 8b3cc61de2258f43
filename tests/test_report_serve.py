"""``python -m reports.serve RUN``: the report folder on localhost with the report's own CSP, read-only.

A real server process and real HTTP requests (urllib) against the report of the test fixture's run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from reports.build import build_report
from test_report_fixture import make_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    run = make_run(tmp_path_factory.mktemp("serve") / "run")
    build_report(run, run / "report")
    return run


def test_serves_the_report_with_its_csp_and_nothing_else(run: Path):
    proc = subprocess.Popen([sys.executable, "-m", "reports.serve", str(run), "--port", "0"], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        url = re.search(r"at (http://127\.0\.0\.1:\d+/)", line).group(1)
        assert f"serving {(run / 'report').resolve()}" in line
        with urllib.request.urlopen(url + "index.html", timeout=10) as r:
            page = r.read().decode()
            csp = r.headers["Content-Security-Policy"]
        meta = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)
        assert csp == meta and "default-src 'none'" in csp
        link = re.search(r'href="(participants/[^"]+\.html)"', page).group(1)
        with urllib.request.urlopen(url + link, timeout=10) as r:
            assert r.status == 200 and r.headers["Content-Security-Policy"] == csp
        for path in ("participants/", "../manifest.csv", "%2e%2e/manifest.csv"):  # no listing, nothing outside
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(url + path, timeout=10)
            assert err.value.code == 404, path
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_folder_without_a_report_is_refused_in_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "reports.serve", str(tmp_path)], cwd=ROOT, capture_output=True,
                       text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no report here" in r.stderr
