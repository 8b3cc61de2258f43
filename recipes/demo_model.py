"""The demo models: small recognisers trained on simulated recordings, shipped as ``demo_model.pt``
(Micro-DualNet, pose modality) and ``demo_mmn.pt`` (MMN, skeleton only).

Nothing can be downloaded here and no MA-52 training set or weights exist on a fresh machine, so the
project ships small checkpoints that recognise the simulator's actions (plus ``background``) and
let the whole chain (pose -> recognition -> read-out -> statistics) run on simulated cohorts.
:func:`demo_checkpoint_path` is what the cohort flow uses for ``weights="demo"`` (the Micro-DualNet
one; docs/model.md says why ``make demo`` keeps that one). Rebuild one (about 22 minutes on 2 cores
for Micro-DualNet, summed from the measured steps: 7.6 of them training, most of the rest rendering
and posing the 150 recordings; see docs/simulator.md) with::

    python -m recipes.demo_model --rebuild [--family mmn] [--work DIR] [--workers 2]
    python -m recipes.demo_model --recalibrate [--family mmn]   # only the read-out thresholds (no training)
    python -m recipes.demo_model [--family mmn]                 # print the shipped checkpoint's provenance

``--family`` (:data:`DEMO_FAMILIES`) picks the model; everything else (recordings, seeds, windows,
read-out calibration) is the same recipe, and the work folder is shared: the recordings, their
keypoints and the prepared windows of one family's rebuild are reused by the other's (the windows
are redone only when their inputs or settings change, :func:`prepared_windows`), and a training run
interrupted part-way resumes from its last epoch. An MMN rebuild after a Micro-DualNet one in the
same ``--work`` therefore costs only MMN's training, the test evaluation and the calibration
recognition.

Why shipped, not built on first use: tests, ``make demo`` and the flow need it on every fresh checkout
and CI machine; building it takes minutes of CPU and MediaPipe, and the files are small (see below).

The Micro-DualNet model (:data:`MODEL_OVERRIDES`): the ``tiny`` preset with the **pose modality**
(Micro-DualNet's Table I "pose" row: entity features from keypoint coordinates and motion, then the
full dual ST / TS paths, entity routing, MAC and the classifier). Why not RGB + pose: every TSM ResNet
of :mod:`model.backbone` ends in 2048 channels whatever its width, so even the ``tiny`` backbone holds
about 3.5 M parameters (layer4's 1024 -> 2048 projection alone is 2.1 M), 7 MB in fp16, over the 5 MB
budget for a file in the repository; the pose model has about 0.1 M.

The MMN model (:data:`MMN_OVERRIDES`): the paper's architecture (MSM, MTM, MCL, STPE, its
augmentation) narrowed to D = 64 with two stages of two formers (190 k parameters, under 1 MB; the
paper's D = 96 x 4 x 3 has 1.24 M, 5 MB in fp32), trained with MMN's own recipe (AdamW, label
smoothing 0.1, warm-up then cosine; :data:`DEMO_TRAIN`) shortened to the demo's budget. It reads the
keypoints of the same prepared windows (stored in the person crop's pixels: MMN's per-window
normalisation makes them identical to the source-pixel keypoints it gets at inference) and never
the pixels, and at inference the recognition stage never opens the video.

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
trimmed-clip case), ``top1_all`` on every window (boundary windows labelled by majority); the
provenance also keeps the counts per test recording (``per_recording``), so a test can reproduce
them on a slice of the recordings. :mod:`recipes.demo_compare` puts two demo checkpoints side by side
on the same test recordings (window top-1, percent-time error, detection mAP, windows/s).

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

from model.checkpoint import Checkpoint, CheckpointError, load_checkpoint, load_training_state, save_checkpoint
from model.clips import MANIFEST, PREPARED_FORMAT, ClipDataset, PreparedClips
from recipes.evaluate import predict_clips
from model.preprocessing import ClassList, Preprocessing
from model.taxonomy import MA52
from recipes.train import STATE as TRAIN_STATE, TrainConfig, train
from model.windows import WindowPlan
from pipeline.agreement import read_frame_truth
from pipeline.artifacts import atomic_write_text, config_hash, sha256_files
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

__all__ = ["DEMO_PLAN", "DEMO_PREPROCESSING", "MODEL_OVERRIDES", "MMN_OVERRIDES", "DEMO_TRAIN", "DEMO_FAMILIES",
           "CHECKPOINT_FILE", "CHECKPOINT_FILES", "REBUILD_COMMAND", "rebuild_command", "DemoRecipe",
           "DemoModelMissing", "demo_readout", "calibrate_demo_readout", "demo_checkpoint_path", "demo_classes",
           "demo_provenance", "simulate_split", "window_clips", "prepared_windows",
           "evaluate_clips", "with_calibrated_readout", "build_demo_model", "recalibrate_demo_model", "main"]

DEMO_FAMILIES = ("micro_dualnet", "mmn")
"""Model families with a demo recipe (:data:`DEMO_TRAIN`); the first is the default (``weights="demo"``)."""
CHECKPOINT_FILES = {"micro_dualnet": "demo_model.pt", "mmn": "demo_mmn.pt"}
"""Shipped file of each family's demo checkpoint (beside this module)."""
CHECKPOINT_FILE = CHECKPOINT_FILES["micro_dualnet"]
REBUILD_COMMAND = "python -m recipes.demo_model --rebuild"


