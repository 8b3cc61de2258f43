"""The report's additions for issue 23: corrected vs uncorrected side by side, sensitivity, bouts, Methods."""

from __future__ import annotations

import numpy as np
import pandas as pd

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
