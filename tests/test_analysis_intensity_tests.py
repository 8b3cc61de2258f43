"""Intensity tests (analysis.intensity_tests, analysis.fractional): sandwich kinds, batched fits, t
reference, wild score bootstrap and permutation test, each against an independent computation."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import special, stats

from analysis.config import INTENSITY_SE, HurdleConfig
from analysis.design import build_design
from analysis.fractional import fit_fractional, fit_fractional_batch, hat_values, robust_sandwich
from analysis.hurdle import intensity_part
from analysis.intensity_tests import (
    INTENSITY_METHODS,
    analytic_tests,
    contrast_test,
    permutation_pvalues,
    score_statistic,
    wild_score_pvalues,
)

GROUPS = ["ASD", "PSY", "TDC"]


def _data(seed=1, sizes=(14, 9, 16), covariate=False):
    rng = np.random.default_rng(seed)
    g = np.repeat(GROUPS, sizes)
    n = g.size
    y = np.clip(rng.beta(0.6, 7.0, n), 1 / 30, 1.0)
    d = pd.DataFrame({"participant_id": [f"p{i}" for i in range(n)], "group": g, "percent_time": 100 * y})
    if covariate:
        d["age"] = rng.uniform(5, 50, n)
    return d


def _sandwich_by_loops(X, y, b, kind):
    """The sandwich written observation by observation, hat values from the explicit hat matrix."""
    mu = special.expit(X @ b)
    w = mu * (1 - mu)
    A = sum(w[i] * np.outer(X[i], X[i]) for i in range(len(y)))
    Ainv = np.linalg.inv(A)
    Wh = np.diag(np.sqrt(w))
    H = Wh @ X @ Ainv @ X.T @ Wh
    h = np.diag(H)
    power = {"hc0": 0, "hc2": 1, "hc3": 2}[kind]
    M = sum((y[i] - mu[i]) ** 2 / (1 - h[i]) ** power * np.outer(X[i], X[i]) for i in range(len(y)))
    return Ainv @ M @ Ainv, h


def test_method_names_agree_with_the_config():
    assert tuple(INTENSITY_METHODS) == INTENSITY_SE
    assert HurdleConfig().intensity_se in INTENSITY_SE
    with pytest.raises(ValueError, match="intensity_se must be one of"):
        HurdleConfig(intensity_se="hc1")


@pytest.mark.parametrize("kind", ["hc0", "hc2", "hc3"])
def test_sandwich_kinds_match_loops_with_the_explicit_hat_matrix(kind):
    d = _data(seed=2, covariate=True)
    design = build_design(d, GROUPS, ["age"])
    y = d["percent_time"].to_numpy() / 100
    fit = fit_fractional(design, y, sandwich=kind)
    V, h = _sandwich_by_loops(design.X, y, fit.params, kind)
    np.testing.assert_allclose(fit.cov, V, rtol=1e-10)
    np.testing.assert_allclose(hat_values(design.X, fit.params), h, rtol=1e-10)
    assert hat_values(design.X, fit.params).sum() == pytest.approx(design.X.shape[1])


def test_statsmodels_glm_hc2_is_hc0_so_the_sandwich_is_ours():
    """Why analysis.fractional writes the sandwich out: statsmodels' GLM returns HC0 for cov_type HC2/HC3."""
    d = _data(seed=3)
    design = build_design(d, GROUPS)
    y = d["percent_time"].to_numpy() / 100
    hc0 = sm.GLM(y, design.X, family=sm.families.Binomial()).fit(tol=1e-13, cov_type="HC0").cov_params()
    ours = fit_fractional(design, y, sandwich="hc2").cov
    assert not np.allclose(ours, hc0, rtol=1e-3)  # HC2 is larger: leverage 1/n_g in a groups-only model
    np.testing.assert_allclose(robust_sandwich(design.X, y, fit_fractional(design, y).params, kind="hc0"), hc0, rtol=1e-7)


def test_batched_fit_matches_one_statsmodels_fit_per_outcome():
    d = _data(seed=4, covariate=True)
    design = build_design(d, GROUPS, ["age"])
    rng = np.random.default_rng(0)
    Y = np.clip(rng.beta(0.8, 6.0, (5, len(d))), 1e-3, 1.0)
    params, converged = fit_fractional_batch(design.X, Y)
    assert converged.all()
    for r in range(len(Y)):
        ref = sm.GLM(Y[r], design.X, family=sm.families.Binomial()).fit(tol=1e-13, maxiter=300).params
        np.testing.assert_allclose(params[r], ref, atol=1e-8)
    V = robust_sandwich(design.X, Y, params, kind="hc3")
    for r in range(len(Y)):
        np.testing.assert_allclose(V[r], _sandwich_by_loops(design.X, Y[r], params[r], "hc3")[0], rtol=1e-8)


