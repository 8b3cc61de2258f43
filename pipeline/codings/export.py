"""``python -m pipeline.codings export``: the model's detections as files a coder opens, reviews and corrects.

::

    python -m pipeline.codings export --format elan  --run RUN --out DIR [--layout per-action|single-tier]
    python -m pipeline.codings export --format boris --run RUN --out DIR [--mapping ETHOGRAM]

Input: the run's read-out (``RUN/readout/segments/<video_id>.parquet``, contract ``segments``, whose
sidecars give ``fps`` and ``model_id``), the run's manifest (``RUN/manifest.csv``: the videos and their
participants) and, for each video's length, the recognition sidecar's ``video.frame_count``
(``RUN/recognize/windows/<video_id>.parquet.json``) or else the video file itself. Each segment
becomes one state event of coder ``model:<model_id>`` (:data:`~pipeline.codings.contract.CODING_EVENTS`;
``start_frame = round(start_s * fps)``, ``stop_frame = round(end_s * fps)``, which are the read-out's own
frames) with its score, and each video a session coded over its whole length. Output in ``DIR``:

- ``elan``: ``<video_id>.eaf`` per video (:mod:`pipeline.codings.elan_write`), media linked by the
  path relative to ``DIR`` (and the absolute URI), scores on a dependent tier ``<tier> score``;
- ``boris``: ``model.boris``, one observation per video (:mod:`pipeline.codings.boris_write`), scores
  in the START rows' comments.

Codes: the ethogram mapping's (``--mapping``: CSV ``code,action[,tier]`` or YAML with those keys; the
first code of each action, ``ignore`` rows skipped); without it the MA-52 names. A detected action the
mapping has no code for keeps its MA-52 name (listed on stderr). The files are written as one set
(:class:`pipeline.ownership.StagedSet`, stage ``codings-export-<format>``): a failure leaves ``DIR`` as it
was, and a rerun replaces the previous export of that format (only files it wrote and nobody changed).
Importing them (``python -m pipeline.codings import``) gives the segments back to the frame.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from model.taxonomy import MA52
from pipeline.artifacts import read_artifact, read_sidecar
from pipeline.cli import EXIT_OK, BadInput, check_output_dir, handle_errors, make_parser, report_written, setup_logging
from pipeline.codings.boris_write import Media, boris_project, boris_text
from pipeline.codings.contract import CODING_EVENTS, CODING_SESSIONS
from pipeline.codings.elan_write import LAYOUTS, eaf_document, eaf_problems, eaf_text, media_urls
from pipeline.contracts import SEGMENTS, conform
from pipeline.manifest import read_manifest
from pipeline.ownership import StagedSet
from pipeline.run_folder import RunFolder

__all__ = ["FORMATS", "STAGE", "BORIS_FILE", "read_ethogram_codes", "run_detections", "export_codings", "export_run",
           "add_arguments", "run", "main"]

log = logging.getLogger("pipeline.codings.export")

FORMATS: tuple[str, ...] = ("elan", "boris")
STAGE = "codings-export"
BORIS_FILE = "model.boris"


def read_ethogram_codes(path: str | Path | None) -> dict[str, str]:
    """``action -> code`` for export: every MA-52 action under its name, or the mapping file's codes.

    The mapping is a CSV with columns ``code,action[,tier]`` or a YAML list of such records (or a
    ``{code: action}`` dict); ``ignore`` rows are skipped, the first code of an action is its export
    code. Raises :class:`BadInput` naming the file and row for a missing column or an action that is
    not an MA-52 name.
    """
    if path is None:
        return {a: a for a in MA52.actions}
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"--mapping {path}: file not found")
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
        except yaml.YAMLError as exc:
            raise BadInput(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        if isinstance(data, dict) and "codes" in data:
            data = data["codes"]
        if isinstance(data, dict):
            data = [{"code": k, "action": v} for k, v in data.items()]
        if not isinstance(data, list):
            raise BadInput(f"{path}: expected a list of code/action records")
        rows = [(i + 1, r) for i, r in enumerate(data)]
    else:
        try:
            table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        except (ValueError, pd.errors.ParserError) as exc:
            raise BadInput(f"{path}: not a readable CSV ({exc})") from None
        table.columns = [str(c).strip().lower() for c in table.columns]
        for col in ("code", "action"):
            if col not in table.columns:
                raise BadInput(f"{path}: no column {col!r} (columns: {', '.join(table.columns)})")
        rows = [(i + 2, r) for i, r in enumerate(table.to_dict("records"))]
    names = set(MA52.actions)
    out: dict[str, str] = {}
    for line, r in rows:
        if not isinstance(r, dict) or "code" not in r or "action" not in r:
            raise BadInput(f"{path}: record {line} needs 'code' and 'action'")
        code, action = str(r["code"]).strip(), str(r["action"]).strip()
        if action.lower() == "ignore" or not code:
            continue
        if action not in names:
            raise BadInput(f"{path}: line {line}: action {action!r} is not an MA-52 name")
        out.setdefault(action, code)
    return out


def _num_frames(rf: RunFolder, vid: str, video: str, fps: float, segments: pd.DataFrame) -> int:
    meta = read_sidecar(rf.windows_file(vid)) or {}
    count = (meta.get("video") or {}).get("frame_count")
    if isinstance(count, int) and count > 0:
        return count
    if Path(video).is_file():
        from pipeline.video import VideoError, probe
        try:
            return probe(video).frame_count
        except VideoError:
            pass
    n = int(math.ceil(float(segments["end_s"].max()) * fps - 1e-6)) if len(segments) else 0
    log.warning("%s: video length unknown (no frame_count in the recognition sidecar, video not readable); "
                "using the last detection's end, %d frames", vid, n)
    return n


def run_detections(run_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, dict[str, str], str]:
    """The run's segments as codings: ``(events, sessions, scores, videos, model_id)``.

    ``events`` and ``sessions`` satisfy CODING_EVENTS / CODING_SESSIONS (coder ``model:<model_id>``,
    format ``model``); ``scores`` is indexed like ``events``; ``videos`` maps video id -> video path.
    Videos of the manifest without a segments file (failed in the read-out) are left out (warned).
    """
    rf = RunFolder(run_dir)
    if not rf.manifest.is_file():
        raise BadInput(f"--run {rf.root}: no manifest.csv (not a run folder)")
    manifest = read_manifest(rf.manifest, check_videos=False)
    ev_parts, sess_rows, models = [], [], {}
    videos: dict[str, str] = {}
    for row in manifest.videos.itertuples(index=False):
        vid = str(row.video_id)
        path = rf.segments / f"{vid}.parquet"
        if not path.is_file():
            log.warning("%s: no read-out segments (%s); not exported", vid, path)
            continue
        seg = read_artifact(path, SEGMENTS).to_pandas()
        meta = read_sidecar(path) or {}
        fps = meta.get("fps")
        if not isinstance(fps, (int, float)) or not fps > 0:
            raise BadInput(f"{path}: sidecar records no fps")
        models.setdefault(str(meta.get("model_id") or ""), path)
        n = _num_frames(rf, vid, str(row.video), float(fps), seg)
        videos[vid] = str(row.video)
        seg = seg.sort_values(["start_s", "action_id"]).reset_index(drop=True)
        a = np.rint(seg["start_s"].to_numpy() * fps).astype(np.int32)
        b = np.maximum(np.rint(seg["end_s"].to_numpy() * fps).astype(np.int32), a + 1)
        ev_parts.append(pd.DataFrame({
            "video_id": vid, "action": seg["action"].to_numpy(), "action_id": seg["action_id"].to_numpy(np.int16),
            "code": seg["action"].to_numpy(), "kind": "state", "start_s": a / fps, "stop_s": b / fps,
            "start_frame": a, "stop_frame": b, "modifiers": None, "source_file": str(path),
            "source_ref": [f"segment {i}" for i in range(len(seg))], "score": seg["score"].to_numpy(float)}))
        sess_rows.append({"video_id": vid, "participant_id": str(row.participant_id), "fps": float(fps),
                          "num_frames": n, "coded_start_s": 0.0, "coded_stop_s": n / fps, "format": "model",
                          "source_file": str(path)})
    if len(models) > 1:
        (m1, p1), (m2, p2) = list(models.items())[:2]
        raise BadInput(f"{p2}: model_id {m2!r} differs from {m1!r} in {p1}; export one model's read-out at a time")
    if not sess_rows:
        raise BadInput(f"--run {rf.root}: no read-out segments under {rf.segments} (run pipeline.aggregate first)")
    model_id = next(iter(models)) or "unknown"
    coder = f"model:{model_id}"
    events = pd.concat(ev_parts, ignore_index=True) if ev_parts else pd.DataFrame()
    events.insert(1, "coder", coder)
    sessions = pd.DataFrame(sess_rows)
    sessions.insert(1, "coder", coder)
    events = conform(events, CODING_EVENTS, source=f"{rf.segments} (as codings)").to_pandas()
    sessions = conform(sessions, CODING_SESSIONS, source=f"{rf.segments} (as coding sessions)").to_pandas()
    return events, sessions, events["score"], videos, model_id


def _codes_for(events: pd.DataFrame, ethogram: dict[str, str]) -> dict[str, str]:
    extra = [a for a in dict.fromkeys(events["action"]) if a not in ethogram]
    if extra:
        print(f"codings export: no code in the mapping for {', '.join(map(repr, extra))}; their MA-52 names are used",
              file=sys.stderr)
    return {**ethogram, **{a: a for a in extra}}


def export_codings(events: pd.DataFrame, sessions: pd.DataFrame, videos: dict[str, str], out: str | Path, *,
                   fmt: str, ethogram: dict[str, str], scores: pd.Series | None = None, layout: str = "per-action",
                   tier_name: str | None = None, project_name: str = "", subfolders: bool = False,
                   stage: str = STAGE) -> list[Path]:
    """Write codings (CODING_EVENTS + CODING_SESSIONS, any coders) as review files in ``out``; return them.

    One BORIS project per coder (``<coder>.boris``; :data:`BORIS_FILE` for a single model coder), or
    one EAF per session (``<video_id>.eaf``, or ``<coder>/<video_id>.eaf`` with ``subfolders`` or
    several coders). Media paths are written relative to the file's folder. ``tier_name`` (single-tier
    layout) defaults to ``model`` for a model coder and to the coder's name otherwise.
    """
    if fmt not in FORMATS:
        raise BadInput(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out = Path(out)
    coders = list(dict.fromkeys(sessions["coder"]))
    per_coder_dirs = subfolders or len(coders) > 1
    codes = _codes_for(events, ethogram)
    written: list[str] = []
    with StagedSet(out, f"{stage}-{fmt}") as st:  # one set per format: an ELAN export keeps a BORIS one
        for coder in coders:
            mine = sessions[sessions["coder"] == coder]
            if fmt == "boris":
                rel = BORIS_FILE if coder.startswith("model:") and len(coders) == 1 else f"{_safe(coder)}.boris"
                folder = (out / rel).parent
                media = {}
                for s in mine.itertuples(index=False):
                    media[str(s.video_id)] = Media(_relative(videos[str(s.video_id)], folder),
                                                   float(s.num_frames) / float(s.fps), float(s.fps))
                project = boris_project(events, sessions, media, ethogram=codes, coder=coder, scores=scores,
                                        project_name=project_name or coder,
                                        description=f"codings of {coder}, written by microaction-cohort")
                with st.writing(rel) as tmp:
                    tmp.write_text(boris_text(project), encoding="utf-8")
                written.append(rel)
                continue
            for s in mine.to_dict("records"):
                vid = str(s["video_id"])
                rel = f"{_safe(coder)}/{vid}.eaf" if per_coder_dirs else f"{vid}.eaf"
                url, relurl = media_urls(videos[vid], (out / rel).parent)
                ev = events[(events["coder"] == coder) & (events["video_id"] == vid)]
                sc = None if scores is None else scores.loc[ev.index]
                name = tier_name or ("model" if coder.startswith("model:") else coder)
                text = eaf_text(eaf_document(ev, s, media_url=url, relative_media_url=relurl, ethogram=codes,
                                             layout=layout, tier_name=name, scores=sc))
                problems = eaf_problems(text)
                if problems:  # a bug here, not bad input: stop before anything is committed
                    raise RuntimeError(f"{rel}: the written EAF breaks the schema: {problems[0]}")
                with st.writing(rel) as tmp:
                    tmp.write_text(text, encoding="utf-8")
                written.append(rel)
        st.commit()
    return [out / rel for rel in written]


def _safe(name: str) -> str:
    """A file name for a coder (``model:abc`` -> ``model_abc``; path separators and odd characters -> ``_``)."""
    keep = "".join(c if c.isalnum() or c in "-_.+@ " else "_" for c in name).strip(" .")
    return keep or "coder"


def _relative(video: str, folder: Path) -> str:
    try:
        return Path(os.path.relpath(Path(video).absolute(), folder.absolute())).as_posix()
    except ValueError:
        return Path(video).absolute().as_posix()


def export_run(run_dir: str | Path, out: str | Path, *, fmt: str, layout: str = "per-action",
               mapping: str | Path | None = None) -> list[Path]:
    """Export a run's read-out segments (module docstring); return the files written."""
    ethogram = read_ethogram_codes(mapping)
    events, sessions, scores, videos, model_id = run_detections(run_dir)
    return export_codings(events, sessions, videos, out, fmt=fmt, ethogram=ethogram, scores=scores, layout=layout,
                          project_name=f"model {model_id}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``export`` subcommand's options."""
    parser.add_argument("--format", required=True, choices=FORMATS, help="elan: one .eaf per video; "
                        "boris: one .boris project with one observation per video")
    parser.add_argument("--run", required=True, metavar="RUN", help="run folder (its readout/segments and manifest.csv)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--layout", choices=LAYOUTS, default="per-action",
                        help="ELAN: one tier per action code, or one tier 'model' whose values are the codes")
    parser.add_argument("--mapping", metavar="ETHOGRAM", help="ethogram mapping (CSV code,action[,tier] or YAML): "
                        "the lab's codes to write (default: the MA-52 names)")


def run(args: argparse.Namespace) -> int:
    """Run the ``export`` subcommand (errors are raised; the caller's :func:`handle_errors` reports them)."""
    out = check_output_dir(args.out)
    for path in export_run(args.run, out, fmt=args.format, layout=args.layout, mapping=args.mapping):
        report_written(path)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("Export a run's detections as ELAN or BORIS files for review.",
                         prog="python -m pipeline.codings.export")
    add_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging(verbose=args.verbose, quiet=args.quiet)
    with handle_errors("pipeline.codings export"):
        return run(args)
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
