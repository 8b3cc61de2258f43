"""Recognition stage: videos + keypoints -> windows/<video_id>.parquet (class probabilities per window).

Usage::

    python -m pipeline.recognize VIDEO_OR_DIR [...] --keypoints DIR --weights CKPT --out DIR
        [--device cpu|cuda] [--batch-size 32] [--workers 1] [--compile] [--amp/--no-amp] [--min-valid 0.5]

``--keypoints`` is the pose stage's output folder (``DIR/keypoints/<video_id>.parquet``, or a folder
holding the Parquet files directly). Outputs under ``--out``:

- ``windows/<video_id>.parquet`` (+ sidecar): the WINDOWS contract (docs/contracts.md), one row per
  window of the checkpoint's :class:`model.windows.WindowPlan`, plus ``routing_st`` (ST share per
  entity, mean over time). The sidecar adds ``model`` (checkpoint sha256, path, provenance),
  ``classes`` ({names, taxonomy_ids}), ``video`` ({fps, frame_count, width, height}), ``entities``,
  ``keypoints`` ({path, sha256}) and ``windows`` (counts).
- ``qc_recognize.parquet`` / ``.csv``: one row per video (:mod:`pipeline.stage`'s persistent QC table).

How a window becomes probabilities (docs/recognize.md has the shapes and the picture):

1. main process, per video: probe, check the keypoints (same video by sha256, same frame selection,
   same frame count), lay the checkpoint's windows, valid fraction per window, person crop boxes
   (:mod:`pipeline.person_crop`) -> a :class:`pipeline.clip_stream.VideoPlan`;
2. decode workers (:mod:`pipeline.window_feed`): each video decoded once, sequentially, sampled frames
   scaled at decode time and cached only while a window needs them -> uint8 clips [T, 3, S, S];
3. main process, one engine thread: clips of any videos are packed into batches of ``batch_size``
   (pinned on CUDA), normalised on the device, one forward (bf16 autocast on CUDA,
   channels_last, optional ``torch.compile``), softmax -> probs [B, C], routing [B, T, K, 2] ->
   ST share [B, K];
4. per video, once all its windows are back: one table written atomically through the stage runner
   (:mod:`pipeline.stage`: input/config hash, skip when up to date, QC row, failures isolated).

Each window's result depends only on its own clip (the model is in eval mode; no batch statistics),
so results do not depend on batch size, batch composition or the number of workers (tested to 1e-5
in fp32). Windows with a share of usable-pose sampled frames below ``min_valid`` are not run: null
``probs`` (the contract's rule), counted in the QC row.

The Python entry point for one video (the Prefect flow calls it) is :func:`recognize_video`;
:func:`recognize_videos` does many with cross-video batching.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.util
import logging
import queue
import sys
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from model.checkpoint import Checkpoint, load_checkpoint
from model.inference import predict, prepare_for_inference
from model.preprocessing import ClassList
from model.windows import WindowPlan
from pipeline.artifacts import config_hash, is_up_to_date, read_artifact, read_sidecar, sha256_file
from pipeline.cli import (BadInput, check_output_dir, handle_errors, make_parser, progress, report_written,
                          setup_logging)
from pipeline.clip_stream import VideoPlan
from pipeline.contracts import WINDOWS
from pipeline.keypoints import read_keypoints
from pipeline.person_crop import decode_scale, normalize, scaled_size, window_boxes
from pipeline.stage import Job, ItemResult, check_outputs_free, exit_code, full_config, run_item, summary, write_qc_table
from pipeline.video import VIDEO_SUFFIXES, VideoError, probe
from pipeline.window_feed import FEED_KINDS, WindowFeed

__all__ = ["RecognizeOptions", "RecognizeJob", "RecognizeStage", "WindowClassifier", "plan_video",
           "recognize_videos", "recognize_video", "find_videos", "keypoints_for", "main", "STAGE_VERSION"]

log = logging.getLogger("pipeline.recognize")

STAGE_VERSION = 1
DECODERS = ("cpu", "nvdec")


class InputError(ValueError):
    """A video's inputs cannot be used together (message: one line, starting with the video's path)."""


# --------------------------------------------------------------------------------------------------
# Options and jobs
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RecognizeOptions:
    """Settings of a recognition run.

    Only ``min_valid``, the precision (``amp`` on CUDA) and the checkpoint enter the outputs' config
    hash: batch size, workers, compile and channels_last do not change results.

    Attributes
    ----------
    device : "cpu", "cuda" or "cuda:N"
    batch_size : windows per forward pass (across videos)
    workers : decode workers; 0 decodes in the main thread (no overlap with the model)
    worker_kind : "thread" (default: no process start, measured faster on 2 cores) or "process" (a decoder
        crash fails only its video; no GIL contention on many cores); docs/recognize.md, Tuning
    amp : bf16 autocast on CUDA (ignored on CPU, which runs fp32)
    compile : ``torch.compile`` the model (CUDA; worth it for long runs only)
    channels_last : NHWC convolutions (tensor cores on CUDA; neutral on CPU)
    min_valid : windows whose share of sampled frames with a usable pose is below this get null probs
    decoder : "cpu" (OpenCV/FFmpeg) or "nvdec" (torchcodec on the GPU; falls back to "cpu" with a
        warning when torchcodec or CUDA is missing)
    plan, classes : explicit expectations; a checkpoint that disagrees is refused (exit 2)
    max_pending : windows buffered between the decode workers and the model
    """

    device: str = "cpu"
    batch_size: int = 32
    workers: int = 1
    worker_kind: str = "thread"
    amp: bool = True
    compile: bool = False
    channels_last: bool = True
    min_valid: float = 0.5
    decoder: str = "cpu"
    plan: WindowPlan | None = None
    classes: ClassList | None = None
    max_pending: int = 0  # 0: twice the batch size

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {self.batch_size}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.worker_kind not in FEED_KINDS:
            raise ValueError(f"worker kind must be one of {', '.join(FEED_KINDS)}, got {self.worker_kind!r}")
        if not 0.0 <= self.min_valid <= 1.0:
            raise ValueError(f"min-valid must be in [0, 1], got {self.min_valid}")
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {self.decoder!r}")

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    @property
    def precision(self) -> str:
        return "bf16" if self.amp and self.torch_device.type == "cuda" else "fp32"


@dataclass(frozen=True)
class RecognizeJob(Job):
    """One video: ``source`` is the video, ``keypoints`` its keypoints Parquet file."""

    keypoints: str = ""


def check_checkpoint(ckpt: Checkpoint, options: RecognizeOptions) -> None:
    """Refuse a checkpoint whose plan or class list conflicts with an explicit option (BadInput, one line)."""
    if options.plan is not None and options.plan != ckpt.plan:
        raise BadInput(f"{ckpt.path}: the checkpoint's window plan {dataclasses.asdict(ckpt.plan)} conflicts with the "
                       f"requested {dataclasses.asdict(options.plan)} (drop --clip-len/--stride/--hop to use the "
                       "checkpoint's)")
    if options.classes is not None and options.classes != ckpt.classes:
        diff = next((i for i, (a, b) in enumerate(zip(ckpt.classes.names, options.classes.names)) if a != b),
                    min(len(ckpt.classes), len(options.classes)))
        raise BadInput(f"{ckpt.path}: the checkpoint's class list ({len(ckpt.classes)} classes) differs from "
                       f"--classes ({len(options.classes)} classes) at position {diff}")


# --------------------------------------------------------------------------------------------------
# Planning one video (main process)
# --------------------------------------------------------------------------------------------------
@dataclass
class PlannedVideo:
    """A video's window table before inference, and the plan the decode workers stream."""

    stream: VideoPlan
    frame_count: int
    fps: float
    size: tuple[int, int]
    starts: np.ndarray  # [W] start frame of every window
    ends: np.ndarray  # [W] exclusive end frame
    valid_fraction: np.ndarray  # [W]
    todo: np.ndarray  # [W] bool: classified (valid_fraction >= min_valid)


