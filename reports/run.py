"""Reading a run folder for the report: every artifact a cohort run leaves, tolerant of missing parts.

The layout is :class:`pipeline.run_folder.RunFolder`'s (the one the flow writes and the stage CLIs
read with ``--run RUN``; docs/contracts.md, "Run folder"); every path comes from it and every table
is read through its contract, so nothing here guesses folders or column names.

Only ``readout/cohort.parquet`` is required. Every other part may be missing; :class:`Run` then holds
``None`` / empty mappings for it and a sentence in :attr:`Run.notes` that the report prints.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.artifacts import read_sidecar
from pipeline.cli import BadInput
from pipeline.codings.contract import CODING_EVENTS, CODING_SESSIONS
from pipeline.contracts import ContractError, conform
from pipeline.manifest import read_manifest
from pipeline.run_folder import RunFolder

__all__ = ["Run", "VideoInfo", "load_run", "find_value"]


@dataclass
class VideoInfo:
    """What the report knows about one video of a participant.

    Attributes
    ----------
    video_id : str
        Artifact name (the file stem); shown only with ``show_paths``.
    participant_id : str
    label : str
        Pseudonymous label shown instead of the file name, e.g. ``video 1``.
    source : str or None
        The manifest's video path (never shown unless asked).
    fps, duration_s : float or None
    qc : dict or None
        The video's pose QC row.
    windows : pandas.DataFrame or None
        ``start_s``, ``end_s``, ``valid_fraction``, ``classified`` (probs not null).
    segments : pandas.DataFrame or None
        SEGMENTS rows of the video.
    no_pose : list of (float, float)
        Stretches (seconds) without a usable pose, from the windows (or keypoints when there are none).
    excluded : str or None
        Why the video was left out, when it was.
    """

    video_id: str
    participant_id: str
    label: str
    source: str | None = None
    fps: float | None = None
    duration_s: float | None = None
    qc: dict | None = None
    windows: pd.DataFrame | None = None
    segments: pd.DataFrame | None = None
    no_pose: list[tuple[float, float]] = field(default_factory=list)
    excluded: str | None = None


@dataclass
class Run:
    """All artifacts of one run folder (see module docstring)."""

    root: Path
    cohort: pd.DataFrame
    cohort_meta: dict | None
    manifest: pd.DataFrame | None = None
    qc: pd.DataFrame | None = None
    qc_meta: dict | None = None
    keypoint_meta: dict[str, dict] = field(default_factory=dict)
    windows_meta: dict[str, dict] = field(default_factory=dict)
    segments_meta: dict | None = None
    bouts: pd.DataFrame | None = None
    bouts_meta: dict | None = None
    exclusions: pd.DataFrame | None = None
    results: pd.DataFrame | None = None
    results_meta: dict | None = None
    sensitivity: pd.DataFrame | None = None          # hurdle/sensitivity.csv (analysis.hurdle --sensitivity)
    videos: dict[str, list[VideoInfo]] = field(default_factory=dict)  # participant_id -> videos
    notes: list[str] = field(default_factory=list)
    validation: pd.DataFrame | None = None           # validation/pairs.parquet (analysis.agreement)
    validation_participants: pd.DataFrame | None = None
    validation_meta: dict | None = None
    coder_events: pd.DataFrame | None = None         # codings/events.parquet (video_id, coder, action, start_s, stop_s)
    coder_sessions: pd.DataFrame | None = None       # codings/sessions.parquet
    coder_meta: dict | None = None                   # codings/events.parquet's sidecar (how they were imported)

    def below_coder_range(self) -> set[str]:
        """Actions whose validation verdict is "below the coder range" (empty without a validation)."""
        v = self.validation
        if v is None or "verdict" not in v.columns:
            return set()
        return set(v.loc[v["verdict"] == "below the coder range", "action"])

    @property
    def participants(self) -> list[str]:
        return list(dict.fromkeys(self.cohort["participant_id"]))

    @property
    def groups(self) -> list[str]:
        """Groups in the hurdle analysis's order when known, else in order of appearance."""
        present = list(dict.fromkeys(self.cohort["group"]))
        cfg = (self.results_meta or {}).get("config", {}).get("analysis", {}) if self.results_meta else {}
        ordered = [g for g in cfg.get("groups", []) if g in present]
        return ordered + [g for g in present if g not in ordered]

    @property
    def covariates(self) -> list[str]:
        fixed = {"participant_id", "group", "action_id", "action", "percent_time", "observed_s", "mean_score"}
        return [c for c in self.cohort.columns if c not in fixed]

    def participant_exclusions(self) -> dict[str, str]:
        """Participant-level exclusion reasons (e.g. all videos failed) by participant_id."""
        ex = self.exclusions
        if ex is None or "participant_id" not in ex.columns:
            return {}
        if "scope" in ex.columns:
            ex = ex[ex["scope"] == "participant"]
        elif "video_id" in ex.columns:
            ex = ex[ex["video_id"].isna()]
        else:
            return {}
        return dict(zip(ex["participant_id"], ex["reason"]))

    def participant_table(self) -> pd.DataFrame:
        """One row per participant: participant_id, group, observed_s and the covariates."""
        cols = ["participant_id", "group", "observed_s", *self.covariates]
        return self.cohort.drop_duplicates("participant_id")[cols].reset_index(drop=True)

    def sidecars(self) -> Iterable[tuple[str, dict]]:
        """Every sidecar read, with the stage it belongs to."""
        for name, meta in (("readout", self.cohort_meta), ("pose-qc", self.qc_meta), ("bouts", self.bouts_meta),
                           ("segments", self.segments_meta), ("hurdle", self.results_meta)):  # fmt: skip
            if meta:
                yield name, meta
        for meta in self.keypoint_meta.values():
            yield "pose", meta
        for meta in self.windows_meta.values():
            yield "windows", meta


