"""Model families: what a checkpoint's model is, how to build it, feed it and train it.

Every recogniser of this project is a *family* (Micro-DualNet, MMN, MANet); a checkpoint records its
family's name and config (:mod:`model.checkpoint`), and everything above ``model/`` (the recognition
stage, training, evaluation, the report's Methods, the flow) works through the
:class:`ModelFamily` protocol, never through a family's own classes:

=====================  ==========================================================================
``name``, ``title``    registry key ("micro_dualnet", "mmn", "manet") and the name in reports
``config_class``       the config dataclass (``from_dict`` / ``to_dict``, presets as classmethods)
``model_class``        the ``nn.Module`` (``model_class(config)``)
``inputs(config)``     what the model reads per window: a subset of {"pixels", "keypoints"};
                       without "pixels" the recognition stage never decodes the video
``forward(model, frames, keypoints)``  -> :class:`FamilyOutput` (logits, optional routing, features)
``loss(model, out, labels)``           -> :class:`model.losses.LossTerms` (``mac`` holds the family's
                       auxiliary term, named by ``aux_term``: MAC, MMN's consistency, MANet's joint embedding)
``files``, ``attach_files(model, files, classes)``  named files a family's model reads for training
                       beyond its weights (MANet: ``label_vectors``, the joint-embedding targets);
                       ``recipes.train --family-file NAME=PATH`` passes them without knowing the family
``state(model)`` / ``build(config, state)``  family-specific plain data stored beside the config
                       (Micro-DualNet: its entity definition) and the model rebuilt from both
``keypoint_joints``, ``keypoint_threshold``, ``part_names``  what the keypoint input and the
                       optional per-entity routing column look like
``classifier_prefixes(config)``  state-dict prefixes of the classifier (what depends on the class
                       list: re-initialised when a model is trained for another one, :mod:`model.transfer`)
``backbone_prefixes(config)``    state-dict prefixes of the pretrained CNN backbone (empty when the
                       config has none: the pose modality, MMN), for freezing it on small data
=====================  ==========================================================================

Families are registered lazily (:data:`FAMILIES` holds import paths), so a family whose module is
absent (MANet until ``model/manet.py`` lands: it must expose ``MANetConfig`` and ``MANet(config)``
with ``forward(frames [B, T, 3, H, W]) -> logits``) costs nothing until it is asked for, and then
fails with one line naming the module.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from model.losses import LossTerms

__all__ = ["FamilyOutput", "ModelFamily", "MicroDualNetFamily", "MMNFamily", "MANetFamily", "FAMILIES",
           "get_family", "family_of", "FamilyUnavailable"]

PIXELS, KEYPOINTS = "pixels", "keypoints"


class FamilyUnavailable(ValueError):
    """A registered family whose module cannot be imported (message: one line naming it)."""


@dataclass
class FamilyOutput:
    """What every family's forward gives the code above ``model/``.

    logits [B, C]; routing [B, T, K, 2] or None (Micro-DualNet's ST/TS weights); features [B, D] or None
    (the clip feature for t-SNE plots); raw: the family's own output (for its loss).
    """

    logits: torch.Tensor
    routing: torch.Tensor | None
    features: torch.Tensor | None
    raw: Any


def _resolve(ref: str):
    module, _, attr = ref.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise FamilyUnavailable(f"model family needs {ref}, which cannot be imported ({exc})") from None


class ModelFamily:
    """Base of the families (module docstring). Subclasses set the class attributes."""

    name: str = ""
    title: str = ""
    config_ref: str = ""
    model_ref: str = ""
    aux_term: str = "auxiliary term"
    """What :class:`LossTerms`' ``mac`` holds for this family (logs and plots)."""
    files: tuple[str, ...] = ()
    """Names of the training files :meth:`attach_files` accepts."""

    @property
    def config_class(self) -> type:
        return _resolve(self.config_ref)

    @property
    def model_class(self) -> type:
        return _resolve(self.model_ref)

    def preset(self, name: str, **overrides: Any):
        """``config_class.<name>(**overrides)`` (a classmethod preset)."""
        cls = self.config_class
        fn = getattr(cls, name, None)
        if name.startswith("_") or name in ("from_dict", "to_dict", "replace") or not callable(fn):
            raise ValueError(f"unknown model preset {name!r} of {self.title}")
        return fn(**overrides)

    def inputs(self, config) -> frozenset[str]:
        raise NotImplementedError

    def state(self, model: nn.Module) -> dict[str, Any]:
        return {}

    def build(self, config, state: dict[str, Any] | None = None) -> nn.Module:
        return self.model_class(config)

    def forward(self, model: nn.Module, frames: torch.Tensor | None, keypoints: torch.Tensor | None) -> FamilyOutput:
        raise NotImplementedError

    def loss(self, model: nn.Module, output: FamilyOutput, labels: torch.Tensor, *,
             label_smoothing: float = 0.0) -> LossTerms:
        ce = F.cross_entropy(output.logits.float(), labels, label_smoothing=label_smoothing)
        return LossTerms(total=ce, ce=ce, mac=ce.new_zeros(()))

    def attach_files(self, model: nn.Module, files: dict[str, str], classes) -> None:
        """Give ``model`` the named training files (``files``: name -> path; ``classes``: the
        :class:`model.preprocessing.ClassList` being trained). ValueError for a name the family does not take."""
        unknown = sorted(set(files) - set(self.files))
        if unknown:
            takes = f"it takes {', '.join(self.files)}" if self.files else "it takes none"
            raise ValueError(f"{self.title} has no training file {', '.join(map(repr, unknown))} ({takes})")

    def keypoint_joints(self, config, state: dict[str, Any]) -> int:
        """J of the keypoint input the stage hands over (25 BODY_25, 33 with BlazePose's extra points)."""
        return 25

    def keypoint_threshold(self, config, state: dict[str, Any]) -> float:
        return 0.3

    def part_names(self, config, state: dict[str, Any]) -> list[str]:
        """Entity names of the routing column (empty: the family has no routing)."""
        return []

    def uses_pixels(self, config) -> bool:
        return PIXELS in self.inputs(config)

    def classifier_prefixes(self, config) -> tuple[str, ...]:
        """State-dict key prefixes of the classifier (every tensor whose meaning depends on the class list)."""
        raise NotImplementedError

    def backbone_prefixes(self, config) -> tuple[str, ...]:
        """State-dict key prefixes of the CNN backbone (empty: the config has none)."""
        return ()


class MicroDualNetFamily(ModelFamily):
    name, title, aux_term = "micro_dualnet", "Micro-DualNet", "MAC"
    config_ref, model_ref = "model.config:MicroDualNetConfig", "model.micro_dualnet:MicroDualNet"

    def inputs(self, config) -> frozenset[str]:
        # The "pose" modality reads keypoints only, but in pixels of the preprocessed crop (the entity
        # encoder divides by the crop's size), so the stage still builds the crop: it is given pixels.
        if config.modality == "rgb":
            return frozenset({PIXELS})
        return frozenset({PIXELS, KEYPOINTS})

    def state(self, model) -> dict[str, Any]:
        return {"entities": model.entity_definition.to_dict()}

    def build(self, config, state=None):
        from model.entities import EntityDefinition

        entities = EntityDefinition.from_dict(state["entities"]) if state and state.get("entities") else None
        return self.model_class(config, entities=entities)

    def forward(self, model, frames, keypoints) -> FamilyOutput:
        out = model(frames, keypoints)  # callers pass frames=None where the config reads no pixels
        feats = out.fused.float().mean(dim=(1, 2)) if out.fused is not None else None
        return FamilyOutput(logits=out.logits, routing=out.routing, features=feats, raw=out)

    def loss(self, model, output, labels, *, label_smoothing=0.0) -> LossTerms:
        return model.loss(output.raw, labels, label_smoothing=label_smoothing)

    def _entities(self, config, state):
        from model.entities import EntityDefinition

        return EntityDefinition.from_dict(state["entities"]) if state.get("entities") else config.entity_definition

    def keypoint_joints(self, config, state) -> int:
        return 25 if self._entities(config, state).keypoint_format == "body25" else 33

    def keypoint_threshold(self, config, state) -> float:
        return float(self._entities(config, state).threshold)

    def part_names(self, config, state) -> list[str]:
        return [name for name, _ in self._entities(config, state).entities]

    def classifier_prefixes(self, config) -> tuple[str, ...]:
        return ("classifier.",)  # the 2-layer MLP on the pooled paths + global features (III-D)

    def backbone_prefixes(self, config) -> tuple[str, ...]:
        return ("backbone.",) if config.modality in ("rgb", "rgb_pose") else ()


class MMNFamily(ModelFamily):
    name, title, aux_term = "mmn", "MMN (Motion-guided Modulation Network, skeleton only)", "consistency"
    config_ref, model_ref = "model.mmn:MMNConfig", "model.mmn:MMN"

    def inputs(self, config) -> frozenset[str]:
        return frozenset({KEYPOINTS})  # normalised per window: source-pixel keypoints suffice

    def forward(self, model, frames, keypoints) -> FamilyOutput:
        if keypoints is None:
            raise ValueError("MMN needs keypoints [B, T, J, 3]")
        out = model(keypoints, return_output=True)
        return FamilyOutput(logits=out.logits, routing=None, features=out.features, raw=out)

    def loss(self, model, output, labels, *, label_smoothing=0.0) -> LossTerms:
        return model.loss(output.raw, labels, label_smoothing=label_smoothing)

    def keypoint_threshold(self, config, state) -> float:
        return float(config.keypoint_threshold)

    def classifier_prefixes(self, config) -> tuple[str, ...]:
        return tuple(f"streams.{s}.head." for s in config.streams)  # one linear head per stream


class MANetFamily(ModelFamily):
    """MA-52's RGB baseline (``model/manet.py``: ``MANetConfig``, ``MANet``); its joint-embedding loss
    reads the user's label vectors (training file ``label_vectors``; without it the loss is off)."""

    name, title, aux_term = "manet", "MANet", "joint embedding"
    config_ref, model_ref = "model.manet:MANetConfig", "model.manet:MANet"
    files = ("label_vectors",)

    def attach_files(self, model, files, classes) -> None:
        super().attach_files(model, files, classes)
        if "label_vectors" in files:
            from model.manet_loss import read_label_vectors

            cfg = model.cfg
            model.set_label_vectors(read_label_vectors(files["label_vectors"], num_classes=cfg.num_classes,
                                                       dim=cfg.embedding_dim, class_names=list(classes.names)))

    def inputs(self, config) -> frozenset[str]:
        return frozenset({PIXELS})

    def forward(self, model, frames, keypoints) -> FamilyOutput:
        if frames is None:
            raise ValueError("MANet needs frames [B, T, 3, H, W]")
        out = model(frames)
        logits = out if isinstance(out, torch.Tensor) else out.logits
        return FamilyOutput(logits=logits, routing=None, features=getattr(out, "features", None), raw=out)

    def loss(self, model, output, labels, *, label_smoothing=0.0) -> LossTerms:
        own = getattr(model, "loss", None)
        if not callable(own):
            return super().loss(model, output, labels, label_smoothing=label_smoothing)
        terms = own(output.raw, labels, label_smoothing=label_smoothing)  # MANetLossTerms(total, ce, emb)
        return LossTerms(total=terms.total, ce=terms.ce, mac=getattr(terms, "emb", terms.ce.new_zeros(())))

    def classifier_prefixes(self, config) -> tuple[str, ...]:
        return ("classifier.",)  # the joint-embedding head maps to label-vector space, not to classes

    def backbone_prefixes(self, config) -> tuple[str, ...]:
        return ("backbone.",)


FAMILIES: dict[str, ModelFamily] = {f.name: f for f in (MicroDualNetFamily(), MMNFamily(), MANetFamily())}
"""name -> family. Registering another: a :class:`ModelFamily` subclass added here."""


def get_family(name: str) -> ModelFamily:
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}; one of {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]


def family_of(model: nn.Module) -> ModelFamily:
    """The family whose model class ``model`` is (wrappers must be removed first)."""
    for fam in FAMILIES.values():
        try:
            cls = fam.model_class
        except FamilyUnavailable:
            continue
        if isinstance(model, cls):
            return fam
    raise TypeError(f"{type(model).__name__} is not a model of a registered family ({', '.join(FAMILIES)})")
