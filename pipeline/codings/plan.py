"""Which coding files a cohort run imports, and importing them as one set (the flow's codings step).

A run names its human codings one of two ways (docs/codings.md, "In the flow"):

- the manifest's ``coding`` column (:mod:`pipeline.manifest`): per video, its coding file(s), ``|``-separated.
  A file's format is the row's ``coding_format`` cell, else the run's ``codings_format``, else its extension
  (``.boris`` -> boris, ``.eaf`` -> elan); a ``.csv``/``.tsv``/``.txt``/``.xlsx`` file may be a BORIS export,
  an Observer event log or the CSV form, so it needs one of the two;
- ``codings``: a folder (or one file) in the format ``codings_format``, whose files are found as the CLI finds
  them (:func:`pipeline.codings.importer.collect_sources`).

Not both: which one would win is not obvious. Either way an ethogram mapping (``codings_mapping``) is needed.
A file named on several rows (a BORIS project holding every observation) is read once, and every file is
imported whole, its codings matched to the manifest's videos by media name exactly as by ``python -m
pipeline.codings import`` (a file named on row 3 may also code the video of row 5).

::

    plan = resolve_codings(manifest, folder=None, format=None, mapping="ethogram.yaml")  # None: no codings
    imported = read_planned(plan, manifest)      # every file read and checked; nothing written
    write_planned(imported, "RUN/codings")       # one staged set; an up-to-date set is left alone

Files of one format are imported by one :func:`~pipeline.codings.importer.import_codings` call, so a
single-format plan gives exactly the tables the CLI gives for the same files. Several formats are
imported format by format and joined: events concatenated (in format order), sessions in manifest
order then by coder, a video coded by one coder in two formats refused (as a video coded twice),
``qc`` rows kept except ``uncoded_video``, which is recomputed over the joined sessions.

Every problem is one :class:`~pipeline.cli.BadInput` line beginning with the parameter it concerns
(``manifest: ... row 3 (line 4): coding 'c/a.eaf' not found``, ``codings_mapping: ...``), so the
flow can prefix ``params.`` and refuse the run before any work (exit 2 from the direct run).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.artifacts import is_up_to_date, sha256_files
from pipeline.cli import BadInput
from pipeline.codings import checks
from pipeline.codings.contract import CODING_EVENTS
from pipeline.codings.importer import FORMATS, QC_COLUMNS, ImportResult, collect_sources, import_codings, write_codings
from pipeline.codings.mapping import EthogramMapping, read_mapping
from pipeline.codings.raw import CodingError
from pipeline.manifest import Manifest

__all__ = ["EXTENSION_FORMATS", "CodingPlan", "PlannedImport", "resolve_codings", "read_planned", "write_planned",
           "join_results"]

EXTENSION_FORMATS = {".boris": "boris", ".eaf": "elan"}  # the only suffixes that name one format


@dataclass(frozen=True)
class CodingPlan:
    """What to import: ``sources`` = ``((format, (file, ...)), ...)`` in order of first mention.

    ``origin`` is the parameter that named the files (``manifest`` or ``codings``), the prefix of
    reading errors.
    """

    sources: tuple[tuple[str, tuple[Path, ...]], ...]
    mapping: Path
    origin: str
    coder: str | None = None
    allow_unmapped: bool = False
    close_open_states: bool = False
    fps: float | None = None

    @property
    def files(self) -> list[Path]:
        return [f for _, files in self.sources for f in files]

    def describe(self) -> str:
        return "; ".join(f"{fmt}: {len(files)} file(s)" for fmt, files in self.sources)


@dataclass
class PlannedImport:
    """A plan read (:func:`read_planned`): the joined tables and what the written set records."""

    plan: CodingPlan
    result: ImportResult
    config: dict = field(default_factory=dict)
    input_hash: str = ""


def _where(manifest: Manifest, row: int) -> str:
    csv = manifest.path.suffix.lower() not in (".parquet", ".pq")
    return f"{manifest.path} row {row}" + (f" (line {row + 1})" if csv else "")


def _format_of(path: Path, cell: str, default: str | None, place: str) -> str:
    if cell:
        if cell not in FORMATS:
            raise BadInput(f"manifest: {place}: coding_format {cell!r} is not one of {', '.join(FORMATS)}")
        return cell
    if default is not None:
        return default
    fmt = EXTENSION_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise BadInput(f"manifest: {place}: the format of coding {path.name!r} cannot be told from its extension "
                       f"(a {path.suffix or 'suffix-less'} file may be a BORIS export, an Observer log or the CSV form); "
                       f"give it in a coding_format column or as codings_format")
    return fmt


def resolve_codings(manifest: Manifest, *, folder: str | Path | None = None, format: str | None = None,
                    mapping: str | Path | None = None, coder: str | None = None, allow_unmapped: bool = False,
                    close_open_states: bool = False, fps: float | None = None) -> CodingPlan | None:
    """The run's :class:`CodingPlan` from the manifest's ``coding`` column or ``folder`` (module
    docstring); None when neither names a coding. Checks that every file exists; reads nothing.
    ``fps``: the frame rate of coded videos that cannot be opened (``codings_fps``; None: such a video
    is an error)."""
    if fps is not None and not fps > 0:
        raise BadInput(f"codings_fps: must be a positive number, got {fps}")
    if format is not None and format not in FORMATS:
        raise BadInput(f"codings_format: {format!r} is not one of {', '.join(FORMATS)}")
    rows = manifest.videos
    named = [r for r in rows.itertuples(index=False) if r.coding]
    if named and folder is not None:
        raise BadInput(f"codings: the manifest {manifest.path} names coding files (column 'coding', "
                       f"{len(named)} row(s)) and codings is given too; use one of the two")
    if folder is None and not named:
        given = [n for n, v in (("codings_mapping", mapping), ("codings_format", format), ("codings_coder", coder))
                 if v is not None]
        if given:
            raise BadInput(f"{given[0]}: given, but no codings are: set codings (a folder of coding files) or a "
                           f"'coding' column in the manifest {manifest.path}")
        return None
    if mapping is None:
        raise BadInput("codings_mapping: codings need an ethogram mapping (CSV code,action[,tier] or YAML; "
                       "docs/codings.md, 'The ethogram mapping')")
    if not Path(mapping).is_file():
        raise BadInput(f"codings_mapping: mapping file not found: {mapping}")
    by_format: dict[str, list[Path]] = {}
    if folder is not None:
        if format is None:
            raise BadInput(f"codings_format: needed with codings {folder} (one of {', '.join(FORMATS)})")
        try:
            files = collect_sources([folder], format)
        except BadInput as exc:
            raise BadInput(f"codings: {exc}") from None
        by_format[format] = [Path(f).absolute() for f in files]
        origin = "codings"
    else:
        seen: dict[Path, tuple[str, str]] = {}
        for r in named:
            place = _where(manifest, int(r.row))
            for f in map(Path, r.coding):
                if not f.is_file():
                    raise BadInput(f"manifest: {place}: coding {f.name!r} not found ({f})")
                fmt = _format_of(f, r.coding_format, format, place)
                if f in seen:
                    if seen[f][0] != fmt:
                        raise BadInput(f"manifest: {place}: coding {f.name!r} is given as {fmt} here and as "
                                       f"{seen[f][0]} at {seen[f][1]}")
                    continue
                seen[f] = (fmt, place)
                by_format.setdefault(fmt, []).append(f)
        origin = "manifest"
    return CodingPlan(sources=tuple((k, tuple(v)) for k, v in by_format.items()), mapping=Path(mapping).absolute(),
                      origin=origin, coder=coder, allow_unmapped=allow_unmapped, close_open_states=close_open_states,
                      fps=fps)


def read_planned(plan: CodingPlan, manifest: Manifest) -> PlannedImport:
    """Read and check every planned file (nothing written); raises BadInput prefixed with the parameter."""
    try:
        emap: EthogramMapping = read_mapping(plan.mapping)
    except BadInput as exc:
        raise BadInput(f"codings_mapping: {' '.join(str(exc).split())}") from None
    results = []
    try:
        for fmt, files in plan.sources:
            results.append(import_codings(list(files), format=fmt, mapping=emap, manifest=manifest, out=".",
                                          coder=plan.coder, allow_unmapped=plan.allow_unmapped, fps=plan.fps,
                                          close_open_states=plan.close_open_states, write=False))
        result = results[0] if len(results) == 1 else join_results(results, manifest)
    except BadInput as exc:
        raise BadInput(f"{plan.origin}: {' '.join(str(exc).split())}") from None
    config = {"formats": {fmt: [str(f) for f in files] for fmt, files in plan.sources}, "mapping": str(plan.mapping),
              "mapping_options": emap.describe_options(), "coder": plan.coder, "allow_unmapped": plan.allow_unmapped,
              "close_open_states": plan.close_open_states, "origin": plan.origin}
    if plan.fps is not None:  # recorded only when given, so that earlier runs' imports stay up to date
        config["fps"] = plan.fps
    # what the set is made from: the coding files, the mapping and the manifest (matching, participants)
    input_hash = sha256_files([*plan.files, plan.mapping, manifest.path])
    return PlannedImport(plan, result, config, input_hash)


def join_results(results: Sequence[ImportResult], manifest: Manifest) -> ImportResult:
    """One result from imports of different formats into one manifest (module docstring)."""
    sessions = pd.concat([r.sessions for r in results], ignore_index=True)
    dup = sessions[sessions.duplicated(["video_id", "coder"], keep=False)]
    if len(dup):
        first = dup.iloc[0]
        files = list(dup.loc[(dup["video_id"] == first["video_id"]) & (dup["coder"] == first["coder"]), "source_file"])
        raise CodingError(f"video {first['video_id']!r} is coded twice by coder {first['coder']!r}: {files[0]} "
                                 f"and {files[1]} (two formats); give each coding its own coder name or import one of them")
    order = {v: i for i, v in enumerate(manifest.videos["video_id"])}
    sessions = (sessions.assign(_o=sessions["video_id"].map(order)).sort_values(["_o", "coder"], kind="stable")
                .drop(columns="_o").reset_index(drop=True))
    events = pd.concat([r.events for r in results], ignore_index=True)
    qc = pd.concat([r.qc[r.qc["kind"] != "uncoded_video"] for r in results], ignore_index=True)
    coded = set(sessions["video_id"])
    uncoded = [checks.qc_row("uncoded_video", video_id=v, count=0, detail="no coding names this video")
               for v in manifest.videos["video_id"] if v not in coded]
    qc = pd.concat([qc, pd.DataFrame(uncoded, columns=list(QC_COLUMNS))], ignore_index=True).astype({"count": np.int64})
    ignored: Counter = Counter()
    for r in results:
        ignored.update(r.ignored)
    return ImportResult(results[0].out, events, sessions, qc, [f for r in results for f in r.sources], dict(ignored))


def write_planned(imported: PlannedImport, out: str | Path) -> list[Path]:
    """Write the set into ``out`` (``RUN/codings``); [] when ``out`` already holds this set (same files,
    mapping, manifest and options, recorded in ``events.parquet``'s sidecar)."""
    out = Path(out)
    if is_up_to_date(out / "events.parquet", input_hash=imported.input_hash, config=imported.config,
                     contract=CODING_EVENTS) and (out / "sessions.parquet").is_file():
        return []
    imported.result.out = out
    imported.result.written = write_codings(imported.result, out, config=imported.config,
                                            input_hash=imported.input_hash)
    return imported.result.written
