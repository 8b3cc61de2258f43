"""The threaded recognition engine: plans, decodes and classifies many videos' windows with batches
that mix videos (:class:`Engine`), and each video's progress through it (:class:`VideoState`).

Two background threads (docs/recognize.md has the picture):

- planner: per job in order, ``up_to_date(job)`` (hashes) -> else :func:`pipeline.recognize.plan.plan_video`
  -> the plan goes to the decode feed, so decoding starts with the first video while the later ones
  are still being hashed and checked;
- engine: prepares the model (:class:`pipeline.recognize.classifier.WindowClassifier`), runs the decode
  feed (:class:`pipeline.window_feed.WindowFeed`), packs clips of any videos into fixed batch buffers,
  runs the classifier and files each window's result under its video.

The engine knows nothing of the stage protocol: it is given the checkpoint and two callables (is a
job up to date, the video's sha256), and the stage reads :class:`VideoState` when a video is done.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from model.checkpoint import Checkpoint
from pipeline.cli import progress
from pipeline.recognize.classifier import WindowClassifier
from pipeline.recognize.options import RecognizeJob, RecognizeOptions
from pipeline.recognize.plan import PlannedVideo, plan_video
from pipeline.window_feed import WindowFeed

__all__ = ["Engine", "VideoState"]


class _Batch:
    """Fixed buffers for one batch of windows: pinned on CUDA (the copy to the device is async), on the
    device itself when the frames are decoded there (``--decoder nvdec``)."""

    def __init__(self, size: int, clip_shape: tuple, kp_shape: tuple, pin: bool,
                 device: torch.device | None = None) -> None:
        self.frames = torch.empty((size, *clip_shape), dtype=torch.uint8, pin_memory=pin, device=device)
        self.keypoints = torch.empty((size, *kp_shape), dtype=torch.float32, pin_memory=pin, device=device)
        self.keys: list[tuple[str, int]] = []

    def add(self, video_id: str, window: int, frames: torch.Tensor, keypoints: torch.Tensor) -> None:
        i = len(self.keys)
        self.frames[i].copy_(frames)
        self.keypoints[i].copy_(keypoints)
        self.keys.append((video_id, window))

    @property
    def full(self) -> bool:
        return len(self.keys) == self.frames.shape[0]


@dataclass
class VideoState:
    """One job's progress through the engine (written by its threads, read by the main thread)."""

    job: RecognizeJob
    planned: PlannedVideo | None = None
    skip: bool = False  # up to date: nothing to compute
    plan_error: Exception | None = None
    probs: dict[int, np.ndarray] = field(default_factory=dict)
    routing: dict[int, np.ndarray] = field(default_factory=dict)
    undecodable: list[int] | None = None  # set when the stream has ended
    error: str | None = None
    decided: threading.Event = field(default_factory=threading.Event)  # skip / planned / plan_error known
    done: threading.Event = field(default_factory=threading.Event)  # results (or an error) complete

    def complete(self) -> bool:
        if self.planned is None or self.undecodable is None:
            return False
        return len(self.probs) + len(self.undecodable) >= len(self.planned.stream)


