"""Train a recogniser (any model family) on a prepared clip folder: ``python -m recipes.train`` and :func:`train`.

``--family`` picks the model family (:mod:`model.families`: ``micro_dualnet`` default, ``mmn``,
``manet``); the preset and ``--set`` overrides are that family's config's. ``--recipe mmn`` starts
from the MMN paper's recipe (:meth:`TrainConfig.mmn_paper`: AdamW lr 1e-3 at batch 64, weight decay
0.1, 20 warm-up epochs, cosine to 1e-5, 120 epochs, label smoothing 0.1, T = 64), ``--recipe manet``
from the MA-52 paper's for MANet (:meth:`TrainConfig.manet_paper`: SGD lr 0.001 at batch 10, weight
decay 1e-4, 80 epochs, lr / 10 at epochs 30 and 60, T = 8). ``--family-file NAME=PATH`` hands a family
the training files it reads (MANet: ``label_vectors``, its joint-embedding targets).

::

    python -m recipes.train --train prepared/train --val prepared/val --out runs/ma52 \\
        --preset ma52 --backbone-weights weights/tsm_r101_k400.pth
    torchrun --nproc-per-node 4 -m recipes.train ...          # DDP, one process per GPU
    python -m recipes.train ... --resume                       # continue runs/ma52 where it stopped

Recipe (paper IV-B; every value a :class:`TrainConfig` field): SGD momentum 0.9, weight decay 5e-4,
batch 12, 120 epochs, lr 0.01 with 10 linear warm-up epochs from 0.001 then cosine decay to
``min_lr``; loss CE + 0.1 MAC (Eq. 21, the model's own :meth:`MicroDualNet.loss`). Linear scaling
rule: ``lr`` and ``warmup_start_lr`` are the values for ``lr_reference_batch`` (12) clips; a run with
global batch B uses them times B / 12 (``scale_lr``), so 4 GPUs x 12 clips train at lr 0.04.
The schedule is evaluated every step (fractional epochs).

Speed: frames travel as uint8 and are normalised on the device; bf16 autocast on CUDA (``amp``),
channels_last convolutions, optional ``torch.compile``, gradient clipping (``grad_clip``, global L2
norm). DDP: launched by ``torchrun`` (NCCL on CUDA, gloo on CPU); ``batch_size`` is the *global*
batch, split evenly over the processes, and every process sees the same global batches as a
single-process run (:class:`GlobalBatchSampler`), so the gradients agree up to BatchNorm statistics
(per process unless ``sync_batchnorm`` on CUDA, or frozen with ``freeze_bn``) and dropout draws.

Outputs in ``out_dir``: ``latest.pt`` and ``best.pt`` (by validation F1_mean; model checkpoints with
class list, preprocessing, window plan and provenance, :func:`model.checkpoint.save_checkpoint`),
``latest.state.pt`` (optimizer, schedule, RNG states, history), ``train_log.csv`` (per epoch: train
loss terms and accuracy, lr, clips/s, validation metrics) and ``train_log.png``. ``--resume``
restores all of it and continues exactly: on CPU with a fixed seed the losses equal an uninterrupted
run's (per-clip randomness is seeded by (seed, epoch, clip), :mod:`model.clips`).
"""

from __future__ import annotations

import argparse
import ast
import csv
import io
import itertools
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Sampler

from model.checkpoint import (CheckpointError, load_checkpoint, load_training_state, restore_training_state,
                              save_checkpoint, save_training_state)
from model.clips import ClipDataset, PreparedClips, collate_clips, normalize_frames
from model.families import KEYPOINTS, family_of, get_family
from recipes.evaluate import predict_clips, write_file_atomic
from model.metrics import METRIC_KEYS, classification_metrics
from model.transfer import FREEZE_CHOICES, freeze, init_from_checkpoint, set_frozen_eval
from model.weights import BackboneWeights, load_backbone_weights
from model.windows import WindowPlan
from pipeline.cli import progress

__all__ = ["TrainConfig", "GlobalBatchSampler", "lr_at", "model_config", "build_model", "recalibrate_batchnorm",
           "train", "write_log", "main"]

LATEST, BEST, STATE, LOG_CSV, LOG_PNG = "latest.pt", "best.pt", "latest.state.pt", "train_log.csv", "train_log.png"


