"""Violin plots of percent time among engagers by group, in the style of the paper's Fig. 3.

One violin per group (kernel density of percent time among participants with nonzero engagement), one
dot per participant (jittered horizontally), a dashed line at the group median and a solid line at
the group mean, and brackets with asterisks for significant intensity contrasts (* p < alpha,
** p < .01, *** p < .001; adjusted p by default). Figures are drawn on :class:`matplotlib.figure.Figure`
objects, saved through the canvas of the file format (Agg for PNG), so no GUI backend or pyplot global
state is involved and importing this module leaves the process's matplotlib backend alone (no
``matplotlib.use``): it works on servers, in CI and in Prefect workers without a display.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

__all__ = ["stars", "draw_violins", "violin_figure", "overview_figure", "save_figure"]

_PALETTE = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C")


def stars(p: float, alpha: float = 0.05) -> str:
    """'***' for p < .001, '**' for p < .01, '*' for p < alpha, else ''."""
    if p is None or not np.isfinite(p):
        return ""
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < alpha else ""


def draw_violins(
    ax: Axes,
    engaged: pd.DataFrame,
    groups: Sequence[str],
    tests: pd.DataFrame | None = None,
    *,
    p_column: str = "p_adj",
    alpha: float = 0.05,
    seed: int = 0,
    dot_size: float = 10,
) -> None:
    """Draw one action's violins, dots, median/mean lines and significance brackets on ``ax``.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    engaged : pandas.DataFrame
        Engagers of one action: ``group`` and ``percent_time``.
    groups : sequence of str
        x-axis order.
    tests : pandas.DataFrame, optional
        That action's intensity rows of the results table (``group_a``, ``group_b`` and ``p_column``).
    p_column : {"p_adj", "p"}
    alpha : float
    seed : int
        Jitter seed (plots are reproducible).
    """
    rng = np.random.default_rng(seed)
    top = 0.0
    for i, g in enumerate(groups):
        v = engaged.loc[engaged["group"] == g, "percent_time"].to_numpy(dtype=np.float64)
        color = _PALETTE[i % len(_PALETTE)]
        if v.size >= 2 and np.ptp(v) > 0:
            parts = ax.violinplot([v], positions=[i], widths=0.8, showextrema=False)
            for body in parts["bodies"]:
                body.set_facecolor(color)
                body.set_alpha(0.35)
                body.set_edgecolor(color)
        if v.size:
            ax.scatter(i + rng.uniform(-0.12, 0.12, v.size), v, s=dot_size, color=color, alpha=0.8,
                       edgecolors="white", linewidths=0.3, zorder=3)  # fmt: skip
            ax.hlines(np.median(v), i - 0.3, i + 0.3, colors="black", linestyles="--", linewidth=1.2, zorder=4)
            ax.hlines(np.mean(v), i - 0.3, i + 0.3, colors="black", linestyles="-", linewidth=1.2, zorder=4)
            top = max(top, float(v.max()))
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([f"{g}\n(n={int((engaged['group'] == g).sum())})" for g in groups])
    ax.set_xlim(-0.6, len(groups) - 0.4)
    top = top if top > 0 else 1.0
    level = 0
    if tests is not None and len(tests):
        for t in tests.itertuples(index=False):
            s = stars(getattr(t, p_column), alpha)
            if not s or t.group_a not in groups or t.group_b not in groups:
                continue
            x1, x2 = sorted((list(groups).index(t.group_a), list(groups).index(t.group_b)))
            y = top * (1.08 + 0.12 * level)
            h = top * 0.03
            ax.plot([x1, x1, x2, x2], [y, y + h, y + h, y], color="black", linewidth=1)
            ax.text((x1 + x2) / 2, y + h, s, ha="center", va="bottom", fontsize=11)
            level += 1
    ax.set_ylim(0, top * (1.12 + 0.12 * level))
    ax.spines[["top", "right"]].set_visible(False)


def violin_figure(
    engaged: pd.DataFrame,
    action: str,
    groups: Sequence[str],
    tests: pd.DataFrame | None = None,
    *,
    p_column: str = "p_adj",
    alpha: float = 0.05,
) -> Figure:
    """One action's violin plot as a standalone figure."""
    fig = Figure(figsize=(4.2, 4.0), layout="constrained")
    ax = fig.add_subplot()
    draw_violins(ax, engaged, groups, tests, p_column=p_column, alpha=alpha)
    ax.set_title(f"“{action}”", fontsize=11)
    ax.set_ylabel("Percent time engaged (%)\namong participants with engagement")
    which = "adjusted" if p_column == "p_adj" else "raw"
    handles = [Line2D([], [], color="black", linestyle="--", linewidth=1.2, label="median"),
               Line2D([], [], color="black", linestyle="-", linewidth=1.2, label="mean")]  # fmt: skip
    # Below the axes: inside, the legend collides with the significance brackets.
    fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize=7, frameon=False,
               title=f"brackets: intensity part, {which} p", title_fontsize=7)  # fmt: skip
    return fig


def overview_figure(
    engaged: pd.DataFrame,
    actions: Sequence[str],
    groups: Sequence[str],
    results: pd.DataFrame,
    *,
    p_column: str = "p_adj",
    alpha: float = 0.05,
    ncols: int = 5,
) -> Figure:
    """Small multiples: one violin panel per selected action."""
    n = max(1, len(actions))
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig = Figure(figsize=(2.9 * ncols, 2.9 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    intensity = results[results["part"] == "intensity"]
    for k, ax in enumerate(axes.flat):
        if k >= len(actions):
            ax.set_visible(False)
            continue
        a = actions[k]
        draw_violins(ax, engaged[engaged["action"] == a], groups, intensity[intensity["action"] == a],
                     p_column=p_column, alpha=alpha, dot_size=4)  # fmt: skip
        ax.set_title(a, fontsize=9)
        ax.tick_params(labelsize=7)
        if k % ncols == 0:
            ax.set_ylabel("% time (engagers)", fontsize=8)
    fig.suptitle("Percent time engaged among engagers, by group (dashed: median, solid: mean)", fontsize=10)
    return fig


def save_figure(fig: Figure, stem: Path, formats: Sequence[str] = ("png", "svg"), dpi: int = 150) -> list[Path]:
    """Save a figure as ``stem.<fmt>`` for each format; returns the paths."""
    paths = []
    for fmt in formats:
        path = stem.with_name(f"{stem.name}.{fmt}")
        fig.savefig(path, dpi=dpi, format=fmt, metadata={"Date": None} if fmt == "svg" else None)
        paths.append(path)
    return paths
