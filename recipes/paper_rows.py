"""The Micro-DualNet paper's table rows (Tables I-IV, MA-52 columns) as configs.

A recipe, not part of the model: the rows say which :class:`model.config.MicroDualNetConfig` the
paper trained for each reported number, and ``top1`` is the number it reports, so a training run can
be compared with its row. ``model/`` holds the configurable network; this table lives above it the
way torchvision keeps its training references apart from its models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from model.config import MicroDualNetConfig
from model.windows import WindowPlan, ma52_plan

__all__ = ["PaperRow", "PAPER_ROWS", "paper_row_config", "MMNRow", "MMN_ROWS"]


@dataclass(frozen=True)
class PaperRow:
    """One row of the paper's Tables I-IV: where it is, what it reports, and the config that builds it.

    ``overrides`` apply to ``base`` ("ma52_16f": every "Ours"/full row of Tables II-IV is the
    16-frame model; "ma52" for Table I, whose setting IV-B gives as 8 frames).
    """

    key: str
    table: str
    label: str
    top1: float
    """MA-52 action Top-1 (%) the paper reports for the row."""
    overrides: dict[str, Any]
    base: str = "ma52_16f"
    note: str = ""

    def config(self, **extra: Any) -> "MicroDualNetConfig":
        """The row's config; ``extra`` (e.g. the tiny sizes) applies last."""
        preset = getattr(MicroDualNetConfig, self.base)
        return preset(**{**self.overrides, **extra})

    @property
    def plan(self) -> WindowPlan:
        """The window plan of the row's frame count (64 frames per window, :func:`model.windows.ma52_plan`)."""
        return ma52_plan(self.config().num_frames)


def _row(key, table, label, top1, base="ma52_16f", note="", **overrides) -> PaperRow:
    return PaperRow(key, table, label, top1, overrides, base, note)


PAPER_ROWS: dict[str, PaperRow] = {r.key: r for r in (
    # Table I (MA-52 part): modality ablation.
    _row("I.pose", "I", "Ours (Pose Only)", 61.25, base="ma52", modality="pose"),
    _row("I.rgb", "I", "Ours (RGB Only)", 62.87, base="ma52", modality="rgb",
         note="no keypoints anywhere: fixed-region boxes, every entity confidence 1"),
    _row("I.full", "I", "Ours (Pose + RGB)", 65.10, base="ma52"),
    # Table II: components.
    _row("II.tsm", "II", "Baseline (TSM)", 52.15, aggregation="none"),
    _row("II.ts_only", "II", "+ TS Only", 55.96, entity_source="global", paths="ts",
         note="no SEM: the TS path over one entity per frame, the projected GAP feature"),
    _row("II.sem", "II", "+ SEM", 59.21, paths="ts"),
    _row("II.dual", "II", "+ Dual Path", 62.14, fusion="average", use_mac=False),
    _row("II.mac", "II", "+ MAC Loss", 64.40, fusion="average"),
    _row("II.routing", "II", "+ Routing - MAC", 63.09, use_mac=False),
    _row("II.full", "II", "Full Model", 65.10),
    # Table III: spatial entity extraction.
    _row("III.center", "III", "Center Crop", 58.3, entity_source="center_crop"),
    _row("III.fixed", "III", "Fixed Body Regions", 61.3, entity_source="fixed_regions",
         note="keypoints still weight MAC (unlike Table I's RGB-only row)"),
    _row("III.keypoints", "III", "Keypoint-Guided (Ours)", 65.1),
    _row("III.no_conf", "III", "w/o confidence weighting", 63.1, mac_confidence_weighting=False),
    _row("III.no_lower", "III", "w/ 4 entities (no lower body)", 61.4, entity_layout="imigue",
         note="the label says 4 entities, removing the lower body from 6 leaves 5 (= iMiGUE's layout); "
              "entity_names gives a K=4 variant"),
    # Table IV: frames, temporal aggregation, MAC granularity.
    _row("IV.4f", "IV", "4 frames", 59.8, num_frames=4),
    _row("IV.8f", "IV", "8 frames", 63.2, num_frames=8),
    _row("IV.16f", "IV", "16 frames", 65.1),
    _row("IV.32f", "IV", "32 frames", 64.7, num_frames=32),
    _row("IV.avg", "IV", "Average Pooling", 61.4, aggregation="avg_pool"),
    _row("IV.max", "IV", "Max Pooling", 60.2, aggregation="max_pool"),
    _row("IV.lstm", "IV", "LSTM", 62.8, aggregation="lstm"),
    _row("IV.temporal", "IV", "Temporal Transformer", 63.5, aggregation="temporal_transformer"),
    _row("IV.ours", "IV", "(Ours)", 65.1),
    _row("IV.frame_mac", "IV", "Frame-level MAC", 62.7, mac_granularity="frame"),
    _row("IV.video_mac", "IV", "Video-level MAC (Ours)", 65.1, mac_granularity="video"),
)}
"""Every MA-52 row of Tables I-IV (key -> :class:`PaperRow`); docs/model.md has the same table."""


