"""Import human codings into ``RUN/codings`` (the contract of :mod:`pipeline.codings.contract`).

::

    result = import_codings(["codings/"], format="boris", mapping="ethogram.yaml",
                            manifest="manifest.csv", out="RUN/codings")

Steps (each problem is a one-line :class:`~pipeline.codings.raw.CodingError` / ``BadInput``,
exit 2, and nothing is written):

1. read the ethogram mapping (:mod:`~pipeline.codings.mapping`) and the manifest;
2. read every source file with the format's reader (a folder: its files with the format's
   suffixes, recursively, in sorted order) into raw events and sessions in media time;
3. name the coder (``--coder`` overrides what the source says; a source that names none needs it);
4. map codes to MA-52 actions: ``ignore`` drops (counted in the summary), unmapped codes are
   refused, listed with their counts, unless ``allow_unmapped`` (then dropped, ``qc`` kind
   ``unmapped_code``);
5. match media to manifest videos (:mod:`~pipeline.codings.matching`); unmatched codings go to
   ``qc`` (``unmatched_coding``), videos nobody coded too (``uncoded_video``);
6. read each coded video's frame rate and frame count (:func:`pipeline.video.probe`; ``fps`` only
   for a video that cannot be opened: its duration is then the tool's media length, else the end of
   its last event); the video's frame rate wins over the tool's (``fps_mismatch``); media offsets
   the readers removed are reported (``media_offset``);
7. checks (:mod:`~pipeline.codings.checks`): negative/reversed intervals, open states, clipping at
   the video's end, merging overlaps, a video coded twice by one coder;
8. write ``events.parquet``, ``sessions.parquet``, ``frames/<coder>/<video_id>.parquet``,
   ``detections/<coder>.csv``, ``qc.parquet`` and ``qc.csv`` as one staged set
   (:class:`pipeline.ownership.StagedSet`, stage ``codings``): an earlier import's files in the folder
   are replaced (only files it recorded and that are unchanged); a file of the user's under one of
   these names stops the import.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from model.taxonomy import MA52
from pipeline.artifacts import sha256_files, sidecar_path, write_artifact
from pipeline.cli import BadInput
from pipeline.codings import boris, elan, observer, table_csv
from pipeline.codings import checks
from pipeline.codings.checks import Event, qc_row
from pipeline.codings.contract import (CODING_EVENTS, CODING_SESSIONS, FRAMES_SCHEMA, detections_table, frame_span,
                                       frames_path, session_frames)
from pipeline.codings.mapping import EthogramMapping, read_mapping
from pipeline.codings.matching import VideoMatcher, media_key
from pipeline.codings.raw import CodingError, RawEvent, RawSession, Reading, where
from pipeline.manifest import Manifest, read_manifest
from pipeline.ownership import StagedSet
from pipeline.video import VideoError, probe

__all__ = ["FORMATS", "SUFFIXES", "STAGE", "QC_COLUMNS", "ImportResult", "collect_sources", "read_sources",
           "import_codings", "write_codings"]

log = logging.getLogger("pipeline.codings")

STAGE = "codings"
FORMATS = ("boris", "elan", "observer", "csv")
SUFFIXES = {
    "boris": (".boris", ".tsv", ".csv", ".txt", ".xlsx"),
    "elan": (".eaf",),
    "observer": (".csv", ".tsv", ".txt", ".xlsx"),
    "csv": (".csv", ".tsv", ".txt", ".xlsx"),
}
QC_COLUMNS = ("kind", "source_file", "source_ref", "video_id", "coder", "detail", "count")
FPS_TOLERANCE = 0.01  # BORIS writes frame rates with 3 decimals


@dataclass
class ImportResult:
    """What an import produced (``written``: the files, empty when ``write=False``)."""

    out: Path
    events: pd.DataFrame
    sessions: pd.DataFrame
    qc: pd.DataFrame
    sources: list[Path]
    ignored: dict[str, int] = field(default_factory=dict)
    written: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        n_v = self.sessions["video_id"].nunique() if len(self.sessions) else 0
        coders = sorted(self.sessions["coder"].unique()) if len(self.sessions) else []
        lines = [f"codings: {len(self.events)} event(s), {len(self.sessions)} session(s) of {n_v} video(s) by "
                 f"{len(coders)} coder(s) ({', '.join(coders) or 'none'}) from {len(self.sources)} file(s)"]
        for kind, rows in self.qc.groupby("kind", sort=True):
            lines.append(f"  qc {kind}: {len(rows)} row(s), count {int(rows['count'].sum())}")
        if self.ignored:
            lines.append("  ignored codes (mapped to 'ignore'): " +
                         ", ".join(f"{c!r} x{n}" for c, n in sorted(self.ignored.items())))
        return "\n".join(lines)


def collect_sources(paths: Sequence[str | Path], fmt: str) -> list[Path]:
    """Files to read: each file as given, each folder's files with the format's suffixes (recursive, sorted)."""
    if fmt not in FORMATS:
        raise BadInput(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUFFIXES[fmt]
                           and not any(part.startswith(".") for part in f.relative_to(p).parts))
            if not found:
                raise BadInput(f"{p}: no {fmt} coding files in this folder (looked for {', '.join(SUFFIXES[fmt])})")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise BadInput(f"coding file not found: {p}")
    if not out:
        raise BadInput("no coding files given")
    return list(dict.fromkeys(out))


class _Videos:
    """The manifest's videos: matching, and frame rate / frame count of a video (probed once)."""

    def __init__(self, manifest: Manifest, fps: float | None) -> None:
        self.manifest = manifest
        self.rows = manifest.videos.set_index("video_id")
        self.matcher = VideoMatcher(manifest.videos["video_id"])
        self.fps = fps
        self._info: dict[str, tuple[float, int] | VideoError] = {}

    def info(self, vid: str) -> tuple[float, int] | VideoError:
        if vid not in self._info:
            try:
                i = probe(self.rows.loc[vid, "video"])
                self._info[vid] = (float(i.fps), int(i.frame_count))
            except VideoError as exc:
                self._info[vid] = exc
        return self._info[vid]

    def duration_of(self, media: str) -> float | None:
        vid = self.matcher.match(media)
        if vid is None:
            return None
        i = self.info(vid)
        return None if isinstance(i, VideoError) else i[1] / i[0]


