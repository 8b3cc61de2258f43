"""The numbers on the report's pages: group summary, QC per participant, effects, per-participant behaviour.

Everything here is computed from the run's artifacts (:class:`reports.run.Run`) and returns plain
DataFrames; formatting and escaping are left to the templates.

Definitions used on the pages (also in docs/report.md):

- **usable-pose share** of a participant = frame-weighted mean of the pose QC ``valid_fraction`` over
  the participant's videos (frames with a detected, plausible skeleton / posed frames).
- **bouts** = segments of the read-out (one segment of an action = one bout). Unless the read-out's
  bouts table is present, they are counted here from the segments: ``bout_count`` = number of
  segments, ``mean_bout_s`` = mean segment duration, ``latency_s`` = start of the first bout,
  from the start of the first video (manifest order) that has one (the read-out's definition,
  docs/contracts.md).
- **percentile** of a participant for an action = ``scipy.stats.percentileofscore(ref, x, kind="mean")``
  over the reference group's percent times (mid-rank for ties, so a participant at 0 % among many
  at 0 % sits in the middle of them, not at the bottom or the top). The participant counts in the
  reference group when they belong to it. A participant at 0 % gets no percentile (the page shows how
  many of the reference group are at 0 % as well): a mid-rank among the zeros (25-44 in a typical
  cohort) would read as "sometimes" for an action never shown.
- **average marginal effect** (``ame_pp``): taken from the hurdle results, where it is the mean over
  the fitted sample of the model's prediction with everybody set to group a minus with everybody set
  to group b, in percentage points. Results without that column (older runs) get the unadjusted
  difference of the groups' observed shares (probability part) or mean percent time among engagers
  (intensity part); for a model with group dummies only that is exactly the AME, because such a
  model reproduces each group's observed mean. With covariates it is marked as unadjusted.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from reports.run import Run, VideoInfo

__all__ = [
    "percentile_of",
    "group_summary",
    "demographics",
    "qc_by_participant",
    "effects_table",
    "bouts_from_segments",
    "participant_actions",
    "reference_group",
]


def percentile_of(reference: Sequence[float] | np.ndarray, value: float) -> float:
    """Mid-rank percentile (0-100) of ``value`` within ``reference``; NaN for an empty reference."""
    ref = np.asarray(reference, dtype=float)
    ref = ref[np.isfinite(ref)]
    if ref.size == 0 or not np.isfinite(value):
        return float("nan")
    return float(stats.percentileofscore(ref, value, kind="mean"))


def reference_group(run: Run, requested: str | None = None) -> str | None:
    """The group participants are compared with: ``requested``, else ``"TDC"`` when present, else None (all)."""
    groups = set(run.cohort["group"])
    if requested is not None:
        return requested
    return "TDC" if "TDC" in groups else None


def group_summary(run: Run) -> pd.DataFrame:
    """Per group (+ a total row): participants, videos, observed seconds, median observed seconds per participant."""
    parts = run.participant_table()
    n_videos = {pid: len(v) for pid, v in run.videos.items()}
    rows = []
    for g in [*run.groups, None]:
        sub = parts if g is None else parts[parts["group"] == g]
        rows.append(
            {
                "group": "All" if g is None else g,
                "participants": int(len(sub)),
                "videos": int(sum(n_videos.get(p, 0) for p in sub["participant_id"])) if run.videos else None,
                "observed_s": float(sub["observed_s"].sum()),
                "median_observed_s": float(sub["observed_s"].median()) if len(sub) else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def demographics(run: Run) -> list[dict]:
    """Per covariate: ``{"name", "kind", "by_group": {group: text}}``: mean (SD) [min-max] or level counts."""
    parts = run.participant_table()
    out = []
    for c in run.covariates:
        col = parts[c]
        numeric = pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
        by_group = {}
        for g in [*run.groups, "All"]:
            v = col if g == "All" else col[parts["group"] == g]
            if numeric:
                v = v.dropna().astype(float)
                by_group[g] = (f"{v.mean():.1f} ({v.std(ddof=1):.1f}) [{v.min():g}–{v.max():g}]" if len(v) > 1
                               else f"{v.mean():.1f}" if len(v) else "—")  # fmt: skip
            else:
                counts = v.astype(str).value_counts()
                by_group[g] = ", ".join(f"{k}: {n}" for k, n in sorted(counts.items()))
        out.append({"name": c, "kind": "mean (SD) [range]" if numeric else "counts", "by_group": by_group})
    return out


def qc_by_participant(run: Run) -> pd.DataFrame:
    """One row per participant (cohort participants first, then manifest-only ones).

    Columns: participant_id, group, videos, usable_pose (0-1 or NaN), observed_s (NaN when the
    participant is not in the cohort), flags (QC flags joined), excluded (list of (label, reason)).
    """
    parts = run.participant_table().set_index("participant_id")
    ids = list(parts.index) + [p for p in run.videos if p not in parts.index]
    man_group = {}
    if run.manifest is not None and "group" in run.manifest.columns:
        man_group = dict(zip(run.manifest["participant_id"], run.manifest["group"].astype(str)))
    dropped = run.participant_exclusions()
    ids += [p for p in dropped if p not in ids]
    rows = []
    for pid in ids:
        videos: list[VideoInfo] = run.videos.get(pid, [])
        posed = [(v.qc.get("valid_fraction"), v.qc.get("frames_posed") or 0) for v in videos
                 if v.qc is not None and v.qc.get("status") != "failed"]  # fmt: skip
        posed = [(f, n) for f, n in posed if f is not None and np.isfinite(f)]
        weight = sum(n for _, n in posed)
        usable = (sum(f * n for f, n in posed) / weight if weight else
                  float(np.mean([f for f, _ in posed])) if posed else float("nan"))  # fmt: skip
        flags = sorted({fl for v in videos if v.qc for fl in str(v.qc.get("flags") or "").split(";") if fl})
        rows.append(
            {
                "participant_id": pid,
                "group": parts.at[pid, "group"] if pid in parts.index else man_group.get(pid, "?"),
                "videos": len(videos),
                "usable_pose": usable,
                "observed_s": float(parts.at[pid, "observed_s"]) if pid in parts.index else float("nan"),
                "flags": ", ".join(flags),
                "excluded": [(v.label, v.excluded) for v in videos if v.excluded]
                + ([("participant", dropped[pid])] if pid in dropped else []),
                "in_cohort": pid in parts.index,
            }
        )
    return pd.DataFrame(rows)


def effects_table(run: Run) -> pd.DataFrame:
    """Every results row with its odds ratio, CI and average marginal effect (pp), plus ``ame_source``."""
    res = run.results.copy()
    have = "ame_pp" in res.columns and res["ame_pp"].notna().any()
    if have:
        res["ame_source"] = "model"
        return res
    cohort = run.cohort
    unadjusted = bool(run.covariates) and str(res.get("covariates", pd.Series(["none"])).iloc[0]) not in ("none", "")
    ame = []
    for r in res.itertuples(index=False):
        a = cohort[(cohort["action"] == r.action) & (cohort["group"] == r.group_a)]["percent_time"]
        b = cohort[(cohort["action"] == r.action) & (cohort["group"] == r.group_b)]["percent_time"]
        if r.part == "probability":
            ame.append(100.0 * ((a > 0).mean() - (b > 0).mean()) if len(a) and len(b) else np.nan)
        else:
            ea, eb = a[a > 0], b[b > 0]
            ame.append(float(ea.mean() - eb.mean()) if len(ea) and len(eb) else np.nan)
    res["ame_pp"] = ame
    res["ame_source"] = "unadjusted difference" if unadjusted else "observed difference (= AME without covariates)"
    return res


def bouts_from_segments(videos: Sequence[VideoInfo]) -> pd.DataFrame:
    """Per action: bout_count, mean_bout_s, latency_s from a participant's segments (module docstring)."""
    rows: dict[str, dict] = {}
    for v in videos:  # manifest order
        if v.segments is not None and not v.excluded:
            for s in v.segments.sort_values("start_s", kind="stable").itertuples(index=False):
                r = rows.setdefault(s.action, {"action": s.action, "durations": [], "latency_s": float(s.start_s)})
                r["durations"].append(float(s.end_s - s.start_s))
    out = [{"action": a, "bout_count": len(r["durations"]), "mean_bout_s": float(np.mean(r["durations"])),
            "latency_s": r["latency_s"]} for a, r in rows.items()]  # fmt: skip
    return pd.DataFrame(out, columns=["action", "bout_count", "mean_bout_s", "latency_s"])


