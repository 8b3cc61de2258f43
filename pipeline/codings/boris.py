"""BORIS codings: the project file (``.boris``) and the "aggregated events" and "tabular events" exports.

Observation time and media time
-------------------------------
BORIS records *observation* times. An observation's player 1 plays its media files one after the
other, and the observation's ``time offset`` is added to the media position. So an event at
observation time ``t`` belongs to the file playing at ``t - offset`` and its time in that file is::

    media_time = t - offset - sum(durations of the earlier files of player 1)

(an event that starts in one file and stops in the next keeps the first file; its end is then cut at
that video's end and counted in ``qc``). Durations come from the project's ``media_info.length``
(or the export's ``Media duration (s)`` / ``Total length``), else from the manifest video the file
matches (``duration_of``). Players 2-8 show the same time on other cameras and are not read.

Project file (``.boris``, JSON)
-------------------------------
Read: ``behaviors_conf`` (each code's ``type``: ``State event`` / ``Point event``, with or without
coding map), ``observations[<id>]`` with ``type`` (``MEDIA``; a ``LIVE`` observation has no media
and is matched by its observation id), ``file`` (``{"1": [paths], "2": [...]}``), ``media_info``
(``length`` and ``fps`` per path), ``time offset`` (seconds) and ``events``: rows ``[time, subject,
code, modifier, comment(, frame index)]`` in time order; a state event is two identical rows, its
start and its stop; ``modifier`` holds ``|``-separated modifiers. A code missing from
``behaviors_conf`` is an error. Every media file of player 1 is a coded session, events or not.

Aggregated events export (TSV / CSV / XLSX)
-------------------------------------------
One row per state interval or point; the header row is the first holding ``Behavior``, ``Start (s)``
and ``Stop (s)``. Read columns (others ignored): ``Observation id``, ``Subject``, ``Behavior``,
``Behavior type`` (``STATE`` / ``POINT``), ``Start (s)``, ``Stop (s)`` (``NA`` for a state never
stopped), ``Modifiers`` or ``Modifier #1``..., the media: ``Media file name`` (the file playing at
the start) and ``Source`` (``player #1:a.mp4;b.mp4|player #2:...``), or older exports' ``Media file``;
durations: ``Media duration (s)`` (``;``-separated like Source) or ``Total length``; ``FPS``;
``Time offset (s)``.

Tabular events export (TSV / CSV / XLSX)
----------------------------------------
One row per START / STOP / POINT; the header row is the first holding ``Time`` and ``Behavior``;
the status is in ``Behavior type`` (``START`` / ``STOP`` / ``POINT``) or ``Status``. Rows above the
header are the header block of older exports (``Observation id<TAB>obs1``, ``Time offset (s)<TAB>0``,
``Player #1<TAB>video.mp4``, ...); newer exports repeat those facts in columns (as above; the media
at each row: ``Media file name`` or ``Media file path``). Starts and stops pair per observation,
subject and behaviour in time order.

In an XLSX workbook each worksheet is read on its own (BORIS writes one sheet per observation).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from pipeline.codings.checks import Mark, pair_states
from pipeline.codings.mapping import BorisOptions, coder_of, normalize_code, video_of
from pipeline.codings.raw import CodingError, RawEvent, RawSession, Reading, where
from pipeline.codings.tables import Row, is_blank, parse_seconds, read_rows

__all__ = ["read_boris", "read_boris_project", "read_boris_table", "PROJECT_SUFFIX"]

PROJECT_SUFFIX = ".boris"
DurationOf = Callable[[str], "float | None"]
_NA = ("", "na", "nan", "not found", "none")


def _no_duration(_media: str) -> None:
    return None


@dataclass
class _Timeline:
    """Player 1's files of one observation, in play order, with what is known of their durations."""

    obs: str
    files: list[str]
    lengths: list[float | None]
    source_file: str

    def base_of(self, k: int, duration_of: DurationOf, t: float) -> float:
        total = 0.0
        for i in range(k):
            d = self.lengths[i] if self.lengths[i] is not None else duration_of(self.files[i])
            if d is None:
                raise CodingError(f"{where(self.source_file, f'observation {self.obs}', t)}: the duration of "
                                  f"{self.files[i]!r} (played before {self.files[k]!r}) is unknown: the file states "
                                  f"none and it matches no manifest video")
            total += d
        return total

    def locate(self, t: float, duration_of: DurationOf) -> tuple[str, float]:
        """(file playing at media-timeline time ``t``, time of that file's start on the timeline)."""
        total = 0.0
        for i, f in enumerate(self.files):
            if i == len(self.files) - 1:
                return f, total
            d = self.lengths[i] if self.lengths[i] is not None else duration_of(f)
            if d is None:
                raise CodingError(f"{where(self.source_file, f'observation {self.obs}', t)}: the duration of "
                                  f"{f!r} is unknown (needed to place events in the files after it): the file states "
                                  f"none and it matches no manifest video")
            if t < total + d:
                return f, total
            total += d
        raise AssertionError("no files")