def find_value(obj: Any, keys: Iterable[str]) -> Any:
    """The first value stored under one of ``keys`` anywhere in a nested mapping (depth first), or None."""
    keys = tuple(keys)
    if isinstance(obj, Mapping):
        for k in keys:
            if k in obj and obj[k] is not None:
                return obj[k]
        for v in obj.values():
            found = find_value(v, keys)
            if found is not None:
                return found
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            found = find_value(v, keys)
            if found is not None:
                return found
    return None


def _rel(root: Path, p: Path) -> str:
    try:
        return str(p.relative_to(root))
    except ValueError:
        return p.name


def _load_cohort(folder: RunFolder) -> tuple[pd.DataFrame, dict | None]:
    path = folder.cohort
    if not path.exists():
        raise BadInput(f"{folder.root}: no readout/cohort.parquet (the cohort table is the one part a report needs)")
    try:
        table = conform(pq.read_table(path), "cohort", source=str(path))
    except ContractError:
        raise
    except Exception as exc:  # unreadable Parquet
        raise BadInput(f"{path}: cannot read the cohort table: {exc}") from None
    df = table.to_pandas()
    df["participant_id"] = df["participant_id"].astype(str)
    df["group"] = df["group"].astype(str)
    return df, read_sidecar(path)


def _load_manifest(folder: RunFolder, notes: list[str]) -> pd.DataFrame | None:
    """The manifest's videos (:func:`pipeline.manifest.read_manifest`: one row per video, with ``video_id``)."""
    path = folder.manifest
    if not path.exists():
        notes.append("No manifest in the run folder: videos cannot be matched to participants, so the "
                     "participant pages have no ethogram or per-video quality control.")  # fmt: skip
        return None
    return read_manifest(path, check_videos=False).videos.copy()


