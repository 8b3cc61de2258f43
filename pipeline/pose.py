"""Pose stage: videos (or OpenPose JSON folders) -> keypoints/<video_id>.parquet + QC table.

Usage::

    python -m pipeline.pose VIDEO_OR_DIR [...] --out DIR [--backend mediapipe|openpose-json]
        [--frames all|sampled] [--roi x,y,w,h | --roi-file rois.csv] [--workers N]
        [--overlay sheet|video|both] [--force]

Outputs under ``--out``:

- ``keypoints/<video_id>.parquet`` (+ ``.json`` sidecar): the KEYPOINTS contract, read it with
  :func:`pipeline.keypoints.read_keypoints`. The sidecar's ``video`` record holds fps, size, rotation,
  frame count, ROI and frame-selection facts. ``video_id`` is the file stem (the folder name for
  OpenPose input).
- ``qc.parquet`` + ``qc.csv``: one row per input of this run (:mod:`pipeline.qc`).
- ``overlays/<video_id>.png`` / ``.mp4`` with ``--overlay`` (:mod:`pipeline.overlay`).

A video whose keypoints are up to date (same input sha256, same stage config) is skipped, its QC row
recomputed from the stored keypoints. One failing input does not stop the others; its QC row carries
the error. Exit code: 0 all inputs ok, 1 some failed, 2 bad arguments.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import csv
import logging
import multiprocessing
import sys
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from model.taxonomy import ENTITY_LAYOUTS, NUM_BODY25, NUM_EXTRA
from pipeline.artifacts import is_up_to_date, sha256_file, sha256_files, write_artifact
from pipeline.cli import EXIT_OK, EXIT_PARTIAL, BadInput, handle_errors, make_parser, progress, report_written, setup_logging
from pipeline.contracts import KEYPOINTS
from pipeline.keypoints import Keypoints, read_keypoints
from pipeline.pose_mediapipe import BODY25_FROM_BLAZEPOSE, MediaPipeConfig, MediaPipePose, blazepose_to_body25
from pipeline.pose_openpose import (
    SELECT_RULES, OpenPoseConfig, OpenPoseError, infer_image_size, is_openpose_folder, list_frames, load_people,
    select_people,
)
from pipeline.qc import PlausibilityConfig, QCConfig, failed_row, implausible, qc_row, write_qc
from pipeline.video import VIDEO_SUFFIXES, VideoError, iter_frames, probe
from model.windows import MA52_PLAN, WindowPlan

__all__ = ["PoseConfig", "VideoJob", "VideoResult", "process_video", "run_pose", "find_inputs", "parse_roi", "main"]

log = logging.getLogger("pipeline.pose")

BACKENDS = ("mediapipe", "openpose-json")
FRAME_MODES = ("all", "sampled")
OVERLAY_MODES = ("sheet", "video", "both")
STAGE_VERSION = 1  # bump when the stage's logic changes output for the same config

Roi = tuple[int, int, int, int]
# BlazePose returns every joint it maps (small toes excepted), inside the image or not.
_MP_PRESENT = np.array([s is not None for s in BODY25_FROM_BLAZEPOSE])


@dataclass(frozen=True)
class PoseConfig:
    """Settings of one pose run. Only the active backend's settings enter a video's config hash.

    Attributes
    ----------
    backend : {"mediapipe", "openpose-json"}
    frames : {"all", "sampled"}
        Pose on every frame, or only on the frames some window of ``plan`` samples.
    plan : WindowPlan
        Window geometry used by ``frames="sampled"`` (and recorded for the inference stage).
    roi : (x, y, w, h) or None
        Region of the frame where the participant sits; None for the whole frame.
    mediapipe, openpose : backend settings
    openpose_size : (width, height) or None
        Source image size for OpenPose input (JSON has none); None: the joints' extent.
    plausibility : PlausibilityConfig
    qc : QCConfig
    """

    backend: str = "mediapipe"
    frames: str = "all"
    plan: WindowPlan = MA52_PLAN
    roi: Roi | None = None
    mediapipe: MediaPipeConfig = MediaPipeConfig()
    openpose: OpenPoseConfig = OpenPoseConfig()
    openpose_size: tuple[int, int] | None = None
    plausibility: PlausibilityConfig = PlausibilityConfig()
    qc: QCConfig = QCConfig()

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; choose from {', '.join(BACKENDS)}")
        if self.frames not in FRAME_MODES:
            raise ValueError(f"frames must be one of {', '.join(FRAME_MODES)}, got {self.frames!r}")

    def artifact_config(self, roi: Roi | None) -> dict:
        """What a video's keypoints depend on: hashed into and stored in its sidecar."""
        return {
            "stage_version": STAGE_VERSION,
            "backend": self.backend,
            "settings": self.mediapipe if self.backend == "mediapipe" else self.openpose,
            "openpose_size": self.openpose_size if self.backend == "openpose-json" else None,
            "frames": self.frames,
            "plan": self.plan if self.frames == "sampled" else None,
            "roi": list(roi) if roi else None,
            "plausibility": self.plausibility,
        }


