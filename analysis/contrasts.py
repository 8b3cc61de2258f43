"""Pairwise group contrasts: which pairs, the Wald test of a linear contrast, direction in words."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
from scipy import stats

__all__ = ["pairs", "contrast_label", "direction", "wald_contrast", "z_crit"]


def pairs(groups: Sequence[str]) -> list[tuple[str, str]]:
    """All pairs ``(a, b)`` in the listed order: ASD, PSY, TDC -> (ASD, PSY), (ASD, TDC), (PSY, TDC)."""
    return list(combinations(groups, 2))


def contrast_label(a: str, b: str) -> str:
    """The contrast's name in the results table, e.g. ``"ASD vs PSY"``."""
    return f"{a} vs {b}"


def direction(a: str, b: str, estimate: float | None) -> str | None:
    """The direction of an effect as text: ``"ASD < PSY"`` when group a's odds are lower.

    None when there is no estimate.
    """
    if estimate is None or not np.isfinite(estimate):
        return None
    sign = "<" if estimate < 0 else ">" if estimate > 0 else "="
    return f"{a} {sign} {b}"


def z_crit(ci_level: float) -> float:
    """Two-sided normal critical value for a confidence level (1.959964 for 0.95)."""
    return float(stats.norm.ppf(0.5 + ci_level / 2))


def wald_contrast(params: np.ndarray, cov: np.ndarray, L: np.ndarray, ci_level: float = 0.95) -> dict[str, float]:
    """Wald test of ``L @ params = 0`` with a normal reference distribution.

    Returns
    -------
    dict
        ``estimate`` (L @ params, a log odds ratio), ``se``, ``ci_low``/``ci_high`` on the log scale,
        ``statistic`` (z) and two-sided ``p``.
    """
    est = float(L @ params)
    var = float(L @ cov @ L)
    se = float(np.sqrt(var)) if var > 0 else float("nan")
    z = est / se if se > 0 else float("nan")
    q = z_crit(ci_level)
    return {
        "estimate": est,
        "se": se,
        "ci_low": est - q * se,
        "ci_high": est + q * se,
        "statistic": z,
        "p": float(2 * stats.norm.sf(abs(z))) if np.isfinite(z) else float("nan"),
    }