def _windows_frame(path: Path) -> pd.DataFrame:
    t = pq.read_table(path)
    out = pd.DataFrame({c: t.column(c).to_numpy(zero_copy_only=False) for c in ("start_s", "end_s", "valid_fraction") if c in t.column_names})
    if "probs" in t.column_names:
        out["classified"] = pc.invert(pc.is_null(t.column("probs"))).to_numpy(zero_copy_only=False)
    else:
        out["classified"] = True
    return out.sort_values("start_s", kind="stable").reset_index(drop=True)


def uncovered(spans: Iterable[tuple[float, float]], start: float, end: float) -> list[tuple[float, float]]:
    """Parts of ``[start, end]`` covered by none of ``spans`` (sorted, merged)."""
    gaps: list[tuple[float, float]] = []
    t = start
    for a, b in sorted(spans):
        if a > t:
            gaps.append((t, min(a, end)))
        t = max(t, b)
        if t >= end:
            break
    if t < end:
        gaps.append((t, end))
    return [(a, b) for a, b in gaps if b > a]


def _keypoint_gaps(path: Path, fps: float | None) -> list[tuple[float, float]]:
    """No-pose stretches from keypoints: a posed frame without a usable pose stands for the time to the next one."""
    t = pq.read_table(path, columns=["time_s", "detected", "rejected"]).to_pandas().sort_values("time_s")
    if t.empty:
        return []
    times = t["time_s"].to_numpy(dtype=float)
    step = np.diff(times, append=times[-1] + (1.0 / fps if fps else np.median(np.diff(times)) if len(times) > 1 else 0.0))
    bad = ~(t["detected"].to_numpy(bool) & ~t["rejected"].to_numpy(bool))
    spans: list[tuple[float, float]] = []
    for s, d, b in zip(times, step, bad):
        if not b:
            continue
        if spans and abs(spans[-1][1] - s) < 1e-9:
            spans[-1] = (spans[-1][0], s + d)
        else:
            spans.append((s, s + d))
    return spans


def _video_facts(*metas: dict | None) -> tuple[float | None, float | None]:
    """fps and duration (s) from the first sidecar that states them."""
    fps = dur = None
    for meta in metas:
        if not meta:
            continue
        video = meta.get("video") if isinstance(meta.get("video"), Mapping) else meta
        f = find_value(video, ("fps",))
        n = find_value(video, ("frame_count", "frames_total", "num_frames"))
        d = find_value(video, ("duration_s",))
        if fps is None and isinstance(f, (int, float)) and f > 0:
            fps = float(f)
        if dur is None and isinstance(d, (int, float)) and d > 0:
            dur = float(d)
        if dur is None and fps and isinstance(n, (int, float)) and n > 0:
            dur = float(n) / fps
    return fps, dur


def _bouts(path: Path, notes: list[str]) -> pd.DataFrame | None:
    try:
        df = conform(pq.read_table(path), "bouts", source=str(path)).to_pandas()
    except Exception as exc:  # a broken table must not stop the report: the segments give the bouts
        notes.append(f"{path.name} could not be read ({' '.join(str(exc).split())}); bouts are computed from "
                     "the segments instead.")  # fmt: skip
        return None
    df["participant_id"] = df["participant_id"].astype(str)
    # the report's tables name the BOUTS contract's ``bouts`` column ``bout_count`` (reports.summaries)
    return df.rename(columns={"bouts": "bout_count"})


