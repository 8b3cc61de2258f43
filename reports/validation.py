"""The report's view of the agreement with human coders (``RUN/validation/``, ``RUN/codings/``).

:func:`coded_participants` lists who was coded and by whom (``codings/sessions.parquet``), shown in that
section, or on its own as "Human coding" when the codings were not validated yet.
:func:`validation_context` gives the cohort page's "Validation against human coding" section: per
action, the model vs the coders beside the coders vs each other, the verdict, the kappa-by-action
figure and Bland-Altman figures (drawn by :mod:`analysis.agreement.figures`, the same functions the
CLI saves). :func:`coder_videos` gives, per coder, the participant's videos with the coder's events
as segments, for ethograms drawn under the model's (uncoded stretches hatched like no-pose ones).
"""

from __future__ import annotations

import math
from dataclasses import replace

import pandas as pd

from analysis.agreement.compare import ALL
from analysis.agreement.figures import bland_altman_figure, kappa_figure
from reports.figures import png_data_uri
from reports.run import Run, VideoInfo

__all__ = ["validation_context", "coded_participants", "coder_videos", "MAX_BLAND_ALTMAN"]

MAX_BLAND_ALTMAN = 12  # figures on the page; every action's is under validation/figures/


def _f(v) -> float | None:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _mean(s: pd.Series) -> float | None:
    v = pd.to_numeric(s, errors="coerce").dropna()
    return float(v.mean()) if len(v) else None


def validation_context(run: Run) -> dict | None:
    """The cohort page's validation section, or None when the run has no validation."""
    v = run.validation
    if v is None or not len(v):
        return None
    meta = run.validation_meta or {}
    reference = meta.get("reference")
    has_model = bool((v["rater_a"] == "model").any())
    actions = [a for a in dict.fromkeys(v["action"]) if a != ALL] + [ALL]
    rows = []
    for a in actions:
        g = v[v["action"] == a]
        m = g[g["pair"] == "model-coder"]
        c = g[g["pair"] == "coder-coder"]
        ref = g[(g["rater_a"] == "model") & (g["rater_b"] == reference)] if has_model else c.iloc[:1]
        r0 = ref.iloc[0] if len(ref) else None
        notes = [n for n in pd.concat([m["kappa_note"], c["kappa_note"]]).dropna().unique() if not str(n).startswith("no interval")]
        rows.append({
            "action": a if a != ALL else "any micro-action (all)",
            "n": int(g["n_participants"].max()),
            "model_kappa": _mean(m["kappa"]), "coder_kappa": _mean(c["kappa"]),
            "coder_kappa_range": ((_f(c["kappa"].min()), _f(c["kappa"].max())) if c["kappa"].notna().any() else None),
            "model_ac1": _mean(m["ac1"]), "coder_ac1": _mean(c["ac1"]),
            "prevalence": (100 * _mean(g["prevalence"])) if _mean(g["prevalence"]) is not None else None,
            "icc": _f(r0["icc2_1"]) if r0 is not None else None,
            "bias": _f(r0["bias_pp"]) if r0 is not None else None,
            "loa": ((_f(r0["loa_low_pp"]), _f(r0["loa_high_pp"])) if r0 is not None and _f(r0["loa_low_pp"]) is not None else None),
            "model_f1": _mean(m["event_f1"]), "coder_f1": _mean(c["event_f1"]),
            "verdict": (m["verdict"].dropna().iloc[0] if m["verdict"].notna().any() else None),
            "reason": (m["verdict_reason"].dropna().iloc[0] if m["verdict_reason"].notna().any() else "; ".join(notes) or None),
            "below": bool((m["verdict"] == "below the coder range").any()),
            "note": "; ".join(notes) or None,
        })
    part = run.validation_participants
    ba = []
    if part is not None and len(part):
        coded = part.groupby("action")[["pct_a", "pct_b"]].max().max(axis=1)
        below = run.below_coder_range()
        cands = [a for a in actions if a != ALL and coded.get(a, 0) > 0]
        cands.sort(key=lambda a: (a not in below, -coded.get(a, 0)))
        for a in [ALL] + cands[: MAX_BLAND_ALTMAN - 1]:
            fig = bland_altman_figure(part, v, a, reference if has_model else None)
            sub = part[(part["action"] == a)]
            ba.append({"action": a if a != ALL else "any micro-action", "src": png_data_uri(fig, dpi=80),
                       "alt": f"Bland-Altman plot of percent time for {a if a != ALL else 'any micro-action'}: difference "
                              f"against mean of two raters, one marker per participant and pair ({len(sub)} markers)."})
    counts = {k: int((pd.Series([r["verdict"] for r in rows[:-1]]) == k).sum())
              for k in ("within the coder range", "below the coder range", "not enough coded data")}
    return {
        "rows": rows,
        "has_model": has_model,
        "coders": meta.get("coders", []),
        "reference": reference,
        "bin": meta.get("bin_text", ""),
        "tolerance": (meta.get("config") or {}).get("tolerance_s"),
        "participants": int(part["participant_id"].nunique()) if part is not None and len(part) else 0,
        "excluded": _excluded(v),
        "counts": counts,
        "kappa_figure": png_data_uri(kappa_figure(v), dpi=80),
        "kappa_alt": (f"Dot plot of time-unit kappa by action: model vs each coder (circles) and coder vs coder "
                      f"(squares), grey band the coder range. {counts['below the coder range']} action(s) below the "
                      f"coder range, {counts['within the coder range']} within it."),
        "bland_altman": ba,
    }


