"""Misclassification-corrected percent time (analysis.misclassification, analysis.corrected_hurdle,
analysis.rubin): formulas, Rubin's rules by hand, 'none' == the hurdle before issue 23, and the
simulation proofs (bias uncorrected, recovery corrected, differential miss, coverage and FDP)."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.config import HurdleConfig
from analysis.corrected_hurdle import combine_imputations
from analysis.hurdle import hurdle_analysis, main
from analysis.misclassification import (
    ValidationError,
    corrected_cohort,
    estimate_rates,
    rate_grouping,
    validation_set,
)
from analysis.rubin import rubin_combine
from analysis.simulate import PlantedEffect, SimConfig, simulate_cohort
from analysis.simulate_errors import ReadoutErrors, misread_cohort

DATA = Path(__file__).parent / "data"
KEYS = ["action", "contrast", "part"]


def _sim(n=(120, 60, 120), actions=("nodding", "shaking head", "turning head", "head up"), effects=(), seed=0,
         errors=ReadoutErrors(fpr=0.002), eseed=1):  # fmt: skip
    cfg = SimConfig(groups=(("ASD", n[0]), ("PSY", n[1]), ("TDC", n[2])), actions=actions, effects=effects,
                    intensity_range=(0.08, 0.2), precision=20.0, seed=seed)  # fmt: skip
    cohort, truth = simulate_cohort(cfg)
    observed, confusion, scores = misread_cohort(cohort, errors, seed=eseed)
    return cohort, truth, observed, validation_set(confusion, scores)


def _by_key(res: pd.DataFrame, cols=("estimate", "se", "p", "p_adj", "ci_low", "ci_high")) -> pd.DataFrame:
    return res.set_index(KEYS)[list(cols)]


# ---------------------------------------------------------------------------------------------- formulas


def test_acc_formula_clip_and_zero_part():
    cohort = pd.DataFrame({
        "participant_id": list("abcde"), "group": ["ASD"] * 5, "action": ["nodding"] * 5, "action_id": 0,
        "percent_time": [0.0, 10.0, 30.0, 0.1, 90.0], "observed_s": [100.0] * 5,
    })  # fmt: skip
    rates = pd.DataFrame({"action": ["nodding"], "group": ["all"], "tpr": [0.6], "fpr": [0.02]})
    out = corrected_cohort(cohort, rates, "acc", zero_floor=0.0)["percent_time"].to_numpy()
    expect = np.clip((np.array([0, 0.1, 0.3, 0.001, 0.9]) - 0.02) / 0.58, 0, 1) * 100
    expect[0] = 0.0  # an observed zero stays zero
    np.testing.assert_allclose(out, expect, rtol=1e-12)
    assert out[3] == 0.0 and out[4] == 100.0  # clipped at both ends
    # the floor: 3000 frames, fpr 0.02 -> 99 % quantile of Binomial(3000, 0.02) frames count as none
    floored = corrected_cohort(cohort.assign(percent_time=[0.0, 2.2, 30.0, 0.1, 90.0]), rates, "acc", frame_rate=30.0)
    q = stats.binom.ppf(0.99, 3000, 0.02)
    assert round(0.022 * 3000) <= q and floored["percent_time"].iloc[1] == 0.0
    assert floored["percent_time"].iloc[2] > 0


def test_pacc_formula_uses_scores():
    cohort = pd.DataFrame({
        "participant_id": ["a", "b"], "group": ["ASD", "ASD"], "action": ["nodding"] * 2, "action_id": 0,
        "percent_time": [5.0, 20.0], "observed_s": [100.0, 100.0], "mean_score": [0.1, 0.3],
    })  # fmt: skip
    rates = pd.DataFrame({"action": ["nodding"], "group": ["all"], "tpr": [0.6], "fpr": [0.0], "s_pos": [0.7], "s_neg": [0.05]})
    out = corrected_cohort(cohort, rates, "pacc", zero_floor=0.0)["percent_time"].to_numpy()
    np.testing.assert_allclose(out, 100 * (np.array([0.1, 0.3]) - 0.05) / 0.65, rtol=1e-12)
    with pytest.raises(ValidationError, match="mean_score"):
        corrected_cohort(cohort.drop(columns="mean_score"), rates, "pacc")


def test_rates_pooled_by_frames_and_group_choice():
    conf = pd.DataFrame({
        "participant_id": ["a", "b", "c"], "group": ["ASD", "ASD", "PSY"], "action": ["nodding"] * 3,
        "reference": "consensus", "tp": [6, 0, 3], "fp": [1, 2, 0], "fn": [4, 0, 7], "tn": [89, 98, 90],
    })  # fmt: skip
    vs = validation_set(conf)
    r = estimate_rates(vs).iloc[0]
    assert r["tpr"] == pytest.approx(9 / 20) and r["fpr"] == pytest.approx(3 / 280)
    by_group, why = rate_grouping(vs, ("ASD", "PSY"), "auto", 5)
    assert not by_group and "too few coded participants" in why and "PSY 1" in why
    # per group requested but each group has only 1 participant showing the action: pooled for it
    r2 = estimate_rates(vs, by_group=True, groups=("ASD", "PSY"), min_positive=2)
    assert list(r2["group"]) == ["all"]
    r3 = estimate_rates(vs, by_group=True, groups=("ASD", "PSY"), min_positive=1)
    assert dict(zip(r3["group"], r3["tpr"])) == pytest.approx({"ASD": 0.6, "PSY": 0.3})


def test_ratio_formula_zero_part_and_undefined_ratio():
    """R = coded frames / read-out frames over the coded participants (pooled by frames); a participant
    is corrected to R x observed, clipped at 100 %; an observed zero stays zero; an action the read-out
    never marked on the coded participants has no R and is left as it is."""
    conf = pd.DataFrame({
        "participant_id": ["a", "b", "c", "a", "b", "c"], "group": ["ASD", "ASD", "PSY"] * 2,
        "action": ["nodding"] * 3 + ["waving"] * 3, "reference": "consensus",
        "tp": [6, 0, 3, 0, 0, 0], "fp": [1, 2, 0, 0, 0, 0], "fn": [4, 0, 7, 2, 0, 0], "tn": [89, 98, 90, 98, 100, 100],
    })  # fmt: skip
    rates = estimate_rates(validation_set(conf)).set_index("action")
    assert rates.at["nodding", "ratio"] == pytest.approx((10 + 0 + 10) / (7 + 2 + 3))
    assert rates.at["nodding", "read_frames"] == 12 and np.isnan(rates.at["waving", "ratio"])
    cohort = pd.DataFrame({
        "participant_id": list("pqrs") * 2, "group": "ASD", "action": ["nodding"] * 4 + ["waving"] * 4, "action_id": 0,
        "percent_time": [0.0, 3.0, 12.0, 70.0, 0.0, 1.0, 5.0, 9.0], "observed_s": 100.0,
    })  # fmt: skip
    out = corrected_cohort(cohort, rates.reset_index(), "ratio")["percent_time"].to_numpy()
    R = 20 / 12
    np.testing.assert_allclose(out[:4], [0.0, 3.0 * R, 12.0 * R, 100.0], rtol=1e-12)  # 70 R > 100: clipped
    np.testing.assert_allclose(out[4:], cohort["percent_time"].to_numpy()[4:])  # no ratio: as read out
    # per group (min_positive 1): ASD (6 + 4) / (6 + 1 + 0 + 2), PSY 10 / 3
    per = estimate_rates(validation_set(conf), by_group=True, groups=("ASD", "PSY"), min_positive=1)
    nod = per[per["action"] == "nodding"].set_index("group")["ratio"]
    assert nod.to_dict() == pytest.approx({"ASD": 10 / 9, "PSY": 10 / 3})
    with pytest.raises(ValueError, match="one of acc, pacc, ratio"):
        corrected_cohort(cohort, rates.reset_index(), "median")


def test_validation_errors_name_the_column():
    conf = pd.DataFrame({"participant_id": ["a"], "group": ["ASD"], "action": ["nodding"], "reference": ["x"],
                         "tp": [1], "fp": [0], "fn": [-1], "tn": [5]})  # fmt: skip
    with pytest.raises(ValidationError, match="'fn'"):
        validation_set(conf, source="confusion.parquet")
    with pytest.raises(ValidationError, match="missing column 'tn'"):
        validation_set(conf.drop(columns="tn"))
    two = pd.concat([conf.assign(fn=1), conf.assign(fn=1, reference="y")])
    with pytest.raises(ValidationError, match="several reference coders"):
        validation_set(two)


# ---------------------------------------------------------------------------------------------- Rubin


def test_rubin_three_imputations_by_hand():
    q = [1.0, 1.2, 0.8]
    u = [0.3, 0.25, 0.35]
    nu_com = 40.0
    M = 3
    qbar = (1.0 + 1.2 + 0.8) / 3
    W = (0.09 + 0.0625 + 0.1225) / 3
    B = ((1.0 - qbar) ** 2 + (1.2 - qbar) ** 2 + (0.8 - qbar) ** 2) / 2
    T = W + (1 + 1 / M) * B
    lam = (1 + 1 / M) * B / T
    nu_old = (M - 1) / lam**2
    nu_obs = (nu_com + 1) / (nu_com + 3) * nu_com * (1 - lam)
    nu = nu_old * nu_obs / (nu_old + nu_obs)
    p = 2 * stats.t.sf(qbar / math.sqrt(T), nu)
    out = rubin_combine(np.array(q)[:, None], np.array(u)[:, None], nu_com)
    assert out["estimate"][0] == pytest.approx(1.0, abs=1e-15)
    assert B == pytest.approx(0.04) and W == pytest.approx(0.0916666666666667)
    assert out["se"][0] == pytest.approx(math.sqrt(T), rel=1e-12)
    assert out["df"][0] == pytest.approx(nu, rel=1e-12)
    assert out["p"][0] == pytest.approx(p, rel=1e-12)
    crit = stats.t.ppf(0.975, nu)
    assert out["ci_low"][0] == pytest.approx(qbar - crit * math.sqrt(T), rel=1e-12)
    # z reference (nu_com infinite): Rubin's nu_old
    assert rubin_combine(np.array(q)[:, None], np.array(u)[:, None])["df"][0] == pytest.approx(nu_old, rel=1e-12)


def test_combine_imputations_of_result_tables_matches_rubin():
    cohort, _ = simulate_cohort(SimConfig(n_actions=2, seed=5))
    cfg = HurdleConfig(top_actions=0, intensity_se="hc2-t")
    base = hurdle_analysis(cohort, cfg)
    rng = np.random.default_rng(0)
    tables = []
    for _ in range(3):  # three "imputations": perturbed estimates and SEs
        t = base.copy()
        t["estimate"] = t["estimate"] + rng.normal(0, 0.1, len(t))
        t["se"] = t["se"] * rng.uniform(0.9, 1.1, len(t))
        tables.append(t)
    res = combine_imputations(base, tables, cfg)
    i = int(np.flatnonzero(base["p"].notna() & (base["part"] == "probability"))[0])
    hand = rubin_combine(np.array([t["estimate"].iat[i] for t in tables])[:, None],
                         np.array([t["se"].iat[i] for t in tables])[:, None])  # fmt: skip
    assert res["estimate"].iat[i] == pytest.approx(hand["estimate"][0], rel=1e-12)
    assert res["p"].iat[i] == pytest.approx(hand["p"][0], rel=1e-12)
    assert res["effect"].iat[i] == pytest.approx(math.exp(hand["estimate"][0]), rel=1e-12)
    j = int(np.flatnonzero(base["p"].notna() & (base["part"] == "intensity"))[0])
    nu_com = float(str(base["test"].iat[j]).split("(")[1].split(",")[1].split("df")[0])  # "Wald t (HC2, N df)"
    hand = rubin_combine(np.array([t["estimate"].iat[j] for t in tables])[:, None],
                         np.array([t["se"].iat[j] for t in tables])[:, None], nu_com)  # fmt: skip
    assert res["df"].iat[j] == pytest.approx(hand["df"][0], rel=1e-12)
    assert res["imputations_used"].iat[j] == 3


# ---------------------------------------------------------------------------------------------- none


def test_none_is_the_hurdle_before_issue_23():
    """The recorded table was computed by main's analysis.hurdle before issue 23 (same cohort, config)."""
    ref = pd.read_parquet(DATA / "hurdle_none_reference.parquet")
    text = [c for c in ref.columns if not pd.api.types.is_numeric_dtype(ref[c])]
    ref[text] = ref[text].astype(object).where(ref[text].notna(), None)
    c, _ = simulate_cohort(SimConfig(groups=(("ASD", 40), ("PSY", 20), ("TDC", 40)), n_actions=6, covariates=True,
                                     age_effect=0.2, seed=11))  # fmt: skip
    cfg = HurdleConfig(top_actions=0, covariates=("age", "sex"), intensity_resamples=199, min_engaged_test=5)
    for config in (cfg, replace(cfg, misclassification="none", validation="/nonexistent", imputations=7, zero_floor=0.5)):
        res = hurdle_analysis(c, config)
        assert list(res.columns) == list(ref.columns)
        # text columns come back from Parquet as pandas' string dtype; values compared, numbers to 1e-12
        pd.testing.assert_frame_equal(res, ref, check_exact=False, rtol=1e-12, atol=1e-12, check_dtype=False)
        for col in res.columns:
            if pd.api.types.is_float_dtype(res[col]):
                assert str(ref[col].dtype) == "float64"