@dataclass(frozen=True)
class VideoJob:
    """One input to process (picklable: sent to worker processes)."""

    source: str
    video_id: str
    out_dir: str
    config: PoseConfig
    roi: Roi | None = None
    overlay: str | None = None
    force: bool = False


@dataclass
class VideoResult:
    """What happened to one input."""

    video_id: str
    source: str
    status: str  # ok | skipped | failed
    qc: dict
    written: list[str] = field(default_factory=list)
    error: str | None = None


# --------------------------------------------------------------------------------------------------
# Region of interest
# --------------------------------------------------------------------------------------------------
def parse_roi(text: str) -> Roi:
    """``"x,y,w,h"`` (pixels, integers) -> tuple; raises BadInput on anything else."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        vals = tuple(int(round(float(p))) for p in parts)
    except ValueError:
        vals = ()
    if len(vals) != 4 or vals[2] <= 0 or vals[3] <= 0 or vals[0] < 0 or vals[1] < 0:
        raise BadInput(f"--roi must be x,y,w,h with x,y >= 0 and w,h > 0 (pixels), got {text!r}")
    return vals  # type: ignore[return-value]


def clip_roi(roi: Roi | None, size: tuple[int, int], source: str) -> Roi:
    """The ROI clipped to the frame (the whole frame when None); VideoError when nothing is left."""
    w, h = size
    if roi is None:
        return (0, 0, w, h)
    x1, y1 = max(0, roi[0]), max(0, roi[1])
    x2, y2 = min(w, roi[0] + roi[2]), min(h, roi[1] + roi[3])
    if x2 - x1 < 16 or y2 - y1 < 16:
        raise VideoError(source, f"ROI {roi} leaves less than 16x16 pixels of the {w}x{h} frame")
    return (x1, y1, x2 - x1, y2 - y1)


def read_roi_file(path: str | Path) -> dict[str, Roi]:
    """A CSV with columns ``video_id,x,y,w,h`` -> {video_id: roi}."""
    path = Path(path)
    if not path.exists():
        raise BadInput(f"--roi-file {path} not found")
    out: dict[str, Roi] = {}
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        need = {"video_id", "x", "y", "w", "h"}
        if not reader.fieldnames or not need <= set(reader.fieldnames):
            raise BadInput(f"--roi-file {path} needs the columns video_id,x,y,w,h")
        for row in reader:
            out[row["video_id"]] = parse_roi(",".join(row[k] for k in ("x", "y", "w", "h")))
    return out


# --------------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------------
def _finish_frame(
    body: np.ndarray, raw: np.ndarray, present: np.ndarray, size: tuple[int, int], cfg: PlausibilityConfig
) -> bool:
    """Apply the plausibility check in place; True when the frame is rejected (keypoints zeroed)."""
    if implausible(raw, present, size, cfg) is None:
        return False
    body[:] = 0.0
    return True


def pose_mediapipe_video(
    path: Path, config: PoseConfig, roi: Roi | None
) -> tuple[Keypoints, dict]:
    """Run BlazePose on a video's frames; return the keypoints and the sidecar's ``video`` record."""
    info = probe(path)
    rx, ry, rw, rh = clip_roi(roi, info.size, str(path))
    if config.frames == "sampled":
        wanted = config.plan.sampled_frames(info.frame_count, info.fps)
    else:
        wanted = None
    n_req = info.frame_count if wanted is None else len(wanted)
    frames, times, bodies, extras, detected, rejected = [], [], [], [], [], []
    with MediaPipePose(config.mediapipe) as pose:
        for index, t, bgr in iter_frames(path, wanted, fps=info.fps):
            crop = bgr[ry : ry + rh, rx : rx + rw]
            lm = pose.landmarks(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB))
            body = np.zeros((NUM_BODY25, 3), np.float32)
            extra = np.zeros((NUM_EXTRA, 3), np.float32)
            rej = False
            if lm is not None:
                body, extra, raw = blazepose_to_body25(lm, (rw, rh))
                # Back to full-frame pixels; missing joints stay exactly (0, 0, 0).
                for arr in (body, extra):
                    on = arr[:, 2] > 0
                    arr[on, 0] += rx
                    arr[on, 1] += ry
                raw[:, 0] += rx
                raw[:, 1] += ry
                rej = _finish_frame(body, raw, _MP_PRESENT, info.size, config.plausibility)
                if rej:
                    extra[:] = 0.0
            frames.append(index)
            times.append(t)
            bodies.append(body)
            extras.append(extra)
            detected.append(lm is not None)
            rejected.append(rej)
    if not frames:
        raise VideoError(path, "no frame could be decoded")
    if wanted is None and len(frames) > info.frame_count:
        # The whole file was read and it holds more frames than probed: trust the decoder.
        log.warning("%s: decoded %d frames, the container said %d", path, len(frames), info.frame_count)
        info = dataclasses.replace(info, frame_count=len(frames), duration_s=len(frames) / info.fps)
        n_req = len(frames)
    if len(frames) < n_req:
        log.warning("%s: %d of %d requested frames could not be decoded (truncated file?)", path, n_req - len(frames), n_req)
    kp = Keypoints(
        frames=np.asarray(frames, np.int64), time_s=np.asarray(times, np.float64),
        body25=np.stack(bodies), extra=np.stack(extras),
        detected=np.asarray(detected, bool), rejected=np.asarray(rejected, bool),
        fps=info.fps, size=info.size,
    )
    meta = info.to_dict() | {
        "roi": [rx, ry, rw, rh], "frames_mode": config.frames, "frames_requested": int(n_req),
        "frames_missing": int(n_req - len(frames)),
    }
    return kp, meta


def pose_openpose_folder(folder: Path, config: PoseConfig, roi: Roi | None) -> tuple[Keypoints, dict]:
    """Import one OpenPose JSON folder; return the keypoints and the sidecar's ``video`` record."""
    pairs = list_frames(folder)
    frame_count = pairs[-1][0] + 1
    if config.frames == "sampled":
        keep = set(int(i) for i in config.plan.sampled_frames(frame_count, config.openpose.fps))
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
        rejected[k] = _finish_frame(body[k], body[k].copy(), present, size, config.plausibility)
    fps = config.openpose.fps
    frames = np.asarray([i for i, _ in pairs], np.int64)
    kp = Keypoints(
        frames=frames, time_s=frames / fps, body25=body, extra=np.zeros((n, NUM_EXTRA, 3), np.float32),
        detected=np.asarray([c is not None for c in choice], bool), rejected=rejected, fps=fps, size=size,
    )
    meta = {
        "path": str(folder), "width": int(size[0]), "height": int(size[1]), "fps": fps,
        "frame_count": int(frame_count), "duration_s": frame_count / fps, "rotation": 0,
        "roi": list(roi) if roi else None, "frames_mode": config.frames, "frames_requested": n,
        "frames_missing": 0, "size_inferred": config.openpose_size is None,
    }
    return kp, meta


