"""Writing the hurdle analysis's output set so that a failure never leaves a half-set that looks complete.

Everything except ``results.parquet`` is first written into a staging folder beside the output folder
(same file system, so moves are renames). Then any previous ``results.parquet`` in the output folder is
removed, the staged files are moved in, and ``results.parquet`` (with its sidecar, through
:func:`pipeline.artifacts.write_artifact`, contract ``hurdle_results``) is written *last*. A folder
whose ``results.parquet`` and sidecar exist therefore holds a complete, matching set.

Files::

    results.parquet (+ .json sidecar)  tidy results, contract hurdle_results
    results.csv                        the same table as CSV
    table.html / table.md / table.tex  publication table (paper's Table V style)
    descriptives.csv                   n, engaged, % engaged, mean/median percent among engagers
    plots/<action>.png|svg             violin plot per selected action (paper's Fig. 3 style)
    overview.png|svg                   all selected actions in one figure
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from pipeline.artifacts import sha256_file, write_artifact
from pipeline.cli import report_written

from .config import HurdleConfig, OutputConfig
from .descriptives import describe_groups
from .tables import publication_table, table_caption, to_html, to_latex, to_markdown

__all__ = ["default_out_dir", "slug", "write_outputs"]


def default_out_dir(cohort_path: str | os.PathLike) -> Path:
    """``<folder>/<cohort stem>_hurdle``: next to the cohort file."""
    p = Path(cohort_path)
    return p.with_name(f"{p.stem}_hurdle")


def slug(name: str) -> str:
    """A file-name-safe version of an action name ('scratching or touching neck' -> 'scratching_or_touching_neck')."""
    s = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower()
    return s or "action"


_FIXED_OUTPUTS = ("results.csv", "descriptives.csv", "table.html", "table.md", "table.tex", "overview.png",
                  "overview.svg", "overview.pdf")  # fmt: skip
_FIGURE_SUFFIXES = (".png", ".svg", ".pdf")


def _previous_outputs(out: Path) -> list[Path]:
    """Files of an earlier run in ``out``: those its sidecar lists, the fixed names and plots/ figures.

    Only files this module writes are touched; anything else a user keeps in the folder stays.
    """
    found: set[Path] = set()
    side = out / "results.parquet.json"
    try:
        listed = json.loads(side.read_text(encoding="utf-8")).get("files", []) if side.exists() else []
    except (OSError, ValueError, AttributeError):
        listed = []
    root = out.resolve()
    for name in listed:
        f = (out / str(name)).resolve()
        if root in f.parents and f.is_file():  # never outside the folder
            found.add(f)
    found.update(f.resolve() for f in (out / n for n in _FIXED_OUTPUTS) if f.is_file())
    plots = out / "plots"
    if plots.is_dir():
        found.update(f.resolve() for f in plots.iterdir() if f.is_file() and f.suffix in _FIGURE_SUFFIXES)
    return sorted(found)


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
        used: set[str] = set()
        for a in actions:
            name = slug(a)
            while name in used:  # two actions with the same slug must not overwrite each other
                name += "_"
            used.add(name)
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
    report: bool = True,
) -> list[Path]:
    """Write the full output set into ``out`` (see the module docstring); print ``wrote <path>`` lines.

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
    report : bool
        Print a ``wrote`` line per file.

    Returns
    -------
    list of pathlib.Path
        Final paths of every file written, results.parquet last.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    try:
        staged = _stage(results, cohort, config, out_cfg, stage)
        out.mkdir(exist_ok=True)
        final_parquet = out / "results.parquet"
        # The old results must stop vouching for the folder before any file in it changes.
        stale = _previous_outputs(out)
        final_parquet.unlink(missing_ok=True)
        Path(str(final_parquet) + ".json").unlink(missing_ok=True)
        # Then every file of the previous run goes, so the new set never mixes with the old one
        # (e.g. the plot of an action that is no longer selected, or plots after --no-plots).
        for f in stale:
            f.unlink(missing_ok=True)
        plots = out / "plots"
        if plots.is_dir() and not any(plots.iterdir()):
            plots.rmdir()
        final: list[Path] = []
        for f in staged:
            dest = out / f.relative_to(stage)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(f, dest)
            final.append(dest)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    write_artifact(
        results,
        final_parquet,
        contract="hurdle_results",
        stage="hurdle",
        input_hash=sha256_file(source) if source is not None and Path(source).exists() else "",
        config={"analysis": config, "output": out_cfg},
        extra={"files": [str(p.relative_to(out)) for p in final]},
    )
    final.append(final_parquet)
    if report:
        for p in final:
            report_written(p)
    return final
