"""How often and how long: models of the read-out's bouts (``bouts.parquet``) per action and group pair.

Two outcomes, each its own multiple-comparison family (all actions x contrasts of the part), with the
covariates and pairwise contrasts of the hurdle (:mod:`analysis.hurdle`):

``part = "count"``
    Bouts per participant (every participant, zeros included) with the log of the observed minutes
    (``observed_s / 60`` of the cohort table) as offset::

        log E[bouts_i] = log(minutes_i) + x_i beta,   Var = mu + alpha mu^2   (NB2)

    alpha is estimated by maximum likelihood (statsmodels' discrete ``NegativeBinomial``, NB2), and
    beta's covariance is the GLM's at that alpha (``sm.GLM(..., family=NegativeBinomial(alpha))``), as
    R's ``MASS::glm.nb`` reports it: conditional on alpha. The discrete model's own covariance inverts
    the observed information of (beta, alpha) jointly; beta and alpha are orthogonal in expectation,
    so the two agree asymptotically and differ by the sample's cross-information (a fraction of a
    percent at ordinary sizes; ``tests/test_bouts_models.py``). When over-dispersion is absent
    (likelihood-ratio test of alpha = 0, on the boundary: ``p = chi2_1.sf(LR) / 2``, at the 5 %
    level) the Poisson GLM is used instead; the ``method`` column says which and gives the test.
    estimate = log rate ratio of group_a vs group_b, effect = rate ratio, Wald z tests and intervals.
``part = "duration"``
    Mean bout duration (``mean_bout_s``) among participants with at least one bout: Gamma GLM with log
    link, dispersion by Pearson chi2 / (n - p), Wald t tests with n - p degrees of freedom.
    estimate = log ratio of mean bout durations, effect = the ratio.

A group with no bout at all (count), or with fewer than ``config.min_engaged`` participants with bouts
(duration), is left out of that model and its contrasts get a note and no numbers.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats

from .cohort import categorical_covariates
from .config import HurdleConfig
from .contrasts import contrast_label, direction, pairs, wald_contrast
from .correction import family_label
from .design import build_design
from .results_table import finish_results

__all__ = ["BOUT_PARTS", "BoutsError", "validate_bouts", "fit_counts", "count_part", "duration_part", "bout_analysis"]

BOUT_PARTS: tuple[str, ...] = ("count", "duration")
_OVERDISPERSION_ALPHA = 0.05


class BoutsError(ValueError):
    """The bouts table does not fit the cohort."""


def validate_bouts(bouts: pd.DataFrame, cohort: pd.DataFrame, *, source: str = "") -> pd.DataFrame:
    """The bouts of the cohort's participant x action rows, joined to the cohort's group, observed_s and
    covariates. Every cohort row needs a bouts row (the read-out writes both)."""
    from pipeline.cli import BadInput

    where = f"{source}: " if source else ""
    missing = [c for c in ("participant_id", "action", "bouts", "mean_bout_s") if c not in bouts.columns]
    if missing:
        raise BadInput(f"{where}missing column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} (the bouts contract)")
    b = bouts.astype({"participant_id": str, "action": str})[["participant_id", "action", "bouts", "mean_bout_s"]]
    if b.duplicated(["participant_id", "action"]).any():
        raise BadInput(f"{where}duplicate participant x action rows")
    joined = cohort.merge(b, on=["participant_id", "action"], how="left", validate="one_to_one")
    lacking = joined["bouts"].isna().to_numpy()
    if lacking.any():
        r = joined.loc[lacking].iloc[0]
        raise BadInput(f"{where}no bouts row for participant {r['participant_id']!r}, action {r['action']!r} of the "
                       f"cohort ({int(lacking.sum())} cohort row(s) lack one); use the bouts.parquet written with the cohort")  # fmt: skip
    bad = (joined["bouts"] > 0) & ~(joined["mean_bout_s"] > 0)
    if bad.any():
        r = joined.loc[bad].iloc[0]
        raise BadInput(f"{where}participant {r['participant_id']!r}, action {r['action']!r}: bouts > 0 but mean_bout_s missing or <= 0")
    return joined.astype({"bouts": "int64"})


def fit_counts(X: np.ndarray, y: np.ndarray, offset: np.ndarray) -> dict:
    """NB2 (or Poisson, without over-dispersion) GLM of counts with an offset (module docstring).

    Returns
    -------
    dict
        ``params``, ``cov`` (of beta), ``family`` ("negative binomial" | "poisson"), ``alpha``,
        ``lr``, ``p_overdispersion``, ``discrete_cov`` (the discrete NB fit's covariance of beta, or
        None), ``discrete_params``, ``converged``.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pois = sm.GLM(y, X, family=sm.families.Poisson(), offset=offset).fit(tol=1e-12, maxiter=200)
        out = {"params": np.asarray(pois.params), "cov": np.asarray(pois.cov_params()), "family": "poisson",
               "alpha": 0.0, "lr": 0.0, "p_overdispersion": 1.0, "discrete_cov": None, "discrete_params": None,
               "converged": bool(pois.converged)}  # fmt: skip
        try:
            nb = sm.NegativeBinomial(y, X, offset=offset, loglike_method="nb2").fit(
                start_params=np.append(pois.params, 0.1), method="newton", maxiter=200, disp=0, tol=1e-12)
        except (np.linalg.LinAlgError, ValueError):
            return out
        alpha = float(nb.params[-1])
        if not (np.isfinite(alpha) and alpha > 1e-8 and nb.mle_retvals.get("converged", True)):
            return out
        lr = max(0.0, 2.0 * (float(nb.llf) - float(pois.llf)))
        p_od = 0.5 * float(stats.chi2.sf(lr, 1))
        out.update(alpha=alpha, lr=lr, p_overdispersion=p_od, discrete_params=np.asarray(nb.params[:-1]),
                   discrete_cov=np.asarray(nb.cov_params())[:-1, :-1])  # fmt: skip
        if p_od >= _OVERDISPERSION_ALPHA:
            return out
        glm = sm.GLM(y, X, family=sm.families.NegativeBinomial(alpha=alpha), offset=offset).fit(tol=1e-12, maxiter=200)
        out.update(params=np.asarray(glm.params), cov=np.asarray(glm.cov_params()), family="negative binomial",
                   converged=bool(glm.converged))  # fmt: skip
    return out


