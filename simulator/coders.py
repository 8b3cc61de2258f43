"""Simulated coders: the simulator's truth coded again by "people" with known boundary jitter and misses.

From a simulated cohort (``SIMDIR/truth/frames/<participant_id>.parquet``, ``manifest.csv``,
``config.json``; :mod:`simulator.recording`) every truth event (a run of frames of one action) is
coded by

- the **perfect coder** ``sim-perfect``: every event, exactly (its per-frame truth is the simulator's);
- **simulated coders** ``sim-coder-1`` ... ``sim-coder-K``, each on its own seeded stream
  ``numpy.random.default_rng([seed, k, video index])``, per truth event ``[s, e)`` (seconds)::

      missed      ~ Bernoulli(miss)                                   (the event is not coded)
      d_on, d_off ~ N(0, jitter_s^2), clipped to [-clip_sigmas * jitter_s, +clip_sigmas * jitter_s]
      start_frame = round((s + d_on) * fps),   stop_frame = round((e + d_off) * fps)

  then kept inside the video, at least one frame long, and after the coder's previous event (one
  action at a time, as the truth; an event of the same action as the previous one starts at least one
  frame after it, so the two are not merged on import). Times are the frames' (``frame / fps``), so a
  coder's file imports to exactly its own per-frame table. The boundary error of a kept event is
  ``round(d * fps) / fps`` (sd ``sqrt(jitter_s^2 + 1 / (12 fps^2))``, less a little for the clipping).

Outputs of :func:`write_simulated_coders` in ``OUT`` (a ``codings`` folder, docs/contracts.md "codings/",
plus the review files and what was planted)::

    events.parquet, sessions.parquet          contracts coding_events / coding_sessions (format "simulator")
    frames/<coder>/<video_id>.parquet         per-frame truth of each coder (pipeline.codings.contract.session_frames)
    detections/<coder>.csv                    MMA-52 ground-truth form
    qc.parquet                                empty (nothing was repaired)
    planted.parquet                           one row per coder x truth event: missed, d_on, d_off, errors
    boris/<coder>.boris                       BORIS project per coder     (--format boris|both)
    elan/<coder>/<video_id>.eaf               ELAN file per coder and video (--format elan|both)
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
from pydantic import Field

from model.taxonomy import MA52
from pipeline.artifacts import write_artifact
from pipeline.cli import BadInput
from pipeline.codings.contract import CODING_EVENTS, CODING_SESSIONS, detections_table, frames_path, session_frames
from pipeline.codings.export import export_codings
from pipeline.manifest import read_manifest
from pipeline.ownership import StagedSet

__all__ = ["CoderConfig", "PERFECT", "coder_names", "truth_events", "read_cohort_truth", "simulate_coder",
           "simulated_coders", "write_simulated_coders", "STAGE", "FORMATS"]

STAGE = "sim-coders"
PERFECT = "sim-perfect"
FORMATS = ("boris", "elan", "both", "none")
_QC_COLUMNS = ["kind", "source_file", "source_ref", "video_id", "coder", "detail", "count"]


@dataclass(frozen=True)
class CoderConfig:
    """What is planted in the simulated coders (docs/simulator.md, "Simulated coders").

    Attributes
    ----------
    coders : number of jittered coders (``sim-coder-1`` ...); the perfect coder comes on top
    jitter_s : sd of the onset and offset jitter, seconds (0.2: the onset collar of sound-event
        evaluation, DESIGN.md 11, i.e. a coder typically within a collar of the truth)
    clip_sigmas : jitter is clipped at this many sd (3: a coder never misplaces a boundary by more)
    miss : probability that a coder misses an event
    perfect : also write the perfect coder ``sim-perfect``
    seed : master seed
    """

    coders: Annotated[int, Field(ge=0, description="jittered coders")] = 2
    jitter_s: Annotated[float, Field(ge=0, description="sd of boundary jitter, s")] = 0.2
    clip_sigmas: Annotated[float, Field(gt=0, description="jitter clipped at this many sd")] = 3.0
    miss: Annotated[float, Field(ge=0, le=1, description="probability of missing an event")] = 0.1
    perfect: Annotated[bool, Field(description="write the perfect coder too")] = True
    seed: Annotated[int, Field(description="master seed")] = 0

    def __post_init__(self) -> None:
        if isinstance(self.coders, bool) or not isinstance(self.coders, int) or self.coders < 0:
            raise ValueError(f"coders must be an integer >= 0, got {self.coders!r}")
        if not (math.isfinite(self.jitter_s) and self.jitter_s >= 0):
            raise ValueError(f"jitter_s must be >= 0, got {self.jitter_s!r}")
        if not (math.isfinite(self.clip_sigmas) and self.clip_sigmas > 0):
            raise ValueError(f"clip_sigmas must be > 0, got {self.clip_sigmas!r}")
        if not (0.0 <= self.miss <= 1.0):
            raise ValueError(f"miss must be in [0, 1], got {self.miss!r}")
        if self.coders == 0 and not self.perfect:
            raise ValueError("no coder to simulate (coders 0 and no perfect coder)")

    def to_dict(self) -> dict:
        return asdict(self)


def coder_names(config: CoderConfig) -> list[str]:
    return ([PERFECT] if config.perfect else []) + [f"sim-coder-{k}" for k in range(1, config.coders + 1)]


def truth_events(frames: pd.DataFrame, fps: float, *, source: str = "") -> pd.DataFrame:
    """The truth events of one video's per-frame truth: one row per run of consecutive frames of one
    action (CODING_EVENTS columns, coder ``truth``), sorted by start frame."""
    vid = str(frames["video_id"].iloc[0]) if len(frames) else ""
    rows = []
    for aid, f in frames[frames["action_id"] >= 0].groupby("action_id")["frame"]:
        f = np.sort(f.to_numpy())
        breaks = np.flatnonzero(np.diff(f) > 1)
        starts = np.r_[f[:1], f[breaks + 1]]
        stops = np.r_[f[breaks], f[-1:]] + 1
        for a, b in zip(starts, stops):
            rows.append((int(a), int(b), int(aid)))
    rows.sort()
    return pd.DataFrame({
        "video_id": pd.Series([vid] * len(rows), dtype=object), "coder": "truth",
        "action": [MA52.actions[r[2]] for r in rows], "action_id": np.array([r[2] for r in rows], np.int16),
        "code": [MA52.actions[r[2]] for r in rows], "kind": "state",
        "start_s": np.array([r[0] for r in rows], float) / fps, "stop_s": np.array([r[1] for r in rows], float) / fps,
        "start_frame": np.array([r[0] for r in rows], np.int32), "stop_frame": np.array([r[1] for r in rows], np.int32),
        "modifiers": None, "source_file": source, "source_ref": [f"truth event {i}" for i in range(len(rows))]})


def read_cohort_truth(simdir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str], dict[str, pd.DataFrame]]:
    """``(events, sessions, videos, frames)`` of a simulated cohort's truth (coder ``truth``), in
    manifest order; ``videos`` maps video id -> video path, ``frames`` video id -> per-frame truth."""
    simdir = Path(simdir)
    man_path = simdir / "manifest.csv"
    if not man_path.is_file():
        raise BadInput(f"--cohort {simdir}: no manifest.csv (not a simulated cohort: python -m simulator cohort)")
    try:
        fps = float(json.loads((simdir / "config.json").read_text())["fps"])
    except (OSError, ValueError, KeyError, TypeError):
        raise BadInput(f"--cohort {simdir}: config.json missing or without fps") from None
    manifest = read_manifest(man_path, check_videos=False)
    ev, sess, videos, all_frames = [], [], {}, {}
    for row in manifest.videos.itertuples(index=False):
        vid = str(row.video_id)
        path = simdir / "truth" / "frames" / f"{vid}.parquet"
        if not path.is_file():
            raise BadInput(f"{path}: per-frame truth missing for video {vid!r}")
        frames = pd.read_parquet(path)
        all_frames[vid] = frames
        ev.append(truth_events(frames, fps, source=str(path)))
        n = int(frames["frame"].max()) + 1 if len(frames) else 0
        sess.append({"video_id": vid, "coder": "truth", "participant_id": str(row.participant_id), "fps": fps,
                     "num_frames": n, "coded_start_s": 0.0, "coded_stop_s": n / fps, "format": "simulator",
                     "source_file": str(path)})
        videos[vid] = str(row.video)
    return pd.concat(ev, ignore_index=True), pd.DataFrame(sess), videos, all_frames


def simulate_coder(events: pd.DataFrame, session: dict, *, coder: str, jitter_s: float, clip_sigmas: float,
                   miss: float, rng: np.random.Generator | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One coder's events on one video and what was planted (module docstring); ``rng`` None = perfect."""
    fps, n = float(session["fps"]), int(session["num_frames"])
    ev = events.sort_values("start_frame").reset_index(drop=True)
    k = len(ev)
    if rng is None:
        missed, d_on, d_off = np.zeros(k, bool), np.zeros(k), np.zeros(k)
    else:  # draw all three for every event, so a change of miss leaves the jitter of the others as it was
        missed = rng.random(k) < miss
        lim = clip_sigmas * jitter_s
        d_on = np.clip(rng.normal(0.0, jitter_s, k), -lim, lim) if jitter_s > 0 else np.zeros(k)
        d_off = np.clip(rng.normal(0.0, jitter_s, k), -lim, lim) if jitter_s > 0 else np.zeros(k)
    starts, stops = np.zeros(k, np.int64), np.zeros(k, np.int64)
    prev_stop, prev_action = 0, None
    for i, e in enumerate(ev.itertuples(index=False)):
        a = int(round((e.start_frame / fps + d_on[i]) * fps))
        b = int(round((e.stop_frame / fps + d_off[i]) * fps))
        if missed[i]:
            continue
        a = max(a, 0, prev_stop + (1 if e.action == prev_action else 0))
        b = max(min(b, n), a + 1)
        starts[i], stops[i] = a, b
        prev_stop, prev_action = b, e.action
    keep = ~missed
    out = ev[keep].copy()
    out["coder"] = coder
    out["start_frame"] = starts[keep].astype(np.int32)
    out["stop_frame"] = stops[keep].astype(np.int32)
    out["start_s"] = out["start_frame"] / fps
    out["stop_s"] = out["stop_frame"] / fps
    out["source_file"] = f"simulated coder {coder}"
    planted = pd.DataFrame({
        "video_id": ev["video_id"].to_numpy(), "coder": coder, "truth_event": np.arange(k), "action": ev["action"].to_numpy(),
        "truth_start_frame": ev["start_frame"].to_numpy(np.int32), "truth_stop_frame": ev["stop_frame"].to_numpy(np.int32),
        "missed": missed, "onset_jitter_s": d_on, "offset_jitter_s": d_off,
        "start_frame": np.where(keep, starts, -1).astype(np.int32), "stop_frame": np.where(keep, stops, -1).astype(np.int32)})
    planted["onset_error_s"] = np.where(keep, (planted["start_frame"] - planted["truth_start_frame"]) / fps, np.nan)
    planted["offset_error_s"] = np.where(keep, (planted["stop_frame"] - planted["truth_stop_frame"]) / fps, np.nan)
    return out, planted


