"""Inference helpers: evaluation setup, mixed precision, and a parameter / FLOP summary.

::

    model = prepare_for_inference(micro_dualnet_tiny(), device="cuda", compile=True)
    out = predict(model, frames, keypoints)          # bf16 autocast on CUDA, fp32 on CPU
    print(model_summary(model, batch=1))             # parameters per module, GFLOPs per clip
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from model.backbone import TSMResNet
from model.micro_dualnet import MicroDualNet, MicroDualNetOutput
from model.routing import EntityRouter

__all__ = ["prepare_for_inference", "predict", "autocast_for", "ModelSummary", "model_summary",
           "count_parameters", "example_inputs", "clip_gflops"]


def prepare_for_inference(model: nn.Module, *, device: str | torch.device | None = None,
                          channels_last: bool = True, compile: bool = False) -> nn.Module:
    """Eval mode, optional device move, channels_last convolutions, optional ``torch.compile``.

    channels_last pays off on GPUs with tensor cores (cuDNN's NHWC kernels); on CPU it is neutral
    to slightly helpful. ``torch.compile`` is off by default: its first call takes tens of seconds,
    worth it only for long batch runs.
    """
    model.eval()
    if device is not None:
        model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
        for m in model.modules():
            if isinstance(m, TSMResNet):
                m.memory_format = torch.channels_last
    if compile:
        model = torch.compile(model)
    return model


def autocast_for(device: torch.device | str, enabled: bool = True):
    """bf16 autocast on CUDA; a disabled context elsewhere (CPU bf16 is slow on most CPUs)."""
    device = torch.device(device)
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled and device.type == "cuda")


def predict(model: nn.Module, frames: torch.Tensor | None, keypoints: torch.Tensor | None = None, *,
            amp: bool = True) -> MicroDualNetOutput:
    """One forward pass under ``inference_mode`` (+ bf16 autocast on CUDA)."""
    ref = frames if frames is not None else keypoints
    with torch.inference_mode(), autocast_for(ref.device, amp):
        return model(frames, keypoints)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def example_inputs(model: MicroDualNet, *, batch: int = 1, num_frames: int | None = None,
                   image_size: tuple[int, int] | None = None, num_joints: int = 25,
                   device: str | torch.device = "cpu", seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random frames [B, T, 3, H, W] and keypoints [B, T, J, 3] inside the frame, for timing/FLOPs."""
    g = torch.Generator().manual_seed(seed)
    t = num_frames or model.cfg.num_frames
    h, w = image_size or model.cfg.image_size
    frames = torch.randn(batch, t, 3, h, w, generator=g)
    kp = torch.rand(batch, t, num_joints, 3, generator=g) * torch.tensor([w, h, 1.0])
    return frames.to(device), kp.to(device)


def clip_gflops(model: nn.Module, frames: torch.Tensor | None, keypoints: torch.Tensor | None = None,
                *, per_module_depth: int = 2) -> tuple[float, dict[str, float]]:
    """GFLOPs per clip (total, per module) of one forward pass, counted by ``FlopCounterMode``.

    FlopCounterMode counts matmuls, convolutions and attention (2 FLOPs per multiply-add); cheap
    element-wise work and ROIAlign are not counted.
    """
    ref = frames if frames is not None else keypoints
    batch = ref.shape[0]
    counter = FlopCounterMode(display=False, depth=per_module_depth)
    with torch.no_grad(), counter:
        model(frames, keypoints)
    per_module: dict[str, float] = {}
    for name, ops in counter.get_flop_counts().items():
        if name != "Global" and "." in name:
            per_module[name.split(".", 1)[1]] = sum(ops.values()) / 1e9 / batch
    return counter.get_total_flops() / 1e9 / batch, per_module


@dataclass
class ModelSummary:
    """Parameter counts per top-level module and GFLOPs per clip."""

    total_params: int
    params: dict[str, int]
    gflops: float
    gflops_per_module: dict[str, float]
    input_shape: tuple[int, ...]
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"Micro-DualNet summary (input frames {list(self.input_shape)}):",
                 f"  {'module':<32}{'params':>14}{'GFLOPs/clip':>14}"]
        for name, n in self.params.items():
            gf = self.gflops_per_module.get(name)
            lines.append(f"  {name:<32}{n:>14,}{'' if gf is None else f'{gf:>14.4f}'}")
        lines.append(f"  {'total':<32}{self.total_params:>14,}{self.gflops:>14.4f}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def model_summary(model: MicroDualNet, *, batch: int = 1, num_frames: int | None = None,
                  image_size: tuple[int, int] | None = None) -> ModelSummary:
    """Parameters of each part (backbone, SEM, paths, routing, head) and GFLOPs per clip."""
    params: dict[str, int] = {}
    for name, child in model.named_children():
        if name == "dual_path":
            for sub, m in child.named_children():
                params[f"dual_path.{sub}"] = count_parameters(m)
        else:
            params[name] = count_parameters(child)
    device = next(model.parameters()).device
    frames, kp = example_inputs(model, batch=batch, num_frames=num_frames, image_size=image_size, device=device)
    if not model.uses_rgb:
        frames_in = None
    else:
        frames_in = frames
    was_training = model.training
    model.eval()
    try:
        total, per_module = clip_gflops(model, frames_in, kp, per_module_depth=2)
    finally:
        model.train(was_training)
    notes = []
    dual_path = getattr(model, "dual_path", None)
    if dual_path is not None and isinstance(getattr(dual_path, "fusion", None), EntityRouter):
        routing = params.get("dual_path.fusion", 0)
        non_backbone = count_parameters(model) - params.get("backbone", 0)
        notes.append(f"routing: {routing:,} parameters = {100 * routing / max(non_backbone, 1):.1f}% of the "
                     f"non-backbone parameters, {100 * routing / count_parameters(model):.2f}% of all")
    return ModelSummary(total_params=count_parameters(model), params=params, gflops=total,
                        gflops_per_module=per_module, input_shape=tuple(frames.shape), notes=notes)
