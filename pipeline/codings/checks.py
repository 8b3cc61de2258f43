"""Time and consistency checks: each problem is a one-line error or a counted, reported repair.

=====================================  =========================================================
problem                                what happens
=====================================  =========================================================
START without STOP                     error; with ``--close-open-states`` closed at the video's
                                       end (``qc`` kind ``closed_open_state``)
STOP without START                     error
negative time, stop before start       error
event beyond the video's duration      the part after the end is cut off; an event that starts
                                       at or after the end is dropped (``clipped``, counted)
overlapping events of one action by    merged into one (``merged_overlap``, counted)
one coder on one video
video coded twice by one coder         error (two observations, files or units)
=====================================  =========================================================

Media offsets and frame-rate differences are reported by :mod:`pipeline.codings.importer`.

:func:`pair_states` turns a log of START/STOP/POINT marks (the BORIS project's alternating state
rows, its tabular export, The Observer's event log) into :class:`~pipeline.codings.raw.RawEvent`
intervals; the other functions work on :class:`Event` rows (mapped, matched to a video).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pipeline.codings.raw import CodingError, RawEvent, where

__all__ = ["Mark", "Event", "pair_states", "check_intervals", "close_open_states", "clip_to_duration",
           "merge_overlaps", "check_coded_once", "qc_row"]

STATUSES = ("START", "STOP", "POINT", "TOGGLE")


@dataclass(frozen=True)
class Mark:
    """One row of an event log. ``status``: START, STOP, POINT, or TOGGLE (a state row whose role follows
    from the order: BORIS projects store a state as two identical rows, start then stop). ``key`` groups
    marks that pair with each other (e.g. observation, subject)."""

    time_s: float
    code: str
    status: str
    key: tuple
    media: str
    coder: str | None
    modifiers: tuple[str, ...] = ()
    source_file: str = ""
    source_ref: str = ""
    unit: str = ""
    tier: str | None = None


@dataclass(frozen=True)
class Event:
    """A mapped event matched to a manifest video (video time, seconds; ``stop_s`` None: open state)."""

    video_id: str
    coder: str
    action: str
    code: str
    kind: str
    start_s: float
    stop_s: float | None
    modifiers: tuple[str, ...]
    source_file: str
    source_ref: str
    unit: str


def qc_row(kind: str, *, source_file: str | None = None, source_ref: str | None = None, video_id: str | None = None,
           coder: str | None = None, detail: str = "", count: int = 1) -> dict:
    """One ``qc.parquet`` row (columns: kind, source_file, source_ref, video_id, coder, detail, count)."""
    return {"kind": kind, "source_file": source_file, "source_ref": source_ref, "video_id": video_id, "coder": coder,
            "detail": detail, "count": int(count)}


def pair_states(marks: Iterable[Mark], *, unit_name: str = "observation") -> list[RawEvent]:
    """START/STOP (or TOGGLE) marks of one code and key -> state intervals; POINT marks -> points.

    Marks are taken in time order (stable: rows at one time keep their file order). A STOP with no
    open START raises :class:`CodingError`; a START never stopped gives an event with ``stop_s=None``.
    The event keeps the START's media, modifiers and place (``source_ref``: ``"<start ref> - <stop ref>"``).
    """
    out: list[RawEvent] = []
    open_: dict[tuple, list[Mark]] = {}
    for m in sorted(marks, key=lambda m: m.time_s):
        if m.status not in STATUSES:
            raise ValueError(m.status)
        if m.status == "POINT":
            out.append(RawEvent(m.media, m.coder, m.code, "point", m.time_s, m.time_s, m.modifiers, m.source_file,
                                m.source_ref, m.unit, m.tier))
            continue
        k = (m.key, m.code)
        stack = open_.setdefault(k, [])
        if m.status == "START" or (m.status == "TOGGLE" and not stack):
            stack.append(m)
            continue
        if not stack:
            raise CodingError(f"{where(m.source_file, m.source_ref, m.time_s)}: STOP of {m.code!r} without a START "
                              f"(in {unit_name} {m.unit!r})")
        s = stack.pop(0)
        out.append(RawEvent(s.media, s.coder, s.code, "state", s.time_s, m.time_s, s.modifiers, s.source_file,
                            f"{s.source_ref} - {m.source_ref}", s.unit, s.tier))
    for stack in open_.values():
        for s in stack:
            out.append(RawEvent(s.media, s.coder, s.code, "state", s.time_s, None, s.modifiers, s.source_file,
                                s.source_ref, s.unit, s.tier))
    out.sort(key=lambda e: e.start_s)
    return out


def check_intervals(events: Sequence[Event]) -> None:
    """Negative times and stops before starts are errors (one line naming file, place and time)."""
    for e in events:
        if e.start_s < 0 or (e.stop_s is not None and e.stop_s < 0):
            t = e.start_s if e.start_s < 0 else e.stop_s
            raise CodingError(f"{where(e.source_file, e.source_ref, t)}: negative time for {e.code!r} (after "
                              f"removing the media offset)")
        if e.stop_s is not None and e.stop_s < e.start_s:
            raise CodingError(f"{where(e.source_file, e.source_ref, e.start_s)}: {e.code!r} stops at {e.stop_s:.3f} s, "
                              f"before it starts (reversed interval)")


def close_open_states(events: Sequence[Event], durations: dict[str, float], *, close: bool) -> tuple[list[Event], list[dict]]:
    """States never stopped: an error, or (``close``) closed at the video's end and reported."""
    out, qc = [], []
    for e in events:
        if e.stop_s is None:
            if not close:
                raise CodingError(f"{where(e.source_file, e.source_ref, e.start_s)}: START of {e.code!r} without a "
                                  f"STOP (pass --close-open-states to close it at the end of the video)")
            end = max(durations[e.video_id], e.start_s)
            e = dataclasses.replace(e, stop_s=end)
            qc.append(qc_row("closed_open_state", source_file=e.source_file, source_ref=e.source_ref,
                             video_id=e.video_id, coder=e.coder,
                             detail=f"{e.code!r} started at {e.start_s:.3f} s closed at the video's end {end:.3f} s"))
        out.append(e)
    return out, qc


