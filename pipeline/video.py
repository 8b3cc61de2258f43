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
- Truncation: a file that decodes only partway (e.g. an MP4 cut off with its index ``moov`` at the
  front: it opens, states the full frame count, then the data ends) raises :class:`TruncatedVideo`
  from :func:`iter_frames` once the decodable part is exhausted, whatever frames were asked for: the
  decoder reads on to the end of the stream and compares the frames it got with
  :attr:`VideoInfo.frame_count`. Callers decide what a truncated file means (the pose stage fails the
  video with the QC flag ``truncated``); ``check_complete=False`` yields the readable part silently.
- A missing, empty, unreadable or frameless file raises :class:`VideoError` whose message names the
  file; callers processing many videos catch it per video.
- Memory: :func:`iter_frames` is a generator holding one decoded frame at a time (plus at most
  ``prefetch`` frames queued by its decoding thread), so peak memory does not depend on the length
  of the video.

Decoder choice (docs/video.md, numbers from ``bench/bench_video.py``): OpenCV's FFmpeg backend. It
comes with mediapipe's ``opencv-contrib-python`` (no new dependency), applies rotation metadata,
decodes with FFmpeg's frame threads, and at 720p/1080p H.264 it decodes as fast as PyAV here; what
PyAV adds (stream frame counts, timestamps, scaling in swscale) is covered above: exact counts by
reading when the container has none, stream timestamps via ``CAP_PROP_POS_MSEC``, and scaling and
colour conversion in the decoding thread (``size=``, ``color=``), which overlaps the consumer's work.
"""

from __future__ import annotations

import functools
import os
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

__all__ = ["VideoError", "TruncatedVideo", "VideoInfo", "Frame", "probe", "iter_frames", "fit_size", "VIDEO_SUFFIXES"]

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv")


class VideoError(RuntimeError):
    """A video cannot be used. The message starts with the file's path."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class TruncatedVideo(VideoError):
    """The file ends before the frames its container states (the readable part was decoded).

    Attributes: ``decoded`` (frames decodable), ``expected`` (:attr:`VideoInfo.frame_count`);
    ``qc_flag = "truncated"`` (the stage runner adds it to the item's QC flags).
    """

    qc_flag = "truncated"

    def __init__(self, path: str | os.PathLike, decoded: int, expected: int) -> None:
        self.decoded, self.expected = int(decoded), int(expected)
        super().__init__(path, f"truncated: only {decoded} of the {expected} frames its container states "
                               f"could be decoded (file cut off or damaged)")


class Frame(NamedTuple):
    """One decoded frame (unpacks as ``frame_index, time_s, pixels``)."""

    frame_index: int
    time_s: float
    pixels: np.ndarray  # [H, W, 3] uint8, BGR or RGB as asked


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


@functools.lru_cache(maxsize=64)
def _probe_cached(path: str, mtime_ns: int, size: int) -> VideoInfo:
    return probe(path)


def _probe_unchanged(path: Path) -> VideoInfo:
    """:func:`probe`, remembered while the file's modification time and size stay the same (a caller
    that iterates a video several times, or probed it through here, does not pay for it again)."""
    try:
        st = path.stat()
    except OSError:
        return probe(path)  # raises the VideoError naming the file
    return _probe_cached(str(path), st.st_mtime_ns, st.st_size)


def fit_size(size: tuple[int, int], *, short_side: int) -> tuple[int, int]:
    """(width, height) scaled so that the shorter side is ``short_side`` (aspect kept, rounded)."""
    w, h = size
    k = short_side / min(w, h)
    return max(1, int(round(w * k))), max(1, int(round(h * k)))


