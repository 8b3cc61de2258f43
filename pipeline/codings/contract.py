"""The codings contract: human (or simulated, or model) codings of micro-actions, in one tidy form.

Every importer (:mod:`pipeline.codings` readers for BORIS, ELAN, The Observer and CSV) ends in the
same two tables, and every consumer (agreement with coders, training on coded videos, error-aware
statistics) reads only them. The column-by-column documentation is ``docs/contracts.md``
("codings/"); keep both in step.

``RUN/codings/`` holds::

    events.parquet                       one row per coded event (contract ``coding_events``)
    sessions.parquet                     one row per coded (video, coder) pair (contract ``coding_sessions``)
    frames/<coder>/<video_id>.parquet    per-frame truth of one coder on one video (:func:`session_frames`)
    detections/<coder>.csv               MMA-52 ground-truth form for ``pipeline.detection_eval``
    qc.parquet                           what the import repaired, dropped or could not match

Time and frames (one rule for every format)::

    start_frame = round(start_s * fps)          stop_frame = round(stop_s * fps)   (exclusive)
    a point event covers one frame:             stop_frame = start_frame + 1,  stop_s = start_s
    a state event covers at least one frame:    stop_frame = max(stop_frame, start_frame + 1)

``fps`` is the *video's* frame rate (the session's ``fps``), never the coding tool's. Frame f covers
``[f / fps, (f + 1) / fps)``, as in the WINDOWS contract. A session's *coded span* is
``[coded_start_s, coded_stop_s)`` in video time: frames outside it were not coded (excluded from
agreement, training and correction), frames inside it with no event were coded as "no micro-action".
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa

from model.taxonomy import MA52
from pipeline.contracts import Contract, Rule

__all__ = [
    "CODING_EVENTS",
    "CODING_SESSIONS",
    "FRAMES_SCHEMA",
    "KINDS",
    "frame_span",
    "session_frames",
    "iter_session_frames",
    "detections_table",
    "frames_path",
]

KINDS: tuple[str, ...] = ("state", "point")


def _nonneg(v: np.ndarray) -> np.ndarray:
    return v >= 0


def _is_action(v: np.ndarray) -> np.ndarray:
    names = set(MA52.actions)
    return np.array([x in names for x in v], dtype=bool)


def _is_kind(v: np.ndarray) -> np.ndarray:
    return np.isin(v, KINDS)


CODING_EVENTS = Contract(
    name="coding_events",
    version=1,
    schema=pa.schema([
        pa.field("video_id", pa.string(), nullable=False),      # the manifest's video_id
        pa.field("coder", pa.string(), nullable=False),         # who coded ("model:<checkpoint id>" for a model)
        pa.field("action", pa.string(), nullable=False),        # MA-52 action name (after the mapping)
        pa.field("action_id", pa.int16(), nullable=False),      # MA-52 index of action
        pa.field("code", pa.string(), nullable=False),          # the lab's own code, as written in the source
        pa.field("kind", pa.string(), nullable=False),          # "state" | "point"
        pa.field("start_s", pa.float64(), nullable=False),      # video time, seconds
        pa.field("stop_s", pa.float64(), nullable=False),       # = start_s for a point event
        pa.field("start_frame", pa.int32(), nullable=False),    # round(start_s * fps)
        pa.field("stop_frame", pa.int32(), nullable=False),     # exclusive; >= start_frame + 1
        pa.field("modifiers", pa.string(), nullable=True),      # "|"-joined modifiers, null when none/dropped
        pa.field("source_file", pa.string(), nullable=False),   # file the event came from
        pa.field("source_ref", pa.string(), nullable=False),    # "line 17", "observation obs1 event 4", "a12"
    ]),
    rules=(
        Rule("start_s", _nonneg, ">= 0"),
        Rule("stop_s", _nonneg, ">= 0"),
        Rule("start_frame", _nonneg, ">= 0"),
        Rule("action", _is_action, "an MA-52 action name"),
        Rule("kind", _is_kind, "'state' or 'point'"),
    ),
    allow_extra=True,
)

CODING_SESSIONS = Contract(
    name="coding_sessions",
    version=1,
    schema=pa.schema([
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("coder", pa.string(), nullable=False),
        pa.field("participant_id", pa.string(), nullable=False),  # from the manifest
        pa.field("fps", pa.float64(), nullable=False),            # the video's frame rate
        pa.field("num_frames", pa.int32(), nullable=False),       # the video's decoded frame count
        pa.field("coded_start_s", pa.float64(), nullable=False),  # coded span [start, stop) in video time
        pa.field("coded_stop_s", pa.float64(), nullable=False),
        pa.field("format", pa.string(), nullable=False),          # boris | elan | observer | csv | simulator | model
        pa.field("source_file", pa.string(), nullable=False),
    ]),
    rules=(
        Rule("fps", lambda v: v > 0, "> 0"),
        Rule("num_frames", _nonneg, ">= 0"),
        Rule("coded_start_s", _nonneg, ">= 0"),
    ),
    unique=("video_id", "coder"),  # a video coded twice by one coder is an error
    allow_extra=True,
)

# frames/<coder>/<video_id>.parquet: the simulator's per-frame truth columns (truth/frames/), read by
# pipeline.agreement.read_frame_truth. One row per coded frame with no action (action null, action_id
# -1) or per coded frame and action shown (co-occurring actions: one row each). Frames outside the
# coded span are not listed.
FRAMES_SCHEMA = pa.schema([
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("frame", pa.int32(), nullable=False),
    pa.field("time_s", pa.float64(), nullable=False),
    pa.field("action_id", pa.int16(), nullable=False),
    pa.field("action", pa.string(), nullable=True),
])


def frame_span(start_s: float, stop_s: float, fps: float, *, point: bool = False) -> tuple[int, int]:
    """Frames ``[start_frame, stop_frame)`` an event covers (the module docstring's rule)."""
    a = int(round(start_s * fps))
    if point:
        return a, a + 1
    return a, max(int(round(stop_s * fps)), a + 1)


def frames_path(coder: str, video_id: str) -> str:
    """Relative path of one session's per-frame truth inside ``RUN/codings``."""
    return f"frames/{coder}/{video_id}.parquet"


def session_frames(events: pd.DataFrame, session: pd.Series | dict) -> pd.DataFrame:
    """Per-frame truth (:data:`FRAMES_SCHEMA` columns) of one session from its events.

    ``events``: rows of :data:`CODING_EVENTS` (any videos/coders; this session's are selected).
    Frames in the coded span ``[round(coded_start_s * fps), min(round(coded_stop_s * fps), num_frames))``
    are listed; an event's frames outside the span are not.
    """
    s = dict(session)
    fps = float(s["fps"])
    lo = int(round(float(s["coded_start_s"]) * fps))
    hi = min(int(round(float(s["coded_stop_s"]) * fps)), int(s["num_frames"]))
    hi = max(hi, lo)
    ev = events[(events["video_id"] == s["video_id"]) & (events["coder"] == s["coder"])]
    n = hi - lo
    cover = {}
    for row in ev.itertuples(index=False):
        a, b = max(int(row.start_frame), lo), min(int(row.stop_frame), hi)
        if b > a:
            mask = cover.setdefault(int(row.action_id), np.zeros(n, dtype=bool))
            mask[a - lo:b - lo] = True
    frames, ids = [], []
    any_action = np.zeros(n, dtype=bool)
    for aid in sorted(cover):
        m = cover[aid]
        any_action |= m
        f = np.flatnonzero(m) + lo
        frames.append(f)
        ids.append(np.full(f.size, aid, dtype=np.int16))
    f0 = np.flatnonzero(~any_action) + lo
    frames.append(f0)
    ids.append(np.full(f0.size, -1, dtype=np.int16))
    frame = np.concatenate(frames).astype(np.int32)
    action_id = np.concatenate(ids).astype(np.int16)
    order = np.lexsort((action_id, frame))
    frame, action_id = frame[order], action_id[order]
    names = np.array([None] + list(MA52.actions), dtype=object)
    return pd.DataFrame({
        "video_id": pd.Series([s["video_id"]] * frame.size, dtype=object),
        "frame": frame,
        "time_s": frame / fps,
        "action_id": action_id,
        "action": names[action_id.astype(np.int64) + 1],
    })


def iter_session_frames(events: pd.DataFrame, sessions: pd.DataFrame) -> Iterator[tuple[str, str, pd.DataFrame]]:
    """``(coder, video_id, frames)`` for every session, in the sessions table's order."""
    for _, s in sessions.iterrows():
        yield str(s["coder"]), str(s["video_id"]), session_frames(events, s)


def detections_table(events: pd.DataFrame, sessions: pd.DataFrame, coder: str) -> pd.DataFrame:
    """One coder's events in the MMA-52 ground-truth form ``video_id,t_start,t_end,class``.

    Times are the events' frame spans (``t_start = start_frame / fps``, ``t_end = stop_frame / fps``),
    as the simulator's ``truth/detections.csv`` writes them; class is the MA-52 action name.
    """
    fps = sessions[sessions["coder"] == coder].set_index("video_id")["fps"]
    ev = events[events["coder"] == coder].sort_values(["video_id", "start_frame", "action"])
    rate = ev["video_id"].map(fps).astype(float)
    return pd.DataFrame({
        "video_id": ev["video_id"].to_numpy(),
        "t_start": (ev["start_frame"] / rate).round(4).to_numpy(),
        "t_end": (ev["stop_frame"] / rate).round(4).to_numpy(),
        "class": ev["action"].to_numpy(),
    })
