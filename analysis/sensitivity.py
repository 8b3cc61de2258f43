"""Sensitivity of the findings to the read-out: the hurdle re-run over a grid of thresholds.

The read-out's thresholds (the calibrated per-class ones, or the single tau) are all multiplied by
each factor of :data:`SCALES` (0.8, 0.9, 1, 1.1, 1.25; a threshold is kept within (0, 1]); for each
factor the read-out (:func:`pipeline.aggregate.aggregate`, same windows, same rule and other settings)
gives a cohort table and the hurdle (same configuration, the actions of the chosen read-out) gives a
results table. Every test of the chosen read-out is then marked:

``stable``
    the same sign of the estimate and the same significance (``p_adj < alpha`` or not) at every
    grid point;
``reversed``
    significant in one direction at one grid point and in the other direction at another;
``fragile``
    anything else (a sign or significance that changes, or a grid point where it is not estimable).

The grid is one factor for all classes at once (5 read-outs), not every combination of per-class
factors (5^C). :func:`sensitivity_figure` draws the effect and its interval along the grid for the
top findings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .config import HurdleConfig

__all__ = ["SCALES", "LABELS", "scaled_readout", "sensitivity_grid", "classify", "sensitivity_figure"]

SCALES: tuple[float, ...] = (0.8, 0.9, 1.0, 1.1, 1.25)
LABELS: tuple[str, ...] = ("stable", "fragile", "reversed")
KEYS = ["action", "contrast", "part"]


def scaled_readout(readout, scale: float):
    """The read-out settings with every threshold multiplied by ``scale`` (kept within [0.001, 1])."""

    def f(t: float) -> float:
        return float(min(1.0, max(1e-3, t * scale)))

    return replace(readout, threshold=f(readout.threshold), thresholds={k: f(v) for k, v in readout.thresholds.items()},
                   thresholds_file=None)  # fmt: skip


def sensitivity_grid(manifest, windows_dir, readout, config: HurdleConfig, scales: Sequence[float] = SCALES,
                     *, hurdle, actions: Sequence[str] | None = None) -> pd.DataFrame:  # fmt: skip
    """Results of the hurdle on the read-out at each grid point, stacked with a ``scale`` column.

    Parameters
    ----------
    manifest : pipeline.manifest.Manifest
    windows_dir : path
    readout : pipeline.readout.ReadoutConfig
        The chosen read-out (resolved: a thresholds file already read).
    config : HurdleConfig
    scales : sequence of float
    actions : sequence of str, optional
        The actions of the chosen analysis (so every grid point tests the same actions).
    hurdle : callable
        ``hurdle(cohort, config) -> results``: :func:`analysis.hurdle.hurdle_analysis`, with the
        validation set for a corrected analysis (the same one at every grid point: strictly, error
        rates belong to one read-out, so a corrected grid is indicative only).
    """
    from pipeline.aggregate import aggregate

    run = hurdle
    cfg = replace(config, actions=tuple(actions)) if actions is not None else config
    frames = []
    for s in scales:
        result = aggregate(manifest, windows_dir, scaled_readout(readout, s))
        if result.tables is None or not len(result.tables.cohort):
            continue
        res = run(result.tables.cohort, cfg)
        frames.append(res.assign(scale=float(s)))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*KEYS, "scale"])


def classify(results: pd.DataFrame, grid: pd.DataFrame, *, alpha: float = 0.05, p_column: str = "p_adj") -> pd.Series:
    """stable / fragile / reversed for every row of ``results`` (module docstring), aligned with its index."""
    scales = sorted(grid["scale"].unique())
    g = grid.set_index(KEYS + ["scale"])[["estimate", p_column]]
    out = []
    for key in results[KEYS].itertuples(index=False, name=None):
        vals = [g.loc[key + (s,)] if key + (s,) in g.index else None for s in scales]
        if any(v is None or not np.isfinite(v["estimate"]) or not np.isfinite(v[p_column]) for v in vals) or not vals:
            out.append("fragile")
            continue
        signs = {int(np.sign(v["estimate"])) for v in vals}
        sig = [bool(v[p_column] < alpha) for v in vals]
        sig_signs = {int(np.sign(v["estimate"])) for v, s in zip(vals, sig) if s}
        if len(sig_signs) > 1:
            out.append("reversed")
        elif len(signs) == 1 and len(set(sig)) == 1:
            out.append("stable")
        else:
            out.append("fragile")
    return pd.Series(out, index=results.index, dtype=object)


def sensitivity_figure(results: pd.DataFrame, grid: pd.DataFrame, *, top: int = 6, alpha: float = 0.05,
                       p_column: str = "p_adj") -> Figure:  # fmt: skip
    """Small multiples for the ``top`` findings (smallest raw p): the effect (log axis) and its interval
    at each threshold factor; filled markers where ``p_column < alpha``; the panel title gives the label."""
    best = results[results["p"].notna()].sort_values(["p", *KEYS], kind="mergesort").head(top)
    n = max(1, len(best))
    ncols = min(3, n)
    nrows = int(np.ceil(n / ncols))
    fig = Figure(figsize=(3.0 * ncols, 2.4 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, row in zip(axes.flat, best.itertuples()):
        d = grid[(grid["action"] == row.action) & (grid["contrast"] == row.contrast) & (grid["part"] == row.part)]
        d = d.sort_values("scale")
        ok = d["effect"].notna()
        sig = ok & (d[p_column] < alpha)
        lo = (d["effect"] - d["ci_low"]).where(ok)
        hi = (d["ci_high"] - d["effect"]).where(ok)
        ax.errorbar(d["scale"][ok], d["effect"][ok], yerr=[lo[ok], hi[ok]], fmt="none", ecolor="0.5", capsize=2)
        ax.plot(d["scale"][ok & ~sig], d["effect"][ok & ~sig], "o", mfc="white", mec="black")
        ax.plot(d["scale"][sig], d["effect"][sig], "o", color="black")
        ax.axhline(1.0, color="0.6", linewidth=0.8, linestyle="--")
        ax.set_yscale("log")
        ax.set_title(f"{row.action}\n{row.contrast}, {row.part}: {getattr(row, 'sensitivity', '')}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("threshold factor", fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle("Effect (odds / rate ratio) across read-out thresholds; filled: significant", fontsize=9)
    return fig