def test_t_reference_uses_n_minus_p_degrees_of_freedom():
    d = _data(seed=5)
    design = build_design(d, GROUPS)
    y = d["percent_time"].to_numpy() / 100
    fit = fit_fractional(design, y, sandwich="hc2")
    L = design.contrast_vector("PSY", "TDC")
    V, _ = _sandwich_by_loops(design.X, y, fit.params, "hc2")
    est, se = L @ fit.params, np.sqrt(L @ V @ L)
    df = len(y) - 3
    out = contrast_test(fit, "PSY", "TDC", "hc2-t", ci_level=0.9)
    assert out["p"] == pytest.approx(2 * stats.t.sf(abs(est / se), df), rel=1e-9)
    assert out["ci_low"] == pytest.approx(est - stats.t.ppf(0.95, df) * se, rel=1e-9)
    assert out["test"] == f"Wald t (HC2, {df} df)"
    z = analytic_tests(design.X, y[None], fit.params[None], L, "hc2-z")
    assert z["p"][0] == pytest.approx(2 * stats.norm.sf(abs(est / se)), rel=1e-9)


@pytest.mark.parametrize("covariate", [False, True])
def test_wild_score_bootstrap_matches_a_restricted_fit_by_merged_groups(covariate):
    """The restricted fit under beta_PSY = beta_TDC is the model with PSY and TDC merged (statsmodels)."""
    d = _data(seed=6, covariate=covariate)
    covs = ["age"] if covariate else []
    design = build_design(d, GROUPS, covs)
    y = d["percent_time"].to_numpy() / 100
    merged = build_design(d.assign(group=d["group"].replace({"TDC": "PSY"})), ["ASD", "PSY"], covs)
    mu0 = sm.GLM(y, merged.X, family=sm.families.Binomial()).fit(tol=1e-13, maxiter=300).fittedvalues
    X = design.X
    B0 = (X * (mu0 * (1 - mu0))[:, None]).T @ X
    L = design.contrast_vector("PSY", "TDC")
    a = (L @ np.linalg.inv(B0) @ X.T) * (y - mu0)
    t_obs = a.sum() / np.sqrt((a**2).sum())
    v = np.random.default_rng(11).choice(np.array([-1.0, 1.0]), size=(499, len(y)))
    t_star = v @ a / np.sqrt((a**2).sum())
    expected = (1 + np.sum(np.abs(t_star) >= abs(t_obs))) / 500
    assert wild_score_pvalues(X, y[None], L, resamples=499, seed=11)[0] == pytest.approx(expected, abs=1e-12)


def test_wild_score_bootstrap_with_all_sign_vectors_is_a_sign_flip_test():
    """Many draws approach the exact p over all 2^n sign vectors (n = 12)."""
    d = _data(seed=7, sizes=(4, 4, 4))
    design = build_design(d, GROUPS)
    y = d["percent_time"].to_numpy() / 100
    L = design.contrast_vector("ASD", "PSY")
    merged = build_design(d.assign(group=d["group"].replace({"PSY": "ASD"})), ["ASD", "TDC"])
    mu0 = sm.GLM(y, merged.X, family=sm.families.Binomial()).fit(tol=1e-13).fittedvalues
    X = design.X
    a = (L @ np.linalg.inv((X * (mu0 * (1 - mu0))[:, None]).T @ X) @ X.T) * (y - mu0)
    signs = np.array(list(itertools.product([-1.0, 1.0], repeat=len(y))))
    exact = np.mean(np.abs(signs @ a) >= abs(a.sum()) - 1e-12)
    p = wild_score_pvalues(X, y[None], L, resamples=40_000, seed=1)[0]
    assert p == pytest.approx(exact, abs=4 * np.sqrt(exact * (1 - exact) / 40_000) + 1e-4)


def _score_statistic(d, groups, y, a, b, covs=()):
    """Robust score statistic of a vs b: restricted fit with a and b merged (statsmodels), then
    ``sum a_i / sqrt(sum a_i^2)``, ``a_i = L B0^{-1} x_i e_i``."""
    D = build_design(d.assign(group=groups), GROUPS, list(covs))
    merged = build_design(d.assign(group=pd.Series(groups).replace({b: a}).to_numpy()), [g for g in GROUPS if g != b], list(covs))
    mu0 = sm.GLM(y, merged.X, family=sm.families.Binomial()).fit(tol=1e-13, maxiter=300).fittedvalues
    X = D.X
    L = D.contrast_vector(a, b)
    ai = (L @ np.linalg.inv((X * (mu0 * (1 - mu0))[:, None]).T @ X) @ X.T) * (y - mu0)
    return ai.sum() / np.sqrt((ai**2).sum())