def _usable_joints(ckpt: Checkpoint, combined: np.ndarray) -> np.ndarray:
    """The keypoints the model takes: BODY_25 only for ``keypoint_format="body25"``, else all 33."""
    return combined[..., :25, :] if ckpt.entities.keypoint_format == "body25" else combined


def plan_video(video: str | Path, keypoints_path: str | Path, ckpt: Checkpoint, options: RecognizeOptions, *,
               video_id: str | None = None, video_sha256: str | None = None) -> PlannedVideo:
    """Check a video's inputs and lay its windows; raises VideoError / InputError naming the file.

    Checks: the video decodes; the keypoints file exists, was made from this video (its sidecar's
    ``input_hash`` is the video's sha256), covers the video's frame count, and holds every frame the
    checkpoint's window plan samples (``pipeline.pose --frames sampled`` with the same plan, or
    ``--frames all``).
    """
    video, keypoints_path = Path(video), Path(keypoints_path)
    info = probe(video)
    if not keypoints_path.exists():
        raise InputError(f"{video}: no keypoints file {keypoints_path} (run python -m pipeline.pose first)")
    meta = read_sidecar(keypoints_path) or {}
    if video_sha256 is None:
        video_sha256 = sha256_file(video)
    kp_hash = meta.get("input_hash")
    if kp_hash and kp_hash != video_sha256:
        raise InputError(f"{video}: {keypoints_path} was made from another video (sha256 {kp_hash[:12]}..., "
                         f"this video {video_sha256[:12]}...)")
    kp = read_keypoints(keypoints_path)
    kp_count = (meta.get("video") or {}).get("frame_count")
    if kp_count is not None and int(kp_count) != info.frame_count:
        raise InputError(f"{video}: {keypoints_path} is for a video of {kp_count} frames, this one has "
                         f"{info.frame_count}")
    plan = ckpt.plan
    windows = plan.windows(info.frame_count, info.fps)
    if not windows:
        raise InputError(f"{video}: no frames")
    sampled = plan.sampled_frames(info.frame_count, info.fps)
    rows = np.searchsorted(kp.frames, sampled)
    present = (rows < len(kp.frames)) & (kp.frames[np.minimum(rows, len(kp.frames) - 1)] == sampled) \
        if len(kp.frames) else np.zeros(len(sampled), bool)
    if not present.all():
        missing = sampled[~present]
        raise InputError(
            f"{video}: {keypoints_path} lacks {len(missing)} of the {len(sampled)} frames the checkpoint's window "
            f"plan samples (first: {int(missing[0])}); pose with --frames sampled --clip-len {plan.clip_len} "
            f"--stride {plan.stride} --hop {plan.hop_s}, or --frames all")
    win_frames = np.asarray([w.frames for w in windows], dtype=np.int64)  # [W, T]
    win_rows = np.searchsorted(kp.frames, win_frames)  # every sampled frame is present (checked above)
    usable = kp.valid  # detected and not rejected
    valid_fraction = usable[win_rows].mean(axis=1).astype(np.float32)
    todo = valid_fraction >= options.min_valid
    combined = kp.combined
    prep = ckpt.preprocessing
    sel = win_rows[todo]
    boxes = None
    if prep.region == "person":
        boxes = window_boxes(combined, usable, sel, info.size, padding=prep.person_padding,
                             threshold=ckpt.entities.threshold)
    sizes = [scaled_size(info.size, decode_scale(prep, info.size, b)) for b in (boxes or [None] * len(sel))]
    decode_sizes = sorted(set(sizes))
    stream = VideoPlan(
        video_id=video_id or video.stem, path=str(video), source_size=info.size, fps=info.fps,
        decode_sizes=decode_sizes, window_size=np.asarray([decode_sizes.index(z) for z in sizes], np.int64),
        window_index=np.flatnonzero(todo),
        window_frames=win_frames[todo], keypoints=np.ascontiguousarray(_usable_joints(ckpt, combined)[sel]),
        boxes=boxes, prep=prep)
    return PlannedVideo(stream, info.frame_count, info.fps, info.size,
                        np.asarray([w.start_frame for w in windows], np.int64),
                        np.asarray([w.end_frame for w in windows], np.int64), valid_fraction, todo)


