"""The command line of recognition (``python -m pipeline.recognize``; usage in
:mod:`pipeline.recognize`): argument parsing, the start-up checks, the jobs, the QC table and the
summary. Exit codes as every stage (:mod:`pipeline.cli`): 0 all videos recognised or up to date,
1 some videos failed, 2 bad input (one line, before any video: bad flag value, ``--batch-size``
outside 1..4096, a ``--device`` this machine cannot use, an unusable checkpoint, no videos).
"""

from __future__ import annotations

import contextlib
import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from model.checkpoint import CheckpointError, load_checkpoint
from model.preprocessing import ClassList
from model.windows import WindowPlan
from pipeline.cli import BadInput, check_output_dir, handle_errors, make_parser, report_written, setup_logging
from pipeline.recognize.options import (DECODERS, MAX_BATCH_SIZE, RecognitionSettings, RecognizeJob, RecognizeOptions, check_checkpoint,
                                        check_device)
from pipeline.recognize.run import recognize_videos
from pipeline.recognize.stage import RecognizeStage
from pipeline.run_lock import lock_for_output
from pipeline.settings import add_arguments, from_args
from pipeline.stage import check_outputs_free, exit_code, summary, write_qc_table
from pipeline.video import VIDEO_SUFFIXES
from pipeline.window_feed import FEED_KINDS

__all__ = ["main", "build_parser", "options_from_args", "load_weights", "find_videos", "keypoints_for"]


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
    p = make_parser("Sliding-window recognition (any model family; a keypoint-only checkpoint never reads the videos): videos + keypoints -> window probabilities.",
                    prog="python -m pipeline.recognize")
    p.add_argument("inputs", nargs="+", metavar="VIDEO_OR_DIR", help="video files or folders of videos")
    p.add_argument("--keypoints", required=True, metavar="DIR",
                   help="pose stage output folder (DIR/keypoints/<video_id>.parquet or DIR/<video_id>.parquet)")
    p.add_argument("--weights", required=True, metavar="CKPT", help="model checkpoint (model.checkpoint)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (windows/, qc_recognize.*)")
    add_arguments(p.add_argument_group("recognition settings (the same fields are the flow's params.recognition)"),
                  RecognitionSettings)
    p.add_argument("--workers", type=int, default=1, metavar="N", help="decode workers (0: decode in the main process)")
    p.add_argument("--worker-kind", choices=FEED_KINDS, default="thread",
                   help="decode workers as threads, or processes (a crashing decoder then fails only its video)")
    p.add_argument("--threads", type=int, metavar="N", help="torch threads for the model in this process (default: torch's; "
                   "on a CPU run give it the cores the decode workers leave)")
    p.add_argument("--clip-len", type=int, metavar="T", help="expected frames per window (refuse a checkpoint with another)")
    p.add_argument("--stride", type=int, metavar="N", help="expected temporal stride (with --clip-len and --hop)")
    p.add_argument("--hop", type=float, metavar="SECONDS", help="expected seconds between windows (with --clip-len and --stride)")
    p.add_argument("--classes", metavar="ma52|FILE", help="expected class list: 'ma52' or a file of class names, one a line")
    p.add_argument("--force", action="store_true", help="redo videos even when their windows are up to date")
    return p


def options_from_args(args, ckpt_plan: WindowPlan | None = None) -> RecognizeOptions:
    """The run's options from parsed flags (BadInput naming the bad value); ``--clip-len/--stride/--hop``
    given in part are completed from ``ckpt_plan`` (or the default plan before the checkpoint is read)."""
    plan = None
    given = [v is not None for v in (args.clip_len, args.stride, args.hop)]
    if any(given):
        base = ckpt_plan or WindowPlan()
        plan = dataclasses.replace(base, clip_len=args.clip_len if args.clip_len is not None else base.clip_len,
                                   stride=args.stride if args.stride is not None else base.stride,
                                   hop_s=args.hop if args.hop is not None else base.hop_s)
    try:
        settings = from_args(RecognitionSettings, args, stage="recognition").settings
        return settings.options(workers=args.workers, worker_kind=args.worker_kind, plan=plan,
                                classes=_read_classes(args.classes) if args.classes else None)
    except ValueError as exc:  # SettingsError included: one line naming recognition.<field>
        raise BadInput(str(exc)) from None


def load_weights(path: str):
    """The checkpoint ``--weights`` names; an unusable one (missing, empty, truncated, random bytes, a
    bare state dict, another format) is BadInput with :class:`model.checkpoint.CheckpointError`'s line."""
    try:
        return load_checkpoint(path)
    except CheckpointError as exc:
        raise BadInput(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(verbose=args.verbose, quiet=args.quiet)
    with contextlib.ExitStack() as held:  # the run lock, once the output folder is known
        with handle_errors("pipeline.recognize"):
            # flags first (cheap, and nothing is created for a bad value), then the checkpoint, then --out
            check_device(getattr(args, "device", "cpu"))  # its own messages (tpu, mps, no CUDA) before the schema's
            options_from_args(args)
            if args.threads is not None:
                if args.threads < 1:
                    raise BadInput(f"--threads must be >= 1, got {args.threads}")
                torch.set_num_threads(args.threads)
            ckpt = load_weights(args.weights)
            options = options_from_args(args, ckpt.plan)
            check_checkpoint(ckpt, options)
            held.enter_context(lock_for_output(args.out, command='python -m pipeline.recognize'))
            out_dir = check_output_dir(args.out)
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