def read_sources(files: Sequence[Path], fmt: str, mapping: EthogramMapping, videos: _Videos) -> list[Reading]:
    readings = []
    for f in files:
        if fmt == "boris":
            readings.append(boris.read_boris(f, mapping.boris, videos.duration_of))
        elif fmt == "elan":
            readings.append(elan.read_elan(f, mapping.elan))
        elif fmt == "observer":
            readings.append(observer.read_observer(f, mapping.observer))
        else:
            readings.append(table_csv.read_csv_coding(f))
    return readings


def _check_coder_name(name: str, place: str) -> str:
    name = name.strip()
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise CodingError(f"{place}: coder name {name!r} cannot name a folder (frames/<coder>/); rename the coder")
    return name


def _coder(e: RawEvent | RawSession, coder: str | None, fmt: str, place: str) -> str | None:
    if coder is not None:
        return coder
    if e.coder is None:
        return None
    return _check_coder_name(e.coder, place)


def import_codings(
    sources: Sequence[str | Path], *, format: str, mapping: str | Path | EthogramMapping, manifest: str | Path | Manifest,
    out: str | Path, coder: str | None = None, fps: float | None = None, allow_unmapped: bool = False,
    close_open_states: bool = False, write: bool = True,
) -> ImportResult:
    """Import coding files into ``out`` (``RUN/codings``); see the module docstring. Raises BadInput."""
    fmt = format
    files = collect_sources(sources, fmt)
    emap = mapping if isinstance(mapping, EthogramMapping) else read_mapping(mapping)
    man = manifest if isinstance(manifest, Manifest) else read_manifest(manifest, check_videos=False)
    if fps is not None and not (fps > 0 and math.isfinite(fps)):
        raise BadInput(f"--fps must be a positive number, got {fps}")
    if coder is not None:
        coder = _check_coder_name(coder, "--coder")
    videos = _Videos(man, fps)
    readings = read_sources(files, fmt, emap, videos)

    qc: list[dict] = []
    nameless: list[dict] = []
    ignored: Counter = Counter()
    unmapped: Counter = Counter()
    unmapped_first: dict[str, str] = {}
    unmatched: Counter = Counter()
    events: list[Event] = []
    sessions: dict[tuple[str, str], RawSession] = {}
    units: dict[tuple[str, str], set[tuple[str, str]]] = {}

    def add_session(vid: str, who: str, s: RawSession) -> None:
        units.setdefault((vid, who), set()).add((s.source_file, s.unit))
        sessions.setdefault((vid, who), s)

    for rd in readings:
        for s in rd.sessions:
            who = _coder(s, coder, fmt, where(s.source_file, s.unit))
            vid = videos.matcher.match(s.media, place=s.source_file)
            if vid is None:
                unmatched[(s.source_file, s.unit, s.media, who)] += 0
                continue
            if who is None:  # e.g. an ELAN file without annotations: nobody is named
                nameless.append(qc_row("unmatched_coding", source_file=s.source_file, source_ref=s.unit, video_id=vid,
                                       detail="the coding names no coder and holds no event (give --coder NAME to "
                                              "import it as a video coded without micro-actions)", count=0))
                continue
            add_session(vid, who, s)
        for e in rd.events:
            place = where(e.source_file, e.source_ref, e.start_s)
            who = _coder(e, coder, fmt, place)
            if who is None:
                raise CodingError(f"{place}: the source names no coder; give --coder NAME, or set "
                                  f"'{fmt}: {{coder: ...}}' in the mapping")
            row = emap.lookup(e.code, e.tier)
            if row is None:
                key = e.code.strip()
                unmapped[(e.source_file, key)] += 1
                unmapped_first.setdefault(key, place)
                continue
            if row.action is None:
                ignored[e.code.strip()] += 1
                continue
            vid = videos.matcher.match(e.media, place=e.source_file)
            if vid is None:
                unmatched[(e.source_file, e.unit, e.media, who)] += 1
                continue
            if (vid, who) not in sessions:
                add_session(vid, who, RawSession(e.media, who, e.source_file, e.unit))
            else:
                units.setdefault((vid, who), set()).add((e.source_file, e.unit))
            mods = e.modifiers if emap.modifiers == "keep" else ()
            events.append(Event(vid, who, row.action, e.code, e.kind, e.start_s, e.stop_s, tuple(mods), e.source_file,
                                e.source_ref, e.unit))

    if unmapped:
        totals: Counter = Counter()
        for (_src, code), n in unmapped.items():
            totals[code] += n
        if not allow_unmapped:
            listed = ", ".join(f"{c!r} ({n}x, first at {unmapped_first[c]})" for c, n in totals.most_common(5))
            more = f" and {len(totals) - 5} more" if len(totals) > 5 else ""
            raise CodingError(f"{len(totals)} code(s) not in the mapping {emap.path}: {listed}{more}; map them to an "
                              f"MA-52 action or 'ignore', or pass --allow-unmapped to drop them")
        for (src, code), n in sorted(unmapped.items()):
            qc.append(qc_row("unmapped_code", source_file=src, count=n,
                             detail=f"code {code!r} is not in the mapping; its events were dropped"))
    for (src, unit, media, who), n in sorted(unmatched.items(), key=lambda x: tuple(map(str, x[0]))):
        qc.append(qc_row("unmatched_coding", source_file=src, source_ref=unit, coder=who, count=n,
                         detail=f"media {media!r} (key {media_key(media)!r}) matches no manifest video; "
                                f"{n} event(s) not imported"))

    qc += nameless
    checks.check_coded_once(units)
    checks.check_intervals(events)

    # the coded videos' frame rates and lengths
    facts: dict[str, tuple[float, int]] = {}
    for vid in sorted({v for v, _ in sessions}):
        info = videos.info(vid)
        if isinstance(info, VideoError):
            if fps is None:
                raise BadInput(f"{info}; pass --fps N (in the flow: codings_fps) to import codings of a video that "
                               "cannot be opened")
            known = [s.media_length_s for (v, _), s in sessions.items() if v == vid and s.media_length_s]
            ends = [e.stop_s if e.stop_s is not None else e.start_s for e in events if e.video_id == vid]
            dur = max(known) if known else (max(ends) if ends else 0.0)
            info = (float(fps), int(math.ceil(dur * fps - 1e-9)) + (0 if known else 1))
            log.warning("%s: cannot open the video (%s); using --fps %g and %d frames", vid, info, fps, info[1])
        facts[vid] = info
    durations = {vid: n / f for vid, (f, n) in facts.items()}

    for (vid, who), s in sorted(sessions.items()):
        vf = facts[vid][0]
        if s.tool_fps is not None and abs(s.tool_fps - vf) > FPS_TOLERANCE:
            qc.append(qc_row("fps_mismatch", source_file=s.source_file, source_ref=s.unit, video_id=vid, coder=who,
                             detail=f"the coding tool recorded {s.tool_fps:.3f} fps, the video has {vf:.3f} fps; the "
                                    f"video's frame rate is used"))
        if s.offset_s:
            qc.append(qc_row("media_offset", source_file=s.source_file, source_ref=s.unit, video_id=vid, coder=who,
                             detail=f"media offset of {s.offset_s:.3f} s removed from the coding's times"))

    events, q = checks.close_open_states(events, durations, close=close_open_states)
    qc += q
    events, q = checks.clip_to_duration(events, durations)
    qc += q
    events, q = checks.merge_overlaps(events)
    qc += q

    order = {v: i for i, v in enumerate(man.videos["video_id"])}
    for vid in man.videos["video_id"]:
        if not any(v == vid for v, _ in sessions):
            qc.append(qc_row("uncoded_video", video_id=vid, count=0, detail="no coding names this video"))

    ev_df = _events_frame(events, facts)
    ses_df = _sessions_frame(sessions, facts, durations, man, fmt, order)
    qc_df = pd.DataFrame(qc, columns=list(QC_COLUMNS)).astype({"count": np.int64})
    result = ImportResult(Path(out), ev_df, ses_df, qc_df, files, dict(ignored))
    if write:
        config = {"format": fmt, "mapping": emap.path, "mapping_options": emap.describe_options(), "coder": coder,
                  "fps": fps, "allow_unmapped": allow_unmapped, "close_open_states": close_open_states,
                  "sources": [str(f) for f in files]}
        result.written = write_codings(result, out, config=config, input_hash=sha256_files(files))
    return result


