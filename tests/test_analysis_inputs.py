"""Input and output formats of the analysis CLIs (audit 8): the simulator writes what its suffix says,
CSV cohorts keep text as text, and percent_time given as fractions is refused unless declared."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import hurdle, simulate
from analysis.cohort import load_cohort, validate_cohort
from analysis.config import HurdleConfig
from analysis.simulate import SimConfig, simulate_cohort


def _exit_code(fn, argv) -> int:
    try:
        return fn(argv)
    except SystemExit as exc:
        return exc.code


def test_simulate_writes_csv_for_csv_and_parquet_for_parquet(tmp_path, capsys):
    args = ["--groups", "ASD=6,TDC=7", "--n-actions", "2", "--effect", "nodding:TDC:probability:1.0", "-q"]
    assert simulate.main(["--out", str(tmp_path / "c.csv"), *args]) == 0
    assert simulate.main(["--out", str(tmp_path / "c.parquet"), *args]) == 0
    printed = capsys.readouterr().out.split()
    assert str(tmp_path / "c.csv") in printed and str(tmp_path / "c_truth.csv") in printed
    assert (tmp_path / "c.csv").read_text().startswith("participant_id,group,action_id,action,percent_time,observed_s")
    assert (tmp_path / "c.parquet").read_bytes()[:4] == b"PAR1"
    assert (tmp_path / "c_truth.csv").read_text().startswith("action,")
    assert json.loads((tmp_path / "c.csv.json").read_text())["contract"] == "cohort"
    # the same cohort either way, to the last bit
    from_csv, from_parquet = load_cohort(tmp_path / "c.csv"), load_cohort(tmp_path / "c.parquet")
    pd.testing.assert_frame_equal(from_csv, from_parquet, check_dtype=False)
    assert (from_csv["percent_time"].to_numpy() == from_parquet["percent_time"].to_numpy()).all()


@pytest.mark.parametrize("name", ["cohort.txt", "cohort", "cohort.xlsx"])
def test_simulate_refuses_other_suffixes(tmp_path, capsys, name):
    rc = _exit_code(simulate.main, ["--out", str(tmp_path / name), "--n-actions", "2", "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and ".parquet or .csv" in err
    assert list(tmp_path.iterdir()) == []


def _csv_cohort(tmp_path: Path) -> Path:
    """Participant ids with leading zeros, a site called NA, a numeric covariate."""
    rows = []
    for i, (pid, grp, site) in enumerate([("007", "ASD", "NA"), ("0012", "ASD", "LON"), ("12", "TDC", "NA"),
                                          ("0100", "TDC", "LON"), ("100", "PSY", "NA"), ("0030", "PSY", "LON")]):  # fmt: skip
        for a, name in ((9, "nodding"), (24, "shaking legs")):
            rows.append(f"{pid},{grp},{a},{name},{(i * 7 + a) % 5 * 2.5},150.0,{9.5 + i},{site}")
    path = tmp_path / "cohort.csv"
    path.write_text("participant_id,group,action_id,action,percent_time,observed_s,age,site\n" + "\n".join(rows) + "\n")
    return path


def test_csv_keeps_leading_zeros_and_a_site_called_na(tmp_path):
    df = load_cohort(_csv_cohort(tmp_path))
    assert df["participant_id"].tolist()[::2] == ["007", "0012", "12", "0100", "100", "0030"]
    assert df["site"].tolist()[::2] == ["NA", "LON", "NA", "LON", "NA", "LON"]
    assert df["age"].dtype == np.float64 and df["percent_time"].dtype == np.float64
    clean = validate_cohort(df, HurdleConfig(covariates=("age", "site")))
    assert clean["participant_id"].nunique() == 6  # "0012" and "12" stay two people


def test_csv_missing_numbers_are_missing_but_text_na_is_text(tmp_path):
    path = _csv_cohort(tmp_path)
    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace(",10.5,", ",NA,")  # age NA for participant 0012
    path.write_text("\n".join(lines) + "\n")
    df = load_cohort(path)
    assert np.isnan(df.loc[2, "age"]) and df["age"].dtype == np.float64
    with pytest.raises(Exception, match=r"column 'age' has missing values \(NaN/null\) at row 2 \(participant '0012'\)"):
        validate_cohort(df, HurdleConfig(covariates=("age",)))
    lines[4] = lines[4].replace(",LON", ",")  # an empty site cell is missing
    path.write_text("\n".join(lines) + "\n")
    assert pd.isna(load_cohort(path).loc[3, "site"])


def test_hurdle_on_csv_with_leading_zero_ids_runs(tmp_path, capsys):
    path = _csv_cohort(tmp_path)
    rc = _exit_code(hurdle.main, ["--cohort", str(path), "--out", str(tmp_path / "o"), "--min-engaged", "2", "--no-plots",
                                  "--covariates", "site", "-q"])  # fmt: skip
    assert rc == 0
    res = pd.read_parquet(tmp_path / "o" / "results.parquet")
    assert (res["n_a"] + res["n_b"] == 4).all()  # 2 + 2 participants per pair: no ids merged


@pytest.fixture(scope="module")
def small_cohort() -> pd.DataFrame:
    return simulate_cohort(SimConfig(groups=(("ASD", 30), ("PSY", 20), ("TDC", 30)), n_actions=3, seed=2))[0]


def test_fractions_are_refused_unless_declared(tmp_path, capsys, small_cohort):
    frac = small_cohort.assign(percent_time=small_cohort["percent_time"] / 100)
    path = tmp_path / "frac.parquet"
    frac.to_parquet(path)
    out = tmp_path / "o"
    rc = _exit_code(hurdle.main, ["--cohort", str(path), "--out", str(out), "--no-plots", "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "--percent-scale fraction" in err and "<= 1" in err
    assert not out.exists()
    # declared as fractions: the same results as the percent table
    rc = _exit_code(hurdle.main, ["--cohort", str(path), "--out", str(out), "--no-plots", "-q", "--percent-scale", "fraction"])
    assert rc == 0
    pct_path = tmp_path / "pct.parquet"
    small_cohort.to_parquet(pct_path)
    assert _exit_code(hurdle.main, ["--cohort", str(pct_path), "--out", str(tmp_path / "p"), "--no-plots", "-q"]) == 0
    a, b = pd.read_parquet(out / "results.parquet"), pd.read_parquet(tmp_path / "p" / "results.parquet")
    np.testing.assert_allclose(a["estimate"], b["estimate"], rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(a["mean_a"], b["mean_a"], rtol=1e-12, equal_nan=True)
    # percentages that really are all <= 1 can be confirmed as such
    rc = _exit_code(hurdle.main, ["--cohort", str(path), "--out", str(tmp_path / "q"), "--no-plots", "-q", "--percent-scale", "percent"])
    assert rc == 0


def test_fraction_scale_rejects_values_above_one(small_cohort):
    with pytest.raises(Exception, match=r"--percent-scale fraction.*\[0, 1\]"):
        validate_cohort(small_cohort, HurdleConfig(percent_scale="fraction"))
    # a cohort with no engagement at all is not mistaken for fractions
    validate_cohort(small_cohort.assign(percent_time=0.0), HurdleConfig())
