"""Pose backends behind one protocol: one input (a video, an OpenPose JSON folder) -> Keypoints.

A backend (:class:`PoseBackend`) knows what an input looks like (:meth:`find_inputs`), how to hash
it (:meth:`input_hash`), which of the run's settings its keypoints depend on (:meth:`settings`, the
part of the config hash that is the backend's), how to pose it (:meth:`pose`: keypoints in source
pixels plus the sidecar's ``video`` record) and which video, if any, overlays are drawn on
(:meth:`overlay_video`). The pose stage (:mod:`pipeline.pose`) looks a backend up by name in
:data:`BACKENDS` and never branches on the name itself. To add one, implement the protocol, add it
to :data:`BACKENDS` and its name to :data:`pipeline.pose_config.BACKEND_NAMES`.

- ``mediapipe``: BlazePose on decoded frames (:mod:`pipeline.pose_mediapipe`). Frames are decoded,
  cropped to the ROI and converted to RGB in a decoding thread a few frames ahead
  (:func:`pipeline.video.iter_frames` with ``prefetch``), so decoding overlaps pose. A video that
  ends before the frame count its container states fails (:class:`pipeline.video.TruncatedVideo`).
- ``openpose-json``: import of per-frame OpenPose JSON files (:mod:`pipeline.pose_openpose`).

Both apply the plausibility check (:func:`pipeline.qc.implausible`) per frame: a rejected frame keeps
``detected=True``, ``rejected=True`` and all-zero keypoints.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from model.taxonomy import NUM_BODY25, NUM_EXTRA
from pipeline.artifacts import sha256_file, sha256_files
from pipeline.cli import BadInput
from pipeline.keypoints import Keypoints
from pipeline.pose_config import BACKEND_NAMES, PoseConfig
from pipeline.pose_mediapipe import BODY25_FROM_BLAZEPOSE, MediaPipePose, blazepose_to_body25
from pipeline.pose_openpose import infer_image_size, is_openpose_folder, list_frames, load_people, select_people
from pipeline.qc import PlausibilityConfig, implausible
from pipeline.roi import Roi, clip_roi
from pipeline.video import VIDEO_SUFFIXES, VideoError, iter_frames, probe

__all__ = ["PoseBackend", "MediaPipeBackend", "OpenPoseBackend", "BACKENDS", "get_backend", "PREFETCH_FRAMES"]

log = logging.getLogger("pipeline.pose")

PREFETCH_FRAMES = 4  # decoded frames queued ahead of pose (memory: 4 frames)

# BlazePose returns every joint it maps (small toes excepted), inside the image or not.
_MP_PRESENT = np.array([s is not None for s in BODY25_FROM_BLAZEPOSE])


@runtime_checkable
class PoseBackend(Protocol):
    """What the pose stage needs from a backend."""

    name: str

    def settings(self, config: PoseConfig) -> Any:
        """The backend's part of the config hash (JSON-able; dataclasses ok)."""

    def find_inputs(self, path: Path) -> list[Path]:
        """The inputs a command-line path stands for (raise BadInput when it stands for none)."""

    def input_hash(self, source: Path) -> str:
        """sha256 of the input's content (raise VideoError/OpenPoseError for an unusable input)."""

    def pose(self, source: Path, config: PoseConfig, roi: Roi | None) -> tuple[Keypoints, dict]:
        """Keypoints of the target person and the sidecar's ``video`` record."""

    def overlay_video(self, source: Path) -> Path | None:
        """The video overlays are drawn on (None: a black canvas)."""


def reject_implausible(
    body: np.ndarray, raw: np.ndarray, present: np.ndarray, size: tuple[int, int], cfg: PlausibilityConfig
) -> bool:
    """Apply the plausibility check in place; True when the frame is rejected (``body`` zeroed)."""
    if implausible(raw, present, size, cfg) is None:
        return False
    body[:] = 0.0
    return True


