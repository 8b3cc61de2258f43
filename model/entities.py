"""Entity boxes from keypoints (Micro-DualNet Eq. 1), shared by the model and by pose QC.

For every frame t and entity i of a layout (:mod:`model.taxonomy`)::

    B[i, t] = pad(BBox({k_j : j in J_i, c_j > theta}), 10%)   if at least 2 joints are visible
            = B[i, t-1]                                        otherwise (carry-over)

clipped to the image. Before the first frame with a box of its own, an entity has no previous box;
the fallback (``fallback=``) is

- ``"next"`` (default): the entity's first own box later in the clip (back-fill), and if it never has
  one, the whole image;
- ``"image"``: the whole image.

The per-entity confidence c used by the MAC loss (paper Eq. 17) follows ``confidence_rule``:

- ``"all_joints"`` (default of this function): the mean keypoint confidence over the entity's joints,
  missing joints counting 0, joints below theta included;
- ``"visible_joints"``: the same mean with joints at or below theta counting 0;
- ``"own_box"``: ``"visible_joints"`` on frames where the entity has a box of its own, 0 on frames
  whose box is carried over or back-filled (the box there is not anchored to this frame's pose).

Keypoint format (``keypoint_format``). Keypoints may carry the 8 extra points of
:data:`model.taxonomy.EXTRA_POINTS` (J = 33: BlazePose hand and mouth points) or be plain BODY_25
(J = 25, OpenPose). The joint set of an entity depends on which is used:

- ``"body25"``: BODY_25 joints only (each entity's ``fallback_joints``); extra points, if given, are
  ignored, so BlazePose keypoints give the same kind of boxes as OpenPose (hand = wrist + elbow);
- ``"body25_extra"``: BODY_25 + extra points (hand = wrist + finger points, face with the mouth);
  keypoints without extra points are refused (:class:`KeypointFormatError`);
- ``"auto"`` (default of this function, for QC and overlays): extra points when the clip has any,
  else BODY_25 - per clip, so one model may see both kinds of boxes. Models use
  :class:`EntityDefinition`, which never uses "auto".

Shapes::

    keypoints  [..., T, J, 3]   (x, y, confidence), x/y in pixels of the image the boxes refer to
    boxes      [..., T, K, 4]   (x1, y1, x2, y2) in the same pixels, x1 < x2, y1 < y2
    own        [..., T, K]      bool: box computed from this frame's keypoints
    confidence [..., T, K]      float in [0, 1]

The function takes numpy arrays or torch tensors and returns the same kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from model.taxonomy import (ENTITY_LAYOUTS, KEYPOINT_NAMES, MA52_ENTITIES, NUM_BODY25, NUM_KEYPOINTS, Entity,
                            EntityLayout)

__all__ = [
    "EntityBoxes", "entity_boxes", "EntityDefinition", "KeypointFormatError", "DEFAULT_THRESHOLD", "DEFAULT_PADDING",
    "KEYPOINT_FORMATS", "CONFIDENCE_RULES",
]

DEFAULT_THRESHOLD = 0.3
DEFAULT_PADDING = 0.10
KEYPOINT_FORMATS = ("body25", "body25_extra", "auto")
CONFIDENCE_RULES = ("all_joints", "visible_joints", "own_box")


class KeypointFormatError(ValueError):
    """Keypoints of a format the entity definition cannot use (e.g. BODY_25 only for a BlazePose-extra model)."""


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
    keypoint_format: Literal["body25", "body25_extra", "auto"] = "auto",
    confidence_rule: Literal["all_joints", "visible_joints", "own_box"] = "all_joints",
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
    keypoint_format : {"auto", "body25", "body25_extra"}
        Which joint sets the entities use (see module docstring).
    confidence_rule : {"all_joints", "visible_joints", "own_box"}
        How the per-entity confidence c is computed (see module docstring).

    Returns
    -------
    EntityBoxes
        ``boxes`` [..., T, K, 4], ``own`` [..., T, K], ``confidence`` [..., T, K].
    """
    if fallback not in ("next", "image"):
        raise ValueError(f"fallback must be 'next' or 'image', got {fallback!r}")
    if keypoint_format not in KEYPOINT_FORMATS:
        raise ValueError(f"keypoint_format must be one of {KEYPOINT_FORMATS}, got {keypoint_format!r}")
    if confidence_rule not in CONFIDENCE_RULES:
        raise ValueError(f"confidence_rule must be one of {CONFIDENCE_RULES}, got {confidence_rule!r}")
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
    if keypoint_format == "body25":
        has_extra = torch.zeros_like(has_extra)
    elif keypoint_format == "body25_extra":
        if n_j < NUM_KEYPOINTS:
            raise KeypointFormatError(
                f"the entities are defined on BODY_25 + BlazePose extra points (J={NUM_KEYPOINTS}) but the keypoints "
                f"have J={n_j}; pose the video with a backend that gives the extra points, or use a model "
                f"trained with keypoint_format='body25'")
        if not bool(has_extra.any()):
            raise KeypointFormatError(
                "the entities are defined on BODY_25 + BlazePose extra points but no extra point is present "
                "(OpenPose-style keypoints padded to 33?); use a model trained with keypoint_format='body25'")
        has_extra = torch.ones_like(has_extra)
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

    weight = conf if confidence_rule == "all_joints" else conf * visible
    confidence = (weight[:, :, None, :] * members[:, None]).sum(-1) / members.sum(-1).clamp(min=1)[:, None]
    if confidence_rule == "own_box":
        confidence = confidence * own

    boxes = boxes.reshape(*lead, t_len, k, 4)
    own = own.reshape(*lead, t_len, k)
    confidence = confidence.reshape(*lead, t_len, k)
    if is_numpy:
        return EntityBoxes(boxes.numpy(), own.numpy(), confidence.numpy())
    return EntityBoxes(boxes, own, confidence)


