"""Descriptive statistics per action and group (the numbers behind the hurdle contrasts)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

__all__ = ["describe_groups"]


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
    sub = cohort[cohort["action"].isin(actions) & cohort["group"].isin(groups)]
    rows = []
    by = dict(tuple(sub.groupby(["action", "group"], sort=False)))
    for a in actions:
        for g in groups:
            d = by.get((a, g))
            pct = d["percent_time"] if d is not None else pd.Series(dtype=float)
            eng = pct[pct > 0]
            rows.append(
                {
                    "action": a,
                    "group": g,
                    "n": int(len(pct)),
                    "n_engaged": int(len(eng)),
                    "pct_engaged": 100.0 * len(eng) / len(pct) if len(pct) else float("nan"),
                    "mean_percent_engaged": float(eng.mean()) if len(eng) else float("nan"),
                    "median_percent_engaged": float(eng.median()) if len(eng) else float("nan"),
                    "sd_percent_engaged": float(eng.std(ddof=1)) if len(eng) > 1 else float("nan"),
                    "mean_percent_all": float(pct.mean()) if len(pct) else float("nan"),
                }
            )
    return pd.DataFrame(rows)
