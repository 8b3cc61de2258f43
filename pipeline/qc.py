"""Pose quality control: the per-frame plausibility check and the per-run QC table.

Per frame (:func:`implausible`): a detected skeleton is *rejected* (all keypoints zeroed,
``rejected=True``) when its shoulders and hips are all present and

- **collapsed**: the box around both shoulders and both hips is smaller, on its longer side, than
  ``min_body_frac`` of the image diagonal (BlazePose can return a skeleton shrunk to a point with
  high confidence when it has no real body to fit), or
- **hips not below shoulders**: the mid-hip is less than ``min_torso_ratio`` x shoulder width below the
  mid-shoulder (image y grows downwards). Seen with head-and-shoulders framing, where BlazePose folds
  the hips up onto the chest.

The check uses the backend's raw coordinates, including joints it extrapolated outside the image
(whose confidence the backend then sets to 0), because a correct extrapolation below the frame is
exactly what a plausible head-and-shoulders skeleton looks like. When one of the four joints is
absent (OpenPose gives 0,0,0 for what it cannot see) the check is not applicable and the frame is kept.

Per video (:func:`qc_row`, :func:`failed_row`), one row of ``qc.parquet`` / ``qc.csv``. The stage
runner (:func:`pipeline.stage.write_qc_table`) merges each run's rows into the table, so it holds one
row per video ever processed into the folder:

============================ ==========================================================================
column                       meaning
============================ ==========================================================================
video_id, source             artifact name and input path
status                       ``ok`` (posed now), ``skipped`` (up to date), ``failed``
error                        the per-video error message (failed only)
frames_total                 frames in the video (:func:`pipeline.video.probe`)
frames_posed                 frames pose was run on (all, or those the windows sample)
detected_fraction            share of posed frames with a person detected
valid_fraction               share with a person detected and not rejected
rejected_frames              number of rejected frames (and ``rejected_fraction``)
vis_<entity>                 share of posed frames in which :func:`model.entities.entity_boxes`
                             gives the entity a box of its own (>= 2 joints with confidence > 0.3)
flags                        ``;``-separated: ``low_detection`` (valid_fraction < min_detected),
                             ``many_rejected`` (rejected_fraction > max_rejected),
                             ``low_<entity>`` (vis below min_entity_visibility), ``failed``,
                             ``truncated`` (failed: the video ends before the frame count its
                             container states; no keypoints are kept for it)
seconds                      wall time spent on the video
updated                      UTC time of the run that wrote the row
============================ ==========================================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from model.taxonomy import BODY25_JOINTS, ENTITY_LAYOUTS
from model.entities import entity_boxes
from pipeline.keypoints import Keypoints

__all__ = ["PlausibilityConfig", "QCConfig", "implausible", "qc_row", "failed_row", "entity_column"]

_RSH, _LSH = BODY25_JOINTS.index("RShoulder"), BODY25_JOINTS.index("LShoulder")
_RHIP, _LHIP = BODY25_JOINTS.index("RHip"), BODY25_JOINTS.index("LHip")


@dataclass(frozen=True)
class PlausibilityConfig:
    """Thresholds of the per-frame anatomical plausibility check (see module docstring)."""

    enabled: bool = True
    min_torso_ratio: float = 0.5
    min_body_frac: float = 0.02


@dataclass(frozen=True)
class QCConfig:
    """Thresholds for the per-video QC flags."""

    layout: str = "ma52"
    min_detected: float = 0.8
    max_rejected: float = 0.1
    min_entity_visibility: float = 0.5

    def __post_init__(self) -> None:
        if self.layout not in ENTITY_LAYOUTS:
            raise ValueError(f"unknown entity layout {self.layout!r}; choose from {sorted(ENTITY_LAYOUTS)}")


def implausible(
    body25_raw: np.ndarray, present: np.ndarray, image_size: tuple[int, int], config: PlausibilityConfig
) -> str | None:
    """Why a detected skeleton is anatomically implausible, or None when it passes.

    Parameters
    ----------
    body25_raw : array [25, >=2]
        Joint x, y in pixels as the backend returned them (before out-of-image zeroing).
    present : array of bool [25]
        Whether the backend returned each joint at all.
    image_size : (width, height)
    config : PlausibilityConfig

    Returns
    -------
    str or None
        ``"collapsed"`` or ``"hips not below shoulders"``; None when plausible or not checkable.
    """
    if not config.enabled:
        return None
    idx = [_RSH, _LSH, _RHIP, _LHIP]
    if not all(bool(present[i]) for i in idx):
        return None
    pts = np.asarray(body25_raw, dtype=np.float64)[idx, :2]
    diag = math.hypot(*image_size)
    extent = pts.max(axis=0) - pts.min(axis=0)
    if max(extent) < config.min_body_frac * diag:
        return "collapsed"
    shoulder_w = float(np.linalg.norm(pts[0] - pts[1]))
    mid_sh_y = (pts[0, 1] + pts[1, 1]) / 2
    mid_hip_y = (pts[2, 1] + pts[3, 1]) / 2
    if mid_hip_y - mid_sh_y < config.min_torso_ratio * shoulder_w:
        return "hips not below shoulders"
    return None


def entity_column(name: str) -> str:
    """QC column name of an entity's visibility, e.g. ``vis_left_hand``."""
    return "vis_" + name.replace(" ", "_")


