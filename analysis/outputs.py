"""Writing the hurdle analysis's output set so that a failure never leaves a half-set that looks complete,
and a rerun never deletes a file that is not ours.

Everything except ``results.parquet`` is first written into a staging folder beside the output folder
(:func:`pipeline.artifacts.staging_dir`: same file system, so moves are renames; a killed run's staging
folder is removed by the next run). Then the output folder is checked: a file under a name we are
about to write that no earlier run of ``analysis.hurdle`` recorded in the folder's output manifest
(``.outputs.json``) stops the run with a one-line error and nothing changes. Otherwise the previous
``results.parquet`` is removed, the manifest is updated to cover old and new files, the previous run's
files that the new set does not replace are removed (only those the manifest lists: a user's own files
in the folder stay), the staged files are moved in, and ``results.parquet`` (with its sidecar, through
:func:`pipeline.artifacts.write_artifact`, contract ``hurdle_results``) is written *last*; finally the
manifest lists exactly the new set. A folder whose ``results.parquet`` and sidecar exist therefore holds a
complete, matching set.

Files::

    results.parquet (+ .json sidecar)  tidy results, contract hurdle_results
    results.csv                        the same table as CSV
    table.html / table.md / table.tex  publication table (paper's Table V style)
    descriptives.csv                   n, engaged, % engaged, mean/median percent among engagers
    plots/<action>.png|svg             violin plot per selected action (paper's Fig. 3 style)
    overview.png|svg                   all selected actions in one figure
    .outputs.json                      output manifest: the files above, as this tool's own
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from pipeline.artifacts import (
    check_no_foreign_outputs,
    record_outputs,
    recorded_outputs,
    remove_outputs,
    sha256_file,
    sidecar_path,
    staging_dir,
    write_artifact,
)

from .config import HurdleConfig, OutputConfig
from .descriptives import describe_groups
from .tables import publication_table, table_caption, to_html, to_latex, to_markdown

__all__ = ["TOOL", "default_out_dir", "slug", "planned_outputs", "previous_outputs", "check_out_dir_free", "write_outputs"]

TOOL = "analysis.hurdle"  # the name under which the output manifest records our files
_RESULTS = "results.parquet"
_TABLES = ("table.html", "table.md", "table.tex")


def default_out_dir(cohort_path: str | os.PathLike) -> Path:
    """``<folder>/<cohort stem>_hurdle``: next to the cohort file."""
    p = Path(cohort_path)
    return p.with_name(f"{p.stem}_hurdle")


def slug(name: str) -> str:
    """A file-name-safe version of an action name ('scratching or touching neck' -> 'scratching_or_touching_neck')."""
    s = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower()
    return s or "action"


def _plot_stems(actions: Sequence[str]) -> list[str]:
    """One distinct file stem per action (two actions with the same slug must not overwrite each other)."""
    used: list[str] = []
    for a in actions:
        name = slug(a)
        while name in used:
            name += "_"
        used.append(name)
    return used


def planned_outputs(actions: Sequence[str], out_cfg: OutputConfig) -> list[str]:
    """The files (relative POSIX paths) a run on ``actions`` writes, results.parquet and its sidecar last."""
    names = ["results.csv", "descriptives.csv", *_TABLES]
    if out_cfg.plots:
        names += [f"plots/{stem}.{fmt}" for stem in _plot_stems(actions) for fmt in out_cfg.formats]
        names += [f"overview.{fmt}" for fmt in out_cfg.formats]
    return names + [_RESULTS, sidecar_path(_RESULTS).name]


def previous_outputs(out: str | os.PathLike) -> set[str]:
    """The files in ``out`` that an earlier run of this tool recorded as its own.

    From the output manifest; for a folder written before manifests existed, from the results sidecar
    of that run (stage ``hurdle``, which listed its files). Nothing else counts as ours.
    """
    out = Path(out)
    own = recorded_outputs(out, TOOL)
    if own:
        return own
    try:
        side = json.loads(sidecar_path(out / _RESULTS).read_text(encoding="utf-8"))
        if side.get("stage") == "hurdle" and isinstance(side.get("files"), list):
            return {str(f) for f in side["files"]} | {_RESULTS, sidecar_path(_RESULTS).name}
    except (OSError, ValueError, AttributeError):
        pass
    return set()


def check_out_dir_free(out: str | os.PathLike, names: Sequence[str]) -> None:
    """Refuse (:class:`pipeline.artifacts.ForeignOutput`, exit 2) when ``out`` holds a file under one of
    ``names`` that is not ours; call it before the analysis so a user learns it at once."""
    check_no_foreign_outputs(out, names, previous_outputs(out), tool=TOOL)


def _stage(results: pd.DataFrame, cohort: pd.DataFrame, config: HurdleConfig, out_cfg: OutputConfig, stage: Path) -> list[Path]:
    written: list[Path] = []
    results.to_csv(stage / "results.csv", index=False)
    written.append(stage / "results.csv")

    actions = list(dict.fromkeys(results["action"]))
    desc = describe_groups(cohort, actions, config.groups)
    desc.insert(len(desc.columns), "selection", config.selection)
    desc.to_csv(stage / "descriptives.csv", index=False)
    written.append(stage / "descriptives.csv")

    table = publication_table(results, out_cfg.table_rows)
    caption = table_caption(results, len(table))
    for name, text in (("table.html", to_html(table, caption)), ("table.md", to_markdown(table, caption)),
                       ("table.tex", to_latex(table, caption))):  # fmt: skip
        (stage / name).write_text(text, encoding="utf-8")
        written.append(stage / name)

    if out_cfg.plots:
        from .plots import overview_figure, save_figure, violin_figure

        p_col = "p_adj" if out_cfg.plot_p == "adjusted" else "p"
        engaged = cohort[(cohort["percent_time"] > 0) & cohort["action"].isin(actions) & cohort["group"].isin(config.groups)]
        intensity = results[results["part"] == "intensity"]
        (stage / "plots").mkdir()
        for a, name in zip(actions, _plot_stems(actions)):
            fig = violin_figure(engaged[engaged["action"] == a], a, config.groups, intensity[intensity["action"] == a],
                                p_column=p_col, alpha=out_cfg.alpha)  # fmt: skip
            written += save_figure(fig, stage / "plots" / name, out_cfg.formats)
        fig = overview_figure(engaged, actions, config.groups, results, p_column=p_col, alpha=out_cfg.alpha)
        written += save_figure(fig, stage / "overview", out_cfg.formats)
    return written


def write_outputs(
    results: pd.DataFrame,
    cohort: pd.DataFrame,
    config: HurdleConfig,
    out_cfg: OutputConfig,
    out: str | os.PathLike,
    *,
    source: str | os.PathLike | None = None,
) -> list[Path]:
    """Write the full output set into ``out`` (see the module docstring). Prints nothing.

    Parameters
    ----------
    results : pandas.DataFrame
        From :func:`analysis.hurdle.hurdle_analysis`.
    cohort : pandas.DataFrame
        The validated cohort (for descriptives and plots).
    config, out_cfg : HurdleConfig, OutputConfig
    out : path
        Output folder (created).
    source : path, optional
        The cohort file, hashed into the results sidecar.

    Returns
    -------
    list of pathlib.Path
        Final paths of every file written, results.parquet last (the sidecar and the manifest not
        listed).

    Raises
    ------
    pipeline.artifacts.ForeignOutput
        ``out`` holds a file under a name of the output set that no earlier run recorded as its own;
        nothing is changed then.
    """
    out = Path(out)
    final_parquet = out / _RESULTS
    with staging_dir(out) as stage:
        staged = _stage(results, cohort, config, out_cfg, stage)
        names = [f.relative_to(stage).as_posix() for f in staged]
        new_set = names + [_RESULTS, sidecar_path(_RESULTS).name]
        own = previous_outputs(out)
        check_no_foreign_outputs(out, new_set, own, tool=TOOL)
        out.mkdir(exist_ok=True)
        # The old results must stop vouching for the folder before any file in it changes.
        final_parquet.unlink(missing_ok=True)
        sidecar_path(final_parquet).unlink(missing_ok=True)
        # Recorded before they appear: a crash from here on leaves no file of ours unrecorded.
        record_outputs(out, TOOL, own | set(new_set))
        # The previous run's files that the new set does not replace go (e.g. the plot of an action no
        # longer selected, or plots after --no-plots): only files the manifest lists as ours.
        remove_outputs(out, sorted(own - set(new_set)))
        final: list[Path] = []
        for f, name in zip(staged, names):
            dest = out / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(f, dest)
            final.append(dest)
    write_artifact(
        results,
        final_parquet,
        contract="hurdle_results",
        stage="hurdle",
        input_hash=sha256_file(source) if source is not None and Path(source).exists() else "",
        config={"analysis": config, "output": out_cfg},
        extra={"files": names},
    )
    record_outputs(out, TOOL, new_set)
    final.append(final_parquet)
    return final
