"""Demo checkpoints side by side on the demo recipe's unseen test recordings: ``python -m recipes.demo_compare``.

::

    python -m recipes.demo_compare --weights recipes/demo_model.pt recipes/demo_mmn.pt \\
        --work /tmp/microaction-demo-model --out compare/ [--threads 2]

Any checkpoints trained on the demo recipe's windows (:mod:`recipes.demo_model`, any family) are
measured on the same cohort: the recipe's test split (seed :attr:`~recipes.demo_model.DemoRecipe.test_seed`,
never used in training or calibration; rendered and posed once, shared with the rebuilds in
``--work``), each with its own calibrated read-out (its provenance's ``readout``):

- **window top-1** (:func:`recipes.demo_model.evaluate_clips` on the test split's prepared windows):
  on clean windows (one class covers >= ``clean_purity`` of the span), their per-class mean, and on
  all windows;
- **percent time**: the recognition stage on every test recording, as at inference
  (:func:`recipes.demo_model.recognize_split`), the read-out (:func:`pipeline.aggregate.aggregate`),
  then per action the MAE of percent time against the per-frame truth across participants
  (:func:`pipeline.agreement.percent_time_agreement`: worst, mean and every action);
- **detection mAP** of the read-out's segments against the planted events, tIoU 0.1-0.9
  (:func:`pipeline.detection_eval.evaluate_detections`);
- **windows/s**: windows classified per wall second by the recognition stage on this machine with
  ``--threads`` torch threads (``RunStats``: decode + crop + model for a model that reads pixels,
  keypoints alone for a keypoint-only one), with its model-only share; the checkpoints are
  recognised one after the other in the same run, so their ratio is the comparable number on a shared machine.

Writes ``comparison.json`` (everything above, per checkpoint, plus the command and the machine),
``comparison.md`` (the side-by-side table and the per-action MAE table, for docs/model.md),
``recognize_<label>/`` (each checkpoint's windows files) and ``readout_<label>/`` (its segments,
detections, cohort table, agreement). Exit 2 when
the checkpoints were not trained on the same demo test split.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from model.checkpoint import Checkpoint, load_checkpoint
from pipeline.agreement import percent_time_agreement, read_frame_truth
from pipeline.aggregate import aggregate, write_outputs
from pipeline.artifacts import atomic_write_text
from pipeline.cli import EXIT_OK, BadInput, handle_errors, make_parser, report_written, setup_logging
from pipeline.detection_eval import evaluate_detections
from pipeline.readout import ReadoutConfig
from recipes.demo_model import (DemoRecipe, demo_classes, evaluate_clips, prepared_windows, recognize_split,
                                simulate_split)

__all__ = ["compare_checkpoints", "comparison_markdown", "test_split_recipe", "main"]

_SPLIT_FIELDS = ("test_seed", "test_recordings", "seconds", "size", "p_engaged", "mean_share", "clean_purity")


def _cpu_seconds() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def test_split_recipe(checkpoints: list[Checkpoint]) -> DemoRecipe:
    """The demo recipe of the checkpoints (their provenance), refused (BadInput) unless they share its test split."""
    recipes = []
    for ck in checkpoints:
        recorded = (ck.provenance.get("simulated") or {}).get("recipe")
        if not isinstance(recorded, dict) or not isinstance(ck.provenance.get("readout"), dict):
            raise BadInput(f"{ck.path}: not a demo checkpoint (no simulated recipe or calibrated read-out in its "
                           "provenance; build one with python -m recipes.demo_model --rebuild)")
        recipes.append(DemoRecipe.from_recorded(recorded))
    first = recipes[0]
    for ck, r in zip(checkpoints[1:], recipes[1:]):
        diff = [f for f in _SPLIT_FIELDS if getattr(r, f) != getattr(first, f)]
        if diff:
            raise BadInput(f"{ck.path}: its demo test split differs from {checkpoints[0].path}'s ({', '.join(diff)})")
        if ck.classes != checkpoints[0].classes or ck.plan != checkpoints[0].plan:
            raise BadInput(f"{ck.path}: class list or window plan differs from {checkpoints[0].path}'s")
    return first


def _labels(checkpoints: list[Checkpoint]) -> list[str]:
    names = [ck.family.name for ck in checkpoints]
    return [n if names.count(n) == 1 else f"{n}-{Path(ck.path).stem}" for n, ck in zip(names, checkpoints)]


def compare_checkpoints(weights: list[str | os.PathLike], work: str | os.PathLike, out: str | os.PathLike, *,
                        workers: int = 2, threads: int = 2, batch_size: int = 64,
                        recordings: int | None = None) -> dict[str, Any]:
    """Measure every checkpoint on the shared test split (module docstring); returns the comparison dict.

    ``recordings``: use only the first N test recordings (a quick look; the recorded numbers use all).
    """
    checkpoints = [load_checkpoint(w) for w in weights]
    recipe = test_split_recipe(checkpoints)
    if recordings is not None:
        recipe = DemoRecipe.from_recorded({**recipe.to_dict(), "test_recordings": recordings})
    work, out = Path(work), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    split = simulate_split(recipe, "test", work, workers=workers)
    prepared = prepared_windows(split, work / ("prepared_test" if recordings is None else f"prepared_test_{recordings}"),
                                classes=demo_classes(), background_keep=1.0, min_purity=0.0, motion_repeat=1,
                                seed=recipe.train_seed)
    truth = read_frame_truth(split / "truth" / "frames")
    gt = pd.read_csv(split / "truth" / "detections.csv")
    torch.set_num_threads(threads)
    models: dict[str, Any] = {}
    for label, ck in zip(_labels(checkpoints), checkpoints):
        windows = evaluate_clips(ck, prepared, clean_purity=recipe.clean_purity)
        rec = out / f"recognize_{label}"
        if rec.exists():
            shutil.rmtree(rec)  # timed from scratch: nothing skipped as up to date
        c0 = _cpu_seconds()
        manifest, stats = recognize_split(ck, split, rec, batch_size=batch_size)
        cpu = _cpu_seconds() - c0
        readout = ReadoutConfig.from_dict(ck.provenance["readout"])
        result = aggregate(manifest, rec / "windows", readout)
        agreement = percent_time_agreement(truth, manifest, result.readouts, result.classes)
        write_outputs(result, out / f"readout_{label}", agreement=agreement)
        det = evaluate_detections(gt, pd.read_csv(out / f"readout_{label}" / "detections.csv"))
        worst = agreement.loc[agreement["mae_pp"].idxmax()]
        models[label] = {
            "checkpoint": str(ck.path), "checkpoint_sha256": ck.sha256, "family": ck.family.name,
            "inputs": sorted(ck.inputs), "parameters": int(sum(p.numel() for p in ck.model.parameters())),
            "file_bytes": Path(ck.path).stat().st_size,
            "windows": {k: windows[k] for k in ("windows", "clean_windows", "top1_clean", "top1_clean_class_mean",
                                                "top1_all", "top1_clean_per_class")},
            "percent_time": {"worst_mae_pp": round(float(worst["mae_pp"]), 3), "worst_action": str(worst["action"]),
                             "mean_mae_pp": round(float(agreement["mae_pp"].mean()), 3),
                             "participants": int(agreement["n_participants"].max()),
                             "engagement_disagree": round(float(agreement["engagement_disagree"].mean()), 4),
                             "mae_pp_per_action": {str(r.action): round(float(r.mae_pp), 3)
                                                   for r in agreement.itertuples()}},
            "detection": {"average_map": round(float(det["average_map"]), 4),
                          "map_per_tiou": [round(float(m), 4) for m in det["map_per_tiou"]],
                          "tiou_thresholds": list(det["tiou_thresholds"]),
                          "n_ground_truth": int(det["n_ground_truth"]), "n_predictions": int(det["n_predictions"])},
            "speed": {"windows": int(stats.windows), "wall_s": round(stats.wall_seconds, 2),
                      "model_s": round(stats.model_seconds, 2), "cpu_s": round(cpu, 2),
                      "windows_per_s": round(stats.windows_per_s, 1)},
            "readout": readout.to_dict(),
        }
    return {
        "test_split": {"seed": recipe.test_seed, "recordings": recipe.test_recordings, "seconds": recipe.seconds,
                       "clean_purity": recipe.clean_purity},
        "models": models,
        "machine": {"cpus": os.cpu_count(), "torch_threads": threads, "load_average_1min": round(os.getloadavg()[0], 2),
                    "python": platform.python_version(), "torch": torch.__version__},
        "command": "python -m recipes.demo_compare " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def comparison_markdown(comparison: dict[str, Any]) -> str:
    """The side-by-side table and the per-action MAE table (Markdown)."""
    models = comparison["models"]
    labels = list(models)
    split = comparison["test_split"]
    lines = [f"Test split: seed {split['seed']}, {split['recordings']} recordings x {split['seconds']:g} s; "
             f"machine: {comparison['machine']['cpus']} CPUs, {comparison['machine']['torch_threads']} torch threads, "
             f"load average {comparison['machine']['load_average_1min']} at the end.", "",
             "| | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]

    def row(name, fn):
        lines.append(f"| {name} | " + " | ".join(fn(models[k]) for k in labels) + " |")

    row("inputs per window", lambda m: " + ".join(m["inputs"]))
    row("parameters / file", lambda m: f"{m['parameters']:,} / {m['file_bytes'] / 1e6:.2f} MB")
    row("clean-window top-1", lambda m: f"{m['windows']['top1_clean']:.3f} ({m['windows']['clean_windows']} windows)")
    row("clean-window top-1, class mean", lambda m: f"{m['windows']['top1_clean_class_mean']:.3f}")
    row("all-window top-1", lambda m: f"{m['windows']['top1_all']:.3f} ({m['windows']['windows']} windows)")
    row("percent-time MAE, worst action (pp)",
        lambda m: f"{m['percent_time']['worst_mae_pp']:.2f} ({m['percent_time']['worst_action']})")
    row("percent-time MAE, mean over actions (pp)", lambda m: f"{m['percent_time']['mean_mae_pp']:.2f}")
    row("'any engagement' misread (share of pairs)", lambda m: f"{m['percent_time']['engagement_disagree']:.3f}")
    row("detection average mAP (tIoU 0.1-0.9)", lambda m: f"{m['detection']['average_map']:.3f}")
    row("detection mAP at tIoU 0.5", lambda m: f"{m['detection']['map_per_tiou'][4]:.3f}")
    row("windows/s (recognition stage)", lambda m: f"{m['speed']['windows_per_s']:.1f} "
                                                   f"({m['speed']['windows']} in {m['speed']['wall_s']:.1f} s)")
    row("model share of the stage's wall time", lambda m: f"{m['speed']['model_s'] / max(m['speed']['wall_s'], 1e-9):.0%}")
    lines += ["", "| action | " + " | ".join(f"MAE {k} (pp)" for k in labels) + " |", "|---|" + "---|" * len(labels)]
    actions = list(models[labels[0]]["percent_time"]["mae_pp_per_action"])
    for a in actions:
        lines.append(f"| {a} | " + " | ".join(f"{models[k]['percent_time']['mae_pp_per_action'].get(a, float('nan')):.2f}"
                                              for k in labels) + " |")
    lines += ["", f"Command: `{comparison['command']}` ({comparison['date']})", ""]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("Demo checkpoints side by side on the demo recipe's unseen test recordings: window top-1, "
                    "percent-time MAE per action, detection mAP, windows/s.", prog="python -m recipes.demo_compare")
    p.add_argument("--weights", nargs="+", required=True, metavar="CKPT",
                   help="demo checkpoints (python -m recipes.demo_model --rebuild [--family ...]), any family")
    p.add_argument("--work", default=str(Path(os.environ.get("TMPDIR", "/tmp")) / "microaction-demo-model"),
                   help="the demo recipe's working folder (the test recordings are rendered and posed there once)")
    p.add_argument("--out", required=True, help="folder for comparison.json, comparison.md and the read-outs")
    p.add_argument("--workers", type=int, default=2, help="processes for rendering and pose")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads while recognising (the windows/s)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--recordings", type=int, default=None, help="only the first N test recordings (a quick look)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(verbose=args.verbose, quiet=args.quiet)
    with handle_errors("recipes.demo_compare"):
        if args.workers < 1 or args.threads < 1 or (args.recordings is not None and args.recordings < 1):
            raise BadInput("--workers, --threads and --recordings must be >= 1")
        for w in args.weights:
            if not Path(w).is_file():
                raise BadInput(f"--weights {w}: file not found")
        out = Path(args.out)
        comparison = compare_checkpoints(args.weights, args.work, out, workers=args.workers, threads=args.threads,
                                         batch_size=args.batch_size, recordings=args.recordings)
        report_written(atomic_write_text(out / "comparison.json", json.dumps(comparison, indent=1) + "\n"))
        md = comparison_markdown(comparison)
        report_written(atomic_write_text(out / "comparison.md", md))
        print(md, file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
