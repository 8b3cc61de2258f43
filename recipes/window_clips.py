"""Recognition windows of an untrimmed video written as training clips (the prepared-clip format).

A model that reads out untrimmed video is best trained on the very windows inference lays on it
(the window plan), cut and cropped by the recognition stage's own code, boundary windows included.
Two recipes do that: the demo model (labels from the simulator's truth, :mod:`recipes.demo_model`)
and training on a lab's coded videos (labels from human codings, :mod:`recipes.coded_windows`).
This module is the part they share; each decides *which* windows to keep and with which label.

Per video::

    windows = plan.windows(frame_count, fps)                      model.windows.WindowPlan
    rows    [W, T]  keypoint rows of each window's sampled frames (pipeline.recognize.plan.window_rows:
                    a window frame the pose artifact lacks is an error naming the plan it was posed with)
    valid   [W]     share of the sampled frames with a usable pose (detected, not rejected): the
                    recognition stage's ``valid_fraction``; below ``min_valid`` it does not classify

    clip of window w (:func:`write_window_clips`): the window's frames decoded once per video and
    scaled at decode time (pipeline.person_crop.decode_scale), person crop box of its keypoints
    (pipeline.person_crop.person_box, the checkpoint's padding and keypoint threshold), then
    pipeline.person_crop.crop_window -> frames [T, 3, S, S] uint8 + keypoints [T, 33, 3] in their
    pixels, stored as ``clips/<clip id>.npz`` (:func:`model.clips.encode_prepared_clip`, JPEG frames)

so a clip holds exactly the model input the recognition stage builds for that window (its
keypoints bit for bit; its pixels up to the JPEG coding of the prepared format).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.clips import encode_prepared_clip
from model.preprocessing import Preprocessing
from model.windows import Window, WindowPlan
from pipeline.artifacts import atomic_write_bytes
from pipeline.keypoints import Keypoints
from pipeline.person_crop import crop_window, decode_scale, person_box, scale_frame, scaled_size
from pipeline.recognize.plan import posed_frames, window_rows
from pipeline.video import VideoInfo, iter_frames

__all__ = ["VideoWindows", "video_windows", "ChosenWindow", "write_window_clips"]


@dataclass(frozen=True)
class VideoWindows:
    """Every window of one video and its keypoint rows (module docstring)."""

    windows: list[Window]
    rows: np.ndarray       # [W, T] int64 rows of the keypoints table
    valid: np.ndarray      # [W] float32 share of usable-pose sampled frames


def video_windows(plan: WindowPlan, frame_count: int, fps: float, kp: Keypoints, *, video: Path,
                  keypoints_path: Path, meta: dict | None = None) -> VideoWindows:
    """Lay ``plan`` over a video of ``frame_count`` frames and find each window's keypoint rows.

    ``meta``: the keypoints artifact's sidecar (for the error message when frames are missing).
    Raises :class:`pipeline.recognize.plan.InputError` when a window frame was not posed.
    """
    windows = plan.windows(frame_count, fps)
    if not windows:
        return VideoWindows([], np.zeros((0, plan.clip_len), np.int64), np.zeros(0, np.float32))
    frames = np.asarray([w.frames for w in windows], dtype=np.int64)
    rows = window_rows(posed_frames(kp, meta or {}), frames, plan, video=video, keypoints_path=keypoints_path)
    valid = kp.valid[rows].mean(axis=1).astype(np.float32)
    return VideoWindows(windows, rows, valid)


@dataclass(frozen=True)
class ChosenWindow:
    """One window to store: its rows in the keypoints table, label (class index), clip id, extra meta."""

    window: Window
    rows: np.ndarray
    label: int
    clip_id: str
    meta: dict[str, Any] = field(default_factory=dict)


def write_window_clips(video: Path, info: VideoInfo, kp: Keypoints, chosen: Sequence[ChosenWindow], out: Path, *,
                       preprocessing: Preprocessing, threshold: float = 0.3) -> list[dict[str, Any]]:
    """Decode ``video`` once and write one prepared clip per chosen window (module docstring).

    ``threshold``: keypoint confidence for the person box (the checkpoint's ``keypoint_threshold``).
    Returns the manifest records (:mod:`model.clips`: id, file, label, num_frames, height, width,
    video, has_keypoints), in ``chosen``'s order, files under ``out/clips/``.
    """
    if not chosen:
        return []
    combined, usable = kp.combined, kp.valid
    needed = sorted({f for c in chosen for f in c.window.frames})
    bgr = {i: px for i, _, px in iter_frames(video, needed, info=info)}
    scaled: dict[tuple[int, tuple[int, int]], torch.Tensor] = {}
    records = []
    for c in chosen:
        w, rows_w = c.window, c.rows
        box = None
        if preprocessing.region == "person":
            box = person_box(combined[rows_w], usable[rows_w], info.size, padding=preprocessing.person_padding,
                             threshold=threshold)
        size = scaled_size(info.size, decode_scale(preprocessing, info.size, box))
        for f in w.frames:
            if (f, size) not in scaled:
                scaled[(f, size)] = scale_frame(bgr[f], size)
        frames, kp_w = crop_window(torch.stack([scaled[(f, size)] for f in w.frames]),
                                   torch.from_numpy(combined[rows_w].astype(np.float32)), preprocessing,
                                   source_size=info.size, box=box)
        meta = {"video": str(video), "window": w.index, "start_frame": w.start_frame, "end_frame": w.end_frame,
                "box": None if box is None else list(box.as_tuple()), **c.meta}
        pixels = frames.permute(0, 2, 3, 1).numpy()
        atomic_write_bytes(out / "clips" / f"{c.clip_id}.npz",
                           encode_prepared_clip(list(pixels), kp_w.numpy(), np.asarray(w.frames), c.label, meta))
        records.append({"id": c.clip_id, "file": f"clips/{c.clip_id}.npz", "label": int(c.label),
                        "num_frames": len(w.frames), "height": int(pixels.shape[1]), "width": int(pixels.shape[2]),
                        "video": str(video), "has_keypoints": True})
    return records