def _row(a: str, b: str, part: str, stats_a: dict, stats_b: dict) -> dict:
    return {
        "contrast": contrast_label(a, b), "group_a": a, "group_b": b, "part": part,
        "n_a": stats_a["n"], "n_b": stats_b["n"], "engaged_a": stats_a["with"], "engaged_b": stats_b["with"],
        "pct_engaged_a": 100.0 * stats_a["with"] / stats_a["n"] if stats_a["n"] else np.nan,
        "pct_engaged_b": 100.0 * stats_b["with"] / stats_b["n"] if stats_b["n"] else np.nan,
        "mean_a": stats_a["mean"], "mean_b": stats_b["mean"],
    }  # fmt: skip


def _fill(row: dict, test: dict, a: str, b: str, test_name: str, ci: str) -> None:
    est = float(test["estimate"])
    row.update(estimate=est, se=float(test["se"]), effect=float(np.exp(est)), ci_low=float(np.exp(test["ci_low"])),
               ci_high=float(np.exp(test["ci_high"])), statistic=float(test["statistic"]), p=float(test["p"]),
               test=test_name, ci_method=ci, direction=direction(a, b, est))  # fmt: skip


def count_part(data: pd.DataFrame, config: HurdleConfig = HurdleConfig()) -> pd.DataFrame:
    """Bout-count contrasts of one action (``data``: one row per participant with ``group``,
    ``bouts``, ``observed_s`` and the covariates). ``mean_a``/``mean_b``: bouts per observed minute."""
    cats = categorical_covariates(data, config.covariates, config.categorical)
    levels = {c: sorted(pd.unique(data[c].astype(str))) for c in cats}
    data = data[data["observed_s"] > 0]
    info = {}
    for g in config.groups:
        d = data[data["group"] == g]
        minutes = float(d["observed_s"].sum() / 60.0)
        info[g] = {"n": int(len(d)), "with": int((d["bouts"] > 0).sum()),
                   "mean": float(d["bouts"].sum() / minutes) if minutes > 0 else np.nan}  # fmt: skip
    ok = [g for g in config.groups if info[g]["with"] > 0]
    fit = design = None
    if len(ok) >= 2:
        sample = data[data["group"].isin(ok)]
        design = build_design(sample, ok, config.covariates, cats, levels)
        fit = fit_counts(design.X, sample["bouts"].to_numpy(dtype=np.float64), np.log(sample["observed_s"].to_numpy() / 60.0))
    if fit is None:
        method = "count GLM (log link, offset log observed minutes)"
    elif fit["family"] == "negative binomial":
        method = (f"negative binomial GLM (NB2, log link, offset log observed minutes; alpha {fit['alpha']:.3g}, "
                  f"over-dispersion LR p {fit['p_overdispersion']:.2g})")  # fmt: skip
    else:
        method = (f"Poisson GLM (log link, offset log observed minutes; no over-dispersion: LR p "
                  f"{fit['p_overdispersion']:.2g})")  # fmt: skip
    rows = []
    for a, b in pairs(config.groups):
        row = _row(a, b, "count", info[a], info[b])
        row.update(method=method, n_fit=int(len(design.X)) if design is not None else 0)
        none = [g for g in (a, b) if g not in ok]
        if none:
            row["note"] = f"not estimable: no bouts in {', '.join(none)}"
        elif not fit["converged"]:
            row["note"] = "not estimable: fit did not converge"
        else:
            test = wald_contrast(fit["params"], fit["cov"], design.contrast_vector(a, b), config.ci_level)
            _fill(row, test, a, b, "Wald z", "wald")
            row["note"] = f"covariate columns dropped (no variation): {', '.join(design.dropped)}" if design.dropped else None
        rows.append(row)
    return pd.DataFrame(rows)


