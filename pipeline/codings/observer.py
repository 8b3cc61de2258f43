"""Noldus The Observer XT event logs (CSV / TSV / TXT / XLSX export of the event log).

Accepted: a table whose header row (the first row holding ``Behavior`` and ``Event_Type``; rows
above it, such as an export's title block, are skipped) has these columns (names matched
case-insensitively, ``_`` or space alike):

=====================  =======================================================================
``Observation``        the observation (coding unit); names the video unless a media column does
``Subject``            optional; may name the coder (mapping ``observer.coder: subject``)
``Behavior``           the lab's code
``Event_Type``         ``State start`` / ``State stop`` / ``State point`` (also ``Point``)
``Time_Relative_sf``   seconds from the observation's start (``Time_Relative_s`` accepted)
``Modifier_1`` ...     optional modifiers (any number of ``Modifier_<n>`` columns)
``Event_Log``          optional; may name the coder (``observer.coder: event_log``)
``Media_file``         optional (also ``Media file``, ``Media``, ``Video``): the media file per row
=====================  =======================================================================

Starts and stops pair per observation, subject and behaviour, in time order. Other columns
(``Date_Time_Absolute_dmy_hmsf``, ``Duration_sf``, ``Comment``, ...) are ignored: a state's stop
is its ``State stop`` row, not ``Duration_sf``.
"""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.codings.checks import Mark, pair_states
from pipeline.codings.mapping import ObserverOptions, coder_of, normalize_code, video_of
from pipeline.codings.raw import CodingError, RawSession, Reading
from pipeline.codings.tables import is_blank, parse_seconds, read_rows

__all__ = ["read_observer"]

_STATUS = {"state start": "START", "state stop": "STOP", "state point": "POINT", "point": "POINT",
           "point event": "POINT", "start": "START", "stop": "STOP"}
_MEDIA = ("media_file", "media_file_path", "media", "video")


def _norm(name: str) -> str:
    return normalize_code(name).replace(" ", "_")


def read_observer(path: str | Path, options: ObserverOptions) -> Reading:
    path = Path(path)
    src = str(path)
    rows = read_rows(path)
    head = next((i for i, r in enumerate(rows) if {"behavior", "event_type"} <= {_norm(c) for c in r.cells}), None)
    if head is None:
        raise CodingError(f"{src}: no header row with 'Behavior' and 'Event_Type' (is this an Observer XT event "
                          f"log export?)")
    header = [_norm(c) for c in rows[head].cells]
    idx = {name: i for i, name in reversed(list(enumerate(header)))}
    time_col = idx.get("time_relative_sf", idx.get("time_relative_s"))
    if time_col is None or "observation" not in idx:
        need = "Time_Relative_sf" if time_col is None else "Observation"
        raise CodingError(f"{src}: {rows[head].ref}: missing column {need!r}")
    mod_cols = [i for i, n in enumerate(header) if re.fullmatch(r"modifier_?\d+", n)]
    media_col = next((idx[n] for n in _MEDIA if n in idx), None)
    field_col = {"subject": idx.get("subject"), "observation": idx["observation"], "event_log": idx.get("event_log")}
    if options.coder != "none" and field_col.get(options.coder) is None:
        raise CodingError(f"{src}: the mapping says observer.coder: {options.coder}, but the file has no such column")
    marks: list[Mark] = []
    sessions: dict[tuple, RawSession] = {}
    for r in rows[head + 1:]:
        if is_blank(r):
            continue
        place = f"{src}: {r.ref}"
        obs = r.get(idx["observation"])
        code = r.get(idx["behavior"])
        etype = r.get(idx["event_type"])
        status = _STATUS.get(normalize_code(etype))
        if not obs:
            raise CodingError(f"{place}: empty Observation")
        if not code:
            raise CodingError(f"{place}: empty Behavior (observation {obs!r})")
        if status is None:
            raise CodingError(f"{place}: Event_Type {etype!r} is not 'State start', 'State stop' or 'State point' "
                              f"(observation {obs!r})")
        t = parse_seconds(r.get(time_col), what="Time_Relative_sf", place=f"{place} (observation {obs!r})")
        coder = None
        if options.coder != "none":
            coder = coder_of(r.get(field_col[options.coder]), options.pattern)
        media = r.get(media_col) if media_col is not None and r.get(media_col) else video_of(obs, options.pattern)
        subject = r.get(idx["subject"]) if "subject" in idx else ""
        mods = tuple(r.get(i) for i in mod_cols if r.get(i))
        marks.append(Mark(t, code, status, (obs, subject, coder), media, coder, mods, src,
                          f"observation {obs} {r.ref}", obs))
        sessions.setdefault((media, coder, obs), RawSession(media, coder, src, f"observation {obs}"))
    out = Reading("observer", src, sessions=list(sessions.values()))
    for e in pair_states(marks):
        out.events.append(e.__class__(**{**e.__dict__, "unit": f"observation {e.unit}"}))
    return out
