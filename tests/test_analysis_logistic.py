"""Probability part: published logistic regression through the CLI, Firth against an independent fit."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import optimize, special, stats

from analysis.config import HurdleConfig
from analysis.design import build_design
from analysis.hurdle import hurdle_analysis, main, probability_part
from analysis.logistic import firth_fit, fit_logistic, logistic_contrast

# Greene, Econometric Analysis, Spector & Mazzeo (1980) logit: GRADE on GPA, TUCE, PSI.
PUBLISHED = {"const": -13.02135, "GPA": 2.826113, "TUCE": 0.0951577, "PSI": 2.378688, "PSI_se": 1.064564, "PSI_z": 2.234, "PSI_p": 0.0255}


def spector_cohort() -> pd.DataFrame:
    d = sm.datasets.spector.load_pandas().data
    return pd.DataFrame(
        {
            "participant_id": [f"s{i:02d}" for i in range(len(d))],
            "group": np.where(d["PSI"] == 1, "PSI", "control"),
            "action_id": 9,
            "action": "nodding",
            "percent_time": np.where(d["GRADE"] == 1, 12.5, 0.0),  # engaged = GRADE
            "observed_s": 150.0,
            "GPA": d["GPA"],
            "TUCE": d["TUCE"],
        }
    )


def test_published_numbers_hold_for_direct_statsmodels_logit():
    d = sm.datasets.spector.load_pandas().data
    r = sm.Logit(d["GRADE"], sm.add_constant(d[["GPA", "TUCE", "PSI"]])).fit(disp=0)
    for k in ("const", "GPA", "TUCE", "PSI"):
        assert r.params[k] == pytest.approx(PUBLISHED[k], rel=1e-5)
    assert r.bse["PSI"] == pytest.approx(PUBLISHED["PSI_se"], rel=1e-5)
    assert r.tvalues["PSI"] == pytest.approx(PUBLISHED["PSI_z"], abs=5e-4)
    assert round(r.pvalues["PSI"], 4) == PUBLISHED["PSI_p"]


def test_cli_reproduces_spector_logit(tmp_path, capsys):
    path = tmp_path / "spector.parquet"
    spector_cohort().to_parquet(path)
    out = tmp_path / "out"
    rc = main(["--cohort", str(path), "--groups", "PSI,control", "--covariates", "GPA,TUCE", "--out", str(out), "--no-plots", "-q"])
    assert rc == 0
    assert f"wrote {out / 'results.parquet'}" in capsys.readouterr().out
    res = pd.read_csv(out / "results.csv")
    row = res[(res["part"] == "probability")].iloc[0]
    assert row["contrast"] == "PSI vs control" and row["direction"] == "PSI > control"
    assert row["method"].startswith("logistic GLM")
    # odds ratio and p to 4 significant digits
    assert f"{row['effect']:.4g}" == f"{np.exp(PUBLISHED['PSI']):.4g}"
    assert f"{row['estimate']:.6f}" == f"{PUBLISHED['PSI']:.6f}"
    assert row["se"] == pytest.approx(PUBLISHED["PSI_se"], rel=1e-6)
    assert f"{row['p']:.3g}" == f"{PUBLISHED['PSI_p']:.3g}"
    d = sm.datasets.spector.load_pandas().data
    ref_p = sm.Logit(d["GRADE"], sm.add_constant(d[["GPA", "TUCE", "PSI"]])).fit(disp=0).pvalues["PSI"]
    assert f"{row['p']:.4g}" == f"{ref_p:.4g}"
    z = 1.959963984540054
    assert row["ci_low"] == pytest.approx(np.exp(PUBLISHED["PSI"] - z * PUBLISHED["PSI_se"]), rel=1e-5)
    assert row["ci_high"] == pytest.approx(np.exp(PUBLISHED["PSI"] + z * PUBLISHED["PSI_se"]), rel=1e-5)
    assert pd.isna(row["note"])


# ---------------------------------------------------------------- Firth


def _independent_firth_nll(beta, X, y):
    """Negative Jeffreys-penalised log-likelihood, written out separately from analysis.logistic."""
    eta = X @ beta
    p = 1 / (1 + np.exp(-eta))
    ll = np.sum(y * np.log(p) + (1 - y) * np.log1p(-p))
    W = p * (1 - p)
    info = X.T @ np.diag(W) @ X
    return -(ll + 0.5 * np.log(np.linalg.det(info)))


def _design_data(seed=3, n=60):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 3, n)
    X = np.column_stack([np.ones(n), g == 1, g == 2, rng.normal(size=n)]).astype(float)
    y = (rng.random(n) < special.expit(-0.5 + 0.8 * (g == 1) + 0.5 * X[:, 3])).astype(float)
    return X, y


@pytest.mark.parametrize("separated", [False, True])
def test_firth_matches_direct_maximisation(separated):
    X, y = _design_data()
    if separated:
        y[X[:, 2] == 1] = 0.0  # group 2 has no events: quasi-complete separation
    ours = firth_fit(X, y)
    ref = optimize.minimize(_independent_firth_nll, np.zeros(X.shape[1]), args=(X, y), method="BFGS", options={"gtol": 1e-10})
    assert ours.converged
    np.testing.assert_allclose(ours.params, ref.x, atol=2e-5)
    assert ours.pll == pytest.approx(-ref.fun, abs=1e-8)


def test_firth_plr_test_matches_direct_constrained_maximisation():
    X, y = _design_data()
    y[X[:, 2] == 1] = 0.0
    full = firth_fit(X, y)
    L = np.array([0.0, 1.0, -1.0, 0.0])  # group 1 vs group 2
    con = firth_fit(X, y, L=L, t=0.0)
    # independent: beta1 = beta2 = b, parametrise (b0, b, b3)
    M = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1]], dtype=float)
    ref = optimize.minimize(lambda g: _independent_firth_nll(M @ g, X, y), np.zeros(3), method="BFGS", options={"gtol": 1e-10})
    assert con.pll == pytest.approx(-ref.fun, abs=1e-7)
    np.testing.assert_allclose(con.params, M @ ref.x, atol=2e-5)
    assert L @ con.params == pytest.approx(0.0, abs=1e-12)
    assert full.pll >= con.pll


def test_firth_finite_under_complete_separation():
    n = 20
    X = np.column_stack([np.ones(n), np.r_[np.zeros(10), np.ones(10)]])
    y = np.r_[np.zeros(10), np.ones(10)]  # the group dummy predicts y perfectly
    r = firth_fit(X, y)
    assert r.converged and np.all(np.isfinite(r.params))
    # closed form for a single binary predictor: log odds with 0.5 added to each cell
    assert r.params[1] == pytest.approx(np.log((10.5 / 0.5) / (0.5 / 10.5)), rel=1e-8)


def test_contrast_under_complete_separation_is_finite_and_flagged():
    data = pd.DataFrame({"group": ["A"] * 15 + ["B"] * 15, "percent_time": [0.0] * 15 + [5.0] * 15})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        design = build_design(data, ["A", "B"])
        fit = fit_logistic(design, (data["percent_time"] > 0).to_numpy(float))
        out = logistic_contrast(fit, "A", "B")
    assert fit.method == "firth" and "A: no engagers" in fit.separation
    assert np.isfinite(out["estimate"]) and out["estimate"] < 0
    assert out["ci_low"] < out["estimate"] < out["ci_high"] < 0
    assert 0 < out["p"] < 1e-4 and out["test"] == "penalised LR chi2" and out["ci"] == "profile"


def test_profile_interval_solves_the_likelihood_ratio_equation():
    X, y = _design_data(seed=5)
    y[X[:, 1] == 1] = 1.0  # group 1 all engaged
    data = pd.DataFrame({"group": np.where(X[:, 1] == 1, "B", np.where(X[:, 2] == 1, "C", "A")), "x": X[:, 3]})
    design = build_design(data, ["A", "B", "C"], ["x"])
    fit = fit_logistic(design, y)
    assert fit.method == "firth"
    out = logistic_contrast(fit, "B", "C")
    L = design.contrast_vector("B", "C")
    for bound in (out["ci_low"], out["ci_high"]):
        con = firth_fit(design.X, y, L=L, t=bound)
        assert 2 * (fit.firth.pll - con.pll) == pytest.approx(1.959963984540054**2, abs=1e-5)


def test_firth_always_option_and_wald_ci():
    X, y = _design_data()
    data = pd.DataFrame({"participant_id": [f"p{i}" for i in range(len(y))], "group": np.where(X[:, 1] == 1, "B", np.where(X[:, 2] == 1, "C", "A")),
                         "action_id": 9, "action": "nodding", "percent_time": y * 10, "observed_s": 100.0})  # fmt: skip
    res = hurdle_analysis(data, HurdleConfig(groups=("A", "B", "C"), firth="always", firth_ci="wald"))
    prob = res[res["part"] == "probability"]
    assert (prob["method"] == "Firth penalised logistic regression").all()
    assert (prob["ci_method"] == "wald").all()
    assert prob["note"].str.contains("Firth").all()


# ---------------------------------------------------------------- contrasts not involving the reference


def _three_group_data(seed=7, n=240):
    rng = np.random.default_rng(seed)
    g = rng.choice(["A", "B", "C"], n, p=[0.4, 0.25, 0.35])
    age = rng.uniform(5, 50, n)
    sex = rng.choice(["F", "M"], n)
    eng = rng.random(n) < special.expit(-0.3 + 0.9 * (g == "B") - 0.4 * (g == "C") + 0.03 * (age - 25) + 0.3 * (sex == "M"))
    pct = np.where(eng, 100 * np.clip(rng.beta(2, 9, n), 1e-4, 1), 0.0)
    return pd.DataFrame({"participant_id": [f"p{i}" for i in range(n)], "group": g, "age": age, "sex": sex, "percent_time": pct})


def test_non_reference_contrast_matches_refit_with_that_reference():
    """B vs C (A is the model's reference) equals the B coefficient of a refit with C as reference."""
    d = _three_group_data()
    res = probability_part(d, HurdleConfig(groups=("A", "B", "C"), covariates=("age", "sex")))
    row = res[res["contrast"] == "B vs C"].iloc[0]
    X = pd.DataFrame({"const": 1.0, "A": (d.group == "A") * 1.0, "B": (d.group == "B") * 1.0, "age": d.age, "M": (d.sex == "M") * 1.0})
    y = (d.percent_time > 0).astype(float)
    ref = sm.Logit(y, X).fit(disp=0, method="newton", tol=1e-12)
    assert row.estimate == pytest.approx(ref.params["B"], abs=1e-7)
    assert row.se == pytest.approx(ref.bse["B"], rel=1e-6)
    assert row.p == pytest.approx(ref.pvalues["B"], rel=1e-5)
    assert row.estimate > 0 and row.direction == "B > C"
    # average marginal effect: counterfactual predictions, everybody in B minus everybody in C
    xb, xc = X.assign(A=0.0, B=1.0), X.assign(A=0.0, B=0.0)
    assert row.ame_pp == pytest.approx(100 * np.mean(ref.predict(xb) - ref.predict(xc)), abs=1e-6)


def test_ame_equals_finite_difference_without_covariates():
    """Group-only model: AME = difference of the groups' observed engagement rates (saturated fit)."""
    d = _three_group_data(seed=8)
    res = probability_part(d, HurdleConfig(groups=("A", "B", "C"))).set_index("contrast")
    rate = (d.percent_time > 0).groupby(d.group).mean()
    for a, b in (("A", "B"), ("A", "C"), ("B", "C")):
        assert res.loc[f"{a} vs {b}", "ame_pp"] == pytest.approx(100 * (rate[a] - rate[b]), abs=1e-6)
        assert res.loc[f"{a} vs {b}", "ame_pp"] == pytest.approx(res.loc[f"{a} vs {b}", "pct_engaged_a"] - res.loc[f"{a} vs {b}", "pct_engaged_b"], abs=1e-6)


# ---------------------------------------------------------------- Firth: closed form, penalised LR p


def _two_by_two(a, b, c, d):
    """Group A: a engaged, b not; group B: c engaged, d not."""
    g = ["A"] * (a + b) + ["B"] * (c + d)
    pct = [5.0] * a + [0.0] * b + [5.0] * c + [0.0] * d
    return pd.DataFrame({"group": g, "percent_time": pct})


@pytest.mark.parametrize("cells,firth", [((3, 12, 0, 15), "auto"), ((7, 3, 10, 0), "auto"), ((6, 9, 11, 4), "always"), ((2, 5, 1, 9), "always")])
def test_firth_single_binary_covariate_closed_form(cells, firth):
    """With one binary covariate the Firth log odds ratio is the 2x2 log OR with 0.5 added to each cell."""
    a, b, c, d = cells
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        row = probability_part(_two_by_two(*cells), HurdleConfig(groups=("A", "B"), firth=firth)).iloc[0]
    assert row.method == "Firth penalised logistic regression"
    closed = np.log((a + 0.5) * (d + 0.5) / ((b + 0.5) * (c + 0.5)))
    assert row.estimate == pytest.approx(closed, abs=1e-8)
    assert row.effect == pytest.approx(np.exp(closed), rel=1e-8)
    # the p of a Firth row is the penalised likelihood-ratio p, not the Wald p
    X = np.column_stack([np.ones(a + b + c + d), np.r_[np.ones(a + b), np.zeros(c + d)]])
    y = np.r_[np.ones(a), np.zeros(b), np.ones(c), np.zeros(d)]
    full = -optimize.minimize(_independent_firth_nll, np.zeros(2), args=(X, y), method="BFGS", options={"gtol": 1e-10}).fun
    null = -optimize.minimize_scalar(lambda b0: _independent_firth_nll(np.array([b0, 0.0]), X, y), bounds=(-10, 10), method="bounded",
                                     options={"xatol": 1e-12}).fun  # fmt: skip
    lr = 2 * (full - null)
    assert row.test == "penalised LR chi2" and row.statistic == pytest.approx(lr, abs=1e-6)
    assert row.p == pytest.approx(stats.chi2.sf(lr, 1), rel=1e-5)
    wald_p = 2 * stats.norm.sf(abs(row.estimate / row.se))
    assert abs(row.p - wald_p) > 1e-4  # would catch a Wald p reported as the PLR p
    # profile bounds: the penalised LR statistic equals chi2(0.95, 1) at each bound
    for bound in (np.log(row.ci_low), np.log(row.ci_high)):
        pb = -optimize.minimize_scalar(lambda b0: _independent_firth_nll(np.array([b0, bound]), X, y), bounds=(-20, 20), method="bounded",
                                       options={"xatol": 1e-12}).fun  # fmt: skip
        assert 2 * (full - pb) == pytest.approx(stats.chi2.ppf(0.95, 1), abs=1e-4)
    assert row.ci_low < row.effect < row.ci_high


@pytest.mark.parametrize("seed", range(8))
def test_ml_standard_errors_are_taken_at_the_final_estimate(seed):
    """Issue 8, item 10: the covariance must be the inverse information X'WX at the returned beta.

    statsmodels' IRLS reports the weights of the iteration before the last one, which left the
    standard errors up to 1e-7 (relative) off R's glm (6e-8 for seed 5 here). The reference is computed
    independently with numpy at the returned estimate, and the estimate itself is checked to be the ML
    optimum (score X'(y - p) = 0) so that the comparison is at the right point.
    """
    rng = np.random.default_rng(seed)
    n = int(rng.integers(30, 300))
    df = pd.DataFrame({"group": rng.choice(["ASD", "PSY", "TDC"], n), "age": rng.uniform(5, 52, n)})
    eta = -1.5 + 1.5 * (df["group"] == "PSY") - 0.6 * (df["group"] == "TDC") + 0.05 * (df["age"] - 25)
    y = (rng.random(n) < special.expit(eta)).astype(float)
    design = build_design(df, ["ASD", "PSY", "TDC"], ["age"])
    fit = fit_logistic(design, y)
    assert fit.method == "ml"
    X, beta = design.X, fit.params
    p = special.expit(X @ beta)
    assert np.max(np.abs(X.T @ (y - p))) < 1e-8  # the returned beta is the ML optimum
    ref_cov = np.linalg.inv((X * (p * (1 - p))[:, None]).T @ X)
    np.testing.assert_allclose(np.sqrt(np.diag(fit.cov)), np.sqrt(np.diag(ref_cov)), rtol=1e-10, atol=0)
    np.testing.assert_allclose(fit.cov, ref_cov, rtol=1e-9, atol=1e-14)
    L = design.contrast_vector("PSY", "TDC")  # and a contrast's SE follows from it
    assert logistic_contrast(fit, "PSY", "TDC")["se"] == pytest.approx(float(np.sqrt(L @ ref_cov @ L)), rel=1e-10)