def duration_part(data: pd.DataFrame, config: HurdleConfig = HurdleConfig()) -> pd.DataFrame:
    """Mean-bout-duration contrasts of one action among participants with bouts (Gamma GLM, log link).
    ``mean_a``/``mean_b``: the mean of the participants' mean bout durations (s)."""
    cats = categorical_covariates(data, config.covariates, config.categorical)
    levels = {c: sorted(pd.unique(data[c].astype(str))) for c in cats}
    info = {}
    for g in config.groups:
        d = data[data["group"] == g]
        w = d[d["bouts"] > 0]
        info[g] = {"n": int(len(d)), "with": int(len(w)), "mean": float(w["mean_bout_s"].mean()) if len(w) else np.nan}
    ok = [g for g in config.groups if info[g]["with"] >= config.min_engaged]
    res = design = None
    if len(ok) >= 2:
        sample = data[(data["bouts"] > 0) & data["group"].isin(ok)]
        design = build_design(sample, ok, config.covariates, cats, levels)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = sm.GLM(sample["mean_bout_s"].to_numpy(dtype=np.float64), design.X,
                         family=sm.families.Gamma(link=sm.families.links.Log())).fit(tol=1e-12, maxiter=200)  # fmt: skip
    rows = []
    for a, b in pairs(config.groups):
        row = _row(a, b, "duration", info[a], info[b])
        row.update(method="Gamma GLM (log link, dispersion Pearson chi2 / (n - p)) on mean bout duration among participants with bouts",
                   n_fit=int(len(design.X)) if design is not None else 0)  # fmt: skip
        few = [g for g in (a, b) if g not in ok]
        if few:
            detail = ", ".join(f"{g}: {info[g]['with']}" for g in few)
            row["note"] = f"not estimable: too few participants with bouts ({detail} < {config.min_engaged})"
        elif not res.converged or not np.isfinite(res.scale) or res.df_resid <= 0:
            row["note"] = "not estimable: Gamma fit did not converge or has no residual degrees of freedom"
        else:
            L = design.contrast_vector(a, b)
            test = wald_contrast(np.asarray(res.params), np.asarray(res.cov_params()), L, config.ci_level)
            dfr = float(res.df_resid)
            q = float(stats.t.ppf(0.5 + config.ci_level / 2, dfr))
            test.update(ci_low=test["estimate"] - q * test["se"], ci_high=test["estimate"] + q * test["se"],
                        p=float(2 * stats.t.sf(abs(test["statistic"]), dfr)))  # fmt: skip
            _fill(row, test, a, b, f"Wald t ({int(dfr)} df)", "wald-t")
            row["note"] = f"covariate columns dropped (no variation): {', '.join(design.dropped)}" if design.dropped else None
        rows.append(row)
    return pd.DataFrame(rows)


def bout_analysis(bouts: pd.DataFrame, cohort: pd.DataFrame, config: HurdleConfig, actions: list[str]) -> pd.DataFrame:
    """Count and duration rows for ``actions`` (results columns of :mod:`analysis.hurdle`), each part
    its own correction family (``config.correction`` over all actions x contrasts of the part)."""
    joined = validate_bouts(bouts, cohort)
    ids = joined.drop_duplicates("action").set_index("action")["action_id"]
    keep = ["participant_id", "group", "bouts", "mean_bout_s", "observed_s",
            *[c for c in config.covariates if c not in ("group", "observed_s")]]  # fmt: skip
    by_action = dict(tuple(joined.groupby("action", sort=False)))
    frames = []
    for part_fn in (count_part, duration_part):
        for a in actions:
            part = part_fn(by_action[a][keep].reset_index(drop=True), config)
            part.insert(0, "action_id", int(ids[a]))
            part.insert(0, "action", a)
            frames.append(part)
    res = pd.concat(frames, ignore_index=True)
    return finish_results(res, config, "part", family_text=family_label(config.correction, "part").replace(
        "hurdle part", "bout outcome (count or duration)"))