def _coder(options: BorisOptions, obs: str, subject: str) -> str | None:
    if options.coder == "subject":
        return coder_of(subject, options.pattern)
    if options.coder == "observation":
        return coder_of(obs, options.pattern)
    return None


def _to_media(events: Sequence[RawEvent], timeline: _Timeline, duration_of: DurationOf) -> list[RawEvent]:
    out = []
    for e in events:
        f, base = timeline.locate(e.start_s, duration_of)
        out.append(replace(e, media=f, start_s=e.start_s - base,
                           stop_s=None if e.stop_s is None else e.stop_s - base))
    return out


def _float(v: object) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


# --------------------------------------------------------------------------------------------------
# Project file
# --------------------------------------------------------------------------------------------------
def read_boris_project(path: str | Path, options: BorisOptions, duration_of: DurationOf = _no_duration) -> Reading:
    path = Path(path)
    src = str(path)
    try:
        doc = json.loads(path.read_bytes().decode("utf-8-sig"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CodingError(f"{src}: not a BORIS project (JSON: {str(exc).splitlines()[0]})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("observations"), dict):
        raise CodingError(f"{src}: not a BORIS project (no 'observations')")
    kinds: dict[str, str] = {}
    for b in (doc.get("behaviors_conf") or {}).values():
        if isinstance(b, dict) and "code" in b:
            kinds[str(b["code"])] = "state" if "state" in str(b.get("type", "")).lower() else "point"
    out = Reading("boris", src)
    for obs_id, obs in doc["observations"].items():
        obs_id = str(obs_id)
        if not isinstance(obs, dict):
            raise CodingError(f"{src}: observation {obs_id}: not an observation record")
        unit = f"observation {obs_id}"
        players = obs.get("file") or {}
        files = [str(f) for f in (players.get("1") or [])] if isinstance(players, dict) else []
        if not files and isinstance(players, dict):
            files = next(([str(f) for f in v] for _, v in sorted(players.items()) if v), [])
        if not files:  # live observation (or pictures): matched by its id
            files = [video_of(obs_id, options.pattern)]
        info = obs.get("media_info") or {}
        lengths_map, fps_map = info.get("length") or {}, info.get("fps") or {}
        lengths = [_float(lengths_map.get(f)) for f in files]
        offset = _float(obs.get("time offset", 0)) or 0.0
        timeline = _Timeline(obs_id, files, lengths, src)
        marks: list[Mark] = []
        coders: set[str | None] = set()
        if options.coder == "observation" or options.coder == "none":
            coders.add(_coder(options, obs_id, ""))
        for i, ev in enumerate(obs.get("events") or []):
            ref = f"{unit} event {i + 1}"
            if not isinstance(ev, list) or len(ev) < 3:
                raise CodingError(f"{src}: {ref}: an event must be [time, subject, code, modifier, comment, ...]")
            t = _float(ev[0])
            if t is None:
                raise CodingError(f"{src}: {ref}: time {ev[0]!r} is not a number")
            subject, code = str(ev[1] or ""), str(ev[2])
            if code not in kinds:
                raise CodingError(f"{where(src, ref, t)}: behaviour {code!r} is not in the project's ethogram "
                                  f"(behaviors_conf)")
            mods = tuple(m for m in str(ev[3] if len(ev) > 3 and ev[3] is not None else "").split("|") if m)
            coder = _coder(options, obs_id, subject)
            coders.add(coder)
            status = "TOGGLE" if kinds[code] == "state" else "POINT"
            marks.append(Mark(t - offset, code, status, (obs_id, subject), files[0], coder, mods, src, ref, unit))
        out.events.extend(_to_media(pair_states(marks), timeline, duration_of))
        for f, length in zip(files, lengths):
            for coder in sorted(coders, key=str):
                out.sessions.append(RawSession(f, coder, src, unit, _float(fps_map.get(f)), offset, length))
    return out


# --------------------------------------------------------------------------------------------------
# Exported tables
# --------------------------------------------------------------------------------------------------
def _norm(c: str) -> str:
    return normalize_code(c)


def _player1(text: str) -> list[str]:
    """``player #1:a.mp4;b.mp4|player #2:c.mp4`` -> ``[a.mp4, b.mp4]``; a plain ``a.mp4;b.mp4`` -> both."""
    if not text or text.strip().lower() in _NA:
        return []
    parts = text.split("|")
    first = parts[0]
    for p in parts:
        if re.match(r"\s*player\s*#?\s*1\s*:", p, re.I):
            first = p
            break
    first = re.sub(r"^\s*player\s*#?\s*\d+\s*:", "", first, flags=re.I)
    return [f.strip() for f in first.split(";") if f.strip()]


def _numbers(text: str) -> list[float | None]:
    if not text:
        return []
    first = text.split("|")[0]
    return [_float(x.strip()) for x in first.split(";")]


@dataclass
class _Block:
    """Facts of an older tabular export's header block."""

    obs: str = ""
    offset: float = 0.0
    files: tuple[str, ...] = ()


def _header_block(rows: Sequence[Row]) -> _Block:
    b = _Block()
    files = []
    for r in rows:
        key = _norm(r.get(0))
        val = next((c for c in r.cells[1:] if c), "")
        if key == "observation id":
            b.obs = val
        elif key in ("time offset (s)", "time offset"):
            b.offset = _float(val.replace(",", ".")) or 0.0
        elif re.fullmatch(r"player #?1", key) and val:
            files.extend(f.strip() for f in val.split(";") if f.strip())
    b.files = tuple(files)
    return b


def _split_sheets(rows: Sequence[Row]) -> list[list[Row]]:
    groups: dict[str, list[Row]] = {}
    for r in rows:
        groups.setdefault(r.sheet, []).append(r)
    return list(groups.values())


def _find_header(rows: Sequence[Row], need: set[str]) -> int | None:
    return next((i for i, r in enumerate(rows) if need <= {_norm(c) for c in r.cells}), None)


def read_boris_table(path: str | Path, options: BorisOptions, duration_of: DurationOf = _no_duration) -> Reading:
    """An aggregated or tabular events export (told apart by their header rows)."""
    path = Path(path)
    src = str(path)
    out = Reading("boris", src)
    found = False
    for rows in _split_sheets(read_rows(path)):
        agg = _find_header(rows, {"behavior", "start (s)", "stop (s)"})
        tab = _find_header(rows, {"behavior", "time"})
        if agg is None and tab is None:
            continue
        found = True
        if agg is not None and (tab is None or agg <= tab):
            _read_table_part(rows, agg, "aggregated", src, path, options, duration_of, out)
        else:
            _read_table_part(rows, tab, "tabular", src, path, options, duration_of, out)
    if not found:
        raise CodingError(f"{src}: not a BORIS export: no header row with 'Behavior' and 'Start (s)'/'Stop (s)' "
                          f"(aggregated events) or 'Time' (tabular events)")
    return out


def _read_table_part(rows: Sequence[Row], head: int, form: str, src: str, path: Path, options: BorisOptions,
                     duration_of: DurationOf, out: Reading) -> None:
    block = _header_block(rows[:head])
    header = [_norm(c) for c in rows[head].cells]
    idx = {name: i for i, name in reversed(list(enumerate(header)))}

    def col(*names: str) -> int | None:
        return next((idx[n] for n in names if n in idx), None)

    c_obs, c_subj, c_code = col("observation id"), col("subject"), col("behavior")
    c_type = col("behavior type", "status")
    c_start, c_stop, c_time = col("start (s)"), col("stop (s)"), col("time")
    c_mods = col("modifiers")
    c_modn = [i for i, n in enumerate(header) if re.fullmatch(r"modifier #?\d+", n)]
    c_file = col("media file name", "media file path")
    c_source = col("source")
    c_media = col("media file")  # older exports
    c_durs = col("media duration (s)")
    c_total = col("total length")
    c_fps = col("fps")
    c_offset = col("time offset (s)")
    if c_type is None:
        raise CodingError(f"{src}: {rows[head].ref}: missing column 'Behavior type' (STATE/POINT or START/STOP/POINT)")
    default_obs = block.obs or (rows[head].sheet if rows[head].sheet else path.stem)

    timelines: dict[str, _Timeline] = {}
    fps_of: dict[tuple[str, str], float | None] = {}
    first_seen: dict[str, list[tuple[float, str]]] = {}
    offsets: dict[str, float] = {}
    raw: list[tuple[str, str, Row, float, float | None, str, str | None, tuple[str, ...], str | None]] = []
    for r in rows[head + 1:]:
        if is_blank(r) or r.cells == rows[head].cells:
            continue
        obs = r.get(c_obs) or default_obs
        place = f"{src}: observation {obs} {r.ref}"
        code = r.get(c_code)
        if not code:
            raise CodingError(f"{place}: empty Behavior")
        btype = r.get(c_type).strip().upper()
        offset = (_float(r.get(c_offset)) if c_offset is not None else None)
        offset = block.offset if offset is None else offset
        offsets.setdefault(obs, offset)
        if form == "aggregated":
            if btype not in ("STATE", "POINT"):
                raise CodingError(f"{place}: Behavior type {r.get(c_type)!r} is not STATE or POINT")
            start = parse_seconds(r.get(c_start), what="Start (s)", place=place) - offset
            stop_text = r.get(c_stop)
            if btype == "POINT":
                stop = start
            elif stop_text.strip().lower() in _NA:
                stop = None
            else:
                stop = parse_seconds(stop_text, what="Stop (s)", place=place) - offset
        else:
            if btype not in ("START", "STOP", "POINT"):
                raise CodingError(f"{place}: Behavior type {r.get(c_type)!r} is not START, STOP or POINT")
            start = parse_seconds(r.get(c_time), what="Time", place=place) - offset
            stop = None
        files = _player1(r.get(c_source)) if c_source is not None else []
        if not files and c_media is not None:
            files = _player1(r.get(c_media))
        if not files:
            files = list(block.files)
        fname = r.get(c_file) if c_file is not None else ""
        if fname.strip().lower() in _NA:
            fname = ""
        if not files and fname:
            first_seen.setdefault(obs, [])
            if fname not in [f for _, f in first_seen[obs]]:
                first_seen[obs].append((start, fname))
        durs = _numbers(r.get(c_durs)) if c_durs is not None else []
        if not durs and c_total is not None and len(files) == 1:
            durs = [_float(r.get(c_total))]
        fpss = _numbers(r.get(c_fps)) if c_fps is not None else []
        if files and obs not in timelines:
            timelines[obs] = _Timeline(obs, files, [durs[i] if i < len(durs) else None for i in range(len(files))], src)
            for i, f in enumerate(files):
                fps_of[(obs, f)] = fpss[i] if i < len(fpss) else None
        subject = r.get(c_subj)
        mods_text = r.get(c_mods) if c_mods is not None else "|".join(r.get(i) for i in c_modn if r.get(i))
        mods = tuple(m.strip() for m in mods_text.split("|") if m.strip())
        raw.append((obs, btype, r, start, stop, subject, fname or None, mods, code))

    # observations named only by the file at each row (no Source list): files in order of first use
    for obs, seen in first_seen.items():
        if obs not in timelines:
            files = [f for _, f in sorted(seen, key=lambda x: x[0])]
            timelines[obs] = _Timeline(obs, files, [None] * len(files), src)
    for obs in {x[0] for x in raw}:
        if obs not in timelines:
            timelines[obs] = _Timeline(obs, [video_of(obs, options.pattern)], [None], src)

    events: list[RawEvent] = []
    marks: list[Mark] = []
    coders: dict[str, set[str | None]] = {}
    for obs, btype, r, start, stop, subject, fname, mods, code in raw:
        coder = _coder(options, obs, subject)
        coders.setdefault(obs, set()).add(coder)
        unit, ref = f"observation {obs}", f"observation {obs} {r.ref}"
        tl = timelines[obs]
        if form == "aggregated":
            kind = "point" if btype == "POINT" else "state"
            e = RawEvent(fname or tl.files[0], coder, code, kind, start, stop, mods, src, ref, unit)
            events.append(_place(e, fname, tl, duration_of))
        else:
            marks.append(Mark(start, code, btype, (obs, subject), fname or "", coder, mods, src, ref, unit))
    if marks:
        for e in pair_states(marks):
            obs = e.unit[len("observation "):]
            events.append(_place(e, e.media or None, timelines[obs], duration_of))
    out.events.extend(events)
    for obs, tl in timelines.items():
        cs = coders.get(obs, set())
        if options.coder == "observation" or options.coder == "none":
            cs = cs | {_coder(options, obs, "")}
        for f, length in zip(tl.files, tl.lengths):
            for coder in sorted(cs, key=str):
                out.sessions.append(RawSession(f, coder, src, f"observation {obs}", fps_of.get((obs, f)),
                                               offsets.get(obs, 0.0), length))


def _place(e: RawEvent, fname: str | None, tl: _Timeline, duration_of: DurationOf) -> RawEvent:
    """Observation-timeline event -> its file's time (by the named file, else by the time)."""
    if fname and fname in tl.files:
        base = tl.base_of(tl.files.index(fname), duration_of, e.start_s)
        f = fname
    elif fname and len(tl.files) <= 1:
        f, base = fname, 0.0
    else:
        f, base = tl.locate(e.start_s, duration_of)
    return replace(e, media=f, start_s=e.start_s - base, stop_s=None if e.stop_s is None else e.stop_s - base)


def read_boris(path: str | Path, options: BorisOptions, duration_of: DurationOf = _no_duration) -> Reading:
    """A ``.boris`` project or an exported table, by the file's suffix."""
    if Path(path).suffix.lower() == PROJECT_SUFFIX:
        return read_boris_project(path, options, duration_of)
    return read_boris_table(path, options, duration_of)
