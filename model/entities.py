"""Entity boxes from keypoints (Micro-DualNet Eq. 1), shared by the model and by pose QC.

For every frame t and entity i of a layout (:mod:`model.taxonomy`)::

    B[i, t] = pad(BBox({k_j : j in J_i, c_j > theta}), 10%)   if at least 2 joints are visible
            = B[i, t-1]                                        otherwise (carry-over)

clipped to the image. Before the first frame with a box of its own, an entity has no previous box;
the fallback (``fallback=``) is

- ``"next"`` (default): the entity's first own box later in the clip (back-fill), and if it never has
  one, the whole image;
- ``"image"``: the whole image.

The per-entity confidence used by the MAC loss (paper Eq. 17) is the mean keypoint confidence over the
entity's joints, missing joints counting 0, so an occluded entity is down-weighted smoothly.

Keypoints may carry the 8 extra points of :data:`model.taxonomy.EXTRA_POINTS` (J = 33) or be plain
BODY_25 (J = 25). An entity whose extra points are absent throughout a clip (OpenPose input) uses its
BODY_25 ``fallback_joints``.

Shapes::

    keypoints  [..., T, J, 3]   (x, y, confidence), x/y in pixels of the image the boxes refer to
    boxes      [..., T, K, 4]   (x1, y1, x2, y2) in the same pixels, x1 < x2, y1 < y2
    own        [..., T, K]      bool: box computed from this frame's keypoints
    confidence [..., T, K]      float in [0, 1]

The function takes numpy arrays or torch tensors and returns the same kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from model.taxonomy import MA52_ENTITIES, NUM_BODY25, EntityLayout

__all__ = ["EntityBoxes", "entity_boxes", "DEFAULT_THRESHOLD", "DEFAULT_PADDING"]

DEFAULT_THRESHOLD = 0.3
DEFAULT_PADDING = 0.10


@dataclass
class EntityBoxes:
    """Result of :func:`entity_boxes` (numpy arrays or torch tensors, as given)."""

    boxes: np.ndarray | torch.Tensor
    own: np.ndarray | torch.Tensor
    confidence: np.ndarray | torch.Tensor


def _joint_index_matrix(layout: EntityLayout, num_joints: int, has_extra: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Membership masks [K, J] for primary joints and for fallback joints (restricted to J)."""
    k = layout.num_entities
    primary = torch.zeros(k, num_joints, dtype=torch.bool)
    fallback = torch.zeros(k, num_joints, dtype=torch.bool)
    for i, e in enumerate(layout.entities):
        for j in e.joints:
            if j < num_joints:
                primary[i, j] = True
        for j in e.joints_for(False):
            if j < num_joints:
                fallback[i, j] = True
    return primary, fallback


