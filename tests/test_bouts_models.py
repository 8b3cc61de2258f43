"""Bout counts (NB2 / Poisson GLM with offset) and mean bout durations (Gamma GLM, log link):
against independent fits and closed forms."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from analysis.bouts_models import bout_analysis, count_part, duration_part, fit_counts
from analysis.config import HurdleConfig
from analysis.design import build_design
from analysis.simulate import SimConfig, simulate_cohort

GROUPS = ("ASD", "PSY", "TDC")


def _bouts(alpha: float, seed: int = 0, n_actions: int = 2):
    cohort, _ = simulate_cohort(SimConfig(n_actions=n_actions, covariates=True, seed=seed))
    rng = np.random.default_rng(seed)
    minutes = cohort["observed_s"].to_numpy() / 60
    rate = np.select([cohort["group"] == "PSY", cohort["group"] == "TDC"], [0.6, 0.4], 0.3)
    mu = rate * minutes
    lam = rng.gamma(1 / alpha, mu * alpha) if alpha > 0 else mu
    b = rng.poisson(lam)
    scale = np.where(cohort["group"] == "TDC", 4.0, 2.0)
    dur = np.where(b > 0, rng.gamma(3.0, scale / 3.0), np.nan)
    bouts = cohort[["participant_id", "group", "action_id", "action"]].assign(bouts=b, mean_bout_s=dur)
    return cohort, bouts


def test_nb_glm_agrees_with_discrete_negative_binomial():
    """beta from the GLM at the ML alpha equals the discrete NB2 fit's; their SEs differ only by the
    cross-information of beta and alpha in the observed Hessian (zero in expectation)."""
    cohort, bouts = _bouts(alpha=0.5)
    d = cohort.merge(bouts[["participant_id", "action", "bouts"]], on=["participant_id", "action"])
    d = d[d["action"] == d["action"].iloc[0]]
    X = build_design(d, GROUPS, ("age", "sex"), ("sex",)).X
    y = d["bouts"].to_numpy(float)
    off = np.log(d["observed_s"].to_numpy() / 60)
    fit = fit_counts(X, y, off)
    assert fit["family"] == "negative binomial" and fit["p_overdispersion"] < 0.05
    np.testing.assert_allclose(fit["params"], fit["discrete_params"], rtol=1e-6, atol=1e-8)
    se_glm = np.sqrt(np.diag(fit["cov"]))
    se_disc = np.sqrt(np.diag(fit["discrete_cov"]))
    rel = np.abs(se_glm / se_disc - 1)
    assert rel.max() < 0.02 and rel.max() > 0  # close, not identical: the explained difference
    # The GLM's SE is the expected information at alpha: (X' W X)^-1, W = mu / (1 + alpha mu)
    mu = np.exp(X @ fit["params"] + off)
    info = (X * (mu / (1 + fit["alpha"] * mu))[:, None]).T @ X
    np.testing.assert_allclose(se_glm, np.sqrt(np.diag(np.linalg.inv(info))), rtol=1e-6)
    # the discrete fit, refitted independently from its default start, gives the same beta and alpha
    nb = sm.NegativeBinomial(y, X, offset=off, loglike_method="nb2").fit(disp=0, maxiter=500)
    np.testing.assert_allclose(nb.params[:-1], fit["params"], rtol=1e-4, atol=1e-6)
    assert nb.params[-1] == pytest.approx(fit["alpha"], rel=1e-3)


def test_poisson_without_overdispersion_gives_the_rate_ratio_of_totals():
    """No over-dispersion: Poisson is used, and with groups only its rate ratio is (sum bouts / sum
    minutes) of one group over the other's, its SE sqrt(1/sum_a + 1/sum_b)."""
    cohort, bouts = _bouts(alpha=0.0, seed=3)
    res = bout_analysis(bouts, cohort, HurdleConfig(), list(cohort["action"].unique()))
    cnt = res[res["part"] == "count"]
    assert cnt["method"].str.startswith("Poisson GLM").all()
    j = cohort.merge(bouts[["participant_id", "action", "bouts"]], on=["participant_id", "action"])
    a0 = cnt["action"].iloc[0]
    tot = j[j["action"] == a0].groupby("group").agg(b=("bouts", "sum"), m=("observed_s", lambda s: s.sum() / 60))
    rates = tot["b"] / tot["m"]
    for row in cnt[cnt["action"] == a0].itertuples():
        assert row.effect == pytest.approx(rates[row.group_a] / rates[row.group_b], rel=1e-8)
        assert row.se == pytest.approx(np.sqrt(1 / tot["b"][row.group_a] + 1 / tot["b"][row.group_b]), rel=1e-6)
        assert row.mean_a == pytest.approx(rates[row.group_a], rel=1e-12)
    assert set(res["family"]) == {"Benjamini-Hochberg FDR within each bout outcome (count or duration) (all actions x contrasts of the part)"}


