"""Horizontal flip of a clip with its keypoints, keeping person-left/person-right semantics.

Flipping the image makes the person's left hand appear where the right hand was. For labels and
entities to stay meaningful ("left hand" = the person's left), a flip

1. mirrors the frames along the width axis;
2. mirrors keypoint x: ``x -> W - x`` (default, "continuous" coordinates, where pixel i covers
   [i, i+1) and its centre is i + 0.5 - the convention of ROIAlign with ``aligned=True`` and of the
   entity boxes, which are clipped to [0, W]). With ``pixel_centers=True``, ``x -> W - 1 - x`` for
   coordinates whose integer values are pixel centres (e.g. raw OpenPose output); either way a
   joint lands on the mirror image of the pixel it was on. Joints with confidence 0 (not detected)
   keep their coordinates, so "missing" placeholders stay recognisable;
3. permutes the joints with :data:`model.taxonomy.KEYPOINT_FLIP_PERMUTATION` (LWrist <-> RWrist, ...).

Entities then follow automatically: the boxes computed from the flipped keypoints are the mirrored
boxes of the original with "left hand" and "right hand" swapped. Anything already per entity
(e.g. stored boxes or confidences, [..., K, ...]) is swapped with :func:`flip_entities`.

Shapes::

    frames    [..., 3, H, W]   (any leading dims, e.g. [T, 3, H, W] or [B, T, 3, H, W])
    keypoints [..., J, 3]      J = 25 or 33
"""

from __future__ import annotations

import torch

from model.taxonomy import KEYPOINT_FLIP_PERMUTATION, NUM_BODY25, EntityLayout

__all__ = ["hflip_frames", "hflip_keypoints", "hflip_boxes", "flip_entities", "hflip_clip", "RandomHorizontalFlip"]


def hflip_frames(frames: torch.Tensor) -> torch.Tensor:
    return frames.flip(-1)


def hflip_keypoints(keypoints: torch.Tensor, width: float, *, pixel_centers: bool = False) -> torch.Tensor:
    """Mirror x and swap left/right joints. keypoints [..., J, 3] -> [..., J, 3]."""
    j = keypoints.shape[-2]
    if j not in (NUM_BODY25, len(KEYPOINT_FLIP_PERMUTATION)):
        raise ValueError(f"expected J = {NUM_BODY25} or {len(KEYPOINT_FLIP_PERMUTATION)} joints, got {j}")
    perm = torch.tensor(KEYPOINT_FLIP_PERMUTATION[:j], device=keypoints.device)
    out = keypoints.clone()
    mirror = (width - 1 if pixel_centers else width) - out[..., 0]
    out[..., 0] = torch.where(out[..., 2] > 0, mirror, out[..., 0])
    return out.index_select(-2, perm)


def hflip_boxes(boxes: torch.Tensor, width: float) -> torch.Tensor:
    """Mirror xyxy boxes ([..., 4], continuous pixel coordinates): x1' = W - x2, x2' = W - x1."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([width - x2, y1, width - x1, y2], dim=-1)


def flip_entities(x: torch.Tensor, layout: EntityLayout, dim: int) -> torch.Tensor:
    """Swap left and right entities along ``dim`` (e.g. boxes [..., K, 4] with dim=-2)."""
    return x.index_select(dim, torch.tensor(layout.flip_permutation, device=x.device))


def hflip_clip(frames: torch.Tensor, keypoints: torch.Tensor, *, pixel_centers: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip frames [..., 3, H, W] and their keypoints [..., J, 3] (x in pixels of the frames)."""
    return hflip_frames(frames), hflip_keypoints(keypoints, frames.shape[-1], pixel_centers=pixel_centers)


class RandomHorizontalFlip(torch.nn.Module):
    """Training augmentation (paper IV-B: p = 0.5): ``(frames, keypoints) -> (frames, keypoints)``.

    One decision per call, applied to every frame of the clip (flipping some frames but not
    others would fake motion). Action labels are unchanged: MA-52 classes do not encode a side.
    """

    def __init__(self, p: float = 0.5, *, pixel_centers: bool = False, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.p, self.pixel_centers, self.generator = p, pixel_centers, generator

    def forward(self, frames: torch.Tensor, keypoints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if torch.rand((), generator=self.generator).item() < self.p:
            return hflip_clip(frames, keypoints, pixel_centers=self.pixel_centers)
        return frames, keypoints
