"""Writing the hurdle analysis's output set so that a failure never leaves a half-set that looks complete,
and a rerun never deletes or overwrites a file that is not ours.

The set is written into a staging folder inside the output folder and committed together
(:class:`pipeline.ownership.StagedSet`): a file of the user's under a name we are about to write stops
the run with a one-line error (exit 2) and nothing changes; otherwise the staged files are recorded as
pending in the output manifest (``.hurdle.outputs.json``), the previous ``results.parquet.json`` is
removed, the data files are moved in (``results.parquet`` last), then the sidecar; the previous run's
files that the new set does not replace are removed (only those the manifest records and that are
unchanged: a user's own files in the folder stay). A folder whose ``results.parquet`` *and* sidecar
exist therefore holds a complete, matching set. A killed run's staging folder is removed by the next.

Files::

    results.parquet (+ .json sidecar)  tidy results, contract hurdle_results
    results.csv                        the same table as CSV
    table.html / table.md / table.tex  publication table (paper's Table V style)
    descriptives.csv                   n, engaged, % engaged, mean/median percent among engagers
    plots/<action>.png|svg             violin plot per selected action (paper's Fig. 3 style)
    overview.png|svg                   all selected actions in one figure
    sensitivity.csv, sensitivity.png|svg   with --sensitivity: the results at every threshold factor, and
                                       the top findings' effects along the grid (analysis.sensitivity)
    bouts_overview.png|svg, durations_overview.png|svg   with --bouts: bouts per minute and mean bout
                                       duration by group, with the count / duration brackets
    .hurdle.outputs.json               output manifest (pipeline.ownership): the files above, fingerprinted

Folders written by earlier versions: their listing (``.outputs.json`` format 1, tool
``analysis.hurdle``; before that, the results sidecar's ``files``) is read once. The files it lists
that bear one of this tool's output names are adopted into the new manifest (fingerprinted as they
are), then the old listing is removed (migrated). A listed name that is not one of ours (e.g. a forged
``../x`` or ``notes.txt``) is ignored: a legacy listing alone never makes a file deletable.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from pipeline.artifacts import read_sidecar, sha256_file, sidecar_path, write_artifact
from pipeline.ownership import StagedSet, check_free, read_manifest, relative_name, update_manifest

from .config import HurdleConfig, OutputConfig
from .descriptives import describe_groups
from .tables import publication_table, table_caption, to_html, to_latex, to_markdown

__all__ = ["STAGE", "default_out_dir", "slug", "planned_outputs", "legacy_outputs", "check_out_dir_free",
           "write_outputs"]

log = logging.getLogger(__name__)
STAGE = "hurdle"  # the stage name of the results sidecar and of the output manifest
_LEGACY_TOOL, _LEGACY_MANIFEST = "analysis.hurdle", ".outputs.json"
_RESULTS = "results.parquet"
_TABLES = ("table.html", "table.md", "table.tex")
_OUR_NAMES = re.compile(r"^(results\.parquet(\.json)?|results\.csv|descriptives\.csv|table\.(html|md|tex)"
                        r"|sensitivity\.csv|(overview|sensitivity|bouts_overview|durations_overview)\.(png|svg|pdf)"
                        r"|plots/[A-Za-z0-9_]+\.(png|svg|pdf))$")


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


def planned_outputs(actions: Sequence[str], out_cfg: OutputConfig, *, sensitivity: bool = False, bouts: bool = False) -> list[str]:
    """The files (relative POSIX paths) a run on ``actions`` writes, results.parquet and its sidecar last."""
    names = ["results.csv", "descriptives.csv", *_TABLES]
    if sensitivity:
        names.append("sensitivity.csv")
    if out_cfg.plots:
        names += [f"plots/{stem}.{fmt}" for stem in _plot_stems(actions) for fmt in out_cfg.formats]
        names += [f"overview.{fmt}" for fmt in out_cfg.formats]
        if sensitivity:
            names += [f"sensitivity.{fmt}" for fmt in out_cfg.formats]
        if bouts:
            names += [f"{n}.{fmt}" for n in ("bouts_overview", "durations_overview") for fmt in out_cfg.formats]
    return names + [_RESULTS, sidecar_path(_RESULTS).name]


def legacy_outputs(out: str | os.PathLike) -> set[str]:
    """The files an earlier version of this tool listed as its own in ``out`` (see the module docstring):
    only names that are this tool's output names, inside the folder."""
    out = Path(out)
    names: list = []
    try:
        doc = json.loads((out / _LEGACY_MANIFEST).read_text(encoding="utf-8"))
        if doc.get("format") == 1:
            names = list(doc["tools"][_LEGACY_TOOL]["files"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    side = read_sidecar(out / _RESULTS)
    if not names and side and side.get("stage") == STAGE and isinstance(side.get("files"), list):
        names = [*side["files"], _RESULTS, sidecar_path(_RESULTS).name]
    return {n for n in (relative_name(str(f)) for f in names if isinstance(f, str)) if n and _OUR_NAMES.match(n)}


def _adopter(out: Path):
    legacy = legacy_outputs(out)

    def adopt(rel: str) -> bool:
        return rel in legacy

    return adopt


def _migrate(out: Path) -> None:
    """Adopt the files of an earlier version's listing that are still there, then drop that listing."""
    legacy = legacy_outputs(out)
    if not legacy and not (out / _LEGACY_MANIFEST).exists():
        return
    m = read_manifest(out, STAGE)
    there = sorted(n for n in legacy if not m.recorded(n) and (out / n).is_file() and not (out / n).is_symlink())
    update_manifest(out, STAGE, add=there)
    try:
        doc = json.loads((out / _LEGACY_MANIFEST).read_text(encoding="utf-8"))
        ours = doc.get("format") == 1 and set(doc.get("tools", {})) <= {_LEGACY_TOOL}
    except (OSError, ValueError, AttributeError):
        ours = False
    if ours:
        (out / _LEGACY_MANIFEST).unlink()
        log.info("%s: migrated the old output listing %s to %s", out, _LEGACY_MANIFEST, f".{STAGE}.outputs.json")


def check_out_dir_free(out: str | os.PathLike, names: Sequence[str]) -> None:
    """Refuse (:class:`pipeline.ownership.ForeignOutput`, exit 2) when ``out`` holds a file under one of
    ``names`` that is not ours; call it before the analysis so a user learns it at once."""
    out = Path(out)
    if out.is_dir():
        check_free(out, STAGE, names, adopt=_adopter(out))


def _stage(results: pd.DataFrame, cohort: pd.DataFrame, config: HurdleConfig, out_cfg: OutputConfig, stage: Path,
           sensitivity: pd.DataFrame | None = None, bouts: pd.DataFrame | None = None) -> list[Path]:  # fmt: skip
    written: list[Path] = []
    if sensitivity is not None:
        sensitivity.to_csv(stage / "sensitivity.csv", index=False)
        written.append(stage / "sensitivity.csv")
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
        if sensitivity is not None:
            from .sensitivity import sensitivity_figure

            fig = sensitivity_figure(results[results["part"].isin(["probability", "intensity"])], sensitivity, alpha=out_cfg.alpha, p_column=p_col)
            written += save_figure(fig, stage / "sensitivity", out_cfg.formats)
        if bouts is not None:
            written += _bout_figures(results, cohort, bouts, actions, config, out_cfg, stage, p_col)
    return written


def _bout_figures(results, cohort, bouts, actions, config, out_cfg, stage, p_col) -> list[Path]:
    """Violins of bouts per minute (all participants) and of mean bout duration (those with bouts), with
    the count / duration contrasts' brackets: the percent-time overview's drawing on other values."""
    from .plots import overview_figure, save_figure

    j = cohort[["participant_id", "action", "group", "observed_s"]].merge(
        bouts[["participant_id", "action", "bouts", "mean_bout_s"]].astype({"participant_id": str, "action": str}),
        on=["participant_id", "action"])  # fmt: skip
    j = j[j["action"].isin(actions) & j["group"].isin(config.groups) & (j["observed_s"] > 0)]
    out = []
    for name, values, part, title in (
        ("bouts_overview", j.assign(percent_time=j["bouts"] / (j["observed_s"] / 60)), "count", "Bouts per minute"),
        ("durations_overview", j[j["bouts"] > 0].assign(percent_time=j["mean_bout_s"]), "duration", "Mean bout duration (s)"),
    ):
        tests = results[results["part"] == part].assign(part="intensity")  # the overview draws intensity brackets
        fig = overview_figure(values, actions, config.groups, tests, p_column=p_col, alpha=out_cfg.alpha)
        fig.suptitle(f"{title}, by group (dashed: median, solid: mean; brackets: {part} contrasts)", fontsize=10)
        for ax in fig.axes:
            if ax.get_ylabel():
                ax.set_ylabel(title, fontsize=8)
        out += save_figure(fig, stage / name, out_cfg.formats)
    return out


def write_outputs(
    results: pd.DataFrame,
    cohort: pd.DataFrame,
    config: HurdleConfig,
    out_cfg: OutputConfig,
    out: str | os.PathLike,
    *,
    source: str | os.PathLike | None = None,
    sensitivity: pd.DataFrame | None = None,
    bouts: pd.DataFrame | None = None,
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
    pipeline.ownership.ForeignOutput
        ``out`` holds a file under a name of the output set that is not ours; nothing is changed then.
    OSError
        A file could not be written; it names the output file. The previous set is intact unless the
        error came while moving files in (then ``results.parquet.json`` is absent: not a complete set).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with StagedSet(out, STAGE, adopt=_adopter(out)) as st:
        staged = _stage(results, cohort, config, out_cfg, st.path, sensitivity, bouts)
        names = [st.add_written(f) for f in staged]
        st.check(names + [_RESULTS, sidecar_path(_RESULTS).name])  # before the results are even written
        _migrate(out)
        with st.writing(_RESULTS) as path:
            write_artifact(
                results,
                path,
                contract="hurdle_results",
                stage=STAGE,
                input_hash=sha256_file(source) if source is not None and Path(source).exists() else "",
                config={"analysis": config, "output": out_cfg},
                extra={"files": names},
            )
        st.add_written(sidecar_path(path))
        final = st.commit()
    return [p for p in final if p.name != sidecar_path(_RESULTS).name]