def test_gamma_duration_ratio_of_means_and_se_by_hand():
    """Groups only: the Gamma GLM (log link) fits the group means, so exp(estimate) is the ratio of the
    groups' mean durations; its SE is sqrt(phi (1/n_a + 1/n_b)), phi = Pearson chi2 / (n - p)."""
    cohort, bouts = _bouts(alpha=0.3, seed=5)
    j = cohort.merge(bouts[["participant_id", "action", "bouts", "mean_bout_s"]], on=["participant_id", "action"])
    d = j[j["action"] == j["action"].iloc[0]].reset_index(drop=True)
    res = duration_part(d, HurdleConfig())
    w = d[d["bouts"] > 0]
    means = w.groupby("group")["mean_bout_s"].mean()
    n = w.groupby("group").size()
    fitted = w["group"].map(means)
    phi = float((((w["mean_bout_s"] - fitted) / fitted) ** 2).sum() / (len(w) - 3))
    for row in res.itertuples():
        assert row.effect == pytest.approx(means[row.group_a] / means[row.group_b], rel=1e-8)
        assert row.se == pytest.approx(np.sqrt(phi * (1 / n[row.group_a] + 1 / n[row.group_b])), rel=1e-6)
    tdc = res[res["contrast"] == "ASD vs TDC"].iloc[0]
    assert 0.35 < tdc.effect < 0.7 and tdc.p < 0.001  # planted: TDC bouts twice as long


def test_columns_are_the_hurdle_results_columns():
    from analysis.hurdle import RESULT_COLUMNS

    cohort, bouts = _bouts(alpha=0.0, seed=1)
    res = bout_analysis(bouts, cohort, HurdleConfig(), list(cohort["action"].unique()))
    assert list(res.columns) == RESULT_COLUMNS


def test_group_without_bouts_is_not_estimable():
    cohort, bouts = _bouts(alpha=0.0, seed=1)
    bouts.loc[bouts["group"] == "PSY", ["bouts", "mean_bout_s"]] = [0, np.nan]
    j = cohort.merge(bouts[["participant_id", "action", "bouts", "mean_bout_s"]], on=["participant_id", "action"])
    d = j[j["action"] == j["action"].iloc[0]].reset_index(drop=True)
    c = count_part(d, HurdleConfig())
    assert c.set_index("contrast").loc["ASD vs PSY", "note"] == "not estimable: no bouts in PSY"
    assert np.isfinite(c.set_index("contrast").loc["ASD vs TDC", "p"])
    dd = duration_part(d, HurdleConfig())
    assert dd.set_index("contrast").loc["PSY vs TDC", "note"].startswith("not estimable: too few participants with bouts")


# ------------------------------------------------------------------ independent fits (scipy likelihoods)


def _nb2_loglik_grad(theta: np.ndarray, X: np.ndarray, y: np.ndarray, off: np.ndarray):
    """NB2 log-likelihood and gradient in (beta, alpha), written out:
    ll_i = lgamma(y + r) - lgamma(r) - lgamma(y + 1) + y log(alpha mu) - (y + r) log(1 + alpha mu), r = 1/alpha."""
    from scipy.special import digamma, gammaln

    beta, alpha = theta[:-1], theta[-1]
    mu = np.exp(X @ beta + off)
    r = 1.0 / alpha
    ll = np.sum(gammaln(y + r) - gammaln(r) - gammaln(y + 1) + y * np.log(alpha * mu) - (y + r) * np.log1p(alpha * mu))
    g_beta = X.T @ ((y - mu) / (1 + alpha * mu))
    g_alpha = np.sum(-(digamma(y + r) - digamma(r)) / alpha**2 + np.log1p(alpha * mu) / alpha**2
                     + y / alpha - (y + r) * mu / (1 + alpha * mu))  # fmt: skip
    return ll, np.append(g_beta, g_alpha)


