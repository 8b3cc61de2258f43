"""The hurdle analysis on misclassification-corrected percent time, with the rates' uncertainty carried.

Steps (issue 23; :mod:`analysis.misclassification` for the correction, :mod:`analysis.rubin` for
the combination)::

    validation participants --bootstrap--> M draws of (tpr, fpr) [or (s_pos, s_neg), or the ratio R]
    each draw -> corrected cohort table -> hurdle (same actions, covariates, tests)
    M result tables --Rubin's rules--> estimate, se, df (Barnard-Rubin), p
    -> the same multiple-comparison correction as the uncorrected analysis (config.correction/family)

The actions are selected once, on the uncorrected cohort (so that corrected and uncorrected rows are
the same tests). The descriptive columns (n, engaged, means) are those of the table corrected with the
point estimates of the rates. The combination uses each imputation's estimate and standard error: the
Wald SE of the probability part, the intensity test's robust SE (HC2 for the resampling tests, whose
p-values themselves cannot be combined by Rubin's rules). The complete-data degrees of freedom are
infinite for the probability part (a z reference) and ``n_fit - p`` for the intensity part (read from
a t test's "N df", else the engagers minus the groups and covariates). With a resampling intensity test
(permutation, the default, or wild) the imputations are fitted with ``hc2-t``: the same estimate and HC2
SE, without draws whose p-values Rubin's rules could not use. An imputation in which a
test is not estimable is left out of that test's combination (``imputations_used`` says how many
were used; fewer than 2: no numbers and a note).

Extra columns (beside :data:`analysis.hurdle.RESULT_COLUMNS`): ``misclassification``,
``imputations_used``, ``df``, ``fmi`` (lambda, the share of the variance due to the rates'
uncertainty), and the uncorrected analysis' ``estimate_uncorrected``, ``effect_uncorrected``,
``p_uncorrected``, ``p_adj_uncorrected`` for side-by-side tables.
"""

from __future__ import annotations

import re
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import numpy as np
import pandas as pd

from .cohort import select_actions, validate_cohort
from .config import HurdleConfig
from .contrasts import direction
from .correction import adjust_pvalues
from .misclassification import (
    METHOD_RATES,
    ValidationSet,
    bootstrap_rates,
    check_method_inputs,
    corrected_cohort,
    correction_text,
    estimate_rates,
    rate_grouping,
    read_validation,
)
from .rubin import rubin_combine

__all__ = ["EXTRA_COLUMNS", "corrected_hurdle_analysis", "combine_imputations"]

EXTRA_COLUMNS: list[str] = ["misclassification", "imputations_used", "df", "fmi", "estimate_uncorrected",
                            "effect_uncorrected", "p_uncorrected", "p_adj_uncorrected"]  # fmt: skip
_DF = re.compile(r"(\d+) df")


def _complete_df(res: pd.DataFrame, config: HurdleConfig) -> np.ndarray:
    out = np.full(len(res), np.inf)
    for i, (part, test, n) in enumerate(zip(res["part"], res["test"], res["n_fit"])):
        if part != "intensity":
            continue
        m = _DF.search(str(test)) if test is not None else None
        k = len(config.groups) + len(config.covariates)
        out[i] = float(m.group(1)) if m else max(float(n) - k, 1.0)
    return out


