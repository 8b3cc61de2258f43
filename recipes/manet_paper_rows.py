"""The MA-52 paper's MANet rows (Tables II-V, ``../shared/papers/ma52-manet.txt``) as configs, and its
training settings (V-B).

A recipe, not part of the model (like :mod:`recipes.paper_rows` for Micro-DualNet): each row says
which :class:`model.manet.MANetConfig` the paper trained for the numbers it reports, and carries all
eight reported metrics so that a training run can be compared with its row. Tables VI-VII (emotion
recognition on MA-52-Pro, a multi-label MANet-based two-branch network) are another task and dataset
and are not rows here.

Metrics (percent, MA-52 test set; "fine" = the 52 actions, "coarse" = the 7 body parts):
``f1_mean`` (Eq. 6, the mean of the four F1 values), ``f1_macro_coarse``, ``f1_macro_fine``,
``f1_micro_coarse``, ``f1_micro_fine``, ``top1_coarse``, ``top1_fine``, ``top5_fine``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from model.manet import MANetConfig
from model.windows import WindowPlan, ma52_plan

__all__ = ["MANetPaperRow", "MANET_PAPER_ROWS", "manet_row_config", "MANetTrainingSettings", "MANET_TRAINING",
           "METRICS"]

METRICS = ("f1_mean", "f1_macro_coarse", "f1_macro_fine", "f1_micro_coarse", "f1_micro_fine", "top1_coarse",
           "top1_fine", "top5_fine")


@dataclass(frozen=True)
class MANetPaperRow:
    """One MANet row of the paper's Tables II-V: where it is, what it reports, the config that builds it."""

    key: str
    table: str
    label: str
    metrics: dict[str, float]
    """The eight reported numbers (:data:`METRICS`), in percent, as printed."""
    overrides: dict[str, Any]
    note: str = ""

    @property
    def top1(self) -> float:
        """MA-52 action (fine) Top-1, the number :mod:`recipes.paper_rows` reports for Micro-DualNet."""
        return self.metrics["top1_fine"]

    def config(self, **extra: Any) -> MANetConfig:
        """The row's config; ``extra`` (e.g. the tiny sizes) applies last."""
        return MANetConfig.ma52(**{**self.overrides, **extra})

    @property
    def plan(self) -> WindowPlan:
        """The window plan of the row's frame count (64 frames per window, :func:`model.windows.ma52_plan`)."""
        return ma52_plan(self.config().num_frames)


def _row(key: str, table: str, label: str, values: tuple[float, ...], note: str = "", **overrides: Any) -> MANetPaperRow:
    if len(values) != len(METRICS):
        raise ValueError(f"{key}: {len(values)} values for {len(METRICS)} metrics")
    return MANetPaperRow(key, table, label, dict(zip(METRICS, values)), overrides, note)


# Values in METRICS order: F1mean, F1macro coarse, F1macro fine, F1micro coarse, F1micro fine,
# Acc-Top1 coarse, Acc-Top1 fine, Acc-Top5 fine.
_FULL = (65.59, 72.87, 49.22, 78.95, 61.33, 78.95, 61.33, 88.83)
_NO_EMB = (63.55, 70.76, 47.97, 76.94, 58.54, 76.94, 58.54, 89.12)

