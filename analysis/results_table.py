"""The hurdle results table (contract ``hurdle_results``, docs/contracts.md): its columns in order, and
the one step that completes a table of fitted contrasts. The hurdle parts (:mod:`analysis.hurdle`)
and the bout outcomes (:mod:`analysis.bouts_models`) both end here, so their rows have the same
columns, adjusted p-values, settings columns and types."""

from __future__ import annotations

import pandas as pd

from .config import HurdleConfig
from .correction import adjust_pvalues, family_label

__all__ = ["RESULT_COLUMNS", "finish_results"]

RESULT_COLUMNS: list[str] = [
    "action", "action_id", "contrast", "group_a", "group_b", "part", "direction",
    "n_a", "n_b", "engaged_a", "engaged_b", "pct_engaged_a", "pct_engaged_b", "mean_a", "mean_b",
    "estimate", "se", "effect", "ci_low", "ci_high", "statistic", "test", "p", "p_adj", "ame_pp",
    "n_fit", "method", "ci_method", "correction", "family", "selection", "covariates", "ci_level", "note",
]  # fmt: skip


def finish_results(res: pd.DataFrame, config: HurdleConfig, family: str, *, family_text: str | None = None) -> pd.DataFrame:
    """Complete a results table (columns :data:`RESULT_COLUMNS`): adjusted p-values over ``family``
    (:func:`analysis.correction.adjust_pvalues`), the analysis' settings columns and the contract's
    types. Shared by the hurdle parts and the bout outcomes (:mod:`analysis.bouts_models`);
    ``family_text`` replaces the correction family's description when given."""
    res = res.reindex(columns=RESULT_COLUMNS)
    res["p_adj"] = adjust_pvalues(res, config.correction, family)
    res["correction"] = config.correction
    res["family"] = family_label(config.correction, family) if family_text is None else family_text
    res["selection"] = config.selection
    res["covariates"] = ", ".join(config.covariates) if config.covariates else "none"
    res["ci_level"] = config.ci_level
    for c in ("n_a", "n_b", "engaged_a", "engaged_b", "n_fit", "action_id"):
        res[c] = res[c].astype("int64")
    for c in ("estimate", "se", "effect", "ci_low", "ci_high", "statistic", "p", "p_adj", "ame_pp",
              "pct_engaged_a", "pct_engaged_b", "mean_a", "mean_b"):  # fmt: skip
        res[c] = res[c].astype("float64")
    for c in ("direction", "test", "ci_method", "note"):
        res[c] = res[c].astype(object).where(res[c].notna(), None)
    return res
