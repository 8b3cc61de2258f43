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