def _events_frame(events: Sequence[Event], facts: dict[str, tuple[float, int]]) -> pd.DataFrame:
    rows = []
    for e in events:
        fps = facts[e.video_id][0]
        point = e.kind == "point"
        stop = e.start_s if point else e.stop_s
        a, b = frame_span(e.start_s, stop, fps, point=point)
        rows.append({"video_id": e.video_id, "coder": e.coder, "action": e.action,
                     "action_id": MA52.actions.index(e.action), "code": e.code, "kind": e.kind,
                     "start_s": float(e.start_s), "stop_s": float(stop), "start_frame": a, "stop_frame": b,
                     "modifiers": "|".join(e.modifiers) if e.modifiers else None,
                     "source_file": e.source_file, "source_ref": e.source_ref})
    cols = [f.name for f in CODING_EVENTS.schema]
    df = pd.DataFrame(rows, columns=cols)
    return df.astype({"action_id": np.int16, "start_frame": np.int32, "stop_frame": np.int32,
                      "start_s": float, "stop_s": float})


def _sessions_frame(sessions: dict, facts: dict, durations: dict, man: Manifest, fmt: str, order: dict) -> pd.DataFrame:
    pid = man.videos.set_index("video_id")["participant_id"]
    rows = [{"video_id": vid, "coder": who, "participant_id": str(pid[vid]), "fps": facts[vid][0],
             "num_frames": facts[vid][1], "coded_start_s": 0.0, "coded_stop_s": durations[vid], "format": fmt,
             "source_file": s.source_file}
            for (vid, who), s in sorted(sessions.items(), key=lambda x: (order.get(x[0][0], 0), x[0][1]))]
    df = pd.DataFrame(rows, columns=[f.name for f in CODING_SESSIONS.schema])
    return df.astype({"fps": float, "num_frames": np.int32, "coded_start_s": float, "coded_stop_s": float})


