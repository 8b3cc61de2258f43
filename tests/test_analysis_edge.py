"""Edge cases of real cohorts: separation, all-zero actions, tiny groups, 100 % engagement.

Each must give documented rows (a note, no absurd numbers), never a crash and never a warning.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from analysis.config import HurdleConfig
from analysis.hurdle import RESULT_COLUMNS, hurdle_analysis
from pipeline.contracts import validate


def make_cohort(spec: dict[str, list[float]], action: str = "nodding", **covariates) -> pd.DataFrame:
    rows, k = [], 0
    for g, values in spec.items():
        for v in values:
            rows.append({"participant_id": f"p{k:04d}", "group": g, "action_id": 9, "action": action,
                         "percent_time": float(v), "observed_s": 150.0})  # fmt: skip
            k += 1
    df = pd.DataFrame(rows)
    for name, vals in covariates.items():
        df[name] = np.asarray(vals)
    return df


def mixed(n: int, share: float, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    return list(np.where(rng.random(n) < share, rng.uniform(1, 30, n), 0.0))


def run(df: pd.DataFrame, **kw) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may spill to the user
        res = hurdle_analysis(df, HurdleConfig(**kw))
    assert list(res.columns) == RESULT_COLUMNS
    validate(res, "hurdle_results")
    est = res["p"].notna()
    # never an estimate that ran off to infinity
    assert np.isfinite(res.loc[est, ["estimate", "effect", "ci_low", "ci_high", "se"]].to_numpy()).all()
    assert (res.loc[est, "effect"].between(1e-6, 1e6)).all()
    # rows without a p: "not estimable" (no numbers) or, in the intensity part, "not tested" (too few
    # engagers for any test to hold its size: the estimate only)
    untested = res["note"].fillna("").str.startswith("not tested")
    assert (res.loc[untested, "part"] == "intensity").all()
    assert res.loc[~est & ~untested, "note"].str.startswith("not estimable").all()
    assert res.loc[~est & ~untested, ["estimate", "effect", "ci_low", "ci_high", "p_adj"]].isna().all().all()
    assert res.loc[untested, ["se", "ci_low", "ci_high", "statistic", "p", "p_adj"]].isna().all().all()
    assert np.isfinite(res.loc[untested, ["estimate", "effect"]].to_numpy()).all()
    return res


@pytest.mark.filterwarnings("error")
def test_group_without_engagers_uses_firth():
    df = make_cohort({"ASD": mixed(30, 0.5, 1), "PSY": [0.0] * 12, "TDC": mixed(30, 0.4, 2)})
    res = run(df)
    prob = res[res["part"] == "probability"].set_index("contrast")
    assert prob["method"].eq("Firth penalised logistic regression").all()
    assert prob.loc["ASD vs PSY", "note"].startswith("separation (PSY: no engagers): Firth")
    assert prob.loc["ASD vs PSY", "effect"] > 1 and prob.loc["ASD vs PSY", "direction"] == "ASD > PSY"
    inten = res[res["part"] == "intensity"].set_index("contrast")
    assert inten.loc["ASD vs PSY", "note"].startswith("not estimable: too few engagers (PSY: 0 < 3)")
    assert np.isfinite(inten.loc["ASD vs TDC", "p"])


@pytest.mark.filterwarnings("error")
def test_separation_by_covariate_switches_to_firth():
    n = 40
    age = np.linspace(5, 50, 2 * n)
    pct = np.where(age > 27, 10.0, 0.0)  # age predicts engagement perfectly
    df = make_cohort({"ASD": list(pct[:n]), "TDC": list(pct[n:])}, age=age)
    df["group"] = np.where(np.arange(2 * n) % 2 == 0, "ASD", "TDC")
    res = run(df, groups=("ASD", "TDC"), covariates=("age",))
    prob = res[res["part"] == "probability"].iloc[0]
    assert prob["method"] == "Firth penalised logistic regression"
    assert "separation" in prob["note"]


@pytest.mark.filterwarnings("error")
def test_all_zero_action_gives_documented_rows():
    df = make_cohort({"ASD": [0.0] * 20, "PSY": [0.0] * 8, "TDC": [0.0] * 20})
    res = run(df)
    assert len(res) == 6 and res["p"].isna().all()
    assert (res.loc[res["part"] == "probability", "note"] == "not estimable: no engagers in any group").all()
    assert res.loc[res["part"] == "intensity", "note"].str.contains("too few engagers").all()
    assert (res[["engaged_a", "engaged_b"]] == 0).all().all()


@pytest.mark.filterwarnings("error")
def test_everyone_engaged():
    rng = np.random.default_rng(0)
    df = make_cohort({g: list(rng.uniform(1, 40, n)) for g, n in (("ASD", 25), ("PSY", 10), ("TDC", 25))})
    res = run(df)
    assert (res.loc[res["part"] == "probability", "note"] == "not estimable: every participant engaged").all()
    inten = res[res["part"] == "intensity"].set_index("contrast")
    assert np.isfinite(inten.loc["ASD vs TDC", "p"])
    # PSY's 10 engagers are fewer than min_engaged_test (12): estimates without a p
    assert inten.loc[["ASD vs PSY", "PSY vs TDC"], "p"].isna().all()
    assert inten.loc[["ASD vs PSY", "PSY vs TDC"], "note"].str.contains(r"\(PSY: 10 < 12\)").all()


@pytest.mark.filterwarnings("error")
def test_one_group_fully_engaged_and_one_not():
    df = make_cohort({"ASD": [5.0] * 10, "PSY": [0.0] * 10, "TDC": mixed(30, 0.5, 3)})
    res = run(df)
    prob = res[res["part"] == "probability"].set_index("contrast")
    # saturated group model: Firth adds 0.5 to each cell, (10.5/0.5) / (0.5/10.5) = 441
    assert prob.loc["ASD vs PSY", "effect"] == pytest.approx(441.0, rel=1e-8) and np.isfinite(prob.loc["ASD vs PSY", "ci_high"])
    assert prob.loc["ASD vs PSY", "ci_low"] > 1 and prob.loc["ASD vs PSY", "p"] < 1e-3
    assert "ASD: all engaged" in prob.loc["ASD vs PSY", "note"] and "PSY: no engagers" in prob.loc["ASD vs PSY", "note"]


@pytest.mark.filterwarnings("error")
def test_group_with_one_participant():
    df = make_cohort({"ASD": mixed(30, 0.5, 4), "PSY": [12.0], "TDC": mixed(30, 0.5, 5)})
    res = run(df)
    rows = res[(res["group_a"] == "PSY") | (res["group_b"] == "PSY")]
    assert (rows["n_a"].where(rows["group_a"] == "PSY", rows["n_b"]) == 1).all()
    inten = rows[rows["part"] == "intensity"]
    assert inten["note"].str.startswith("not estimable: too few engagers").all()
    prob = rows[rows["part"] == "probability"]
    assert prob["note"].str.contains("PSY: all engaged").all()


@pytest.mark.filterwarnings("error")
def test_both_groups_without_engagers_in_a_contrast():
    df = make_cohort({"ASD": [0.0] * 15, "PSY": [0.0] * 10, "TDC": mixed(30, 0.5, 6)})
    res = run(df)
    row = res[(res["part"] == "probability") & (res["contrast"] == "ASD vs PSY")].iloc[0]
    assert row["note"] == "not estimable: no engagers in either group"
    assert res[(res["part"] == "probability") & (res["contrast"] == "ASD vs TDC")]["p"].notna().all()


@pytest.mark.filterwarnings("error")
def test_intensity_all_at_100_percent_in_a_group():
    df = make_cohort({"ASD": [100.0] * 8, "TDC": mixed(40, 0.6, 7)})
    res = run(df, groups=("ASD", "TDC"))
    row = res[res["part"] == "intensity"].iloc[0]
    assert row["note"] == "not estimable: every engager at 100 % (ASD): intensity at a boundary"
    assert row["n_fit"] == 0 and np.isnan(row["p"])


@pytest.mark.filterwarnings("error")
def test_group_at_100_percent_leaves_the_other_pairs_estimable():
    """Only the pairs with the 100 % group lose their intensity test; the model drops that group."""
    df = make_cohort({"ASD": [100.0] * 6 + [0.0] * 4, "PSY": mixed(30, 0.6, 12), "TDC": mixed(30, 0.6, 13)})
    res = run(df)
    inten = res[res["part"] == "intensity"].set_index("contrast")
    for c in ("ASD vs PSY", "ASD vs TDC"):
        assert inten.loc[c, "note"] == "not estimable: every engager at 100 % (ASD): intensity at a boundary"
    row = inten.loc["PSY vs TDC"]
    assert np.isfinite(row["p"]) and row["note"] == "groups left out of the model (every engager at 100 %): ASD"
    assert row["n_fit"] == row["engaged_a"] + row["engaged_b"]
    # the same numbers as a model of PSY and TDC alone
    alone = run(df[df["group"] != "ASD"], groups=("PSY", "TDC"))
    ref = alone[alone["part"] == "intensity"].iloc[0]
    assert row["estimate"] == pytest.approx(ref["estimate"], abs=1e-9) and row["se"] == pytest.approx(ref["se"], rel=1e-9)
    # the probability part is unaffected (ASD has engagers and non-engagers)
    assert res.loc[res["part"] == "probability", "p"].notna().all()


@pytest.mark.filterwarnings("error")
def test_covariate_induced_boundary_in_intensity_is_named():
    """Every engager with sex M at 100 %: the sex coefficient diverges; the note names it."""
    rng = np.random.default_rng(14)
    sex = np.array(["F", "M"] * 30)
    pct = rng.uniform(1, 30, 60)
    pct[sex == "M"] = 100.0
    pct[::7] = 0.0
    df = make_cohort({"A": list(pct[:30]), "B": list(pct[30:])}, sex=sex)
    res = run(df, groups=("A", "B"), covariates=("sex",))
    row = res[res["part"] == "intensity"].iloc[0]
    assert row["note"] == "not estimable: coefficient diverging (sex[M]): intensity at the 100 % boundary (quasi-separation)"
    assert np.isfinite(res.loc[res["part"] == "probability", "p"]).all()


@pytest.mark.filterwarnings("error")
def test_small_scale_covariate_is_not_mistaken_for_separation():
    """A covariate in small units has a large but ordinary coefficient (800 per unit on 0-0.01)."""
    rng = np.random.default_rng(3)
    n = 200
    x = rng.uniform(0, 0.01, n)
    eng = rng.random(n) < 1 / (1 + np.exp(-(-0.3 + 800 * (x - 0.005))))
    frac = 1 / (1 + np.exp(-(-1.5 + 800 * (x - 0.005) + rng.normal(0, 0.3, n))))
    df = make_cohort({"A": list(np.where(eng, 100 * frac, 0.0)[:100]), "B": list(np.where(eng, 100 * frac, 0.0)[100:])}, x=x)
    res = run(df, groups=("A", "B"), covariates=("x",))
    assert res["p"].notna().all() and res["note"].isna().all()
    assert res.loc[res["part"] == "probability", "method"].iloc[0] == "logistic GLM (maximum likelihood)"
    # the same analysis with x in units 1000 times larger gives the same group contrasts
    big = run(df.assign(x=df["x"] * 1000), groups=("A", "B"), covariates=("x",))
    np.testing.assert_allclose(big["estimate"], res["estimate"], atol=1e-7)
    np.testing.assert_allclose(big["p"], res["p"], atol=1e-7)


@pytest.mark.filterwarnings("error")
def test_pairwise_subsets_refit_each_pair():
    df = make_cohort({"ASD": mixed(40, 0.5, 8), "PSY": mixed(20, 0.5, 9), "TDC": mixed(40, 0.5, 10)})
    joint = run(df)
    pair = run(df, pairwise_subsets=True)
    assert list(pair["contrast"]) == list(joint["contrast"])
    # without covariates the probability contrasts coincide (saturated group model)
    np.testing.assert_allclose(pair.loc[pair.part == "probability", "estimate"], joint.loc[joint.part == "probability", "estimate"], atol=1e-6)
    assert (pair["n_fit"] <= joint["n_fit"]).all()


@pytest.mark.filterwarnings("error")
def test_categorical_covariate_level_absent_among_engagers_is_dropped():
    n = 60
    rng = np.random.default_rng(11)
    site = np.where(np.arange(n) < 6, "rare", np.where(np.arange(n) % 2, "A", "B"))
    pct = np.where(rng.random(n) < 0.6, rng.uniform(1, 20, n), 0.0)
    pct[:6] = 0.0  # nobody from the rare site engages
    df = make_cohort({"ASD": list(pct[:30]), "TDC": list(pct[30:])}, site=site)
    res = run(df, groups=("ASD", "TDC"), covariates=("site",))
    inten = res[res["part"] == "intensity"].iloc[0]
    assert "covariate columns dropped (no variation): site[rare]" in inten["note"]


@pytest.mark.filterwarnings("error")
def test_single_level_categorical_covariate_is_reported_as_dropped():
    df = make_cohort({"ASD": mixed(30, 0.6, 15), "TDC": mixed(30, 0.6, 16)}, site="X")
    res = run(df, groups=("ASD", "TDC"), covariates=("site",))
    assert (res["note"] == "covariate columns dropped (no variation): site").all()
    plain = run(df, groups=("ASD", "TDC"))
    np.testing.assert_allclose(res["estimate"], plain["estimate"], atol=1e-9)


@pytest.mark.filterwarnings("error")
def test_two_participants_per_group_and_labels_with_spaces():
    df = make_cohort({"group one": [0.0, 5.0], "group two": [3.0, 0.0], "group three": [1.0, 2.0]})
    res = run(df, groups=("group one", "group two", "group three"), min_engaged=2)
    prob = res[res["part"] == "probability"].set_index("contrast")
    assert prob.loc["group one vs group two", "effect"] == pytest.approx(1.0, abs=1e-8)
    assert "separation (group three: all engaged)" in prob.loc["group one vs group three", "note"]
    inten = res[res["part"] == "intensity"].set_index("contrast")
    assert inten["note"].str.startswith("not estimable: too few engagers").all()
    assert inten.loc["group one vs group two", "note"] == "not estimable: too few engagers (group one: 1, group two: 1 < 2)"


def test_profile_interval_whose_bracket_flips_falls_back_to_wald():
    """A real 6-participant cohort (the demo chain's read-out) whose constrained Firth fits near one
    profile-bound bracket depend on their start: the bracket seen during the search no longer held
    when brentq refitted it, and the whole analysis died with "f(a) and f(b) must have different
    signs". Now that contrast gets the Wald interval and every other result is unchanged."""
    from pathlib import Path

    from analysis.cohort import load_cohort, validate_cohort

    cfg = HurdleConfig(top_actions=0, covariates=("age",))
    cohort = validate_cohort(load_cohort(Path(__file__).parent / "data" / "firth_profile_bracket.csv"), cfg)
    res = hurdle_analysis(cohort, cfg)
    prob = res[res["part"] == "probability"]
    assert len(res) == 2 * 3 * cohort["action"].nunique()
    finite = prob[np.isfinite(prob["ci_low"]) & np.isfinite(prob["ci_high"])]
    assert (finite["ci_low"] <= finite["effect"]).all() and (finite["effect"] <= finite["ci_high"]).all()
