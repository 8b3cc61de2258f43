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
- ``qc.parquet`` + ``qc.csv``: one row per video ever processed into this folder (:mod:`pipeline.qc`);
  a run updates the rows of its inputs and keeps the others.
- ``overlays/<video_id>.png`` / ``.mp4`` with ``--overlay`` (:mod:`pipeline.overlay`).

The module is the pose-specific part of a stage (:class:`PoseStage`) and the CLI. The life cycle
(hashes, skip when up to date, atomic writes, QC rows, worker processes, summary, exit code) is the
stage runner's (:mod:`pipeline.stage`); backends are in :mod:`pipeline.pose_backends`, ROI parsing in
:mod:`pipeline.roi`, settings in :mod:`pipeline.pose_config`.

A video whose keypoints are up to date (same input sha256, same stage config) is skipped, its QC row
recomputed from the stored keypoints. One failing input does not stop the others; its QC row carries
the error, and keypoints (and overlays) an earlier run wrote for it are removed. A video that decodes
only partway fails with the QC flag ``truncated``. Exit code: 0 all inputs ok, 1 some failed, 2 bad
arguments or an unusable ``--out`` (checked before any video is posed).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from model.taxonomy import ENTITY_LAYOUTS
from model.windows import MA52_PLAN, WindowPlan
from pipeline.cli import BadInput, check_output_dir, handle_errors, make_parser, report_written, setup_logging
from pipeline.contracts import KEYPOINTS
from pipeline.keypoints import read_keypoints
from pipeline.pose_backends import get_backend
from pipeline.pose_config import BACKEND_NAMES, PoseConfig, PoseSettings
from pipeline.run_lock import lock_for_output
from pipeline.settings import add_arguments, from_args
from pipeline.pose_openpose import SELECT_RULES, OpenPoseConfig
from pipeline.qc import failed_row, qc_row
from pipeline.roi import Roi, clip_roi, parse_roi, read_roi_file
from pipeline.stage import (ItemContext, ItemResult, check_outputs_free, exit_code, run_item, run_items, summary,
                            write_qc_table)

__all__ = ["PoseConfig", "PoseStage", "POSE_STAGE", "VideoJob", "process_video", "run_pose", "find_inputs",
           "make_jobs", "keypoints_path", "parse_roi", "clip_roi", "main"]

log = logging.getLogger("pipeline.pose")

BACKENDS = BACKEND_NAMES
OVERLAY_MODES = ("sheet", "video", "both")
_OVERLAY_FILES = {"sheet": ("png",), "video": ("mp4",), "both": ("png", "mp4")}


@dataclass(frozen=True)
class VideoJob:
    """One input to pose (picklable: sent to worker processes)."""

    source: str
    video_id: str
    out_dir: str
    config: PoseConfig
    roi: Roi | None = None
    overlay: str | None = None
    force: bool = False

    @property
    def item_id(self) -> str:
        return self.video_id


def keypoints_path(out_dir: str | Path, video_id: str) -> Path:
    return Path(out_dir) / "keypoints" / f"{video_id}.parquet"


def _overlay_path(job: VideoJob, ext: str) -> Path:
    return Path(job.out_dir) / "overlays" / f"{job.video_id}.{ext}"


class PoseStage:
    """The pose-specific parts of the stage (see :class:`pipeline.stage.Stage`)."""

    name = "pose"
    version = 1  # bump when the stage's logic changes output for the same config
    id_column = "video_id"
    qc_file = "qc"
    done_word = "posed"

    def input_hash(self, job: VideoJob) -> str:
        return get_backend(job.config.backend).input_hash(Path(job.source))

    def artifact_config(self, job: VideoJob) -> dict:
        """What a video's keypoints depend on: hashed into and stored in its sidecar."""
        cfg = job.config
        return {
            "backend": cfg.backend,
            "settings": get_backend(cfg.backend).settings(cfg),
            "frames": cfg.frames,
            "plan": cfg.plan if cfg.frames == "sampled" else None,
            "roi": list(job.roi) if job.roi else None,
            "plausibility": cfg.plausibility,
        }

    def outputs(self, job: VideoJob) -> list[Path]:
        return [keypoints_path(job.out_dir, job.video_id)]

    def derived_outputs(self, job: VideoJob) -> list[Path]:
        return [_overlay_path(job, ext) for ext in ("png", "mp4")]

    def compute(self, job: VideoJob, ctx: ItemContext) -> dict:
        cfg = job.config
        backend = get_backend(cfg.backend)
        source = Path(job.source)
        kp, meta = backend.pose(source, cfg, job.roi)
        out = ctx.write_artifact(kp.to_table(), keypoints_path(job.out_dir, job.video_id), contract=KEYPOINTS,
                                 extra={"video": meta, "video_id": job.video_id, "source": str(source)})
        if job.overlay:
            self._draw(job, kp, meta, job.overlay, ctx)
        return qc_row(job.video_id, str(source), kp, (int(meta["width"]), int(meta["height"])),
                      frames_total=int(meta.get("frame_count", len(kp))), config=cfg.qc)

    def qc_for_existing(self, job: VideoJob) -> dict:
        kp = read_keypoints(keypoints_path(job.out_dir, job.video_id))
        size = (int(kp.meta["width"]), int(kp.meta["height"]))
        return qc_row(job.video_id, job.source, kp, size, frames_total=int(kp.meta.get("frame_count", len(kp))),
                      config=job.config.qc)

    def refresh_existing(self, job: VideoJob, ctx: ItemContext) -> None:
        """Up-to-date keypoints: draw only the overlays asked for that are missing or older than them."""
        if not job.overlay:
            return
        out = keypoints_path(job.out_dir, job.video_id)
        kp_mtime = out.stat().st_mtime_ns
        todo = [ext for ext in _OVERLAY_FILES[job.overlay]
                if not _overlay_path(job, ext).exists() or _overlay_path(job, ext).stat().st_mtime_ns < kp_mtime]
        if todo:
            mode = "both" if len(todo) == 2 else {"png": "sheet", "mp4": "video"}[todo[0]]
            kp = read_keypoints(out)
            self._draw(job, kp, kp.meta, mode, ctx)

    def failed_qc(self, job: VideoJob, error: str) -> dict:
        return failed_row(job.video_id, job.source, error, layout=job.config.qc.layout)

    def _draw(self, job: VideoJob, kp, meta: dict, mode: str, ctx: ItemContext) -> None:
        from pipeline.overlay import write_overlays  # drawing code loads only when overlays are asked for

        cfg = job.config
        for p in write_overlays(
            get_backend(cfg.backend).overlay_video(Path(job.source)), kp, (int(meta["width"]), int(meta["height"])),
            Path(job.out_dir) / "overlays", job.video_id, mode=mode, layout=ENTITY_LAYOUTS[cfg.qc.layout],
            roi=meta.get("roi"),
        ):
            ctx.wrote(p)


