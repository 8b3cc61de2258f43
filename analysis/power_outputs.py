"""The output set of ``python -m analysis.power``: tables, power curves, and a summary with the exact settings.

``power.parquet`` (+ sidecar with every setting) and ``power.csv``, ``sample_size.csv``, ``family.csv``,
``power_curves.png`` (one panel per action with an effect, or every action under a complete null:
power against n_total, one line per contrast and part, Monte-Carlo band, the targets dashed) and
``summary.md`` / ``summary.html``. Written as one set through :class:`pipeline.ownership.StagedSet`:
a failure leaves the previous set intact.
"""

from __future__ import annotations

import html
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from pipeline.artifacts import write_artifact
from pipeline.ownership import StagedSet

from .correction import family_label
from .intensity_tests import describe
from .power_grid import STAGE, PowerResult, family_table, power_table, sample_sizes
from .tables import to_markdown

__all__ = ["curves_figure", "summary_markdown", "summary_html", "write_power_outputs"]

_PALETTE = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860")
_MAX_PANELS = 12


def curves_figure(table: pd.DataFrame, targets, actions) -> Figure:
    """Power against n_total, one panel per action (at most 12), a line per contrast x part."""
    actions = list(actions)[:_MAX_PANELS]
    cols = min(3, len(actions))
    rows = int(np.ceil(len(actions) / cols))
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows), layout="constrained")
    contrasts = list(dict.fromkeys(table["contrast"]))
    for k, a in enumerate(actions):
        ax = fig.add_subplot(rows, cols, k + 1)
        sub = table[table["action"] == a]
        for (part, c), s in sub.groupby(["part", "contrast"], sort=False):
            s = s.sort_values("n_total")
            color = _PALETTE[contrasts.index(c) % len(_PALETTE)]
            style = "-" if part == "probability" else "--"
            ax.plot(s["n_total"], s["power"], style, color=color, marker="o", ms=3,
                    label=f"{c} ({'engagement' if part == 'probability' else 'intensity'})")  # fmt: skip
            ax.fill_between(s["n_total"], s["mc_low"], s["mc_high"], color=color, alpha=0.12, lw=0)
        for t in targets:
            ax.axhline(t, color="grey", lw=0.8, ls=":")
        ax.set_ylim(0, 1)
        ax.set_title(a, fontsize=10)
        ax.set_xlabel("total sample size")
        ax.set_ylabel("power (adjusted p < alpha)")
        if k == 0:
            ax.legend(fontsize=7, loc="lower right")
    return fig


def _settings_rows(res: PowerResult, argv) -> list[tuple[str, str]]:
    cfg, s = res.config, res.settings
    test = describe(cfg.intensity_se, cfg.intensity_resamples, cfg.intensity_seed)
    return [
        ("command", "python -m analysis.power " + " ".join(argv)),
        ("generating model", res.model.source),
        ("effects", {"observed": "the pilot's own group differences (optimistic)", "spec": "as in the spec"}.get(
            res.model.effects, f"{res.model.effects} (every group from one baseline)")),
        ("machine coding", "simulated (frame model, docs/power.md)" if res.model.agreement else "none (true percent time)"),
        ("groups", ", ".join(cfg.groups)),
        ("actions", f"{len(cfg.actions)}: {', '.join(cfg.actions)}"),
        ("intensity test", f"{cfg.intensity_se}: {test}"),
        ("correction", f"{family_label(cfg.correction, cfg.family)}; rejection = adjusted p < {s.alpha:g}"),
        ("analysis settings", ", ".join(f"{k}={v}" for k, v in asdict(cfg).items())),
        ("simulation", ", ".join(f"{k}={v}" for k, v in asdict(s).items()) + f"; engine {res.engine}"),
        ("designs", "; ".join("/".join(map(str, d)) for d in sorted(res.designs, key=sum))),
        ("settings hash", res.hash[:16]),
        ("run", f"{res.computed} chunks computed in {res.seconds:.1f} s, {res.reused} reused"),
    ]


