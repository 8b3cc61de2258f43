"""Model matrices for the hurdle fits: intercept, group treatment dummies, covariates.

Group coding is treatment coding with the first listed group as reference; pairwise contrasts are
then differences of group coefficients (:mod:`analysis.contrasts`), so the reference choice changes
no reported number. Numeric covariates enter as they are; categorical ones as dummies of every level
but the first (sorted). Columns that carry no information in the fitted sample (a covariate level
absent among the engagers, a constant covariate) are dropped, and the drop is reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["Design", "build_design", "participant_table"]


@dataclass
class Design:
    """A model matrix with its bookkeeping.

    Attributes
    ----------
    X : numpy.ndarray, shape (n, p)
    names : list of str
        Column names (``"Intercept"``, ``"group[PSY]"``, ``"age"``, ``"sex[M]"``, ...).
    groups : list of str
        Groups in the model, first = reference.
    group_col : dict of str to int or None
        Column index of each group's dummy (None for the reference).
    group : numpy.ndarray of str, shape (n,)
        Each row's group.
    dropped : list of str
        Covariate columns dropped as uninformative in this sample.
    """

    X: np.ndarray
    names: list[str]
    groups: list[str]
    group_col: dict[str, int | None]
    group: np.ndarray
    dropped: list[str]

    def contrast_vector(self, a: str, b: str) -> np.ndarray:
        """L such that L @ beta is the log odds ratio of group ``a`` relative to group ``b``."""
        L = np.zeros(self.X.shape[1])
        if self.group_col[a] is not None:
            L[self.group_col[a]] += 1.0
        if self.group_col[b] is not None:
            L[self.group_col[b]] -= 1.0
        return L

    def with_group(self, g: str) -> np.ndarray:
        """The model matrix with every row's group set to ``g`` (for average marginal effects)."""
        X = self.X.copy()
        for h, j in self.group_col.items():
            if j is not None:
                X[:, j] = 1.0 if h == g else 0.0
        return X


def participant_table(cohort: pd.DataFrame, covariates: Sequence[str] = ()) -> pd.DataFrame:
    """One row per participant: ``participant_id``, ``group`` and the covariates (first value)."""
    cols = ["participant_id", "group", *[c for c in covariates if c not in ("participant_id", "group")]]
    return cohort[cols].drop_duplicates("participant_id").reset_index(drop=True)


def build_design(
    data: pd.DataFrame,
    groups: Sequence[str],
    covariates: Sequence[str] = (),
    categorical: Sequence[str] = (),
    levels: dict[str, list] | None = None,
) -> Design:
    """Build the model matrix for the rows of ``data``.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per observation, with ``group`` and the covariate columns.
    groups : sequence of str
        Groups to code, first = reference. Every listed group must have rows in ``data``.
    covariates : sequence of str
        Covariate columns.
    categorical : sequence of str
        The covariates to dummy-code.
    levels : dict, optional
        Level order per categorical covariate (default: sorted levels in ``data``), so that a
        subsample codes levels like the full cohort.

    Returns
    -------
    Design
    """
    n = len(data)
    group = data["group"].astype(str).to_numpy()
    cols: list[np.ndarray] = [np.ones(n)]
    names = ["Intercept"]
    group_col: dict[str, int | None] = {groups[0]: None}
    for g in groups[1:]:
        group_col[g] = len(cols)
        cols.append((group == g).astype(np.float64))
        names.append(f"group[{g}]")
    n_fixed = len(cols)
    dropped: list[str] = []
    for c in covariates:
        if c in categorical:
            lv = (levels or {}).get(c) or sorted(pd.unique(data[c].astype(str)))
            vals = data[c].astype(str).to_numpy()
            if len(lv) < 2:
                dropped.append(c)  # a single level: nothing to estimate, but say so
                continue
            for level in lv[1:]:
                cols.append((vals == level).astype(np.float64))
                names.append(f"{c}[{level}]")
        else:
            cols.append(data[c].to_numpy(dtype=np.float64))
            names.append(c)
    X = np.column_stack(cols) if cols else np.empty((n, 0))

    # Drop covariate columns without information here, then any that make X rank-deficient
    # (e.g. a level that coincides with a group among the engagers): a singular X'WX would
    # otherwise give no standard errors at all.
    keep = list(range(n_fixed))
    varying = []
    for j in range(n_fixed, X.shape[1]):
        if n and np.ptp(X[:, j]) > 0:
            varying.append(j)
        else:
            dropped.append(names[j])
    if np.linalg.matrix_rank(X[:, keep + varying]) == len(keep) + len(varying):
        keep += varying  # the common case: one rank check
    else:
        for j in varying:  # greedy: keep a column only if it adds rank
            if np.linalg.matrix_rank(X[:, keep + [j]]) == len(keep) + 1:
                keep.append(j)
            else:
                dropped.append(names[j])
    X = X[:, keep]
    names = [names[j] for j in keep]
    return Design(X=X, names=names, groups=list(groups), group_col=group_col, group=group, dropped=dropped)