def simulated_coders(events: pd.DataFrame, sessions: pd.DataFrame, config: CoderConfig
                     ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``(events, sessions, planted)`` of every simulated coder on every truth session."""
    ev_out, sess_out, planted = [], [], []
    for k, coder in enumerate(coder_names(config)):
        jittered = coder != PERFECT
        index = int(coder.rsplit("-", 1)[1]) if jittered else 0
        for v, s in enumerate(sessions.to_dict("records")):
            rng = np.random.default_rng([config.seed, index, v]) if jittered else None
            mine = events[events["video_id"] == s["video_id"]]
            e, p = simulate_coder(mine, s, coder=coder, jitter_s=config.jitter_s, clip_sigmas=config.clip_sigmas,
                                  miss=config.miss, rng=rng)
            ev_out.append(e)
            planted.append(p)
            sess_out.append({**s, "coder": coder, "source_file": f"simulated coder {coder}"})
    events_all = pd.concat(ev_out, ignore_index=True)
    events_all["source_ref"] = [f"event {i}" for i in range(len(events_all))]
    return events_all, pd.DataFrame(sess_out), pd.concat(planted, ignore_index=True)


def write_simulated_coders(simdir: str | Path, out: str | Path, config: CoderConfig, *, fmt: str = "both",
                           layout: str = "per-action") -> list[Path]:
    """Simulate the coders of a cohort and write the outputs listed in the module docstring."""
    if fmt not in FORMATS:
        raise BadInput(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out = Path(out)
    truth, truth_sessions, videos, _ = read_cohort_truth(simdir)
    events, sessions, planted = simulated_coders(truth, truth_sessions, config)
    record = {"coders": config.to_dict(), "cohort": str(Path(simdir).absolute())}
    written: list[Path] = []
    with StagedSet(out, STAGE) as st:
        def table(rel: str, data: pd.DataFrame, contract) -> None:
            with st.writing(rel) as tmp:
                write_artifact(data, tmp, contract=contract, stage=STAGE, config=record)
            st.add_written(tmp.with_name(tmp.name + ".json"))
            written.append(out / rel)

        table("events.parquet", events, CODING_EVENTS)
        table("sessions.parquet", sessions, CODING_SESSIONS)
        table("planted.parquet", planted, None)
        table("qc.parquet", pd.DataFrame({c: pd.Series(dtype=object if c != "count" else np.int64)
                                          for c in _QC_COLUMNS}), None)
        for coder, vid, frames in ((s["coder"], s["video_id"], session_frames(events, s))
                                   for s in sessions.to_dict("records")):
            table(frames_path(coder, vid), frames, None)
        for coder in dict.fromkeys(sessions["coder"]):
            rel = f"detections/{coder}.csv"
            with st.writing(rel) as tmp:
                tmp.write_text(detections_table(events, sessions, coder).to_csv(index=False), encoding="utf-8")
            written.append(out / rel)
        st.commit()
    ethogram = {a: a for a in MA52.actions}
    for f in (("boris", "elan") if fmt == "both" else () if fmt == "none" else (fmt,)):
        written += export_codings(events, sessions, videos, out / f, fmt=f, ethogram=ethogram, layout=layout,
                                  subfolders=True, stage=STAGE)
    return written