def load_run(run_dir: str | os.PathLike) -> Run:
    """Read a run folder (see module docstring).

    Raises
    ------
    pipeline.cli.BadInput
        The folder or its cohort table is missing or unreadable, or the manifest lacks its key columns.
    pipeline.contracts.ContractError
        The cohort table breaks its contract.
    """
    root = Path(run_dir)
    if not root.is_dir():
        raise BadInput(f"--run {root} is not a folder")
    folder = RunFolder(root)
    cohort, cohort_meta = _load_cohort(folder)
    notes: list[str] = []
    run = Run(root=root, cohort=cohort, cohort_meta=cohort_meta)
    if cohort_meta is None:
        notes.append("readout/cohort.parquet has no sidecar: the read-out rule and its parameters are unknown.")
    run.manifest = _load_manifest(folder, notes)

    qc_path = folder.pose_qc
    if qc_path.exists():
        run.qc = pq.read_table(qc_path).to_pandas()
        run.qc["video_id"] = run.qc["video_id"].astype(str)
        run.qc_meta = read_sidecar(qc_path)
    else:
        notes.append("No pose/qc.parquet: pose quality control is not shown.")

    kp_dir = folder.keypoints
    for side in sorted(kp_dir.glob("*.parquet.json")) if kp_dir.is_dir() else []:
        meta = read_sidecar(side.with_suffix(""))
        if meta is not None:
            run.keypoint_meta[side.name[: -len(".parquet.json")]] = meta

    win_dir = folder.windows
    win_paths = {p.stem: p for p in sorted(win_dir.glob("*.parquet"))} if win_dir.is_dir() else {}
    for vid, p in win_paths.items():
        meta = read_sidecar(p)
        if meta is not None:
            run.windows_meta[vid] = meta
    if not win_paths:
        notes.append("No recognize/windows/ folder: the model checkpoint and window plan are taken from other sidecars "
                     "where they are recorded, and no-pose stretches from the keypoints.")  # fmt: skip

    seg_dir = folder.segments
    seg_paths = {p.stem: p for p in sorted(seg_dir.glob("*.parquet"))} if seg_dir.is_dir() else {}
    if seg_paths:
        run.segments_meta = read_sidecar(next(iter(seg_paths.values())))
    else:
        notes.append("No readout/segments/: the participant pages have no ethogram of detected segments.")

    bouts_path = folder.bouts
    if bouts_path.exists():
        run.bouts = _bouts(bouts_path, notes)
        run.bouts_meta = read_sidecar(bouts_path)
    elif seg_paths:
        notes.append("No readout/bouts table: bouts, mean bout duration and latency are computed from the segments.")
    else:
        notes.append("No bouts table and no segments: bouts, mean bout duration and latency are not shown.")

    excl_path = folder.exclusions
    if excl_path.exists():
        ex = conform(pq.read_table(excl_path), "exclusions", source=str(excl_path)).to_pandas()
        ex["video_id"] = ex["video_id"].where(ex["video_id"].isna(), ex["video_id"].astype(str))
        ex["participant_id"] = ex["participant_id"].astype(str)
        ex["reason"] = ex["reason"].astype(str)
        run.exclusions = ex

    res_path = folder.results
    if res_path.exists() and read_sidecar(res_path) is not None:
        run.results = pq.read_table(res_path).to_pandas()
        run.results_meta = read_sidecar(res_path)
    elif res_path.exists():
        notes.append("hurdle/results.parquet has no sidecar (an interrupted analysis): group comparisons are not shown.")
    else:
        notes.append("No hurdle/results.parquet: group comparisons are not shown "
                     "(run python -m analysis.hurdle --cohort readout/cohort.parquet --out hurdle).")  # fmt: skip

    sens_path = folder.hurdle / "sensitivity.csv"
    if run.results is not None and "sensitivity" in run.results.columns and sens_path.exists():
        try:
            run.sensitivity = pd.read_csv(sens_path)
        except (OSError, ValueError) as exc:
            notes.append(f"hurdle/sensitivity.csv could not be read ({' '.join(str(exc).split())}): the sensitivity "
                         "figure is not shown.")  # fmt: skip

    _attach_videos(run, win_paths, seg_paths, kp_dir, notes)
    _load_validation(run, folder, notes)
    run.notes = notes
    return run