def _numeric_hessian(grad, theta: np.ndarray, h: float = 1e-6) -> np.ndarray:
    H = np.empty((theta.size, theta.size))
    for j in range(theta.size):
        e = np.zeros_like(theta)
        e[j] = h * max(1.0, abs(theta[j]))
        H[:, j] = (grad(theta + e) - grad(theta - e)) / (2 * e[j])
    return (H + H.T) / 2


def test_nb_rate_ratios_and_ses_against_a_scipy_likelihood_fit():
    """count_part's rate ratios and SEs (all three contrasts, with covariates) against an independent
    maximisation of the NB2 likelihood written out above (scipy), and the SE difference explained.

    The estimates agree to 1e-5. The rows' SE is conditional on alpha (the GLM at the ML alpha, as R's
    MASS::glm.nb): sqrt(L I_bb^-1 L') with the expected information I_bb = X'WX, W = mu/(1 + alpha mu).
    The joint ML covariance inverts the observed information of (beta, alpha): the Schur complement
    H_bb - H_ba H_aa^-1 H_ab, where H_bb is observed (it has (y - mu) terms) and H_ba is the sample's
    cross-information (zero in expectation). statsmodels' discrete NegativeBinomial reports that one;
    it equals the numerical Hessian of the written-out likelihood to 1e-4, and replacing H_bb by its
    expectation and dropping H_ba turns it into the rows' SE."""
    from scipy.optimize import minimize

    from analysis.contrasts import pairs

    cohort, bouts = _bouts(alpha=0.5, seed=2)
    d = cohort.merge(bouts[["participant_id", "action", "bouts"]], on=["participant_id", "action"])
    d = d[d["action"] == d["action"].iloc[0]].reset_index(drop=True)
    cfg = HurdleConfig(covariates=("age", "sex"))
    rows = count_part(d, cfg).set_index("contrast")
    assert rows["method"].iloc[0].startswith("negative binomial GLM")
    design = build_design(d, GROUPS, ("age", "sex"), ("sex",))
    X, y = design.X, d["bouts"].to_numpy(float)
    off = np.log(d["observed_s"].to_numpy() / 60)
    start = np.append(np.linalg.lstsq(X, np.log(y + 0.5) - off, rcond=None)[0], 1.0)
    opt = minimize(lambda t: tuple(-v for v in _nb2_loglik_grad(t, X, y, off)), start, jac=True, method="L-BFGS-B",
                   bounds=[(None, None)] * X.shape[1] + [(1e-6, None)], options={"gtol": 1e-10, "ftol": 1e-15, "maxiter": 5000})  # fmt: skip
    beta, alpha = opt.x[:-1], opt.x[-1]
    H = -_numeric_hessian(lambda t: _nb2_loglik_grad(t, X, y, off)[1], opt.x)  # observed information
    joint = np.linalg.inv(H)
    mu = np.exp(X @ beta + off)
    expected = np.linalg.inv((X * (mu / (1 + alpha * mu))[:, None]).T @ X)
    discrete = sm.NegativeBinomial(y, X, offset=off, loglike_method="nb2").fit(
        start_params=opt.x, method="newton", disp=0, tol=1e-12, maxiter=200)  # fmt: skip
    np.testing.assert_allclose(np.sqrt(np.diag(np.asarray(discrete.cov_params()))), np.sqrt(np.diag(joint)), rtol=1e-4)
    print()
    for a, b in pairs(GROUPS):
        L = design.contrast_vector(a, b)
        row = rows.loc[f"{a} vs {b}"]
        assert row["estimate"] == pytest.approx(L @ beta, abs=1e-5)
        assert row["effect"] == pytest.approx(np.exp(L @ beta), rel=1e-5)
        assert row["se"] == pytest.approx(np.sqrt(L @ expected @ L), rel=1e-5)
        se_joint = float(np.sqrt(L @ joint[:-1, :-1] @ L))
        print(f"  {a} vs {b}: rate ratio {row['effect']:.4f}, SE conditional on alpha {row['se']:.5f}, "
              f"joint ML {se_joint:.5f} ({100 * (se_joint / row['se'] - 1):+.2f} %)")  # fmt: skip
        assert abs(se_joint / row["se"] - 1) < 0.03
    # the explained difference: the joint covariance with H_bb replaced by X'WX and no cross term is the rows'
    k = X.shape[1]
    H2 = H.copy()
    H2[:k, :k] = np.linalg.inv(expected)
    H2[:k, k] = H2[k, :k] = 0.0
    np.testing.assert_allclose(np.linalg.inv(H2)[:k, :k], expected, rtol=1e-9)
    assert fit_counts(X, y, off)["alpha"] == pytest.approx(alpha, rel=1e-4)


