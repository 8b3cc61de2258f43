"""Overlays for a human to check pose: skeleton, extra points and entity boxes drawn on the frames.

- ``overlays/<video_id>.png``: a contact sheet of up to 12 posed frames spread over the video.
- ``overlays/<video_id>.mp4``: every posed frame (with ``--frames sampled`` only the sampled ones,
  played at a proportionally lower rate), MPEG-4 Part 2 (``mp4v``, the encoder OpenCV's wheel has).

Drawing: BODY_25 limbs in green (person's left) / orange (person's right) / white (midline), joints
with confidence <= 0.3 are not drawn (the entity-box threshold); entity boxes from
:func:`model.entities.entity_boxes`, thick when the frame has its own box, thin when carried over;
the ROI in grey; a label with the frame number and "no person" / "rejected" where that applies. For
OpenPose input without a video the drawing is on a black canvas of the source size.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from model.taxonomy import KEYPOINT_NAMES, MA52_ENTITIES, EntityLayout
from pipeline.artifacts import atomic_write_bytes
from model.entities import DEFAULT_THRESHOLD, entity_boxes
from pipeline.keypoints import Keypoints
from pipeline.video import iter_frames

__all__ = ["draw_frame", "contact_sheet", "overlay_video", "write_overlays", "LIMBS"]


def _pairs(*names: tuple[str, str]) -> tuple[tuple[int, int], ...]:
    return tuple((KEYPOINT_NAMES.index(a), KEYPOINT_NAMES.index(b)) for a, b in names)


LIMBS = _pairs(
    ("Neck", "MidHip"), ("Neck", "Nose"), ("Nose", "REye"), ("Nose", "LEye"), ("REye", "REar"), ("LEye", "LEar"),
    ("Neck", "RShoulder"), ("RShoulder", "RElbow"), ("RElbow", "RWrist"),
    ("Neck", "LShoulder"), ("LShoulder", "LElbow"), ("LElbow", "LWrist"),
    ("MidHip", "RHip"), ("RHip", "RKnee"), ("RKnee", "RAnkle"), ("RAnkle", "RHeel"), ("RAnkle", "RBigToe"),
    ("RBigToe", "RSmallToe"),
    ("MidHip", "LHip"), ("LHip", "LKnee"), ("LKnee", "LAnkle"), ("LAnkle", "LHeel"), ("LAnkle", "LBigToe"),
    ("LBigToe", "LSmallToe"),
    ("RWrist", "RPinky"), ("RWrist", "RIndex"), ("RWrist", "RThumb"),
    ("LWrist", "LPinky"), ("LWrist", "LIndex"), ("LWrist", "LThumb"), ("MouthL", "MouthR"),
)
"""Segments drawn between points of the combined 33-point array."""

_BOX_COLOURS = ((255, 80, 80), (255, 200, 0), (0, 220, 0), (0, 140, 255), (220, 0, 220), (0, 230, 230))


def _side_colour(name: str) -> tuple[int, int, int]:
    if name.startswith("L") and name[1:2].isupper() or name == "MouthL":
        return (60, 220, 60)
    if name.startswith("R") and name[1:2].isupper() or name == "MouthR":
        return (0, 150, 255)
    return (255, 255, 255)


def draw_frame(
    image: np.ndarray,
    points: np.ndarray,
    boxes: np.ndarray | None = None,
    own: np.ndarray | None = None,
    names: Sequence[str] = (),
    *,
    label: str = "",
    roi: Sequence[int] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> np.ndarray:
    """Draw one frame's skeleton (``points`` [33 or 25, 3]) and entity ``boxes`` [K, 4] on a copy."""
    img = image.copy()
    scale = max(1, int(round(max(img.shape[:2]) / 640)))
    if roi is not None:
        x, y, w, h = (int(v) for v in roi)
        cv2.rectangle(img, (x, y), (x + w - 1, y + h - 1), (128, 128, 128), scale)
    if boxes is not None:
        for k, b in enumerate(boxes):
            colour = _BOX_COLOURS[k % len(_BOX_COLOURS)]
            thick = 2 * scale if own is None or own[k] else max(1, scale // 2)
            p1, p2 = (int(b[0]), int(b[1])), (int(b[2]), int(b[3]))
            cv2.rectangle(img, p1, p2, colour, thick)
            if k < len(names):
                cv2.putText(img, names[k], (p1[0] + 2, p1[1] + 12 * scale), cv2.FONT_HERSHEY_SIMPLEX,
                            0.4 * scale, colour, max(1, scale // 2), cv2.LINE_AA)
    n = len(points)
    vis = points[:, 2] > threshold
    for a, b in LIMBS:
        if a < n and b < n and vis[a] and vis[b]:
            pa, pb = tuple(int(v) for v in points[a, :2]), tuple(int(v) for v in points[b, :2])
            cv2.line(img, pa, pb, _side_colour(KEYPOINT_NAMES[b]), 2 * scale, cv2.LINE_AA)
    for j in np.flatnonzero(vis):
        cv2.circle(img, (int(points[j, 0]), int(points[j, 1])), 3 * scale, _side_colour(KEYPOINT_NAMES[j]), -1, cv2.LINE_AA)
    if label:
        cv2.putText(img, label, (8 * scale, 24 * scale), cv2.FONT_HERSHEY_SIMPLEX, 0.7 * scale, (0, 0, 0), 4 * scale, cv2.LINE_AA)
        cv2.putText(img, label, (8 * scale, 24 * scale), cv2.FONT_HERSHEY_SIMPLEX, 0.7 * scale, (255, 255, 255), scale, cv2.LINE_AA)
    return img


def _label(kp: Keypoints, i: int) -> str:
    state = "" if kp.valid[i] else (" rejected" if kp.rejected[i] else " no person")
    return f"frame {int(kp.frames[i])}{state}"


def _frames(video: Path | None, kp: Keypoints, rows: Sequence[int], size: tuple[int, int]):
    """Yield (row, image) for the given keypoint rows, decoded from the video or a black canvas."""
    if video is None:
        blank = np.zeros((size[1], size[0], 3), np.uint8)
        for r in rows:
            yield r, blank
        return
    row_of = {int(kp.frames[r]): r for r in rows}
    # the pose stage has already checked the file decodes completely: no second read to its end
    for index, _t, image in iter_frames(video, sorted(row_of), check_complete=False):
        yield row_of[index], image


def contact_sheet(
    video: Path | None, kp: Keypoints, size: tuple[int, int], out: Path, *, layout: EntityLayout = MA52_ENTITIES,
    roi: Sequence[int] | None = None, count: int = 12, columns: int = 4, thumb_width: int = 360,
) -> Path:
    """Write a PNG grid of ``count`` evenly spread posed frames; returns its path."""
    if len(kp) == 0:
        raise ValueError("no posed frames to draw")
    eb = entity_boxes(kp.combined, size, layout=layout)
    rows = sorted(set(np.linspace(0, len(kp) - 1, min(count, len(kp))).round().astype(int).tolist()))
    thumb_h = int(round(thumb_width * size[1] / size[0]))
    tiles = {}
    for r, image in _frames(video, kp, rows, size):
        drawn = draw_frame(image, kp.combined[r], eb.boxes[r], eb.own[r], layout.names, label=_label(kp, r), roi=roi)
        tiles[r] = cv2.resize(drawn, (thumb_width, thumb_h), interpolation=cv2.INTER_AREA)
    cols = min(columns, len(rows))
    grid_rows = -(-len(rows) // cols)
    sheet = np.zeros((grid_rows * thumb_h, cols * thumb_width, 3), np.uint8)
    for k, r in enumerate(rows):
        if r in tiles:
            y, x = divmod(k, cols)
            sheet[y * thumb_h : (y + 1) * thumb_h, x * thumb_width : (x + 1) * thumb_width] = tiles[r]
    ok, png = cv2.imencode(".png", sheet)
    if not ok:
        raise RuntimeError(f"could not encode contact sheet {out}")
    return atomic_write_bytes(out, png.tobytes())


def overlay_video(
    video: Path | None, kp: Keypoints, size: tuple[int, int], out: Path, *, layout: EntityLayout = MA52_ENTITIES,
    roi: Sequence[int] | None = None,
) -> Path:
    """Write an MP4 of all posed frames with the overlay drawn; returns its path."""
    if len(kp) == 0:
        raise ValueError("no posed frames to draw")
    eb = entity_boxes(kp.combined, size, layout=layout)
    span = int(kp.frames[-1] - kp.frames[0] + 1)
    fps = max(1.0, (kp.fps or 30.0) * len(kp) / max(span, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")  # the extension picks the container
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"could not open a video writer for {out}")
    try:
        for r, image in _frames(video, kp, range(len(kp)), size):
            drawn = draw_frame(image, kp.combined[r], eb.boxes[r], eb.own[r], layout.names, label=_label(kp, r), roi=roi)
            writer.write(drawn)
    finally:
        writer.release()
    os.replace(tmp, out)
    return out


def write_overlays(
    video: Path | None, kp: Keypoints, size: tuple[int, int], out_dir: Path, video_id: str, *, mode: str = "sheet",
    layout: EntityLayout = MA52_ENTITIES, roi: Sequence[int] | None = None,
) -> list[Path]:
    """The overlays asked for by ``mode`` (``sheet``, ``video`` or ``both``); nothing when no frame was posed."""
    if len(kp) == 0:
        return []
    written = []
    if mode in ("sheet", "both"):
        written.append(contact_sheet(video, kp, size, out_dir / f"{video_id}.png", layout=layout, roi=roi))
    if mode in ("video", "both"):
        written.append(overlay_video(video, kp, size, out_dir / f"{video_id}.mp4", layout=layout, roi=roi))
    return written