def write_codings(result: ImportResult, out: str | Path, *, config: dict, input_hash: str = "") -> list[Path]:
    """Write the import's tables as one staged set into ``out`` (see the module docstring)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out} is an existing file, not a folder")
    written: list[str] = []
    with StagedSet(out, STAGE) as st:

        def table(rel: str, data, contract) -> None:
            with st.writing(rel) as path:
                write_artifact(data, path, contract=contract, stage=STAGE, input_hash=input_hash, config=config)
            st.add_written(sidecar_path(path))
            written.append(rel)

        def text(rel: str, content: str) -> None:
            with st.writing(rel) as path:
                path.write_text(content, encoding="utf-8")
            written.append(rel)

        table("events.parquet", result.events, CODING_EVENTS)
        table("sessions.parquet", result.sessions, CODING_SESSIONS)
        for _, s in result.sessions.iterrows():
            frames = session_frames(result.events, s)
            table(frames_path(str(s["coder"]), str(s["video_id"])),
                  pa.Table.from_pandas(frames, schema=FRAMES_SCHEMA, preserve_index=False), None)
        for who in sorted(result.sessions["coder"].unique()):
            text(f"detections/{who}.csv", detections_table(result.events, result.sessions, who).to_csv(index=False))
        qc_table = pa.Table.from_pandas(result.qc, schema=_QC_SCHEMA, preserve_index=False)
        table("qc.parquet", qc_table, None)
        text("qc.csv", result.qc.to_csv(index=False))
        st.commit()
    return [out / rel for rel in written]


_QC_SCHEMA = pa.schema([pa.field("kind", pa.string(), nullable=False), pa.field("source_file", pa.string()),
                        pa.field("source_ref", pa.string()), pa.field("video_id", pa.string()),
                        pa.field("coder", pa.string()), pa.field("detail", pa.string()),
                        pa.field("count", pa.int64(), nullable=False)])