def qc_row(
    video_id: str,
    source: str,
    kp: Keypoints,
    image_size: tuple[int, int],
    *,
    frames_total: int,
    config: QCConfig = QCConfig(),
    status: str = "ok",
    seconds: float = float("nan"),
) -> dict:
    """The QC record of one successfully posed video (see module docstring for the columns)."""
    layout = ENTITY_LAYOUTS[config.layout]
    n = len(kp)
    row: dict = {
        "video_id": video_id,
        "source": source,
        "status": status,
        "error": None,
        "frames_total": int(frames_total),
        "frames_posed": int(n),
    }
    flags: list[str] = []
    if n == 0:
        row.update(detected_fraction=0.0, valid_fraction=0.0, rejected_frames=0, rejected_fraction=0.0)
        row.update({entity_column(e): 0.0 for e in layout.names})
        flags.append("low_detection")
    else:
        rejected = int(kp.rejected.sum())
        row.update(
            detected_fraction=float(kp.detected.mean()),
            valid_fraction=float(kp.valid.mean()),
            rejected_frames=rejected,
            rejected_fraction=rejected / n,
        )
        own = np.asarray(entity_boxes(kp.combined, image_size, layout=layout).own)
        for k, name in enumerate(layout.names):
            vis = float(own[:, k].mean())
            row[entity_column(name)] = vis
            if vis < config.min_entity_visibility:
                flags.append("low_" + name.replace(" ", "_"))
        if row["valid_fraction"] < config.min_detected:
            flags.insert(0, "low_detection")
        if row["rejected_fraction"] > config.max_rejected:
            flags.insert(1 if flags and flags[0] == "low_detection" else 0, "many_rejected")
    row["flags"] = ";".join(flags)
    row["seconds"] = float(seconds)
    return row


def failed_row(video_id: str, source: str, error: str, *, layout: str = "ma52", seconds: float = float("nan")) -> dict:
    """The QC record of a video that could not be processed."""
    row: dict = {
        "video_id": video_id, "source": source, "status": "failed", "error": error,
        "frames_total": 0, "frames_posed": 0, "detected_fraction": float("nan"),
        "valid_fraction": float("nan"), "rejected_frames": 0, "rejected_fraction": float("nan"),
    }
    row.update({entity_column(e): float("nan") for e in ENTITY_LAYOUTS[layout].names})
    row["flags"] = "failed"
    row["seconds"] = float(seconds)
    return row