MANET_PAPER_ROWS: dict[str, MANetPaperRow] = {r.key: r for r in (
    # Table II: main comparison, the MANet (Ours) column.
    _row("II.manet", "II", "MANet (Ours)", _FULL),
    # Table III: frames sampled per video.
    _row("III.T4", "III", "T=4", (61.20, 69.22, 45.72, 75.30, 54.57, 75.30, 54.57, 87.54), num_frames=4),
    _row("III.T8", "III", "T=8", _FULL),
    _row("III.T16", "III", "T=16", (64.66, 71.77, 47.78, 78.32, 60.76, 78.32, 60.76, 88.95), num_frames=16),
    # Table IV: alpha of Eq. 3.
    _row("IV.alpha0", "IV", "alpha=0", _NO_EMB, embedding_weight=0.0,
         note="alpha = 0 removes the embedding loss: the same numbers as Table V 'w/o emb'"),
    _row("IV.alpha0.1", "IV", "alpha=0.1", (63.65, 70.70, 48.38, 77.16, 58.80, 77.17, 58.80, 88.36),
         embedding_weight=0.1,
         note="coarse Acc-Top1 77.17 vs coarse F1micro 77.16: equal by definition for single-label "
              "prediction (and equal in every other row), so one of the two is a misprint; F1mean printed "
              "63.65, the mean of the row's four F1 values is 63.76 (Eq. 6)"),
    _row("IV.alpha1", "IV", "alpha=1", (63.77, 71.02, 48.10, 77.72, 58.50, 77.72, 58.50, 88.47), embedding_weight=1.0,
         note="F1mean printed 63.77; the mean of the row's four F1 values is 63.84 (Eq. 6)"),
    _row("IV.alpha2", "IV", "alpha=2", (62.51, 71.73, 47.56, 78.12, 58.96, 78.12, 58.96, 88.31), embedding_weight=2.0,
         note="F1mean printed 62.51; the mean of the row's four F1 values is 64.09 (Eq. 6)"),
    _row("IV.alpha5", "IV", "alpha=5", _FULL, embedding_weight=5.0),
    _row("IV.alpha10", "IV", "alpha=10", (64.11, 72.18, 47.16, 78.31, 59.71, 78.31, 59.71, 86.74),
         embedding_weight=10.0, note="F1mean printed 64.11; the mean of the row's four F1 values is 64.34 (Eq. 6)"),
    # Table V: components.
    _row("V.baseline", "V", "Baseline", (61.39, 70.98, 40.19, 77.64, 56.75, 77.64, 56.75, 87.47),
         use_se=False, embedding_weight=0.0,
         note="TSM ResNet-50 (V-C: 'baseline: TSM'); the same numbers as Table II's TSM column"),
    _row("V.no_se", "V", "w/o SE", (64.77, 72.22, 48.07, 78.48, 60.31, 78.48, 60.31, 89.01), use_se=False),
    _row("V.no_emb", "V", "w/o emb", _NO_EMB, embedding_weight=0.0),
    _row("V.manet", "V", "MANet", _FULL),
)}
"""Every MANet row of the paper's MA-52 Tables II-V (key -> :class:`MANetPaperRow`); docs/model.md has the table."""


def manet_row_config(key: str, **extra: Any) -> MANetConfig:
    """Config of a paper row, e.g. ``manet_row_config("V.no_se", **tiny_sizes)``."""
    if key not in MANET_PAPER_ROWS:
        raise KeyError(f"unknown MANet paper row {key!r}; one of {sorted(MANET_PAPER_ROWS)}")
    return MANET_PAPER_ROWS[key].config(**extra)


@dataclass(frozen=True)
class MANetTrainingSettings:
    """The paper's training settings for MA-52 (V-B), for a training recipe to read.

    SGD (lr 0.001, momentum 0.9, weight decay 1e-4), batch 10, 80 epochs, lr / 10 at epochs 30 and
    60. The backbone starts from ImageNet ResNet-50 weights (the authors' code: torchvision's; the
    paper does not say), loaded with :func:`model.weights.load_backbone_weights` (the SE gates keep
    their initialisation).
    """

    optimizer: str = "sgd"
    lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 1e-4
    batch_size: int = 10
    epochs: int = 80
    lr_milestones: tuple[int, ...] = (30, 60)
    lr_gamma: float = 0.1
    notes: dict[str, str] = field(default_factory=lambda: {
        "source": "MA-52 paper V-B",
        "frames": "T=8 frames sampled per video, resized to 224x224 (V-B)",
    })


MANET_TRAINING = MANetTrainingSettings()