class Engine:
    """Plans, decodes and classifies the jobs' videos in two background threads (module docstring).

    ``up_to_date(job)``: skip the job (nothing planned or decoded); ``video_sha256(job)``: the video's
    hash, handed to the planner so the file is hashed once per run.
    """

    def __init__(self, ckpt: Checkpoint, jobs: list[RecognizeJob], options: RecognizeOptions, decoder: str, *,
                 up_to_date: Callable[[RecognizeJob], bool], video_sha256: Callable[[RecognizeJob], str]) -> None:
        self.ckpt = ckpt
        self.options = options
        self.decoder = decoder
        self.up_to_date = up_to_date
        self.video_sha256 = video_sha256
        self.states = {job.item_id: VideoState(job) for job in jobs}
        t, size = ckpt.plan.clip_len, ckpt.preprocessing.size if ckpt.uses_pixels else 0
        self.clip_shape = (t, 3, size, size)  # [T, 3, 0, 0] for a keypoint-only model: nothing decoded
        self.kp_shape = (t, ckpt.keypoint_joints, 3)
        self.windows_done = 0
        self.model_seconds = 0.0
        self.wall_seconds = 0.0
        self._plans: queue.Queue = queue.Queue()
        self._planner = threading.Thread(target=self._plan_all, name="recognize-planner", daemon=True)
        self._thread = threading.Thread(target=self._run, name="recognize-engine", daemon=True)
        self._bar = None

    def start(self) -> "Engine":
        self._planner.start()
        self._thread.start()
        return self

    def join(self) -> None:
        self._planner.join()
        self._thread.join()

    def result(self, video_id: str) -> VideoState:
        st = self.states[video_id]
        st.done.wait()
        return st

    # -- planner thread ------------------------------------------------------------------------------
    def _plan_all(self) -> None:
        try:
            for vid, st in self.states.items():
                job = st.job
                try:
                    if self.up_to_date(job):
                        st.skip = True
                        st.done.set()
                        continue
                    st.planned = plan_video(job.source, job.keypoints, self.ckpt, self.options,
                                            video_id=vid, video_sha256=self.video_sha256(job))
                    st.planned.stream.decoder = self.decoder
                    if len(st.planned.stream):
                        self._plans.put(st.planned.stream)
                    else:  # no window with enough pose: nothing to decode
                        st.undecodable = []
                        st.done.set()
                except Exception as exc:  # reported by run_item as this video's failure
                    st.plan_error = exc
                    st.done.set()
                finally:
                    st.decided.set()
        finally:
            self._plans.put(None)

    def _plan_stream(self):
        while (plan := self._plans.get()) is not None:
            if self._bar is not None:
                self._bar.total = (self._bar.total or 0) + len(plan)
                self._bar.refresh()
            yield plan

    # -- engine thread -------------------------------------------------------------------------------
    def _finish(self, vid: str) -> None:
        st = self.states[vid]
        if not st.done.is_set() and (st.error is not None or st.complete()):
            st.done.set()

    def _flush(self, batch: _Batch, classifier: WindowClassifier) -> None:
        n = len(batch.keys)
        if not n:
            return
        t0 = time.perf_counter()
        probs, st = classifier(batch.frames[:n], batch.keypoints[:n])
        self.model_seconds += time.perf_counter() - t0
        for (vid, w), p, r in zip(batch.keys, probs, st if st is not None else [None] * n):
            s = self.states[vid]
            if s.error is None:
                s.probs[w], s.routing[w] = p, r  # r None: the family has no routing
        touched = {vid for vid, _ in batch.keys}
        batch.keys.clear()
        self.windows_done += n
        self._bar.update(n)
        for vid in touched:
            self._finish(vid)

    def _run(self) -> None:
        t0 = time.perf_counter()
        self._bar = progress(range(0), desc="recognize", total=0, unit="window")
        try:
            classifier = WindowClassifier(self.ckpt, self.options)  # while the planner hashes
            on_gpu = classifier.device.type == "cuda"
            gpu_decode = self.decoder == "nvdec"
            batch = _Batch(self.options.batch_size, self.clip_shape, self.kp_shape, pin=on_gpu and not gpu_decode,
                           device=classifier.device if gpu_decode else None)
            pending = self.options.max_pending or 2 * self.options.batch_size
            with WindowFeed(self._plan_stream(), workers=self.options.workers, kind=self.options.worker_kind,
                            max_pending=pending) as feed:
                for msg in feed:
                    kind, vid = msg[0], (msg[1].video_id if msg[0] == "clip" else msg[1])
                    s = self.states[vid]
                    if kind == "clip":
                        if s.error is None:
                            batch.add(vid, msg[1].window, msg[1].frames, msg[1].keypoints)
                            if batch.full:
                                self._flush(batch, classifier)
                    elif kind == "done":
                        s.undecodable = list(msg[2])
                        self._finish(vid)
                    else:
                        s.error = msg[2]
                        self._finish(vid)
                self._flush(batch, classifier)
        except BaseException as exc:  # the model or the feed broke: every unfinished video fails with it
            text = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            self._planner.join()
            for s in self.states.values():
                if not s.done.is_set():
                    s.error = f"{s.job.source}: recognition failed: {text}"
                    s.done.set()
            if not isinstance(exc, Exception):
                raise
        finally:
            self._planner.join()
            for s in self.states.values():  # anything left (should not happen): never hang a waiter
                if not s.done.is_set():
                    s.error = s.error or f"{s.job.source}: the decode feed ended before this video"
                    s.done.set()
            if hasattr(self._bar, "close"):
                self._bar.close()
            self.wall_seconds = time.perf_counter() - t0