# --------------------------------------------------------------------------------------------------
# One input
# --------------------------------------------------------------------------------------------------
def keypoints_path(out_dir: str | Path, video_id: str) -> Path:
    return Path(out_dir) / "keypoints" / f"{video_id}.parquet"


def _input_hash(source: Path, backend: str) -> str:
    if backend == "openpose-json":
        return sha256_files(f for _, f in list_frames(source))
    if not source.exists():
        raise VideoError(source, "file not found")
    if source.is_dir():
        raise VideoError(source, "is a folder, not a video file")
    return sha256_file(source)


def _stale_overlays(job: VideoJob, keypoints: Path) -> str | None:
    """For an up-to-date video: the overlay mode still to draw (missing or older than the keypoints)."""
    if not job.overlay:
        return None
    wanted = {"sheet": ("png",), "video": ("mp4",), "both": ("png", "mp4")}[job.overlay]
    kp_mtime = keypoints.stat().st_mtime_ns
    todo = []
    for ext in wanted:
        f = Path(job.out_dir) / "overlays" / f"{job.video_id}.{ext}"
        if not f.exists() or f.stat().st_mtime_ns < kp_mtime:
            todo.append(ext)
    if not todo:
        return None
    return "both" if len(todo) == 2 else {"png": "sheet", "mp4": "video"}[todo[0]]


