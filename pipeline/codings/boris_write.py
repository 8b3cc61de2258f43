"""Codings out as a BORIS project (``.boris``, JSON) that BORIS opens and a coder edits.

Input: rows of :data:`pipeline.codings.contract.CODING_EVENTS` (one coder) with their sessions
(:data:`~pipeline.codings.contract.CODING_SESSIONS`), the media file of each video, and an ethogram
(``action -> code``, the lab's codes; default: the MA-52 names). Output: one project dict with one
observation per video (observation id = video id) playing that video on player 1::

    project["behaviors_conf"][i]   = {"type": "State event" | "Point event", "code": code, "key": ..., ...}
    project["observations"][vid]   = {"type": "MEDIA", "file": {"1": [media], "2": [], ... "8": []},
                                      "media_info": {"length": {media: s}, "fps": {media: fps},
                                                     "hasVideo": {media: true}, "hasAudio": {media: false},
                                                     "offset": {"1": 0.0, ...}},
                                      "time offset": 0.0, "events": [[t, subject, code, modifier, comment,
                                      frame index], ...], "independent_variables": {"coder": ..., ...}, ...}

A state event is two rows (START at ``start_frame / fps``, STOP at ``stop_frame / fps``): BORIS pairs
the rows of one subject, code and modifier in time order, so the writer refuses two overlapping
events of one code (they would pair wrongly). A point event is one row. Times are rounded to BORIS's
3 decimals; ``round(t * fps)`` gives the frame back for any ``fps < 500``. A per-event score (model
exports) goes into the START row's comment as ``score=0.873``; the subject is empty ("No focal
subject") and the coder is the observation's independent variable ``coder``. The keys are those BORIS
(project format 7.0, the format BORIS 7 to 9 write) reads or checks when it opens a project; the list
with their meaning is ``docs/codings.md, "Exporting for review"``. Nothing here depends on BORIS (GPL, a Qt
application): the format is written from its documentation and published project files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from pipeline.cli import BadInput

__all__ = ["PROJECT_FORMAT_VERSION", "PROJECT_KEYS", "OBSERVATION_KEYS", "MEDIA_INFO_KEYS", "BEHAVIOR_KEYS",
           "PLAYERS", "Media", "boris_project", "boris_text", "ethogram_keys"]

PROJECT_FORMAT_VERSION = "7.0"
PLAYERS: tuple[str, ...] = tuple(str(i) for i in range(1, 9))  # BORIS has 8 players; every key is present
PROJECT_KEYS: tuple[str, ...] = (
    "project_name", "project_date", "project_description", "project_format_version", "time_format",
    "subjects_conf", "behaviors_conf", "behavioral_categories", "independent_variables", "coding_map",
    "behaviors_coding_map", "converters", "observations")
OBSERVATION_KEYS: tuple[str, ...] = (
    "type", "date", "description", "time offset", "file", "media_info", "events", "independent_variables",
    "observation time interval", "visualize_spectrogram", "visualize_waveform", "close_behaviors_between_videos")
MEDIA_INFO_KEYS: tuple[str, ...] = ("length", "fps", "hasVideo", "hasAudio", "offset")
BEHAVIOR_KEYS: tuple[str, ...] = ("type", "key", "code", "description", "color", "category", "modifiers",
                                  "excluded", "coding map")
_KEY_POOL = "abcdefghijklmnopqrstuvwxyz0123456789"


@dataclass(frozen=True)
class Media:
    """The media file of one video as the project names it (a path relative to the project file's
    folder, which BORIS tries when the path itself is not found), its length and frame rate."""

    path: str
    length_s: float
    fps: float


def ethogram_keys(n: int) -> list[str]:
    """Keyboard keys for ``n`` behaviours: a-z then 0-9, then none (BORIS codes a behaviour without a
    key by a click in its ethogram list)."""
    return [_KEY_POOL[i] if i < len(_KEY_POOL) else "" for i in range(n)]


def _t(x: float) -> float:
    return round(float(x), 3)


def _events_rows(ev: pd.DataFrame, fps: float, codes: Mapping[str, str], scores: pd.Series | None,
                 where: str) -> list[list]:
    rows: list[tuple] = []
    last_stop: dict[str, int] = {}
    for i, e in zip(ev.index, ev.itertuples(index=False)):
        code = codes.get(e.action, e.code if isinstance(e.code, str) and e.code else e.action)
        mod = e.modifiers if isinstance(e.modifiers, str) else ""
        comment = f"score={float(scores.loc[i]):.3f}" if scores is not None else ""
        a, b = int(e.start_frame), int(e.stop_frame)
        if e.kind == "point":
            rows.append((a / fps, 1, a, code, mod, comment))
            continue
        if a < last_stop.get(code + "\x00" + mod, -1):
            raise BadInput(f"{where}: events of code {code!r} overlap at {a / fps:.3f} s; BORIS would pair their "
                           f"START and STOP rows wrongly (merge them first)")
        last_stop[code + "\x00" + mod] = b
        rows.append((a / fps, 1, a, code, mod, comment))
        rows.append((b / fps, 0, b, code, mod, ""))  # at equal times a STOP sorts before a START
    rows.sort(key=lambda r: (r[0], r[1]))
    return [[_t(t), "", code, mod, comment, frame] for t, _, frame, code, mod, comment in rows]


def boris_project(events: pd.DataFrame, sessions: pd.DataFrame, media: Mapping[str, Media], *,
                  ethogram: Mapping[str, str], coder: str, scores: pd.Series | None = None,
                  project_name: str = "", description: str = "", date: str | None = None) -> dict:
    """The BORIS project of one coder's events (module docstring).

    Parameters
    ----------
    events : CODING_EVENTS rows (only ``coder``'s are used), index aligned with ``scores``
    sessions : CODING_SESSIONS rows; one observation per session of ``coder``, in table order
    media : video_id -> :class:`Media`
    ethogram : action -> code, in ethogram order; every event's action must be in it
    scores : optional per-event score (same index as ``events``), written as the START row's comment
    date : ISO 8601 date of the project and observations (default: now, local time, seconds)
    """
    date = date or pd.Timestamp.now().strftime("%Y-%m-%dT%H:%M:%S")
    codes = dict(ethogram)
    missing = sorted(set(events.loc[events["coder"] == coder, "action"]) - set(codes))
    if missing:
        raise BadInput(f"ethogram has no code for action(s) {', '.join(map(repr, missing))}")
    kinds = {a: "state" for a in codes}
    for a, k in events.loc[events["coder"] == coder, ["action", "kind"]].drop_duplicates().itertuples(index=False):
        if k == "point":
            kinds[a] = "point"
    keys = ethogram_keys(len(codes))
    behaviors = {
        str(i): {"type": "Point event" if kinds[a] == "point" else "State event", "key": keys[i], "code": code,
                 "description": a if a != code else "", "color": "", "category": "", "modifiers": {},
                 "excluded": "", "coding map": ""}
        for i, (a, code) in enumerate(codes.items())}
    observations = {}
    for s in sessions[sessions["coder"] == coder].itertuples(index=False):
        vid = str(s.video_id)
        if vid not in media:
            raise BadInput(f"no media file for video {vid!r}")
        m = media[vid]
        ev = events[(events["coder"] == coder) & (events["video_id"] == vid)].sort_values(["start_frame", "stop_frame"])
        sc = None if scores is None else scores.loc[ev.index]
        observations[vid] = {
            "type": "MEDIA",
            "date": date,
            "description": f"participant {s.participant_id}; coder {coder}",
            "time offset": 0.0,
            "file": {p: ([m.path] if p == "1" else []) for p in PLAYERS},
            "media_info": {"length": {m.path: _t(m.length_s)}, "fps": {m.path: float(m.fps)},
                           "hasVideo": {m.path: True}, "hasAudio": {m.path: False},
                           "offset": {p: 0.0 for p in PLAYERS}},
            "events": _events_rows(ev, float(s.fps), codes, sc, f"video {vid}, coder {coder}"),
            "independent_variables": {"coder": coder, "participant": str(s.participant_id)},
            "observation time interval": [_t(s.coded_start_s), _t(s.coded_stop_s)]
            if (s.coded_start_s > 0 or s.coded_stop_s < m.length_s - 0.5 / s.fps) else [0, 0],
            "visualize_spectrogram": False,
            "visualize_waveform": False,
            "close_behaviors_between_videos": False,
        }
    return {
        "project_name": project_name or coder,
        "project_date": date,
        "project_description": description,
        "project_format_version": PROJECT_FORMAT_VERSION,
        "time_format": "s",
        "subjects_conf": {},
        "behaviors_conf": behaviors,
        "behavioral_categories": [],
        "independent_variables": {
            "0": {"label": "coder", "description": "who coded the observation", "type": "text",
                  "default value": "", "possible values": ""},
            "1": {"label": "participant", "description": "participant id (cohort manifest)", "type": "text",
                  "default value": "", "possible values": ""}},
        "coding_map": {},
        "behaviors_coding_map": [],
        "converters": {},
        "observations": observations,
    }


def boris_text(project: dict) -> str:
    """The project as BORIS writes it: UTF-8 JSON (non-ASCII kept), one trailing newline."""
    return json.dumps(project, ensure_ascii=False, indent=1) + "\n"