def participant_actions(run: Run, pid: str, ref_group: str | None) -> pd.DataFrame:
    """One row per action of the cohort for participant ``pid``.

    Columns: action, action_id, percent_time, bout_count, mean_bout_s, latency_s, percentile (within the
    reference group; NaN at 0 %), ref_n and ref_zero (reference participants, and those at 0 %), ref_median (the reference group's median percent time), analysed (the action is in
    the hurdle results). Bout numbers are NaN when neither a bouts table nor segments exist; an action
    never shown has 0 bouts and no duration or latency.
    """
    c = run.cohort
    mine = c[c["participant_id"] == pid][["action", "action_id", "percent_time"]].reset_index(drop=True)
    ref = c if ref_group is None else c[c["group"] == ref_group]
    ref_by_action = {a: d["percent_time"].to_numpy() for a, d in ref.groupby("action")}
    # A participant who never showed the action gets no percentile: the mid-rank among many at 0 % put
    # them at 25-44, which reads as "sometimes". The page says how many of the reference are at 0 % too.
    mine["percentile"] = [percentile_of(ref_by_action.get(a, []), x) if x > 0 else np.nan
                          for a, x in zip(mine["action"], mine["percent_time"])]
    mine["ref_n"] = [len(ref_by_action.get(a, [])) for a in mine["action"]]
    mine["ref_zero"] = [int((np.asarray(ref_by_action.get(a, []), float) == 0).sum()) for a in mine["action"]]
    mine["ref_median"] = [float(np.median(ref_by_action[a])) if a in ref_by_action else np.nan for a in mine["action"]]

    bouts = None
    if run.bouts is not None:
        b = run.bouts[run.bouts["participant_id"] == pid]
        bouts = b[["action", *[k for k in ("bout_count", "mean_bout_s", "latency_s") if k in b.columns]]]
    elif any(v.segments is not None for v in run.videos.get(pid, [])):
        bouts = bouts_from_segments(run.videos[pid])
    if bouts is not None:
        mine = mine.merge(bouts, on="action", how="left")
        if "bout_count" in mine:
            mine["bout_count"] = mine["bout_count"].fillna(0)
    for k in ("bout_count", "mean_bout_s", "latency_s"):
        if k not in mine:
            mine[k] = np.nan
    for k in ("mean_bout_s", "latency_s"):
        mine[k] = mine[k].replace([np.inf, -np.inf], np.nan)
    analysed = set(run.results["action"]) if run.results is not None else set()
    mine["analysed"] = mine["action"].isin(analysed)
    return mine