def process_video(job: VideoJob) -> VideoResult:
    """Pose one input end to end (hash, skip-if-up-to-date, pose, write, QC, overlay).

    Never raises for a bad input: the error goes into the result (status ``failed``).
    """
    t0 = time.perf_counter()
    cfg = job.config
    source = Path(job.source)
    out = keypoints_path(job.out_dir, job.video_id)
    written: list[str] = []
    try:
        input_hash = _input_hash(source, cfg.backend)
        art_cfg = cfg.artifact_config(job.roi)
        kp = None
        if not job.force and is_up_to_date(out, input_hash=input_hash, config=art_cfg):
            try:
                kp = read_keypoints(out)
                meta = kp.meta
                status = "skipped"
            except Exception as exc:  # damaged file under a matching sidecar: pose it again
                log.warning("%s: up-to-date keypoints %s are unreadable (%s); posing again", source, out, exc)
                kp = None
        if kp is None:
            if cfg.backend == "mediapipe":
                kp, meta = pose_mediapipe_video(source, cfg, job.roi)
            else:
                kp, meta = pose_openpose_folder(source, cfg, job.roi)
            write_artifact(
                kp.to_table(), out, contract=KEYPOINTS, stage="pose", input_hash=input_hash,
                config=art_cfg, extra={"video": meta, "video_id": job.video_id, "source": str(source)},
            )
            written.append(str(out))
            status = "ok"
        size = (int(meta["width"]), int(meta["height"]))
        overlay = job.overlay if status == "ok" else _stale_overlays(job, out)
        if overlay:
            from pipeline.overlay import write_overlays

            video = source if cfg.backend == "mediapipe" else None
            written += [str(p) for p in write_overlays(
                video, kp, size, Path(job.out_dir) / "overlays", job.video_id, mode=overlay,
                layout=ENTITY_LAYOUTS[cfg.qc.layout], roi=meta.get("roi"),
            )]
        row = qc_row(
            job.video_id, str(source), kp, size, frames_total=int(meta.get("frame_count", len(kp))),
            config=cfg.qc, status=status, seconds=time.perf_counter() - t0,
        )
        return VideoResult(job.video_id, str(source), status, row, written)
    except (VideoError, OpenPoseError) as exc:
        msg = str(exc)
    except Exception as exc:  # one bad video must not stop the batch; keep the reason, name the file
        log.debug("%s failed", source, exc_info=True)
        msg = f"{source}: {type(exc).__name__}: {exc}"
    return VideoResult(
        job.video_id, str(source), "failed",
        failed_row(job.video_id, str(source), msg, layout=cfg.qc.layout, seconds=time.perf_counter() - t0),
        written, error=msg,
    )


