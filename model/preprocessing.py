"""What a checkpoint's input looks like: class list and pixel preprocessing (stored in every checkpoint).

A checkpoint owns its preprocessing (torchvision's "weights carry their transforms"): inference reads
:class:`Preprocessing` and :class:`ClassList` back from the file and needs no re-specification, so
training and inference cannot disagree about crop, size, normalisation or what output ``i`` means.

Sizes passed as tuples are ``(width, height)``; images and tensors are ``[..., H, W]``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from model.taxonomy import MA52

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Preprocessing", "ClassList", "BACKGROUND"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BACKGROUND = "background"


@dataclass(frozen=True)
class Preprocessing:
    """Pixel preprocessing from decoded RGB frames to the model's input (train and eval share it).

    Attributes
    ----------
    region : {"frame", "person"}
        ``"frame"``: the whole frame (MA-52 clips, where the person fills it). ``"person"``: first crop
        a square around the participant, the union of the window's usable keypoints padded by
        ``person_padding`` of its longer side (docs/recognize.md has the picture); clinical framing
        (small, off-centre person, an examiner in view) needs it.
    person_padding : float
        Padding of the person box, as a fraction of its longer side, on each side.
    resize_short : int
        Short side after resizing (MA-52 practice: 256, MANet's config / paper IV-B).
    size : int
        Side of the square crop fed to the model (224; eval: centre crop, train: random crop).
    mean, std : RGB normalisation of pixels in [0, 1] (ImageNet, the backbone's pre-training).
    """

    region: Literal["frame", "person"] = "frame"
    person_padding: float = 0.15
    resize_short: int = 256
    size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.region not in ("frame", "person"):
            raise ValueError(f"region must be 'frame' or 'person', got {self.region!r}")
        if self.size > self.resize_short:
            raise ValueError(f"crop size {self.size} is larger than the resized short side {self.resize_short}")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocessing":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown preprocessing field(s): {', '.join(sorted(unknown))}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclass(frozen=True)
class ClassList:
    """What output ``i`` of a model means: a name and the MA-52 action index (None for background).

    A model may cover all 52 MA-52 actions (:meth:`ma52`), a subset, and/or a background class
    ("no micro-action", for models trained on untrimmed video or the simulator's demo model).
    """

    names: tuple[str, ...]
    taxonomy_ids: tuple[int | None, ...]

    def __post_init__(self) -> None:
        if len(self.names) != len(self.taxonomy_ids):
            raise ValueError(f"{len(self.names)} class names but {len(self.taxonomy_ids)} taxonomy ids")
        if len(set(self.names)) != len(self.names):
            raise ValueError("class names must be unique")
        for name, tid in zip(self.names, self.taxonomy_ids):
            if tid is None:
                if name != BACKGROUND:
                    raise ValueError(f"class {name!r} has no MA-52 id; only {BACKGROUND!r} may")
            elif MA52.actions[tid] != name:
                raise ValueError(f"class {name!r} does not match MA-52 action {tid} ({MA52.actions[tid]!r})")

    def __len__(self) -> int:
        return len(self.names)

    @property
    def background_index(self) -> int | None:
        """Index of the background class, or None when the model has none."""
        return self.names.index(BACKGROUND) if BACKGROUND in self.names else None

    @classmethod
    def ma52(cls) -> "ClassList":
        """All 52 MA-52 actions in benchmark order."""
        return cls(tuple(MA52.actions), tuple(range(len(MA52.actions))))

    @classmethod
    def from_actions(cls, actions: list[int | str], *, background: bool = False) -> "ClassList":
        """A subset of MA-52 (indices or names, in the given order), plus ``background`` last if asked."""
        ids = [a if isinstance(a, int) else MA52.actions.index(a) for a in actions]
        names = [MA52.actions[i] for i in ids]
        if background:
            names.append(BACKGROUND)
            ids.append(None)
        return cls(tuple(names), tuple(ids))

    def to_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "taxonomy_ids": list(self.taxonomy_ids)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ClassList":
        return cls(tuple(d["names"]), tuple(d["taxonomy_ids"]))
