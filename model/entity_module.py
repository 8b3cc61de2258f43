"""Spatial Entity Module (paper III-B, Eqs. 1-2) and the entity encoders of the modality ablations.

Paper modality ("rgb_pose")::

    keypoints [B, T, J, 3] --entity_boxes (Eq. 1)--> boxes [B, T, K, 4] (pixels), conf [B, T, K]
    maps [B, T, C, h, w]  --ROIAlign(scale 1/32, aligned)--> [B*T, K, C, s, s]
                          --E_i: depthwise 3x3 + pointwise 1x1 to D, per entity--> [B*T, K, D, s, s]
                          --average over s x s, + entity embedding p_i--> X [B, T, K, D]

Box sources (``MicroDualNetConfig.entity_source``, Table III):

- "keypoints": Eq. 1 boxes of the entity definition (paper);
- "fixed_regions": fixed body regions of the frame (MANet-style, :data:`FIXED_REGIONS`);
- "center_crop": every entity reads the same central box (``center_crop_fraction`` of width and
  height);
- "global" (no SEM, :class:`GlobalEntityEncoder`): one entity per frame, the projected GAP feature.

Entity confidences (the MAC weights of Eq. 17) come from the keypoints whenever the model is given
them ("rgb_pose"), whatever the box source; the "rgb" modality uses no keypoints and every
confidence is 1.

"pose" ablation: no CNN. Each entity's feature comes from its own joints' normalised coordinates,
frame-to-frame motion and confidence, through an entity-specific MLP to D, + p_i.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import roi_align

from model.taxonomy import NUM_BODY25, EntityLayout
from model.entities import EntityDefinition

__all__ = ["SpatialEntityModule", "PoseEntityEncoder", "GlobalEntityEncoder", "fixed_region_boxes",
           "center_crop_boxes", "FIXED_REGIONS", "BOX_SOURCES"]

BOX_SOURCES = ("keypoints", "fixed_regions", "center_crop")

FIXED_REGIONS: dict[str, tuple[float, float, float, float]] = {
    # (x1, y1, x2, y2) as fractions of width / height, for a seated person facing the camera and
    # roughly centred (the MA-52 interview framing). "left" is the person's left = image right.
    "head": (0.30, 0.00, 0.70, 0.35),
    "face": (0.35, 0.05, 0.65, 0.30),
    "left hand": (0.50, 0.35, 1.00, 0.80),
    "right hand": (0.00, 0.35, 0.50, 0.80),
    "torso": (0.25, 0.25, 0.75, 0.65),
    "lower body": (0.15, 0.55, 0.85, 1.00),
}


def fixed_region_boxes(layout: EntityLayout, batch: int, frames: int, height: int, width: int,
                       device: torch.device | None = None) -> torch.Tensor:
    """Boxes of :data:`FIXED_REGIONS` in pixels, [B, T, K, 4]."""
    frac = torch.tensor([FIXED_REGIONS[n] for n in layout.names], dtype=torch.float32, device=device)
    scale = torch.tensor([width, height, width, height], dtype=torch.float32, device=device)
    return (frac * scale).expand(batch, frames, -1, -1).clone()


def center_crop_boxes(num_entities: int, batch: int, frames: int, height: int, width: int, fraction: float = 0.5,
                      device: torch.device | None = None) -> torch.Tensor:
    """The same central box for every entity, [B, T, K, 4] in pixels (Table III "Center Crop").

    The box spans ``fraction`` of the width and of the height, centred.
    """
    lo, hi = (1 - fraction) / 2, (1 + fraction) / 2
    box = torch.tensor([lo * width, lo * height, hi * width, hi * height], dtype=torch.float32, device=device)
    return box.expand(batch, frames, num_entities, 4).clone()


class SpatialEntityModule(nn.Module):
    """ROIAlign entity features on the stride-32 maps, refined per entity to D (Eq. 2).

    E_i of all K entities run as one grouped convolution: the K ROI crops are stacked along
    channels ([N, K*C, s, s]), the depthwise conv has K*C groups and the pointwise conv K groups,
    which is exactly K independent depthwise-separable blocks without a Python loop.
    """

    def __init__(self, layout: EntityLayout, in_channels: int, dim: int, *, roi_size: int = 3,
                 sampling_ratio: int = 2, feature_stride: int = 32, definition: EntityDefinition | None = None,
                 box_source: str = "keypoints", keypoint_confidence: bool = True,
                 center_crop_fraction: float = 0.5) -> None:
        super().__init__()
        self.layout = layout
        k = layout.num_entities
        self.num_entities, self.in_channels, self.dim = k, in_channels, dim
        self.roi_size, self.sampling_ratio = roi_size, sampling_ratio
        self.spatial_scale = 1.0 / feature_stride
        self.definition = definition or EntityDefinition.from_layout(layout)
        if self.definition.names != layout.names:
            raise ValueError(f"entity definition {self.definition.names} does not match layout {layout.names}")
        if box_source not in BOX_SOURCES:
            raise ValueError(f"box_source must be one of {BOX_SOURCES}, got {box_source!r}")
        self.box_source = box_source
        self.keypoint_confidence = keypoint_confidence or box_source == "keypoints"
        self.center_crop_fraction = center_crop_fraction
        self.refine = nn.Sequential(
            nn.Conv2d(k * in_channels, k * in_channels, 3, padding=1, groups=k * in_channels, bias=False),
            nn.BatchNorm2d(k * in_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(k * in_channels, k * dim, 1, groups=k, bias=False),
            nn.BatchNorm2d(k * dim),
            nn.ReLU(inplace=True),
        )
        self.entity_embed = nn.Parameter(torch.empty(k, dim))
        nn.init.trunc_normal_(self.entity_embed, std=0.02)

    def boxes(self, keypoints: torch.Tensor | None, batch: int, frames: int, height: int,
              width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Entity boxes [B, T, K, 4] in pixels and confidences [B, T, K] (module docstring).

        Keypoints are needed for "keypoints" boxes and, with ``keypoint_confidence``, for the
        confidences of the other box sources; otherwise they are ignored.
        """
        eb = None
        if self.keypoint_confidence:
            if keypoints is None:
                raise ValueError("this model uses keypoints (boxes or entity confidences); pass keypoints [B, T, J, 3]")
            with torch.no_grad():
                eb = self.definition.boxes(keypoints.float(), (width, height))
        if self.box_source == "keypoints":
            return eb.boxes, eb.confidence
        if self.box_source == "fixed_regions":
            boxes = fixed_region_boxes(self.layout, batch, frames, height, width, device)
        else:
            boxes = center_crop_boxes(self.num_entities, batch, frames, height, width, self.center_crop_fraction,
                                      device)
        conf = eb.confidence.to(device) if eb is not None else torch.ones(boxes.shape[:-1], device=device)
        return boxes, conf

    def roi_crops(self, maps: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """ROIAlign of every entity box on its own frame's map.

        ::

            maps [B, T, C, h, w], boxes [B, T, K, 4] (x1, y1, x2, y2 in pixels of the input frames,
            continuous: pixel i spans [i, i+1)) -> crops [B, T, K, C, s, s]

        ROI (b, t, k) reads frame b*T + t of the folded maps; ``spatial_scale`` = 1/32 and
        ``aligned=True`` put feature cell (i, j) over pixels [32j, 32j+32) x [32i, 32i+32).
        """
        b, t, c, h, w = maps.shape
        if boxes.shape != (b, t, self.num_entities, 4):
            raise ValueError(f"boxes must be [B, T, K, 4] = {(b, t, self.num_entities, 4)}, got {tuple(boxes.shape)}")
        k = self.num_entities
        flat_maps = maps.flatten(0, 1)
        frame_idx = torch.arange(b * t, device=maps.device, dtype=torch.float32).repeat_interleave(k)
        rois = torch.cat([frame_idx[:, None], boxes.reshape(-1, 4).float().to(maps.device)], dim=1)
        # ROIAlign in float32: box corners in bf16 would be off by up to a pixel at 224.
        crops = roi_align(flat_maps.float(), rois, self.roi_size,
                          spatial_scale=self.spatial_scale, sampling_ratio=self.sampling_ratio,
                          aligned=True).to(flat_maps.dtype)  # [B*T*K, C, s, s]
        return crops.reshape(b, t, k, c, self.roi_size, self.roi_size)

    def forward(self, maps: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """maps [B, T, C, h, w], boxes [B, T, K, 4] (pixels of the input frames) -> X [B, T, K, D]."""
        b, t, c = maps.shape[:3]
        k = self.num_entities
        crops = self.roi_crops(maps, boxes).reshape(b * t, k * c, self.roi_size, self.roi_size)
        feats = self.refine(crops).mean(dim=(-2, -1))  # [B*T, K*D]
        return feats.reshape(b, t, k, self.dim) + self.entity_embed


class PoseEntityEncoder(nn.Module):
    """Entity features from keypoints alone (the "pose" modality ablation).

    For entity i, its joints (those of the entity definition, so BODY_25 joints only for a
    "body25" definition whatever the input carries) contribute 5 numbers each per frame: x and y
    normalised to [-1, 1] by the frame size, their change since the previous frame (motion; 0 at
    the first frame) and the confidence. Joints below the threshold are zeroed, so a missing joint
    reads as "absent", not as a point at the image corner. An entity-specific two-layer MLP maps
    the [J_i * 5] vector to D; the learnable entity embedding p_i is added as in Eq. 2.

    ::

        keypoints [B, T, J, 3] -> per entity [B, T, J_i*5] -> MLP_i -> [B, T, D] -> X [B, T, K, D]
    """

    def __init__(self, layout: EntityLayout, dim: int, *, definition: EntityDefinition | None = None) -> None:
        super().__init__()
        definition = definition or EntityDefinition.from_layout(layout)
        self.layout, self.dim, self.threshold = layout, dim, definition.threshold
        self.joint_sets = [sorted(e.joints) for e in definition.entity_layout.entities]
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(len(js) * 5, dim), nn.LayerNorm(dim), nn.GELU(), nn.Linear(dim, dim))
            for js in self.joint_sets
        )
        self.entity_embed = nn.Parameter(torch.empty(layout.num_entities, dim))
        nn.init.trunc_normal_(self.entity_embed, std=0.02)

    def forward(self, keypoints: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """keypoints [B, T, J, 3] (pixels) -> X [B, T, K, D]."""
        kp = keypoints.float()
        j = kp.shape[-2]
        if j < NUM_BODY25:
            raise ValueError(f"keypoints need at least {NUM_BODY25} joints, got {j}")
        scale = kp.new_tensor([width, height])
        xy = kp[..., :2] / scale * 2 - 1
        conf = kp[..., 2:3].clamp(0, 1)
        visible = (conf > self.threshold).float()
        xy = xy * visible
        motion = torch.cat([torch.zeros_like(xy[:, :1]), xy[:, 1:] - xy[:, :-1]], dim=1)
        motion = motion * visible * torch.cat([torch.zeros_like(visible[:, :1]), visible[:, :-1]], dim=1)
        per_joint = torch.cat([xy, motion, conf * visible], dim=-1)  # [B, T, J, 5]
        if j < max(max(js) for js in self.joint_sets) + 1:
            # BODY_25 input: the extra points are absent; their features are zero.
            pad = per_joint.new_zeros(*per_joint.shape[:2], max(max(js) for js in self.joint_sets) + 1 - j, 5)
            per_joint = torch.cat([per_joint, pad], dim=2)
        out = [mlp(per_joint[:, :, js].flatten(-2)) for mlp, js in zip(self.mlps, self.joint_sets)]
        return torch.stack(out, dim=2) + self.entity_embed


class GlobalEntityEncoder(nn.Module):
    """No SEM (Table II "+ TS Only"): one entity per frame, the frame's projected GAP feature.

    ::

        pooled [B, T, C] -> Linear(C, D) -> [B, T, 1, D] + p (one learnable embedding [1, D])
    """

    def __init__(self, in_channels: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_channels, dim)
        self.entity_embed = nn.Parameter(torch.empty(1, dim))
        nn.init.trunc_normal_(self.entity_embed, std=0.02)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.proj(pooled).unsqueeze(2) + self.entity_embed