# --------------------------------------------------------------------------------------------------
# A run over many inputs
# --------------------------------------------------------------------------------------------------
def find_inputs(paths: list[str | Path], backend: str) -> list[Path]:
    """Expand the command line's inputs into a sorted list of videos (or OpenPose folders).

    A file is taken as given (so a broken file is reported, not silently dropped). A folder is
    searched one level deep: for ``mediapipe`` for video files, for ``openpose-json`` it is one video
    when it holds ``*_keypoints.json`` files itself, else each sub-folder that does is one video.
    """
    found: list[Path] = []
    for p in map(Path, paths):
        if backend == "openpose-json":
            if is_openpose_folder(p):
                found.append(p)
            elif p.is_dir():
                found += sorted(d for d in p.iterdir() if is_openpose_folder(d))
            else:
                raise BadInput(f"{p}: not a folder of OpenPose *_keypoints.json files (or of such folders)")
        elif p.is_dir():
            found += sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES)
        elif p.exists() or p.suffix.lower() in VIDEO_SUFFIXES:
            found.append(p)
        else:
            raise BadInput(f"{p}: no such file or folder")
    return found


def make_jobs(
    inputs: list[Path], out_dir: Path, config: PoseConfig, *, rois: dict[str, Roi] | None = None,
    overlay: str | None = None, force: bool = False,
) -> list[VideoJob]:
    ids: dict[str, Path] = {}
    jobs = []
    for p in inputs:
        vid = p.name if p.is_dir() else p.stem
        if vid in ids:
            raise BadInput(f"two inputs have the same video id {vid!r}: {ids[vid]} and {p}")
        ids[vid] = p
        roi = (rois or {}).get(vid, config.roi)
        jobs.append(VideoJob(str(p), vid, str(out_dir), config, roi, overlay, force))
    unused = sorted(set(rois or {}) - set(ids))
    if unused:  # a typo in a ROI file would otherwise pose that participant on the whole frame
        log.warning("--roi-file names video(s) not among the inputs: %s", ", ".join(unused))
    return jobs


_started = None  # in worker processes: queue on which each job announces its index when it starts


def _init_worker(queue) -> None:
    global _started
    _started = queue


def _run_job(i: int, job: VideoJob, worker) -> VideoResult:
    if _started is not None:
        _started.put(i)
    return worker(job)


def _worker_died(job: VideoJob, detail: str = "") -> VideoResult:
    msg = (f"{job.source}: the worker process died while posing this video (crashed, killed or out of memory)"
           + (f": {detail}" if detail else ""))
    return VideoResult(job.video_id, job.source, "failed",
                       failed_row(job.video_id, job.source, msg, layout=job.config.qc.layout), error=msg)


