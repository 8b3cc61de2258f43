"""Agreement of per-participant percent time: ICC(2,1), ICC(3,1), Bland-Altman, MAE, engagement.

Input: two raters' percent time of one action over the participants they share, ``x`` (rater a) and
``y`` (rater b), each ``100 * frames coded with the action / frames both observed`` pooled over the
participant's videos (the cohort table's definition, on the shared frames).

- **ICC** (Shrout & Fleiss 1979) from :func:`pingouin.intraclass_corr` (which labels them after
  McGraw & Wong): ICC(2,1) = two-way random effects, absolute agreement, single rater
  (pingouin's ``ICC(A,1)``, older releases ``ICC2``); ICC(3,1) = two-way mixed, consistency
  (``ICC(C,1)`` / ``ICC3``); with pingouin's 95 % intervals.
- **Bland-Altman** (Bland & Altman 1986), in percentage points: d = x - y, bias = mean(d),
  limits of agreement bias -/+ 1.96 * sd(d) (sd with n - 1); MAE = mean |d|.
- **Engagement** (the hurdle's first part): engaged = percent time > 0; Cohen's kappa over participants
  (scikit-learn) and the 2x2 table.

Every function returns NaN with a reason instead of raising on degenerate input (too few participants,
no between-participant variation).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pingouin

from analysis.agreement.kappa import kappa_sklearn

__all__ = ["icc", "bland_altman", "engagement", "ICC_COLUMNS", "BA_COLUMNS", "ENGAGEMENT_COLUMNS"]

ICC_COLUMNS = ("icc2_1", "icc2_1_low", "icc2_1_high", "icc3_1", "icc3_1_low", "icc3_1_high", "icc_note")
BA_COLUMNS = ("bias_pp", "loa_low_pp", "loa_high_pp", "mae_pp", "loa_note")
ENGAGEMENT_COLUMNS = ("engagement_kappa", "engaged_both", "engaged_a_only", "engaged_b_only", "engaged_neither",
                      "engagement_note")
_ICC2 = ("ICC(A,1)", "ICC2")
_ICC3 = ("ICC(C,1)", "ICC3")


def icc(x: np.ndarray, y: np.ndarray, *, min_participants: int = 3) -> dict:
    """ICC(2,1) and ICC(3,1) with 95 % intervals (pingouin); NaN and ``icc_note`` when undefined."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    out = dict.fromkeys(ICC_COLUMNS, np.nan)
    out["icc_note"] = None
    n = x.size
    if n < min_participants:
        out["icc_note"] = f"ICC undefined: {n} participant(s) shared (at least {min_participants} needed)"
        return out
    both = np.concatenate([x, y])
    if np.ptp(both) == 0:
        out["icc_note"] = f"ICC undefined: every participant has {both[0]:g} % for both raters (no variation)"
        return out
    long = pd.DataFrame({"participant": np.tile(np.arange(n), 2), "rater": np.repeat(["a", "b"], n), "pct": both})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = pingouin.intraclass_corr(data=long, targets="participant", raters="rater", ratings="pct")
    rows = table.set_index("Type")
    for name, keys in (("icc2_1", _ICC2), ("icc3_1", _ICC3)):
        key = next(k for k in keys if k in rows.index)
        v = float(rows.at[key, "ICC"])
        lo, hi = (float(z) for z in rows.at[key, "CI95"])
        out[name], out[f"{name}_low"], out[f"{name}_high"] = v, lo, hi
    if not all(np.isfinite(out[c]) for c in ICC_COLUMNS[:-1]):
        out["icc_note"] = "ICC partly undefined: no residual variation between the raters" if np.isfinite(out["icc2_1"]) \
            else "ICC undefined: no variation between participants beyond the raters' differences"
    return out


def bland_altman(x: np.ndarray, y: np.ndarray) -> dict:
    """Bias, 95 % limits of agreement and MAE of ``x - y`` (percentage points)."""
    d = np.asarray(x, float) - np.asarray(y, float)
    out = {"bias_pp": np.nan, "loa_low_pp": np.nan, "loa_high_pp": np.nan, "mae_pp": np.nan, "loa_note": None}
    if d.size == 0:
        out["loa_note"] = "no participant shared"
        return out
    out["bias_pp"] = float(d.mean())
    out["mae_pp"] = float(np.abs(d).mean())
    if d.size < 2:
        out["loa_note"] = "limits of agreement undefined: one participant (no SD)"
        return out
    sd = float(d.std(ddof=1))
    out["loa_low_pp"] = out["bias_pp"] - 1.96 * sd
    out["loa_high_pp"] = out["bias_pp"] + 1.96 * sd
    return out


def engagement(x: np.ndarray, y: np.ndarray) -> dict:
    """Engagement (percent time > 0) agreement over participants: kappa and the 2x2 table."""
    a = np.asarray(x, float) > 0
    b = np.asarray(y, float) > 0
    c = np.array([(a & b).sum(), (a & ~b).sum(), (~a & b).sum(), (~a & ~b).sum()], dtype=np.int64)
    out = {"engagement_kappa": np.nan, "engaged_both": int(c[0]), "engaged_a_only": int(c[1]),
           "engaged_b_only": int(c[2]), "engaged_neither": int(c[3]), "engagement_note": None}
    if a.size == 0:
        out["engagement_note"] = "no participant shared"
    elif (a.all() or not a.any()) and (b.all() or not b.any()):
        out["engagement_note"] = ("engagement kappa undefined: both raters "
                                  + ("agree that " if (a == b).all() else "give constant but opposite answers: ")
                                  + ("every participant engaged" if a.all() else "no participant engaged")
                                  + ("" if (a == b).all() else " vs the reverse"))
    else:
        out["engagement_kappa"] = kappa_sklearn(c)
    return out