# ---------------------------------------------------------------------------------------------- proofs


def test_simulation_bias_uncorrected_recovery_corrected():
    """Planted: nodding intensity PSY log(2.5), TDC probability log(0.4). The read-out finds 60 % of the
    action's frames and marks 0.2 % of the others: every participant looks engaged (the probability part
    is not estimable uncorrected) and the intensity log OR shrinks towards 0."""
    eff = (PlantedEffect("nodding", "PSY", "intensity", float(np.log(2.5))),
           PlantedEffect("nodding", "TDC", "probability", float(np.log(0.4))))  # fmt: skip
    cohort, truth, observed, vs = _sim(n=(300, 200, 300), effects=eff, seed=3)
    cfg = HurdleConfig(top_actions=0, intensity_se="hc2-t")
    plain = _by_key(hurdle_analysis(observed, cfg))
    acc = _by_key(hurdle_analysis(observed, replace(cfg, misclassification="acc", imputations=20), validation=vs))
    t = truth.set_index(KEYS)["true_log_or"]
    k = ("nodding", "ASD vs PSY", "intensity")
    bias_unc = plain.loc[k, "estimate"] - t[k]
    bias_acc = acc.loc[k, "estimate"] - t[k]
    assert abs(bias_unc) > 0.2  # -0.65 for the planted -0.92 (seed 3): 29 % of the effect lost
    assert abs(bias_acc) < 2 * acc.loc[k, "se"] and abs(bias_acc) < 0.5 * abs(bias_unc)
    assert acc.loc[k, "ci_low"] < math.exp(t[k]) < acc.loc[k, "ci_high"]
    # TDC engages less, so its false-positive-only participants dilute its mean more: an intensity
    # "effect" of 0.53 where none was planted (corrected: -0.01, se 0.12)
    k0 = ("nodding", "ASD vs TDC", "intensity")
    assert plain.loc[k0, "estimate"] > 0.4 and plain.loc[k0, "p_adj"] < 0.05  # p_adj 0.02
    assert abs(acc.loc[k0, "estimate"]) < 2 * acc.loc[k0, "se"]
    kp = ("nodding", "ASD vs PSY", "probability")
    assert np.isnan(plain.loc[kp, "estimate"])  # all engaged: not estimable uncorrected
    kp = ("nodding", "ASD vs TDC", "probability")
    assert abs(acc.loc[kp, "estimate"] - t[kp]) < 2 * acc.loc[kp, "se"]