def rebuild_command(family: str = DEMO_FAMILIES[0]) -> str:
    """The command that rebuilds ``family``'s demo checkpoint (recorded in its provenance)."""
    return REBUILD_COMMAND if family == DEMO_FAMILIES[0] else f"{REBUILD_COMMAND} --family {family}"


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
MMN_OVERRIDES: dict[str, Any] = {"embed_dim": 64, "depths": (2, 2), "num_heads": 4, "drop_path": 0.1}
"""Applied to ``MMNConfig.ma52`` (the paper's configuration): D = 64, two stages of two formers (module
docstring); the paper's augmentation, MSM, MTM, MCL and STPE stay on. T comes from :data:`DEMO_PLAN`."""
DEMO_TRAIN: dict[str, dict[str, Any]] = {
    "micro_dualnet": {
        "preset": "tiny", "model_overrides": dict(MODEL_OVERRIDES), "num_frames": DEMO_PLAN.clip_len,
        "frame_stride": DEMO_PLAN.stride, "epochs": 20, "batch_size": 32, "lr": 0.02, "lr_reference_batch": 16,
        "warmup_epochs": 2, "weight_decay": 5e-5, "workers": 1, "device": "cpu", "seed": 0, "plot_every": 1000,
    },
    "mmn": {  # MMN's recipe (TrainConfig.mmn_paper: AdamW, wd 0.1, label smoothing 0.1, no clipping), shortened
        "family": "mmn", "preset": "ma52", "model_overrides": dict(MMN_OVERRIDES), "num_frames": DEMO_PLAN.clip_len,
        "frame_stride": DEMO_PLAN.stride, "optimizer": "adamw", "epochs": 20, "batch_size": 32, "lr": 2e-3,
        "lr_reference_batch": 32, "warmup_epochs": 2, "warmup_start_lr": 1e-5, "min_lr": 1e-5, "weight_decay": 0.1,
        "label_smoothing": 0.1, "grad_clip": None, "workers": 1, "device": "cpu", "seed": 0, "plot_every": 1000,
    },
}
"""The :class:`recipes.train.TrainConfig` fields of each family's demo model."""


def demo_readout(path: str | os.PathLike | None = None, *, family: str = DEMO_FAMILIES[0]) -> ReadoutConfig:
    """The read-out the demo checkpoint was calibrated for, from its provenance (``readout``).

    ``path``: a demo checkpoint (default: the shipped one of ``family``). Per-class thresholds for
    interpolated window scores, chosen on the recipe's calibration recordings (module docstring).
    """
    ckpt = load_checkpoint(path or demo_checkpoint_path(family))
    readout = ckpt.provenance.get("readout")
    if not isinstance(readout, dict):
        raise ValueError(f"{ckpt.path}: provenance has no 'readout' (not a demo checkpoint? rebuild it with "
                         f"{rebuild_command(ckpt.family.name)})")
    return ReadoutConfig.from_dict(readout)


class DemoModelMissing(FileNotFoundError):
    """The shipped demo checkpoint is absent (message names the rebuild command)."""


def _check_family(family: str) -> str:
    if family not in CHECKPOINT_FILES:
        raise ValueError(f"no demo model of family {family!r}; one of {', '.join(DEMO_FAMILIES)}")
    return family


