"""Multiple-comparison correction over families of hurdle tests.

A *family* is the set of tests adjusted together:

- ``"part"`` (default): each hurdle part separately, all selected actions x all contrasts of that part
  (the paper's Table V: 10 actions x 3 contrasts = 30 tests per part);
- ``"all"``: every test of both parts;
- ``"action"``: the tests of one action (both parts, all contrasts);
- ``"contrast"``: the tests of one contrast (both parts, all actions).

Non-estimable tests (p missing) are not part of any family and keep p_adj missing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from statsmodels.stats.multitest import multipletests

from .config import CORRECTIONS, FAMILIES

__all__ = ["FAMILY_KEYS", "adjust_pvalues", "family_label"]

FAMILY_KEYS: dict[str, str | None] = {"part": "part", "all": None, "action": "action", "contrast": "contrast"}

_METHOD_NAMES = {
    "fdr_bh": "Benjamini-Hochberg FDR",
    "fdr_by": "Benjamini-Yekutieli FDR",
    "holm": "Holm",
    "bonferroni": "Bonferroni",
    "none": "no correction",
}


def family_label(correction: str, family: str) -> str:
    """The correction in words, e.g. 'Benjamini-Hochberg FDR within each hurdle part'."""
    fam = {
        "part": "within each hurdle part (all actions x contrasts of the part)",
        "all": "over all tests of both parts",
        "action": "within each action (both parts, all contrasts)",
        "contrast": "within each contrast (both parts, all actions)",
    }[family]
    return _METHOD_NAMES[correction] if correction == "none" else f"{_METHOD_NAMES[correction]} {fam}"


def adjust_pvalues(results: pd.DataFrame, correction: str = "fdr_bh", family: str = "part") -> pd.Series:
    """Adjusted p-values of a tidy results table.

    Parameters
    ----------
    results : pandas.DataFrame
        Needs ``p`` and the family's key columns (``part``, ``action``, ``contrast``).
    correction : {"fdr_bh", "holm", "bonferroni", "fdr_by", "none"}
    family : {"part", "all", "action", "contrast"}

    Returns
    -------
    pandas.Series
        Aligned with ``results.index``; NaN where ``p`` is NaN.
    """
    if correction not in CORRECTIONS:
        raise ValueError(f"unknown correction {correction!r}; choose from {', '.join(CORRECTIONS)}")
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose from {', '.join(FAMILIES)}")
    p = results["p"].astype(np.float64)
    out = pd.Series(np.nan, index=results.index, dtype=np.float64)
    if correction == "none":
        return p.copy()
    key = FAMILY_KEYS[family]
    groups = [(None, results.index)] if key is None else results.groupby(key, sort=False).groups.items()
    for _, idx in groups:
        vals = p.loc[idx]
        ok = vals.notna()
        if ok.any():
            out.loc[vals.index[ok]] = multipletests(vals[ok].to_numpy(), method=correction)[1]
    return out