def combine_imputations(point: pd.DataFrame, tables: list[pd.DataFrame], config: HurdleConfig, *, label: str = "") -> pd.DataFrame:
    """Rubin-combine M hurdle result tables (same rows in the same order) into one table.

    Parameters
    ----------
    point : pandas.DataFrame
        The results on the point-estimate correction: descriptive columns and notes come from it.
    tables : list of pandas.DataFrame
        One per imputation, rows aligned with ``point``.
    config : HurdleConfig
        ``ci_level``, ``correction`` and ``family`` of the combined table.
    label : str
        Appended to the ``method`` column.

    Returns
    -------
    pandas.DataFrame
        ``point``'s columns with estimate, se, effect, CI, statistic, test, p, p_adj, ame_pp replaced
        by the combined values, plus ``imputations_used``, ``df``, ``fmi``.
    """
    keys = ["action", "contrast", "part"]
    for t in tables:
        if not (t[keys].to_numpy() == point[keys].to_numpy()).all():
            raise ValueError("imputation tables do not have the rows of the point table in the same order")
    tested = np.stack([t["p"].notna().to_numpy() for t in tables])
    est = np.stack([t["estimate"].to_numpy(dtype=np.float64) for t in tables])
    se = np.stack([t["se"].to_numpy(dtype=np.float64) for t in tables])
    ame = np.stack([t["ame_pp"].to_numpy(dtype=np.float64) for t in tables])
    comb = rubin_combine(np.where(tested, est, np.nan), np.where(tested, se, np.nan),
                         _complete_df(point, config), config.ci_level)  # fmt: skip
    res = point.copy()
    has = np.isfinite(comb["estimate"])
    # Estimate-only rows (too few engagers to test): the mean estimate, no test.
    only = ~has & np.isfinite(est).sum(axis=0).astype(bool)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a row without any estimate: NaN, as meant
        mean_est = np.nanmean(np.where(np.isfinite(est), est, np.nan), axis=0)
        mean_ame = np.nanmean(np.where(np.isfinite(ame), ame, np.nan), axis=0)
    estimate = np.where(has, comb["estimate"], np.where(only & ~tested.any(axis=0), mean_est, np.nan))
    res["estimate"] = estimate
    res["se"] = np.where(has, comb["se"], np.nan)
    res["effect"] = np.exp(estimate)
    res["ci_low"] = np.where(has, np.exp(comb["ci_low"]), np.nan)
    res["ci_high"] = np.where(has, np.exp(comb["ci_high"]), np.nan)
    res["statistic"] = np.where(has, comb["statistic"], np.nan)
    res["p"] = np.where(has, comb["p"], np.nan)
    res["ame_pp"] = np.where(np.isfinite(estimate), mean_ame, np.nan)
    res["df"] = np.where(has, comb["df"], np.nan)
    res["fmi"] = np.where(has, comb["lambda"], np.nan)
    res["imputations_used"] = tested.sum(axis=0).astype("int64")
    M = len(tables)
    tests, notes, dirs, ci_m, methods = [], [], [], [], []
    for i in range(len(res)):
        used = int(res["imputations_used"].iat[i])
        note = res["note"].iat[i]
        if has[i]:
            tests.append(f"Rubin's rules over {used} imputations, t ({comb['df'][i]:.1f} df, Barnard-Rubin)")
            ci_m.append("rubin-t")
            if note and str(note).startswith("not estimable"):
                note = None  # estimable in enough imputations although not on the point correction
            if used < M:
                note = "; ".join(x for x in (note, f"{M - used} of {M} imputations not estimable, left out") if x)
        else:
            tests.append(None)
            ci_m.append(None)
            if used and used < 2:
                note = "; ".join(x for x in (note, f"not estimable: tested in {used} of {M} imputations (Rubin's rules need 2)") if x)
        notes.append(note or None)
        dirs.append(direction(res["group_a"].iat[i], res["group_b"].iat[i], estimate[i]) if np.isfinite(estimate[i]) else None)
        methods.append(f"{res['method'].iat[i]}{'; ' + label if label else ''}")
    res["test"], res["note"], res["direction"], res["ci_method"], res["method"] = tests, notes, dirs, ci_m, methods
    res["p_adj"] = adjust_pvalues(res, config.correction, config.family)
    return res


_WORKER: dict = {}


def _worker_init(cohort, config, method, kw, fit) -> None:
    _WORKER.update(cohort=cohort, config=config, method=method, kw=kw, fit=fit)


def _worker_run(rates: pd.DataFrame) -> pd.DataFrame:
    w = _WORKER
    return w["fit"](corrected_cohort(w["cohort"], rates, w["method"], **w["kw"]), w["config"], validate=False)