POSE_STAGE = PoseStage()


def process_video(job: VideoJob) -> ItemResult:
    """Pose one input end to end (hash, skip-if-up-to-date, pose, write, QC, overlay).

    Never raises for a bad input: the error goes into the result (status ``failed``).
    """
    return run_item(POSE_STAGE, job)


def run_pose(jobs: list[VideoJob], *, workers: int = 1, worker=None) -> list[ItemResult]:
    """Pose jobs (in ``workers`` spawned processes when > 1); results in job order.

    ``worker`` is the per-job function (default :func:`process_video`, looked up when called; must be
    picklable by name). See :func:`pipeline.stage.run_items` for crashed workers.
    """
    return run_items(POSE_STAGE, jobs, workers=workers, worker=worker or process_video, unit="video")


# --------------------------------------------------------------------------------------------------
# Inputs and jobs
# --------------------------------------------------------------------------------------------------
def find_inputs(paths: list[str | Path], backend: str) -> list[Path]:
    """Expand the command line's inputs into a list of videos (or OpenPose folders).

    A file is taken as given (so a broken file is reported, not silently dropped). A folder is
    searched one level deep: for ``mediapipe`` for video files, for ``openpose-json`` it is one video
    when it holds ``*_keypoints.json`` files itself, else each sub-folder that does is one video.
    """
    b = get_backend(backend)
    return [f for p in map(Path, paths) for f in b.find_inputs(p)]


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


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------
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
    add_arguments(p.add_argument_group("pose settings (the same fields are the flow's params.pose)"), PoseSettings)
    g = p.add_argument_group("openpose-json")
    g.add_argument("--select", choices=SELECT_RULES, default="continuity", help="target-person rule")
    g.add_argument("--fps", type=float, default=30.0, help="frame rate of the source videos")
    g.add_argument("--size", help="WIDTHxHEIGHT of the source videos (default: extent of the joints)")
    return p


def config_from_args(args) -> tuple[PoseConfig, PoseSettings]:
    try:
        settings = from_args(PoseSettings, args, stage="pose").settings
        config = settings.config(
            backend=args.backend,
            plan=WindowPlan(args.clip_len, args.stride, args.hop, align_hop_to_stride=not args.no_align_hop),
            roi=parse_roi(args.roi) if args.roi else None,
            openpose=OpenPoseConfig(select=args.select, fps=args.fps),
            openpose_size=_parse_size(args.size) if args.size else None,
        )
        return config, settings
    except BadInput:
        raise
    except ValueError as exc:  # SettingsError included: one line naming pose.<field>
        raise BadInput(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(verbose=args.verbose, quiet=args.quiet)
    with contextlib.ExitStack() as held:  # the run lock, once the output folder is known
        with handle_errors("pipeline.pose"):
            config, settings = config_from_args(args)
            if args.workers < 1:
                raise BadInput(f"--workers must be >= 1, got {args.workers}")
            inputs = find_inputs(args.inputs, config.backend)
            if not inputs:
                raise BadInput(f"no inputs found in {', '.join(args.inputs)}")
            rois = read_roi_file(args.roi_file) if args.roi_file else None
            held.enter_context(lock_for_output(args.out, command='python -m pipeline.pose'))
            out_dir = check_output_dir(args.out)  # before any video is posed
            jobs = make_jobs(inputs, out_dir, config, rois=rois, overlay=args.overlay, force=args.force)
            check_outputs_free(POSE_STAGE, jobs, out_dir)  # a user's file under an output name: exit 2 now
        results = run_pose(jobs, workers=args.workers)
        for r in results:
            for path in r.written:
                report_written(path)
        qc_config = {"qc": config.qc, "plausibility": config.plausibility, "backend": config.backend, "frames": config.frames,
                     "pose": asdict(settings)}
        with handle_errors("pipeline.pose"):
            try:
                for path in write_qc_table(POSE_STAGE, [r.qc for r in results], out_dir, config=qc_config):
                    report_written(path)
            finally:
                print(summary(POSE_STAGE, results), file=sys.stderr)
        return exit_code(results)


if __name__ == "__main__":
    raise SystemExit(main())