def error_aware_rows(results: pd.DataFrame, k: int = 10) -> list[dict]:
    """The K most significant percent-time tests with the uncorrected and the misclassification-corrected
    effect and adjusted p side by side, and the sensitivity label (issue 23). Empty when the run has
    neither a correction nor a sensitivity grid."""
    corrected = "effect_uncorrected" in results.columns
    sens = "sensitivity" in results.columns
    if not (corrected or sens):
        return []
    pt = results[results["part"].isin(["probability", "intensity"]) & results["p"].notna()]
    top = pt.sort_values(["p", "action", "contrast", "part"], kind="mergesort").head(k)
    rows = []
    for r in top.itertuples(index=False):
        rows.append({
            "action": r.action, "contrast": r.direction or r.contrast, "part": r.part,
            "effect_uncorrected": getattr(r, "effect_uncorrected", None) if corrected else None,
            "p_adj_uncorrected": getattr(r, "p_adj_uncorrected", None) if corrected else None,
            "effect": r.effect, "p_adj": r.p_adj, "sensitivity": getattr(r, "sensitivity", None) if sens else None,
        })  # fmt: skip
    return rows


def bout_rows(results: pd.DataFrame, k: int = 10) -> list[dict]:
    """The K most significant bout-count and bout-duration tests (``--bouts``); empty without them."""
    b = results[results["part"].isin(["count", "duration"]) & results["p"].notna()]
    top = b.sort_values(["p", "action", "contrast", "part"], kind="mergesort").head(k)
    return [{"action": r.action, "contrast": r.direction or r.contrast, "part": r.part, "effect": r.effect,
             "ci_low": r.ci_low, "ci_high": r.ci_high, "p": r.p, "p_adj": r.p_adj} for r in top.itertuples(index=False)]  # fmt: skip
