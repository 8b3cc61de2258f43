"""Descriptive statistics per action and group (the numbers behind the hurdle contrasts).

:func:`group_counts` is the one place where participants, engagers and percent time among engagers
are counted per group; the results table (:mod:`analysis.hurdle`), the descriptives file and the
separation check of the logistic part (:mod:`analysis.logistic`) all use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["GroupCounts", "group_counts", "describe_groups"]


@dataclass(frozen=True)
class GroupCounts:
    """One group's counts for one action. Percent statistics over engagers are NaN without engagers.

    Attributes
    ----------
    n : participants
    engaged : participants with ``percent_time > 0``
    pct_engaged : 100 * engaged / n (NaN when n = 0)
    mean, median, sd, min : percent time among engagers (sd with ddof=1, NaN below 2 engagers)
    mean_all : mean percent time over all participants, zeros included
    """

    n: int
    engaged: int
    pct_engaged: float
    mean: float
    median: float
    sd: float
    min: float
    mean_all: float


def group_counts(group: Sequence | np.ndarray, percent_time: Sequence | np.ndarray, groups: Sequence[str]) -> dict[str, GroupCounts]:
    """Per group (in ``groups`` order): n, engagers and percent time among engagers.

    Parameters
    ----------
    group : array of group labels, one per participant
    percent_time : array of percent time (or 0/1 engagement), same length
    groups : the groups to count (a group without rows gets n = 0)

    numpy throughout: the hurdle analysis calls it per action and sample.
    """
    grp = np.asarray(group, dtype=object)
    pct_all = np.asarray(percent_time, dtype=np.float64)
    nan = float("nan")
    out = {}
    for g in groups:
        pct = pct_all[grp == g]
        eng = pct[pct > 0]
        out[g] = GroupCounts(
            n=int(pct.size),
            engaged=int(eng.size),
            pct_engaged=100.0 * eng.size / pct.size if pct.size else nan,
            mean=float(eng.mean()) if eng.size else nan,
            median=float(np.median(eng)) if eng.size else nan,
            sd=float(eng.std(ddof=1)) if eng.size > 1 else nan,
            min=float(eng.min()) if eng.size else nan,
            mean_all=float(pct.mean()) if pct.size else nan,
        )
    return out


def describe_groups(cohort: pd.DataFrame, actions: Sequence[str], groups: Sequence[str]) -> pd.DataFrame:
    """Per action x group: participants, engagers and percent time among engagers.

    Parameters
    ----------
    cohort : pandas.DataFrame
        Validated cohort table (long).
    actions, groups : sequence of str
        Rows come out in this order.

    Returns
    -------
    pandas.DataFrame
        ``action``, ``group``, ``n``, ``n_engaged``, ``pct_engaged`` (0-100), ``mean_percent_engaged``,
        ``median_percent_engaged``, ``sd_percent_engaged`` (among engagers; NaN without engagers) and
        ``mean_percent_all`` (over all participants, zeros included).
    """
    by = dict(tuple(cohort.groupby("action", sort=False)))
    empty = cohort.iloc[:0]
    rows = []
    for a in actions:
        d = by.get(a, empty)
        for g, c in group_counts(d["group"].to_numpy(), d["percent_time"].to_numpy(), groups).items():
            rows.append(
                {
                    "action": a, "group": g, "n": c.n, "n_engaged": c.engaged, "pct_engaged": c.pct_engaged,
                    "mean_percent_engaged": c.mean, "median_percent_engaged": c.median,
                    "sd_percent_engaged": c.sd, "mean_percent_all": c.mean_all,
                }
            )  # fmt: skip
    return pd.DataFrame(rows)