def demo_checkpoint_path(family: str = DEMO_FAMILIES[0]) -> Path:
    """Path of ``family``'s shipped demo checkpoint; :class:`DemoModelMissing` (a FileNotFoundError) when absent."""
    path = Path(__file__).resolve().with_name(CHECKPOINT_FILES[_check_family(family)])
    if not path.is_file():
        raise DemoModelMissing(f"demo model checkpoint {path} not found; rebuild it with: {rebuild_command(family)} "
                               "(about 22 minutes on 2 cores, longer on a busy machine)")
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
    family : the model family (:data:`DEMO_FAMILIES`)
    train : the :class:`recipes.train.TrainConfig` fields (default: ``DEMO_TRAIN[family]``;
        :meth:`for_family` builds a family's recipe)
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
    family: str = DEMO_FAMILIES[0]
    train: dict[str, Any] = field(default_factory=lambda: _train_fields(DEMO_TRAIN[DEMO_FAMILIES[0]]))

    @classmethod
    def for_family(cls, family: str, **changes: Any) -> "DemoRecipe":
        """The recipe of ``family``'s demo model: the same recordings and read-out, ``DEMO_TRAIN[family]``."""
        return cls(**{"family": family, "train": _train_fields(DEMO_TRAIN[_check_family(family)]), **changes})

    @classmethod
    def from_recorded(cls, recorded: dict[str, Any]) -> "DemoRecipe":
        """The recipe a checkpoint's provenance records (``simulated.recipe``), current defaults for the
        fields it lacks (a recipe recorded before ``family`` existed is Micro-DualNet's)."""
        known = set(cls.__dataclass_fields__)
        d = {k: (tuple(v) if k in ("size", "min_durations") else v) for k, v in recorded.items() if k in known}
        return cls(**d)

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
        d["train"] = _train_fields(d["train"], lists=True)
        return d


def _train_fields(train: dict[str, Any], *, lists: bool = False) -> dict[str, Any]:
    """A copy of TrainConfig fields (``model_overrides`` copied too; ``lists``: its tuples as lists, plain data)."""
    overrides = {k: list(v) if lists and isinstance(v, tuple) else v for k, v in train.get("model_overrides", {}).items()}
    return {**train, "model_overrides": overrides}


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
                 seed: int = 0, stamp: dict[str, str] | None = None) -> Path:
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
    frame, label, purity. ``stamp`` is recorded in the manifest's ``settings`` (:func:`prepared_windows`'s
    up-to-date check). Returns ``out``.
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
                                                "plan": plan.to_dict(), "motion_repeat": motion_repeat,
                                                **(stamp or {})},
                "clips": records + repeats}
    atomic_write_text(out / "windows.csv", "id,video_id,start_frame,end_frame,label,purity\n" + "".join(rows))
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return out


def prepared_windows(split_dir: Path, out: Path, *, classes: ClassList, **settings: Any) -> Path:
    """:func:`window_clips` of a split, reused when up to date: the cache both families train from.

    The folder is up to date when its manifest records (``settings.inputs_sha256``,
    ``settings.settings_sha256``) the same hash of the split's videos, keypoints and per-frame truth
    and of the window settings (``classes``, ``settings``: :func:`window_clips`'s keywords). The
    manifest is written last (atomically), so a folder cut short by a crash has none and is redone.
    """
    split_dir, out = Path(split_dir), Path(out)
    vids = sorted((split_dir / "videos").glob("*.mp4"))
    inputs = [*vids, *(keypoints_path(split_dir / "pose", v.stem) for v in vids),
              *(split_dir / "truth" / "frames" / f"{v.stem}.parquet" for v in vids)]
    window_settings = {"plan": DEMO_PLAN, "preprocessing": DEMO_PREPROCESSING, **settings}
    stamp = {"inputs_sha256": sha256_files(inputs),
             "settings_sha256": config_hash({"classes": classes.to_dict(),
                                             **{k: (v.to_dict() if hasattr(v, "to_dict") else v)
                                                for k, v in window_settings.items()}})}
    try:
        recorded = PreparedClips(out).manifest.get("settings") or {}
    except (FileNotFoundError, ValueError):
        recorded = {}
    if all(recorded.get(k) == v for k, v in stamp.items()):
        return out
    if out.exists():
        shutil.rmtree(out)
    return window_clips(split_dir, out, classes=classes, stamp=stamp, **window_settings)


