"""Start a model for a new class list from a trained checkpoint (transfer), and freeze parts of it.

A lab's coded actions are not MA-52's 52 classes. Starting from an MA-52 (or any) checkpoint keeps
everything that does not depend on the class list and draws the classifier afresh::

    new config   = the checkpoint's config with num_classes = len(new classes)
    new model    = family.build(new config, the checkpoint's family state)    (entity definition kept)
                   built after torch.manual_seed(seed): its classifier is a fresh, seeded initialisation
    every tensor whose key does not start with family.classifier_prefixes(config)
                 <- the checkpoint's tensor, bit for bit (backbone, entity module, ST/TS paths,
                    routing, BatchNorm buffers, ...)
    classifier   = the fresh initialisation (also where a layer's shape would have fitted)

The checkpoint's preprocessing, window plan and entity definition are what the kept weights were
trained with; :class:`TransferReport` hands them on so the new model is fed the same way.

Freezing (:func:`freeze`): ``"backbone"`` stops gradients of the CNN backbone
(``family.backbone_prefixes``; refused for a config without one, e.g. the pose modality), ``"features"``
of everything but the classifier (a linear-probe-like fine-tuning for very small data). Frozen
modules are marked (``_frozen = True``) so the trainer keeps them in eval mode (:func:`set_frozen_eval`):
their BatchNorm statistics and dropout stay those of the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from model.checkpoint import Checkpoint, load_checkpoint
from model.families import ModelFamily
from model.preprocessing import Preprocessing
from model.windows import WindowPlan

__all__ = ["FREEZE_CHOICES", "TransferReport", "classifier_keys", "init_from_checkpoint", "freeze", "set_frozen_eval"]

FREEZE_CHOICES = ("none", "backbone", "features")


@dataclass(frozen=True)
class TransferReport:
    """What :func:`init_from_checkpoint` kept and re-initialised, and how the kept weights expect input."""

    source: str
    source_sha256: str
    source_classes: tuple[str, ...]
    kept: tuple[str, ...]
    reinitialised: tuple[str, ...]
    preprocessing: Preprocessing
    plan: WindowPlan
    family: str

    def to_dict(self) -> dict[str, Any]:
        """Plain data for a checkpoint's provenance (``init``)."""
        return {"checkpoint": self.source, "sha256": self.source_sha256, "family": self.family,
                "source_classes": list(self.source_classes), "kept_tensors": len(self.kept),
                "reinitialised": list(self.reinitialised)}


def classifier_keys(family: ModelFamily, config, keys) -> list[str]:
    """The keys (of a state dict) that belong to the family's classifier."""
    prefixes = family.classifier_prefixes(config)
    return [k for k in keys if k.startswith(prefixes)]


def init_from_checkpoint(checkpoint: str | Checkpoint, num_classes: int, *, seed: int = 0
                         ) -> tuple[nn.Module, TransferReport]:
    """A model of the checkpoint's family and architecture for ``num_classes`` outputs (module docstring).

    Raises ValueError when the family names no classifier or the checkpoint's non-classifier tensors
    do not fit the rebuilt model (they always should: only ``num_classes`` changes).
    """
    ck = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    family = ck.family
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    config = ck.config.replace(num_classes=num_classes) if hasattr(ck.config, "replace") else \
        type(ck.config).from_dict({**ck.config.to_dict(), "num_classes": num_classes})
    torch.manual_seed(seed)
    model = family.build(config, ck.state)
    source = ck.model.state_dict()
    target = model.state_dict()
    head = set(classifier_keys(family, config, target))
    if not head:
        raise ValueError(f"{family.title}: no state-dict key starts with its classifier prefixes "
                         f"{family.classifier_prefixes(config)}")
    kept = []
    for k, v in target.items():
        if k in head:
            continue
        if k not in source or source[k].shape != v.shape:
            raise ValueError(f"{ck.path}: tensor {k} does not fit the rebuilt {family.title} "
                             f"({tuple(source[k].shape) if k in source else 'missing'} vs {tuple(v.shape)})")
        kept.append(k)
    with torch.no_grad():
        for k in kept:
            target[k].copy_(source[k])
    model.load_state_dict(target)
    report = TransferReport(source=str(ck.path), source_sha256=ck.sha256, source_classes=tuple(ck.classes.names),
                            kept=tuple(kept), reinitialised=tuple(sorted(head)), preprocessing=ck.preprocessing,
                            plan=ck.plan, family=family.name)
    return model, report


def freeze(model: nn.Module, family: ModelFamily, what: str) -> list[str]:
    """Stop gradients of the backbone (``"backbone"``) or of all but the classifier (``"features"``).

    Returns the frozen parameter names; ``"none"`` freezes nothing. Modules all of whose parameters are
    frozen get ``_frozen = True`` (see :func:`set_frozen_eval`). ValueError for an unknown choice or
    ``"backbone"`` on a config without a CNN backbone.
    """
    if what not in FREEZE_CHOICES:
        raise ValueError(f"freeze must be one of {', '.join(FREEZE_CHOICES)}, got {what!r}")
    if what == "none":
        return []
    config = model.cfg
    if what == "backbone":
        prefixes = family.backbone_prefixes(config)
        if not prefixes:
            raise ValueError(f"freeze backbone: this {family.title} config has no CNN backbone "
                             f"(modality {getattr(config, 'modality', 'keypoints')!r}); freeze 'features' instead "
                             "to train the classifier only")

        def frozen(name: str) -> bool:
            return name.startswith(prefixes)
    else:
        head = family.classifier_prefixes(config)

        def frozen(name: str) -> bool:
            return not name.startswith(head)
    names = []
    for name, p in model.named_parameters():
        if frozen(name):
            p.requires_grad_(False)
            names.append(name)
    for name, m in model.named_modules():
        params = list(m.parameters(recurse=True))
        if name and params and all(not p.requires_grad for p in params):
            m._frozen = True
    return names


def set_frozen_eval(model: nn.Module) -> None:
    """Put modules marked frozen by :func:`freeze` in eval mode (call after ``model.train()``)."""
    for m in model.modules():
        if getattr(m, "_frozen", False):
            m.eval()