# --------------------------------------------------------------------------------------------------
# The model side
# --------------------------------------------------------------------------------------------------
_PREPARE_LOCK = threading.Lock()
_PREPARED: "weakref.WeakKeyDictionary[torch.nn.Module, tuple[tuple, torch.nn.Module]]" = weakref.WeakKeyDictionary()


def _prepared(model: torch.nn.Module, device: torch.device, channels_last: bool, compile: bool) -> torch.nn.Module:
    """``prepare_for_inference`` once per model and setting, under a lock.

    Preparing converts the weights in place (device, memory format): doing it again while another
    thread (another video of a Prefect flow sharing the loaded checkpoint) runs a forward on the same
    model would feed that forward half-converted weights. Prepared once, the model is only read.
    """
    key = (str(device), channels_last, compile)
    with _PREPARE_LOCK:
        done = _PREPARED.get(model)
        if done is None or done[0] != key:
            done = (key, prepare_for_inference(model, device=device, channels_last=channels_last, compile=compile))
            _PREPARED[model] = done
        return done[1]


class WindowClassifier:
    """Batches of uint8 window clips -> (probs [B, C], ST routing share [B, K]) as float32 numpy.

    The model is prepared once (eval, device, channels_last, optional compile). Frames are normalised
    on the device. With ``compile`` a short last batch is padded to ``batch_size`` (one compiled shape).
    """

    def __init__(self, ckpt: Checkpoint, options: RecognizeOptions) -> None:
        self.device = options.torch_device
        self.prep = ckpt.preprocessing
        self.amp = options.amp
        self.pad_to = options.batch_size if options.compile else None
        self.model = _prepared(ckpt.model, self.device, options.channels_last, options.compile)

    def __call__(self, frames: torch.Tensor, keypoints: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """frames [B, T, 3, S, S] uint8, keypoints [B, T, J, 3] float32 (CPU, pinned on CUDA)."""
        b = frames.shape[0]
        if self.pad_to and b < self.pad_to:
            frames = torch.cat([frames, frames.new_zeros((self.pad_to - b, *frames.shape[1:]))])
            keypoints = torch.cat([keypoints, keypoints.new_zeros((self.pad_to - b, *keypoints.shape[1:]))])
        x = normalize(frames.to(self.device, non_blocking=True), self.prep)
        k = keypoints.to(self.device, non_blocking=True)
        out = predict(self.model, x, k, amp=self.amp)
        probs = out.logits[:b].float().softmax(-1)
        st = out.routing[:b, ..., 0].float().mean(dim=1)  # [B, K]: ST weight per entity, mean over T
        return probs.cpu().numpy(), st.cpu().numpy()


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
class _VideoState:
    """One job's progress through the engine (written by its threads, read by the main thread)."""

    job: "RecognizeJob"
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


class _Engine:
    """Plans, decodes and classifies the jobs' videos in two background threads.

    planner thread: per job in order, up to date? (hash) -> else plan_video -> the plan goes to the feed,
    so decoding starts with the first video while the later ones are still being hashed and checked;
    engine thread: prepares the model, runs the decode feed, packs batches, runs the classifier.
    """

    def __init__(self, stage: "RecognizeStage", jobs: list["RecognizeJob"], options: RecognizeOptions,
                 decoder: str) -> None:
        self.stage = stage
        self.options = options
        self.decoder = decoder
        self.states = {job.item_id: _VideoState(job) for job in jobs}
        ckpt = stage.ckpt
        t, size = ckpt.plan.clip_len, ckpt.preprocessing.size
        self.clip_shape = (t, 3, size, size)
        self.kp_shape = (t, 25 if ckpt.entities.keypoint_format == "body25" else 33, 3)
        self.windows_done = 0
        self.model_seconds = 0.0
        self.wall_seconds = 0.0
        self._plans: queue.Queue = queue.Queue()
        self._planner = threading.Thread(target=self._plan_all, name="recognize-planner", daemon=True)
        self._thread = threading.Thread(target=self._run, name="recognize-engine", daemon=True)
        self._bar = None

    def start(self) -> "_Engine":
        self._planner.start()
        self._thread.start()
        return self

    def join(self) -> None:
        self._planner.join()
        self._thread.join()

    def result(self, video_id: str) -> _VideoState:
        st = self.states[video_id]
        st.done.wait()
        return st

    # -- planner thread ------------------------------------------------------------------------------
    def _plan_all(self) -> None:
        try:
            for vid, st in self.states.items():
                job = st.job
                try:
                    if self.stage.up_to_date(job):
                        st.skip = True
                        st.done.set()
                        continue
                    st.planned = plan_video(job.source, job.keypoints, self.stage.ckpt, self.options,
                                            video_id=vid, video_sha256=self.stage.video_sha256(job))
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
        for (vid, w), p, r in zip(batch.keys, probs, st):
            s = self.states[vid]
            if s.error is None:
                s.probs[w], s.routing[w] = p, r
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
            classifier = WindowClassifier(self.stage.ckpt, self.options)  # while the planner hashes
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


# --------------------------------------------------------------------------------------------------
# The stage (pipeline.stage protocol)
# --------------------------------------------------------------------------------------------------
def windows_path(out_dir: str | Path, video_id: str) -> Path:
    return Path(out_dir) / "windows" / f"{video_id}.parquet"


def _qc_row(*, frames_total: int, windows: int, classified: int, low_valid: int, undecodable: int,
            valid_fraction: float) -> dict:
    flags = []
    if windows and classified < windows / 2:
        flags.append("few_classified")
    if undecodable:
        flags.append("undecodable_windows")
    return {"frames_total": int(frames_total), "windows": int(windows), "windows_classified": int(classified),
            "windows_low_valid": int(low_valid), "windows_undecodable": int(undecodable),
            "valid_fraction": float(valid_fraction), "flags": ";".join(flags)}


class RecognizeStage:
    """:class:`pipeline.stage.Stage` of the recognition stage; ``compute`` takes its results from the engine."""

    name = "recognize"
    version = STAGE_VERSION
    id_column = "video_id"
    qc_file = "qc_recognize"
    done_word = "recognised"

    def __init__(self, ckpt: Checkpoint, options: RecognizeOptions) -> None:
        self.ckpt = ckpt
        self.options = options
        self.engine: _Engine | None = None
        self._hashes: dict[tuple, str] = {}
        self.entity_names = [name for name, _ in ckpt.entities.entities]

    # hashing (memoised: the up-to-date check and run_item both ask)
    def _sha(self, path: Path) -> str:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in self._hashes:
            self._hashes[key] = sha256_file(path)
        return self._hashes[key]

    def video_sha256(self, job: RecognizeJob) -> str:
        src = Path(job.source)
        if not src.is_file():
            raise VideoError(src, "file not found" if not src.exists() else "is not a file")
        return self._sha(src)

    def input_hash(self, job: RecognizeJob) -> str:
        kp = Path(job.keypoints)
        video = self.video_sha256(job)
        if not kp.exists():
            raise InputError(f"{job.source}: no keypoints file {kp} (run python -m pipeline.pose first)")
        return hashlib.sha256(f"video:{video};keypoints:{self._sha(kp)}".encode()).hexdigest()

    def artifact_config(self, job: RecognizeJob) -> dict:
        return {"model_sha256": self.ckpt.sha256, "plan": self.ckpt.plan, "preprocessing": self.ckpt.preprocessing,
                "min_valid": self.options.min_valid, "precision": self.options.precision}

    def outputs(self, job: RecognizeJob) -> list[Path]:
        return [windows_path(job.out_dir, job.item_id)]

    def up_to_date(self, job: RecognizeJob) -> bool:
        """What :func:`pipeline.stage.run_item` will find: outputs current and readable (then it skips)."""
        try:
            if job.force or not is_up_to_date(self.outputs(job)[0], input_hash=self.input_hash(job),
                                              config=full_config(self, job)):
                return False
            self.qc_for_existing(job)
            return True
        except Exception:
            return False  # run_item reports the problem, or computes the item again

    def compute(self, job: RecognizeJob, ctx) -> dict:
        if self.engine is None or job.item_id not in self.engine.states:
            raise RuntimeError(f"{job.source}: not planned (internal error)")
        st = self.engine.result(job.item_id)
        if st.plan_error is not None:
            raise st.plan_error
        if st.error is not None:
            raise InputError(st.error)
        if st.planned is None:
            raise RuntimeError(f"{job.source}: judged up to date, then not (changed during the run?)")
        p = st.planned
        n = len(p.starts)
        probs: list[Any] = [None] * n
        routing: list[Any] = [None] * n
        for w in st.probs:
            probs[w] = st.probs[w].astype(np.float32)
            routing[w] = st.routing[w].astype(np.float32)
        fps = p.fps
        cfg_id = config_hash(ctx.config)
        table = pa.table({
            "video_id": pa.array([job.item_id] * n, pa.string()),
            "window": pa.array(np.arange(n, dtype=np.int32)),
            "start_frame": pa.array(p.starts.astype(np.int32)),
            "end_frame": pa.array(p.ends.astype(np.int32)),
            "start_s": pa.array(p.starts / fps),
            "end_s": pa.array(p.ends / fps),
            "valid_fraction": pa.array(p.valid_fraction.astype(np.float32)),
            "probs": pa.array(probs, pa.list_(pa.float32())),
            "model_id": pa.array([self.ckpt.sha256] * n, pa.string()),
            "config_id": pa.array([cfg_id] * n, pa.string()),
            "routing_st": pa.array(routing, pa.list_(pa.float32())),
        })
        classified = len(st.probs)
        counts = {"total": n, "classified": classified, "low_valid": int((~p.todo).sum()),
                  "undecodable": len(st.undecodable or [])}
        extra = {
            "video_id": job.item_id, "source": job.source,
            "model": {"sha256": self.ckpt.sha256, "path": str(self.ckpt.path),
                      "trained_on": self.ckpt.provenance.get("trained_on")},
            "classes": self.ckpt.classes.to_dict(),
            "video": {"fps": fps, "frame_count": p.frame_count, "width": p.size[0], "height": p.size[1]},
            "entities": self.entity_names,
            "keypoints": {"path": job.keypoints, "sha256": self._sha(Path(job.keypoints))},
            "windows": counts,
        }
        ctx.write_artifact(table, self.outputs(job)[0], contract=WINDOWS, extra=extra)
        return _qc_row(frames_total=p.frame_count, windows=n, classified=classified, low_valid=counts["low_valid"],
                       undecodable=counts["undecodable"], valid_fraction=float(p.valid_fraction.mean()))

    def qc_for_existing(self, job: RecognizeJob) -> dict:
        path = self.outputs(job)[0]
        table = read_artifact(path, WINDOWS)
        meta = read_sidecar(path) or {}
        counts = meta["windows"]
        vf = table.column("valid_fraction").to_numpy()
        return _qc_row(frames_total=meta["video"]["frame_count"], windows=table.num_rows,
                       classified=counts["classified"], low_valid=counts["low_valid"],
                       undecodable=counts["undecodable"], valid_fraction=float(vf.mean()) if len(vf) else 0.0)

    def failed_qc(self, job: RecognizeJob, error: str) -> dict:
        return {"frames_total": 0, "windows": 0, "windows_classified": 0, "windows_low_valid": 0,
                "windows_undecodable": 0, "valid_fraction": float("nan"), "flags": "failed"}


# --------------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------------
@dataclass
class RunStats:
    """Throughput of one run (what the CLI's summary and the benchmark print)."""

    windows: int = 0
    wall_seconds: float = 0.0
    model_seconds: float = 0.0

    @property
    def windows_per_s(self) -> float:
        return self.windows / self.wall_seconds if self.wall_seconds > 0 else float("nan")


def _as_checkpoint(checkpoint: Checkpoint | str | Path) -> Checkpoint:
    return checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)