def evaluate_clips(checkpoint: Checkpoint, prepared: Path, *, clean_purity: float = 0.9) -> dict[str, Any]:
    """Top-1 of the checkpoint on a prepared window folder: all windows, clean windows, per class (clean).

    ``top1_clean`` is dominated by background (most of a recording is no micro-action);
    ``top1_clean_class_mean`` weighs every class with clean windows equally (a balanced view).
    ``per_recording``: per test recording, its windows, clean windows and how many of each are right
    (what a test reproduces on a slice of the recordings). Any family's checkpoint
    (:mod:`model.families`; a keypoint-only model reads the windows' keypoints alone).
    """
    prepared = Path(prepared)
    ds = ClipDataset(PreparedClips(prepared), checkpoint.plan.clip_len, train=False,
                     preprocessing=checkpoint.preprocessing)
    pred = predict_clips(checkpoint.model, ds, batch_size=64, amp=False, family=checkpoint.family)
    labels = np.asarray(pred.labels)
    top = np.asarray(pred.scores).argmax(1)
    rows = [line.split(",") for line in (prepared / "windows.csv").read_text().splitlines()[1:]]
    purity = np.array([float(r[-1]) for r in rows])
    video = np.array([r[1] for r in rows])
    clean = purity >= clean_purity
    right = top == labels
    per_recording = {str(v): {"windows": int((video == v).sum()), "correct": int(right[video == v].sum()),
                              "clean_windows": int((clean & (video == v)).sum()),
                              "clean_correct": int((right & clean & (video == v)).sum())}
                     for v in sorted(set(video))}
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
            "top1_clean_per_class": per_class, "per_recording": per_recording}


def recognize_split(checkpoint: str | os.PathLike | Checkpoint, split: Path, out: Path, *, batch_size: int = 64,
                    workers: int = 1):
    """The recognition stage (as at inference) on every recording of a simulated split, into ``out``.

    Returns (manifest, :class:`pipeline.recognize.RunStats`); RuntimeError naming the first failed
    recording. Up-to-date windows files are skipped (``RunStats`` then counts only the redone ones).
    """
    manifest = read_manifest(split / "manifest.csv")
    jobs = [RecognizeJob(item_id=vid, source=str(split / video), out_dir=str(out),
                         keypoints=str(keypoints_path(split / "pose", vid)))
            for vid, video in zip(manifest.videos["video_id"], manifest.videos["video"])]
    results, stats = recognize_videos(jobs, checkpoint, RecognizeOptions(batch_size=batch_size, workers=workers))
    failed = [r for r in results if r.status == "failed"]
    if failed:
        raise RuntimeError(f"recognition failed on {len(failed)} recording(s) of {split}, e.g. "
                           f"{failed[0].item_id}: {failed[0].error}")
    return manifest, stats


def calibrate_demo_readout(checkpoint: str | os.PathLike, recipe: DemoRecipe, work: str | os.PathLike, *,
                           workers: int = 1) -> Calibration:
    """Per-class read-out thresholds of a demo checkpoint, chosen on the recipe's calibration split.

    Renders and poses the calibration recordings (skipped when up to date), recognises them with
    ``checkpoint`` (the recognition stage, as at inference; windows in ``calibration/recognize_<family>``),
    then :func:`recipes.readout_calibration.calibrate_thresholds` with ``recipe.readout_scores`` and
    ``recipe.engagement_weight``.
    """
    split = simulate_split(recipe, "calibration", Path(work), workers=workers)
    rec = split / f"recognize_{recipe.family}"
    manifest, _ = recognize_split(checkpoint, split, rec)
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
        "command": rebuild_command(recipe.family),
        "note": "trained on simulated data only (a seated mannequin drawn by the simulator); "
                "not a model of real participants",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _train_resumable(cfg: TrainConfig, prepared: Path, run: Path, *, on_epoch=None) -> Path:
    """:func:`recipes.train.train` into ``run``, resuming a run of the same config cut short (a finished
    one returns at once); a run of another config is removed first."""
    resume = False
    if (run / TRAIN_STATE).is_file():
        try:
            saved = load_training_state(run / TRAIN_STATE)["extra"].get("train_config")
        except CheckpointError:
            saved = None
        resume = saved is not None and config_hash(saved) == config_hash(cfg.to_dict())
    if run.exists() and not resume:
        shutil.rmtree(run)
    return train(cfg, prepared, run, resume=resume, on_epoch=on_epoch)


