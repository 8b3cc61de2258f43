"""Aggregation stage: windows/<video_id>.parquet + cohort manifest -> segments, detections, cohort table.

Usage::

    python -m pipeline.aggregate --windows out/windows --manifest cohort.csv --out out/ \\
        [--rule threshold|top1|per-class|multi-label|background] [--threshold 0.5] \\
        [--thresholds per_class.json] [--min-duration S] [--merge-gap S] [--gt-frames truth.parquet|truth/frames/]

Writes under ``--out``:

- ``segments/<video_id>.parquet`` (SEGMENTS contract) per video read out;
- ``detections.csv``: every segment in the MMA-52 detection format ``video_id,t_start,t_end,class,score``;
- ``cohort.parquet`` (COHORT contract): every action of the model's class list (background excluded)
  for every participant with at least one valid frame, zeros included, with the mean per-frame score
  of each action (``mean_score``) and the manifest covariates joined;
- ``bouts.parquet`` (BOUTS contract): bout count, total/mean/median duration, latency per participant x action;
- ``exclusions.parquet`` (EXCLUSIONS contract): failed videos, and participants left out of the cohort
  because all their videos failed (always written; empty when nothing failed);
- ``agreement.csv`` with ``--gt-frames``: per action, the mean absolute error of percent time against
  per-frame ground truth (:mod:`pipeline.agreement`).

The read-out rule and its parameters, the class list and the model id go into every sidecar. A video
fails (exit code 1, a row in exclusions, a line in the summary) when its windows file is missing,
stale (no sidecar), breaks the WINDOWS contract, or has no classified window. Windows from different
models or class lists in one cohort, or probabilities that do not match the class list, are bad input
(exit 2, one line, nothing written).

Windows sidecar keys read here (written by the recognition stage): ``video.fps`` (required),
``video.frame_count`` (optional; spans are checked against it), ``classes`` = ``{"names": [...],
"taxonomy_ids": [...]}`` (required; ``model.preprocessing.ClassList``), ``model.sha256``
(optional; the table's ``model_id`` is what is compared across files). These are the keys
:mod:`pipeline.recognize` writes.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from model.preprocessing import ClassList
from pipeline.agreement import percent_time_agreement, read_frame_truth
from pipeline.artifacts import (
    config_hash,
    is_up_to_date,
    read_artifact,
    read_sidecar,
    sha256_file,
    sidecar_path,
    write_artifact,
)
from pipeline.cli import (
    EXIT_OK,
    EXIT_PARTIAL,
    BadInput,
    check_output_dir,
    handle_errors,
    make_parser,
    progress,
    report_written,
    setup_logging,
)
from pipeline.contracts import BOUTS, COHORT, EXCLUSIONS, SEGMENTS, WINDOWS, ContractError
from pipeline.manifest import Manifest, read_manifest
from pipeline.ownership import StagedSet, manifest_path, update_manifest
from pipeline.readout import (
    ClassListMismatch,
    CohortTables,
    ReadoutConfig,
    ReadoutError,
    VideoReadout,
    cohort_tables,
    detections_table,
    read_out_video,
    window_arrays,
)
from pipeline.run_folder import RunFolder
from pipeline.run_lock import lock_for_output
from pipeline.settings import SettingsError, add_arguments, from_args

__all__ = ["WindowsFile", "read_windows_file", "read_cohort_windows", "AggregateResult", "aggregate",
           "checkpoint_readout", "cohort_input_hash", "readout_up_to_date", "write_outputs", "main"]

log = logging.getLogger(__name__)
STAGE = "aggregate"


@dataclass
class WindowsFile:
    """A windows artifact and the facts from its sidecar."""

    path: Path
    video_id: str
    table: object  # pyarrow.Table (WINDOWS contract)
    fps: float
    frame_count: int | None
    classes: ClassList
    model_id: str
    sha256: str


def windows_dir_of(path: str | Path) -> Path:
    """``--windows`` may name the folder of windows files or a stage output folder holding ``windows/``."""
    p = Path(path)
    if not p.is_dir():
        raise BadInput(f"--windows {p}: no such folder")
    # The recognition stage's --out holds windows/ beside its QC table (qc_recognize.parquet), which is
    # not a windows file: prefer the subfolder whenever it exists.
    if (p / "windows").is_dir():
        return p / "windows"
    return p


def read_windows_file(path: Path, video_id: str) -> WindowsFile:
    """Read one windows artifact and its sidecar facts; ReadoutError (an item failure) on any problem."""
    if not path.exists():
        raise ReadoutError(f"no windows file {path} (recognition failed or was not run)")
    meta = read_sidecar(path)
    if not meta:
        raise ReadoutError(f"{path}: no sidecar {sidecar_path(path).name} (stale or incomplete; rerun recognition)")
    try:
        table = read_artifact(path, WINDOWS)
    except ContractError as exc:
        raise ReadoutError(str(exc)) from None
    except Exception as exc:  # pyarrow raises several unrelated types for unreadable files
        raise ReadoutError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None
    ids = set(table.column("video_id").to_pylist())
    if ids and ids != {video_id}:
        raise ReadoutError(f"{path}: column 'video_id' holds {sorted(ids)[:3]}, expected {video_id!r}")
    video = meta.get("video") if isinstance(meta.get("video"), dict) else {}
    fps = video.get("fps")
    if not isinstance(fps, (int, float)) or not fps > 0:
        raise ReadoutError(f"{sidecar_path(path)}: sidecar has no valid 'video' -> 'fps' (got {fps!r})")
    frame_count = video.get("frame_count")
    if frame_count is not None and (not isinstance(frame_count, int) or frame_count < 0):
        raise ReadoutError(f"{sidecar_path(path)}: 'video' -> 'frame_count' must be an integer >= 0, got {frame_count!r}")
    try:
        classes = ClassList.from_dict(meta["classes"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ReadoutError(
            f"{sidecar_path(path)}: sidecar has no valid 'classes' ({{'names': [...], 'taxonomy_ids': [...]}}): {exc}"
        ) from None
    if table.num_rows:
        end = table.column("end_frame").to_numpy().astype(np.int64)
        end_s = table.column("end_s").to_numpy().astype(np.float64)
        bad = np.flatnonzero(np.abs(end_s - end / fps) > 0.5 / fps)
        if bad.size:
            r = int(bad[0])
            raise ReadoutError(
                f"{path}: row {r}: end_s {end_s[r]!r} does not match end_frame {int(end[r])} at {fps:g} fps"
            )
        if frame_count is not None and end.max() > frame_count:
            r = int(np.argmax(end))
            raise ReadoutError(f"{path}: row {r}: end_frame {int(end[r])} is past the video's {frame_count} frames")
    model_ids = sorted(set(table.column("model_id").to_pylist()))
    if len(model_ids) > 1:
        raise ReadoutError(f"{path}: windows from several models ({', '.join(model_ids[:3])})")
    model_meta = meta.get("model") if isinstance(meta.get("model"), dict) else {}
    model_id = model_ids[0] if model_ids else str(model_meta.get("sha256", ""))
    return WindowsFile(path, video_id, table, float(fps), frame_count, classes, model_id, sha256_file(path))


@dataclass
class AggregateResult:
    """Everything :func:`aggregate` computed (no files written yet)."""

    manifest: Manifest
    config: ReadoutConfig
    classes: ClassList | None
    model_id: str
    readouts: dict[str, VideoReadout]
    failures: dict[str, str]
    hashes: dict[str, str]
    tables: CohortTables | None
    segments: dict[str, pd.DataFrame] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    """Where each read-out setting came from ("default", "checkpoint", "user"); empty: not recorded."""


def read_cohort_windows(manifest: Manifest, windows_dir: Path, *, show_progress: bool = False
                        ) -> tuple[dict[str, WindowsFile], dict[str, str], ClassList | None, str]:
    """Every video's windows file: (files, failures, class list, model id).

    ``failures`` maps a video id to why its file could not be read (an item failure); ``classes`` is
    None when no file could be read, ``model_id`` "" when none records one.

    Raises
    ------
    BadInput
        Windows files disagree on the class list or the model (one cohort, one model).
    """
    files: dict[str, WindowsFile] = {}
    failures: dict[str, str] = {}
    vids = manifest.videos["video_id"].tolist()
    it = progress(vids, desc="read windows", unit="video") if show_progress else vids
    for vid in it:
        try:
            files[vid] = read_windows_file(windows_dir / f"{vid}.parquet", vid)
        except ReadoutError as exc:
            failures[vid] = str(exc)

    classes = model_id = None
    first: WindowsFile | None = None
    first_model: WindowsFile | None = None
    for wf in files.values():
        if first is None:
            first, classes = wf, wf.classes
        elif wf.classes != classes:
            raise BadInput(
                f"{wf.path}: class list ({len(wf.classes)} classes) differs from {first.path} "
                f"({len(classes)} classes); windows from another model cannot be pooled in one cohort"
            )
        if not wf.model_id:  # an empty table with no model recorded: nothing to compare
            continue
        if first_model is None:
            first_model, model_id = wf, wf.model_id
        elif wf.model_id != model_id:
            raise BadInput(
                f"{wf.path}: model_id {wf.model_id!r} differs from {model_id!r} in {first_model.path}; "
                f"a cohort must be read out from one model"
            )
    return files, failures, classes, model_id or ""


def checkpoint_readout(manifest: Manifest, windows_dir: Path) -> dict | None:
    """The read-out the windows' checkpoint was calibrated for, as settings fields.

    Read from the first windows sidecar that records ``model.readout`` (the recognition stage copies
    the checkpoint's ``provenance["readout"]`` there); None when none does. The fields are
    :class:`ReadoutConfig`'s, so a user's flag overrides exactly one of them.
    """
    for vid in manifest.videos["video_id"]:
        meta = read_sidecar(windows_dir / f"{vid}.parquet")
        model = meta.get("model") if isinstance(meta, dict) and isinstance(meta.get("model"), dict) else {}
        if isinstance(model.get("readout"), dict):
            try:
                return ReadoutConfig.record_fields(model["readout"])
            except (TypeError, ValueError) as exc:
                raise BadInput(f"{sidecar_path(windows_dir / f'{vid}.parquet')}: the checkpoint's read-out "
                               f"(model.readout) is not valid: {exc}") from None
    return None


def aggregate(manifest: Manifest, windows_dir: Path, config: ReadoutConfig, *, show_progress: bool = False,
              sources: dict[str, str] | None = None, keep_scores: Collection[str] = ()) -> AggregateResult:
    """Read out every video of the manifest and pool the cohort (no writing, no printing).

    ``config`` with a ``thresholds_file`` is read first (:meth:`ReadoutConfig.resolved`); ``sources``
    (field -> "default" / "checkpoint" / "user") is recorded in the sidecars beside the settings.
    The read-outs of the videos in ``keep_scores`` keep their per-frame scores (``VideoReadout.scores``;
    the agreement step needs them on the coded videos).

    Raises
    ------
    BadInput
        Windows files disagree on the class list or the model, or their probabilities do not match
        the class list, or per-class thresholds name classes the model does not have.
    """
    try:
        config = config.resolved()
    except SettingsError as exc:
        raise BadInput(str(exc)) from None
    files, failures, classes, model_id = read_cohort_windows(manifest, windows_dir, show_progress=show_progress)
    if classes is not None and config.rule == "background" and classes.background_index is None:
        raise BadInput("--rule background needs a model with a background class; the windows' class list has none")
    if classes is not None:
        try:
            config.check_classes(classes)
        except SettingsError as exc:
            raise BadInput(str(exc)) from None

    readouts: dict[str, VideoReadout] = {}
    segments: dict[str, pd.DataFrame] = {}
    keep = set(keep_scores)
    for vid, wf in files.items():
        try:
            arrays = window_arrays(wf.table, len(classes), source=str(wf.path))
        except ClassListMismatch as exc:
            raise BadInput(str(exc)) from None
        except ReadoutError as exc:
            failures[vid] = str(exc)
            continue
        r = read_out_video(arrays, video_id=vid, fps=wf.fps, classes=classes, config=config,
                           num_frames=wf.frame_count, keep_scores=vid in keep)
        readouts[vid] = r
        if r.valid_frames:
            segments[vid] = r.segments_frame(classes)

    tables = (cohort_tables(manifest, readouts, failures, classes, min_observed_s=config.min_observed_s)
              if classes is not None else None)
    if tables is not None:  # videos with no classified window are failures too
        for row in tables.exclusions.itertuples():
            if row.scope == "video" and row.video_id not in failures:
                failures[row.video_id] = f"{files[row.video_id].path}: {row.reason}"
    return AggregateResult(
        manifest=manifest, config=config, classes=classes, model_id=model_id,
        readouts=readouts, failures=failures, hashes={v: f.sha256 for v, f in files.items()},
        tables=tables, segments=segments, sources=dict(sources or {}),
    )


def _empty_tables(manifest: Manifest, failures: dict[str, str]) -> CohortTables:
    excl = cohort_tables(manifest, {}, failures, ClassList((), ())).exclusions
    empty = pd.DataFrame({c: pd.Series(dtype=object) for c in COHORT.schema.names})
    return CohortTables(cohort=empty, bouts=pd.DataFrame({c: pd.Series(dtype=object) for c in BOUTS.schema.names}),
                        exclusions=excl)


def _typed(df: pd.DataFrame, contract) -> pa.Table | pd.DataFrame:
    """An empty table gets the contract's column types (pandas would give untyped null columns)."""
    if len(df):
        return df
    cols = {f.name: pa.array([], f.type) for f in contract.schema}
    cols.update({c: pa.array([], pa.null()) for c in df.columns if c not in cols})
    return pa.table(cols)


def cohort_input_hash(manifest: Manifest, windows_hashes: dict[str, str]) -> str:
    """What the cohort tables are made from: the manifest file and every windows file read (sha256)."""
    return config_hash({"manifest": sha256_file(manifest.path), "windows": windows_hashes})


def readout_up_to_date(manifest: Manifest, windows_dir: Path, out_dir: Path, config: ReadoutConfig,
                       sources: dict[str, str] | None = None) -> bool:
    """Whether ``out_dir`` already holds this read-out of these windows (a rerun may skip it).

    True when the cohort, bouts and exclusions tables record the same input hash (manifest + every
    windows file present now), the same read-out settings and their sources, and detections.csv
    exists. A windows file that exists but could not be read counts here and not in the recorded
    hash, so such a run is never skipped.
    """
    config = config.resolved()
    hashes = {vid: sha256_file(windows_dir / f"{vid}.parquet") for vid in manifest.videos["video_id"]
              if (windows_dir / f"{vid}.parquet").exists()}
    input_hash = cohort_input_hash(manifest, hashes)
    for name, contract in (("cohort.parquet", COHORT), ("bouts.parquet", BOUTS), ("exclusions.parquet", EXCLUSIONS)):
        if not is_up_to_date(out_dir / name, input_hash=input_hash, config=config.to_dict(), contract=contract):
            return False
    meta = read_sidecar(out_dir / "cohort.parquet") or {}
    return (out_dir / "detections.csv").exists() and meta.get("readout_sources", {}) == dict(sources or {})


def _adopter(out_dir: Path):
    """Outputs of an earlier version (before output manifests) are ours when their sidecar, or for the
    CSV files the cohort table's sidecar, names this stage."""

    def ours(path: Path) -> bool:
        meta = read_sidecar(path)
        return bool(meta) and meta.get("stage") == STAGE

    def adopt(rel: str) -> bool:
        if rel in ("detections.csv", "agreement.csv"):
            return ours(out_dir / "cohort.parquet")
        data = rel[: -len(".json")] if rel.endswith(".parquet.json") else rel
        return data.endswith(".parquet") and ours(out_dir / data)

    return adopt


def _migrate(out_dir: Path) -> None:
    """First run under output manifests: record the segments an earlier version wrote (its stale-file
    rule was a glob over ``segments/*.parquet`` with our sidecar), so that this run can retire them."""
    if manifest_path(out_dir, STAGE).exists() or not (out_dir / "segments").is_dir():
        return
    adopt = _adopter(out_dir)
    names = []
    for p in sorted((out_dir / "segments").glob("*.parquet")):
        rel = p.relative_to(out_dir).as_posix()
        if not p.is_symlink() and p.is_file() and adopt(rel):
            names.append(rel)
            if sidecar_path(p).is_file():
                names.append(rel + ".json")
    if names:
        update_manifest(out_dir, STAGE, add=names)


def write_outputs(result: AggregateResult, out_dir: Path, *, agreement: pd.DataFrame | None = None) -> list[Path]:
    """Write segments/, detections.csv, cohort/bouts/exclusions (and agreement.csv) as one set; return the
    data files written (segments that were up to date are kept, not rewritten).

    The set is written into a staging folder inside ``out_dir`` and committed together
    (:class:`pipeline.ownership.StagedSet`): the previous sidecars go first, then the data files move
    in, then their sidecars, so a kill never leaves a new ``cohort.parquet`` beside the previous run's
    ``bouts``/``exclusions`` with valid sidecars; a failure while writing leaves the previous set as it
    was and no staging folder. The previous run's segments of videos that failed now or left the
    manifest are removed (only files recorded in ``.aggregate.outputs.json`` and unchanged).

    Raises
    ------
    pipeline.ownership.ForeignOutput
        A file of the user's holds an output name (exit 2; nothing in ``out_dir`` changes).
    OSError
        A file could not be written; the error names the output (``out/cohort.parquet``), not a
        staged or temporary file.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = result.config.to_dict()
    classes_dict = result.classes.to_dict() if result.classes is not None else None
    facts = {"readout": cfg, "readout_sources": result.sources, "readout_text": result.config.describe(),
             "classes": classes_dict,
             "model_id": result.model_id, "manifest": str(result.manifest.path)}
    written: list[str] = []
    _migrate(out_dir)
    with StagedSet(out_dir, STAGE, adopt=_adopter(out_dir)) as st:

        def table(rel: str, data, contract, input_hash: str, extra: dict) -> None:
            with st.writing(rel) as path:
                write_artifact(_typed(data, contract), path, contract=contract, stage=STAGE, input_hash=input_hash,
                               config=cfg, extra=extra)
            st.add_written(sidecar_path(path))
            written.append(rel)

        def text(rel: str, content: str) -> None:
            with st.writing(rel) as path:
                path.write_text(content, encoding="utf-8")
            written.append(rel)

        kept: list[str] = []
        for vid, seg in result.segments.items():
            rel = f"segments/{vid}.parquet"
            if is_up_to_date(out_dir / rel, input_hash=result.hashes[vid], config=cfg, contract=SEGMENTS):
                kept += [rel, rel + ".json"]
                continue
            table(rel, seg, SEGMENTS, result.hashes[vid], {**facts, "video_id": vid, "fps": result.readouts[vid].fps})

        all_segments = [result.segments[v] for v in result.manifest.videos["video_id"] if v in result.segments]
        seg_all = pd.concat(all_segments, ignore_index=True) if all_segments else pd.DataFrame(
            {c: pd.Series(dtype=t) for c, t in
             [("video_id", object), ("action_id", np.int16), ("start_s", float), ("end_s", float), ("score", float)]})
        text("detections.csv", detections_table(seg_all).to_csv(index=False))

        tables = result.tables or _empty_tables(result.manifest, result.failures)
        cohort_hash = cohort_input_hash(result.manifest, result.hashes)
        extra = {**facts, "participants": int(tables.cohort["participant_id"].nunique()),
                 "excluded_participants": int((tables.exclusions["scope"] == "participant").sum()),
                 "failed_videos": int((tables.exclusions["scope"] == "video").sum())}
        for name, data, contract in (("cohort.parquet", tables.cohort, COHORT), ("bouts.parquet", tables.bouts, BOUTS),
                                     ("exclusions.parquet", tables.exclusions, EXCLUSIONS)):
            table(name, data, contract, cohort_hash, extra)
        if agreement is not None:
            text("agreement.csv", agreement.to_csv(index=False))
        st.check(kept)  # up-to-date segments stay: they must be ours (recorded, or adopted now)
        st.commit(keep=kept)
    return [out_dir / rel for rel in written]


def summarize(result: AggregateResult) -> str:
    """The summary printed on stderr by main()."""
    m = result.manifest
    n_v, n_p = len(m.videos), len(m.participants)
    failed = [v for v in m.videos["video_id"] if v in result.failures]
    excl = result.tables.exclusions if result.tables is not None else _empty_tables(m, result.failures).exclusions
    dropped_rows = excl[excl["scope"] == "participant"]
    dropped = dropped_rows["participant_id"].tolist()
    n_in = n_p - len(dropped)
    n_actions = 0 if result.classes is None else sum(t is not None for t in result.classes.taxonomy_ids)
    lines = [
        f"aggregate: {n_v} video(s) of {n_p} participant(s): {n_v - len(failed)} read out, {len(failed)} failed; "
        f"cohort: {n_in} participant(s) x {n_actions} action(s), {len(dropped)} participant(s) excluded; "
        f"{result.config.describe()}"
    ]
    for v in failed:
        lines.append(f"  failed   {v}: {result.failures[v]}")
    for row in dropped_rows.itertuples():
        lines.append(f"  excluded participant {row.participant_id!r}: {row.reason} (see exclusions.parquet)")
    return "\n".join(lines)


def build_parser():
    p = make_parser(
        "Windows (class probabilities) + cohort manifest -> segments, detections.csv, cohort.parquet, "
        "bouts.parquet, exclusions.parquet. Exit status: 0 ok, 1 some videos failed, 2 bad input.",
        prog="python -m pipeline.aggregate",
    )
    p.add_argument("--windows", metavar="DIR", help="folder of windows/<video_id>.parquet files")
    p.add_argument("--manifest", metavar="FILE", help="cohort manifest (CSV or Parquet)")
    p.add_argument("--out", metavar="DIR", help="output folder")
    p.add_argument("--run", metavar="RUN", type=Path,
                   help="a cohort run folder (pipeline.run_folder layout): --windows, --manifest and --out default "
                        "to RUN/recognize/windows, RUN/manifest.csv and RUN/readout")
    g = p.add_argument_group("read-out (defaults: the read-out the checkpoint was calibrated for, if it has one, "
                             "else the values below)")
    add_arguments(g, ReadoutConfig)
    p.add_argument("--gt-frames", metavar="PATH",
                   help="per-frame ground truth, a CSV/Parquet file or a folder of them (video_id,frame,action) -> agreement.csv")
    return p


def paths_from_args(args) -> tuple[str, str, str]:
    """(windows, manifest, out) from the explicit flags, or from ``--run`` (:class:`RunFolder`)."""
    run = RunFolder(args.run) if args.run else None
    windows = args.windows or (run and str(run.windows))
    manifest = args.manifest or (run and str(run.manifest))
    out = args.out or (run and str(run.readout))
    missing = [flag for flag, v in (("--windows", windows), ("--manifest", manifest), ("--out", out)) if not v]
    if missing:
        raise BadInput(f"{', '.join(missing)} required (or --run RUN for a cohort run folder)")
    return windows, manifest, out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(verbose=args.verbose, quiet=args.quiet)
    with handle_errors("pipeline.aggregate"), contextlib.ExitStack() as held:  # held: the run lock
        windows_arg, manifest_arg, out_arg = paths_from_args(args)
        held.enter_context(lock_for_output(out_arg, command='python -m pipeline.aggregate'))
        out_dir = check_output_dir(out_arg)
        manifest = read_manifest(manifest_arg, check_videos=False)
        windows_dir = windows_dir_of(windows_arg)
        try:
            resolved = from_args(ReadoutConfig, args, base=checkpoint_readout(manifest, windows_dir),
                                 base_name="checkpoint", stage="readout")
            config = resolved.settings.resolved()
        except (SettingsError, ValueError) as exc:
            raise BadInput(str(exc)) from None
        gt = read_frame_truth(args.gt_frames) if args.gt_frames else None
        result = aggregate(manifest, windows_dir, config, show_progress=True, sources=resolved.sources)
        agreement = None
        if gt is not None and result.classes is not None:  # bad truth: exit 2 before anything is written
            agreement = percent_time_agreement(gt, manifest, result.readouts, result.classes)
        written = write_outputs(result, out_dir, agreement=agreement)
    for path in written:
        report_written(path)
    print(summarize(result), file=sys.stderr)
    return EXIT_PARTIAL if result.failures else EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
