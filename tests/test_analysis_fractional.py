"""Intensity part: fractional logit against an independent quasi-likelihood fit and sandwich."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import optimize, special, stats

from analysis.config import HurdleConfig
from analysis.design import build_design
from analysis.fractional import fit_fractional, robust_sandwich
from analysis.hurdle import intensity_part


def _data(seed=1, n=150):
    rng = np.random.default_rng(seed)
    g = rng.choice(["ASD", "PSY", "TDC"], n, p=[0.4, 0.2, 0.4])
    age = rng.uniform(5, 50, n)
    mu = special.expit(-2.0 + 0.6 * (g == "PSY") - 0.3 * (g == "TDC") + 0.01 * age)
    y = np.clip(rng.beta(mu * 6, (1 - mu) * 6), 1e-4, 1.0)
    y[:3] = 1.0  # boundary values are legal for the quasi-likelihood
    return pd.DataFrame({"participant_id": [f"p{i}" for i in range(n)], "group": g, "age": age, "percent_time": 100 * y})


def _independent(X, y):
    """Bernoulli quasi-ML by direct maximisation, and the sandwich HC0 x n/(n-1) written out."""

    def nll(b):
        eta = X @ b
        return -np.sum(y * eta - np.log1p(np.exp(eta)))

    def grad(b):
        return -X.T @ (y - 1 / (1 + np.exp(-X @ b)))

    r = optimize.minimize(nll, np.zeros(X.shape[1]), jac=grad, method="BFGS", options={"gtol": 1e-12, "maxiter": 10000})
    b = r.x
    mu = 1 / (1 + np.exp(-X @ b))
    A = sum(mu[i] * (1 - mu[i]) * np.outer(X[i], X[i]) for i in range(len(y)))
    B = sum((y[i] - mu[i]) ** 2 * np.outer(X[i], X[i]) for i in range(len(y)))
    Ainv = np.linalg.inv(A)
    n = len(y)
    return b, n / (n - 1) * Ainv @ B @ Ainv


def test_fractional_logit_matches_independent_implementation():
    d = _data()
    design = build_design(d, ["ASD", "PSY", "TDC"], ["age"])
    y = d["percent_time"].to_numpy() / 100
    fit = fit_fractional(design, y)
    b, V = _independent(design.X, y)
    assert fit.problem is None
    np.testing.assert_allclose(fit.params, b, atol=1e-6, rtol=0)
    np.testing.assert_allclose(np.sqrt(np.diag(fit.cov)), np.sqrt(np.diag(V)), atol=1e-6, rtol=0)
    np.testing.assert_allclose(fit.cov, V, atol=1e-6)


def test_sandwich_is_hc0_scaled_by_n_over_n_minus_1():
    d = _data(seed=2)
    design = build_design(d, ["ASD", "PSY", "TDC"])
    y = d["percent_time"].to_numpy() / 100
    sm_fit = sm.GLM(y, design.X, family=sm.families.Binomial()).fit(tol=1e-13, cov_type="HC0")
    n = len(y)
    np.testing.assert_allclose(robust_sandwich(design.X, y, sm_fit.params), sm_fit.cov_params() * n / (n - 1), rtol=1e-8)


def test_intensity_rows_match_independent_contrasts():
    """The method before issue 28 (intensity_se="hc0-z") exactly as it was: HC0 x n/(n-1), Wald z."""
    d = _data(seed=4)
    res = intensity_part(d, HurdleConfig(covariates=("age",), intensity_se="hc0-z"))
    design = build_design(d, ["ASD", "PSY", "TDC"], ["age"])
    y = d["percent_time"].to_numpy() / 100
    b, V = _independent(design.X, y)
    for row in res.itertuples():
        L = design.contrast_vector(row.group_a, row.group_b)
        est, se = L @ b, np.sqrt(L @ V @ L)
        assert row.estimate == pytest.approx(est, abs=1e-6)
        assert row.effect == pytest.approx(np.exp(est), rel=1e-6)
        assert row.p == pytest.approx(2 * stats.norm.sf(abs(est / se)), abs=1e-6)
        assert row.ci_low == pytest.approx(np.exp(est - 1.959963984540054 * se), rel=1e-6)
        # average marginal effect in percentage points, over the engagers in the model
        mu = lambda g: special.expit(design.with_group(g) @ b)  # noqa: E731
        assert row.ame_pp == pytest.approx(100 * np.mean(mu(row.group_a) - mu(row.group_b)), abs=1e-6)
        assert row.mean_a == pytest.approx(d.loc[d["group"] == row.group_a, "percent_time"].mean())
        assert row.test == "Wald z (robust)"


def test_too_few_engagers_gives_a_row_without_numbers():
    d = _data(seed=5)
    d.loc[(d["group"] == "PSY") & (d.index > d[d["group"] == "PSY"].index[1]), "percent_time"] = 0.0
    res = intensity_part(d, HurdleConfig())
    psy = res[(res["group_a"] == "PSY") | (res["group_b"] == "PSY")]
    assert len(psy) == 2
    assert psy["note"].str.startswith("not estimable: too few engagers (PSY: 2 < 3)").all()
    assert psy[["estimate", "effect", "p"]].isna().all().all()
    other = res[(res["group_a"] == "ASD") & (res["group_b"] == "TDC")].iloc[0]
    assert np.isfinite(other.p) and "left out of the model" in other.note