def recognize_videos(jobs: list[RecognizeJob], checkpoint: Checkpoint | str | Path,
                     options: RecognizeOptions = RecognizeOptions()) -> tuple[list[ItemResult], RunStats]:
    """Recognise many videos with cross-video batching; results in job order (never raises per video).

    Raises BadInput (before any work) when the checkpoint conflicts with ``options.plan/classes``.
    """
    ids = [job.item_id for job in jobs]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise BadInput(f"two jobs have the same video id {dup!r}")
    ckpt = _as_checkpoint(checkpoint)
    check_checkpoint(ckpt, options)
    decoder = options.decoder
    if decoder == "nvdec" and not (importlib.util.find_spec("torchcodec") and options.torch_device.type == "cuda"
                                   and torch.cuda.is_available()):
        log.warning("--decoder nvdec needs torchcodec and a CUDA device; decoding on the CPU")
        decoder = "cpu"
    if decoder == "nvdec" and options.worker_kind == "process":
        options = dataclasses.replace(options, worker_kind="thread")  # GPU frames stay in this process
    stage = RecognizeStage(ckpt, options)
    engine = stage.engine = _Engine(stage, list(jobs), options, decoder).start()
    results = []
    for job in jobs:
        engine.states[job.item_id].decided.wait()  # the planner has hashed it: run_item's check is cheap
        results.append(run_item(stage, job))
    engine.join()
    return results, RunStats(engine.windows_done, engine.wall_seconds, engine.model_seconds)


