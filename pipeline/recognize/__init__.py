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

The package holds one job per module (each module's docstring says what it holds):

==========================================  ====================================================================
:mod:`pipeline.recognize.options`           :class:`RecognizeOptions`, :class:`RecognizeJob`; start-up checks of
                                            the device and of the checkpoint against the options
:mod:`pipeline.recognize.plan`              one video: inputs checked, windows laid, window frames looked up in
                                            the frames the pose artifact records -> :class:`PlannedVideo`
:mod:`pipeline.recognize.classifier`        :class:`WindowClassifier`: uint8 clips -> probs, routing shares
:mod:`pipeline.recognize.engine`            the threaded engine: planner thread, decode feed, cross-video batches
:mod:`pipeline.recognize.stage`             :class:`RecognizeStage` (the :mod:`pipeline.stage` protocol)
:mod:`pipeline.recognize.run`               :func:`recognize_videos`, :func:`recognize_video` (Python entry points)
:mod:`pipeline.recognize.cli`               the command line (``__main__`` runs it)
==========================================  ====================================================================

How a window becomes probabilities (docs/recognize.md has the shapes and the picture):

1. main process, per video: probe, check the keypoints (same video by sha256, same frame count,
   every window frame among the frames the pose artifact holds), lay the checkpoint's windows,
   valid fraction per window, person crop boxes (:mod:`pipeline.person_crop`) -> a
   :class:`pipeline.clip_stream.VideoPlan`;
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

This module only re-exports the public names, so ``from pipeline.recognize import ...`` is the one
import path for callers; the package's own modules import each other, never this one (no cycles).
"""

from __future__ import annotations

from pipeline.recognize.classifier import WindowClassifier
from pipeline.recognize.cli import build_parser, find_videos, keypoints_for, main, options_from_args
from pipeline.recognize.options import (DECODERS, MAX_BATCH_SIZE, RecognitionSettings, RecognizeJob, RecognizeOptions,
                                        check_checkpoint,
                                        check_device)
from pipeline.recognize.plan import InputError, PlannedVideo, PosedFrames, plan_video, posed_frames
from pipeline.recognize.run import RunStats, recognize_video, recognize_videos
from pipeline.recognize.stage import STAGE_VERSION, RecognizeStage, windows_path

__all__ = ["RecognitionSettings", "RecognizeOptions", "RecognizeJob", "RecognizeStage", "WindowClassifier", "plan_video",
           "recognize_videos", "recognize_video", "find_videos", "keypoints_for", "main", "STAGE_VERSION",
           "InputError", "PlannedVideo", "PosedFrames", "posed_frames", "RunStats", "check_checkpoint",
           "check_device", "windows_path", "build_parser", "options_from_args", "DECODERS", "MAX_BATCH_SIZE"]