def test_differential_miss_false_difference_uncorrected_none_corrected():
    """No true effect; the model misses nodding twice as often in PSY (tpr 0.3 vs 0.6)."""
    errors = ReadoutErrors(fpr=0.002, action_tpr={("nodding", "PSY"): 0.3})
    cohort, truth, observed, vs = _sim(n=(200, 200, 200), effects=(), seed=8, errors=errors, eseed=2)
    cfg = HurdleConfig(top_actions=0, intensity_se="hc2-t")
    plain = _by_key(hurdle_analysis(observed, cfg))
    acc_res = hurdle_analysis(observed, replace(cfg, misclassification="acc", imputations=20, error_rates="group"),
                              validation=vs)  # fmt: skip
    acc = _by_key(acc_res)
    for contrast in ("ASD vs PSY", "PSY vs TDC"):
        k = ("nodding", contrast, "intensity")
        assert plain.loc[k, "p_adj"] < 0.001  # a group difference out of nothing
        assert acc.loc[k, "p_adj"] > 0.05
    assert "rates per group" in acc_res["misclassification"].iat[0]


def test_boundary_errors_ratio_corrects_what_acc_cannot():
    """No true effect; the read-out finds 80 % of the frames everywhere but reads PSY's segments too long
    (0.8 boundary frames per true frame, 0.1 in ASD and TDC): PSY seems to hold its head up longer.
    ASD vs PSY intensity log OR (seed 12): -0.67 uncorrected, -0.37 with ACC per group (the extra frames
    count as false positives spread over every negative frame, so too little is taken off the engagers),
    +0.01 with the ratio estimator per group."""
    errors = ReadoutErrors(tpr=0.8, fpr=0.001, boundary=0.1, group_boundary={"PSY": 0.8})
    cohort, truth, observed, vs = _sim(n=(200, 200, 200), actions=("nodding", "head up"), seed=12, errors=errors, eseed=3)
    cfg = HurdleConfig(top_actions=0, intensity_se="hc2-t", error_rates="group")
    plain = _by_key(hurdle_analysis(observed, cfg))
    acc = _by_key(hurdle_analysis(observed, replace(cfg, misclassification="acc", imputations=20), validation=vs))
    ratio_res = hurdle_analysis(observed, replace(cfg, misclassification="ratio", imputations=20), validation=vs)
    ratio = _by_key(ratio_res)
    for contrast in ("ASD vs PSY", "PSY vs TDC"):
        k = ("head up", contrast, "intensity")
        assert plain.loc[k, "p_adj"] < 0.001 and acc.loc[k, "p_adj"] < 0.05, (plain.loc[k], acc.loc[k])
        assert ratio.loc[k, "p_adj"] > 0.05 and abs(ratio.loc[k, "estimate"]) < 2 * ratio.loc[k, "se"], ratio.loc[k]
    assert ratio_res["misclassification"].str.contains("ratio").all()
    assert ratio_res["misclassification"].str.contains("rates per group").all()
    # the zero part is the read-out's: R scales shares, so the probability part is the uncorrected one
    kp = ("head up", "ASD vs TDC", "probability")
    assert ratio.loc[kp, "estimate"] == pytest.approx(plain.loc[kp, "estimate"], rel=1e-9)