def coded_participants(run: Run) -> dict | None:
    """Which participants were coded and by whom, or None when the run has no codings.

    ``rows``: one per coded participant in the cohort's order (participants of the codings the cohort
    does not hold come last), with the group, the videos coded of the participant's videos, the coders
    (each with the number of videos they coded when not all) and the events coded; ``coders`` every
    coder with their participant count; ``n_coded`` / ``n_participants``; ``formats`` of the sources.
    """
    ses, ev = run.coder_sessions, run.coder_events
    if ses is None or not len(ses):
        return None
    ses = ses.assign(participant_id=ses["participant_id"].astype(str), coder=ses["coder"].astype(str),
                     video_id=ses["video_id"].astype(str))
    groups = dict(zip(run.cohort["participant_id"].astype(str), run.cohort["group"].astype(str)))
    order = [p for p in run.participants if p in set(ses["participant_id"])]
    order += [p for p in dict.fromkeys(ses["participant_id"]) if p not in set(order)]
    n_events = (ev.assign(coder=ev["coder"].astype(str), video_id=ev["video_id"].astype(str))
                .merge(ses[["video_id", "coder", "participant_id"]], on=["video_id", "coder"])
                .groupby("participant_id").size()) if ev is not None and len(ev) else pd.Series(dtype=int)
    rows = []
    for pid in order:
        s = ses[ses["participant_id"] == pid]
        videos = run.videos.get(pid) or []
        n_videos = len(videos) or s["video_id"].nunique()
        coded_videos = s["video_id"].nunique()
        coders = []
        for c, g in s.groupby("coder", sort=False):
            k = g["video_id"].nunique()
            coders.append(c if k == coded_videos else f"{c} ({k} of {coded_videos} videos)")
        rows.append({"participant_id": pid, "group": groups.get(pid, "—"), "videos": f"{coded_videos} of {n_videos}",
                     "coders": ", ".join(coders), "events": int(n_events.get(pid, 0))})
    per_coder = ses.groupby("coder", sort=False)["participant_id"].nunique()
    return {"rows": rows, "coders": [(c, int(n)) for c, n in per_coder.items()], "n_coded": len(order),
            "n_participants": len(run.participants), "formats": sorted(set(ses["format"].astype(str)))}


def _excluded(v: pd.DataFrame) -> float | None:
    allrows = v[v["action"] == ALL]
    vals = pd.to_numeric(allrows["excluded_share"], errors="coerce").dropna()
    return float(vals.max()) if len(vals) else None


def coder_videos(run: Run, videos: list[VideoInfo]) -> list[tuple[str, list[VideoInfo], list[str]]]:
    """Per coder who coded one of ``videos``: (coder, the videos with the coder's events as segments and the
    uncoded stretches as ``no_pose``, the actions the coder used)."""
    ev, ses = run.coder_events, run.coder_sessions
    if ev is None or ses is None:
        return []
    ev = ev.assign(video_id=ev["video_id"].astype(str), coder=ev["coder"].astype(str))
    ses = ses.assign(video_id=ses["video_id"].astype(str), coder=ses["coder"].astype(str))
    ids = {v.video_id for v in videos}
    out = []
    for coder in dict.fromkeys(ses.loc[ses["video_id"].isin(ids), "coder"]):
        infos, used = [], []
        for v in videos:
            s = ses[(ses["video_id"] == v.video_id) & (ses["coder"] == coder)]
            if not len(s):
                infos.append(replace(v, segments=None, no_pose=[(0.0, v.duration_s or 0.0)], excluded=None))
                continue
            s = s.iloc[0]
            e = ev[(ev["video_id"] == v.video_id) & (ev["coder"] == coder)]
            fps = float(s["fps"])
            seg = pd.DataFrame({"action": e["action"].astype(str).to_numpy(),
                                "start_s": e["start_frame"].to_numpy() / fps, "end_s": e["stop_frame"].to_numpy() / fps})
            dur = v.duration_s or float(s["num_frames"]) / fps
            gaps = [(0.0, float(s["coded_start_s"]))] if s["coded_start_s"] > 0 else []
            if s["coded_stop_s"] < dur:
                gaps.append((float(s["coded_stop_s"]), dur))
            infos.append(replace(v, segments=seg.sort_values("start_s").reset_index(drop=True), no_pose=gaps, excluded=None))
            used += list(seg["action"])
        out.append((coder, infos, list(dict.fromkeys(used))))
    return out