def _pool_round(
    jobs: list[VideoJob], todo: list[int], workers: int, worker, results: dict[int, VideoResult], done
) -> tuple[bool, set[int]]:
    """Run ``todo`` in one spawned pool; returns (pool broke, indices that started in it)."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.SimpleQueue()
    started: set[int] = set()

    def drain() -> None:
        while not queue.empty():
            started.add(queue.get())

    broken = False
    with cf.ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx,
                                initializer=_init_worker, initargs=(queue,)) as pool:
        futures = {pool.submit(_run_job, i, jobs[i], worker): i for i in todo}
        for fut in cf.as_completed(futures):
            drain()  # keep the pipe short; also tells which jobs had begun when a worker died
            i = futures[fut]
            try:
                results[i] = fut.result()
            except BrokenProcessPool:
                broken = True  # every unfinished future of the pool ends up here, not only the culprit's
                continue
            except Exception as exc:  # e.g. a result that cannot be sent back
                results[i] = _worker_died(jobs[i], f"{type(exc).__name__}: {exc}")
            done()
    drain()
    queue.close()
    return broken, started


def run_pose(jobs: list[VideoJob], *, workers: int = 1, worker=None) -> list[VideoResult]:
    """Process jobs, in worker processes (spawned) when ``workers > 1``; results in job order.

    ``worker`` is the per-job function (default :func:`process_video`; must be picklable by name).
    A worker process that dies (segfault in native code, ``os._exit``, the OOM killer) breaks the whole
    ``ProcessPoolExecutor``: every unfinished future then fails, not only the one that crashed. So
    after a break the jobs that had started (at most ``workers``) are re-run in a one-process pool,
    where a crash can only be the running job's, and the jobs that had not started go on in a fresh
    pool: only a video that crashes its worker on its own is reported failed.
    """
    worker = worker or process_video
    results: dict[int, VideoResult] = {}
    bar = progress(range(len(jobs)), desc="pose", total=len(jobs), unit="video")
    it = iter(bar)

    def done() -> None:
        next(it, None)

    if workers <= 1 or len(jobs) <= 1:
        for i, job in enumerate(jobs):
            results[i] = worker(job)
            done()
    else:
        # spawn, not fork: MediaPipe's and OpenCV's thread pools do not survive a fork.
        todo = list(range(len(jobs)))
        while todo:
            broken, started = _pool_round(jobs, todo, workers, worker, results, done)
            left = [i for i in todo if i not in results]
            if not broken or not left:
                break
            suspects = [i for i in left if i in started]
            if not suspects:  # the pool died before any job began: no point in trying again
                for i in left:
                    results[i] = _worker_died(jobs[i], "the worker pool could not run")
                    done()
                break
            log.warning("a pose worker process died; re-running the %d video(s) it may have been posing one at a time",
                        len(suspects))
            while suspects:  # one worker: a break now names its job
                broken, started1 = _pool_round(jobs, suspects, 1, worker, results, done)
                suspects = [i for i in suspects if i not in results]
                if not broken or not suspects:
                    break
                culprits = [i for i in suspects if i in started1] or suspects
                for i in culprits:
                    results[i] = _worker_died(jobs[i])
                    done()
                suspects = [i for i in suspects if i not in results]
            todo = [i for i in left if i not in started]
    if hasattr(bar, "close"):
        bar.close()
    return [results[i] for i in range(len(jobs))]


def summarize(results: list[VideoResult]) -> str:
    n = len(results)
    ok = sum(r.status == "ok" for r in results)
    skipped = sum(r.status == "skipped" for r in results)
    failed = [r for r in results if r.status == "failed"]
    flagged = [r for r in results if r.status != "failed" and r.qc.get("flags")]
    lines = [f"pose: {n} input(s): {ok} posed, {skipped} up to date, {len(failed)} failed, {len(flagged)} flagged"]
    for r in failed:
        lines.append(f"  failed  {r.error}")
    for r in flagged:
        lines.append(f"  flagged {r.video_id}: {r.qc['flags']} (valid {r.qc['valid_fraction']:.0%})")
    return "\n".join(lines)


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise BadInput(f"--size must be WIDTHxHEIGHT, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise BadInput(f"--size must be positive, got {text!r}")
    return w, h


def build_parser():
    p = make_parser("Videos (or OpenPose JSON folders) to BODY_25 keypoints, with QC.", prog="python -m pipeline.pose")
    p.add_argument("inputs", nargs="+", metavar="VIDEO_OR_DIR", help="video files, folders of videos, or OpenPose JSON folders")
    p.add_argument("--out", required=True, help="output folder (keypoints/, qc.parquet, qc.csv, overlays/)")
    p.add_argument("--backend", choices=BACKENDS, default="mediapipe")
    p.add_argument("--frames", choices=FRAME_MODES, default="all",
                   help="pose on every frame, or only on frames the recognition windows sample")
    p.add_argument("--clip-len", type=int, default=MA52_PLAN.clip_len, help="window: frames sampled (T)")
    p.add_argument("--stride", type=int, default=MA52_PLAN.stride, help="window: temporal stride")
    p.add_argument("--hop", type=float, default=MA52_PLAN.hop_s, help="window: seconds between window starts")
    p.add_argument("--no-align-hop", action="store_true", help="do not round the hop to a multiple of the stride")
    p.add_argument("--roi", help="x,y,w,h region (pixels) where the participant sits, for all videos")
    p.add_argument("--roi-file", help="CSV video_id,x,y,w,h with a per-video ROI (overrides --roi)")
    p.add_argument("--workers", type=int, default=1, help="videos processed in parallel (processes)")
    p.add_argument("--overlay", choices=OVERLAY_MODES, metavar="{sheet,video,both}",
                   help="also draw skeleton + entity boxes: sheet = PNG contact sheet, video = MP4 of the posed "
                        "frames, both (up-to-date videos only get overlays that are missing or older than their keypoints)")
    p.add_argument("--force", action="store_true", help="redo videos even when their keypoints are up to date")
    p.add_argument("--layout", choices=sorted(ENTITY_LAYOUTS), default="ma52", help="entity layout for QC/overlays")
    p.add_argument("--min-detected", type=float, default=QCConfig.min_detected, help="QC flag below this valid share")
    p.add_argument("--model-complexity", type=int, default=1, help="BlazePose model; only 1 ships offline")
    p.add_argument("--no-plausibility", action="store_true", help="keep frames that fail the anatomical check")
    g = p.add_argument_group("openpose-json")
    g.add_argument("--select", choices=SELECT_RULES, default="continuity", help="target-person rule")
    g.add_argument("--fps", type=float, default=30.0, help="frame rate of the source videos")
    g.add_argument("--size", help="WIDTHxHEIGHT of the source videos (default: extent of the joints)")
    return p


def config_from_args(args) -> PoseConfig:
    try:
        return PoseConfig(
            backend=args.backend,
            frames=args.frames,
            plan=WindowPlan(args.clip_len, args.stride, args.hop, align_hop_to_stride=not args.no_align_hop),
            roi=parse_roi(args.roi) if args.roi else None,
            mediapipe=MediaPipeConfig(model_complexity=args.model_complexity),
            openpose=OpenPoseConfig(select=args.select, fps=args.fps),
            openpose_size=_parse_size(args.size) if args.size else None,
            plausibility=PlausibilityConfig(enabled=not args.no_plausibility),
            qc=QCConfig(layout=args.layout, min_detected=args.min_detected),
        )
    except BadInput:
        raise
    except ValueError as exc:
        raise BadInput(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(verbose=args.verbose, quiet=args.quiet)
    with handle_errors("pipeline.pose"):
        config = config_from_args(args)
        if args.workers < 1:
            raise BadInput(f"--workers must be >= 1, got {args.workers}")
        inputs = find_inputs(args.inputs, config.backend)
        if not inputs:
            raise BadInput(f"no inputs found in {', '.join(args.inputs)}")
        rois = read_roi_file(args.roi_file) if args.roi_file else None
        out_dir = Path(args.out)
        jobs = make_jobs(inputs, out_dir, config, rois=rois, overlay=args.overlay, force=args.force)
    results = run_pose(jobs, workers=args.workers)
    for r in results:
        for path in r.written:
            report_written(path)
    qc_config = {"qc": config.qc, "plausibility": config.plausibility, "backend": config.backend, "frames": config.frames}
    for path in write_qc([r.qc for r in results], out_dir, config=qc_config):
        report_written(path)
    print(summarize(results), file=sys.stderr)
    return EXIT_PARTIAL if any(r.status == "failed" for r in results) else EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