@dataclass
class TrainConfig:
    """Training hyper-parameters (paper IV-B defaults) and run settings."""

    # --- model --------------------------------------------------------------------------------
    family: str = "micro_dualnet"
    """The model family (:data:`model.families.FAMILIES`): "micro_dualnet", "mmn" or "manet"."""
    preset: str = "ma52"
    """A preset classmethod of the family's config (``MicroDualNetConfig``: ``ma52``, ``imigue``, ``tiny``;
    ``MMNConfig``: ``ma52``, ``ma52_2s``, ``tiny``); ``num_classes`` always comes from the prepared
    folder's class list."""
    model_overrides: dict[str, Any] = field(default_factory=dict)
    """Config fields replacing the preset's (ablations: ``paths``, ``fusion``, ``use_mac``, ``modality``...)."""
    family_files: dict[str, str] = field(default_factory=dict)
    """Named training files the family's model reads (:attr:`model.families.ModelFamily.files`; MANet:
    ``{"label_vectors": "glove_ma52.npy"}`` for its joint-embedding loss, off without it)."""
    backbone_weights: str | None = None
    """Local ImageNet / TSM / mmaction2 backbone file (:func:`model.weights.load_backbone_weights`)."""
    backbone_format: str = "auto"
    init_checkpoint: str | None = None
    """Start from this checkpoint (any class list, :func:`model.transfer.init_from_checkpoint`): its family,
    architecture and every tensor but the classifier are kept, the classifier is drawn afresh for the
    prepared folder's class list; ``preset`` and ``model_overrides`` are then not used."""
    freeze: str = "none"
    """"none", "backbone" (the CNN backbone gets no gradient, BatchNorm statistics kept) or "features"
    (everything but the classifier); :func:`model.transfer.freeze`."""

    # --- optimisation (IV-B) ------------------------------------------------------------------
    optimizer: str = "sgd"
    """"sgd" (momentum, Micro-DualNet IV-B) or "adamw" (MMN's recipe)."""
    epochs: int = 120
    batch_size: int = 12
    """Global batch (all processes together)."""
    lr: float = 0.01
    """Peak learning rate for ``lr_reference_batch`` clips per step (IV-B: 0.01 at batch 12)."""
    lr_reference_batch: int = 12
    scale_lr: bool = True
    """Linear scaling rule: multiply ``lr`` and ``warmup_start_lr`` by batch_size / lr_reference_batch."""
    warmup_epochs: float = 10
    warmup_start_lr: float = 0.001
    min_lr: float = 0.0
    """End of the cosine decay."""
    lr_schedule: str = "cosine"
    """After the warm-up: "cosine" (to ``min_lr`` at ``epochs``; IV-B, MMN) or "step" (``lr`` times
    ``lr_gamma`` at each of ``lr_milestones``; the MA-52 paper's MANet recipe, V-B)."""
    lr_milestones: tuple[float, ...] = ()
    lr_gamma: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    grad_clip: float | None = 20.0
    """Max global L2 norm of the gradients (None: off). Not stated in the paper; 20 as TSM's code."""
    label_smoothing: float = 0.0

    # --- data ---------------------------------------------------------------------------------
    num_frames: int | None = None
    """T; None: the model config's ``num_frames`` (MA-52: 8)."""
    frame_stride: int | None = None
    """Stride of the window plan stored in the checkpoint for inference on untrimmed video. None: the
    MA-52 span of 64 frames split over T (``model.windows.ma52_plan``: 8 frames stride 8, the
    ``ma52_16f`` preset's 16 frames stride 4), about the TSN segment length of a 2 s clip at 30 fps."""
    hop_s: float | None = None
    """Hop of that window plan in seconds (None: the plan's default, 0.5 s)."""
    flip_p: float = 0.5
    workers: int = 4
    """DataLoader worker processes per training process (JPEG decode + crop + flip)."""
    eval_batch_size: int | None = None

    # --- run ----------------------------------------------------------------------------------
    seed: int = 0
    device: str = "auto"
    """"auto" (CUDA when available), "cpu", "cuda", "cuda:1", ..."""
    amp: bool = True
    """bf16 autocast on CUDA (ignored on CPU)."""
    channels_last: bool = True
    compile: bool = False
    freeze_bn: bool = False
    """Keep BatchNorm layers in eval mode (running statistics frozen, affine parameters trained)."""
    sync_batchnorm: bool = False
    """SyncBatchNorm across DDP processes (CUDA only)."""
    precise_bn_batches: int = 0
    """Before each validation and checkpoint, recompute the BatchNorm running statistics as plain
    averages over this many training batches (forward only; "precise BN"). 0: off (paper). Short
    runs need it: after a few hundred steps the exponential running averages still lag the weights
    and an eval-mode model can collapse onto one class although training accuracy is high."""
    val_every: int = 1
    plot_every: int = 10
    """Redraw ``train_log.png`` every this many epochs (and after the last); the CSV is written every epoch."""
    max_steps_per_epoch: int | None = None
    """Cut epochs short (smoke runs and benchmarks); None: the whole training set."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown training config field(s): {', '.join(unknown)}")
        return cls(**d)

    @classmethod
    def mmn_paper(cls, **changes: Any) -> "TrainConfig":
        """MMN's recipe (DESIGN.md section 11, its public code): AdamW, lr 1e-3 at batch 64, weight decay
        0.1, 20 warm-up epochs from 1e-7, cosine to 1e-5 over 120 epochs, label smoothing 0.1, no
        gradient clipping, T = 64 (stride 1: the MA-52 clip's 64 frames). Augmentation is the model's own
        (``MMNConfig.augment``, applied in its training-mode forward); the clip flip stays on."""
        base = dict(family="mmn", preset="ma52", optimizer="adamw", lr=1e-3, lr_reference_batch=64, batch_size=64,
                    weight_decay=0.1, warmup_epochs=20, warmup_start_lr=1e-7, min_lr=1e-5, epochs=120,
                    label_smoothing=0.1, grad_clip=None, num_frames=64)
        return cls(**{**base, **changes})

    @classmethod
    def manet_paper(cls, **changes: Any) -> "TrainConfig":
        """MANet's recipe (MA-52 paper V-B, :data:`recipes.manet_paper_rows.MANET_TRAINING`): SGD lr 0.001 at
        batch 10, momentum 0.9, weight decay 1e-4, 80 epochs, lr / 10 at epochs 30 and 60, no warm-up,
        T = 8 (stride 8, the MA-52 plan). Gradient clipping stays at the trainer's default (not stated)."""
        from recipes.manet_paper_rows import MANET_TRAINING as m

        base = dict(family="manet", preset="ma52", optimizer=m.optimizer, lr=m.lr, lr_reference_batch=m.batch_size,
                    batch_size=m.batch_size, momentum=m.momentum, weight_decay=m.weight_decay, epochs=m.epochs,
                    warmup_epochs=0, lr_schedule="step", lr_milestones=tuple(m.lr_milestones), lr_gamma=m.lr_gamma,
                    num_frames=8)
        return cls(**{**base, **changes})

    def __post_init__(self) -> None:
        if self.lr_schedule not in ("cosine", "step"):
            raise ValueError(f"lr_schedule must be 'cosine' or 'step', got {self.lr_schedule!r}")
        self.lr_milestones = tuple(self.lr_milestones)

    @property
    def lr_scale(self) -> float:
        return self.batch_size / self.lr_reference_batch if self.scale_lr else 1.0


def lr_at(cfg: TrainConfig, epoch: float) -> float:
    """Learning rate at (fractional) ``epoch``: linear warm-up from ``warmup_start_lr`` to ``lr``
    over ``warmup_epochs``, then cosine to ``min_lr`` at ``epochs`` (both scaled by :attr:`lr_scale`),
    or with ``lr_schedule="step"`` ``lr * lr_gamma ** (milestones passed)``."""
    peak, start, floor = cfg.lr * cfg.lr_scale, cfg.warmup_start_lr * cfg.lr_scale, cfg.min_lr
    if cfg.warmup_epochs > 0 and epoch < cfg.warmup_epochs:
        return start + (peak - start) * epoch / cfg.warmup_epochs
    if cfg.lr_schedule == "step":
        return peak * cfg.lr_gamma ** sum(epoch >= m for m in cfg.lr_milestones)
    span = max(cfg.epochs - cfg.warmup_epochs, 1e-12)
    progress = min(max((epoch - cfg.warmup_epochs) / span, 0.0), 1.0)
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def model_config(cfg: TrainConfig, num_classes: int):
    """The family's preset with ``model_overrides`` and the folder's class count."""
    family = get_family(cfg.family)
    overrides = {**cfg.model_overrides, "num_classes": num_classes}
    if cfg.num_frames is not None:
        overrides.setdefault("num_frames", cfg.num_frames)
    return family.preset(cfg.preset, **overrides)


def build_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    """A fresh model (seeded by ``cfg.seed``), backbone from the local weights file when given; or, with
    ``cfg.init_checkpoint``, the checkpoint's model with a fresh classifier (:mod:`model.transfer`).
    ``cfg.freeze`` is applied either way."""
    if cfg.init_checkpoint:
        model, report = init_from_checkpoint(cfg.init_checkpoint, num_classes, seed=cfg.seed)
        if report.family != cfg.family:
            raise ValueError(f"--init {cfg.init_checkpoint} is a {report.family} checkpoint but the training config "
                             f"names family {cfg.family!r}")
        model.transfer_report = report
    else:
        torch.manual_seed(cfg.seed)
        model = get_family(cfg.family).build(model_config(cfg, num_classes))
        if cfg.backbone_weights:
            load_backbone_weights(model, BackboneWeights(cfg.backbone_weights, cfg.backbone_format))
    freeze(model, get_family(cfg.family), cfg.freeze)
    return model


class GlobalBatchSampler(Sampler[list[int]]):
    """This process's share of every global batch of an epoch.

    Epoch ``e`` shuffles the clips with a generator seeded by (seed, e) and cuts the permutation into
    global batches of ``batch_size`` (the last partial batch dropped, as usual in training); process
    ``rank`` of ``world_size`` takes slice ``rank`` of each, so one process with batch B and W
    processes with B / W each see the same clips in the same steps.
    """

    def __init__(self, n: int, batch_size: int, *, rank: int = 0, world_size: int = 1, seed: int = 0,
                 max_steps: int | None = None) -> None:
        if batch_size % world_size:
            raise ValueError(f"global batch {batch_size} is not divisible by {world_size} processes")
        if n < batch_size:
            raise ValueError(f"{n} training clips are fewer than one batch of {batch_size}")
        self.n, self.batch_size, self.rank, self.world_size, self.seed = n, batch_size, rank, world_size, seed
        self.max_steps = max_steps
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        steps = self.n // self.batch_size
        return min(steps, self.max_steps) if self.max_steps else steps

    def __iter__(self) -> Iterator[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        local = self.batch_size // self.world_size
        for s in range(len(self)):
            batch = perm[s * self.batch_size:(s + 1) * self.batch_size]
            yield batch[self.rank * local:(self.rank + 1) * local]


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def _device(cfg: TrainConfig, local_rank: int) -> torch.device:
    if cfg.device == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    dev = torch.device(cfg.device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device(f"cuda:{local_rank}")
    return dev


def _set_train_mode(model: nn.Module, freeze_bn: bool) -> None:
    model.train()
    set_frozen_eval(model)  # frozen parts (cfg.freeze) keep their BatchNorm statistics and no dropout
    if freeze_bn:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def _channels_last(model: nn.Module) -> None:
    from model.backbone import TSMResNet

    model.to(memory_format=torch.channels_last)
    for m in model.modules():
        if isinstance(m, TSMResNet):
            m.memory_format = torch.channels_last


LOG_COLUMNS = ("epoch", "lr", "train_loss", "train_ce", "train_mac", "train_top1", "clips_per_s", "data_wait_frac",
               "epoch_s") + tuple(f"val_{k}" for k in METRIC_KEYS)


def write_log(out_dir: Path, history: list[dict[str, Any]], *, plot: bool = True,
              aux_label: str = "MAC") -> tuple[Path, Path | None]:
    """``train_log.csv`` and (``plot``) ``train_log.png`` (losses, validation F1_mean / Top-1, lr per epoch).

    ``train_mac`` is the family's auxiliary loss term, drawn as ``aux_label`` (:attr:`ModelFamily.aux_term`)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=LOG_COLUMNS, extrasaction="ignore")
    w.writeheader()
    for row in history:
        w.writerow({k: row.get(k, "") for k in LOG_COLUMNS})
    csv_path = out_dir / LOG_CSV
    write_file_atomic(csv_path, buf.getvalue().encode())
    if not plot:
        return csv_path, None

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.4))
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.15, top=0.9, wspace=0.3)
    FigureCanvasAgg(fig)
    ax_loss, ax_val, ax_lr = fig.subplots(1, 3)
    ep = [r["epoch"] for r in history]
    ax_loss.plot(ep, [r["train_loss"] for r in history], label="total")
    ax_loss.plot(ep, [r["train_ce"] for r in history], label="CE")
    ax_loss.plot(ep, [r["train_mac"] for r in history], label=aux_label)
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="Loss")
    ax_loss.legend()
    val = [r for r in history if r.get("val_f1_mean") not in (None, "")]
    ax_val.plot(ep, [r["train_top1"] for r in history], label="train Top-1")
    if val:
        ax_val.plot([r["epoch"] for r in val], [r["val_top1"] for r in val], marker="o", label="val Top-1")
        ax_val.plot([r["epoch"] for r in val], [r["val_f1_mean"] for r in val], marker="o", label="val F1_mean")
    ax_val.set(xlabel="epoch", ylabel="fraction", ylim=(0, 1), title="Accuracy")
    ax_val.legend()
    ax_lr.plot(ep, [r["lr"] for r in history])
    ax_lr.set(xlabel="epoch", ylabel="learning rate", title="Schedule")
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    png_path = out_dir / LOG_PNG
    write_file_atomic(png_path, png.getvalue())
    return csv_path, png_path


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterator[dict[str, torch.Tensor]], preprocessing,
                          device: torch.device, *, amp: bool = False) -> int:
    """Reset every BatchNorm's running statistics and re-estimate them as the plain mean over ``batches``
    (train-mode forward passes, no gradient); returns the number of batches used."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
           and not getattr(m, "_frozen", False)]
    momenta = [bn.momentum for bn in bns]
    was_training = model.training
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
    model.train()
    set_frozen_eval(model)
    n = 0
    try:
        for batch in batches:
            family = family_of(model)
            pixels = getattr(model, "uses_rgb", family.uses_pixels(model.cfg))
            frames = normalize_frames(batch["frames"].to(device), preprocessing) if pixels else None
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
                family.forward(model, frames, batch["keypoints"].to(device))
            n += 1
    finally:
        for bn, mom in zip(bns, momenta):
            bn.momentum = mom
        model.train(was_training)
    return n


def _dist_env() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


# --------------------------------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------------------------------


def train(config: TrainConfig, prepared_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
          val_dir: str | os.PathLike | None = None, resume: bool = False, until_epoch: int | None = None,
          provenance: dict[str, Any] | None = None,
          on_epoch: Callable[[dict[str, Any]], None] | None = None, show_progress: bool = False,
          unit: str = "clip") -> Path:
    """Train on a prepared folder; return the path of the best checkpoint (``latest.pt`` without ``val_dir``).

    Parameters
    ----------
    config : TrainConfig
    prepared_dir, val_dir : prepared folders (:mod:`model.clips`); their class lists must agree.
    out_dir : folder for checkpoints and logs (created).
    resume : continue from ``out_dir/latest.state.pt`` (error when absent).
    until_epoch : stop after this many completed epochs (the schedule still spans ``config.epochs``);
        used to split a run into pieces.
    provenance : extra plain-data provenance for the checkpoints (e.g. ``{"trained_on": "simulated"}``).
    on_epoch : called on rank 0 with each epoch's log row.
    show_progress : a progress bar (rank 0, stderr, :func:`pipeline.cli.progress`) over all remaining
        training steps, counted in ``unit``s (clips) per second with an ETA for the whole run.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) every process calls this; rank 0 writes the files.
    """
    cfg = config
    rank, world, local_rank = _dist_env()
    device = _device(cfg, local_rank)
    own_group = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        own_group = True
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        return _train(cfg, Path(prepared_dir), Path(out_dir), None if val_dir is None else Path(val_dir), resume,
                      until_epoch, provenance or {}, on_epoch, rank, world, device, show_progress and rank == 0, unit)
    finally:
        if own_group:
            dist.destroy_process_group()


def _train(cfg: TrainConfig, prepared_dir: Path, out_dir: Path, val_dir: Path | None, resume: bool,
           until_epoch: int | None, provenance: dict[str, Any], on_epoch, rank: int, world: int,
           device: torch.device, show_progress: bool = False, unit: str = "clip") -> Path:
    train_set = PreparedClips(prepared_dir)
    classes, preprocessing = train_set.classes, train_set.preprocessing
    val_set = PreparedClips(val_dir) if val_dir is not None else None
    if val_set is not None and val_set.classes != classes:
        raise ValueError(f"{val_dir}: class list differs from {prepared_dir}'s")
    out_dir.mkdir(parents=True, exist_ok=True)

    model = build_model(cfg, len(classes))
    family = get_family(cfg.family)
    mcfg = model.cfg
    pixels = family.uses_pixels(mcfg)
    family.attach_files(model, dict(cfg.family_files), classes)
    if KEYPOINTS in family.inputs(mcfg):
        for name, folder in (("training", train_set), ("validation", val_set)):
            bare = [r["id"] for r in (folder.records if folder is not None else []) if not r.get("has_keypoints", True)]
            if bare:
                raise ValueError(f"{folder.root}: {len(bare)} of {len(folder)} {name} clips have no keypoints (e.g. "
                                 f"{bare[0]}; prepared without --keypoints/--openpose), but {family.title} reads "
                                 "keypoints; prepare the clips with keypoints (python -m pipeline.pose, then "
                                 "recipes.prepare_clips --keypoints)")
    t = cfg.num_frames or mcfg.num_frames
    stride = cfg.frame_stride if cfg.frame_stride is not None else max(1, round(64 / t))
    plan = (WindowPlan(clip_len=t, stride=stride) if cfg.hop_s is None  # = ma52_plan(t) when T divides 64
            else WindowPlan(clip_len=t, stride=stride, hop_s=cfg.hop_s))
    history: list[dict[str, Any]] = []
    best = -1.0
    start_epoch = 0
    state = None
    if resume:
        state_path = out_dir / STATE
        if not state_path.is_file():
            raise FileNotFoundError(f"{state_path} not found: nothing to resume in {out_dir}")
        ckpt = load_checkpoint(out_dir / LATEST)
        model.load_state_dict(ckpt.model.state_dict())
        state = load_training_state(state_path)
        saved_cfg = state["extra"].get("train_config") or {}
        free = {"workers", "val_every", "plot_every", "device", "compile", "eval_batch_size"}  # do not change the results
        diff = sorted(k for k, v in saved_cfg.items() if k not in free and getattr(cfg, k, None) != v)
        if diff:
            raise ValueError(f"--resume with a different training config ({', '.join(diff)}); use a new --out")
    model.to(device)
    if cfg.channels_last:
        _channels_last(model)
    if world > 1 and cfg.sync_batchnorm and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    core: nn.Module = model
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        net = torch.compile(net)

    params = [p for p in core.parameters() if p.requires_grad]
    if cfg.optimizer == "adamw":
        optimizer = torch.optim.AdamW(params, lr=cfg.lr * cfg.lr_scale, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(params, lr=cfg.lr * cfg.lr_scale, momentum=cfg.momentum,
                                    weight_decay=cfg.weight_decay)
    else:
        raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {cfg.optimizer!r}")
    rgb = bool(getattr(core, "uses_rgb", pixels))  # a keypoint-only model: the loader decodes no JPEG
    train_ds = ClipDataset(train_set, t, train=True, preprocessing=preprocessing, flip_p=cfg.flip_p, seed=cfg.seed,
                           pixels=rgb)
    sampler = GlobalBatchSampler(len(train_ds), cfg.batch_size, rank=rank, world_size=world, seed=cfg.seed,
                                 max_steps=cfg.max_steps_per_epoch)
    steps_per_epoch = len(sampler)
    peak = cfg.lr * cfg.lr_scale
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_at(cfg, step / steps_per_epoch) / peak)
    if state is not None:
        restore_training_state(state, optimizer=optimizer, scheduler=scheduler)
        start_epoch = int(state["epoch"])
        history = list(state["extra"].get("history", []))
        best = float(state["extra"].get("best", -1.0))
    stop = cfg.epochs if until_epoch is None else min(until_epoch, cfg.epochs)
    amp = cfg.amp and device.type == "cuda"
    base_prov = {"training_data": str(prepared_dir), "train_config": cfg.to_dict(), **provenance}
    if getattr(core, "transfer_report", None) is not None:
        base_prov["init"] = core.transfer_report.to_dict()

    best_path = out_dir / BEST
    bar = (progress(None, desc="train", total=max(stop - start_epoch, 0) * steps_per_epoch * cfg.batch_size, unit=unit)
           if show_progress else None)
    for epoch in range(start_epoch, stop):
        train_ds.set_epoch(epoch)
        sampler.set_epoch(epoch)
        loader = DataLoader(train_ds, batch_sampler=sampler, num_workers=cfg.workers, collate_fn=collate_clips,
                            pin_memory=device.type == "cuda", persistent_workers=False,
                            prefetch_factor=4 if cfg.workers > 0 else None)
        _set_train_mode(net, cfg.freeze_bn)
        # total, ce, mac (sums over clips), correct, clips; kept on the device: no sync per step
        sums = torch.zeros(5, dtype=torch.float64, device=device)
        t0 = time.perf_counter()
        wait = 0.0
        t_wait = time.perf_counter()
        for batch in loader:
            wait += time.perf_counter() - t_wait
            # a keypoint-only model (Micro-DualNet's pose modality reads crop keypoints, MMN any keypoints)
            # gets no pixels: skip moving and normalising frames it never uses
            frames = (normalize_frames(batch["frames"].to(device, non_blocking=True), preprocessing)
                      if getattr(core, "uses_rgb", pixels) else None)
            keypoints = batch["keypoints"].to(device, non_blocking=True)
            labels = batch["label"].to(device, non_blocking=True)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                out = family.forward(net, frames, keypoints)
                terms = family.loss(core, out, labels, label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            terms.total.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            n = labels.shape[0]
            with torch.no_grad():
                correct = (out.logits.argmax(-1) == labels).sum()
                sums += torch.stack([terms.total.detach().double() * n, terms.ce.detach().double() * n,
                                     terms.mac.detach().double() * n, correct.double(), sums.new_tensor(float(n))])
            if bar is not None:
                bar.update(n * world)
            t_wait = time.perf_counter()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        dt = time.perf_counter() - t0
        if world > 1:
            dist.all_reduce(sums)
        sums = sums.cpu()
        clips = max(sums[4].item(), 1.0)
        row: dict[str, Any] = {
            "epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "train_loss": sums[0].item() / clips,
            "train_ce": sums[1].item() / clips, "train_mac": sums[2].item() / clips, "train_top1": sums[3].item() / clips,
            "clips_per_s": sums[4].item() / dt, "data_wait_frac": wait / dt, "epoch_s": dt,
        }
        if cfg.precise_bn_batches > 0:
            loader = DataLoader(train_ds, batch_sampler=sampler, num_workers=cfg.workers, collate_fn=collate_clips)
            recalibrate_batchnorm(core, itertools.islice(iter(loader), cfg.precise_bn_batches), preprocessing,
                                  device, amp=amp)
        metrics = None
        last = epoch + 1 == stop
        if val_set is not None and ((epoch + 1) % cfg.val_every == 0 or last):
            if rank == 0:
                val_ds = ClipDataset(val_set, t, train=False, preprocessing=preprocessing, pixels=rgb)
                pred = predict_clips(core, val_ds, batch_size=cfg.eval_batch_size or cfg.batch_size, device=device,
                                     amp=cfg.amp, workers=cfg.workers, family=family)
                metrics = classification_metrics(pred.labels, pred.scores, classes)
                row.update({f"val_{k}": v for k, v in metrics.items()})
            _set_train_mode(net, cfg.freeze_bn)
        history.append(row)
        if rank == 0:
            prov = {**base_prov, "epoch": epoch + 1, "metrics": metrics or {}}
            save_checkpoint(out_dir / LATEST, core, classes=classes, preprocessing=preprocessing, plan=plan,
                            provenance=prov)
            if metrics is not None and metrics["f1_mean"] > best:
                best = metrics["f1_mean"]
                save_checkpoint(best_path, core, classes=classes, preprocessing=preprocessing, plan=plan,
                                provenance=prov)
            save_training_state(out_dir / STATE, optimizer=optimizer, scheduler=scheduler, epoch=epoch + 1,
                                step=(epoch + 1) * steps_per_epoch,
                                extra={"history": history, "best": best, "train_config": cfg.to_dict()})
            write_log(out_dir, history, plot=last or (epoch + 1) % cfg.plot_every == 0, aux_label=family.aux_term)
            if on_epoch is not None:
                on_epoch(row)
        if world > 1:
            dist.barrier()
    if bar is not None:
        bar.close()
    return best_path if best_path.is_file() else out_dir / LATEST


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def _parse_override(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--set expects key=value, got {text!r}")
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        parsed = value  # a bare string such as paths=st
    return key.strip(), parsed


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="python -m recipes.train", description=(
        "Train a recogniser (Micro-DualNet, MMN, MANet) on a prepared clip folder (python -m recipes.prepare_clips). "
        "Micro-DualNet paper IV-B recipe by default; --recipe mmn / manet for those papers'. Exit status: 0 done, "
        "2 bad input."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--train", required=True, metavar="DIR", help="prepared training folder")
    p.add_argument("--val", metavar="DIR", help="prepared validation folder (best.pt by its F1_mean)")
    p.add_argument("--out", required=True, metavar="DIR", help="run folder (checkpoints, logs)")
    p.add_argument("--recipe", choices=("micro_dualnet", "mmn", "manet"), default=None,
                   help="start from a paper's recipe (mmn: TrainConfig.mmn_paper; manet: TrainConfig.manet_paper; "
                        "default Micro-DualNet IV-B)")
    p.add_argument("--family", default=None, help=f"model family (micro_dualnet, mmn, manet; default {d.family})")
    p.add_argument("--preset", default=None, help=f"the family config's preset (ma52, imigue, tiny, ma52_2s, ...; "
                                                 f"default {d.preset})")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", dest="overrides",
                   help="model config override, repeatable (e.g. --set paths=st --set use_mac=False)")
    p.add_argument("--config", metavar="JSON", help="TrainConfig fields as a JSON file (flags below win)")
    p.add_argument("--family-file", action="append", default=[], metavar="NAME=PATH", dest="family_files",
                   help="a named training file of the family, repeatable (MANet: label_vectors=FILE, the 300-d label "
                        "vectors of its joint-embedding loss; without it that loss is off)")
    p.add_argument("--backbone-weights", metavar="FILE", help="local backbone weights (torchvision/TSM/mmaction2)")
    p.add_argument("--init", metavar="CKPT", help="start from this checkpoint (any class list): all but the classifier "
                                                  "kept, classifier re-initialised (model.transfer)")
    p.add_argument("--freeze", choices=FREEZE_CHOICES, default=None, help="parameters without gradients "
                   f"(backbone: the CNN backbone; features: all but the classifier; default {d.freeze})")
    for name in ("epochs", "batch_size", "workers", "seed", "max_steps_per_epoch", "val_every"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=None, help=f"default {getattr(d, name)}")
    for name in ("lr", "weight_decay", "warmup_epochs", "grad_clip"):
        p.add_argument("--" + name.replace("_", "-"), type=float, default=None, help=f"default {getattr(d, name)}")
    p.add_argument("--device", default=None, help=f"default {d.device}")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--no-amp", action="store_true", help="no bf16 autocast on CUDA")
    p.add_argument("--freeze-bn", action="store_true", help="BatchNorm statistics frozen")
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm under DDP (CUDA)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-epoch lines")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    base: dict[str, Any] = {}
    if args.config:
        base = json.loads(Path(args.config).read_text())
    papers = {"mmn": TrainConfig.mmn_paper, "manet": TrainConfig.manet_paper}
    if getattr(args, "recipe", None) in papers:
        base = {**papers[args.recipe]().to_dict(), **base}
    cfg = TrainConfig.from_dict(base)
    changes: dict[str, Any] = {}
    for name in ("family", "preset"):
        if getattr(args, name, None) is not None:
            changes[name] = getattr(args, name)
    overrides = dict(cfg.model_overrides)
    overrides.update(dict(_parse_override(o) for o in args.overrides))
    changes["model_overrides"] = overrides
    for name in ("epochs", "batch_size", "workers", "seed", "max_steps_per_epoch", "val_every", "lr",
                 "weight_decay", "warmup_epochs", "grad_clip", "device"):
        v = getattr(args, name)
        if v is not None:
            changes[name] = v
    if args.backbone_weights:
        changes["backbone_weights"] = args.backbone_weights
    if args.family_files:
        files = dict(cfg.family_files)
        for text in args.family_files:
            name, sep, path = text.partition("=")
            if not sep or not name or not path:
                raise ValueError(f"--family-file expects NAME=PATH, got {text!r}")
            files[name.strip()] = path
        changes["family_files"] = files
    if getattr(args, "init", None):
        changes["init_checkpoint"] = args.init
        if getattr(args, "family", None) is None:
            changes["family"] = load_checkpoint(args.init).family.name
    if getattr(args, "freeze", None):
        changes["freeze"] = args.freeze
    if args.compile:
        changes["compile"] = True
    if args.no_amp:
        changes["amp"] = False
    if args.freeze_bn:
        changes["freeze_bn"] = True
    if args.sync_bn:
        changes["sync_batchnorm"] = True
    return TrainConfig.from_dict({**cfg.to_dict(), **changes})


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rank = _dist_env()[0]
    try:
        cfg = config_from_args(args)
        model_config(cfg, 2)  # fail fast on a bad preset or override
        for name, path in cfg.family_files.items():
            if not Path(path).is_file():
                raise FileNotFoundError(f"--family-file {name}={path}: file not found")
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out} is an existing file, not a folder")

        def report(row: dict[str, Any]) -> None:
            if not args.quiet:
                val = f" val top1 {row['val_top1']:.4f} F1_mean {row['val_f1_mean']:.4f}" if "val_top1" in row else ""
                print(f"epoch {row['epoch']}: loss {row['train_loss']:.4f} train top1 {row['train_top1']:.4f} "
                      f"lr {row['lr']:.5f} {row['clips_per_s']:.1f} clips/s{val}", file=sys.stderr)

        best = train(cfg, args.train, out, val_dir=args.val, resume=args.resume, on_epoch=report)
    except (FileNotFoundError, ValueError, CheckpointError) as exc:
        print(f"recipes.train: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    if rank == 0:
        for name in (LATEST, BEST, STATE, LOG_CSV, LOG_PNG):
            if (out / name).is_file():
                print(f"wrote {out / name}")
        print(f"best checkpoint: {best}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
