"""Window geometry: which frames each recognition window covers and samples.

This module is the single source of truth for how an untrimmed video is cut into the clips that
Micro-DualNet classifies (DESIGN.md section 3b). The pose stage uses it to run pose only on the frames
some window samples (``--frames sampled``); the inference stage uses it to build its clips; the
aggregation stage uses the windows' start/end frames to spread window scores over frames. Keeping all
three on one :class:`WindowPlan` means they cannot disagree about which frame belongs where.

Geometry (all in frame indices of the decoded video, 0-based)::

    span   = clip_len * stride                     frames a window covers (MA-52: 64 = 2.13 s at 30 fps)
    hop    = round(hop_s * fps) frames, at least 1  (aligned to a multiple of stride, see below)
    starts = 0, hop, 2*hop, ... while start + span <= num_frames
             + one last window ending at the last frame, when ``cover_tail`` and the tail is uncovered
    window w samples start_w + stride * i, i = 0 .. clip_len-1; covers [start_w, start_w + span)

A video shorter than one span gets one window starting at frame 0 whose sampled indices are clamped
to the last frame (the last frame repeats), so short clips such as MA-52's own 1.5-2.5 s samples are
still classified.

Each sampled frame stands for the ``stride`` frames that follow it (the segment convention of TSM and
MMAction2, ``clip_len * frame_interval``), so a window covers ``clip_len * stride`` frames and windows
started every hop tile the video without gaps. The last sampled frame of a window is
``start + (clip_len - 1) * stride``, inside the span.

Hop alignment: with hop a multiple of ``stride`` every window samples the same frame lattice
(0, stride, 2*stride, ...), so pose is needed on only 1/stride of the frames. MA-52's 0.5 s hop at
30 fps is 15 frames, which is not a multiple of 8; the windows then sample drifting lattices and their
union is 8/15 (53%) of all frames instead of 1/8 (12.5%). ``align_hop_to_stride=True`` (default) rounds
the hop to the nearest multiple of the stride (16 frames = 0.533 s at 30 fps); every frame is still
covered by span/hop (about 3.6) windows.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Window", "WindowPlan", "MA52_PLAN", "MA52_16F_PLAN", "IMIGUE_PLAN", "ma52_plan"]


@dataclass(frozen=True)
class Window:
    """One recognition window.

    Attributes
    ----------
    index : int
        Window number within the video, 0-based, in start order.
    start_frame : int
        First frame covered.
    end_frame : int
        One past the last frame covered (exclusive), at most the video's frame count.
    frames : tuple of int
        The ``clip_len`` sampled frame indices, non-decreasing (repeats only for short videos).
    """

    index: int
    start_frame: int
    end_frame: int
    frames: tuple[int, ...]

    def start_s(self, fps: float) -> float:
        return self.start_frame / fps

    def end_s(self, fps: float) -> float:
        return self.end_frame / fps


@dataclass(frozen=True)
class WindowPlan:
    """How windows are laid over a video (see module docstring).

    Attributes
    ----------
    clip_len : int
        Frames sampled per window (T). MA-52: 8.
    stride : int
        Temporal stride between sampled frames. MA-52: 8.
    hop_s : float
        Time between window starts in seconds, before alignment. Default 0.5 s.
    align_hop_to_stride : bool
        Round the hop (in frames) to a multiple of ``stride`` so windows share sampled frames.
    cover_tail : bool
        Add a last window ending at the video's last frame when the regular hops leave a tail.
    """

    clip_len: int = 8
    stride: int = 8
    hop_s: float = 0.5
    align_hop_to_stride: bool = True
    cover_tail: bool = True

    def __post_init__(self) -> None:
        if self.clip_len < 1 or self.stride < 1:
            raise ValueError(f"clip_len and stride must be >= 1, got {self.clip_len}, {self.stride}")
        if not self.hop_s > 0:
            raise ValueError(f"hop_s must be > 0, got {self.hop_s}")

    @property
    def span(self) -> int:
        """Frames one window covers: ``clip_len`` segments of ``stride`` frames."""
        return self.clip_len * self.stride

    def hop_frames(self, fps: float) -> int:
        """The hop between window starts in frames at frame rate ``fps``."""
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        hop = self.hop_s * fps
        if self.align_hop_to_stride:
            return max(self.stride, int(round(hop / self.stride)) * self.stride)
        return max(1, int(round(hop)))

    def windows(self, num_frames: int, fps: float) -> list[Window]:
        """All windows of a video with ``num_frames`` frames at ``fps``; empty for an empty video."""
        if num_frames <= 0:
            return []
        offsets = np.arange(self.clip_len) * self.stride
        if num_frames < self.span:
            frames = np.minimum(offsets, num_frames - 1)
            return [Window(0, 0, num_frames, tuple(int(f) for f in frames))]
        hop = self.hop_frames(fps)
        starts = list(range(0, num_frames - self.span + 1, hop))
        last_end = starts[-1] + self.span
        if self.cover_tail and last_end < num_frames:
            starts.append(num_frames - self.span)
        return [
            Window(i, s, s + self.span, tuple(int(s + o) for o in offsets)) for i, s in enumerate(starts)
        ]

    def to_dict(self) -> dict[str, Any]:
        """Plain data (checkpoints store the plan they were trained for; JSON-safe)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "WindowPlan":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown window plan field(s) {unknown}")
        return cls(**d)

    def sampled_frames(self, num_frames: int, fps: float) -> np.ndarray:
        """Sorted unique frame indices that at least one window samples (int64 array)."""
        wins = self.windows(num_frames, fps)
        if not wins:
            return np.zeros(0, dtype=np.int64)
        return np.unique(np.concatenate([np.asarray(w.frames, dtype=np.int64) for w in wins]))


MA52_PLAN = WindowPlan(clip_len=8, stride=8, hop_s=0.5)
"""MA-52 / Micro-DualNet defaults: 8 frames at stride 8, a window every 0.5 s (aligned to 16 frames at 30 fps)."""

MA52_16F_PLAN = WindowPlan(clip_len=16, stride=4, hop_s=0.5)
"""MA-52 at 16 frames (the ``ma52_16f`` preset): the frame count of every full-model row of the
paper's ablation tables (Table IV: 16 frames 65.1 vs 8 frames 63.2). Stride 4 keeps the span at 64
frames (2.13 s at 30 fps), the same time a window of :data:`MA52_PLAN` covers, so the two plans
read the same 1-3 s actions and only the sampling density differs."""

IMIGUE_PLAN = WindowPlan(clip_len=16, stride=4, hop_s=0.5)
"""iMiGUE defaults (paper IV-B): 16 frames at stride 4."""


def ma52_plan(num_frames: int, *, span: int = 64, hop_s: float = 0.5) -> WindowPlan:
    """An MA-52 window plan for ``num_frames`` frames covering ``span`` frames (stride = span / T).

    ``ma52_plan(8)`` is :data:`MA52_PLAN`, ``ma52_plan(16)`` :data:`MA52_16F_PLAN`; Table IV's 4 and
    32 frames give strides 16 and 2 over the same 64 frames.
    """
    if num_frames < 1 or span % num_frames:
        raise ValueError(f"span {span} is not a multiple of num_frames {num_frames}")
    return WindowPlan(clip_len=num_frames, stride=span // num_frames, hop_s=hop_s)