def test_ratio_recovers_a_planted_intensity_effect():
    """Planted: nodding intensity PSY log(2.5). The read-out finds 60 % of the frames and adds 0.3 boundary
    frames per true frame in every group: the ratio-corrected estimate is within 2 SE of the planted
    value and its interval covers it; the corrected share of the engagers is close to the truth."""
    eff = (PlantedEffect("nodding", "PSY", "intensity", float(np.log(2.5))),)
    errors = ReadoutErrors(tpr=0.6, fpr=0.0005, boundary=0.3)
    cohort, truth, observed, vs = _sim(n=(200, 200, 200), actions=("nodding", "head up"), effects=eff, seed=13,
                                       errors=errors, eseed=4)  # fmt: skip
    cfg = HurdleConfig(top_actions=0, intensity_se="hc2-t", misclassification="ratio", imputations=20)
    res = _by_key(hurdle_analysis(observed, cfg, validation=vs))
    t = truth.set_index(KEYS)["true_log_or"]
    k = ("nodding", "ASD vs PSY", "intensity")
    assert abs(res.loc[k, "estimate"] - t[k]) < 2 * res.loc[k, "se"]
    assert res.loc[k, "ci_low"] < math.exp(t[k]) < res.loc[k, "ci_high"]
    fixed = corrected_cohort(observed, estimate_rates(vs), "ratio")
    engaged = cohort["percent_time"] > 0
    for table, lo, hi in ((observed, 0.85, 0.95), (fixed, 0.97, 1.03)):  # read-out: 0.9 of the truth
        share = table.loc[engaged, "percent_time"].sum() / cohort.loc[engaged, "percent_time"].sum()
        assert lo < share < hi, share