def paper_row_config(key: str, **extra: Any) -> MicroDualNetConfig:
    """Config of a paper table row, e.g. ``paper_row_config("II.sem", **tiny_sizes)``."""
    if key not in PAPER_ROWS:
        raise KeyError(f"unknown paper row {key!r}; one of {sorted(PAPER_ROWS)}")
    return PAPER_ROWS[key].config(**extra)


# --------------------------------------------------------------------------------------------------
# MMN ("Motion Matters"): its ablation tables as configs
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MMNRow:
    """One MMN ablation row: what it switches (``overrides`` on :meth:`model.mmn.MMNConfig.ma52`) and the
    MA-52 numbers the paper reports for it, where known here.

    The paper's text was not available to this work (only its abstract, DESIGN.md section 11's numbers and
    its public code): ``top1`` / ``f1_mean`` are given for the rows whose numbers DESIGN.md records and are
    None otherwise, to be filled in from Tables 3-5 by whoever has the paper. The rows are the ablations
    its method defines (components, positional embedding, streams); their table labels are ours.
    """

    key: str
    table: str
    label: str
    overrides: dict[str, Any]
    top1: float | None = None
    f1_mean: float | None = None
    note: str = ""

    def config(self, **extra: Any):
        from model.mmn import MMNConfig

        return MMNConfig.ma52(**{**self.overrides, **extra})


def _mrow(key, table, label, top1=None, f1_mean=None, note="", **overrides) -> MMNRow:
    return MMNRow(key, table, label, overrides, top1, f1_mean, note)


MMN_ROWS: dict[str, MMNRow] = {r.key: r for r in (
    # Table 3: components (MSM, MTM, motion consistency learning), joint stream.
    _mrow("3.baseline", "3", "baseline (no MSM, no MTM, last stage only)", use_msm=False, use_mtm=False,
          fusion="last", scale_input="hierarchical"),
    _mrow("3.msm", "3", "+ MSM", use_mtm=False, fusion="last", scale_input="hierarchical"),
    _mrow("3.mtm", "3", "+ MTM", use_msm=False, fusion="last", scale_input="hierarchical"),
    _mrow("3.msm_mtm", "3", "+ MSM + MTM", fusion="last", scale_input="hierarchical"),
    _mrow("3.full", "3", "+ MSM + MTM + motion consistency learning (MMN, joint)", top1=61.33),
    # Table 4: positional embedding.
    _mrow("4.none", "4", "no positional embedding", positional="none"),
    _mrow("4.joint", "4", "learnable joint embedding only", positional="joint"),
    _mrow("4.time", "4", "sinusoidal time embedding only", positional="time"),
    _mrow("4.stpe", "4", "skeletal-temporal (time x joint) embedding (MMN)", top1=61.33),
    # Table 5: streams and score fusion.
    _mrow("5.joint", "5", "joint stream", top1=61.33, streams=("joint",)),
    _mrow("5.bone", "5", "bone stream", streams=("bone",)),
    _mrow("5.2s", "5", "joint + bone (2S score fusion)", top1=62.71, f1_mean=65.34, streams=("joint", "bone")),
)}
"""MMN's ablations (key -> :class:`MMNRow`); docs/model.md has the same table."""
