"""Inference helpers: eval/channels_last preparation, predict, and the parameter/FLOP summary."""

from __future__ import annotations

import torch

from model.config import MicroDualNetConfig
from model.inference import example_inputs, model_summary, predict, prepare_for_inference
from model.micro_dualnet import MicroDualNet


def test_channels_last_inference_matches_plain_eval():
    torch.manual_seed(0)
    model = MicroDualNet(MicroDualNetConfig.tiny()).eval()
    frames, kp = example_inputs(model, batch=2)
    with torch.no_grad():
        ref = model(frames, kp).logits
    fast = prepare_for_inference(model, channels_last=True)
    assert not fast.training
    out = predict(fast, frames, kp)
    assert torch.allclose(out.logits, ref, atol=1e-4)
    assert out.logits.requires_grad is False


def test_summary_counts_parameters_and_flops():
    torch.manual_seed(0)
    model = MicroDualNet(MicroDualNetConfig.tiny())
    s = model_summary(model)
    assert s.total_params == sum(p.numel() for p in model.parameters())
    assert s.params["dual_path.fusion"] == 6 * (64 * 16 + 16 + 32 + 16 * 2 + 2 + 2)
    assert s.gflops > 0 and s.gflops_per_module["backbone"] > 0.5 * s.gflops
    assert "dual_path.st_spatial" in s.gflops_per_module
    text = str(s)
    assert "backbone" in text and "routing" in text
    assert model.training  # summary restores the mode


def test_summary_flops_scale_with_clip_length():
    torch.manual_seed(0)
    model = MicroDualNet(MicroDualNetConfig.tiny())
    short = model_summary(model, num_frames=2).gflops
    long = model_summary(model, num_frames=4).gflops
    assert 1.8 < long / short < 2.2


def test_bf16_autocast_forward_runs():
    """The CUDA path uses bf16 autocast; CPU autocast exercises the same dtype plumbing here."""
    torch.manual_seed(0)
    model = MicroDualNet(MicroDualNetConfig.tiny()).eval()
    frames, kp = example_inputs(model, batch=1)
    with torch.no_grad():
        ref = model(frames, kp)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(frames, kp)
    assert torch.isfinite(out.logits.float()).all()
    assert torch.allclose(out.routing.sum(-1), torch.ones(1, 4, 6), atol=1e-5)
    assert torch.allclose(out.boxes, ref.boxes)
    assert torch.allclose(out.logits.float(), ref.logits, atol=0.05)