def _decode(
    path: Path, wanted: np.ndarray | None, *, size: tuple[int, int] | None, color: str, fps: float | None,
    crop: tuple[int, int, int, int] | None, expected: int | None,
) -> Iterator[Frame]:
    """The decoding loop of :func:`iter_frames` (runs in its thread when prefetching)."""
    last = None if wanted is None else int(wanted[-1])
    want = None if wanted is None else set(wanted.tolist())
    cap = _open(path)
    try:
        index = -1
        prev_t = -1.0
        # read on to the end when the frame count must be checked (truncation), else stop at the last wanted
        while expected is not None or last is None or index < last:
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
            if crop is not None:
                x, y, w, h = crop
                image = image[y : y + h, x : x + w]
            if size is not None and (image.shape[1], image.shape[0]) != tuple(size):
                shrink = size[0] * size[1] < image.shape[0] * image.shape[1]
                image = cv2.resize(image, tuple(size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
            if color == "rgb":
                image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
            elif crop is not None and size is None:
                image = np.ascontiguousarray(image)
            yield Frame(index, t, image)
    finally:
        cap.release()
    if expected is not None and index + 1 < expected:
        raise TruncatedVideo(path, index + 1, expected)


class _Raised:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_END = object()


class _Prefetcher:
    """Iterate ``frames`` in a thread, ``depth`` frames ahead (OpenCV decodes without holding the GIL).

    The thread starts at construction, so decoding the first frames overlaps whatever the caller does
    before it starts iterating (e.g. loading a model). :meth:`close` (also on garbage collection, at
    the end of the frames, or on an error) stops the thread and releases the video.
    """

    def __init__(self, frames: Iterator[Frame], depth: int) -> None:
        self._frames = frames
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._produce, name="video-decode", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for item in self._frames:
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(_Raised(exc))
        finally:
            self._frames.close()

    def __iter__(self) -> "_Prefetcher":
        return self

    def __next__(self) -> Frame:
        if self._done:
            raise StopIteration
        item = self._queue.get()
        if item is _END:
            self.close()
            raise StopIteration
        if isinstance(item, _Raised):
            self.close()
            raise item.exc
        return item

    def close(self) -> None:
        self._done = True
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def __enter__(self) -> "_Prefetcher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self._stop.set()


def iter_frames(
    path: str | os.PathLike,
    frame_indices: Iterable[int] | None = None,
    *,
    size: tuple[int, int] | None = None,
    color: str = "bgr",
    crop: tuple[int, int, int, int] | None = None,
    fps: float | None = None,
    info: VideoInfo | None = None,
    check_complete: bool = True,
    prefetch: int = 0,
) -> Iterator[Frame]:
    """Decode a video once, in order, yielding the wanted frames as ``(frame_index, time_s, pixels)``.

    Parameters
    ----------
    path : video file
    frame_indices : iterable of int, optional
        Wanted frame indices (any order, duplicates ignored). None: every frame. Indices past the end
        of the stream are not yielded (with ``check_complete`` they raise :class:`TruncatedVideo` when
        the container states that they exist).
    size : (width, height), optional
        Scale each frame to this size at decode time (INTER_AREA when shrinking); after ``crop``.
    color : {"bgr", "rgb"}
    crop : (x, y, w, h), optional
        Keep only this region (pixels of the displayed frame; clip it to the frame first).
    fps : float, optional
        Used for ``time_s`` when the stream gives no timestamp (``frame_index / fps``).
    info : VideoInfo, optional
        The file's :func:`probe` result, if the caller has it (otherwise it is probed once and
        remembered while the file is unchanged).
    check_complete : bool
        Read on to the end of the stream and raise :class:`TruncatedVideo` (after yielding every
        decodable wanted frame) when fewer frames than ``info.frame_count`` could be decoded.
    prefetch : int
        Decode (and crop, scale, convert) in a background thread up to this many frames ahead of the
        consumer; 0 decodes in the caller's thread. The thread starts at once (decoding overlaps the
        caller's set-up); the returned iterator has ``close()`` and is a context manager: close it
        when stopping early (garbage collection stops the thread too).

    Yields
    ------
    Frame
        ``frame_index`` (int), ``time_s`` (float, from the stream's timestamps), ``pixels``
        ([H, W, 3] uint8 in ``color`` order). Only the current frame (and the prefetched ones) are held.

    Raises
    ------
    VideoError
        If the file cannot be opened; :class:`TruncatedVideo` as described above.
    """
    path = Path(path)
    if color not in ("bgr", "rgb"):
        raise ValueError(f"color must be 'bgr' or 'rgb', got {color!r}")
    wanted = None if frame_indices is None else np.unique(np.asarray(list(frame_indices), dtype=np.int64))
    if wanted is not None and wanted.size == 0:
        return iter(())
    expected = None
    if check_complete:
        expected = (info or _probe_unchanged(path)).frame_count
    frames = _decode(path, wanted, size=size, color=color, fps=fps, crop=crop, expected=expected)
    return _Prefetcher(frames, prefetch) if prefetch > 0 else frames
