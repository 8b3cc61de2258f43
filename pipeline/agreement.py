"""Frame-level agreement of percent time with per-frame ground truth (the clinician's error measure).

Ground truth (CSV or Parquet, or a folder of such files), one row per frame and action shown::

    video_id,frame,action
    p007_a,0,
    p007_a,1,nodding
    p007_a,1,shaking legs      <- co-occurring actions: one row each
    p007_a,2,nodding

- ``frame``: 0-based frame index of the decoded video (as in the WINDOWS contract);
- ``action``: MA-52 action name or taxonomy index; empty / null = no micro-action. Frames not listed
  count as no micro-action, but every video read out must appear at least once (a missing video is
  more likely a missing file than a video without micro-actions).
- Actions of MA-52 the model does not have are ignored (they cannot be compared); other names are errors.

Per participant p and action a, over the frames the read-out counts (valid frames, pooled over the
participant's videos)::

    true_pct[p, a] = 100 * valid frames labelled a in the truth / valid frames
    pred_pct[p, a] = 100 * valid frames inside final segments of a / valid frames   (= cohort percent_time)
    MAE[a]  = mean_p |pred_pct - true_pct|          in percentage points
    bias[a] = mean_p (pred_pct - true_pct)
    engagement_disagree[a] = share of participants with (pred_pct > 0) != (true_pct > 0)
                             (the outcome of the hurdle's first part, "any engagement", read wrongly)

The truth is measured on the read-out's valid frames, so the error is that of the labelling, not of
which frames had a usable pose.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from model.preprocessing import ClassList
from model.taxonomy import MA52
from pipeline.cli import BadInput
from pipeline.manifest import Manifest

__all__ = ["read_frame_truth", "FrameTruth", "index_frame_truth", "percent_time_agreement"]


def _read_one(path: Path) -> pd.DataFrame:
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype={"video_id": str, "action": str}, keep_default_na=False)
    except Exception as exc:  # pyarrow / pandas raise several unrelated types
        raise BadInput(f"{path}: cannot read the ground truth ({type(exc).__name__}: {exc})") from None


def read_frame_truth(path: str | os.PathLike) -> pd.DataFrame:
    """Read per-frame ground truth: a CSV/Parquet file, or a folder of them (e.g. one per participant,
    as the simulator writes ``truth/frames/``). Returns video_id (str), frame (int64), action (str or None).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"ground truth not found: {path}")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".parquet", ".pq", ".csv"))
        if not files:
            raise BadInput(f"{path}: no .parquet or .csv ground-truth files in the folder")
        df = pd.concat([_read_one(p) for p in files], ignore_index=True)
    else:
        df = _read_one(path)
    missing = [c for c in ("video_id", "frame", "action") if c not in df.columns]
    if missing:
        raise BadInput(f"{path}: missing column {missing[0]!r} (required: video_id, frame, action)")
    frame = pd.to_numeric(df["frame"], errors="coerce")
    bad = np.flatnonzero(~(frame.notna() & (frame >= 0) & (frame == np.floor(frame))).to_numpy())
    if bad.size:
        raise BadInput(f"{path}: row {int(bad[0])}: frame {df['frame'].iloc[bad[0]]!r} is not an integer >= 0")
    action = df["action"].map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v))
                              or str(v).strip() == "" else str(v).strip())
    return pd.DataFrame({"video_id": df["video_id"].astype(str), "frame": frame.astype(np.int64), "action": action})


def _class_columns(actions: pd.Series, classes: ClassList, source: str) -> np.ndarray:
    """Column of the class list per truth row; -1 for no action or an MA-52 action the model lacks."""
    by_name = {n: i for i, n in enumerate(classes.names) if classes.taxonomy_ids[i] is not None}
    by_id = {str(t): i for i, t in enumerate(classes.taxonomy_ids) if t is not None}
    known = set(MA52.actions) | {str(i) for i in range(len(MA52.actions))}
    uniq = pd.unique(actions.dropna())
    lookup = {}
    for a in uniq:
        if a in by_name:
            lookup[a] = by_name[a]
        elif a in by_id:
            lookup[a] = by_id[a]
        elif a in known:
            lookup[a] = -1
        else:
            row = int(np.flatnonzero((actions == a).to_numpy())[0])
            raise BadInput(f"{source}: row {row}: action {a!r} is not an MA-52 action name or index")
    return actions.map(lambda a: -1 if a is None or a is np.nan or (isinstance(a, float) and np.isnan(a)) else lookup[a]).to_numpy(dtype=np.int64)


