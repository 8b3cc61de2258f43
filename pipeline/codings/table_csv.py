"""The plain CSV form: one row per event, ``video,coder,action,start_s,stop_s[,modifiers]``.

::

    video,coder,action,start_s,stop_s,modifiers
    P01_visit1.mp4,anna,NOD,1.20,2.85,
    P01_visit1.mp4,anna,tap,4.00,,left       <- empty stop_s: a point event
    P01_visit1.mp4,ben,NOD,1.25,2.80,

- ``video``: the media file (any folder, any case; matched by file stem) or the video id.
- ``coder``: may be empty (or the column absent) when ``--coder`` names the coder.
- ``action``: the lab's code, mapped through the ethogram (an MA-52 name maps to itself only if the
  mapping lists it).
- ``start_s``, ``stop_s``: seconds in the video (decimal point or a single decimal comma, or
  ``hh:mm:ss.sss``); empty ``stop_s``: a point.
- ``modifiers`` (optional): ``|``-separated.

Also TSV or semicolon-separated (the delimiter is guessed from the header), UTF-8 with or without
BOM, CRLF line ends, or an XLSX workbook with the same columns. Column names are matched
case-insensitively. Every row must be filled; a blank row is skipped. Each file is one coding unit.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.codings.mapping import normalize_code
from pipeline.codings.raw import CodingError, RawEvent, RawSession, Reading
from pipeline.codings.tables import is_blank, parse_seconds, read_rows

__all__ = ["read_csv_coding", "COLUMNS"]

COLUMNS = ("video", "coder", "action", "start_s", "stop_s")


def read_csv_coding(path: str | Path) -> Reading:
    path = Path(path)
    src = str(path)
    rows = [r for r in read_rows(path) if not is_blank(r)]
    if not rows:
        raise CodingError(f"{src}: empty file (expected the header {','.join(COLUMNS)})")
    header = [normalize_code(c) for c in rows[0].cells]
    col = {name: header.index(name) for name in (*COLUMNS, "modifiers") if name in header}
    missing = [c for c in ("video", "action", "start_s", "stop_s") if c not in col]
    if missing:
        raise CodingError(f"{src}: {rows[0].ref}: missing column {missing[0]!r} (columns: {','.join(COLUMNS)}"
                          f"[,modifiers]); found: {', '.join(rows[0].cells)}")
    out = Reading("csv", src)
    seen: set[tuple[str, str | None]] = set()
    for r in rows[1:]:
        place = f"{src}: {r.ref}"
        video, code = r.get(col["video"]), r.get(col["action"])
        if not video:
            raise CodingError(f"{place}: empty video")
        if not code:
            raise CodingError(f"{place}: empty action")
        coder = r.get(col.get("coder")) or None
        start_text, stop_text = r.get(col["start_s"]), r.get(col["stop_s"])
        if not start_text:
            raise CodingError(f"{place}: empty start_s")
        start = parse_seconds(start_text, what="start_s", place=place)
        stop = parse_seconds(stop_text, what="stop_s", place=place) if stop_text else None
        mods = tuple(m.strip() for m in r.get(col.get("modifiers")).split("|") if m.strip())
        kind = "state" if stop is not None else "point"
        out.events.append(RawEvent(video, coder, code, kind, start, stop if stop is not None else start, mods, src,
                                   r.ref, path.name))
        if (video, coder) not in seen:
            seen.add((video, coder))
            out.sessions.append(RawSession(video, coder, src, path.name))
    return out
