"""Clip transforms that keep frames and keypoints in step: horizontal flip, resize, crop.

The model's forward contract wants keypoints in pixels of the ``frames`` it is given, so anything
that resizes or crops frames must move the keypoints with them; these helpers do both together.

Coordinate convention (default, "continuous"): pixel i covers [i, i+1) and its centre is i + 0.5 -
the convention of ROIAlign with ``aligned=True`` and of the entity boxes, which are clipped to
[0, W]. ``pixel_centers=True`` is for coordinates whose integer values are pixel centres (e.g. raw
OpenPose output: x = 0 is the centre of the first pixel). Joints with confidence 0 (not detected)
keep their coordinates everywhere, so "missing" placeholders stay recognisable.

Horizontal flip. Flipping the image makes the person's left hand appear where the right hand was.
For labels and entities to stay meaningful ("left hand" = the person's left), a flip

1. mirrors the frames along the width axis;
2. mirrors keypoint x: ``x -> W - x`` (continuous) or ``x -> W - 1 - x`` (pixel centres); either
   way a joint lands on the mirror image of the pixel it was on;
3. permutes the joints with :data:`model.taxonomy.KEYPOINT_FLIP_PERMUTATION` (LWrist <-> RWrist, ...).

Entities then follow automatically: the boxes computed from the flipped keypoints are the mirrored
boxes of the original with "left hand" and "right hand" swapped. Anything already per entity
(e.g. stored boxes or confidences, [..., K, ...]) is swapped with :func:`flip_entities`.

Resize (:func:`resize_clip`): bilinear (antialiased when shrinking, ``align_corners=False``), which
maps continuous coordinates linearly: ``x -> x * W'/W``, ``y -> y * H'/H`` (pixel centres:
``x -> (x + 0.5) * W'/W - 0.5``). Crop (:func:`crop_clip`, :func:`center_crop_clip`):
``x -> x - left``, ``y -> y - top`` in both conventions; joints that fall outside the crop are kept
(the entity boxes are clipped to the frame, so a hand half outside still gets the visible part) or,
with ``outside="drop"``, get confidence 0 (invisible for Eq. 1 and for the MAC weights).

Shapes::

    frames    [..., 3, H, W]   (any leading dims, e.g. [T, 3, H, W] or [B, T, 3, H, W]; float or uint8)
    keypoints [..., J, 3]      J = 25 or 33, the same leading dims as frames' [..., T]
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from model.taxonomy import KEYPOINT_FLIP_PERMUTATION, NUM_BODY25, EntityLayout

__all__ = ["hflip_frames", "hflip_keypoints", "hflip_boxes", "flip_entities", "hflip_clip", "RandomHorizontalFlip",
           "resize_clip", "resize_keypoints", "crop_clip", "center_crop_clip"]


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


# --------------------------------------------------------------------------------------------------
# Resize and crop (frames and keypoints together)
# --------------------------------------------------------------------------------------------------


def _output_size(height: int, width: int, size: int | tuple[int, int]) -> tuple[int, int]:
    """(h, w) from ``size``: a pair, or an int giving the short side (aspect ratio kept, rounded)."""
    if isinstance(size, int):
        if height <= width:
            return size, max(1, round(width * size / height))
        return max(1, round(height * size / width)), size
    h, w = size
    return int(h), int(w)


def resize_keypoints(keypoints: torch.Tensor, from_size: tuple[int, int], to_size: tuple[int, int], *,
                     pixel_centers: bool = False) -> torch.Tensor:
    """Scale keypoint x, y from a (H, W) frame to a (H', W') one. keypoints [..., J, 3] -> [..., J, 3]."""
    (h0, w0), (h1, w1) = from_size, to_size
    scale = keypoints.new_tensor([w1 / w0, h1 / h0])
    xy = keypoints[..., :2]
    new = (xy + 0.5) * scale - 0.5 if pixel_centers else xy * scale
    detected = keypoints[..., 2:3] > 0
    return torch.cat([torch.where(detected, new, xy), keypoints[..., 2:]], dim=-1)


def resize_clip(frames: torch.Tensor, keypoints: torch.Tensor | None, size: int | tuple[int, int], *,
                pixel_centers: bool = False, antialias: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Resize frames [..., 3, H, W] to ``size`` and move the keypoints [..., J, 3] with them.

    ``size`` is (height, width), or an int for the short side (aspect ratio kept). Bilinear with
    ``align_corners=False``, antialiased when shrinking; uint8 frames come back as uint8 (rounded).
    ``keypoints`` may be None (frames only).
    """
    h0, w0 = frames.shape[-2:]
    h1, w1 = _output_size(h0, w0, size)
    if (h1, w1) == (h0, w0):
        return frames, keypoints
    flat = frames.reshape(-1, *frames.shape[-3:])
    out = F.interpolate(flat.float(), size=(h1, w1), mode="bilinear", align_corners=False,
                        antialias=antialias and (h1 < h0 or w1 < w0))
    if frames.dtype == torch.uint8:
        out = out.round_().clamp_(0, 255)
    out = out.to(frames.dtype).reshape(*frames.shape[:-2], h1, w1)
    if keypoints is None:
        return out, None
    return out, resize_keypoints(keypoints, (h0, w0), (h1, w1), pixel_centers=pixel_centers)


def crop_clip(frames: torch.Tensor, keypoints: torch.Tensor | None, top: int, left: int, height: int, width: int, *,
              outside: Literal["keep", "drop"] = "keep") -> tuple[torch.Tensor, torch.Tensor | None]:
    """Crop rows [top, top+height) and columns [left, left+width) of every frame; shift keypoints.

    The same crop for every frame of the clip (a per-frame crop would fake motion). With
    ``outside="drop"``, detected joints outside the crop get confidence 0.
    """
    h0, w0 = frames.shape[-2:]
    if not (0 <= top and 0 <= left and height > 0 and width > 0 and top + height <= h0 and left + width <= w0):
        raise ValueError(f"crop (top={top}, left={left}, {height}x{width}) does not fit a {h0}x{w0} frame")
    if outside not in ("keep", "drop"):
        raise ValueError(f"outside must be 'keep' or 'drop', got {outside!r}")
    out = frames[..., top:top + height, left:left + width]
    if keypoints is None:
        return out, None
    kp = keypoints.clone()
    detected = kp[..., 2] > 0
    kp[..., 0] = torch.where(detected, kp[..., 0] - left, kp[..., 0])
    kp[..., 1] = torch.where(detected, kp[..., 1] - top, kp[..., 1])
    if outside == "drop":
        x, y = kp[..., 0], kp[..., 1]
        inside = (x >= 0) & (x <= width) & (y >= 0) & (y <= height)
        kp[..., 2] = torch.where(detected & ~inside, torch.zeros_like(kp[..., 2]), kp[..., 2])
    return out, kp


def center_crop_clip(frames: torch.Tensor, keypoints: torch.Tensor | None, size: int | tuple[int, int], *,
                     outside: Literal["keep", "drop"] = "keep") -> tuple[torch.Tensor, torch.Tensor | None]:
    """Central ``size`` (int: square) crop of every frame; offsets as torchvision's ``center_crop``."""
    h0, w0 = frames.shape[-2:]
    h1, w1 = (size, size) if isinstance(size, int) else size
    top, left = int(round((h0 - h1) / 2.0)), int(round((w0 - w1) / 2.0))
    return crop_clip(frames, keypoints, top, left, h1, w1, outside=outside)