@dataclass(frozen=True)
class FrameTruth:
    """Per-frame truth indexed for one class list: video_id -> its distinct (frame, class column) pairs
    [n, 2] (rows with no action, or an MA-52 action the class list lacks, left out)."""

    classes: ClassList
    pairs: dict[str, np.ndarray]
    source: str = "ground truth"


def index_frame_truth(truth: pd.DataFrame, classes: ClassList, *, source: str = "ground truth") -> FrameTruth:
    """Index :func:`read_frame_truth`'s table once, for comparing many read-outs with it (calibration).

    Raises BadInput naming the row of an action that is not an MA-52 name or index.
    """
    truth = truth.reset_index(drop=True)
    col = _class_columns(truth["action"], classes, source)
    frames = truth["frame"].to_numpy(dtype=np.int64)
    pairs = {}
    for vid, idx in truth.groupby("video_id", sort=False).indices.items():
        f, c = frames[idx], col[idx]
        keep = c >= 0
        pairs[vid] = (np.unique(np.stack([f[keep], c[keep]], axis=1), axis=0) if keep.any()
                      else np.zeros((0, 2), np.int64))
    return FrameTruth(classes, pairs, source)


def percent_time_agreement(
    truth: pd.DataFrame | FrameTruth, manifest: Manifest, readouts: dict, classes: ClassList, *,
    source: str = "ground truth",
) -> pd.DataFrame:
    """Per action: MAE / bias / max |error| of percent time across participants, in percentage points.

    Parameters
    ----------
    truth : from :func:`read_frame_truth`, or that table indexed by :func:`index_frame_truth` for ``classes``
    manifest : the cohort manifest (which videos belong to which participant)
    readouts : video_id -> :class:`pipeline.readout.VideoReadout` (videos without valid frames are skipped)
    classes : the model's class list

    Returns
    -------
    DataFrame with columns action_id, action, n_participants, mae_pp, bias_pp, max_abs_pp,
    engagement_disagree, mean_true_pct, mean_pred_pct (one row per action of the class list, background excluded).
    """
    if not isinstance(truth, FrameTruth):
        truth = index_frame_truth(truth, classes, source=source)
    elif truth.classes != classes:
        raise ValueError("the indexed truth was built for another class list")
    source = truth.source
    C = len(classes)
    cols = np.array([i for i, t in enumerate(classes.taxonomy_ids) if t is not None], dtype=np.int64)

    true_rows, pred_rows = [], []
    for pid, vids in manifest.videos.groupby("participant_id", sort=False):
        valid_tot, t_counts, p_counts = 0, np.zeros(C), np.zeros(C)
        for vid in vids["video_id"]:
            r = readouts.get(vid)
            if r is None or r.valid_frames == 0:
                continue
            if vid not in truth.pairs:
                raise BadInput(f"{source}: no rows for video {vid!r} (participant {pid!r})")
            f, c = truth.pairs[vid].T
            inside = f < r.valid.size
            t_counts += np.bincount(c[inside][r.valid[f[inside]]], minlength=C)
            p_counts += r.frames_in_segments(C)
            valid_tot += r.valid_frames
        if valid_tot:
            true_rows.append(100.0 * t_counts[cols] / valid_tot)
            pred_rows.append(100.0 * p_counts[cols] / valid_tot)
    P = len(true_rows)
    t = np.asarray(true_rows).reshape(P, cols.size)
    p = np.asarray(pred_rows).reshape(P, cols.size)
    err = p - t
    with np.errstate(invalid="ignore"):
        return pd.DataFrame({
            "action_id": np.array([classes.taxonomy_ids[i] for i in cols], dtype=np.int64),
            "action": [classes.names[i] for i in cols],
            "n_participants": P,
            "mae_pp": np.abs(err).mean(axis=0) if P else np.nan,
            "bias_pp": err.mean(axis=0) if P else np.nan,
            "max_abs_pp": np.abs(err).max(axis=0) if P else np.nan,
            "engagement_disagree": ((p > 0) != (t > 0)).mean(axis=0) if P else np.nan,
            "mean_true_pct": t.mean(axis=0) if P else np.nan,
            "mean_pred_pct": p.mean(axis=0) if P else np.nan,
        })
