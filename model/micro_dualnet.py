"""Micro-DualNet: keypoint-guided entities, dual ST/TS paths, entity-level routing (paper III).

::

    frames [B, T, 3, H, W]      (ImageNet-normalised RGB)
    keypoints [B, T, J, 3]      (x, y in pixels of `frames`, confidence; J = 25 or 33)
      |
      |-- TSM ResNet --> maps [B, T, 2048, H/32, W/32], pooled [B, T, 2048]
      |-- Eq. 1: entity boxes [B, T, K, 4], entity confidence c [B, T, K]
      |-- SEM (Eq. 2): ROIAlign + E_i + p_i --> X [B, T, K, D]
      |
      |-- ST path: Temporal-T(Spatial-T(X) + MLP_s(X))  --> x_st [B, T, K, D]   (Eqs. 9-10)
      |-- TS path: Spatial-T(Temporal-T(X) + MLP_t(X))  --> x_ts [B, T, K, D]   (Eqs. 11-12)
      |-- routing (Eqs. 13-15) --> alpha [B, T, K, 2], fused [B, T, K, D]
      |
      |-- f_entity = mean over T, K of fused            [B, D]    (Eq. 19)
      |-- f_cnn = mean over T of pooled, Linear -> D    [B, D]    (GAP, projected: see config)
      '-- classifier([f_cnn; f_entity]): 2D -> 256 -GELU-Dropout(0.5)-> C   --> logits [B, C]

The MAC loss (:mod:`model.losses`) uses ``x_st``, ``x_ts`` and ``entity_conf`` from the output.
Ablations (:class:`model.config.MicroDualNetConfig`, every row of the paper's Tables I-IV in
:data:`recipes.paper_rows.PAPER_ROWS`): ``paths`` ("dual", "st", "ts"), ``fusion`` ("routing", "average",
"concat"), ``use_mac``, ``mac_granularity``, ``mac_confidence_weighting``, ``modality`` ("rgb_pose",
"rgb", "pose"), ``entity_source`` ("keypoints", "fixed_regions", "center_crop", "global"),
``aggregation`` ("dual_path", "avg_pool", "max_pool", "lstm", "temporal_transformer", "none").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model.backbone import TSMResNet
from model.config import MicroDualNetConfig
from model.aggregation import EntityAggregation
from model.entity_module import GlobalEntityEncoder, PoseEntityEncoder, SpatialEntityModule
from model.losses import LossTerms, micro_dualnet_loss
from model.routing import AverageFusion, ConcatFusion, EntityRouter
from model.taxonomy import Entity, EntityLayout
from model.transformers import SpatialTransformer, TemporalTransformer
from model.weights import BackboneWeights, load_backbone_weights
from model.entities import EntityDefinition

__all__ = [
    "MicroDualNet", "MicroDualNetOutput", "DualPath",
    "micro_dualnet", "micro_dualnet_ma52", "micro_dualnet_ma52_16f", "micro_dualnet_imigue", "micro_dualnet_tiny",
]


from model.preprocessing import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402  (re-exported for callers)


@dataclass
class MicroDualNetOutput:
    """What :class:`MicroDualNet` returns.

    Attributes
    ----------
    logits : [B, C]
    x_st, x_ts : [B, T, K, D] or None
        Raw path outputs before routing (None for the path a single-path ablation lacks, and both
        None for the aggregation ablations).
    routing : [B, T, K, 2] or None
        Fusion weights (ST, TS), summing to 1; one-hot for single-path models, 0.5 for "average".
        None where there are no weights: "concat" fusion, the aggregation ablations, the TSM baseline.
    entity_conf : [B, T, K] or None
        Entity keypoint confidence (the MAC weights of Eq. 17); 1 without keypoints ("rgb" modality,
        "global" entity). None for the TSM baseline (no entities).
    boxes : [B, T, K, 4] or None
        Entity boxes in pixels of the input frames (None for the "pose" modality, the "global"
        entity and the TSM baseline).
    fused : [B, T, K, D] or None
        Entity features entering the mean of Eq. 19 (routed features for the dual paths). None for
        the TSM baseline.
    """

    logits: torch.Tensor
    x_st: torch.Tensor | None
    x_ts: torch.Tensor | None
    routing: torch.Tensor | None
    entity_conf: torch.Tensor | None
    boxes: torch.Tensor | None
    fused: torch.Tensor | None


def _residual_mlp(dim: int, hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class DualPath(nn.Module):
    """The ST and TS paths (Eqs. 9-12) and their fusion (Eqs. 13-15), on entity features.

    ::

        X [B, T, K, D] -> (fused [B, T, K, D], x_st | None, x_ts | None, alpha [B, T, K, 2])

    With ``share_path_transformers`` both paths call the same Spatial-T and Temporal-T; otherwise
    each path has its own pair (default). Single-path ablations build only their own path.
    """

    def __init__(self, cfg: MicroDualNetConfig, layout: EntityLayout | None = None) -> None:
        super().__init__()
        d, layout = cfg.embed_dim, layout or cfg.layout
        kw = dict(num_layers=cfg.num_layers, num_heads=cfg.num_heads, ffn_dim=cfg.ffn_dim, dropout=cfg.dropout,
                  attention_dropout=cfg.attention_dropout)
        self.paths = cfg.paths
        self.share = cfg.share_path_transformers
        if self.paths in ("dual", "st"):
            self.st_spatial = SpatialTransformer(layout, d, **kw)
            self.st_temporal = TemporalTransformer(d, **kw)
            self.st_mlp = _residual_mlp(d, cfg.residual_mlp_hidden)  # MLP_s
        if self.paths in ("dual", "ts"):
            if self.share and self.paths == "dual":
                self.ts_spatial, self.ts_temporal = self.st_spatial, self.st_temporal
            else:
                self.ts_spatial = SpatialTransformer(layout, d, **kw)
                self.ts_temporal = TemporalTransformer(d, **kw)
            self.ts_mlp = _residual_mlp(d, cfg.residual_mlp_hidden)  # MLP_t
        if self.paths == "dual":
            if cfg.fusion == "routing":
                self.fusion = EntityRouter(layout.num_entities, d, hidden=cfg.routing_hidden,
                                           dropout=cfg.routing_dropout, temperature=cfg.routing_temperature)
            elif cfg.fusion == "concat":
                self.fusion = ConcatFusion(d)
            else:
                self.fusion = AverageFusion()

    def st(self, x: torch.Tensor) -> torch.Tensor:
        return self.st_temporal(self.st_spatial(x) + self.st_mlp(x))

    def ts(self, x: torch.Tensor) -> torch.Tensor:
        return self.ts_spatial(self.ts_temporal(x) + self.ts_mlp(x))

    def forward(self, x: torch.Tensor):
        if self.paths == "dual":
            x_st, x_ts = self.st(x), self.ts(x)
            fused, alpha = self.fusion(x_st, x_ts)
            return fused, x_st, x_ts, alpha
        one_hot = x.new_zeros((*x.shape[:-1], 2), dtype=torch.float32)
        if self.paths == "st":
            x_st = self.st(x)
            one_hot[..., 0] = 1
            return x_st, x_st, None, one_hot
        x_ts = self.ts(x)
        one_hot[..., 1] = 1
        return x_ts, None, x_ts, one_hot


class MicroDualNet(nn.Module):
    """The full recognition model. ``MicroDualNet(cfg)(frames, keypoints) -> MicroDualNetOutput``.

    ``frames`` may be None for the "pose" modality and ``keypoints`` None for the "rgb" modality.
    Frames are expected ImageNet-normalised (:data:`IMAGENET_MEAN`, :data:`IMAGENET_STD`).
    """

    def __init__(self, cfg: MicroDualNetConfig | None = None, *, entities: EntityDefinition | None = None) -> None:
        super().__init__()
        cfg = cfg or MicroDualNetConfig()
        self.cfg = cfg
        # The entity definition (Eq. 1 joints, keypoint format, theta): the config's unless given
        # (a checkpoint passes the one it was trained with, so its boxes cannot drift with the code).
        self.entity_definition = entities or cfg.entity_definition
        if self.entity_definition.names != cfg.layout.names:
            raise ValueError(f"entity definition {self.entity_definition.names} does not match the config's "
                             f"layout {cfg.layout.names}")
        d = cfg.embed_dim
        self.uses_rgb = cfg.modality in ("rgb_pose", "rgb")
        self.uses_entities = cfg.aggregation != "none"
        self.uses_keypoints = cfg.modality == "pose" or (cfg.modality == "rgb_pose" and self.uses_entities
                                                          and cfg.boxes_from != "global")
        if self.uses_rgb:
            self.backbone = TSMResNet(cfg.backbone, shift_div=cfg.tsm_shift_div, block_interval=cfg.tsm_interval,
                                      width_per_group=cfg.backbone_width_per_group)
            c = self.backbone.out_channels
            if self.uses_entities and cfg.boxes_from == "global":
                self.global_entity = GlobalEntityEncoder(c, d)
            elif self.uses_entities:
                self.entities = SpatialEntityModule(
                    cfg.layout, c, d, roi_size=cfg.roi_size, sampling_ratio=cfg.roi_sampling_ratio,
                    feature_stride=cfg.feature_stride, definition=self.entity_definition,
                    box_source=cfg.boxes_from, keypoint_confidence=cfg.modality == "rgb_pose",
                    center_crop_fraction=cfg.center_crop_fraction)
            self.global_proj = nn.Linear(c, d) if cfg.project_global else nn.Identity()
        else:
            self.pose_entities = PoseEntityEncoder(cfg.layout, d, definition=self.entity_definition)
        # The layout the paths see: the whole frame as one entity for entity_source="global".
        path_layout = EntityLayout("global", (Entity("frame", ()),)) if cfg.boxes_from == "global" else cfg.layout
        if cfg.aggregation == "dual_path":
            self.dual_path = DualPath(cfg, path_layout)
        elif self.uses_entities:
            self.aggregation = EntityAggregation(
                cfg.aggregation, d, num_layers=cfg.num_layers, num_heads=cfg.num_heads, ffn_dim=cfg.ffn_dim,
                dropout=cfg.dropout, attention_dropout=cfg.attention_dropout)
        self.classifier = nn.Sequential(
            nn.Linear(cfg.classifier_input_dim, cfg.classifier_hidden), nn.GELU(), nn.Dropout(cfg.classifier_dropout),
            nn.Linear(cfg.classifier_hidden, cfg.num_classes))

    @property
    def num_entities(self) -> int:
        return self.cfg.num_entities

    def entity_features(self, frames: torch.Tensor | None, keypoints: torch.Tensor | None):
        """-> (X [B, T, K, D] | None, conf [B, T, K] | None, boxes [B, T, K, 4] | None, f_cnn [B, C'] | None).

        X and conf are None for the TSM baseline (``aggregation="none"``), f_cnn for "pose".
        """
        if self.uses_rgb:
            if frames is None:
                raise ValueError(f"modality {self.cfg.modality!r} needs frames [B, T, 3, H, W]")
            b, t, _, h, w = frames.shape
            boxes = conf = None
            if hasattr(self, "entities"):
                boxes, conf = self.entities.boxes(keypoints, b, t, h, w, frames.device)
            maps, pooled = self.backbone(frames)
            f_cnn = self.global_proj(pooled.mean(dim=1))
            if hasattr(self, "entities"):
                x = self.entities(maps, boxes)
                return x, conf.to(x.device), boxes, f_cnn
            if hasattr(self, "global_entity"):
                x = self.global_entity(pooled)
                return x, x.new_ones(x.shape[:-1], dtype=torch.float32), None, f_cnn
            return None, None, None, f_cnn
        if keypoints is None:
            raise ValueError("modality 'pose' needs keypoints [B, T, J, 3]")
        if frames is not None:
            h, w = frames.shape[-2:]
        else:
            h, w = self.cfg.image_size
        # The entity confidences (MAC weights) still come from Eq. 1's grouping; the boxes are unused.
        with torch.no_grad():
            conf = self.entity_definition.boxes(keypoints.float(), (w, h)).confidence
        return self.pose_entities(keypoints, h, w), conf, None, None

    def forward(self, frames: torch.Tensor | None, keypoints: torch.Tensor | None = None) -> MicroDualNetOutput:
        x, conf, boxes, f_cnn = self.entity_features(frames, keypoints)
        x_st = x_ts = alpha = fused = None
        if x is None:  # TSM baseline: the classifier sees the GAP feature alone
            feat = f_cnn
        else:
            if hasattr(self, "dual_path"):
                fused, x_st, x_ts, alpha = self.dual_path(x)
                f_entity = fused.mean(dim=(1, 2))  # Eq. 19
            else:
                fused, f_entity = self.aggregation(x)
            feat = f_entity if f_cnn is None else torch.cat([f_cnn.to(f_entity.dtype), f_entity], dim=-1)  # Eq. 20
        return MicroDualNetOutput(logits=self.classifier(feat), x_st=x_st, x_ts=x_ts, routing=alpha,
                                  entity_conf=conf, boxes=boxes, fused=fused)

    def loss(self, output: MicroDualNetOutput, labels: torch.Tensor, **kwargs: Any) -> LossTerms:
        """Eq. 21 with this model's config (lambda, tau, MAC on/off)."""
        return micro_dualnet_loss(output, labels, mac_weight=self.cfg.mac_weight,
                                  mac_temperature=self.cfg.mac_temperature, use_mac=self.cfg.mac_active,
                                  mac_granularity=self.cfg.mac_granularity,
                                  confidence_weighting=self.cfg.mac_confidence_weighting, **kwargs)


# --------------------------------------------------------------------------------------------------
# Builders (keyword-only, weights are explicit local-file objects; nothing is downloaded)
# --------------------------------------------------------------------------------------------------


def micro_dualnet(*, config: MicroDualNetConfig | None = None,
                  backbone_weights: BackboneWeights | None = None, **overrides: Any) -> MicroDualNet:
    """Build a Micro-DualNet (fresh weights; a trained one comes from :func:`model.checkpoint.load_checkpoint`).

    Parameters
    ----------
    config : MicroDualNetConfig, optional
        Defaults to :meth:`MicroDualNetConfig.ma52`; ``overrides`` replace its fields.
    backbone_weights : model.weights.BackboneWeights, optional
        Local ImageNet / TSM / mmaction2 backbone weights to start from.
    """
    cfg = (config or MicroDualNetConfig.ma52())
    if overrides:
        cfg = cfg.replace(**overrides)
    model = MicroDualNet(cfg)
    if backbone_weights is not None:
        load_backbone_weights(model, backbone_weights)
    return model


def micro_dualnet_ma52(*, backbone_weights: BackboneWeights | None = None, **overrides: Any) -> MicroDualNet:
    """MA-52 setting: TSM ResNet-101, K=6, T=8, 52 classes."""
    return micro_dualnet(config=MicroDualNetConfig.ma52(**overrides), backbone_weights=backbone_weights)


def micro_dualnet_ma52_16f(*, backbone_weights: BackboneWeights | None = None, **overrides: Any) -> MicroDualNet:
    """MA-52 at 16 frames (the full model of the paper's ablation tables; window plan MA52_16F_PLAN)."""
    return micro_dualnet(config=MicroDualNetConfig.ma52_16f(**overrides), backbone_weights=backbone_weights)


def micro_dualnet_imigue(*, backbone_weights: BackboneWeights | None = None, **overrides: Any) -> MicroDualNet:
    """iMiGUE setting: TSM ResNet-101, K=5, T=16, 32 classes."""
    return micro_dualnet(config=MicroDualNetConfig.imigue(**overrides), backbone_weights=backbone_weights)


def micro_dualnet_tiny(**overrides: Any) -> MicroDualNet:
    """Toy-size model with the same architecture (tests, CPU demos)."""
    return micro_dualnet(config=MicroDualNetConfig.tiny(**overrides))

