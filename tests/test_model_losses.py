"""MAC loss (Eqs. 16-17) against a literal per-element implementation, and its properties."""

from __future__ import annotations

import math

import pytest
import torch

from model.losses import mac_loss, micro_dualnet_loss


def literal_mac(x_st, x_ts, conf, tau):
    """Eqs. 16-17 with Python loops, one (b, i, t) term at a time."""
    b_n, t_n, k_n, _ = x_st.shape
    num, den = 0.0, 0.0
    for b in range(b_n):
        for i in range(k_n):
            for t in range(t_n):
                z_a = x_st[b, t, i] / x_st[b, t, i].norm()

                def sim(j):
                    z_j = x_ts[b, j, i] / x_ts[b, j, i].norm()
                    return float(z_a @ z_j)

                denom = sum(math.exp(sim(j) / tau) for j in range(t_n))
                term = -math.log(math.exp(sim(t) / tau) / denom)
                num += float(conf[b, t, i]) * term
                den += float(conf[b, t, i])
    return num / den


@pytest.mark.parametrize("tau", [0.07, 0.5])
def test_mac_matches_literal_implementation(tau):
    g = torch.Generator().manual_seed(0)
    x_st, x_ts = torch.randn(2, 5, 3, 8, generator=g, dtype=torch.float64), torch.randn(2, 5, 3, 8, generator=g, dtype=torch.float64)
    conf = torch.rand(2, 5, 3, generator=g, dtype=torch.float64)
    got = mac_loss(x_st, x_ts, conf, tau=tau)
    assert got.item() == pytest.approx(literal_mac(x_st, x_ts, conf, tau), rel=1e-5)


def test_mac_is_one_directional_st_anchor():
    """Swapping the paths changes the value: ST is the anchor, TS supplies positive and negatives."""
    g = torch.Generator().manual_seed(1)
    x_st, x_ts = torch.randn(1, 4, 2, 6, generator=g), torch.randn(1, 4, 2, 6, generator=g)
    conf = torch.ones(1, 4, 2)
    assert mac_loss(x_st, x_ts, conf).item() != pytest.approx(mac_loss(x_ts, x_st, conf).item(), rel=1e-4)


def test_mac_lower_when_paths_agree_than_shuffled():
    g = torch.Generator().manual_seed(2)
    x_st = torch.randn(3, 8, 6, 16, generator=g)
    x_ts_agree = x_st + 0.1 * torch.randn(3, 8, 6, 16, generator=g)
    x_ts_shuffled = x_ts_agree[:, torch.randperm(8, generator=g)]
    conf = torch.ones(3, 8, 6)
    agree, shuffled = mac_loss(x_st, x_ts_agree, conf), mac_loss(x_st, x_ts_shuffled, conf)
    assert agree < 0.1 < shuffled
    assert agree < shuffled


def test_mac_zero_confidence_entities_have_no_weight():
    g = torch.Generator().manual_seed(3)
    x_st, x_ts = torch.randn(2, 4, 3, 8, generator=g), torch.randn(2, 4, 3, 8, generator=g)
    conf = torch.rand(2, 4, 3, generator=g) + 0.1
    conf[:, :, 1] = 0  # entity 1 invisible everywhere
    conf[1, 2, 0] = 0
    base = mac_loss(x_st, x_ts, conf)
    x_ts2 = x_ts.clone()
    x_ts2[:, :, 1] = torch.randn(2, 4, 8, generator=g) * 10  # arbitrary change on the invisible entity
    assert mac_loss(x_st, x_ts2, conf).item() == pytest.approx(base.item(), rel=1e-6)
    x_st.requires_grad_(True)
    mac_loss(x_st, x_ts, conf).backward()
    assert torch.all(x_st.grad[:, :, 1] == 0)
    assert torch.all(x_st.grad[1, 2, 0] == 0)
    assert x_st.grad[:, :, 0].abs().sum() > 0


def test_mac_all_invisible_is_zero_not_nan():
    x = torch.randn(1, 4, 2, 8, requires_grad=True)
    loss = mac_loss(x, torch.randn(1, 4, 2, 8), torch.zeros(1, 4, 2))
    loss.backward()
    assert loss.item() == 0 and torch.isfinite(x.grad).all()


def test_total_loss_is_ce_plus_lambda_mac():
    from model.micro_dualnet import MicroDualNetOutput

    g = torch.Generator().manual_seed(4)
    x_st, x_ts = torch.randn(2, 4, 3, 8, generator=g), torch.randn(2, 4, 3, 8, generator=g)
    out = MicroDualNetOutput(logits=torch.randn(2, 5, generator=g), x_st=x_st, x_ts=x_ts,
                             routing=torch.full((2, 4, 3, 2), 0.5), entity_conf=torch.ones(2, 4, 3),
                             boxes=None, fused=x_st)
    y = torch.tensor([1, 3])
    terms = micro_dualnet_loss(out, y, mac_weight=0.1)
    ce = torch.nn.functional.cross_entropy(out.logits, y)
    assert terms.total.item() == pytest.approx(ce.item() + 0.1 * mac_loss(x_st, x_ts, out.entity_conf).item(), rel=1e-6)
    assert micro_dualnet_loss(out, y, use_mac=False).total.item() == pytest.approx(ce.item(), rel=1e-6)