def clip_to_duration(events: Sequence[Event], durations: dict[str, float]) -> tuple[list[Event], list[dict]]:
    """Cut events at the video's end; drop those that start at or after it. One qc row per video and coder."""
    out: list[Event] = []
    counts: dict[tuple, list[int]] = {}
    for e in events:
        end = durations[e.video_id]
        key = (e.video_id, e.coder, e.source_file)
        if e.start_s >= end:
            counts.setdefault(key, [0, 0])[1] += 1
            continue
        if e.stop_s is not None and e.stop_s > end:
            counts.setdefault(key, [0, 0])[0] += 1
            e = dataclasses.replace(e, stop_s=end)
        out.append(e)
    qc = [qc_row("clipped", source_file=src, video_id=vid, coder=coder, count=cut + dropped,
                 detail=f"{cut} event(s) cut at the video's end ({durations[vid]:.3f} s), {dropped} starting after "
                        f"it dropped")
          for (vid, coder, src), (cut, dropped) in counts.items()]
    return out, qc


def merge_overlaps(events: Sequence[Event]) -> tuple[list[Event], list[dict]]:
    """Merge overlapping events of one action by one coder on one video (states that overlap, points on
    a state of the same action or at the same time); one qc row per video, coder and action."""
    groups: dict[tuple, list[Event]] = {}
    for e in events:
        groups.setdefault((e.video_id, e.coder, e.action), []).append(e)
    out: list[Event] = []
    qc: list[dict] = []
    for (vid, coder, action), evs in groups.items():
        evs = sorted(evs, key=lambda e: (e.start_s, -(e.stop_s or 0)))
        merged: list[Event] = []
        n = 0
        for e in evs:
            if merged:
                last = merged[-1]
                if _overlaps(last, e):
                    merged[-1] = _union(last, e)
                    n += 1
                    continue
            merged.append(e)
        out.extend(merged)
        if n:
            qc.append(qc_row("merged_overlap", source_file=evs[0].source_file, video_id=vid, coder=coder, count=n,
                             detail=f"{n} overlapping event(s) of {action!r} merged into the one before"))
    out.sort(key=lambda e: (e.video_id, e.coder, e.start_s, e.action))
    return out, qc


def _overlaps(a: Event, b: Event) -> bool:
    """b starts inside a (b.start >= a.start by the sort)."""
    if a.kind == "point" and b.kind == "point":
        return b.start_s == a.start_s
    if a.kind == "point":
        return b.start_s == a.start_s  # a point at a state's very start
    return b.start_s < a.stop_s


def _union(a: Event, b: Event) -> Event:
    if a.kind == "point" and b.kind == "point":
        kind, stop = "point", a.stop_s
    else:
        kind, stop = "state", max(a.stop_s, b.stop_s)
    mods = tuple(dict.fromkeys(a.modifiers + b.modifiers))
    return dataclasses.replace(a, kind=kind, stop_s=stop, modifiers=mods,
                               source_ref=f"{a.source_ref} + {b.source_ref}")


def check_coded_once(units: dict[tuple[str, str], set[tuple[str, str]]]) -> None:
    """``(video_id, coder) -> {(source_file, unit)}``: more than one unit is an error."""
    for (vid, coder), seen in units.items():
        if len(seen) > 1:
            (f1, u1), (f2, u2) = sorted(seen)[:2]
            raise CodingError(f"video {vid!r} is coded twice by coder {coder!r}: {f1} ({u1}) and {f2} ({u2}); "
                              f"give each coding its own coder name or import one of them")
