"""The demo model: a small Micro-DualNet trained on simulated recordings, shipped as ``demo_model.pt``.

Nothing can be downloaded here and no MA-52 training set or weights exist on a fresh machine, so the
project ships one small checkpoint that recognises the simulator's actions (plus ``background``) and
lets the whole chain (pose -> recognition -> read-out -> statistics) run on simulated cohorts.
:func:`demo_checkpoint_path` is what the cohort flow uses when the user gives no weights. Rebuild it
(about 22 minutes on 2 cores, summed from the measured steps: 7.6 of them training, most of the rest
rendering and posing the 150 recordings; see docs/simulator.md) with::

    python -m recipes.demo_model --rebuild [--work DIR] [--workers 2]
    python -m recipes.demo_model --recalibrate   # only the read-out thresholds (no training)
    python -m recipes.demo_model                 # print the shipped checkpoint's provenance

Why shipped, not built on first use: tests, ``make demo`` and the flow need it on every fresh checkout
and CI machine; building it takes minutes of CPU and MediaPipe, and the file is small (see below).

The model (:data:`MODEL_OVERRIDES`): the ``tiny`` preset with the **pose modality** (Micro-DualNet's
Table I "pose" row: entity features from keypoint coordinates and motion, then the full dual ST / TS
paths, entity routing, MAC and the classifier). Why not RGB + pose: every TSM ResNet of
:mod:`model.backbone` ends in 2048 channels whatever its width, so even the ``tiny`` backbone holds
about 3.5 M parameters (layer4's 1024 -> 2048 projection alone is 2.1 M), 7 MB in fp16, over the 5 MB
budget for a file in the repository; the pose model has about 0.1 M.

Training data (recipe :class:`DemoRecipe`): untrimmed simulated recordings
(:func:`simulator.recording.write_cohort`, every action engaged often, no group effects),
posed with the real pose stage (MediaPipe, ``--frames sampled`` with :data:`DEMO_PLAN`, exactly as at
inference), then cut into the windows :data:`DEMO_PLAN` lays on them. Each window is one training clip
of ``T`` frames (the frames the window samples, with their keypoints), labelled with the class that
covers most of the window's span in the per-frame truth (``background`` when no action does);
windows that the recognition stage would not classify (usable pose on fewer than half of their
frames) are left out, and background windows are subsampled. Training on the windows inference
will see, partial overlaps at event boundaries included, is what makes the read-out's per-frame
scores (the mean over covering windows) change class where the truth does. The clips are written as
a prepared folder (:mod:`model.clips` format, :func:`model.clips.encode_prepared_clip`); they are cut
from recordings rather than rendered as trimmed clips (``python -m recipes.prepare_clips``), because
one posed recording yields a clip per hop, with the boundary windows included, for a sixth of the
pose work.

Read-out calibration: the model's per-class thresholds are chosen on recordings of a third seed
(:attr:`DemoRecipe.calibration_seed`) with :func:`recipes.readout_calibration.calibrate_thresholds`
(percent-time error plus "any engagement" disagreement), for interpolated window scores
(:mod:`pipeline.frame_scores`: the matched read-out for windows labelled at their centre), and stored
in the checkpoint's provenance (``readout``); :func:`demo_readout` reads them from there, so the
checkpoint and its read-out cannot drift apart. ``--recalibrate`` redoes only this step.

Test data: recordings from a seed never used in training, cut the same way. ``top1_clean`` is the
Top-1 accuracy on windows whose span is at least :attr:`DemoRecipe.clean_purity` one class (the
trimmed-clip case), ``top1_all`` on every window (boundary windows labelled by majority).

The window plan (:data:`DEMO_PLAN`): T = 6 frames, stride 8 (1.6 s at 30 fps), hop 8 frames, so pose
is needed on every 8th frame only, every frame is covered by 6 windows, and events as short as the
simulator's shortest (1 s) fill more than half of some window.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from model.clips import MANIFEST, PREPARED_FORMAT, ClipDataset, PreparedClips
from recipes.evaluate import predict_clips
from model.preprocessing import ClassList, Preprocessing
from model.taxonomy import MA52
from recipes.train import TrainConfig, train
from model.windows import WindowPlan
from pipeline.agreement import read_frame_truth
from pipeline.artifacts import atomic_write_text
from pipeline.cli import EXIT_OK, BadInput, handle_errors, make_parser, report_written, setup_logging
from pipeline.keypoints import read_keypoints
from pipeline.manifest import read_manifest
from pipeline.pose import PoseConfig, keypoints_path, make_jobs, run_pose
from pipeline.readout import ReadoutConfig
from recipes.readout_calibration import Calibration, calibrate_thresholds
from pipeline.recognize import RecognizeJob, RecognizeOptions, recognize_videos
from simulator.motions import ACTIONS, PROGRAMS
from simulator.recording import ActionRates, CohortConfig, write_cohort
from pipeline.video import probe
from recipes.window_clips import ChosenWindow, video_windows, write_window_clips

__all__ = ["DEMO_PLAN", "DEMO_PREPROCESSING", "MODEL_OVERRIDES", "CHECKPOINT_FILE", "REBUILD_COMMAND", "DemoRecipe",
           "DemoModelMissing", "demo_readout", "calibrate_demo_readout", "demo_checkpoint_path", "demo_classes",
           "demo_provenance", "simulate_split", "window_clips",
           "evaluate_clips", "with_calibrated_readout", "build_demo_model", "recalibrate_demo_model", "main"]

CHECKPOINT_FILE = "demo_model.pt"
REBUILD_COMMAND = "python -m recipes.demo_model --rebuild"

DEMO_PLAN = WindowPlan(clip_len=6, stride=8, hop_s=8 / 30)
"""T = 6 frames, stride 8 (span 48 frames = 1.6 s at 30 fps), hop 8 frames (module docstring)."""
DEMO_PREPROCESSING = Preprocessing(region="person", person_padding=0.15, resize_short=112, size=112)
"""Person crop of each window (its keypoints' bounding square, 15 % padding), resized to 112 x 112: the
pose model then sees coordinates relative to the person, whatever the camera distance and framing."""
MODEL_OVERRIDES: dict[str, Any] = {
    "modality": "pose", "embed_dim": 64, "num_heads": 4, "num_layers": 2, "ffn_dim": 128,
    "residual_mlp_hidden": 64, "classifier_hidden": 64, "image_size": (112, 112),
}
"""Applied to ``MicroDualNetConfig.tiny`` (module docstring: why the pose modality)."""


def demo_readout(path: str | os.PathLike | None = None) -> ReadoutConfig:
    """The read-out the demo checkpoint was calibrated for, from its provenance (``readout``).

    ``path``: a demo checkpoint (default: the shipped one). Per-class thresholds for interpolated
    window scores, chosen on the recipe's calibration recordings (module docstring).
    """
    ckpt = load_checkpoint(path or demo_checkpoint_path())
    readout = ckpt.provenance.get("readout")
    if not isinstance(readout, dict):
        raise ValueError(f"{ckpt.path}: provenance has no 'readout' (not a demo checkpoint? rebuild it with "
                         f"{REBUILD_COMMAND})")
    return ReadoutConfig.from_dict(readout)


class DemoModelMissing(FileNotFoundError):
    """The shipped demo checkpoint is absent (message names the rebuild command)."""


def demo_checkpoint_path() -> Path:
    """Path of the shipped demo checkpoint; :class:`DemoModelMissing` (a FileNotFoundError) when absent."""
    path = Path(__file__).resolve().with_name(CHECKPOINT_FILE)
    if not path.is_file():
        raise DemoModelMissing(f"demo model checkpoint {path} not found; rebuild it with: {REBUILD_COMMAND} "
                               "(about 22 minutes on 2 cores)")
    return path


def demo_classes() -> ClassList:
    """The simulated actions in MA-52 order, then ``background``."""
    return ClassList.from_actions(sorted(ACTIONS, key=MA52.index), background=True)


@dataclass(frozen=True)
class DemoRecipe:
    """Everything that decides the demo checkpoint (stored in its provenance).

    Attributes
    ----------
    train_seed, test_seed, calibration_seed : master seeds of the training, test and read-out
        calibration recordings (all different)
    train_recordings, test_recordings, calibration_recordings : number of recordings of each split
    seconds : length of each recording
    size : (width, height) of the recordings (the cohort simulator's default)
    p_engaged, mean_share : every action's engagement probability and mean share of time, so that
        recordings are busy (about a third of the time in some action, events of 1-3 s)
    background_keep : share of background windows kept in training (balances the classes)
    min_purity : training windows whose majority class covers less of the span are left out (a window
        half one action, half another has no right answer)
    motion_repeat : training windows of motion-defined actions are listed this many times
    clean_purity : a test window is "clean" when one class covers at least this share of its span
    readout_scores : per-frame scores the read-out is calibrated for (:mod:`pipeline.frame_scores`)
    engagement_weight : :func:`recipes.readout_calibration.calibrate_thresholds`'s weight of the
        "any engagement" disagreement (pp per unit share)
    min_durations : candidate minimum segment durations (s) for the calibration (the cheapest is kept)
    train : the :class:`recipes.train.TrainConfig` fields (preset ``tiny`` + :data:`MODEL_OVERRIDES`)
    """

    train_seed: int = 1001
    test_seed: int = 2002
    calibration_seed: int = 3003
    train_recordings: int = 90
    test_recordings: int = 30
    calibration_recordings: int = 30
    seconds: float = 40.0
    size: tuple[int, int] = (360, 432)
    p_engaged: float = 0.4
    mean_share: float = 0.06
    background_keep: float = 0.25
    min_purity: float = 0.6
    motion_repeat: int = 1
    clean_purity: float = 0.9
    readout_scores: str = "interpolate"
    engagement_weight: float = 5.0
    min_durations: tuple[float, ...] = (0.0, 0.2, 0.35, 0.5)
    train: dict[str, Any] = field(default_factory=lambda: {
        "preset": "tiny", "model_overrides": dict(MODEL_OVERRIDES), "num_frames": DEMO_PLAN.clip_len,
        "frame_stride": DEMO_PLAN.stride, "epochs": 20, "batch_size": 32, "lr": 0.02, "lr_reference_batch": 16,
        "warmup_epochs": 2, "weight_decay": 5e-5, "workers": 1, "device": "cpu", "seed": 0, "plot_every": 1000,
    })

    def cohort(self, split: str) -> CohortConfig:
        """The simulator configuration of one split ("train", "test" or "calibration")."""
        splits = {"train": (self.train_recordings, self.train_seed), "test": (self.test_recordings, self.test_seed),
                  "calibration": (self.calibration_recordings, self.calibration_seed)}
        if split not in splits:
            raise ValueError(f"unknown split {split!r}; choose one of {', '.join(splits)}")
        n, seed = splits[split]
        rates = tuple(ActionRates(a, p_engaged=self.p_engaged, mean_share=self.mean_share) for a in ACTIONS)
        return CohortConfig(groups={split: n}, seconds=self.seconds, size=self.size, rates=rates, seed=seed)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["size"] = list(self.size)
        d["min_durations"] = list(self.min_durations)
        d["train"]["model_overrides"] = {k: list(v) if isinstance(v, tuple) else v
                                         for k, v in d["train"]["model_overrides"].items()}
        return d


def simulate_split(recipe: DemoRecipe, split: str, work: Path, *, workers: int = 1) -> Path:
    """Render one split's recordings and pose them (``--frames sampled`` with :data:`DEMO_PLAN`).

    Returns the split's folder (``manifest.csv``, ``videos/``, ``truth/``, ``pose/keypoints/``); both
    steps skip what is up to date.
    """
    out = work / split
    write_cohort(recipe.cohort(split), out, workers=workers)
    videos = sorted((out / "videos").glob("*.mp4"))
    jobs = make_jobs(videos, out / "pose", PoseConfig(frames="sampled", plan=DEMO_PLAN))
    failed = [r for r in run_pose(jobs, workers=workers) if r.status == "failed"]
    if failed:
        raise RuntimeError(f"pose failed on {len(failed)} simulated recording(s), e.g. {failed[0].item_id}: "
                           f"{failed[0].error}")
    return out


def window_clips(split_dir: Path, out: Path, *, classes: ClassList, plan: WindowPlan = DEMO_PLAN,
                 preprocessing: Preprocessing = DEMO_PREPROCESSING, background_keep: float = 1.0,
                 min_purity: float = 0.0, min_valid: float = 0.5, threshold: float = 0.3, motion_repeat: int = 1,
                 seed: int = 0) -> Path:
    """Cut every posed recording of ``split_dir`` into its windows and write them as a prepared folder.

    One clip per window (module docstring): the model input the recognition stage builds for that
    window (:func:`pipeline.person_crop.crop_window`: person crop of the window's keypoints, resize,
    centre crop; frames [T, 3, S, S] stored as JPEG, keypoints moved with the pixels, all 33 points),
    labelled with the class covering most of the window's span (``purity`` = its share). Windows the
    recognition stage would not classify (usable pose on fewer than ``min_valid`` of the sampled
    frames) and windows with ``purity < min_purity`` are left out; background windows are kept with
    probability ``background_keep``. Windows of motion-defined actions are listed ``motion_repeat``
    times in the manifest (oversampling: their keypoint signal, a small oscillation, is learned more
    slowly than a posture). Also ``windows.csv`` (one row per window): clip id, recording, start/end
    frame, label, purity. Returns ``out``.
    """
    rng = np.random.default_rng(seed)
    index = {n: i for i, n in enumerate(classes.names)}
    bg = classes.background_index
    records, rows = [], []
    for video in sorted((split_dir / "videos").glob("*.mp4")):
        vid = video.stem
        info = probe(video)
        truth = read_frame_truth(split_dir / "truth" / "frames" / f"{vid}.parquet")
        frame_class = np.full(info.frame_count, bg, np.int64)
        labelled = truth["action"].notna().to_numpy()
        frame_class[truth["frame"].to_numpy()[labelled]] = [index[a] for a in truth["action"][labelled]]
        kp_path = keypoints_path(split_dir / "pose", vid)
        kp = read_keypoints(kp_path)
        laid = video_windows(plan, info.frame_count, info.fps, kp, video=video, keypoints_path=kp_path)
        chosen = []
        for w, rows_w, valid in zip(laid.windows, laid.rows, laid.valid):
            if valid < min_valid:
                continue
            counts = np.bincount(frame_class[w.start_frame:w.end_frame], minlength=len(classes))
            label = int(np.argmax(counts))
            purity = counts[label] / counts.sum()
            if purity < min_purity or (label == bg and rng.random() >= background_keep):
                continue
            chosen.append(ChosenWindow(w, rows_w, label, f"{vid}-w{w.index:04d}", {"purity": float(purity)}))
        records += write_window_clips(video, info, kp, chosen, out, preprocessing=preprocessing, threshold=threshold)
        rows += [f"{c.clip_id},{vid},{c.window.start_frame},{c.window.end_frame},{classes.names[c.label]},"
                 f"{c.meta['purity']:.4f}\n" for c in chosen]
    motion = {index[a] for a in ACTIONS if PROGRAMS[a].kind == "motion"}
    repeats = [{**r, "id": f"{r['id']}-r{k}"} for k in range(1, motion_repeat) for r in records if r["label"] in motion]
    manifest = {"format": PREPARED_FORMAT, "classes": classes.to_dict(), "preprocessing": preprocessing.to_dict(),
                "storage": "jpeg", "settings": {"source": "recipes.demo_model windows",
                                                "plan": plan.to_dict(), "motion_repeat": motion_repeat},
                "clips": records + repeats}
    atomic_write_text(out / "windows.csv", "id,video_id,start_frame,end_frame,label,purity\n" + "".join(rows))
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return out


def evaluate_clips(checkpoint: Checkpoint, prepared: Path, *, clean_purity: float = 0.9) -> dict[str, Any]:
    """Top-1 of the checkpoint on a prepared window folder: all windows, clean windows, per class (clean).

    ``top1_clean`` is dominated by background (most of a recording is no micro-action);
    ``top1_clean_class_mean`` weighs every class with clean windows equally (a balanced view).
    """
    ds = ClipDataset(PreparedClips(prepared), checkpoint.plan.clip_len, train=False,
                     preprocessing=checkpoint.preprocessing)
    pred = predict_clips(checkpoint.model, ds, batch_size=64, amp=False)
    labels = np.asarray(pred.labels)
    top = np.asarray(pred.scores).argmax(1)
    purity = np.array([float(line.rsplit(",", 1)[1]) for line in
                       (prepared / "windows.csv").read_text().splitlines()[1:]])
    clean = purity >= clean_purity
    per_class = {}
    for c, name in enumerate(checkpoint.classes.names):
        m = clean & (labels == c)
        if m.any():
            per_class[name] = round(float((top[m] == c).mean()), 4)
    return {"windows": int(len(labels)), "clean_windows": int(clean.sum()),
            "top1_all": round(float((top == labels).mean()), 4),
            "top1_clean": round(float((top[clean] == labels[clean]).mean()), 4),
            "top1_clean_class_mean": round(float(np.mean(list(per_class.values()))), 4) if per_class else None,
            "clean_windows_per_class": {name: int((clean & (labels == c)).sum())
                                        for c, name in enumerate(checkpoint.classes.names)},
            "top1_clean_per_class": per_class}


def calibrate_demo_readout(checkpoint: str | os.PathLike, recipe: DemoRecipe, work: str | os.PathLike, *,
                           workers: int = 1) -> Calibration:
    """Per-class read-out thresholds of a demo checkpoint, chosen on the recipe's calibration split.

    Renders and poses the calibration recordings (skipped when up to date), recognises them with
    ``checkpoint`` (the recognition stage, as at inference), then
    :func:`recipes.readout_calibration.calibrate_thresholds` with ``recipe.readout_scores`` and
    ``recipe.engagement_weight``.
    """
    split = simulate_split(recipe, "calibration", Path(work), workers=workers)
    manifest = read_manifest(split / "manifest.csv")
    rec = split / "recognize"
    jobs = [RecognizeJob(item_id=vid, source=str(split / video), out_dir=str(rec),
                         keypoints=str(keypoints_path(split / "pose", vid)))
            for vid, video in zip(manifest.videos["video_id"], manifest.videos["video"])]
    results, _ = recognize_videos(jobs, checkpoint, RecognizeOptions(batch_size=64, workers=1))
    failed = [r for r in results if r.status == "failed"]
    if failed:
        raise RuntimeError(f"recognition failed on {len(failed)} calibration recording(s), e.g. "
                           f"{failed[0].item_id}: {failed[0].error}")
    return calibrate_thresholds(manifest, rec / "windows", read_frame_truth(split / "truth" / "frames"),
                                base=ReadoutConfig(scores=recipe.readout_scores),
                                engagement_weight=recipe.engagement_weight, min_durations=tuple(recipe.min_durations))


def with_calibrated_readout(provenance: dict[str, Any], calibration: Calibration, recipe: DemoRecipe) -> dict[str, Any]:
    """The provenance with ``readout`` (the calibrated read-out) and ``readout_calibration`` (how, and its error)."""
    t = calibration.table
    return {
        **provenance,
        "readout": calibration.config.to_dict(),
        "readout_calibration": {
            "seed": recipe.calibration_seed, "recordings": recipe.calibration_recordings, "seconds": recipe.seconds,
            "engagement_weight": recipe.engagement_weight, "participants": calibration.participants,
            "min_durations_tried": list(recipe.min_durations),
            "method": "recipes.readout_calibration.calibrate_thresholds",
            "worst_mae_pp": {"before": round(float(t["mae_pp_before"].max()), 3),
                             "after": round(float(t["mae_pp"].max()), 3)},
            "mean_mae_pp": {"before": round(float(t["mae_pp_before"].mean()), 3),
                            "after": round(float(t["mae_pp"].mean()), 3)},
            "engagement_disagree": {"before": round(float(t["disagree_before"].mean()), 4),
                                    "after": round(float(t["disagree"].mean()), 4)},
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        },
    }


def _cpu_seconds() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def demo_provenance(recipe: DemoRecipe, test: dict[str, Any], train_windows_per_class: dict[str, int],
                    timings: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The checkpoint's provenance: simulated data, recipe (seeds, counts), test accuracy, timings, command."""
    return {
        "trained_on": "simulated",
        "training_data": (f"simulated recordings (simulator, seed {recipe.train_seed}, "
                          f"{recipe.train_recordings} x {recipe.seconds:g} s), cut into window clips"),
        "simulated": {
            "recipe": recipe.to_dict(),
            "train_windows": int(sum(train_windows_per_class.values())),
            "train_windows_per_class": train_windows_per_class,
            "test": {"seed": recipe.test_seed, "recordings": recipe.test_recordings, **test},
            "timings": timings,
            "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                        "python": platform.python_version()},
        },
        "metrics": {"top1_clean": test["top1_clean"], "top1_clean_class_mean": test["top1_clean_class_mean"],
                    "top1_all": test["top1_all"]},
        "readout": None,  # filled in by the calibration step (with_calibrated_readout)
        "command": REBUILD_COMMAND,
        "note": "trained on simulated data only (a seated mannequin drawn by the simulator); "
                "not a model of real participants",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def build_demo_model(out_path: str | os.PathLike, work: str | os.PathLike, *, recipe: DemoRecipe = DemoRecipe(),
                     workers: int = 1, on_epoch=None) -> tuple[Path, dict[str, Any]]:
    """Simulate, pose, cut windows, train, evaluate on unseen seeds, write the checkpoint ``out_path``.

    Returns (path, provenance). ``work`` holds the recordings, keypoints, prepared folders and the
    training run (reruns skip what is up to date). Timings are wall and CPU seconds of this process
    and its children, per step.
    """
    work = Path(work)
    classes = demo_classes()
    timings: dict[str, dict[str, float]] = {}

    def timed(name, fn, *args, **kwargs):
        w0, c0 = time.perf_counter(), _cpu_seconds()
        result = fn(*args, **kwargs)
        timings[name] = {"wall_s": round(time.perf_counter() - w0, 1), "cpu_s": round(_cpu_seconds() - c0, 1)}
        return result

    splits = {}
    for split in ("train", "test"):
        splits[split] = timed(f"simulate_and_pose_{split}", simulate_split, recipe, split, work, workers=workers)
    prepared = {}
    for split in ("train", "test"):
        target = work / f"prepared_{split}"
        if target.exists():
            shutil.rmtree(target)
        prepared[split] = timed(f"windows_{split}", window_clips, splits[split], target, classes=classes,
                                background_keep=recipe.background_keep if split == "train" else 1.0,
                                min_purity=recipe.min_purity if split == "train" else 0.0,
                                motion_repeat=recipe.motion_repeat if split == "train" else 1,
                                seed=recipe.train_seed)
    run = work / "run"
    if run.exists():
        shutil.rmtree(run)
    cfg = TrainConfig.from_dict(recipe.train)
    latest = timed("train", train, cfg, prepared["train"], run, on_epoch=on_epoch)
    trained = load_checkpoint(latest)
    test = timed("evaluate", evaluate_clips, trained, prepared["test"], clean_purity=recipe.clean_purity)
    train_counts = np.bincount(PreparedClips(prepared["train"]).labels, minlength=len(classes))
    provenance = demo_provenance(recipe, test, {n: int(k) for n, k in zip(classes.names, train_counts)}, timings)
    out_path = Path(out_path)
    save_checkpoint(work / "uncalibrated.pt", trained.model, classes=trained.classes, preprocessing=DEMO_PREPROCESSING,
                    plan=DEMO_PLAN, provenance=provenance)
    calibration = timed("calibrate_readout", calibrate_demo_readout, work / "uncalibrated.pt", recipe, work,
                        workers=workers)
    provenance = with_calibrated_readout(provenance, calibration, recipe)  # "timings" is the dict filled above
    save_checkpoint(out_path, trained.model, classes=trained.classes, preprocessing=DEMO_PREPROCESSING,
                    plan=DEMO_PLAN, provenance=provenance)
    return out_path, provenance


def recalibrate_demo_model(path: str | os.PathLike, work: str | os.PathLike, *, workers: int = 1,
                           recipe: DemoRecipe | None = None) -> tuple[Path, Calibration]:
    """Redo only the read-out calibration of a demo checkpoint (weights untouched) and rewrite it in place.

    The calibration split comes from ``recipe``, by default the checkpoint's own (its provenance) with
    the current defaults for fields it does not record.
    """
    ckpt = load_checkpoint(path)
    if recipe is None:
        recorded = dict((ckpt.provenance.get("simulated") or {}).get("recipe") or {})
        known = set(DemoRecipe.__dataclass_fields__)
        recipe = DemoRecipe(**{k: (tuple(v) if k == "size" else v) for k, v in recorded.items() if k in known})
    calibration = calibrate_demo_readout(ckpt.path, recipe, work, workers=workers)
    provenance = with_calibrated_readout(ckpt.provenance, calibration, recipe)
    provenance["simulated"] = {**provenance["simulated"], "recipe": recipe.to_dict()}
    save_checkpoint(ckpt.path, ckpt.model, classes=ckpt.classes, preprocessing=ckpt.preprocessing, plan=ckpt.plan,
                    provenance=provenance)
    return Path(ckpt.path), calibration


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("The demo Micro-DualNet trained on simulated recordings: show its provenance, rebuild it, or "
                    "recalibrate its read-out.",
                    prog="python -m recipes.demo_model")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--rebuild", action="store_true",
                      help="simulate, pose, train, evaluate and calibrate the read-out, then write the checkpoint")
    what.add_argument("--recalibrate", action="store_true",
                      help="redo only the read-out calibration of the checkpoint (weights untouched) and rewrite it")
    p.add_argument("--out", help=f"checkpoint to write (--rebuild) or rewrite (--recalibrate) (default: the shipped "
                                 f"{CHECKPOINT_FILE})")
    p.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "microaction-demo-model"),
                   help="working folder for --rebuild and --recalibrate (recordings, keypoints, prepared windows, "
                        "training run); a rerun resumes what is up to date")
    p.add_argument("--workers", type=int, default=2, help="processes for rendering and pose")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads for training (1: the model is small; on a busy machine more threads "
                        "spin instead of working)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(verbose=args.verbose, quiet=args.quiet)
    with handle_errors("recipes.demo_model"):
        if not (args.rebuild or args.recalibrate):
            ckpt = load_checkpoint(demo_checkpoint_path())
            print(json.dumps({"path": str(ckpt.path), "classes": list(ckpt.classes.names),
                              "plan": ckpt.plan.to_dict(), "provenance": ckpt.provenance}, indent=1))
            return EXIT_OK
        if args.workers < 1 or args.threads < 1:
            raise BadInput("--workers and --threads must be >= 1")
        torch.set_num_threads(args.threads)
        out = Path(args.out) if args.out else Path(__file__).resolve().with_name(CHECKPOINT_FILE)
        if args.recalibrate:
            if not out.is_file():
                raise BadInput(f"--recalibrate: no checkpoint {out} (build one with {REBUILD_COMMAND})")
            path, calibration = recalibrate_demo_model(out, Path(args.work), workers=args.workers)
            print(f"read-out calibration: {calibration.summary()}", file=sys.stderr)
            report_written(path)
            return EXIT_OK

        def show(row):
            print(f"epoch {row['epoch']}: loss {row['train_loss']:.3f} train top-1 {row['train_top1']:.3f} "
                  f"({row['epoch_s']:.1f} s)", file=sys.stderr)

        path, prov = build_demo_model(out, Path(args.work), workers=args.workers, on_epoch=show)
        sim = prov["simulated"]
        print(f"test (seed {sim['test']['seed']}): top-1 {sim['test']['top1_clean']:.4f} on "
              f"{sim['test']['clean_windows']} clean windows (class mean {sim['test']['top1_clean_class_mean']:.4f}), "
              f"{sim['test']['top1_all']:.4f} on all {sim['test']['windows']}", file=sys.stderr)
        print(f"timings: {json.dumps(sim['timings'])}", file=sys.stderr)
        cal = prov["readout_calibration"]
        print(f"read-out calibration (seed {cal['seed']}): worst MAE {cal['worst_mae_pp']['before']} -> "
              f"{cal['worst_mae_pp']['after']} pp, engagement disagreement {cal['engagement_disagree']['before']} -> "
              f"{cal['engagement_disagree']['after']}", file=sys.stderr)
        report_written(path)
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
