"""The clinical read-out: windows of one video -> segments and per-class time; a cohort -> tables.

Steps (DESIGN.md section 3b; docs/readout.md has worked examples):

1. per-frame scores, the mean over covering classified windows   (:mod:`pipeline.frame_scores`)
   or, for models trained on windows labelled at their centre, interpolation between window centres
2. frame labels by a selectable rule                              (:mod:`pipeline.frame_labels`)
3. segments: merge gaps <= merge_gap, then drop runs < min_duration (:mod:`pipeline.segments`)
4. per participant, pooled over its videos by frames::

       percent_time(a) = 100 * sum_v (valid frames of v inside final segments of a) / sum_v valid frames of v
       observed_s      = sum_v valid frames of v / fps_v

   plus bouts per participant x action: count, total / mean / median duration, latency to the first,
   and the mean per-frame score of each action over the valid frames (``mean_score``, the input of the
   error-aware statistics' probabilistic correction)::

       mean_score(a) = sum_v sum_{valid f of v} score_v[f, a] / sum_v valid frames of v

This module holds the pure functions (numpy/pandas in and out); reading and writing files is
:mod:`pipeline.aggregate`'s job.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from model.preprocessing import ClassList
from pipeline.frame_labels import DEFAULT_THRESHOLD, RULES, SINGLE_LABEL_RULES, label_frames
from pipeline.frame_scores import SCORE_METHODS, frame_scores
from pipeline.manifest import Manifest
from pipeline.segments import duration_frames, label_segments
from pipeline.settings import SettingsError

__all__ = [
    "ReadoutConfig",
    "ReadoutError",
    "ClassListMismatch",
    "VideoReadout",
    "WindowArrays",
    "window_arrays",
    "class_thresholds",
    "read_thresholds_file",
    "read_out_video",
    "pooled_percent_time",
    "pooled_mean_score",
    "CohortTables",
    "cohort_tables",
    "detections_table",
]


class ReadoutError(ValueError):
    """A windows table cannot be read out (names the file/row when known)."""


class ClassListMismatch(ReadoutError):
    """Window probabilities do not match the model's class list (windows from another model)."""


Tau = Annotated[float, Field(gt=0, le=1)]