@pytest.mark.parametrize("method, words", [("acc", "adjusted count"), ("ratio", "ratio estimator")])
def test_cli_corrected_with_bouts(tmp_path, method, words):
    cohort, _, observed, vs = _sim(n=(40, 40, 40), actions=("nodding", "shaking head"), seed=4)
    cpath = tmp_path / "cohort.parquet"
    observed.drop(columns="mean_score").to_parquet(cpath)
    vdir = tmp_path / "validation"
    vdir.mkdir()
    conf = vs.counts.assign(reference="consensus")
    conf.to_parquet(vdir / "confusion.parquet")
    rng = np.random.default_rng(0)
    b = rng.poisson(3, len(observed))
    bouts = observed[["participant_id", "group", "action_id", "action"]].assign(
        bouts=b, total_s=b * 2.0, mean_bout_s=np.where(b > 0, rng.gamma(2.0, 1.0, len(b)), np.nan),
        median_bout_s=np.nan, latency_s=np.nan)  # fmt: skip
    bpath = tmp_path / "bouts.parquet"
    bouts.to_parquet(bpath)
    out = tmp_path / "h"
    rc = main(["--cohort", str(cpath), "--misclassification", method, "--validation", str(vdir), "--imputations", "5",
               "--bouts", str(bpath), "--intensity-se", "hc2-t", "--no-plots", "--out", str(out), "-q"])  # fmt: skip
    assert rc == 0
    res = pd.read_parquet(out / "results.parquet")
    assert set(res["part"]) == {"probability", "intensity", "count", "duration"}
    assert res.loc[res["part"] == "intensity", "misclassification"].str.contains(words).all()
    assert res["estimate_uncorrected"].notna().any()
    with pytest.raises(SystemExit) as exc:
        main(["--cohort", str(cpath), "--misclassification", "acc", "--out", str(tmp_path / "x"), "-q"])
    assert exc.value.code == 2 and not (tmp_path / "x").exists()