def _pretty(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for c in out.columns:
        if pd.api.types.is_float_dtype(out[c]):
            out[c] = out[c].map(lambda v: "—" if pd.isna(v) else f"{v:.3f}")
        else:
            out[c] = out[c].map(lambda v: "—" if pd.isna(v) else v)
    return out


def _tables(res: PowerResult, table: pd.DataFrame, sizes: pd.DataFrame, fam: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    last = table[table["n_total"] == table["n_total"].max()]
    ncols = [f"n_{g}" for g in res.model.groups]
    return [
        ("Smallest design of the grid reaching each target power (— = not reached; mc_low is the lower Monte-Carlo "
         "bound there)", _pretty(sizes)),
        (f"Power at the largest design (n_total {int(table['n_total'].max())})",
         _pretty(last[["action", "part", "contrast", "power", "mc_low", "mc_high", "effect", "null", "tested"]])),
        ("Familywise error (any true null rejected) and false-discovery rate per correction family",
         _pretty(fam[["family", "n_total", *ncols, "tests", "true_nulls", "fwer", "fdr", "any_rejection"]])),
        ("Generating model per action and group (engage = P(any engagement); mean_share, precision: Beta of the "
         "fraction of time among engagers; pool: resampled fractions)", _pretty(res.model.table())),
    ]


def summary_markdown(res: PowerResult, table, sizes, fam, argv) -> str:
    lines = ["# Power analysis", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {str(v).replace('|', '/')} |" for k, v in _settings_rows(res, argv)]
    lines += ["", "Power curves: `power_curves.png`; every number: `power.csv`. Method and caveats: docs/power.md.", ""]
    for caption, df in _tables(res, table, sizes, fam):
        lines += [to_markdown(df, caption), ""]
    return "\n".join(lines)


def _html_table(df: pd.DataFrame, caption: str) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "\n".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r) + "</tr>" for r in df.itertuples(index=False))
    return f"<table>\n<caption>{html.escape(caption)}</caption>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def summary_html(res: PowerResult, table, sizes, fam, argv) -> str:
    settings = pd.DataFrame(_settings_rows(res, argv), columns=["setting", "value"])
    parts = [_html_table(settings, "Settings")]
    parts += ['<p><img src="power_curves.png" alt="power curves" style="max-width:100%"></p>']
    parts += [_html_table(df, caption) for caption, df in _tables(res, table, sizes, fam)]
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Power analysis</title>\n<style>body{font-family:"
            "sans-serif;max-width:70em}table{border-collapse:collapse;margin:1em 0}caption{text-align:left;font-weight:bold}"
            "th,td{padding:2px 8px;text-align:left;border-bottom:1px solid #ddd}</style></head><body>\n<h1>Power analysis</h1>\n"
            + "\n".join(parts) + "\n</body></html>\n")  # fmt: skip


def write_power_outputs(res: PowerResult, out: str | os.PathLike, *, argv=()) -> list[Path]:
    """Write the output set into ``out``; returns the final paths (power.parquet last)."""
    out = Path(out)
    table = power_table(res)
    sizes = sample_sizes(table, res.model.groups, res.settings.targets)
    fam = family_table(res)
    keys = table.drop_duplicates("action")
    effect_actions = [a for a in dict.fromkeys(table["action"]) if not table.loc[table["action"] == a, "null"].all()]
    with StagedSet(out, STAGE) as st:
        with st.writing("power.csv") as p:
            table.to_csv(p, index=False)
        with st.writing("sample_size.csv") as p:
            sizes.to_csv(p, index=False)
        with st.writing("family.csv") as p:
            fam.to_csv(p, index=False)
        with st.writing("power_curves.png") as p:
            fig = curves_figure(table, res.settings.targets, effect_actions or list(keys["action"]))
            fig.savefig(p, dpi=120, format="png")
        with st.writing("summary.md") as p:
            p.write_text(summary_markdown(res, table, sizes, fam, argv), encoding="utf-8")
        with st.writing("summary.html") as p:
            p.write_text(summary_html(res, table, sizes, fam, argv), encoding="utf-8")
        with st.writing("power.parquet") as p:
            write_artifact(table, p, contract=None, stage=STAGE, config={"analysis": res.config, "power": res.settings},
                           extra={"engine": res.engine, "settings_hash": res.hash, "source": res.model.source,
                                  "effects": res.model.effects, "designs": [list(d) for d in res.designs]})  # fmt: skip
            st.add_written(p.with_name(p.name + ".json"))
        final = st.commit()
    order = [f for f in final if not f.name.endswith(".json") and f.name != "power.parquet"]
    return order + [f for f in final if f.name == "power.parquet"]
