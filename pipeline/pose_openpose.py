"""OpenPose JSON import: a folder of per-frame ``*_keypoints.json`` files as a pose backend.

This is the format of the MA-52 release and of many labs' existing pipelines: one JSON file per
frame, ``{"people": [{"pose_keypoints_2d": [x0, y0, c0, x1, y1, c1, ...]}, ...]}`` with 25 BODY_25
joints per person (75 numbers), x/y in source pixels, missing joints 0, 0, 0. One folder holds one
video. The frame index is the last number in the file name before ``_keypoints.json``
(``clip_000000000012_keypoints.json`` is frame 12); files without a number are taken in name order.
OpenPose has no hand-tip or mouth points here, so the extra points are zero and entity boxes fall back
to BODY_25 joints.

Choosing the target person when several are present (``select``):

- ``largest``: the person with the largest box around their joints (confidence > ``min_joint_conf``);
  ties go to the most central.
- ``central``: the person whose joint centroid is closest to the centre of the ROI (or the image).
- ``continuity`` (default): start with ``largest``; on each later frame take the person closest to the
  previous choice (mean displacement of the joints both have, divided by the previous person's box
  diagonal). If nobody is within ``max_jump`` of it (the target left, or was never there), start again
  with ``largest``. Frames with no person keep the previous choice as the reference.

With an ROI, only people whose joint centroid lies inside it are candidates (an examiner beside the
participant is ignored); coordinates stay in full-frame pixels.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.taxonomy import NUM_BODY25

__all__ = [
    "OpenPoseConfig", "OpenPoseError", "SELECT_RULES", "list_frames", "load_people", "select_people", "is_openpose_folder",
    "infer_image_size",
]

_FRAME_RE = re.compile(r"(\d+)_keypoints\.json$")
SELECT_RULES = ("continuity", "largest", "central")


class OpenPoseError(RuntimeError):
    """An OpenPose folder cannot be used. The message starts with the folder's path."""


@dataclass(frozen=True)
class OpenPoseConfig:
    """Settings of the OpenPose JSON backend (recorded in every keypoints sidecar).

    Attributes
    ----------
    select : {"continuity", "largest", "central"}
        Target-person rule (see module docstring).
    min_joint_conf : float
        Joints above this confidence count for a person's box, centroid and displacement.
    max_jump : float
        ``continuity``: largest accepted displacement, as a fraction of the previous box diagonal.
    fps : float
        Frame rate of the source video (JSON files carry none); used for ``time_s``.
    """

    select: str = "continuity"
    min_joint_conf: float = 0.05
    max_jump: float = 0.5
    fps: float = 30.0

    def __post_init__(self) -> None:
        if self.select not in SELECT_RULES:
            raise ValueError(f"unknown person-selection rule {self.select!r}; choose from {', '.join(SELECT_RULES)}")
        if not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")


def is_openpose_folder(path: Path) -> bool:
    return path.is_dir() and any(path.glob("*_keypoints.json"))