def entity_boxes(
    keypoints: np.ndarray | torch.Tensor,
    image_size: tuple[int, int],
    *,
    layout: EntityLayout = MA52_ENTITIES,
    threshold: float = DEFAULT_THRESHOLD,
    padding: float = DEFAULT_PADDING,
    min_visible: int = 2,
    fallback: Literal["next", "image"] = "next",
) -> EntityBoxes:
    """Compute per-frame entity boxes and confidences from keypoints (paper Eq. 1).

    Parameters
    ----------
    keypoints : array or tensor, shape [..., T, J, 3]
        (x, y, confidence) per joint; J = 25 (BODY_25) or 33 (BODY_25 + extra points).
    image_size : (width, height)
        Size of the image the coordinates refer to; boxes are clipped to it.
    layout : EntityLayout
        Which entities (K) to build, default MA-52's six.
    threshold : float
        A joint is visible when its confidence is strictly greater than this (paper: 0.3).
    padding : float
        Fraction of the box's width/height added on *each* side (paper: 10%).
    min_visible : int
        Visible joints needed for a frame's own box (paper: 2).
    fallback : {"next", "image"}
        Box used before an entity's first own box (see module docstring).

    Returns
    -------
    EntityBoxes
        ``boxes`` [..., T, K, 4], ``own`` [..., T, K], ``confidence`` [..., T, K].
    """
    if fallback not in ("next", "image"):
        raise ValueError(f"fallback must be 'next' or 'image', got {fallback!r}")
    is_numpy = not isinstance(keypoints, torch.Tensor)
    kp = torch.as_tensor(np.asarray(keypoints) if is_numpy else keypoints)
    if kp.ndim < 3 or kp.shape[-1] != 3:
        raise ValueError(f"keypoints must have shape [..., T, J, 3], got {tuple(kp.shape)}")
    if kp.shape[-2] < NUM_BODY25:
        raise ValueError(f"keypoints need at least the {NUM_BODY25} BODY_25 joints, got J={kp.shape[-2]}")
    width, height = float(image_size[0]), float(image_size[1])
    lead = kp.shape[:-3]
    t_len, n_j = kp.shape[-3], kp.shape[-2]
    kp = kp.reshape(-1, t_len, n_j, 3).float()  # [N, T, J, 3]
    n = kp.shape[0]
    device = kp.device

    # A NaN from an upstream detector means "no joint": it must not poison boxes or MAC weights.
    kp = torch.nan_to_num(kp, nan=0.0, posinf=0.0, neginf=0.0)
    xy, conf = kp[..., :2], kp[..., 2].clamp(0, 1)
    visible = conf > threshold  # [N, T, J]
    has_extra = (conf[..., NUM_BODY25:] > 0).flatten(1).any(dim=1) if n_j > NUM_BODY25 else torch.zeros(n, dtype=torch.bool, device=device)
    primary, fb = _joint_index_matrix(layout, n_j, has_extra)
    # Per sample: the primary joint sets when extra points exist in the clip, else the BODY_25 fallback.
    members = torch.where(has_extra[:, None, None], primary[None].to(device), fb[None].to(device))  # [N, K, J]

    vis_m = visible[:, :, None, :] & members[:, None]  # [N, T, K, J]
    count = vis_m.sum(-1)  # [N, T, K]
    big = torch.finfo(torch.float32).max
    x, y = xy[..., 0][:, :, None, :], xy[..., 1][:, :, None, :]
    x1 = torch.where(vis_m, x, big).amin(-1)
    y1 = torch.where(vis_m, y, big).amin(-1)
    x2 = torch.where(vis_m, x, -big).amax(-1)
    y2 = torch.where(vis_m, y, -big).amax(-1)
    pw, ph = (x2 - x1) * padding, (y2 - y1) * padding
    raw = torch.stack([x1 - pw, y1 - ph, x2 + pw, y2 + ph], dim=-1)
    own = count >= min_visible
    raw = torch.where(own[..., None], raw, torch.zeros_like(raw))
    lo = torch.zeros(4, device=device)
    hi = torch.tensor([width, height, width, height], device=device)
    raw = torch.minimum(torch.maximum(raw, lo), hi)
    # Two visible joints at the same spot (or a box squeezed by clipping) would give an empty box;
    # ROIAlign needs positive extent, so widen degenerate boxes to one pixel around their centre
    # (centred, so a box and its horizontal mirror stay mirror images), kept inside the image.
    for lo_i, hi_i, size in ((0, 2, width), (1, 3, height)):
        thin = (raw[..., hi_i] - raw[..., lo_i]) < 1
        start = ((raw[..., lo_i] + raw[..., hi_i]) / 2 - 0.5).clamp(0, max(size - 1, 0))
        raw[..., lo_i] = torch.where(thin, start, raw[..., lo_i])
        raw[..., hi_i] = torch.where(thin, start + 1, raw[..., hi_i])

    image_box = torch.tensor([0.0, 0.0, width, height], device=device)
    boxes = torch.empty_like(raw)
    k = layout.num_entities
    if fallback == "next":
        # The first own box of each (sample, entity), back-filled before it; the image where none.
        any_own = own.any(dim=1)  # [N, K]
        first = own.float().argmax(dim=1)  # [N, K]
        first_box = torch.gather(raw, 1, first[:, None, :, None].expand(n, 1, k, 4)).squeeze(1)
        prev = torch.where(any_own[..., None], first_box, image_box)
    else:
        prev = image_box.expand(n, k, 4).clone()
    for t in range(t_len):
        cur = torch.where(own[:, t, :, None], raw[:, t], prev)
        boxes[:, t] = cur
        prev = cur

    confidence = (conf[:, :, None, :] * members[:, None]).sum(-1) / members.sum(-1).clamp(min=1)[:, None]

    boxes = boxes.reshape(*lead, t_len, k, 4)
    own = own.reshape(*lead, t_len, k)
    confidence = confidence.reshape(*lead, t_len, k)
    if is_numpy:
        return EntityBoxes(boxes.numpy(), own.numpy(), confidence.numpy())
    return EntityBoxes(boxes, own, confidence)
