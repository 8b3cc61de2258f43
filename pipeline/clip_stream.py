"""Decode-once window assembly: one sequential pass over a video yields every window's model input.

Windows overlap (MA-52: a 64-frame span every 16 frames, so each sampled frame is in about 4
windows). Seeking or decoding per window would decode every frame ~4 times (DESIGN.md section 10:
~17 windows/s with per-window ``get_frames_at``); here each video is decoded **once**, in order:

    decode frame f (every frame is decoded: inter-frame codecs need it; only sampled ones are
    converted and scaled, :func:`pipeline.video.iter_frames` grabs the others)
      -> f sampled?  cache[f, size] = RGB uint8 [3, h, w] at each decode size a window that samples
                     f needs (one for region "frame"; per window's own box for "person",
                     pipeline.person_crop.decode_scale)
      -> every window whose last sampled frame is f is complete: stack its T cached frames,
         crop/resize (pipeline.person_crop.crop_window) -> WindowClip [T, 3, S, S] uint8
      -> evict cached frames that no later window samples

The cache is a ring buffer keyed by frame index: it holds at most the sampled frames of the windows
still open (MA-52: 8 + a few), so peak memory does not grow with the video's length.

:class:`VideoPlan` (picklable, built in the main process from the probe, the keypoints and the
checkpoint) is everything a worker needs; :func:`iter_window_clips` is the generator over it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from model.preprocessing import Preprocessing
from model.transforms import resize_clip
from pipeline.person_crop import CropBox, crop_window, scale_frame
from pipeline.video import VideoError, iter_frames

__all__ = ["VideoPlan", "WindowClip", "iter_window_clips", "StreamStats"]


@dataclass
class VideoPlan:
    """What to decode from one video and how to turn it into window clips.

    Attributes
    ----------
    video_id, path : identifiers
    source_size : (width, height) of the decoded video
    fps : float
    decode_sizes : list of (width, height) the frames are scaled to when decoded
    window_size : [N] int, index into ``decode_sizes`` of each window's decode size
    window_index : [N] int, the windows to classify (indices into the video's full window list)
    window_frames : [N, T] int64 sampled frame indices of those windows
    keypoints : [N, T, J, 3] float32 keypoints of those frames (source pixels)
    boxes : list of CropBox (region "person") or None
    prep : Preprocessing
    decoder : "cpu" (OpenCV) or "nvdec" (torchcodec on CUDA; frames and clips stay on the GPU)
    pixels : False for a model that reads keypoints alone: the file is never opened and each clip's
        frames are an empty [T, 3, 0, 0] tensor (keypoints in source pixels: such a model normalises
        every window itself)
    """

    video_id: str
    path: str
    source_size: tuple[int, int]
    fps: float
    decode_sizes: list[tuple[int, int]]
    window_size: np.ndarray
    window_index: np.ndarray
    window_frames: np.ndarray
    keypoints: np.ndarray
    boxes: list[CropBox] | None
    prep: Preprocessing
    decoder: str = "cpu"
    pixels: bool = True

    def __len__(self) -> int:
        return len(self.window_index)


@dataclass
class WindowClip:
    """One window ready for the model (uint8 frames; normalised on the device)."""

    video_id: str
    window: int
    frames: torch.Tensor  # [T, 3, S, S] uint8
    keypoints: torch.Tensor  # [T, J, 3] float32, pixels of ``frames``


@dataclass
class StreamStats:
    """Filled in by :func:`iter_window_clips` as it goes."""

    frames_decoded: int = 0  # sampled frames converted (each exactly once)
    max_cached: int = 0  # largest number of frames held at once
    undecodable: list[int] = field(default_factory=list)  # windows whose frames the file did not yield


def _cpu_frames(path: str, frame_indices: np.ndarray, fps: float):
    """(index, scale(size) -> RGB uint8 [3, h, w]) for the wanted frames, OpenCV decoding in order."""
    for index, _t, bgr in iter_frames(path, frame_indices, fps=fps):
        yield index, (lambda size, bgr=bgr: scale_frame(bgr, size))


def _nvdec_frames(path: str, frame_indices: np.ndarray, chunk: int = 32):
    """The same from torchcodec on the GPU (NVDEC): sorted indices in chunks, scaled on the GPU.

    Not exercised by the test suite (no GPU, no torchcodec on the development machines); the
    scaling is antialiased bilinear (:func:`model.transforms.resize_clip`) instead of INTER_AREA.
    """
    from torchcodec.decoders import VideoDecoder  # optional dependency

    decoder = VideoDecoder(path, device="cuda")
    for start in range(0, len(frame_indices), chunk):
        part = [int(i) for i in frame_indices[start:start + chunk]]
        batch = decoder.get_frames_at(indices=part).data  # [n, 3, H, W] uint8 on the GPU
        for index, image in zip(part, batch):
            yield index, (lambda size, image=image: resize_clip(image, None, (size[1], size[0]))[0])


def iter_window_clips(plan: VideoPlan, stats: StreamStats | None = None) -> Iterator[WindowClip]:
    """Yield the plan's windows in order, decoding the video once (module docstring).

    Windows whose frames the stream ends before (a truncated file) are not yielded; they are listed
    in ``stats.undecodable``. A file that cannot be opened or yields no frame raises VideoError.
    """
    stats = stats if stats is not None else StreamStats()
    n = len(plan)
    if n == 0:
        return
    if not plan.pixels:  # keypoint-only model: no decoding at all
        t = plan.window_frames.shape[1]
        for i in range(n):
            yield WindowClip(plan.video_id, int(plan.window_index[i]), torch.empty((t, 3, 0, 0), dtype=torch.uint8),
                             torch.from_numpy(np.ascontiguousarray(plan.keypoints[i], dtype=np.float32)))
        return
    frames = plan.window_frames
    last_frame = frames.max(axis=1)  # window i is complete once this frame is decoded
    order = np.argsort(last_frame, kind="stable")
    # the last window (in completion order) that needs each frame: evict once it has been emitted
    needed = np.unique(frames)
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    last_use: dict[int, int] = {}
    for i in range(n):
        for f in frames[i]:
            last_use[int(f)] = max(last_use.get(int(f), -1), int(rank[i]))
    sizes_of: dict[int, set[int]] = {}  # decode sizes each frame is needed at
    for i in range(n):
        for f in frames[i]:
            sizes_of.setdefault(int(f), set()).add(int(plan.window_size[i]))
    cache: dict[tuple[int, int], torch.Tensor] = {}
    emitted = 0  # windows emitted, in completion order
    got_any = False
    source = _nvdec_frames(plan.path, needed) if plan.decoder == "nvdec" else _cpu_frames(plan.path, needed, plan.fps)
    for index, scale in source:
        got_any = True
        for k in sizes_of[index]:
            cache[index, k] = scale(plan.decode_sizes[k])
        stats.frames_decoded += 1
        stats.max_cached = max(stats.max_cached, len({f for f, _ in cache}))
        while emitted < n and last_frame[order[emitted]] <= index:
            i = int(order[emitted])
            k = int(plan.window_size[i])
            clip = torch.stack([cache[int(f), k] for f in frames[i]])
            box = plan.boxes[i] if plan.boxes is not None else None
            pixels, kp = crop_window(clip, torch.from_numpy(plan.keypoints[i]), plan.prep,
                                     source_size=plan.source_size, box=box)
            emitted += 1
            yield WindowClip(plan.video_id, int(plan.window_index[i]), pixels, kp)
        for key in [key for key in cache if last_use[key[0]] < emitted]:
            del cache[key]
    if not got_any:
        raise VideoError(plan.path, "no decodable frame (corrupt, truncated or empty stream)")
    stats.undecodable = sorted(int(plan.window_index[int(order[k])]) for k in range(emitted, n))
