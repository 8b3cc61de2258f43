"""Full-model checkpoints: a Micro-DualNet's config and weights in one file, loadable with weights_only=True.

Foundation 2 extends this module with the class list, preprocessing, window plan, provenance and a
separate training-state file (docs/architecture.md, "Checkpoint format").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from model.config import MicroDualNetConfig
from model.micro_dualnet import MicroDualNet

__all__ = ["CHECKPOINT_FORMAT", "save_checkpoint", "load_checkpoint", "unwrap_model"]

CHECKPOINT_FORMAT = "micro-dualnet/1"
# --------------------------------------------------------------------------------------------------


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain :class:`MicroDualNet` inside ``torch.compile`` / DataParallel / DDP wrappers.

    Their ``state_dict`` prefixes every key (``_orig_mod.``, ``module.``), which a freshly built
    model would not load; checkpoints always store the unwrapped names.
    """
    while True:
        inner = getattr(model, "_orig_mod", None)
        if inner is None and isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            inner = model.module
        if inner is None:
            return model
        model = inner


def save_checkpoint(path: Path | str, model: nn.Module, *, extra: dict[str, Any] | None = None) -> Path:
    """Write ``{"format", "config" (plain dict), "state_dict", "extra"}``, loadable with weights_only=True.

    ``extra`` must be plain data too (numbers, strings, lists, dicts, tensors): e.g. epoch, metrics.
    A ``torch.compile``-d or DataParallel/DDP-wrapped model is unwrapped first (:func:`unwrap_model`),
    so its checkpoint loads into a plain model.
    """
    model = unwrap_model(model)
    cfg: MicroDualNetConfig = model.cfg
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"format": CHECKPOINT_FORMAT, "config": cfg.to_dict(), "state_dict": state, "extra": extra or {}}, path)
    return path


def load_checkpoint(path: Path | str, *, map_location: str | torch.device = "cpu", with_extra: bool = False):
    """Rebuild the model from a checkpoint of :func:`save_checkpoint` (strict key match).

    Returns the model, or ``(model, extra)`` with ``with_extra=True``.
    """
    obj = torch.load(Path(path), map_location=map_location, weights_only=True)
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a Micro-DualNet checkpoint ({CHECKPOINT_FORMAT})")
    model = MicroDualNet(MicroDualNetConfig.from_dict(obj["config"]))
    model.load_state_dict(obj["state_dict"])
    return (model, obj.get("extra", {})) if with_extra else model
