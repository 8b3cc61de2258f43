"""The cross-validation report of training on coded videos: what a lab quotes for participants it never saw.

With ``--folds K`` every participant validates in exactly one fold, read by the fold's model that
never saw them, with the read-out calibrated on that fold's validation participants. The report:

    OUT/cv/per_fold.parquet|.csv   every fold's agreement table (``analysis.agreement`` pairs, column
                                   ``fold`` first): model vs each coder and coder vs coder
    OUT/cv/pooled.parquet|.csv     the same over all K folds' validation participants together: each
                                   participant's model track from their own fold (pooled kappa over all
                                   frames, ICC over all participants, bootstrap over participants)
    OUT/cv/summary.csv             per scope (fold-k, pooled, cross-fitted) and action: model_kappa (mean over coders),
                                   coder_kappa (mean over coder pairs), model_icc, coder_icc (ICC(2,1)
                                   of percent time), model_mae_pp, n_participants
    OUT/cv/summary.md              the pooled table as Markdown, with the folds' ``all`` rows
    OUT/cv/cross_fitted.parquet|.csv  the pooled pairs with a cross-fitted read-out (below)

Cross-fitted read-out (``cross-fitted`` scope): a fold's read-out thresholds are chosen on the same
validation participants its agreement is measured on, which flatters the agreement a little. Here each
fold's validation participants are halved (stratified by group, :func:`recipes.coded_splits.holdout_split`
with share 0.5), each half is read out with thresholds calibrated on the other half only, and the
agreement is pooled over all halves: no participant's numbers depend on a threshold chosen on them.
Skipped (and said so) when a fold has a group with a single validation participant.
    OUT/cv/validation/             the pooled comparison as ``analysis.agreement`` writes it (figures:
                                   kappa by action beside the coder range, Bland-Altman per action)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.agreement.compare import ALL
from analysis.agreement.config import AgreementConfig
from analysis.agreement.outputs import write_validation
from pipeline.artifacts import atomic_write_text, write_artifact
from pipeline.readout import ReadoutConfig
from pipeline.cli import BadInput
from recipes.coded_labels import truth_frames
from recipes.coded_splits import holdout_split, participants_table
from recipes.coded_validation import agreement, calibrate, model_rows, read_out, subset_manifest

__all__ = ["SUMMARY_COLUMNS", "write_cv_report", "markdown_table"]

SUMMARY_COLUMNS = ("scope", "action", "model_kappa", "coder_kappa", "model_icc", "coder_icc", "model_mae_pp",
                   "n_participants")


def _fmt(v) -> str:
    return "-" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.2f}"


def markdown_table(summary: pd.DataFrame, scope: str = "pooled") -> str:
    """One scope's summary rows as a Markdown table (kappa and ICC, model beside coders)."""
    d = summary[summary["scope"] == scope]
    lines = ["| action | kappa model-coder | kappa coder-coder | ICC(2,1) % time model-coder | "
             "ICC(2,1) coder-coder | MAE pp | participants |", "|---|---|---|---|---|---|---|"]
    for r in d.itertuples(index=False):
        lines.append(f"| {r.action} | {_fmt(r.model_kappa)} | {_fmt(r.coder_kappa)} | {_fmt(r.model_icc)} | "
                     f"{_fmt(r.coder_icc)} | {_fmt(r.model_mae_pp)} | {r.n_participants} |")
    return "\n".join(lines)


def _cross_fitted(plan, parts: list[dict], settings: AgreementConfig):
    """The pooled agreement with a cross-fitted read-out (module docstring); (None, why) when impossible."""
    coded = plan.coded
    results = []
    for p in parts:
        part_dir = Path(p["model"]).parent
        people = participants_table(plan.manifest.videos, p["validation_videos"])
        try:
            halves = holdout_split(people, share=0.5, seed=coded.split_seed)
        except BadInput as exc:
            return None, f"{p['part']}: {exc}"
        pid = dict(zip(plan.manifest.videos["video_id"].astype(str), plan.manifest.videos["participant_id"].astype(str)))
        for half in ("train", "validation"):
            mine = set(halves.loc[halves["part"] == half, "participant_id"])
            own = [v for v in p["validation_videos"] if pid[v] in mine]
            other = [v for v in p["validation_videos"] if pid[v] not in mine]
            cal = calibrate(subset_manifest(plan.manifest, other), part_dir / "validation_windows",
                            truth_frames(plan.source, other), base=ReadoutConfig(scores=coded.readout_scores),
                            engagement_weight=coded.engagement_weight, min_durations=tuple(coded.min_durations))
            results.append(read_out(subset_manifest(plan.manifest, own), part_dir / "validation_windows", cal.config))
    return agreement(plan.source.events, plan.source.sessions, plan.manifest, results, settings), ""


