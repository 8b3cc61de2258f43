"""Weights from local files: backbone initialisation and full Micro-DualNet checkpoints.

Nothing here downloads. Backbone weights come in three key layouts, converted to this project's
:class:`model.backbone.TSMResNet` names:

=============  ==========================================  =========================================
format         example keys                                dropped
=============  ==========================================  =========================================
torchvision    ``conv1.weight``, ``bn1.*``,                ``fc.*``
(ImageNet)     ``layer1.0.conv1.weight``,
               ``layer1.0.downsample.0.weight``
tsm            ``module.base_model.conv1.weight``,         ``module.new_fc.*``, anything outside
(official)     ``module.base_model.layer1.0.conv1.net.w``  ``base_model``
mmaction2      ``backbone.conv1.conv.weight``,             ``cls_head.*``, anything outside
               ``backbone.conv1.bn.*``,                    ``backbone``
               ``backbone.layer1.0.conv1.conv.net.weight``,
               ``backbone.layer1.0.conv2.bn.*``,
               ``backbone.layer1.0.downsample.conv.weight``
=============  ==========================================  =========================================

All three are first brought to torchvision's plain names (the shift wrapper's ``.net`` removed),
then mapped onto the model, where the first convolution of a shifted block is ``conv1.net``. So a
checkpoint's shift placement need not match the model's: an ImageNet ResNet (no shift) or a TSM
checkpoint with a different block interval loads all the same (the shift has no parameters).

Block gates (MANet's squeeze-and-excitation, ``layerX.Y.conv1.gate.*``) are new layers: a file
without them (ImageNet, TSM) leaves them at their initialisation and the report lists them under
``initialised``; a file with them loads them. The MA-52 authors' mmaction2 release of MANet stores
them as ``backbone.layerX.Y.conv1.conv.fcce.0.weight`` / ``fcce.2.weight`` (the reduce and expand
layers, no bias), mapped here to ``gate.reduce`` / ``gate.expand``; its ``action_p2_*`` layers,
which its forward pass never calls, are dropped.

Files are read with ``torch.load(weights_only=True)``. A checkpoint that pickles other objects
(some mmaction2 files store ``meta`` with arbitrary objects) must first be re-saved as a plain
state dict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from model.backbone import TSMResNet

__all__ = [
    "BackboneWeights", "LoadReport", "WeightsMismatchError", "load_backbone_weights", "read_state_dict",
    "detect_format", "to_torchvision_names",
]

Format = Literal["auto", "torchvision", "tsm", "mmaction2"]


@dataclass(frozen=True)
class BackboneWeights:
    """A local backbone weight file and its key layout ("auto" detects it from the keys)."""

    path: Path | str
    format: Format = "auto"


@dataclass
class LoadReport:
    """What :func:`load_backbone_weights` did."""

    format: str
    loaded: int
    dropped: list[str] = field(default_factory=list)
    """Source keys deliberately ignored (classifier heads)."""
    initialised: list[str] = field(default_factory=list)
    """Model keys the file does not hold that keep their initialisation (block gates only)."""


class WeightsMismatchError(ValueError):
    """Source and model disagree; the message lists every missing, unexpected and mis-shaped key.

    The lists are also kept as attributes (names in torchvision's layout).
    """

    def __init__(self, source: str, arch: str, missing: list[str], unexpected: list[str], mis_shaped: list[str]) -> None:
        self.missing, self.unexpected, self.mis_shaped = missing, unexpected, mis_shaped
        parts = [f"{source} does not fit the {arch} backbone:"]
        for title, items in (("missing in file", missing), ("unexpected in file", unexpected),
                             ("shape mismatch", mis_shaped)):
            if items:
                parts.append(f"  {title} ({len(items)}):")
                parts += [f"    {item}" for item in items]
        super().__init__("\n".join(parts))


def read_state_dict(path: Path | str) -> dict[str, torch.Tensor]:
    """Load a file with ``weights_only=True`` and unwrap ``{"state_dict": ...}`` / ``{"model": ...}``."""
    obj: Any = torch.load(Path(path), map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict, found {type(obj).__name__}")
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def detect_format(state_dict: dict[str, torch.Tensor]) -> str:
    keys = list(state_dict)
    if any(k.startswith(("module.base_model.", "base_model.")) for k in keys):
        return "tsm"
    if any(k.startswith("backbone.") for k in keys):
        return "mmaction2"
    return "torchvision"


_MM_RULES = (
    (re.compile(r"^conv1\.conv\.(.+)$"), r"conv1.\1"),
    (re.compile(r"^conv1\.bn\.(.+)$"), r"bn1.\1"),
    (re.compile(r"^(layer\d+\.\d+)\.conv(\d)\.conv\.(?:net\.)?(.+)$"), r"\1.conv\2.\3"),
    (re.compile(r"^(layer\d+\.\d+)\.conv(\d)\.bn\.(.+)$"), r"\1.bn\2.\3"),
    (re.compile(r"^(layer\d+\.\d+)\.downsample\.conv\.(.+)$"), r"\1.downsample.0.\2"),
    (re.compile(r"^(layer\d+\.\d+)\.downsample\.bn\.(.+)$"), r"\1.downsample.1.\2"),
)
# After _MM_RULES: the MANet release's SE layers inside its shift wrapper (module docstring).
_MANET_SE_RULES = (
    (re.compile(r"^(layer\d+\.\d+)\.conv1\.fcce\.0\.(.+)$"), r"\1.conv1.gate.reduce.\2"),
    (re.compile(r"^(layer\d+\.\d+)\.conv1\.fcce\.2\.(.+)$"), r"\1.conv1.gate.expand.\2"),
)
_MANET_UNUSED = re.compile(r"^layer\d+\.\d+\.conv1\.action_p2_")
_GATE = ".conv1.gate."


def to_torchvision_names(state_dict: dict[str, torch.Tensor], fmt: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """-> (backbone tensors under torchvision's names, dropped source keys)."""
    out: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for key, value in state_dict.items():
        name = key
        if fmt == "tsm":
            name = name.removeprefix("module.")
            if not name.startswith("base_model."):
                dropped.append(key)  # new_fc, consensus
                continue
            name = name.removeprefix("base_model.")
        elif fmt == "mmaction2":
            name = name.removeprefix("module.")
            if not name.startswith("backbone."):
                dropped.append(key)  # cls_head, data preprocessor
                continue
            name = name.removeprefix("backbone.")
            for pattern, repl in _MM_RULES:
                if pattern.match(name):
                    name = pattern.sub(repl, name)
                    break
            if _MANET_UNUSED.match(name):
                dropped.append(key)
                continue
            for pattern, repl in _MANET_SE_RULES:
                name = pattern.sub(repl, name)
        elif fmt != "torchvision":
            raise ValueError(f"unknown backbone weight format {fmt!r}")
        if name.startswith("fc."):
            dropped.append(key)
            continue
        out[name.replace(".net.", ".")] = value
    return out, dropped


def _model_backbone(model: nn.Module) -> TSMResNet:
    if isinstance(model, TSMResNet):
        return model
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, TSMResNet):
        raise ValueError("model has no TSM backbone (the 'pose' modality has no CNN)")
    return backbone


def load_backbone_weights(model: nn.Module, weights: BackboneWeights | Path | str) -> LoadReport:
    """Copy local backbone weights into ``model`` (a :class:`MicroDualNet` or :class:`TSMResNet`).

    Raises :class:`WeightsMismatchError` listing every missing, unexpected or mis-shaped key; the
    model is left untouched in that case. BatchNorm ``num_batches_tracked`` counters may be absent
    from the source (old checkpoints) and are then left as they are.
    """
    if not isinstance(weights, BackboneWeights):
        weights = BackboneWeights(weights)
    backbone = _model_backbone(model)
    source = read_state_dict(weights.path)
    fmt = detect_format(source) if weights.format == "auto" else weights.format
    canonical, dropped = to_torchvision_names(source, fmt)

    target = backbone.state_dict()
    target_by_canonical = {k.replace(".conv1.net.", ".conv1."): k for k in target}
    initialised = [c for c in target_by_canonical if _GATE in c and c not in canonical]
    missing = [c for c in target_by_canonical if c not in canonical and not c.endswith("num_batches_tracked")
               and c not in initialised]
    unexpected = [c for c in canonical if c not in target_by_canonical]
    mis_shaped = [f"{c}: file {tuple(canonical[c].shape)} vs model {tuple(target[t].shape)}"
                  for c, t in target_by_canonical.items() if c in canonical and canonical[c].shape != target[t].shape]
    if missing or unexpected or mis_shaped:
        raise WeightsMismatchError(f"{weights.path} ({fmt} layout)", backbone.arch, missing, unexpected, mis_shaped)

    new_state = {t: canonical[c] for c, t in target_by_canonical.items() if c in canonical}
    backbone.load_state_dict(new_state, strict=False)
    return LoadReport(format=fmt, loaded=len(new_state), dropped=dropped, initialised=initialised)