def _load_validation(run: Run, folder: RunFolder, notes: list[str]) -> None:
    """The agreement with human coders (``validation/``) and the codings it compared, when present."""
    pairs = folder.validation / "pairs.parquet"
    if pairs.exists():
        meta = read_sidecar(pairs)
        if meta is None:
            notes.append("validation/pairs.parquet has no sidecar (an interrupted validation): it is not shown.")
        else:
            run.validation = pq.read_table(pairs).to_pandas()
            run.validation_meta = meta
            part = folder.validation / "participants.parquet"
            if part.exists():
                run.validation_participants = pq.read_table(part).to_pandas()
                run.validation_participants["participant_id"] = run.validation_participants["participant_id"].astype(str)
    ev, ses = folder.codings / "events.parquet", folder.codings / "sessions.parquet"
    if ev.exists() and ses.exists():
        try:
            run.coder_events = conform(pq.read_table(ev), CODING_EVENTS, source=str(ev)).to_pandas()
            run.coder_sessions = conform(pq.read_table(ses), CODING_SESSIONS, source=str(ses)).to_pandas()
            run.coder_meta = read_sidecar(ev)
        except Exception as exc:  # a broken codings folder must not stop the report
            notes.append(f"codings could not be read ({' '.join(str(exc).split())}); the coders' ethograms are not shown.")
            run.coder_events = run.coder_sessions = None


def _attach_videos(run: Run, win_paths: dict[str, Path], seg_paths: dict[str, Path], kp_dir: Path, notes: list[str]) -> None:
    """Build each participant's :class:`VideoInfo` list from the manifest, QC, windows and segments."""
    if run.manifest is None:
        return
    qc_rows = {r["video_id"]: r for r in run.qc.to_dict("records")} if run.qc is not None else {}
    excluded: dict[str, str] = {}
    if run.exclusions is not None and "video_id" in run.exclusions.columns:
        ex = run.exclusions[run.exclusions["video_id"].notna() & (run.exclusions["video_id"] != "None")]
        excluded = dict(zip(ex["video_id"], ex["reason"]))
    known = set(run.participants)
    for pid, rows in run.manifest.groupby("participant_id", sort=False):
        infos = []
        for k, row in enumerate(rows.itertuples(index=False), start=1):
            vid = str(row.video_id)
            info = VideoInfo(video_id=vid, participant_id=str(pid), label=f"video {k}", source=str(row.video))
            info.qc = qc_rows.get(vid)
            info.fps, info.duration_s = _video_facts(run.windows_meta.get(vid), run.keypoint_meta.get(vid))
            if vid in win_paths:
                info.windows = _windows_frame(win_paths[vid])
            if vid in seg_paths:
                seg = pq.read_table(seg_paths[vid]).to_pandas()
                info.segments = seg.sort_values("start_s", kind="stable").reset_index(drop=True)
            if info.duration_s is None:
                ends = [float(info.windows["end_s"].max())] if info.windows is not None and len(info.windows) else []
                ends += [float(info.segments["end_s"].max())] if info.segments is not None and len(info.segments) else []
                info.duration_s = max(ends) if ends else None
            if info.windows is not None and info.duration_s:
                classified = info.windows[info.windows["classified"]]
                info.no_pose = uncovered(zip(classified["start_s"], classified["end_s"]), 0.0, info.duration_s)
            elif (kp_dir / f"{vid}.parquet").exists():
                info.no_pose = _keypoint_gaps(kp_dir / f"{vid}.parquet", info.fps)
            if info.qc is not None and info.qc.get("status") == "failed":  # the root cause comes first
                info.excluded = f"pose failed: {info.qc.get('error') or 'unknown error'}"
            elif vid in excluded:
                info.excluded = excluded[vid]
            elif info.windows is not None and len(info.windows) and not info.windows["classified"].any():
                info.excluded = "no window had enough usable pose to be classified"
            infos.append(info)
        run.videos[str(pid)] = infos
    lost = sorted(set(run.videos) - known)
    if lost:
        notes.append(f"{len(lost)} participant(s) of the manifest have no rows in the cohort table "
                     "(all their videos failed or were excluded); they are listed under quality control.")  # fmt: skip

