"""Figures of the validation: Bland-Altman per action, and kappa by action with the coder range as a band.

Drawn with matplotlib's object API (no pyplot state), as :mod:`analysis.plots`; the CLI saves them
as PNG under ``validation/figures/`` and the report draws the same figures into its pages.
Colour never carries information alone: model-vs-coder and coder-vs-coder marks differ in shape.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from analysis.agreement.compare import ALL
from analysis.agreement.config import MODEL

__all__ = ["bland_altman_figure", "kappa_figure", "slug"]

_MODEL_COLOUR = "#0072B2"
_CODER_COLOUR = "#777777"


def slug(action: str) -> str:
    """File-name form of an action name (``touching nose`` -> ``touching-nose``)."""
    return re.sub(r"[^A-Za-z0-9]+", "-", action).strip("-").lower() or "action"


def bland_altman_figure(participants: pd.DataFrame, pairs: pd.DataFrame, action: str, reference: str | None) -> Figure:
    """Difference vs mean of percent time per participant for one action.

    Filled circles: the model vs the reference (``reference``; with its bias and 95 % limits of
    agreement as lines); open squares: coder vs coder (the human ceiling). Without a model, the first
    coder pair is drawn with its lines.
    """
    fig = Figure(figsize=(5.2, 3.6), layout="constrained")
    ax = fig.add_subplot()
    rows = participants[participants["action"] == action]
    main = (MODEL, reference) if reference is not None else None
    coder = rows[~rows["rater_a"].eq(MODEL)]
    if main is None and len(coder):
        main = tuple(coder[["rater_a", "rater_b"]].iloc[0])
    for (a, b), g in coder.groupby(["rater_a", "rater_b"], sort=False):
        ax.scatter((g["pct_a"] + g["pct_b"]) / 2, g["diff_pp"], marker="s", facecolors="none", edgecolors=_CODER_COLOUR,
                   s=22, label=f"{a} − {b}", zorder=2)
    if main is not None:
        g = rows[(rows["rater_a"] == main[0]) & (rows["rater_b"] == main[1])]
        if main[0] == MODEL:
            ax.scatter((g["pct_a"] + g["pct_b"]) / 2, g["diff_pp"], marker="o", color=_MODEL_COLOUR, edgecolors="black",
                       linewidths=0.3, s=24, label=f"{main[0]} − {main[1]}", zorder=3)
        pr = pairs[(pairs["action"] == action) & (pairs["rater_a"] == main[0]) & (pairs["rater_b"] == main[1])]
        if len(pr):
            r = pr.iloc[0]
            for v, style, text in ((r["bias_pp"], "-", "bias"), (r["loa_low_pp"], "--", "−1.96 SD"),
                                   (r["loa_high_pp"], "--", "+1.96 SD")):
                if np.isfinite(v):
                    ax.axhline(v, color="black", linestyle=style, linewidth=0.8)
                    ax.text(1.0, v, f" {text} {v:+.1f}", transform=ax.get_yaxis_transform(), fontsize=7, va="center")
    ax.axhline(0, color="#BBBBBB", linewidth=0.6, zorder=0)
    ax.set_xlabel("mean of the two raters' percent time (%)")
    ax.set_ylabel("difference (percentage points)")
    ax.set_title(action if action != ALL else "any micro-action", fontsize=9, loc="left")
    ax.spines[["top", "right"]].set_visible(False)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, frameon=False, loc="upper left")
    return fig


def kappa_figure(pairs: pd.DataFrame) -> Figure:
    """Kappa by action: a dot per model-vs-coder pair, a square per coder pair, the coder range as a band.

    The band spans, per action, the lowest to the highest 95 % bound of the coder-vs-coder kappas
    (their point estimates where there is no interval). Actions whose kappa is undefined in every pair
    are listed on the axis with "n/a".
    """
    acts = [a for a in dict.fromkeys(pairs["action"]) if a != ALL] + [ALL]
    fig = Figure(figsize=(6.4, 0.9 + 0.26 * len(acts)), layout="constrained")
    ax = fig.add_subplot()
    for i, a in enumerate(acts):
        y = len(acts) - 1 - i
        rows = pairs[pairs["action"] == a]
        coder = rows[rows["pair"] == "coder-coder"]
        lo = np.nanmin(np.r_[coder["kappa_low"], coder["kappa"]]) if len(coder) and coder["kappa"].notna().any() else np.nan
        hi = np.nanmax(np.r_[coder["kappa_high"], coder["kappa"]]) if len(coder) and coder["kappa"].notna().any() else np.nan
        if np.isfinite(lo) and np.isfinite(hi):
            ax.fill_betweenx([y - 0.35, y + 0.35], lo, hi, color="#DDDDDD", zorder=1)
        ax.scatter(coder["kappa"], np.full(len(coder), y), marker="s", facecolors="none", edgecolors="black", s=20, zorder=3)
        model = rows[rows["pair"] == "model-coder"]
        ax.scatter(model["kappa"], np.full(len(model), y), marker="o", color=_MODEL_COLOUR, edgecolors="black",
                   linewidths=0.3, s=22, zorder=4)
        below = model["verdict"].eq("below the coder range").any()
        if rows["kappa"].isna().all():
            ax.text(0.0, y, "n/a", fontsize=7, va="center", color="#555555")
        elif below:
            ax.text(1.02, y, "below", fontsize=7, va="center", transform=ax.get_yaxis_transform())
    ax.set_yticks(range(len(acts)))
    ax.set_yticklabels([a if a != ALL else "any micro-action" for a in reversed(acts)], fontsize=7)
    ax.set_xlim(min(-0.1, float(np.nanmin(np.r_[pairs["kappa"], 0.0]))) if len(pairs) else -0.1, 1.02)
    ax.set_xlabel("Cohen's kappa (time-unit)")
    ax.axvline(0, color="#BBBBBB", linewidth=0.6, zorder=0)
    ax.grid(axis="x", color="#EEEEEE", linewidth=0.5)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(handles=[Line2D([], [], marker="o", color=_MODEL_COLOUR, markeredgecolor="black", linestyle="", label="model vs a coder"),
                       Line2D([], [], marker="s", markerfacecolor="none", markeredgecolor="black", linestyle="", label="coder vs coder"),
                       Patch(facecolor="#DDDDDD", label="coder range")], fontsize=7, frameon=False,
              loc="lower left", bbox_to_anchor=(0, 1.0), ncol=3)
    return fig
