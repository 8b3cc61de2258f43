"""The tiny model can fit a small fixed batch on CPU (a smoke test of the whole training graph).

The trainer itself (recipes.train: data, schedule, resume, DDP) is tested in tests/test_train.py.
"""

from __future__ import annotations

import pytest
import torch

from model.config import MicroDualNetConfig
from model.micro_dualnet import MicroDualNet


@pytest.mark.slow  # about 20 s of CPU (40 AdamW steps)
def test_tiny_overfits_a_fixed_batch():
    torch.manual_seed(0)
    model = MicroDualNet(MicroDualNetConfig.tiny())
    b, t, h, w = 4, 4, 64, 64
    frames = torch.randn(b, t, 3, h, w)
    kp = torch.rand(b, t, 25, 3) * torch.tensor([w, h, 1.0])
    labels = torch.tensor([0, 5, 17, 40])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    losses = []
    for _ in range(40):
        terms = model.loss(model(frames, kp), labels)  # CE + 0.1 * MAC, dropout on
        opt.zero_grad()
        terms.total.backward()
        opt.step()
        losses.append(terms.total.item())
    assert sum(losses[-5:]) / 5 < 0.1 * losses[0], losses
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(frames, kp).logits.argmax(-1), labels)