def corrected_hurdle_analysis(
    cohort: pd.DataFrame,
    config: HurdleConfig,
    validation: ValidationSet | None = None,
    *,
    fit,
    validate: bool = True,
    show_progress: bool = False,
) -> pd.DataFrame:
    """The hurdle analysis on corrected percent time (module docstring).

    Parameters
    ----------
    cohort : pandas.DataFrame
        Cohort table (uncorrected read-out).
    config : HurdleConfig
        ``misclassification`` "acc", "pacc" or "ratio", ``imputations``, ``imputation_seed``, ``error_rates``,
        ``min_coded_per_group``, ``frame_rate``, ``zero_floor``, and the hurdle's own options.
    validation : ValidationSet, optional
        The confusion counts; default: read from ``config.validation``.
    fit : callable
        ``fit(cohort, config, validate=False) -> results``: the uncorrected hurdle
        (:func:`analysis.hurdle.hurdle_analysis` passes its own, so this module does not import it).

    Returns
    -------
    pandas.DataFrame
        :data:`analysis.hurdle.RESULT_COLUMNS` + :data:`EXTRA_COLUMNS`.
    """
    hurdle_analysis = fit
    if config.misclassification == "none":
        raise ValueError("corrected_hurdle_analysis needs misclassification 'acc', 'pacc' or 'ratio'")
    if validate:
        cohort = validate_cohort(cohort, config)
    if validation is None:
        if config.validation is None:
            raise ValueError(f"misclassification {config.misclassification!r} needs a validation folder (--validation RUN/validation)")
        validation = read_validation(config.validation, reference=config.validation_reference)
    check_method_inputs(config.misclassification, validation, cohort)
    by_group, grouping = rate_grouping(validation, config.groups, config.error_rates, config.min_coded_per_group)
    plain = replace(config, misclassification="none")
    fixed = replace(plain, actions=tuple(select_actions(cohort, config)))
    uncorrected = hurdle_analysis(cohort, fixed, validate=False)
    if config.intensity_se in ("permutation", "wild"):
        # Rubin's rules combine estimates and SEs; a resampling test's SE is HC2 with a t(n - p) interval,
        # which is exactly what hc2-t computes, without the draws (whose p-values would be discarded).
        fixed = replace(fixed, intensity_se="hc2-t")
    kw = dict(frame_rate=config.frame_rate, zero_floor=config.zero_floor)
    rk = dict(by_group=by_group, groups=config.groups, min_positive=config.min_coded_positive)
    point_rates = estimate_rates(validation, **rk)
    needed = list(METHOD_RATES[config.misclassification])
    missing = sorted(set(fixed.actions) - set(point_rates.dropna(subset=needed)["action"]))
    point = hurdle_analysis(corrected_cohort(cohort, point_rates, config.misclassification, **kw), fixed, validate=False)
    draws = bootstrap_rates(validation, config.imputations, seed=config.imputation_seed, **rk)
    if show_progress:
        from pipeline.cli import progress

        draws = progress(draws, desc="imputations", unit="table")
    if config.imputation_workers > 1:
        # One process per core: each imputation is an independent hurdle run. The cohort and settings go
        # to each worker once (initializer); a draw sends only its rates.
        with ProcessPoolExecutor(config.imputation_workers, initializer=_worker_init,
                                 initargs=(cohort, fixed, config.misclassification, kw, hurdle_analysis)) as ex:  # fmt: skip
            tables = list(ex.map(_worker_run, draws, chunksize=max(1, len(draws) // (4 * config.imputation_workers))))
    else:
        tables = [hurdle_analysis(corrected_cohort(cohort, r, config.misclassification, **kw), fixed, validate=False) for r in draws]
    res = combine_imputations(point, tables, config, label=f"misclassification-corrected ({config.misclassification})")
    if missing:
        gone = res["action"].isin(missing)
        for c in ("estimate", "se", "effect", "ci_low", "ci_high", "statistic", "p", "ame_pp", "df", "fmi"):
            res.loc[gone, c] = np.nan
        res.loc[gone, ["test", "direction", "ci_method"]] = None
        res.loc[gone, "note"] = ("not estimable: no coded-to-read-out ratio (the read-out marks no frame of this action on the "
                                 "coded participants)" if config.misclassification == "ratio" else
                                 "not estimable: no error rates (the coded participants show no frame of this action, or none without it)")  # fmt: skip
        res["p_adj"] = adjust_pvalues(res, config.correction, config.family)
    res["misclassification"] = correction_text(config.misclassification, validation, grouping, config.imputations)
    for col, src in (("estimate_uncorrected", "estimate"), ("effect_uncorrected", "effect"), ("p_uncorrected", "p"),
                     ("p_adj_uncorrected", "p_adj")):  # fmt: skip
        res[col] = uncorrected[src].to_numpy()
    res["selection"] = config.selection
    for c in ("direction", "test", "ci_method", "note"):
        res[c] = res[c].astype(object).where(res[c].notna(), None)
    return res
