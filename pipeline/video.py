"""Video access: probe a file and decode only the frames asked for (OpenCV / FFmpeg).

Conventions
-----------
- Frames are indexed 0, 1, 2, ... in decode order. Random seeking (``CAP_PROP_POS_FRAMES``) is not
  frame-exact for many codecs, so frames are always reached by reading forward: skipped frames are only
  grabbed (demuxed and decoded, but not converted to BGR), wanted frames are also retrieved.
- Rotation metadata (a phone held upright) is applied by OpenCV's FFmpeg backend
  (``CAP_PROP_ORIENTATION_AUTO``, on by default): decoded frames, :attr:`VideoInfo.width` and
  :attr:`VideoInfo.height` and therefore all keypoint coordinates are in the *displayed* orientation.
  :attr:`VideoInfo.rotation` records the metadata angle for the record.
- Timestamps come from the stream (``CAP_PROP_POS_MSEC`` after each grab), so variable-frame-rate
  videos get their true times; :attr:`VideoInfo.fps` is then the average rate (frames / duration) and
  is only used to turn seconds into frame counts (window hop).
- Frame counts: MP4/MOV (``stts``) and AVI (header) state the exact number of frames, and that number
  is used. Other containers (Matroska/WebM, MPEG-PS/TS, raw streams, ...) carry no count; OpenCV then
  reports an estimate (duration x fps, e.g. 16 for a 20-frame MPEG-PS file) or garbage, so for them the
  frames are counted by reading the file once (:attr:`VideoInfo.counted`). Window plans built on an
  estimate would miss the tail or ask for frames that do not exist.
- A missing, empty, unreadable or frameless file raises :class:`VideoError` whose message names the
  file; callers processing many videos catch it per video.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

__all__ = ["VideoError", "VideoInfo", "probe", "iter_frames", "VIDEO_SUFFIXES"]

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv")


class VideoError(RuntimeError):
    """A video cannot be used. The message starts with the file's path."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` found out about a video.

    Attributes
    ----------
    path : str
    width, height : int
        Size of the decoded frames in pixels, after rotation metadata is applied.
    fps : float
        Average frame rate (for constant-rate video: the nominal rate).
    frame_count : int
        Number of frames. From the container when it states an exact one (MP4/MOV, AVI), otherwise
        counted by reading the file.
    duration_s : float
        ``frame_count / fps``.
    rotation : int
        Rotation metadata in degrees (0, 90, 180, 270), already applied to decoded frames.
    counted : bool
        True when ``frame_count`` was obtained by reading the whole file (container had no exact count).
    """

    path: str
    width: int
    height: int
    fps: float
    frame_count: int
    duration_s: float
    rotation: int = 0
    counted: bool = False

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return (self.width, self.height)

    def to_dict(self) -> dict:
        return asdict(self)


def _open(path: Path) -> cv2.VideoCapture:
    if not path.exists():
        raise VideoError(path, "file not found")
    if path.is_dir():
        raise VideoError(path, "is a folder, not a video file")
    if path.stat().st_size == 0:
        raise VideoError(path, "empty file (0 bytes)")
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        cap.release()
        raise VideoError(path, "cannot be opened as a video (corrupt, truncated or unsupported format)")
    return cap


def _exact_count_container(path: Path) -> bool:
    """Whether the file's container states an exact frame count: ISO BMFF (MP4/MOV/M4V) or RIFF AVI."""
    try:
        with path.open("rb") as f:
            head = f.read(12)
    except OSError:
        return False
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"):
        return True
    return head[:4] == b"RIFF" and head[8:12] == b"AVI "


def probe(path: str | os.PathLike, *, count_frames: bool | None = None) -> VideoInfo:
    """Read a video's size, frame rate, frame count, duration and rotation.

    The first frame is decoded to make sure the file is really readable and to take the displayed
    frame size from it (the container's size can disagree with rotated or odd-sized streams).

    Parameters
    ----------
    count_frames : bool, optional
        Count the frames by reading the whole file. None (default): only when the container does not
        state an exact count (anything but MP4/MOV and AVI, or a count <= 0).

    Raises
    ------
    VideoError
        Missing, empty, unreadable file, or one without a decodable frame.
    """
    path = Path(path)
    cap = _open(path)
    try:
        ok, frame = cap.read()
        if not ok or frame is None:
            raise VideoError(path, "no decodable frame (corrupt, truncated or empty stream)")
        height, width = frame.shape[:2]
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        rotation = int(round(cap.get(cv2.CAP_PROP_ORIENTATION_META) or 0)) % 360
        counted = False
        last_ms = 0.0
        if count_frames is None:
            count_frames = count <= 0 or not _exact_count_container(path)
        if count_frames:
            # No exact count in the container (Matroska, MPEG-PS/TS, raw streams): count by reading.
            count = 1
            while cap.grab():
                count += 1
                last_ms = float(cap.get(cv2.CAP_PROP_POS_MSEC) or 0.0)
            counted = True
        if not fps > 0 or not np.isfinite(fps):
            # No usable nominal rate: derive one from the timestamps when we have them.
            fps = (count - 1) / (last_ms / 1000.0) if counted and last_ms > 0 else 30.0
    finally:
        cap.release()
    return VideoInfo(
        path=str(path), width=int(width), height=int(height), fps=fps, frame_count=count,
        duration_s=count / fps, rotation=rotation, counted=counted,
    )


def iter_frames(
    path: str | os.PathLike, frames: Iterable[int] | None = None, *, fps: float | None = None
) -> Iterator[tuple[int, float, np.ndarray]]:
    """Decode frames in order, yielding ``(index, time_s, bgr_image)`` for the wanted ones.

    Parameters
    ----------
    path : video file
    frames : iterable of int, optional
        Wanted frame indices (any order, duplicates ignored). None: every frame. Indices past the end
        of the stream are silently not yielded (the caller compares what it got with what it asked).
    fps : float, optional
        Used for ``time_s`` when the stream gives no timestamp (``index / fps``).

    Yields
    ------
    (int, float, numpy.ndarray)
        Frame index, time in seconds from the stream's timestamps, HxWx3 uint8 BGR image.

    Raises
    ------
    VideoError
        If the file cannot be opened.
    """
    path = Path(path)
    wanted = None if frames is None else np.unique(np.asarray(list(frames), dtype=np.int64))
    if wanted is not None and wanted.size == 0:
        return
    last = None if wanted is None else int(wanted[-1])
    want = None if wanted is None else set(int(i) for i in wanted)
    cap = _open(path)
    try:
        index = -1
        prev_t = -1.0
        while last is None or index < last:
            if not cap.grab():
                break
            index += 1
            if want is not None and index not in want:
                continue
            ok, image = cap.retrieve()
            if not ok or image is None:
                break  # a decode error mid-stream ends the usable part of the file
            t_ms = cap.get(cv2.CAP_PROP_POS_MSEC)
            t = float(t_ms) / 1000.0 if t_ms is not None and t_ms >= 0 else -1.0
            if t < 0 or (index > 0 and t <= prev_t and fps):
                # No or non-increasing timestamp (seen with some broken streams): fall back to index/fps.
                t = index / fps if fps else max(prev_t, 0.0)
            prev_t = t
            yield index, t, image
    finally:
        cap.release()