@pytest.mark.parametrize("covariate", [False, True])
def test_permutation_matches_complete_enumeration_of_labels(covariate):
    """4 + 4 engagers: the 70 relabellings, each with its own restricted fit by statsmodels, give the exact p."""
    d = _data(seed=8, sizes=(5, 4, 4), covariate=covariate)
    covs = ("age",) if covariate else ()
    design = build_design(d, GROUPS, list(covs))
    y = d["percent_time"].to_numpy() / 100
    g0 = d["group"].to_numpy()
    rows = np.flatnonzero(np.isin(g0, ["PSY", "TDC"]))
    t_obs = _score_statistic(d, g0, y, "PSY", "TDC", covs)
    ts = []
    for chosen in itertools.combinations(rows, 4):
        g = g0.copy()
        g[rows] = "TDC"
        g[list(chosen)] = "PSY"
        ts.append(_score_statistic(d, g, y, "PSY", "TDC", covs))
    exact = np.mean(np.abs(ts) >= abs(t_obs) * (1 - 1e-9))
    p = permutation_pvalues(design, y[None], "PSY", "TDC", resamples=20_000, seed=2)[0]
    assert p == pytest.approx(exact, abs=4 * np.sqrt(exact * (1 - exact) / 20_000) + 1e-4)


def test_permutation_closed_form_equals_refitting_each_draw(monkeypatch):
    """Groups-only shortcut (group sums) and the general path (projection on the restricted columns) agree."""
    import analysis.intensity_tests as it

    d = _data(seed=9)
    design = build_design(d, GROUPS)
    y = d["percent_time"].to_numpy() / 100
    fast = permutation_pvalues(design, y[None], "ASD", "TDC", resamples=300, seed=4)
    monkeypatch.setattr(it, "_groups_only", lambda design: False)
    slow = permutation_pvalues(design, y[None], "ASD", "TDC", resamples=300, seed=4)
    assert fast[0] == pytest.approx(slow[0], abs=1e-12)


def test_every_method_runs_through_the_hurdle_rows():
    d = _data(seed=10, covariate=True)
    for method in INTENSITY_SE:
        res = intensity_part(d, HurdleConfig(covariates=("age",), intensity_se=method, intensity_resamples=199, min_engaged_test=0))
        assert len(res) == 3 and res["p"].between(0, 1).all(), method
        assert res["method"].str.startswith("fractional logit").all()
    same = [intensity_part(d, HurdleConfig(intensity_se="wild", intensity_seed=s))["p"].to_numpy() for s in (0, 0, 1)]
    np.testing.assert_array_equal(same[0], same[1])  # seeded: repeats exactly


def test_too_few_engagers_for_a_test_keep_the_estimate_without_p():
    d = _data(seed=11, sizes=(12, 6, 12))
    cfg = HurdleConfig(min_engaged_test=8)
    res = intensity_part(d, cfg).set_index("contrast")
    for c in ("ASD vs PSY", "PSY vs TDC"):
        row = res.loc[c]
        assert np.isnan(row["p"]) and np.isnan(row["se"]) and np.isnan(row["ci_low"])
        assert np.isfinite(row["estimate"]) and row["effect"] == pytest.approx(np.exp(row["estimate"]))
        assert row["note"].startswith("not tested: too few engagers for any intensity test to hold its size (PSY: 6 < 8)")
    assert np.isfinite(res.loc["ASD vs TDC", "p"])
    full = intensity_part(d, HurdleConfig(min_engaged_test=6)).set_index("contrast")
    assert full["p"].notna().all()
    np.testing.assert_allclose(full["estimate"], res["estimate"])


def test_resampling_rows_report_the_score_statistic_and_hc2_t_interval():
    d = _data(seed=12, sizes=(14, 13, 16))
    res = intensity_part(d, HurdleConfig()).set_index("contrast")
    design = build_design(d, GROUPS)
    y = d["percent_time"].to_numpy() / 100
    fit = fit_fractional(design, y, sandwich="hc2")
    for (a, b), row in zip([("ASD", "PSY"), ("ASD", "TDC"), ("PSY", "TDC")], res.itertuples()):
        L = design.contrast_vector(a, b)
        assert row.statistic == pytest.approx(score_statistic(design.X, y[None], L)[0][0], rel=1e-10)
        assert row.se == pytest.approx(np.sqrt(L @ fit.cov @ L), rel=1e-10)
        assert row.ci_method == "wald-t" and row.test == "permutation (1999 draws, robust score statistic)"
        assert row.p == pytest.approx(permutation_pvalues(design, y[None], a, b)[0])