@dataclass(frozen=True)
class EntityDefinition:
    """What an entity box is, fixed at training time and stored in every checkpoint (Eq. 1).

    The joints of each entity are stored by *name* (``KEYPOINT_NAMES``), already resolved for the
    keypoint format, so a checkpoint keeps meaning the same boxes even if the code's default layouts
    change. :meth:`boxes` applies the definition to keypoints of either format: BODY_25 + extra
    points given to a ``"body25"`` definition are mapped to it (the extra points are dropped, the
    boxes are the BODY_25 boxes); BODY_25-only keypoints given to a ``"body25_extra"`` definition
    are refused with :class:`KeypointFormatError` (the extra points cannot be invented).

    Attributes
    ----------
    layout : str
        Name of the layout it was derived from ("ma52", "imigue").
    entities : tuple of (entity name, tuple of joint names)
        K entities in model order, each with the joints whose enclosing box defines it.
    keypoint_format : {"body25", "body25_extra"}
        Keypoints the model was trained on (see module docstring).
    threshold, padding, min_visible : theta, padding and the visible-joint minimum of Eq. 1.
    before_first : {"next", "image"}
        Box before an entity's first own box (back-fill or whole image; module docstring).
    confidence_rule : {"all_joints", "visible_joints", "own_box"}
        Per-entity confidence c (MAC weights of Eq. 17; module docstring).
    """

    layout: str
    entities: tuple[tuple[str, tuple[str, ...]], ...]
    keypoint_format: str = "body25"
    threshold: float = DEFAULT_THRESHOLD
    padding: float = DEFAULT_PADDING
    min_visible: int = 2
    before_first: str = "next"
    confidence_rule: str = "own_box"

    def __post_init__(self) -> None:
        if self.keypoint_format not in ("body25", "body25_extra"):
            raise ValueError(f"an entity definition's keypoint_format must be 'body25' or 'body25_extra', "
                             f"got {self.keypoint_format!r}")
        if self.before_first not in ("next", "image"):
            raise ValueError(f"before_first must be 'next' or 'image', got {self.before_first!r}")
        if self.confidence_rule not in CONFIDENCE_RULES:
            raise ValueError(f"confidence_rule must be one of {CONFIDENCE_RULES}, got {self.confidence_rule!r}")
        for name, joints in self.entities:
            unknown = [j for j in joints if j not in KEYPOINT_NAMES]
            if unknown:
                raise ValueError(f"entity {name!r}: unknown keypoint name(s) {unknown}")
            if self.keypoint_format == "body25" and any(KEYPOINT_NAMES.index(j) >= NUM_BODY25 for j in joints):
                raise ValueError(f"entity {name!r} uses extra points but keypoint_format is 'body25'")

    @classmethod
    def from_layout(cls, layout: EntityLayout | str, *, keypoint_format: str = "body25",
                    names: tuple[str, ...] | None = None, **kwargs: Any) -> "EntityDefinition":
        """Resolve a :mod:`model.taxonomy` layout for one keypoint format (optionally a subset of its entities)."""
        lay = ENTITY_LAYOUTS[layout] if isinstance(layout, str) else layout
        if keypoint_format not in ("body25", "body25_extra"):
            raise ValueError(f"keypoint_format must be 'body25' or 'body25_extra', got {keypoint_format!r}")
        chosen = [e for e in lay.entities if names is None or e.name in names]
        if names is not None and len(chosen) != len(names):
            missing = sorted(set(names) - {e.name for e in lay.entities})
            raise ValueError(f"layout {lay.name!r} has no entit(y/ies) {missing}")
        ents = tuple((e.name, tuple(KEYPOINT_NAMES[j] for j in e.joints_for(keypoint_format == "body25_extra")))
                     for e in chosen)
        return cls(layout=lay.name, entities=ents, keypoint_format=keypoint_format, **kwargs)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.entities)

    @property
    def num_entities(self) -> int:
        return len(self.entities)

    @property
    def entity_layout(self) -> EntityLayout:
        """The definition as an :class:`EntityLayout` (joint indices, no fallback sets)."""
        return EntityLayout(self.layout, tuple(Entity(name, tuple(KEYPOINT_NAMES.index(j) for j in joints))
                                               for name, joints in self.entities))

    def boxes(self, keypoints: np.ndarray | torch.Tensor, image_size: tuple[int, int]) -> EntityBoxes:
        """Eq. 1 boxes of this definition; keypoints [..., T, J, 3] with J = 25 or 33, ``image_size`` (width, height).

        Raises :class:`KeypointFormatError` when the keypoints lack points the definition needs.
        """
        return entity_boxes(keypoints, image_size, layout=self.entity_layout, threshold=self.threshold,
                            padding=self.padding, min_visible=self.min_visible, fallback=self.before_first,
                            keypoint_format=self.keypoint_format, confidence_rule=self.confidence_rule)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (safe for ``torch.load(weights_only=True)`` and JSON)."""
        return {"layout": self.layout, "entities": [[n, list(j)] for n, j in self.entities],
                "keypoint_format": self.keypoint_format, "threshold": self.threshold, "padding": self.padding,
                "min_visible": self.min_visible, "before_first": self.before_first,
                "confidence_rule": self.confidence_rule}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EntityDefinition":
        known = {"layout", "entities", "keypoint_format", "threshold", "padding", "min_visible", "before_first",
                 "confidence_rule"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown entity definition field(s) {unknown}")
        ents = tuple((str(n), tuple(str(j) for j in joints)) for n, joints in d["entities"])
        return cls(**{**d, "entities": ents})