def write_cv_report(plan, parts: list[dict], out: Path, *, counts: dict, timings: dict) -> dict:
    """Write the report (module docstring) from the trained parts; returns ``written``, ``summary``, ``markdown``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    coded = plan.coded
    per_fold, summaries, results = [], [], []
    for p in parts:
        part_dir = Path(p["model"]).parent
        pairs = pd.read_parquet(part_dir / "validation" / "pairs.parquet")
        per_fold.append(pairs.assign(fold=p["part"])[["fold"] + list(pairs.columns)])
        readout = ReadoutConfig.from_dict(p["provenance"]["readout"])
        man = subset_manifest(plan.manifest, p["validation_videos"])
        results.append(read_out(man, part_dir / "validation_windows", readout))
    settings = AgreementConfig(bootstrap=coded.bootstrap, seed=coded.split_seed)
    pooled = agreement(plan.source.events, plan.source.sessions, plan.manifest, results, settings)
    for p, pairs in zip(parts, per_fold):
        summaries.append(model_rows(pairs).assign(scope=p["part"]))
    summaries.append(model_rows(pooled.pairs).assign(scope="pooled"))
    crossed, cross_note = _cross_fitted(plan, parts, settings)
    if crossed is not None:
        summaries.append(model_rows(crossed.pairs).assign(scope="cross-fitted"))
    summary = pd.concat(summaries, ignore_index=True)[list(SUMMARY_COLUMNS)]
    per_fold = pd.concat(per_fold, ignore_index=True)
    written = []
    facts = {"label_source": plan.source.name, "coders": list(plan.source.coders), "folds": coded.folds,
             "classes": list(plan.choice.classes.names)}
    tables = [("per_fold", per_fold), ("pooled", pooled.pairs), ("summary", summary)]
    if crossed is not None:
        tables.append(("cross_fitted", crossed.pairs))
    for name, table in tables:
        written.append(write_artifact(table, out / f"{name}.parquet", contract=None, stage="train_coded_cv",
                                      config=coded.to_dict(), extra=facts))
        written.append(atomic_write_text(out / f"{name}.csv", table.to_csv(index=False)))
    written += write_validation(pooled, out / "validation")
    folds_all = summary[(summary["action"] == ALL) & summary["scope"].str.startswith("fold-")]
    md = [f"**Cross-validation on coded videos** ({coded.folds} folds by participant, stratified by group; "
          f"label source {plan.source.name}; coders {', '.join(plan.source.coders)}; "
          f"{plan.splits['participant_id'].nunique()} participants, {counts['windows']} windows, "
          f"{counts['low_pose']} left out for too little pose). Agreement with the coders on participants the "
          "model never saw, read-out calibrated per fold on that fold's validation participants:", "",
          markdown_table(summary), "",
          ("With a cross-fitted read-out (each half of a fold's validation participants read with thresholds "
           "chosen on the other half):" if crossed is not None else f"No cross-fitted read-out: {cross_note}"), "",
          markdown_table(summary, "cross-fitted") if crossed is not None else "", "",
          "Per fold, any action (`all`): " + "; ".join(
              f"{r.scope} kappa {_fmt(r.model_kappa)} (coders {_fmt(r.coder_kappa)}), ICC {_fmt(r.model_icc)} "
              f"(coders {_fmt(r.coder_icc)})" for r in folds_all.itertuples()), "",
          "Timings (s): " + ", ".join(f"{k} {v}" for k, v in timings.items())]
    markdown = "\n".join(md) + "\n"
    written.append(atomic_write_text(out / "summary.md", markdown))
    return {"written": written, "summary": summary, "markdown": markdown, "pooled": pooled}
