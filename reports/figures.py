"""The report's figures, drawn with matplotlib's object API and returned as PNG data URIs.

Figures are :class:`matplotlib.figure.Figure` objects rendered by the Agg canvas
(:class:`matplotlib.backends.backend_agg.FigureCanvasAgg`): no pyplot state, no GUI backend, no
``matplotlib.use``. Colours follow the Okabe-Ito palette (distinguishable with the common colour-vision
deficiencies), and colour never carries information alone: ethogram rows are labelled, no-pose
stretches are hatched as well as grey, the participant's own marker differs in shape.

The group-comparison violins are :func:`analysis.plots.violin_figure` (the paper's Fig. 3 style), the
same function ``python -m analysis.hurdle`` uses, so the report and the analysis outputs agree; the
report only recolours its groups with the Okabe-Ito palette (:func:`recolour_groups`).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from reports.run import VideoInfo

__all__ = ["OKABE_ITO", "png_data_uri", "ethogram_figure", "qc_figure", "violin_data_uri", "recolour_groups"]

# Okabe & Ito (2008), "Color Universal Design"; black moved last.
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#F0E442", "#000000")
NO_POSE = "#BBBBBB"


def png_data_uri(fig: Figure, *, dpi: int = 96) -> str:
    """Render ``fig`` with the Agg canvas to a ``data:image/png;base64,...`` URI."""
    FigureCanvasAgg(fig)  # attaches itself as fig.canvas
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def figure_image(fig: Figure, *, css_dpi: int = 96, scale: int = 2) -> dict:
    """``{"src", "width", "height"}`` for an ``<img>``: the PNG rendered at ``scale`` x ``css_dpi`` and
    shown at ``css_dpi`` (its CSS size: the figure's inches x 96). Rendered at the CSS size, a figure
    narrower page (print, a laptop) scaled it down and its 7-9 pt text went soft; at twice the pixels it
    stays sharp when scaled and on high-density screens."""
    w_in, h_in = fig.get_size_inches()
    return {"src": png_data_uri(fig, dpi=css_dpi * scale), "width": int(round(w_in * css_dpi)),
            "height": int(round(h_in * css_dpi))}


def _label_margin(labels: Sequence[str], width_in: float, fontsize: float = 8) -> float:
    """Left margin (figure fraction) that fits the longest y tick label (about 0.55 em per character)."""
    longest = max((len(str(x)) for x in labels), default=4)
    return min(0.45, (0.25 + longest * 0.55 * fontsize / 72) / width_in)


def ethogram_figure(videos: Sequence[VideoInfo], actions: Sequence[str], *,
                    gap_label: str = "no usable pose (not analysed)") -> Figure:
    """One panel per video: a row per action with its detected segments; no-pose stretches hatched grey.

    Parameters
    ----------
    videos : sequence of VideoInfo
        The participant's videos (labels such as ``video 1``; never file names).
    actions : sequence of str
        Row order (top to bottom); typically the actions the participant showed.
    gap_label : str
        Legend text of the hatched stretches (a coder's ethogram: the stretches not coded).
    """
    n = max(1, len(videos))
    rows = max(1, len(actions))
    panel_h = 0.55 + 0.24 * rows
    height = 0.75 + n * panel_h
    fig = Figure(figsize=(9.0, height))
    # Fixed margins instead of a layout engine: constrained layout doubled the drawing time.
    fig.subplots_adjust(left=_label_margin(actions, 9.0), right=0.98, top=1 - 0.3 / height, bottom=0.62 / height,
                        hspace=0.45 / panel_h)  # fmt: skip
    axes = fig.subplots(n, 1, squeeze=False)[:, 0]
    ypos = {a: rows - 1 - i for i, a in enumerate(actions)}
    for ax, v in zip(axes, videos):
        end = v.duration_s or 0.0
        if v.segments is not None and len(v.segments):
            end = max(end, float(v.segments["end_s"].max()))
        for a0, a1 in v.no_pose:
            ax.axvspan(a0, a1, facecolor=NO_POSE, edgecolor="#777777", hatch="//", linewidth=0, alpha=0.6, zorder=1)
        if v.segments is not None:
            for k, (a, seg) in enumerate(v.segments.groupby("action", sort=False)):
                if a not in ypos:
                    continue
                color = OKABE_ITO[list(actions).index(a) % (len(OKABE_ITO) - 1)]
                bars = list(zip(seg["start_s"].astype(float), (seg["end_s"] - seg["start_s"]).astype(float)))
                ax.broken_barh(bars, (ypos[a] - 0.38, 0.76), facecolors=color, edgecolor="black", linewidth=0.3, zorder=2)
        ax.set_yticks(list(ypos.values()))
        ax.set_yticklabels(list(ypos.keys()), fontsize=8)
        ax.set_ylim(-0.7, rows - 0.3)
        ax.set_xlim(0, end if end > 0 else 1.0)
        # Only the label: an exclusion reason can quote a file name, and text drawn into pixels escapes redaction.
        ax.set_title(v.label + (" (excluded)" if v.excluded else ""), fontsize=9, loc="left")
        ax.grid(axis="x", color="#DDDDDD", linewidth=0.5, zorder=0)
        ax.spines[["top", "right"]].set_visible(False)
    axes[-1].set_xlabel("time in the video (s)")
    fig.legend(handles=[Patch(facecolor=NO_POSE, edgecolor="#777777", hatch="//", label=gap_label)],
               loc="lower right", fontsize=8, frameon=False)  # fmt: skip
    return fig


def qc_figure(qc: pd.DataFrame, groups: Sequence[str], *, threshold: float | None = None) -> Figure:
    """Share of posed frames with a usable pose, one dot per participant, by group (strip plot)."""
    fig = Figure(figsize=(6.0, 2.6), layout="constrained")
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)
    markers = ("o", "s", "D", "^", "v", "P", "X", "*")
    for i, g in enumerate(groups):
        v = 100.0 * qc.loc[(qc["group"] == g) & qc["usable_pose"].notna(), "usable_pose"].to_numpy(float)
        ax.scatter(v, i + rng.uniform(-0.15, 0.15, v.size), s=16, color=OKABE_ITO[i % 7], marker=markers[i % 8],
                   edgecolors="black", linewidths=0.3, zorder=3)  # fmt: skip
    if threshold is not None:
        ax.axvline(100 * threshold, color="black", linestyle=":", linewidth=1)
        ax.text(100 * threshold, len(groups) - 0.45, f" flag below {100 * threshold:.0f} %", fontsize=7, va="top")
    ax.set_yticks(range(len(groups)))
    ax.set_yticklabels(list(groups))
    ax.set_ylim(-0.6, len(groups) - 0.4)
    ax.set_xlim(-2, 102)
    ax.set_xlabel("posed frames with a usable pose (%)")
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def violin_data_uri(cohort: pd.DataFrame, action: str, groups: Sequence[str], results: pd.DataFrame, *,
                    p_column: str = "p_adj", alpha: float = 0.05) -> str:  # fmt: skip
    """The analysis's Fig. 3-style violin of one action (engagers only) as a PNG data URI."""
    from analysis.plots import violin_figure

    engaged = cohort[(cohort["action"] == action) & (cohort["percent_time"] > 0) & cohort["group"].isin(groups)]
    tests = results[(results["action"] == action) & (results["part"] == "intensity")]
    fig = violin_figure(engaged, action, groups, tests, p_column=p_column, alpha=alpha)
    recolour_groups(fig, len(groups))
    return png_data_uri(fig, dpi=90)


def violin_image(cohort: pd.DataFrame, action: str, groups: Sequence[str], results: pd.DataFrame, *,
                 p_column: str = "p_adj", alpha: float = 0.05) -> tuple[dict, dict[str, int]]:
    """The violin of one action for the report: :func:`analysis.plots.violin_figure`, made readable at
    page size, as :func:`figure_image`; and the groups with fewer than 2 engagers (no violin) by count.

    Readability (the analysis's figure is sized for a paper's panel): dots at 5x the area with a dark
    edge (they were the violin's own colour, invisible on it), legend and tick labels at 9 pt (7 pt
    legends came out at 6-7 px), and a group with 0 or 1 engagers labelled on the axis ("n = 0: none
    showed it") instead of an empty slot.
    """
    from analysis.plots import violin_figure
    from matplotlib.collections import PathCollection

    engaged = cohort[(cohort["action"] == action) & (cohort["percent_time"] > 0) & cohort["group"].isin(groups)]
    tests = results[(results["action"] == action) & (results["part"] == "intensity")]
    fig = violin_figure(engaged, action, groups, tests, p_column=p_column, alpha=alpha)
    recolour_groups(fig, len(groups))
    counts = engaged.groupby("group")["participant_id"].nunique().to_dict()
    small = {g: int(counts.get(g, 0)) for g in groups if counts.get(g, 0) < 2}
    for ax in fig.axes:
        for coll in ax.collections:
            if isinstance(coll, PathCollection) and len(coll.get_offsets()):
                coll.set_sizes(np.maximum(np.asarray(coll.get_sizes(), float), 1.0) * 5)
                coll.set_edgecolor("#222222")
                coll.set_linewidth(0.6)
                coll.set_zorder(3)
        ax.tick_params(labelsize=9)
        ax.yaxis.label.set_fontsize(9)
        for i, g in enumerate(groups):
            if g in small:
                ax.text(i, 0.97, "n = 0:\nnone showed it" if small[g] == 0 else "n = 1:\nno violin",
                        transform=ax.get_xaxis_transform(), ha="center", va="top", fontsize=8, color="#444444")
    for legend in fig.legends:
        for text in legend.get_texts():
            text.set_fontsize(9)
        legend.get_title().set_fontsize(9)
    return figure_image(fig), small


def recolour_groups(fig: Figure, n_groups: int) -> None:
    """Give each group's violin body and dots the Okabe-Ito colour of its x position (group ``i`` at x = i).

    :func:`analysis.plots.violin_figure` has a fixed palette; the report recolours its collections by
    where they sit on the x axis, so the mapping holds even when a group has no violin (fewer than two
    engagers). Median/mean lines and brackets stay black.
    """
    from matplotlib.collections import LineCollection, PathCollection, PolyCollection

    for ax in fig.axes:
        for coll in ax.collections:
            if isinstance(coll, LineCollection):
                continue
            if isinstance(coll, PathCollection) and len(coll.get_offsets()):
                x = float(np.mean(np.asarray(coll.get_offsets())[:, 0]))
            elif isinstance(coll, PolyCollection) and coll.get_paths():
                x = float(np.mean(coll.get_paths()[0].vertices[:, 0]))
            else:
                continue
            i = int(round(x))
            if 0 <= i < n_groups:
                colour = OKABE_ITO[i % 7]
                coll.set_facecolor(colour)
                if isinstance(coll, PolyCollection):
                    coll.set_edgecolor(colour)