@dataclass(frozen=True)
class ReadoutConfig:
    """The read-out's settings: the one source of truth for the CLI, the flow and the sidecars.

    Each field's annotation holds its bounds and help (:mod:`pipeline.settings` derives
    ``python -m pipeline.aggregate``'s flags and the flow's ``readout`` parameters from them); the
    sidecar of every read-out output records :meth:`to_dict` under ``readout`` and the report's Methods
    read it by these field names.

    Attributes
    ----------
    scores : one of ``pipeline.frame_scores.SCORE_METHODS``; default ``"mean"`` (the mean over the
        covering windows, DESIGN.md 3b). ``"interpolate"`` reads each window's probability at its centre
        and interpolates between centres: the matched read-out for a model trained on windows labelled
        by the class covering most of their span (the demo model); see :mod:`pipeline.frame_scores`.
    rule : one of ``pipeline.frame_labels.RULES``; default ``"threshold"``.
    threshold : float
        tau for ``threshold`` and ``multi-label``, and the default for classes missing from
        ``thresholds`` (0.5: the lowest tau at which at most one class can pass; pipeline.frame_labels).
    thresholds : dict of class name -> float
        Per-class thresholds (``per-class`` and ``multi-label`` rules).
    thresholds_file : path or None
        JSON file of per-class thresholds, read by :meth:`resolved`: its values replace ``thresholds``
        (so a user's file replaces a checkpoint's calibrated thresholds). The sidecar keeps the file's
        name and the values read from it.
    min_duration_s : float
        Segments shorter than this are dropped (after merging). Default 0: windows are averaged over
        about span/hop = 4 overlapping windows, so labels change only at window boundaries (every hop,
        0.53 s for MA-52 at 30 fps) and cannot flicker faster; set it to ignore brief detections.
    merge_gap_s : float
        Gaps of no micro-action up to this long between two segments of one class are merged (before
        dropping). Default 0.
    min_observed_s : float
        A participant with less observed time (valid-pose seconds, pooled over its videos) is left
        out of the cohort table and listed in the exclusions with the reason: its percent time rests
        on too little video to mean anything (a 1-frame video would otherwise enter as a
        non-engager in every action). Default 1 s, the shortest micro-action (MA-52: 1-3 s); 0 keeps
        every participant with a valid frame.
    """

    scores: Annotated[Literal[SCORE_METHODS], Field(description=(
        "per-frame scores: mean over the covering windows, or interpolation between window centres (for "
        "models trained on windows labelled at their centre, e.g. the demo model; docs/readout.md)"))] = "mean"
    rule: Annotated[Literal[RULES], Field(description="frame labelling rule (docs/readout.md)")] = "threshold"
    threshold: Annotated[float, Field(gt=0, le=1, description=(
        "score threshold tau (rules threshold, multi-label; the default for classes without their own)"),
        json_schema_extra={"metavar": "TAU"})] = DEFAULT_THRESHOLD
    thresholds: Annotated[dict[str, Tau], Field(description=(
        "per-class thresholds, CLASS=TAU[,CLASS=TAU...] (rules per-class, multi-label)"),
        json_schema_extra={"flag": "--class-threshold", "metavar": "CLASS=TAU"})] = field(default_factory=dict)
    thresholds_file: Annotated[Path | None, Field(description=(
        "JSON file of per-class thresholds, an object class name -> threshold (instead of --class-threshold)"),
        json_schema_extra={"flag": "--thresholds", "metavar": "JSON"})] = None
    min_duration_s: Annotated[float, Field(ge=0, allow_inf_nan=False, description=(
        "drop segments shorter than S seconds (after merging)"),
        json_schema_extra={"flag": "--min-duration", "metavar": "S"})] = 0.0
    merge_gap_s: Annotated[float, Field(ge=0, allow_inf_nan=False, description=(
        "merge gaps of no micro-action up to S seconds between segments of one action (before dropping)"),
        json_schema_extra={"flag": "--merge-gap", "metavar": "S"})] = 0.0
    min_observed_s: Annotated[float, Field(ge=0, allow_inf_nan=False, description=(
        "leave out participants with less than S seconds of valid pose (listed in the exclusions)"),
        json_schema_extra={"flag": "--min-observed", "metavar": "S"})] = 1.0

    def __post_init__(self) -> None:
        if self.scores not in SCORE_METHODS:
            raise ValueError(f"scores: unknown frame-score method {self.scores!r}; choose one of {', '.join(SCORE_METHODS)}")
        if self.rule not in RULES:
            raise ValueError(f"rule: unknown read-out rule {self.rule!r}; choose one of {', '.join(RULES)}")
        for name, t in [("threshold", self.threshold), *((f"thresholds[{k!r}]", v) for k, v in self.thresholds.items())]:
            if isinstance(t, bool) or not (isinstance(t, (int, float)) and 0.0 < float(t) <= 1.0):
                raise ValueError(f"{name}: must be in (0, 1], got {t!r}")
        if self.rule == "per-class" and not self.thresholds and self.thresholds_file is None:
            raise ValueError("thresholds: rule 'per-class' needs per-class thresholds (a JSON file of class name -> threshold)")
        if not (self.min_duration_s >= 0 and np.isfinite(self.min_duration_s)):
            raise ValueError(f"min_duration_s: must be >= 0, got {self.min_duration_s}")
        if not (self.merge_gap_s >= 0 and np.isfinite(self.merge_gap_s)):
            raise ValueError(f"merge_gap_s: must be >= 0, got {self.merge_gap_s}")
        if not (self.min_observed_s >= 0 and np.isfinite(self.min_observed_s)):
            raise ValueError(f"min_observed_s: must be >= 0, got {self.min_observed_s}")

    def resolved(self) -> "ReadoutConfig":
        """The settings with ``thresholds_file`` read into ``thresholds`` (the file's name is kept).

        Raises FileNotFoundError / ValueError naming the file (``readout.thresholds_file``)."""
        if self.thresholds_file is None:
            return self
        try:
            return replace(self, thresholds=read_thresholds_file(self.thresholds_file))
        except (OSError, ValueError) as exc:
            raise SettingsError(f"readout.thresholds_file: {exc}") from None

    def check_classes(self, classes: ClassList) -> None:
        """A per-class threshold for a class the model does not have is an error (``readout.thresholds``).

        Checks the thresholds held now: call it on :meth:`resolved` settings (a file not read yet holds
        none)."""
        unknown = sorted(set(self.thresholds) - set(classes.names))
        if unknown:
            raise SettingsError(f"readout.thresholds: class(es) not in the model's class list: "
                                f"{', '.join(map(repr, unknown))} (the model has {', '.join(classes.names)})")

    @property
    def single_label(self) -> bool:
        return self.rule in SINGLE_LABEL_RULES

    def describe(self) -> str:
        """One line for summaries and reports."""
        thr = {
            "threshold": f"tau={self.threshold:g}",
            "top1": "",
            "per-class": f"{len(self.thresholds)} per-class thresholds, others {self.threshold:g}",
            "multi-label": f"tau={self.threshold:g}" + (f", {len(self.thresholds)} per-class" if self.thresholds else ""),
            "background": "",
        }[self.rule]
        scores = "" if self.scores == "mean" else f"{self.scores} window scores, "
        return (
            f"{scores}rule {self.rule}{' (' + thr + ')' if thr else ''}, min duration {self.min_duration_s:g} s, "
            f"merge gap {self.merge_gap_s:g} s (merge first, then drop), participants with < "
            f"{self.min_observed_s:g} s observed left out"
        )

    def to_dict(self) -> dict:
        """The sidecar record (field names as keys; ``order`` states the fixed merge-then-drop order)."""
        return {
            "scores": self.scores,
            "rule": self.rule,
            "threshold": float(self.threshold),
            "thresholds": {k: float(v) for k, v in sorted(self.thresholds.items())},
            "thresholds_file": None if self.thresholds_file is None else str(self.thresholds_file),
            "min_duration_s": float(self.min_duration_s),
            "merge_gap_s": float(self.merge_gap_s),
            "min_observed_s": float(self.min_observed_s),
            "order": "merge then drop",
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ReadoutConfig":
        """Inverse of :meth:`to_dict` (``order`` is fixed; older records lack ``scores``,
        ``thresholds_file`` and ``min_observed_s``, which then take their defaults). A record with a
        ``thresholds_file`` holds the values read from it; :meth:`resolved` reads the file again."""
        keys = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(keys) - {"order"})
        if unknown:
            raise ValueError(f"unknown read-out setting(s): {', '.join(unknown)}")
        if d.get("order", "merge then drop") != "merge then drop":
            raise ValueError(f"read-out order {d['order']!r} is not supported (only 'merge then drop')")
        values = {k: (dict(d[k]) if k == "thresholds" else d[k]) for k in keys if k in d}
        if values.get("thresholds_file") is not None:
            values["thresholds_file"] = Path(values["thresholds_file"])
        return cls(**values)

    @classmethod
    def record_fields(cls, record: dict | None) -> dict | None:
        """Field values of a stored record (a sidecar's or a checkpoint provenance's ``readout``), for
        :func:`pipeline.settings.merge_settings`'s ``base``; None for no record."""
        return None if record is None else asdict(cls.from_dict(record))