def _fdp(res: pd.DataFrame, p_adj: pd.Series | None = None) -> float:
    """False discoveries / discoveries (0 without any) at BH 0.05 over the rows of ``res``."""
    q = res["p_adj"] if p_adj is None else p_adj
    rej = res["p"].notna() & (q < 0.05)
    return float((rej & ~res["planted"]).sum() / max(int(rej.sum()), 1))


@pytest.mark.slow
def test_coverage_and_fdp_over_200_simulations():
    """200 cohorts (2 planted effects, 4 null actions), each with its own validation draw: the corrected
    95 % intervals cover the planted log ORs 92-98 % of the time; the false-discovery proportion stays at
    the nominal 5 % (BH at 0.05) up to Monte-Carlo error, and at that of the same analysis on the
    error-free read-out.

    Three FDPs (docs/hurdle.md, "Read-out errors"): per family as the analysis adjusts (``--family part``:
    BH within each hurdle part), the two parts' discoveries pooled (not a family BH controls: two
    families each at 5 % pooled can exceed 5 %), and BH over both parts together (``--family all``, from
    the same p-values). The null tests' size (raw p < 0.05) of the corrected analysis is not above
    that of the error-free one: the correction adds no false positives of its own."""
    from analysis.correction import adjust_pvalues

    eff = (PlantedEffect("nodding", "PSY", "intensity", float(np.log(2.0))),
           PlantedEffect("shaking head", "TDC", "probability", float(np.log(0.5))))  # fmt: skip
    actions = ("nodding", "shaking head", "turning head", "head up", "tilting head", "shaking legs")
    cfg = HurdleConfig(top_actions=0, intensity_se="hc2-t", misclassification="acc", imputations=10, error_rates="pooled")
    plain = replace(cfg, misclassification="none")
    covered, tested = 0, 0
    fdp = {k: [] for k in ("pooled", "probability", "intensity", "all")}
    fdp_free = {k: [] for k in fdp}
    size, size_free = [], []
    for s in range(200):
        cohort, truth, observed, vs = _sim(n=(100, 60, 100), actions=actions, effects=eff, seed=1000 + s, eseed=s)
        res = hurdle_analysis(observed, cfg, validation=vs).merge(truth[KEYS + ["true_log_or", "planted"]], on=KEYS)
        free = hurdle_analysis(cohort, plain).merge(truth[KEYS + ["planted"]], on=KEYS)
        ok = res["p"].notna()
        inside = (np.log(res["ci_low"]) <= res["true_log_or"]) & (res["true_log_or"] <= np.log(res["ci_high"]))
        covered += int(inside[ok].sum())
        tested += int(ok.sum())
        for r, out, sz in ((res, fdp, size), (free, fdp_free, size_free)):
            out["pooled"].append(_fdp(r))
            for part in ("probability", "intensity"):
                out[part].append(_fdp(r[r["part"] == part]))
            out["all"].append(_fdp(r, adjust_pvalues(r, "fdr_bh", "all")))
            null = r[r["p"].notna() & ~r["planted"]]
            sz.append((null["part"].to_numpy(), (null["p"] < 0.05).to_numpy()))
    coverage = covered / tested
    mean = {k: float(np.mean(v)) for k, v in fdp.items()}
    se = {k: float(np.std(v, ddof=1) / np.sqrt(len(v))) for k, v in fdp.items()}
    mean_free = {k: float(np.mean(v)) for k, v in fdp_free.items()}
    print(f"\ncoverage {coverage:.4f} over {tested} tests; mean FDP corrected / error-free read-out (MC se):")
    for k in fdp:
        print(f"  {k:12s} {mean[k]:.4f} ({se[k]:.4f}) / {mean_free[k]:.4f}")
    rates, diff = {}, {}
    for name, sz in (("corrected", size), ("error-free", size_free)):
        part = np.concatenate([a for a, _ in sz])
        rej = np.concatenate([b for _, b in sz])
        rates[name] = {pt: float(rej[part == pt].mean()) for pt in ("probability", "intensity")}
        print(f"  null tests' size at 0.05, {name}: " + ", ".join(f"{k} {v:.4f}" for k, v in rates[name].items()))
    for pt in ("probability", "intensity"):  # paired by simulation: the same cohorts, corrected minus error-free
        d = np.array([b[a == pt].mean() - bf[af == pt].mean() for (a, b), (af, bf) in zip(size, size_free)])
        diff[pt] = (float(d.mean()), float(d.std(ddof=1) / np.sqrt(d.size)))
    print("  size difference corrected - error-free (MC se): " + ", ".join(f"{k} {m:+.4f} ({e:.4f})" for k, (m, e) in diff.items()))
    assert 0.92 <= coverage <= 0.98, coverage
    assert mean["pooled"] <= 0.05 + 2 * se["pooled"], (mean, se)
    assert mean["pooled"] <= mean_free["pooled"] + 2 * se["pooled"]
    for k in ("probability", "intensity", "all"):  # the families BH controls
        assert mean[k] <= 0.05 + 2 * se[k], (k, mean, se)
        assert mean[k] <= mean_free[k] + 2 * se[k], (k, mean, mean_free)
    for pt, (m, e) in diff.items():
        assert m <= 2 * e, (pt, diff, rates)


def test_workers_give_the_same_results():
    cohort, truth, observed, vs = _sim(n=(30, 30, 30), actions=("nodding", "head up"), seed=2)
    cfg = HurdleConfig(top_actions=0, intensity_se="hc2-t", misclassification="acc", imputations=4, min_engaged_test=3)
    a = hurdle_analysis(observed, cfg, validation=vs)
    b = hurdle_analysis(observed, replace(cfg, imputation_workers=2), validation=vs)
    pd.testing.assert_frame_equal(a, b)


def test_resampling_intensity_test_combines_its_hc2_se():
    """With the default permutation test the imputations are fitted with hc2-t: same estimate and SE."""
    cohort, truth, observed, vs = _sim(n=(40, 40, 40), actions=("nodding", "head up"), seed=6)
    cfg = HurdleConfig(top_actions=0, misclassification="acc", imputations=3, min_engaged_test=3, intensity_resamples=199)
    perm = hurdle_analysis(observed, cfg, validation=vs)
    hc2 = hurdle_analysis(observed, replace(cfg, intensity_se="hc2-t"), validation=vs)
    cols = ["estimate", "se", "p", "df"]
    pd.testing.assert_frame_equal(perm[cols], hc2[cols])
    assert perm["method"].str.contains("HC2").any()
