"""The built-in demo (``make demo``): simulated videos -> the cohort-analysis flow -> truth comparison.

Slow: renders a small cohort and runs every stage for real (MediaPipe, the shipped demo model, the
read-out, statsmodels fits, the report), with a temporary Prefect server. ``make demo`` runs the same
code at 8 participants per group and 60 s.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows.cohort_analysis import direct_run_settings
from flows.demo import percent_time_error, planted_check, run_demo
from pipeline.artifacts import read_sidecar
from recipes.demo_model import demo_readout

pytestmark = pytest.mark.slow


def test_demo_runs_the_whole_chain_and_compares_with_the_planted_truth(tmp_path, capsys):
    with direct_run_settings():
        result = run_demo(tmp_path, groups={"ASD": 2, "PSY": 2, "TDC": 2}, seconds=12, seed=1)
    assert capsys.readouterr().out == ""  # the library function prints nothing; main() does
    truth = pd.read_parquet(tmp_path / "cohort" / "truth" / "percent_time.parquet")
    cohort = pd.read_parquet(tmp_path / "run" / "readout" / "cohort.parquet")
    assert set(cohort["participant_id"]) == set(truth["participant_id"]) and len(set(truth["participant_id"])) == 6
    # the run read out with the demo checkpoint's own calibrated read-out, minimum duration included
    assert read_sidecar(tmp_path / "run" / "readout" / "cohort.parquet")["readout"] == demo_readout().to_dict()
    # one agreement row per simulated action, errors in percentage points
    assert set(result.agreement["action"]) == set(truth["action"])
    assert (result.agreement["mae_pp"] >= 0).all() and (result.agreement["mae_pp"] <= 100).all()
    effects = pd.read_csv(tmp_path / "cohort" / "truth" / "effects.csv")
    assert len(result.check) == len(effects)
    # the report exists and says the model is a demonstration trained on simulated data
    html = result.report.read_text()
    assert result.report.name == "index.html" and "ASD" in html
    assert "simulated" in html.lower() and "not for clinical" in html.lower()
    assert "simulated" in result.summary["trained_on"].lower()


def test_make_demo_console_shows_results_and_no_http_requests(tmp_path):
    """``python -m flows.demo`` (what ``make demo`` runs) at its smallest: results on stdout, no Prefect
    client HTTP request lines, no Prefect INFO lines, no traceback; its temporary server is its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    r = subprocess.run([sys.executable, "-m", "flows.demo", "--out", str(tmp_path / "demo"), "--per-group", "1",
                        "--seconds", "6", "--workers", "1"], env=env, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-4000:]
    text = r.stdout + r.stderr
    assert "HTTP Request" not in text and "Traceback" not in text
    assert "Beginning flow run" not in text and "Finished in state" not in text and "temporary server" not in text
    assert "Percent time, detected vs planted truth" in r.stdout and "wrote report:" in r.stdout
    assert "tasks finished:" in r.stderr  # progress


def test_planted_check_orients_each_contrast_to_the_planted_group():
    effects = pd.DataFrame({"action": ["nodding", "waving", "shrugging"], "group": ["ASD", "PSY", "ASD"],
                            "part": ["probability", "intensity", "probability"],
                            "log_or": [-1.0, 0.7, -0.5], "reference": ["TDC", "TDC", "TDC"]})
    results = pd.DataFrame({"action": ["nodding", "waving", "waving", "shrugging"],
                            "part": ["probability", "intensity", "probability", "probability"],
                            "group_a": ["ASD", "PSY", "PSY", "ASD"], "group_b": ["TDC", "TDC", "TDC", "TDC"],
                            "effect": [0.5, 0.8, 3.0, np.nan], "p_adj": [0.01, 0.2, 0.001, np.nan],
                            "note": [None, None, None, "not estimable: no engagers in any group"]})
    results_flipped = results.assign(group_a=results["group_b"], group_b=results["group_a"], effect=1 / results["effect"])
    for table in (results, results_flipped):  # the contrast's order does not change the answer
        check = planted_check(effects, table).set_index("planted")
        nod = check.loc["nodding / ASD vs TDC / probability"]
        assert nod["estimated_or"] == pytest.approx(0.5) and nod["right_direction"]
        wav = check.loc["waving / PSY vs TDC / intensity"]  # the probability row must not be picked
        assert wav["estimated_or"] == pytest.approx(0.8) and not wav["right_direction"] and wav["p_adj"] == 0.2
        shr = check.loc["shrugging / ASD vs TDC / probability"]  # not estimable: never "right"
        assert np.isnan(shr["estimated_or"]) and not shr["right_direction"] and shr["note"].startswith("not estimable")


def test_percent_time_error_is_the_mean_absolute_difference_per_action():
    truth = pd.DataFrame({"participant_id": ["a", "b", "a", "b"], "action": ["nodding"] * 2 + ["waving"] * 2,
                          "percent_time": [10.0, 0.0, 5.0, 5.0]})
    detected = pd.DataFrame({"participant_id": ["a", "b", "a"], "action": ["nodding", "nodding", "waving"],
                             "percent_time": [12.0, 1.0, 5.0]})  # b's waving missing: counted as 0
    err = percent_time_error(truth, detected).set_index("action")
    assert err.loc["nodding", "mae_pp"] == pytest.approx(1.5)
    assert err.loc["waving", "mae_pp"] == pytest.approx(2.5) and err.loc["waving", "detected_pct"] == pytest.approx(2.5)
