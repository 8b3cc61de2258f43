"""The report's additions for issue 23: corrected vs uncorrected side by side, sensitivity, bouts, Methods."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reports.methods import _error_aware_sentences
from reports.summaries import bout_rows, error_aware_rows


def _results():
    return pd.DataFrame({
        "action": ["nodding", "nodding", "head up", "nodding"], "contrast": ["ASD vs PSY"] * 4,
        "direction": ["ASD < PSY", "ASD > PSY", None, "ASD < PSY"], "part": ["intensity", "probability", "intensity", "count"],
        "effect": [0.4, 1.5, np.nan, 0.5], "ci_low": [0.3, 1.1, np.nan, 0.4], "ci_high": [0.6, 2.0, np.nan, 0.7],
        "p": [0.001, 0.02, np.nan, 0.003], "p_adj": [0.003, 0.03, np.nan, 0.006],
        "effect_uncorrected": [0.6, 1.4, np.nan, np.nan], "p_adj_uncorrected": [0.2, 0.04, np.nan, np.nan],
        "sensitivity": ["stable", "fragile", "fragile", None],
        "misclassification": ["percent time corrected ... (reference consensus)"] * 3 + [None],
    })  # fmt: skip


def test_side_by_side_rows_and_bouts():
    rows = error_aware_rows(_results(), k=5)
    assert [r["part"] for r in rows] == ["intensity", "probability"]  # estimable percent-time tests, by p
    assert rows[0]["effect_uncorrected"] == 0.6 and rows[0]["effect"] == 0.4 and rows[0]["sensitivity"] == "stable"
    b = bout_rows(_results())
    assert len(b) == 1 and b[0]["part"] == "count" and b[0]["effect"] == 0.5
    plain = _results().drop(columns=["effect_uncorrected", "p_adj_uncorrected", "sensitivity", "misclassification"])
    assert error_aware_rows(plain) == []


def test_methods_say_which_correction_was_used():
    text = " ".join(_error_aware_sentences(_results(), {"misclassification": "acc"}))
    assert "Read-out errors: percent time corrected" in text and "Rubin" in text
    assert "1 stable, 2 fragile, 0 reversed" in text and "negative binomial" in text
    plain = _results().drop(columns=["misclassification", "sensitivity"])
    plain = plain[plain["part"] != "count"]
    assert _error_aware_sentences(plain, {}) == [
        "Percent time was analysed as read out, without correction for the read-out's errors."]


@pytest.mark.slow  # 48 s at load 9.5 on the 2 cores: the sensitivity grid is 5 corrected analyses
def test_report_of_a_corrected_run_with_sensitivity_and_bouts(tmp_path):
    """A run folder (tests/test_report_fixture.py) whose statistics ran with --misclassification acc on the
    run's own validation/confusion.parquet, --sensitivity and --bouts: the cohort page shows the
    side-by-side table with the sensitivity column, the grid picture, the bout table, and the Methods
    name the validation set."""
    import re

    from analysis.hurdle import main as hurdle_main
    from reports.build import main as report_main
    from test_report_fixture import FPS, make_run

    root = make_run(tmp_path / "run", hurdle=False)
    cohort = pd.read_parquet(root / "readout" / "cohort.parquet")
    # every participant coded; the coder sees 1/0.8 of the model's true frames and none of its 1 % false ones
    n = np.round(cohort["observed_s"].to_numpy() * FPS).astype(np.int64)
    k = np.round(cohort["percent_time"].to_numpy() / 100 * n).astype(np.int64)
    fp = np.round(0.01 * k).astype(np.int64)
    tp = k - fp
    fn = np.round(tp / 0.8 - tp).astype(np.int64)
    (root / "validation").mkdir()
    pd.DataFrame({"participant_id": cohort["participant_id"], "group": cohort["group"], "action": cohort["action"],
                  "reference": "consensus", "tp": tp, "fp": fp, "fn": fn, "tn": n - tp - fp - fn}).to_parquet(
        root / "validation" / "confusion.parquet")  # fmt: skip
    rc = hurdle_main(["--cohort", str(root / "readout" / "cohort.parquet"), "--misclassification", "acc", "--validation",
                      str(root / "validation"), "--imputations", "4", "--frame-rate", f"{FPS:g}", "--sensitivity",
                      "--bouts", str(root / "readout" / "bouts.parquet"), "--all-actions", "--min-engaged", "2",
                      "--intensity-se", "hc2-t", "--min-engaged-test", "3", "--no-plots", "--out", str(root / "hurdle"),
                      "-q"])  # fmt: skip
    assert rc == 0
    assert report_main(["--run", str(root), "--out", str(root / "report"), "-q"]) == 0
    html = (root / "report" / "index.html").read_text(encoding="utf-8")
    table = html[html.index('<table id="error-aware-table">'):]
    table = table[: table.index("</table>")]
    assert "Effect, uncorrected" in table and "Effect, corrected" in table and "Sensitivity" in table
    labels = re.findall(r"<td>(stable|fragile|reversed)</td>", table)
    assert labels, "no sensitivity label in the side-by-side table"
    fig = html[html.index('<figure id="sensitivity-figure">'):]
    assert fig.startswith('<figure id="sensitivity-figure"><img src="data:image/png;base64,')
    assert "0.8, 0.9, 1, 1.1, 1.25" in fig[: fig.index("</figure>")]
    assert '<table id="bouts-table">' in html
    bouts = html[html.index('<table id="bouts-table">'):]
    assert "<td>count</td>" in bouts[: bouts.index("</table>")]
    assert "Validation set of the correction: this run&#39;s validation/ folder" in html or \
        "Validation set of the correction: this run's validation/ folder" in html
    assert "adjusted count" in html and "Rubin" in html