def read_thresholds_file(path: str | os.PathLike) -> dict[str, float]:
    """A JSON object ``{"nodding": 0.3, ...}`` of per-class thresholds. Raises ValueError naming the key."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"thresholds file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of class name -> threshold")
    out = {}
    for k, v in data.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < float(v) <= 1.0:
            raise ValueError(f"{path}: threshold of {k!r} must be a number in (0, 1], got {v!r}")
        out[str(k)] = float(v)
    return out


def class_thresholds(classes: ClassList, config: ReadoutConfig) -> np.ndarray:
    """Threshold per class [C]: the per-class value where given, else ``config.threshold``."""
    unknown = sorted(set(config.thresholds) - set(classes.names))
    if unknown:
        raise ValueError(
            f"per-class thresholds name class(es) not in the model's class list: {', '.join(map(repr, unknown))}"
        )
    return np.array([config.thresholds.get(n, config.threshold) for n in classes.names], dtype=np.float64)


@dataclass(frozen=True)
class WindowArrays:
    """A windows table as arrays. ``probs`` [W, C] is NaN on rows of unclassified windows."""

    start_frame: np.ndarray
    end_frame: np.ndarray
    probs: np.ndarray
    classified: np.ndarray

    @classmethod
    def from_lists(cls, start_frame, end_frame, probs) -> "WindowArrays":
        """From plain lists; ``probs`` holds one list per window, or None for an unclassified window."""
        C = max((len(p) for p in probs if p is not None), default=0)
        classified = np.array([p is not None for p in probs], dtype=bool)
        mat = np.array([p if p is not None else [np.nan] * C for p in probs], dtype=np.float64).reshape(len(probs), C)
        return cls(np.asarray(start_frame, dtype=np.int64), np.asarray(end_frame, dtype=np.int64), mat, classified)


def window_arrays(table: pa.Table, num_classes: int, *, source: str = "windows") -> WindowArrays:
    """Arrays from a WINDOWS-contract table; checks every classified row has ``num_classes`` probabilities.

    Raises
    ------
    ReadoutError
        A probability list of the wrong length (windows from a model with another class list) or a
        value outside [0, 1] / not finite; the message names the row.
    """
    probs_col = table.column("probs").combine_chunks()
    W = table.num_rows
    classified = ~probs_col.is_null().to_numpy(zero_copy_only=False)
    lengths = pc.list_value_length(probs_col).fill_null(num_classes).to_numpy(zero_copy_only=False)
    bad = np.flatnonzero(lengths != num_classes)
    if bad.size:
        raise ClassListMismatch(
            f"{source}: row {int(bad[0])} has {int(lengths[bad[0]])} class probabilities but the model's "
            f"class list has {num_classes} (windows from a model with another class list?)"
        )
    probs = np.full((W, num_classes), np.nan)
    if classified.any():
        flat = pc.list_flatten(probs_col).to_numpy(zero_copy_only=False).astype(np.float64)
        values = flat.reshape(-1, num_classes)
        bad_rows = np.flatnonzero(~(np.isfinite(values) & (values >= 0) & (values <= 1 + 1e-6)).all(axis=1))
        if bad_rows.size:
            r = int(np.flatnonzero(classified)[bad_rows[0]])
            raise ReadoutError(f"{source}: row {r} has a class probability that is not a finite number in [0, 1]")
        probs[classified] = values
    return WindowArrays(
        start_frame=table.column("start_frame").to_numpy().astype(np.int64),
        end_frame=table.column("end_frame").to_numpy().astype(np.int64),
        probs=probs,
        classified=classified,
    )


@dataclass(frozen=True)
class VideoReadout:
    """The read-out of one video.

    Attributes
    ----------
    video_id : str
    fps : float
    valid : bool array [F]; frames with a usable pose (covered by a classified window)
    active : bool array [F, C]; final labels (frames inside final segments, valid or not)
    seg_class, seg_start, seg_end : int arrays [S]; final segments in frames ``[start, end)``
    seg_score : float array [S]; mean per-frame score of the segment's class over its valid frames
    seg_valid : int array [S]; valid frames inside each segment
    score_sum : float array [C]; per class, the per-frame scores summed over the valid frames
    scores : float array [F, C] or None; the per-frame scores themselves (0 at invalid frames), kept
        only when asked for (``read_out_video(keep_scores=True)``: the agreement step keeps them for
        the coded videos; a cohort's [F, C] floats would be 8 times its ``active`` array)
    """

    video_id: str
    fps: float
    valid: np.ndarray
    active: np.ndarray
    seg_class: np.ndarray
    seg_start: np.ndarray
    seg_end: np.ndarray
    seg_score: np.ndarray
    seg_valid: np.ndarray
    score_sum: np.ndarray
    scores: np.ndarray | None = None

    @property
    def valid_frames(self) -> int:
        return int(self.valid.sum())

    def frames_in_segments(self, num_classes: int) -> np.ndarray:
        """Valid frames inside final segments, per class [C] (the percent-time numerators)."""
        return np.bincount(self.seg_class, weights=self.seg_valid, minlength=num_classes).astype(np.int64)

    def percent_time(self) -> np.ndarray:
        """100 * valid frames inside final segments / valid frames, per class [C] (0 when no valid frame)."""
        C = self.active.shape[1]
        return 100.0 * self.frames_in_segments(C) / max(self.valid_frames, 1)

    def segments_frame(self, classes: ClassList) -> pd.DataFrame:
        """The SEGMENTS-contract table of this video (start_s/end_s from frames / fps)."""
        ids = np.array([-1 if t is None else t for t in classes.taxonomy_ids], dtype=np.int64)
        names = np.array(classes.names, dtype=object)
        return pd.DataFrame(
            {
                "video_id": pd.Series([self.video_id] * len(self.seg_class), dtype=object),
                "action_id": ids[self.seg_class].astype(np.int16),
                "action": names[self.seg_class],
                "start_s": self.seg_start / self.fps,
                "end_s": self.seg_end / self.fps,
                "score": self.seg_score.astype(np.float32),
            }
        )


def read_out_video(
    windows: WindowArrays,
    *,
    video_id: str,
    fps: float,
    classes: ClassList,
    config: ReadoutConfig,
    num_frames: int | None = None,
    keep_scores: bool = False,
) -> VideoReadout:
    """Windows of one video -> per-frame scores -> labels -> final segments.

    Parameters
    ----------
    windows : WindowArrays with ``probs`` [W, C], C = len(classes)
    fps : frames per second of the video (for the duration parameters and segment seconds)
    num_frames : frames in the video (default: the last window end)
    keep_scores : keep the per-frame scores [F, C] in the result (``VideoReadout.scores``)
    """
    if not fps > 0:
        raise ReadoutError(f"{video_id}: fps must be > 0, got {fps}")
    C = len(classes)
    if windows.probs.shape[1] != C:
        raise ReadoutError(f"{video_id}: {windows.probs.shape[1]} class probabilities, class list has {C}")
    if config.rule == "background" and classes.background_index is None:
        raise ReadoutError("rule 'background' needs a model with a background class; this class list has none")
    fs = frame_scores(windows.start_frame, windows.end_frame, windows.probs, windows.classified, num_frames=num_frames,
                      method=config.scores)
    active = label_frames(
        fs.scores, fs.valid, rule=config.rule, thresholds=class_thresholds(classes, config),
        background_index=classes.background_index,
    )
    min_frames, merge_frames = duration_frames(config.min_duration_s, config.merge_gap_s, fps)
    seg_class, seg_start, seg_end = label_segments(
        active, single_label=config.single_label, min_frames=min_frames, merge_frames=merge_frames
    )
    # Per-segment sums by one gather over the frames of all segments (sum of lengths <= F per label
    # layer) instead of cumulative sums over the whole [F, C] matrix.
    F = fs.num_frames
    lengths = seg_end - seg_start
    seg_of = np.repeat(np.arange(seg_class.size), lengths)
    frame_idx = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths) + np.repeat(seg_start, lengths)
    class_idx = seg_class[seg_of]
    frame_valid = fs.valid[frame_idx]
    seg_valid = np.bincount(seg_of, weights=frame_valid, minlength=seg_class.size).astype(np.int64)
    sums = np.bincount(seg_of, weights=fs.scores[frame_idx, class_idx] * frame_valid, minlength=seg_class.size)
    seg_score = np.clip(np.round(sums / np.maximum(seg_valid, 1), 12), 0.0, 1.0)
    final = np.zeros((F, C), dtype=bool)
    final[frame_idx, class_idx] = True
    return VideoReadout(
        video_id=video_id, fps=float(fps), valid=fs.valid, active=final, seg_class=seg_class,
        seg_start=seg_start, seg_end=seg_end, seg_score=seg_score, seg_valid=seg_valid,
        score_sum=fs.scores.sum(axis=0),  # scores are 0 at invalid frames
        scores=fs.scores if keep_scores else None,
    )


def pooled_percent_time(readouts: list[VideoReadout]) -> tuple[np.ndarray, float]:
    """Percent time per class [C] of one participant pooled over its videos by frames, and observed_s.

    ``100 * sum_v frames_in_segments_v / sum_v valid_frames_v``; ``observed_s = sum_v valid_v / fps_v``.
    """
    C = readouts[0].active.shape[1]
    valid = sum(r.valid_frames for r in readouts)
    counts = np.sum([r.frames_in_segments(C) for r in readouts], axis=0)
    pct = np.clip(100.0 * counts / max(valid, 1), 0.0, 100.0)
    return pct, float(sum(r.valid_frames / r.fps for r in readouts))


def pooled_mean_score(readouts: list[VideoReadout]) -> np.ndarray:
    """Mean per-frame score per class [C] of one participant over the valid frames of its videos.

    ``sum_v score_sum_v / sum_v valid_frames_v``, in [0, 1] (0 without a valid frame).
    """
    valid = sum(r.valid_frames for r in readouts)
    total = np.sum([r.score_sum for r in readouts], axis=0)
    return np.clip(np.round(total / max(valid, 1), 12), 0.0, 1.0)


@dataclass(frozen=True)
class CohortTables:
    """The cohort-level results.

    Attributes
    ----------
    cohort : COHORT table (participants with at least one valid frame; every action, zeros included),
        with ``mean_score`` after ``observed_s``
    bouts : BOUTS table (same participants x actions)
    exclusions : EXCLUSIONS table (failed videos, and participants left out because all failed)
    """

    cohort: pd.DataFrame
    bouts: pd.DataFrame
    exclusions: pd.DataFrame


def _action_columns(classes: ClassList) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cols = np.array([i for i, t in enumerate(classes.taxonomy_ids) if t is not None], dtype=np.int64)
    ids = np.array([classes.taxonomy_ids[i] for i in cols], dtype=np.int16)
    names = np.array([classes.names[i] for i in cols], dtype=object)
    return cols, ids, names


def cohort_tables(
    manifest: Manifest,
    readouts: dict[str, VideoReadout],
    failures: dict[str, str],
    classes: ClassList,
    *,
    min_observed_s: float = 0.0,
) -> CohortTables:
    """Pool video read-outs per participant into the cohort, bouts and exclusions tables.

    Parameters
    ----------
    manifest : the cohort manifest (participants, groups, covariates, videos in order)
    readouts : video_id -> VideoReadout of the videos read out
    failures : video_id -> reason, for videos that could not be read out
    classes : the model's class list; the background class is left out of the tables

    A video read out with no valid frame (no classified window) counts as failed ("no classified
    window"). A participant none of whose videos has a valid frame is not in ``cohort``/``bouts``
    (its percent time is undefined, and a 0 would be a false "never does it"); it is listed in
    ``exclusions`` with scope ``participant``. Failed videos are listed with scope ``video``. So is
    a participant whose pooled observed time is below ``min_observed_s`` (ReadoutConfig.min_observed_s).
    """
    cols, ids, names = _action_columns(classes)
    A = cols.size
    C = len(classes)
    excl: list[dict] = []
    kept_pids: list[str] = []
    percents, observed, mean_scores = [], [], []
    seg_parts: list[pd.DataFrame] = []
    for pid, vids in manifest.videos.groupby("participant_id", sort=False):
        group = str(vids["group"].iloc[0])
        ok = []
        for vid in vids["video_id"]:
            r = readouts.get(vid)
            reason = failures.get(vid)
            if r is not None and r.valid_frames == 0:
                reason = "no classified window (too little valid pose in every window)"
            elif r is None and reason is None:
                reason = "not read out"
            if reason is not None:
                excl.append({"participant_id": pid, "group": group, "video_id": vid, "scope": "video", "reason": reason})
            else:
                ok.append(r)
        if not ok:
            excl.append({"participant_id": pid, "group": group, "video_id": None, "scope": "participant",
                         "reason": f"all {len(vids)} video(s) failed; left out of the cohort table"})
            continue
        pct_p, obs_p = pooled_percent_time(ok)
        if obs_p < min_observed_s:
            excl.append({"participant_id": pid, "group": group, "video_id": None, "scope": "participant",
                         "reason": f"only {obs_p:.2f} s of valid pose observed (< {min_observed_s:g} s, "
                                   "readout min_observed_s); left out of the cohort table"})
            continue
        p = len(kept_pids)
        kept_pids.append(pid)
        percents.append(pct_p[cols])
        observed.append(obs_p)
        mean_scores.append(pooled_mean_score(ok)[cols])
        for order, r in enumerate(ok):
            if r.seg_class.size:
                seg_parts.append(pd.DataFrame({
                    "p": p, "order": order, "col": r.seg_class,
                    "start_s": r.seg_start / r.fps, "dur_s": (r.seg_end - r.seg_start) / r.fps,
                }))

    P = len(kept_pids)
    part = manifest.participants.set_index("participant_id").loc[kept_pids].reset_index() if P else \
        manifest.participants.iloc[:0]
    pct = np.asarray(percents, dtype=np.float64).reshape(P, A)

    base = pd.DataFrame({
        "participant_id": np.repeat(np.asarray(kept_pids, dtype=object), A),
        "group": np.repeat(part["group"].to_numpy(dtype=object), A),
        "action_id": np.tile(ids, P),
        "action": np.tile(names, P),
    })
    cohort = base.copy()
    cohort["percent_time"] = pct.ravel()
    cohort["observed_s"] = np.repeat(np.asarray(observed, dtype=np.float64), A)
    cohort["mean_score"] = np.asarray(mean_scores, dtype=np.float64).reshape(P * A)
    for c in manifest.covariates:
        cohort[c] = np.repeat(part[c].to_numpy(), A)
        if pd.api.types.is_numeric_dtype(part[c]):
            cohort[c] = cohort[c].astype(part[c].dtype)

    # Bouts: one row per participant x action; segments ordered by video (manifest order), then start.
    bouts = base.copy()
    n = np.zeros(P * A, dtype=np.int64)
    total = np.zeros(P * A)
    mean = np.full(P * A, np.nan)
    median = np.full(P * A, np.nan)
    latency = np.full(P * A, np.nan)
    if seg_parts:
        segs = pd.concat(seg_parts, ignore_index=True)
        col_to_a = np.full(C, -1, dtype=np.int64)
        col_to_a[cols] = np.arange(A)
        segs["a"] = col_to_a[segs["col"].to_numpy()]
        segs = segs[segs["a"] >= 0].sort_values(["p", "order", "start_s"], kind="stable")
        segs["key"] = segs["p"] * A + segs["a"]
        g = segs.groupby("key", sort=True)["dur_s"]
        keys = g.size().index.to_numpy()
        n[keys] = g.size().to_numpy()
        total[keys] = g.sum().to_numpy()
        mean[keys] = g.mean().to_numpy()
        median[keys] = g.median().to_numpy()
        latency[keys] = segs.groupby("key", sort=True)["start_s"].first().to_numpy()
    bouts["bouts"] = n
    bouts["total_s"] = total
    bouts["mean_bout_s"] = mean
    bouts["median_bout_s"] = median
    bouts["latency_s"] = latency

    exclusions = pd.DataFrame(excl, columns=["participant_id", "group", "video_id", "scope", "reason"])
    exclusions["video_id"] = exclusions["video_id"].astype(object)
    return CohortTables(cohort=cohort, bouts=bouts, exclusions=exclusions)


def detections_table(segments: pd.DataFrame) -> pd.DataFrame:
    """SEGMENTS rows -> the MMA-52 detection CSV columns ``video_id,t_start,t_end,class,score``.

    ``class`` is the MA-52 taxonomy index (``action_id``); :mod:`pipeline.detection_eval` also accepts
    action names.
    """
    return pd.DataFrame({
        "video_id": segments["video_id"].astype(str),
        "t_start": segments["start_s"].astype(np.float64),
        "t_end": segments["end_s"].astype(np.float64),
        "class": segments["action_id"].astype(np.int64),
        "score": segments["score"].astype(np.float64),
    })