def test_gamma_durations_against_a_scipy_likelihood_fit():
    """duration_part (covariates, all three contrasts) against an independent maximisation of the Gamma
    likelihood (shape k, mean exp(X beta)) with scipy. The ML beta equals the GLM's (its score equations
    sum x (y - mu) / mu = 0 do not involve k), to 1e-6. The SEs differ by one factor, explained: the GLM's
    covariance is phi (X'X)^-1 with phi the Pearson estimate (sum ((y - mu)/mu)^2 / (n - p), as R's
    summary.glm), the ML fit's expected information gives (X'X)^-1 / k_ML; so SE_glm / SE_ml =
    sqrt(phi k_ML) for every contrast, exactly."""
    from scipy.optimize import minimize
    from scipy.special import gammaln

    from analysis.contrasts import pairs

    cohort, bouts = _bouts(alpha=0.3, seed=4)
    j = cohort.merge(bouts[["participant_id", "action", "bouts", "mean_bout_s"]], on=["participant_id", "action"])
    d = j[j["action"] == j["action"].iloc[0]].reset_index(drop=True)
    rows = duration_part(d, HurdleConfig(covariates=("age", "sex"))).set_index("contrast")
    w = d[d["bouts"] > 0].reset_index(drop=True)
    design = build_design(w, GROUPS, ("age", "sex"), ("sex",))
    X, y = design.X, w["mean_bout_s"].to_numpy(float)
    n, p = X.shape

    def negll(t):
        beta, k = t[:-1], np.exp(t[-1])
        mu = np.exp(X @ beta)
        ll = np.sum(k * np.log(k) - gammaln(k) + (k - 1) * np.log(y) - k * np.log(mu) - k * y / mu)
        return -ll

    start = np.append(np.linalg.lstsq(X, np.log(y), rcond=None)[0], 0.0)
    opt = minimize(negll, start, method="BFGS", options={"gtol": 1e-9, "maxiter": 5000})
    beta, k_ml = opt.x[:-1], float(np.exp(opt.x[-1]))
    mu = np.exp(X @ beta)
    phi = float((((y - mu) / mu) ** 2).sum() / (n - p))
    xtx_inv = np.linalg.inv(X.T @ X)
    print(f"\n  Gamma: Pearson phi {phi:.4f}, ML 1/k {1 / k_ml:.4f}, SE ratio sqrt(phi k) {np.sqrt(phi * k_ml):.4f}")
    for a, b in pairs(GROUPS):
        L = design.contrast_vector(a, b)
        row = rows.loc[f"{a} vs {b}"]
        assert row["estimate"] == pytest.approx(L @ beta, abs=1e-6)
        se_ml = float(np.sqrt(L @ xtx_inv @ L / k_ml))
        assert row["se"] == pytest.approx(np.sqrt(phi * (L @ xtx_inv @ L)), rel=1e-6)
        assert row["se"] / se_ml == pytest.approx(np.sqrt(phi * k_ml), rel=1e-6)
        assert row["test"] == f"Wald t ({n - p} df)"
    assert abs(np.sqrt(phi * k_ml) - 1) < 0.15  # two estimates of one dispersion: close, not equal
