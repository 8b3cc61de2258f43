"""Two-part (hurdle) statistics of a cohort table: API and command line.

``python -m analysis.hurdle --cohort cohort.parquet`` or, in a notebook::

    from analysis.hurdle import hurdle_analysis
    from analysis.config import HurdleConfig
    results = hurdle_analysis(cohort_df, HurdleConfig(covariates=("age", "sex")))

For each selected action and each pair of groups, two tests:

1. *probability* of any engagement: logistic GLM on ``percent_time > 0`` (:mod:`analysis.logistic`,
   Firth's penalised likelihood under separation);
2. *intensity* among engagers: fractional logit on ``percent_time / 100`` (:mod:`analysis.fractional`),
   contrasts tested by ``config.intensity_se`` (:mod:`analysis.intensity_tests`; the default is the
   method that held its size in the calibration study of issue 28, docs/hurdle.md).

By default one model per action and part holds all groups (plus covariates) and the pairs are Wald
contrasts of it (penalised LR for Firth fits); ``pairwise_subsets`` refits on each pair's participants.
Effects are odds ratios of group_a relative to group_b (for intensity: the ratio of the odds
``mu / (1 - mu)`` of the mean fraction of time). p-values are adjusted over the configured family
(:mod:`analysis.correction`). The result is a tidy table, one row per action x contrast x part, which
includes non-significant and non-estimable tests (those with a ``note`` and no numbers).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.cli import check_output_dir, handle_errors, make_parser, progress, report_written, setup_logging
from pipeline.run_lock import lock_for_output

from .cohort import categorical_covariates, load_cohort, select_actions, validate_cohort
from .config import (
    CORRECTIONS,
    DEFAULT_GROUPS,
    ERROR_RATES,
    FAMILIES,
    INTENSITY_SE,
    MISCLASSIFICATION,
    RANK_BY,
    HurdleConfig,
    OutputConfig,
)
from .contrasts import contrast_label, direction, pairs
from .descriptives import GroupCounts, group_counts
from .design import build_design
from .fractional import fit_fractional
from .intensity_tests import contrast_test, method_label, sandwich_of
from .logistic import fit_logistic, logistic_contrast
from .results_table import RESULT_COLUMNS, finish_results

__all__ = ["RESULT_COLUMNS", "probability_part", "intensity_part", "hurdle_analysis", "main"]

log = logging.getLogger(__name__)

_PROB_METHOD = "logistic GLM (maximum likelihood)"


def _counts(sample: pd.DataFrame, groups: Sequence[str]) -> dict[str, GroupCounts]:
    return group_counts(sample["group"].to_numpy(), sample["percent_time"].to_numpy(), groups)


def _base_row(counts: dict[str, GroupCounts], a: str, b: str, part: str) -> dict:
    ca, cb = counts[a], counts[b]
    return {
        "contrast": contrast_label(a, b), "group_a": a, "group_b": b, "part": part,
        "n_a": ca.n, "n_b": cb.n, "engaged_a": ca.engaged, "engaged_b": cb.engaged,
        "pct_engaged_a": ca.pct_engaged, "pct_engaged_b": cb.pct_engaged,
        "mean_a": ca.mean, "mean_b": cb.mean,
    }  # fmt: skip


def _numbers(row: dict, test: dict, a: str, b: str) -> None:
    """Fill estimate, effect (exp), CI (exp) and p into a row."""
    est = float(test["estimate"])
    row.update(
        estimate=est,
        se=float(test["se"]),
        effect=float(np.exp(est)),
        ci_low=float(np.exp(test["ci_low"])),
        ci_high=float(np.exp(test["ci_high"])),
        statistic=float(test["statistic"]),
        test=str(test["test"]),
        p=float(test["p"]),
        direction=direction(a, b, est),
    )


def _samples(data: pd.DataFrame, config: HurdleConfig) -> Iterable[tuple[list[str], list[tuple[str, str]], pd.DataFrame]]:
    """(groups in the model, pairs it answers, its rows): one all-group model, or one per pair."""
    all_pairs = pairs(config.groups)
    if not config.pairwise_subsets:
        yield list(config.groups), all_pairs, data
        return
    for a, b in all_pairs:
        yield [a, b], [(a, b)], data[data["group"].isin([a, b])]


def _join(*notes: str | None) -> str | None:
    text = "; ".join(n for n in notes if n)
    return text or None


def _levels(data: pd.DataFrame, config: HurdleConfig) -> tuple[list[str], dict[str, list]]:
    cats = categorical_covariates(data, config.covariates, config.categorical)
    return cats, {c: sorted(pd.unique(data[c].astype(str))) for c in cats}


def probability_part(data: pd.DataFrame, config: HurdleConfig = HurdleConfig()) -> pd.DataFrame:
    """Engagement-probability contrasts for one action.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per participant for a single action: ``group``, ``percent_time`` and the covariates.
    config : HurdleConfig

    Returns
    -------
    pandas.DataFrame
        One row per contrast (part ``"probability"``), columns as :data:`RESULT_COLUMNS` less the
        action and correction columns. ``effect`` is the odds ratio of engagement, group_a vs group_b;
        ``ame_pp`` the average marginal effect in percentage points of probability.
    """
    cats, levels = _levels(data, config)
    rows = []
    for groups, prs, sample in _samples(data, config):
        y = (sample["percent_time"].to_numpy(dtype=np.float64) > 0).astype(np.float64)
        whole = None
        if not y.any():
            whole = "not estimable: no engagers in any group"
        elif y.all():
            whole = "not estimable: every participant engaged"
        fit = None
        if whole is None:
            design = build_design(sample, groups, config.covariates, cats, levels)
            fit = fit_logistic(design, y, firth=config.firth)
            if fit.method == "firth" and not fit.converged:
                whole = "not estimable: Firth fit did not converge"
        counts = _counts(sample, groups)
        for a, b in prs:
            row = _base_row(counts, a, b, "probability")
            row.update(method=fit.method_label if fit is not None else _PROB_METHOD, n_fit=int(len(sample)))
            if whole is not None:
                row["note"] = whole
                rows.append(row)
                continue
            if row["engaged_a"] == 0 and row["engaged_b"] == 0:
                row["note"] = "not estimable: no engagers in either group"
            elif row["engaged_a"] == row["n_a"] and row["engaged_b"] == row["n_b"]:
                row["note"] = "not estimable: all engaged in both groups"
            else:
                test = logistic_contrast(fit, a, b, ci_level=config.ci_level, ci=config.firth_ci)
                _numbers(row, test, a, b)
                X = fit.design
                row["ame_pp"] = float(100 * np.mean(fit.predict(X.with_group(a)) - fit.predict(X.with_group(b))))
                row["ci_method"] = test.get("ci", "wald")
                sep = None
                if fit.method == "firth":
                    sep = (
                        f"separation ({fit.separation}): Firth penalised likelihood, penalised LR p, {row['ci_method']} CI"
                        if fit.separation
                        else "Firth penalised likelihood (requested), penalised LR p"
                    )
                dropped = f"covariate columns dropped (no variation): {', '.join(X.dropped)}" if X.dropped else None
                row["note"] = _join(sep, dropped)
            rows.append(row)
    return pd.DataFrame(rows)


def intensity_part(data: pd.DataFrame, config: HurdleConfig = HurdleConfig()) -> pd.DataFrame:
    """Intensity-among-engagers contrasts for one action (fractional logit, tested by ``config.intensity_se``).

    Groups with fewer than ``config.min_engaged`` engagers are left out of the model; their contrasts
    get the note "not estimable: too few engagers" and no numbers. A contrast with a group of fewer
    than ``config.min_engaged_test`` engagers keeps its estimate, effect and average marginal effect but
    gets no SE, CI or p: the note says that no test holds its size with so few engagers.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per participant for a single action (engagers and non-engagers).
    config : HurdleConfig

    Returns
    -------
    pandas.DataFrame
        One row per contrast (part ``"intensity"``). ``effect`` is the odds ratio of the mean fraction
        of time, group_a vs group_b; ``ame_pp`` the average marginal effect on percent time among
        engagers, in percentage points.
    """
    cats, levels = _levels(data, config)
    rows = []
    for groups, prs, sample in _samples(data, config):
        eng = sample[sample["percent_time"] > 0]
        counts = _counts(sample, groups)
        n_eng = {g: c.engaged for g, c in counts.items()}
        # A group whose engagers all sit at 100 % has no finite intensity odds (its coefficient runs
        # off to infinity); it is left out of the model like a group with too few engagers, so that
        # the other pairs stay estimable.
        at_max = {g for g in groups if n_eng[g] and counts[g].min >= 100.0}
        ok = [g for g in groups if n_eng[g] >= config.min_engaged and g not in at_max]
        fit = None
        if len(ok) >= 2:
            fitted = eng[eng["group"].isin(ok)]
            design = build_design(fitted, ok, config.covariates, cats, levels)
            fit = fit_fractional(design, fitted["percent_time"].to_numpy(dtype=np.float64) / 100.0,
                                 sandwich=sandwich_of(config.intensity_se))  # fmt: skip
        label = method_label(config.intensity_se, config.intensity_resamples)
        for a, b in prs:
            row = _base_row(counts, a, b, "intensity")
            row.update(method=label, n_fit=int(len(fit.y)) if fit is not None else 0)
            few = [g for g in (a, b) if n_eng[g] < config.min_engaged]
            full = [g for g in (a, b) if g in at_max and g not in few]
            if few:
                detail = ", ".join(f"{g}: {n_eng[g]}" for g in few)
                row["note"] = f"not estimable: too few engagers ({detail} < {config.min_engaged})"
            elif full:
                row["note"] = f"not estimable: every engager at 100 % ({', '.join(full)}): intensity at a boundary"
            elif fit.problem:
                row["note"] = f"not estimable: {fit.problem}"
            else:
                D = fit.design
                untested = [g for g in (a, b) if n_eng[g] < config.min_engaged_test]
                test = contrast_test(fit, a, b, config.intensity_se, ci_level=config.ci_level,
                                     resamples=config.intensity_resamples, seed=config.intensity_seed) if not untested else None  # fmt: skip
                if test is not None and (not np.isfinite(test["se"]) or test["se"] <= 0):
                    row["note"] = "not estimable: no variation in intensity"
                else:
                    if test is None:
                        est = float(D.contrast_vector(a, b) @ fit.params)
                        row.update(estimate=est, effect=float(np.exp(est)), direction=direction(a, b, est))
                    else:
                        _numbers(row, test, a, b)
                        row["ci_method"] = str(test["ci"])
                    row["ame_pp"] = float(100 * np.mean(fit.predict(D.with_group(a)) - fit.predict(D.with_group(b))))
                    few_out = [g for g in groups if n_eng[g] < config.min_engaged]
                    full_out = [g for g in groups if g in at_max and g not in few_out]
                    detail = ", ".join(f"{g}: {n_eng[g]}" for g in untested)
                    row["note"] = _join(
                        f"not tested: too few engagers for any intensity test to hold its size ({detail} < "
                        f"{config.min_engaged_test}); estimate only" if untested else None,
                        f"groups left out of the model (too few engagers): {', '.join(few_out)}" if few_out else None,
                        f"groups left out of the model (every engager at 100 %): {', '.join(full_out)}" if full_out else None,
                        f"covariate columns dropped (no variation): {', '.join(D.dropped)}" if D.dropped else None,
                    )
            rows.append(row)
    return pd.DataFrame(rows)


def hurdle_analysis(
    cohort: pd.DataFrame,
    config: HurdleConfig = HurdleConfig(),
    *,
    validate: bool = True,
    show_progress: bool = False,
    validation=None,
) -> pd.DataFrame:
    """Run both hurdle parts for the selected actions and all pairwise group contrasts.

    With ``config.misclassification`` other than ``"none"`` the analysis runs on percent time
    corrected for the read-out's errors, M times, combined by Rubin's rules
    (:func:`analysis.corrected_hurdle.corrected_hurdle_analysis`; ``validation`` a
    :class:`analysis.misclassification.ValidationSet`, default read from ``config.validation``).

    Parameters
    ----------
    cohort : pandas.DataFrame
        Cohort table (long): participant_id, group, action_id, action, percent_time (0-100),
        observed_s and participant-level covariates.
    config : HurdleConfig
        All options (groups, actions, covariates, correction, family, ...).
    validate : bool
        Check the table first (:func:`analysis.cohort.validate_cohort`); raises
        :class:`analysis.cohort.CohortError` on bad input.
    show_progress : bool
        Progress bar over actions (stderr).

    Returns
    -------
    pandas.DataFrame
        Tidy results, one row per action x contrast x part, columns :data:`RESULT_COLUMNS`
        (probability rows first within an action).
    """
    if config.misclassification != "none":
        from .corrected_hurdle import corrected_hurdle_analysis

        return corrected_hurdle_analysis(cohort, config, validation, fit=hurdle_analysis, validate=validate,
                                         show_progress=show_progress)  # fmt: skip
    if validate:
        cohort = validate_cohort(cohort, config)
    else:
        cohort = cohort.astype({"participant_id": str, "group": str, "action": str})
    actions = select_actions(cohort, config)
    ids = cohort.drop_duplicates("action").set_index("action")["action_id"]
    by_action = dict(tuple(cohort.groupby("action", sort=False)))
    keep_cols = ["participant_id", "group", "percent_time", *[c for c in config.covariates if c not in ("group", "percent_time")]]
    frames = []
    it = progress(actions, desc="actions", unit="action") if show_progress else actions
    for action in it:
        data = by_action[action][keep_cols].reset_index(drop=True)
        for part in (probability_part(data, config), intensity_part(data, config)):
            part.insert(0, "action_id", int(ids[action]))
            part.insert(0, "action", action)
            frames.append(part)
    res = pd.concat(frames, ignore_index=True)
    res = res.reindex(columns=RESULT_COLUMNS)
    res["ci_method"] = res["ci_method"].where(res["p"].notna(), None)
    return finish_results(res, config, config.family)


# --------------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------------


def _csv_list(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def build_parser() -> argparse.ArgumentParser:
    p = make_parser(
        "Hurdle statistics of a cohort table: per action and pair of groups, (1) probability of any "
        "engagement (logistic GLM; Firth's penalised likelihood under separation) and (2) intensity among "
        "engagers (fractional logit; contrasts tested as --intensity-se says). Writes results.parquet/.csv, a publication table "
        "(HTML, Markdown, LaTeX), descriptives and violin plots.",
        prog="python -m analysis.hurdle",
    )
    p.epilog = (
        "Exit status 2 on unusable input (the message names the file, column and 0-based rows); nothing is "
        "written then. Method and columns: docs/hurdle.md."
    )
    p.add_argument("--cohort", required=True, type=Path, metavar="PATH", help="cohort table (.parquet, or .csv) in the cohort schema")
    p.add_argument("--out", type=Path, default=None, metavar="DIR", help="output folder (default: <cohort name>_hurdle next to the cohort file)")
    p.add_argument("--groups", type=_csv_list, default=",".join(DEFAULT_GROUPS), metavar="A,B,...", help="group labels, comma-separated, in contrast order (each pair A vs B, effect = A relative to B)")
    p.add_argument("--percent-scale", choices=("percent", "fraction"), default=None,
                   help="unit of percent_time: percent (0-100) or fraction (0-1, multiplied by 100). Default: percent, "
                   "but a table whose values are all <= 1 is refused (exit 2) until you say which")  # fmt: skip
    p.add_argument("--ignore-other-groups", action="store_true", help="drop participants of groups not in --groups instead of failing")
    sel = p.add_mutually_exclusive_group()
    sel.add_argument("--actions", type=_csv_list, default=None, metavar="NAME,...", help="analyse exactly these actions (comma-separated names)")
    sel.add_argument("--top-actions", type=int, default=10, metavar="N", help="analyse the N most frequent actions (0 = all actions)")
    sel.add_argument("--all-actions", action="store_true", help="analyse every action in the cohort")
    p.add_argument("--rank-by", choices=RANK_BY, default="engaged", help="'frequent' means: engaged = largest share of participants with any engagement; mean = largest mean percent time")
    p.add_argument("--covariates", type=_csv_list, default=(), metavar="COL,...", help="participant-level covariate columns adjusted for in both parts, comma-separated")
    p.add_argument("--categorical", type=_csv_list, default=(), metavar="COL,...", help="covariates to treat as categorical although numeric (text/bool columns are categorical automatically)")
    p.add_argument("--min-engaged", type=int, default=3, metavar="N", help="minimum engagers per group for the intensity part; fewer gives a 'not estimable' row")
    p.add_argument("--intensity-se", choices=INTENSITY_SE, default=HurdleConfig.intensity_se,
                   help=f"test of the intensity contrasts (default {HurdleConfig.intensity_se}, the method that held its size in "
                   "the calibration study; hc0-z is the method before it, anti-conservative with few engagers): sandwich "
                   "HC0 x n/(n-1), HC2 or HC3 with a z or t(n-p) reference, wild score bootstrap, or permutation of "
                   "group labels among engagers; see docs/hurdle.md")  # fmt: skip
    p.add_argument("--intensity-resamples", type=int, default=HurdleConfig.intensity_resamples, metavar="B",
                   help="draws of the wild bootstrap / permutation test")  # fmt: skip
    p.add_argument("--intensity-seed", type=int, default=HurdleConfig.intensity_seed, metavar="SEED", help="seed of those draws")
    p.add_argument("--min-engaged-test", type=int, default=HurdleConfig.min_engaged_test, metavar="N",
                   help="fewest engagers per group for an intensity p-value; below it the row has the estimate only and "
                   "a note (no method held its size there in the calibration study)")  # fmt: skip
    p.add_argument("--correction", choices=CORRECTIONS, default="fdr_bh", help="multiple-comparison correction")
    p.add_argument("--family", choices=FAMILIES, default="part", help="tests corrected together: part = each hurdle part's tests (all actions x contrasts); all; action; contrast")
    p.add_argument("--pairwise-subsets", action="store_true", help="refit each contrast on the two groups' participants only (default: one model with all groups, pairwise contrasts)")
    p.add_argument("--firth", choices=("auto", "always"), default="auto", help="auto: Firth's penalised logistic regression only when separation is detected; always: for every engagement model")
    p.add_argument("--firth-ci", choices=("profile", "wald"), default="profile", help="confidence interval of Firth contrasts")
    p.add_argument("--ci-level", type=float, default=0.95, metavar="LEVEL", help="confidence level of all intervals")
    p.add_argument("--misclassification", choices=MISCLASSIFICATION, default="none",
                   help="correct percent time for the read-out's errors before the hurdle: acc = adjusted count (observed - fpr) / "
                   "(tpr - fpr), pacc = its variant on per-frame scores, ratio = observed x (coded / read-out frames of the coded "
                   "participants; for errors that scale with the action's own time), from --validation; none (default) = no "
                   "correction, the analysis as before. Not the multiple-comparison correction (--correction)")  # fmt: skip
    p.add_argument("--validation", type=Path, default=None, metavar="RUN/validation",
                   help="validation folder with confusion.parquet (and scores.parquet for pacc), from python -m analysis.agreement")  # fmt: skip
    p.add_argument("--validation-reference", default=None, metavar="CODER", help="reference coder of the confusion counts (default consensus, or the only one)")
    p.add_argument("--imputations", type=int, default=HurdleConfig.imputations, metavar="M",
                   help="bootstrap draws of the coded participants (corrected tables combined by Rubin's rules)")  # fmt: skip
    p.add_argument("--imputation-seed", type=int, default=HurdleConfig.imputation_seed, metavar="SEED", help="seed of those draws")
    p.add_argument("--imputation-workers", type=int, default=HurdleConfig.imputation_workers, metavar="N",
                   help="processes fitting the imputations (results do not depend on it)")  # fmt: skip
    p.add_argument("--error-rates", choices=ERROR_RATES, default=HurdleConfig.error_rates,
                   help="read-out error rates per group, pooled, or auto (per group when every group has --min-coded-per-group coded participants)")  # fmt: skip
    p.add_argument("--min-coded-per-group", type=int, default=HurdleConfig.min_coded_per_group, metavar="N", help="coded participants per group needed for per-group rates (auto)")
    p.add_argument("--min-coded-positive", type=int, default=HurdleConfig.min_coded_positive, metavar="N", help="with per-group rates: coded participants showing the action needed in every group for its own per-group rate (else pooled)")
    p.add_argument("--frame-rate", type=float, default=HurdleConfig.frame_rate, metavar="FPS", help="frames per second of the read-out (for the zero floor of the correction)")
    p.add_argument("--zero-floor", type=float, default=HurdleConfig.zero_floor, metavar="Q",
                   help="observed frames at or below this quantile of Binomial(frames, fpr) are corrected to 0 (0: only observed zeros)")  # fmt: skip
    p.add_argument("--bouts", type=Path, default=None, metavar="PATH",
                   help="the read-out's bouts.parquet: adds rows part=count (bouts per participant, negative binomial GLM with "
                   "log observed minutes as offset, Poisson without over-dispersion; rate ratios) and part=duration (mean "
                   "bout duration among participants with bouts, Gamma GLM with log link), each its own correction family")  # fmt: skip
    p.add_argument("--sensitivity", action="store_true",
                   help="re-run the read-out and the hurdle with every threshold x 0.8, 0.9, 1, 1.1, 1.25 and mark each result "
                   "stable / fragile / reversed (column 'sensitivity'; sensitivity.csv, sensitivity.png). Needs the windows "
                   "and the manifest: --windows/--manifest, or a cohort at RUN/readout/cohort.parquet of a run folder")  # fmt: skip
    p.add_argument("--windows", type=Path, default=None, metavar="DIR", help="windows folder for --sensitivity (default RUN/recognize/windows)")
    p.add_argument("--manifest", type=Path, default=None, metavar="PATH", help="cohort manifest for --sensitivity (default RUN/manifest.csv)")
    p.add_argument("--sensitivity-scales", type=lambda t: tuple(float(x) for x in t.split(",")), default=None, metavar="F,...",
                   help="threshold factors of the grid (default 0.8,0.9,1,1.1,1.25)")  # fmt: skip
    p.add_argument("--table-rows", type=int, default=10, metavar="K", help="rows of the publication table (the K most significant tests by raw p)")
    p.add_argument("--no-plots", action="store_true", help="skip the violin plots")
    p.add_argument("--plot-p", choices=("adjusted", "raw"), default="adjusted", help="which p decides the significance brackets in the plots")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level for brackets (* < alpha, ** < .01, *** < .001)")
    return p


def _sensitivity_inputs(args):
    """(manifest, windows folder, read-out settings) for --sensitivity; BadInput when they cannot be found."""
    from pipeline.artifacts import read_sidecar
    from pipeline.cli import BadInput
    from pipeline.manifest import read_manifest
    from pipeline.readout import ReadoutConfig

    run = Path(args.cohort).resolve().parent.parent
    windows = args.windows or run / "recognize" / "windows"
    manifest = args.manifest or run / "manifest.csv"
    if not Path(windows).is_dir():
        raise BadInput(f"--sensitivity needs the windows folder: {windows} is not one (give --windows DIR)")
    if not Path(manifest).is_file():
        raise BadInput(f"--sensitivity needs the cohort manifest: {manifest} not found (give --manifest PATH)")
    side = read_sidecar(args.cohort) or {}
    if not isinstance(side.get("readout"), dict):
        raise BadInput(f"--sensitivity: {args.cohort} has no read-out record in its sidecar (written by pipeline.aggregate)")
    try:
        readout = ReadoutConfig.from_dict(side["readout"])
    except (TypeError, ValueError) as exc:
        raise BadInput(f"--sensitivity: the read-out record of {args.cohort} is not valid: {exc}") from None
    return read_manifest(manifest, check_videos=False), Path(windows), readout


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 on bad input, nothing written then)."""
    from .outputs import check_out_dir_free, default_out_dir, planned_outputs, write_outputs

    args = build_parser().parse_args(argv)
    setup_logging(verbose=args.verbose, quiet=args.quiet)
    with handle_errors("analysis.hurdle"), contextlib.ExitStack() as held:  # held: the run lock
        from pipeline.cli import BadInput

        try:
            config = HurdleConfig(
                groups=args.groups,
                actions=args.actions,
                top_actions=0 if args.all_actions else args.top_actions,
                rank_by=args.rank_by,
                covariates=args.covariates,
                categorical=args.categorical,
                min_engaged=args.min_engaged,
                intensity_se=args.intensity_se,
                intensity_resamples=args.intensity_resamples,
                intensity_seed=args.intensity_seed,
                min_engaged_test=args.min_engaged_test,
                correction=args.correction,
                family=args.family,
                pairwise_subsets=args.pairwise_subsets,
                firth=args.firth,
                firth_ci=args.firth_ci,
                ci_level=args.ci_level,
                ignore_other_groups=args.ignore_other_groups,
                percent_scale=args.percent_scale,
                misclassification=args.misclassification,
                validation=None if args.validation is None else str(args.validation),
                validation_reference=args.validation_reference,
                imputations=args.imputations,
                imputation_seed=args.imputation_seed,
                imputation_workers=args.imputation_workers,
                error_rates=args.error_rates,
                min_coded_per_group=args.min_coded_per_group,
                min_coded_positive=args.min_coded_positive,
                frame_rate=args.frame_rate,
                zero_floor=args.zero_floor,
            )
            out_cfg = OutputConfig(table_rows=args.table_rows, plots=not args.no_plots, plot_p=args.plot_p, alpha=args.alpha)
        except ValueError as exc:
            raise BadInput(str(exc)) from None
        bad_cov = [c for c in config.categorical if c not in config.covariates]
        if bad_cov:
            raise BadInput(f"--categorical names {', '.join(bad_cov)} which are not in --covariates")
        if config.misclassification != "none" and config.validation is None:
            raise BadInput(f"--misclassification {config.misclassification} needs --validation RUN/validation")
        validation = None
        if config.misclassification != "none":
            from .misclassification import read_validation

            validation = read_validation(config.validation, reference=config.validation_reference)
        raw = load_cohort(args.cohort)
        cohort = validate_cohort(raw, config, source=str(args.cohort))
        if validation is not None:
            from .misclassification import check_method_inputs

            check_method_inputs(config.misclassification, validation, cohort)  # before the output folder is touched
        # The output folder is checked before the analysis: usable, and no user file in the way.
        out = args.out if args.out is not None else default_out_dir(args.cohort)
        planned = planned_outputs(select_actions(cohort, config), out_cfg, sensitivity=args.sensitivity, bouts=args.bouts is not None)
        held.enter_context(lock_for_output(out, command='python -m analysis.hurdle'))
        check_output_dir(out)
        check_out_dir_free(out, planned)
        bouts = None
        if args.bouts is not None:
            from .bouts_models import validate_bouts

            bouts = load_cohort(args.bouts)
            validate_bouts(bouts, cohort, source=str(args.bouts))  # bad input stops the run before any fit
        sens_inputs = _sensitivity_inputs(args) if args.sensitivity else None
        results = hurdle_analysis(cohort, config, validate=False, show_progress=not args.quiet, validation=validation)
        grid = None
        if sens_inputs is not None:
            from .sensitivity import SCALES, classify, sensitivity_grid

            manifest, windows, readout = sens_inputs
            grid = sensitivity_grid(manifest, windows, readout, config, args.sensitivity_scales or SCALES,
                                    actions=list(dict.fromkeys(results["action"])),
                                    hurdle=lambda c, cfg: hurdle_analysis(c, cfg, validation=validation))  # fmt: skip
            results["sensitivity"] = classify(results, grid, alpha=out_cfg.alpha)
        if bouts is not None:
            from .bouts_models import bout_analysis

            extra = bout_analysis(bouts, cohort, config, list(dict.fromkeys(results["action"])))
            results = pd.concat([results, extra.reindex(columns=results.columns)], ignore_index=True)
        for path in write_outputs(results, cohort, config, out_cfg, out, source=args.cohort, sensitivity=grid, bouts=bouts):
            report_written(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