def list_frames(folder: str | os.PathLike) -> list[tuple[int, Path]]:
    """The folder's ``(frame index, file)`` pairs in frame order.

    Raises
    ------
    OpenPoseError
        Not a folder, no ``*_keypoints.json`` in it, or two files claiming the same frame.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise OpenPoseError(f"{folder}: not a folder of OpenPose *_keypoints.json files")
    files = sorted(folder.glob("*_keypoints.json"))
    if not files:
        raise OpenPoseError(f"{folder}: no *_keypoints.json files")
    numbered = [(_FRAME_RE.search(f.name), f) for f in files]
    if all(m for m, _ in numbered):
        pairs = sorted((int(m.group(1)), f) for m, f in numbered)
    else:
        pairs = list(enumerate(files))
    seen: dict[int, Path] = {}
    for i, f in pairs:
        if i in seen:
            raise OpenPoseError(f"{folder}: files {seen[i].name} and {f.name} are both frame {i}")
        seen[i] = f
    return pairs


def load_people(file: Path) -> list[np.ndarray]:
    """All people of one frame file as [25, 3] float32 arrays.

    Raises
    ------
    OpenPoseError
        Unreadable JSON, or keypoints that are not BODY_25 (75 numbers).
    """
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise OpenPoseError(f"{file}: not readable as JSON ({exc})") from None
    people = []
    for k, person in enumerate(data.get("people") or []):
        flat = person.get("pose_keypoints_2d") or []
        if len(flat) == 0:
            continue
        if len(flat) != NUM_BODY25 * 3:
            raise OpenPoseError(
                f"{file}: person {k} has {len(flat)} pose_keypoints_2d values, expected {NUM_BODY25 * 3} (BODY_25)"
            )
        arr = np.asarray(flat, dtype=np.float32).reshape(NUM_BODY25, 3)
        arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
        arr[:, 2] = np.clip(arr[:, 2], 0.0, 1.0)
        arr[arr[:, 2] <= 0] = 0.0  # contract: a missing joint is exactly 0, 0, 0
        people.append(arr)
    return people


def _visible(p: np.ndarray, thr: float) -> np.ndarray:
    return p[:, 2] > thr


def _box(p: np.ndarray, thr: float) -> tuple[float, float, float, float] | None:
    v = _visible(p, thr)
    if v.sum() == 0:
        return None
    xy = p[v, :2]
    x1, y1 = xy.min(axis=0)
    x2, y2 = xy.max(axis=0)
    return float(x1), float(y1), float(x2), float(y2)


def _centroid(p: np.ndarray, thr: float) -> np.ndarray | None:
    v = _visible(p, thr)
    return p[v, :2].mean(axis=0) if v.any() else None


def _in_roi(p: np.ndarray, roi: tuple[int, int, int, int] | None, thr: float) -> bool:
    c = _centroid(p, thr)
    if c is None:
        return False
    if roi is None:
        return True
    x, y, w, h = roi
    return x <= c[0] < x + w and y <= c[1] < y + h


def _area(p: np.ndarray, thr: float) -> float:
    b = _box(p, thr)
    return 0.0 if b is None else (b[2] - b[0]) * (b[3] - b[1])


def _pick(people: list[np.ndarray], rule: str, centre: np.ndarray, thr: float) -> int:
    dist = [float(np.linalg.norm(_centroid(p, thr) - centre)) for p in people]
    if rule == "central":
        return int(np.argmin(dist))
    # largest; ties (equal area) go to the most central
    return int(min(range(len(people)), key=lambda i: (-_area(people[i], thr), dist[i])))


def _displacement(p: np.ndarray, prev: np.ndarray, thr: float) -> float:
    both = _visible(p, thr) & _visible(prev, thr)
    b = _box(prev, thr)
    if not both.any() or b is None:
        return math.inf
    diag = max(math.hypot(b[2] - b[0], b[3] - b[1]), 1.0)
    return float(np.linalg.norm(p[both, :2] - prev[both, :2], axis=1).mean() / diag)


def select_people(
    frames: list[list[np.ndarray]],
    config: OpenPoseConfig,
    *,
    image_size: tuple[int, int],
    roi: tuple[int, int, int, int] | None = None,
) -> list[int | None]:
    """Index of the target person in each frame (None where no candidate), by ``config.select``.

    Parameters
    ----------
    frames : list over frames of lists of [25, 3] arrays
    config : OpenPoseConfig
    image_size : (width, height), for the centre used by ``central`` and tie-breaks
    roi : (x, y, w, h), optional; only people with their centroid inside are candidates
    """
    thr = config.min_joint_conf
    if roi is not None:
        centre = np.array([roi[0] + roi[2] / 2, roi[1] + roi[3] / 2])
    else:
        centre = np.array([image_size[0] / 2, image_size[1] / 2])
    chosen: list[int | None] = []
    prev: np.ndarray | None = None
    for people in frames:
        cand = [i for i, p in enumerate(people) if _in_roi(p, roi, thr)]
        if not cand:
            chosen.append(None)
            continue
        sub = [people[i] for i in cand]
        if config.select == "continuity" and prev is not None:
            d = [_displacement(p, prev, thr) for p in sub]
            k = int(np.argmin(d))
            if d[k] > config.max_jump:
                k = _pick(sub, "largest", centre, thr)
        else:
            k = _pick(sub, "largest" if config.select == "continuity" else config.select, centre, thr)
        chosen.append(cand[k])
        prev = sub[k]
    return chosen


def infer_image_size(frames: list[list[np.ndarray]]) -> tuple[int, int]:
    """A stand-in image size when none is given: the extent of all joints, rounded up (at least 1x1)."""
    xs, ys = [1.0], [1.0]
    for people in frames:
        for p in people:
            v = p[:, 2] > 0
            if v.any():
                xs.append(float(p[v, 0].max()) + 1)
                ys.append(float(p[v, 1].max()) + 1)
    return int(math.ceil(max(xs))), int(math.ceil(max(ys)))