class MediaPipeBackend:
    """BlazePose on the frames of a video file."""

    name = "mediapipe"

    def settings(self, config: PoseConfig) -> Any:
        return config.mediapipe

    def find_inputs(self, path: Path) -> list[Path]:
        if path.is_dir():
            return sorted(f for f in path.iterdir() if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES)
        if path.exists() or path.suffix.lower() in VIDEO_SUFFIXES:
            return [path]  # a file is taken as given, so a broken one is reported, not dropped
        raise BadInput(f"{path}: no such file or folder")

    def input_hash(self, source: Path) -> str:
        if not source.exists():
            raise VideoError(source, "file not found")
        if source.is_dir():
            raise VideoError(source, "is a folder, not a video file")
        return sha256_file(source)

    def overlay_video(self, source: Path) -> Path | None:
        return source

    def pose(self, source: Path, config: PoseConfig, roi: Roi | None) -> tuple[Keypoints, dict]:
        info = probe(source)
        rx, ry, rw, rh = clip_roi(roi, info.size, str(source))
        crop = None if (rx, ry, rw, rh) == (0, 0, *info.size) else (rx, ry, rw, rh)
        wanted = config.plan.sampled_frames(info.frame_count, info.fps) if config.frames == "sampled" else None
        n_req = info.frame_count if wanted is None else len(wanted)
        frame_indices, times, bodies, extras, detected, rejected = [], [], [], [], [], []
        offset = np.array([rx, ry], np.float32)
        plaus = config.plausibility
        # decoding starts now, in its thread, and overlaps loading the BlazePose graph
        decoded = iter_frames(source, wanted, color="rgb", crop=crop, fps=info.fps, info=info, prefetch=PREFETCH_FRAMES)
        with decoded, MediaPipePose(config.mediapipe) as pose:
            for index, t, rgb in decoded:
                lm = pose.landmarks(rgb)
                if lm is None:
                    body = np.zeros((NUM_BODY25, 3), np.float32)
                    extra = np.zeros((NUM_EXTRA, 3), np.float32)
                    rej = False
                else:
                    body, extra, raw = blazepose_to_body25(lm, (rw, rh))
                    # back to full-frame pixels; missing joints stay exactly (0, 0, 0)
                    for arr in (body, extra):
                        arr[arr[:, 2] > 0, :2] += offset
                    raw[:, :2] += offset
                    rej = reject_implausible(body, raw, _MP_PRESENT, info.size, plaus)
                    if rej:
                        extra[:] = 0.0
                frame_indices.append(index)
                times.append(t)
                bodies.append(body)
                extras.append(extra)
                detected.append(lm is not None)
                rejected.append(rej)
        if not frame_indices:
            raise VideoError(source, "no frame could be decoded")
        n = len(frame_indices)
        if wanted is None and n > info.frame_count:
            # The whole file was read and it holds more frames than probed: trust the decoder.
            log.warning("%s: decoded %d frames, the container said %d", source, n, info.frame_count)
            info = dataclasses.replace(info, frame_count=n, duration_s=n / info.fps)
            n_req = n
        kp = Keypoints(
            frames=np.asarray(frame_indices, np.int64), time_s=np.asarray(times, np.float64),
            body25=np.stack(bodies), extra=np.stack(extras),
            detected=np.asarray(detected, bool), rejected=np.asarray(rejected, bool),
            fps=info.fps, size=info.size,
        )
        meta = info.to_dict() | {
            "roi": [rx, ry, rw, rh], "frames_mode": config.frames, "frames_requested": int(n_req),
            "frames_missing": int(n_req - n),
        }
        return kp, meta


class OpenPoseBackend:
    """Import of a folder of per-frame OpenPose ``*_keypoints.json`` files (one folder = one video)."""

    name = "openpose-json"

    def settings(self, config: PoseConfig) -> Any:
        return {"openpose": config.openpose, "size": config.openpose_size}

    def find_inputs(self, path: Path) -> list[Path]:
        if is_openpose_folder(path):
            return [path]
        if path.is_dir():
            return sorted(d for d in path.iterdir() if is_openpose_folder(d))
        raise BadInput(f"{path}: not a folder of OpenPose *_keypoints.json files (or of such folders)")

    def input_hash(self, source: Path) -> str:
        return sha256_files(f for _, f in list_frames(source))

    def overlay_video(self, source: Path) -> Path | None:
        return None

    def pose(self, source: Path, config: PoseConfig, roi: Roi | None) -> tuple[Keypoints, dict]:
        pairs = list_frames(source)
        frame_count = pairs[-1][0] + 1
        fps = config.openpose.fps
        if config.frames == "sampled":
            keep = set(int(i) for i in config.plan.sampled_frames(frame_count, fps))
            pairs = [(i, f) for i, f in pairs if i in keep]
        people = [load_people(f) for _, f in pairs]
        size = config.openpose_size or infer_image_size(people)
        choice = select_people(people, config.openpose, image_size=size, roi=roi)
        n = len(pairs)
        body = np.zeros((n, NUM_BODY25, 3), np.float32)
        rejected = np.zeros(n, bool)
        for k, c in enumerate(choice):
            if c is None:
                continue
            body[k] = people[k][c]
            present = body[k, :, 2] > 0
            rejected[k] = reject_implausible(body[k], body[k].copy(), present, size, config.plausibility)
        frame_indices = np.asarray([i for i, _ in pairs], np.int64)
        kp = Keypoints(
            frames=frame_indices, time_s=frame_indices / fps, body25=body, extra=np.zeros((n, NUM_EXTRA, 3), np.float32),
            detected=np.asarray([c is not None for c in choice], bool), rejected=rejected, fps=fps, size=size,
        )
        meta = {
            "path": str(source), "width": int(size[0]), "height": int(size[1]), "fps": fps,
            "frame_count": int(frame_count), "duration_s": frame_count / fps, "rotation": 0,
            "roi": list(roi) if roi else None, "frames_mode": config.frames, "frames_requested": n,
            "frames_missing": 0, "size_inferred": config.openpose_size is None,
        }
        return kp, meta


BACKENDS: dict[str, PoseBackend] = {b.name: b for b in (MediaPipeBackend(), OpenPoseBackend())}
assert tuple(BACKENDS) == BACKEND_NAMES


def get_backend(name: str) -> PoseBackend:
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}") from None