def build_demo_model(out_path: str | os.PathLike, work: str | os.PathLike, *, recipe: DemoRecipe = DemoRecipe(),
                     workers: int = 1, on_epoch=None) -> tuple[Path, dict[str, Any]]:
    """Simulate, pose, cut windows, train, evaluate on unseen seeds, write the checkpoint ``out_path``.

    Returns (path, provenance). ``recipe.family`` picks the model (:meth:`DemoRecipe.for_family`).
    ``work`` holds the recordings, keypoints, prepared windows (shared by the families,
    :func:`prepared_windows`) and the training run ``run_<family>`` (reruns skip what is up to date;
    an interrupted training resumes). Timings are wall and CPU seconds of this process and its
    children, per step; ``train`` also records the summed epoch times of the whole run
    (``epochs_s``), which a resumed run's wall time does not cover.
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
        prepared[split] = timed(f"windows_{split}", prepared_windows, splits[split], work / f"prepared_{split}",
                                classes=classes,
                                background_keep=recipe.background_keep if split == "train" else 1.0,
                                min_purity=recipe.min_purity if split == "train" else 0.0,
                                motion_repeat=recipe.motion_repeat if split == "train" else 1,
                                seed=recipe.train_seed)
    run = work / f"run_{recipe.family}"
    cfg = TrainConfig.from_dict(recipe.train)
    if cfg.family != recipe.family:
        raise ValueError(f"recipe family {recipe.family!r} but its train config trains {cfg.family!r}")
    latest = timed("train", _train_resumable, cfg, prepared["train"], run, on_epoch=on_epoch)
    history = load_training_state(run / TRAIN_STATE)["extra"].get("history", [])
    timings["train"]["epochs_s"] = round(sum(float(r.get("epoch_s", 0.0)) for r in history), 1)
    trained = load_checkpoint(latest)
    test = timed("evaluate", evaluate_clips, trained, prepared["test"], clean_purity=recipe.clean_purity)
    train_counts = np.bincount(PreparedClips(prepared["train"]).labels, minlength=len(classes))
    provenance = demo_provenance(recipe, test, {n: int(k) for n, k in zip(classes.names, train_counts)}, timings)
    out_path = Path(out_path)
    uncalibrated = work / f"uncalibrated_{recipe.family}.pt"
    save_checkpoint(uncalibrated, trained.model, classes=trained.classes, preprocessing=DEMO_PREPROCESSING,
                    plan=DEMO_PLAN, provenance=provenance)
    calibration = timed("calibrate_readout", calibrate_demo_readout, uncalibrated, recipe, work, workers=workers)
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
        recipe = DemoRecipe.from_recorded(dict((ckpt.provenance.get("simulated") or {}).get("recipe") or {}))
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
    p = make_parser("The demo models trained on simulated recordings (Micro-DualNet pose modality, MMN skeleton-only): "
                    "show a checkpoint's provenance, rebuild it, or recalibrate its read-out.",
                    prog="python -m recipes.demo_model")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--rebuild", action="store_true",
                      help="simulate, pose, train, evaluate and calibrate the read-out, then write the checkpoint")
    what.add_argument("--recalibrate", action="store_true",
                      help="redo only the read-out calibration of the checkpoint (weights untouched) and rewrite it")
    p.add_argument("--family", choices=DEMO_FAMILIES, default=DEMO_FAMILIES[0],
                   help="which demo model (" + ", ".join(f"{f}: {CHECKPOINT_FILES[f]}" for f in DEMO_FAMILIES)
                        + "); the recordings and prepared windows in --work are shared by both")
    p.add_argument("--out", help="checkpoint to write (--rebuild) or rewrite (--recalibrate) (default: the shipped "
                                 "file of --family)")
    p.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "microaction-demo-model"),
                   help="working folder for --rebuild and --recalibrate (recordings, keypoints, prepared windows, "
                        "training runs); a rerun resumes what is up to date, an interrupted training from its last "
                        "epoch")
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
            ckpt = load_checkpoint(Path(args.out) if args.out else demo_checkpoint_path(args.family))
            print(json.dumps({"path": str(ckpt.path), "family": ckpt.family.name, "classes": list(ckpt.classes.names),
                              "plan": ckpt.plan.to_dict(), "provenance": ckpt.provenance}, indent=1))
            return EXIT_OK
        if args.workers < 1 or args.threads < 1:
            raise BadInput("--workers and --threads must be >= 1")
        torch.set_num_threads(args.threads)
        out = Path(args.out) if args.out else Path(__file__).resolve().with_name(CHECKPOINT_FILES[args.family])
        if args.recalibrate:
            if not out.is_file():
                raise BadInput(f"--recalibrate: no checkpoint {out} (build one with {rebuild_command(args.family)})")
            path, calibration = recalibrate_demo_model(out, Path(args.work), workers=args.workers)
            print(f"read-out calibration: {calibration.summary()}", file=sys.stderr)
            report_written(path)
            return EXIT_OK

        def show(row):
            print(f"epoch {row['epoch']}: loss {row['train_loss']:.3f} train top-1 {row['train_top1']:.3f} "
                  f"({row['epoch_s']:.1f} s)", file=sys.stderr)

        path, prov = build_demo_model(out, Path(args.work), recipe=DemoRecipe.for_family(args.family),
                                      workers=args.workers, on_epoch=show)
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
