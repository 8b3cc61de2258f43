"""The Python entry points of recognition: :func:`recognize_videos` (many videos, cross-video
batching; the CLI and the recipes use it) and :func:`recognize_video` (one video; the Prefect flow's
task calls it), with the run's throughput (:class:`RunStats`).

They wire the parts together: start-up checks (:mod:`pipeline.recognize.options`), the stage
(:mod:`pipeline.recognize.stage`) and the engine that feeds it (:mod:`pipeline.recognize.engine`),
then :func:`pipeline.stage.run_item` per video in job order.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from model.checkpoint import Checkpoint, load_checkpoint
from pipeline.cli import BadInput
from pipeline.recognize.engine import Engine
from pipeline.recognize.options import RecognizeJob, RecognizeOptions, check_checkpoint, check_device
from pipeline.recognize.stage import RecognizeStage
from pipeline.stage import ItemResult, run_item

__all__ = ["RunStats", "recognize_videos", "recognize_video"]

log = logging.getLogger("pipeline.recognize")


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

    Raises BadInput (before any work) when the checkpoint conflicts with ``options.plan/classes`` or
    this machine cannot run on ``options.device`` (:func:`pipeline.recognize.options.check_device`).
    """
    ids = [job.item_id for job in jobs]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise BadInput(f"two jobs have the same video id {dup!r}")
    check_device(options.device)
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
    engine = stage.engine = Engine(ckpt, list(jobs), options, decoder, up_to_date=stage.up_to_date,
                                   video_sha256=stage.video_sha256).start()
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
    paths); does not write the QC table (the caller collects rows). Never raises for a bad video;
    raises BadInput as :func:`recognize_videos` for a device or checkpoint the run cannot use.
    """
    video = Path(video)
    job = RecognizeJob(item_id=video_id or video.stem, source=str(video), out_dir=str(out_dir), force=force,
                       keypoints=str(keypoints_path))
    results, _ = recognize_videos([job], checkpoint, options)
    return results[0]