def recognize_video(video: str | Path, keypoints_path: str | Path, checkpoint: Checkpoint | str | Path,
                    out_dir: str | Path, *, options: RecognizeOptions = RecognizeOptions(),
                    video_id: str | None = None, force: bool = False) -> ItemResult:
    """Recognise one video (the Prefect flow's entry point); writes ``out_dir/windows/<video_id>.parquet``.

    Returns the :class:`pipeline.stage.ItemResult` (status ok / skipped / failed, QC row, written
    paths); does not write the QC table (the caller collects rows). Never raises for a bad video.
    """
    video = Path(video)
    job = RecognizeJob(item_id=video_id or video.stem, source=str(video), out_dir=str(out_dir), force=force,
                       keypoints=str(keypoints_path))
    results, _ = recognize_videos([job], checkpoint, options)
    return results[0]


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------
def find_videos(paths: list[str]) -> list[Path]:
    """Video files given, and those one level inside given folders (sorted)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES)
        elif p.exists() or p.suffix.lower() in VIDEO_SUFFIXES:
            found.append(p)
        else:
            raise BadInput(f"{p}: no such file or folder")
    return found


def keypoints_for(keypoints_dir: str | Path, video_id: str) -> Path:
    """``DIR/keypoints/<id>.parquet`` (a pose output folder) or ``DIR/<id>.parquet``."""
    d = Path(keypoints_dir)
    nested = d / "keypoints" / f"{video_id}.parquet"
    return nested if nested.exists() or not (d / f"{video_id}.parquet").exists() else d / f"{video_id}.parquet"


def _read_classes(text: str) -> ClassList:
    if text == "ma52":
        return ClassList.ma52()
    path = Path(text)
    if not path.exists():
        raise BadInput(f"--classes {text}: not 'ma52' and no such file")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    try:
        return ClassList.from_actions(names)
    except ValueError as exc:
        raise BadInput(f"--classes {path}: {exc}") from None


def build_parser():
    p = make_parser("Sliding-window Micro-DualNet recognition: videos + keypoints -> window probabilities.",
                    prog="python -m pipeline.recognize")
    p.add_argument("inputs", nargs="+", metavar="VIDEO_OR_DIR", help="video files or folders of videos")
    p.add_argument("--keypoints", required=True, metavar="DIR",
                   help="pose stage output folder (DIR/keypoints/<video_id>.parquet or DIR/<video_id>.parquet)")
    p.add_argument("--weights", required=True, metavar="CKPT", help="model checkpoint (model.checkpoint)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (windows/, qc_recognize.*)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=int, default=32, metavar="N", help="windows per forward pass (across videos)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="decode workers (0: decode in the main process)")
    p.add_argument("--worker-kind", choices=FEED_KINDS, default="thread",
                   help="decode workers as threads, or processes (a crashing decoder then fails only its video)")
    p.add_argument("--threads", type=int, metavar="N", help="torch threads for the model in this process (default: torch's; "
                   "on a CPU run give it the cores the decode workers leave)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (CUDA, long runs)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                   help="bf16 autocast on CUDA (CPU always runs fp32)")
    p.add_argument("--no-channels-last", action="store_true", help="keep NCHW convolutions")
    p.add_argument("--min-valid", type=float, default=0.5, metavar="SHARE",
                   help="windows with a smaller share of sampled frames with a usable pose get null probs")
    p.add_argument("--decoder", choices=DECODERS, default="cpu", help="nvdec: GPU decoding via torchcodec (CPU fallback)")
    p.add_argument("--clip-len", type=int, metavar="T", help="expected frames per window (refuse a checkpoint with another)")
    p.add_argument("--stride", type=int, metavar="N", help="expected temporal stride (with --clip-len and --hop)")
    p.add_argument("--hop", type=float, metavar="SECONDS", help="expected seconds between windows (with --clip-len and --stride)")
    p.add_argument("--classes", metavar="ma52|FILE", help="expected class list: 'ma52' or a file of class names, one a line")
    p.add_argument("--force", action="store_true", help="redo videos even when their windows are up to date")
    return p


def options_from_args(args, ckpt_plan: WindowPlan | None = None) -> RecognizeOptions:
    plan = None
    given = [v is not None for v in (args.clip_len, args.stride, args.hop)]
    if any(given):
        base = ckpt_plan or WindowPlan()
        plan = dataclasses.replace(base, clip_len=args.clip_len if args.clip_len is not None else base.clip_len,
                                   stride=args.stride if args.stride is not None else base.stride,
                                   hop_s=args.hop if args.hop is not None else base.hop_s)
    try:
        return RecognizeOptions(
            device=args.device, batch_size=args.batch_size, workers=args.workers, worker_kind=args.worker_kind,
            amp=args.amp, compile=args.compile, channels_last=not args.no_channels_last, min_valid=args.min_valid,
            decoder=args.decoder, plan=plan, classes=_read_classes(args.classes) if args.classes else None)
    except ValueError as exc:
        raise BadInput(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(verbose=args.verbose, quiet=args.quiet)
    with handle_errors("pipeline.recognize"):
        out_dir = check_output_dir(args.out)
        if args.threads is not None:
            if args.threads < 1:
                raise BadInput(f"--threads must be >= 1, got {args.threads}")
            torch.set_num_threads(args.threads)
        if args.device.startswith("cuda") and not torch.cuda.is_available():
            raise BadInput(f"--device {args.device}: CUDA is not available on this machine")
        ckpt = load_checkpoint(args.weights)
        options = options_from_args(args, ckpt.plan)
        check_checkpoint(ckpt, options)
        videos = find_videos(args.inputs)
        if not videos:
            raise BadInput(f"no videos found in {', '.join(args.inputs)}")
        ids: dict[str, Path] = {}
        jobs = []
        for v in videos:
            if v.stem in ids:
                raise BadInput(f"two inputs have the same video id {v.stem!r}: {ids[v.stem]} and {v}")
            ids[v.stem] = v
            jobs.append(RecognizeJob(item_id=v.stem, source=str(v), out_dir=str(out_dir), force=args.force,
                                     keypoints=str(keypoints_for(args.keypoints, v.stem))))
        check_outputs_free(RecognizeStage(ckpt, options), jobs, out_dir)  # a user's file in the way: exit 2
    with handle_errors("pipeline.recognize"):
        results, stats = recognize_videos(jobs, ckpt, options)
        for r in results:
            for path in r.written:
                report_written(path)
        qc_config = {"model_sha256": ckpt.sha256, "min_valid": options.min_valid}
        stage = RecognizeStage(ckpt, options)
        for path in write_qc_table(stage, [r.qc for r in results], out_dir, config=qc_config):
            report_written(path)
    print(summary(stage, results, noun="video"), file=sys.stderr)
    if stats.windows:
        print(f"recognize: {stats.windows} windows in {stats.wall_seconds:.1f} s ({stats.windows_per_s:.1f} windows/s; "
              f"model {stats.model_seconds:.1f} s)", file=sys.stderr)
    return exit_code(results)


if __name__ == "__main__":
    raise SystemExit(main())
