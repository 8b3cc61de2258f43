"""Forward contract, routing behaviour, ablations and the TSM shift of Micro-DualNet."""

from __future__ import annotations


import pytest
import torch

from model.backbone import TSMResNet, temporal_shift
from model.config import MicroDualNetConfig
from model.entity_module import fixed_region_boxes
from model.micro_dualnet import MicroDualNet, MicroDualNetOutput
from model.routing import EntityRouter


def _inputs(b=2, t=4, h=64, w=64, j=25, seed=0):
    g = torch.Generator().manual_seed(seed)
    frames = torch.randn(b, t, 3, h, w, generator=g)
    kp = torch.rand(b, t, j, 3, generator=g) * torch.tensor([w, h, 1.0])
    return frames, kp


def _check_contract(out: MicroDualNetOutput, b, t, k, d, c):
    assert out.logits.shape == (b, c)
    assert out.x_st.shape == out.x_ts.shape == (b, t, k, d)
    assert out.routing.shape == (b, t, k, 2)
    assert out.entity_conf.shape == (b, t, k)
    assert torch.allclose(out.routing.sum(-1), torch.ones(b, t, k), atol=1e-5)
    assert torch.isfinite(out.logits).all()


@pytest.mark.parametrize("j", [25, 33])
def test_tiny_forward_contract(j):
    torch.manual_seed(0)
    cfg = MicroDualNetConfig.tiny()
    model = MicroDualNet(cfg).eval()
    frames, kp = _inputs(j=j)
    with torch.no_grad():
        out = model(frames, kp)
    _check_contract(out, 2, 4, 6, cfg.embed_dim, 52)
    assert out.boxes.shape == (2, 4, 6, 4)
    assert ((out.entity_conf >= 0) & (out.entity_conf <= 1)).all()


def test_tiny_accepts_other_clip_lengths_and_imigue_layout():
    torch.manual_seed(0)
    model = MicroDualNet(MicroDualNetConfig.tiny(entity_layout="imigue", num_classes=32)).eval()
    frames, kp = _inputs(b=1, t=6)
    with torch.no_grad():
        out = model(frames, kp)
    _check_contract(out, 1, 6, 5, 32, 32)


def test_ma52_forward_contract_at_224():
    """The paper-size model (TSM ResNet-101, random weights): one clip, one pass."""
    torch.manual_seed(0)
    cfg = MicroDualNetConfig.ma52()
    model = MicroDualNet(cfg).eval()
    frames, kp = _inputs(b=1, t=8, h=224, w=224)
    with torch.no_grad():  # its speed is bench/bench_model.py's, not a test's (no wall-clock limit here)
        out = model(frames, kp)
    _check_contract(out, 1, 8, 6, 256, 52)
    assert cfg.backbone == "resnet101" and cfg.num_entities == 6 and cfg.num_frames == 8
    # Reference TSM ("blockres", n_round=2 for ResNet-101): blocks 0, 2, 4, ... of every stage.
    expect = [f"layer{s}.{i}" for s, n in zip(range(1, 5), (3, 4, 23, 3)) for i in range(0, n, 2)]
    assert model.backbone.shifted_blocks == expect and len(expect) == 2 + 2 + 12 + 2
    # IV-B sizes: 3 layers, 8 heads, FFN 1024, dropout 0.1 in all four transformers; router
    # 512 -> 128 -> 2; classifier 512 -> 256 -> 52 with dropout 0.5.
    dp = model.dual_path
    for tr in (dp.st_spatial, dp.st_temporal, dp.ts_spatial, dp.ts_temporal):
        assert len(tr.layers) == 3
        for layer in tr.layers:
            assert layer.num_heads == 8 and layer.ffn[0].out_features == 1024 and layer.drop1.p == 0.1
    assert dp.st_spatial is not dp.ts_spatial and dp.st_temporal is not dp.ts_temporal
    assert tuple(dp.fusion.w1.shape) == (6, 512, 128) and tuple(dp.fusion.w2.shape) == (6, 128, 2)
    cls = model.classifier
    assert (cls[0].in_features, cls[0].out_features, cls[3].out_features, cls[2].p) == (512, 256, 52, 0.5)
    imigue = MicroDualNetConfig.imigue()
    assert (imigue.num_entities, imigue.num_frames, imigue.num_classes) == (5, 16, 32)


def test_routing_parameter_count_paper_size():
    """K=6, D=256: 6 x (512*128+128 + LN 2*128 + 128*2+2 + prior 2) = 397,080 (paper: "~0.5M")."""
    router = EntityRouter(6, 256)
    assert sum(p.numel() for p in router.parameters()) == 397_080


def test_routing_sums_to_one_and_sharpens_with_lower_temperature():
    torch.manual_seed(0)
    router = EntityRouter(3, 16).eval()
    with torch.no_grad():  # the output layer starts at zero (exactly 0.5 / 0.5); give it trained-like weights
        router.w2.uniform_(-0.5, 0.5)
        router.b2.uniform_(-0.5, 0.5)
    x_st, x_ts = torch.randn(2, 5, 3, 16), torch.randn(2, 5, 3, 16)
    previous = None
    for tau in (2.0, 1.0, 0.7, 0.3, 0.1):
        router.temperature = tau
        fused, alpha = router(x_st, x_ts)
        assert torch.allclose(alpha.sum(-1), torch.ones(2, 5, 3), atol=1e-6)
        assert torch.allclose(fused, alpha[..., :1] * x_st + alpha[..., 1:] * x_ts, atol=1e-6)
        peak = alpha.max(-1).values
        if previous is not None:
            assert (peak >= previous - 1e-6).all() and peak.mean() > previous.mean()
        previous = peak
    # Zero-initialised prior: with the routing nets' output zeroed, both paths get exactly 0.5.
    assert torch.equal(router.prior, torch.zeros(3, 2))
    with torch.no_grad():
        router.w2.zero_()
        router.b2.zero_()
    fused, alpha = router(x_st, x_ts)
    assert torch.equal(alpha, torch.full_like(alpha, 0.5)) and torch.allclose(fused, (x_st + x_ts) / 2)
    # The prior b_i acts per entity, and the softmax runs over the two paths, not over entities:
    # a prior on entity 0 changes only entity 0's weights.
    with torch.no_grad():
        router.prior[0] = torch.tensor([1.0, 0.0])
    router.temperature = 0.5
    _, alpha = router(x_st, x_ts)
    expect0 = torch.softmax(torch.tensor([1.0, 0.0]) / 0.5, -1)
    assert torch.allclose(alpha[:, :, 0], expect0.expand(2, 5, 2), atol=1e-6)
    assert torch.equal(alpha[:, :, 1:], torch.full_like(alpha[:, :, 1:], 0.5))


def test_eval_is_deterministic_and_train_uses_dropout():
    torch.manual_seed(0)
    model = MicroDualNet(MicroDualNetConfig.tiny()).eval()
    frames, kp = _inputs()
    with torch.no_grad():
        a, b = model(frames, kp), model(frames, kp)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.routing, b.routing)
    # Router dropout alone (everything else deterministic): train mode changes the routing weights
    # (once the router's output layer, zero at initialisation, has weights).
    router = model.dual_path.fusion
    with torch.no_grad():
        router.w2.uniform_(-0.5, 0.5)
        a = model(frames, kp)
    router.train()
    with torch.no_grad():
        c = model(frames, kp)
    assert torch.equal(c.x_st, a.x_st) and not torch.equal(c.routing, a.routing)


def test_mac_reaches_both_paths_when_routing_is_forced_to_one():
    torch.manual_seed(0)
    model = MicroDualNet(MicroDualNetConfig.tiny())
    with torch.no_grad():
        model.dual_path.fusion.prior[:] = torch.tensor([50.0, -50.0])  # everything to ST
    frames, kp = _inputs()
    kp[..., 2] = 0.9  # all entities visible, so MAC weighs every term
    out = model(frames, kp)
    assert out.routing[..., 0].min() > 0.999

    def grad_norm(module):
        return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)

    # Cross-entropy alone: the TS path is (numerically) cut off by the routing.
    model.zero_grad()
    model.loss(out, torch.tensor([1, 2])).ce.backward(retain_graph=True)
    assert grad_norm(model.dual_path.ts_temporal) < 1e-6 * max(grad_norm(model.dual_path.st_temporal), 1e-12)
    # MAC on the raw path outputs: both paths get gradient.
    model.zero_grad()
    model.loss(out, torch.tensor([1, 2])).mac.backward()
    assert grad_norm(model.dual_path.ts_temporal) > 0 and grad_norm(model.dual_path.ts_spatial) > 0
    assert grad_norm(model.dual_path.st_temporal) > 0 and grad_norm(model.dual_path.st_spatial) > 0


@pytest.mark.parametrize("overrides", [
    {"paths": "st"}, {"paths": "ts"}, {"fusion": "average"}, {"use_mac": False},
    {"modality": "rgb"}, {"modality": "pose"}, {"share_path_transformers": True},
    {"project_global": False}, {"tsm_block_interval": 0},
])
def test_ablations_run_forward_and_backward(overrides):
    torch.manual_seed(0)
    cfg = MicroDualNetConfig.tiny(**overrides)
    model = MicroDualNet(cfg)
    frames, kp = _inputs(j=33)
    if cfg.modality == "rgb":
        kp = None  # fixed body regions: keypoints are not needed
    out = model(None if cfg.modality == "pose" else frames, kp)
    assert out.logits.shape == (2, 52)
    assert torch.allclose(out.routing.sum(-1), torch.ones(2, 4, 6))
    terms = model.loss(out, torch.tensor([3, 4]))
    terms.total.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values()), \
        [n for n, g in grads.items() if g is None]  # every parameter is used and gets a finite gradient
    if cfg.paths != "dual" or not cfg.use_mac:
        assert terms.mac.item() == 0
    if cfg.paths == "st":
        assert out.x_ts is None and (out.routing[..., 0] == 1).all()
    if cfg.paths == "ts":
        assert out.x_st is None and (out.routing[..., 1] == 1).all()
    if cfg.fusion == "average":
        assert (out.routing == 0.5).all()
    if cfg.modality == "rgb":
        assert (out.entity_conf == 1).all()
        assert torch.equal(out.boxes, fixed_region_boxes(cfg.layout, 2, 4, 64, 64))
    if cfg.modality == "pose":
        assert not hasattr(model, "backbone") and out.boxes is None
    if cfg.share_path_transformers:
        assert model.dual_path.st_spatial is model.dual_path.ts_spatial


def test_temporal_shift_moves_one_eighth_each_way():
    b, t, c = 2, 3, 16
    x = torch.arange(b * t * c, dtype=torch.float32).reshape(b * t, c, 1, 1)
    y = temporal_shift(x, t, 8).reshape(b, t, c)
    v = x.reshape(b, t, c)
    assert torch.equal(y[:, :-1, :2], v[:, 1:, :2]) and (y[:, -1, :2] == 0).all()
    assert torch.equal(y[:, 1:, 2:4], v[:, :-1, 2:4]) and (y[:, 0, 2:4] == 0).all()
    assert torch.equal(y[:, :, 4:], v[:, :, 4:])


def test_temporal_shift_of_channels_last_input_is_the_same():
    x = torch.randn(2 * 3, 16, 4, 5)
    y = temporal_shift(x.contiguous(memory_format=torch.channels_last), 3, 8)
    assert torch.equal(y, temporal_shift(x, 3, 8))
    assert y.is_contiguous(memory_format=torch.channels_last)  # the next conv gets NHWC, no conversion
    assert temporal_shift(x, 3, 8).is_contiguous()


def test_tsm_block_interval_follows_the_reference_rule():
    """None: every other block when layer3 has >= 23 blocks (ResNet-101), every block otherwise."""
    r50 = TSMResNet("resnet50", width_per_group=16)
    assert r50.shifted_blocks == [f"layer{s}.{i}" for s, n in zip(range(1, 5), (3, 4, 6, 3)) for i in range(n)]
    assert MicroDualNetConfig.ma52().tsm_interval == 2
    assert MicroDualNetConfig.ma52(backbone="resnet50").tsm_interval == 1
    assert MicroDualNetConfig.ma52(tsm_block_interval=0).tsm_interval == 0
    assert MicroDualNetConfig.tiny().tsm_interval == 1


def test_shift_is_in_the_residual_branch_only():
    """conv1 of a shifted block sees the shifted input; the identity path gets the frame's own x."""
    torch.manual_seed(0)
    net = TSMResNet("resnet_tiny", width_per_group=16, block_interval=1).eval()
    block = net.layer2[0]  # has a downsample branch: the identity path is a conv too
    net._set_num_frames(3)
    x = torch.randn(2 * 3, 256, 8, 8)
    seen = {}
    block.conv1.net.register_forward_pre_hook(lambda m, inp: seen.update(conv1_in=inp[0].clone()))
    with torch.no_grad():
        block(x)
        assert torch.equal(seen["conv1_in"], temporal_shift(x, 3, 8))
        # Silence the residual branch: the block output is then relu(downsample(x)) of the
        # unshifted x, frame by frame.
        block.bn3.weight.zero_()
        block.bn3.bias.zero_()
        assert torch.equal(block(x), torch.relu(block.downsample(x)))


def test_shift_does_not_leak_between_clips_of_a_batch():
    """[B*T, ...] folding: the shift stays inside each clip, so other clips never change a clip's maps."""
    torch.manual_seed(0)
    net = TSMResNet("resnet_tiny", width_per_group=16, block_interval=1).eval()  # eval: BN per sample
    frames = torch.randn(2, 3, 3, 64, 64)
    other = frames.clone()
    other[1] = torch.randn(3, 3, 64, 64)  # clip 2 replaced entirely
    with torch.no_grad():
        a, _ = net(frames)
        b, _ = net(other)
        alone, _ = net(frames[:1])
    assert torch.equal(a[0], b[0])  # clip 1 untouched, its first and last frames included
    assert torch.allclose(a[0], alone[0], atol=1e-5)  # same as clip 1 on its own
    assert not torch.allclose(a[1], b[1])
    # A leaking shift would feed clip 2's first frame into clip 1's last one; check the mechanism too.
    x = torch.arange(2 * 3 * 16, dtype=torch.float32).reshape(6, 16, 1, 1)
    y = temporal_shift(x, 3, 8)
    assert (y[2, :2] == 0).all() and (y[3, 2:4] == 0).all()


def test_backbone_mixes_frames_only_through_shifts():
    torch.manual_seed(0)
    frames = torch.randn(1, 3, 3, 64, 64)
    changed = frames.clone()
    changed[:, 2] = torch.randn(3, 64, 64)
    for interval, mixes in ((1, True), (0, False)):
        net = TSMResNet("resnet_tiny", width_per_group=16, block_interval=interval).eval()
        with torch.no_grad():
            maps_a, pooled_a = net(frames)
            maps_b, _ = net(changed)
        assert maps_a.shape == (1, 3, 2048, 2, 2) and pooled_a.shape == (1, 3, 2048)
        # Changing frame 2 reaches frames 1 and 0 only through shifts (one frame per shifted block;
        # the tiny backbone has four), and leaves them untouched without shifts.
        for f in (0, 1):
            assert torch.allclose(maps_a[:, f], maps_b[:, f]) is not mixes


def test_router_equals_per_entity_reference_networks():
    """The batched router computes K independent Linear-LayerNorm-ReLU-Dropout-Linear nets + b_i."""
    torch.manual_seed(0)
    k, d = 4, 16
    router = EntityRouter(k, d, temperature=0.7).eval()
    with torch.no_grad():
        router.prior.normal_()
        router.ln_weight.normal_()
        router.ln_bias.normal_()
    x_st, x_ts = torch.randn(2, 3, k, d), torch.randn(2, 3, k, d)
    for i in range(k):
        net = torch.nn.Sequential(torch.nn.Linear(2 * d, d // 2), torch.nn.LayerNorm(d // 2), torch.nn.ReLU(),
                                  torch.nn.Dropout(0.1), torch.nn.Linear(d // 2, 2)).eval()
        with torch.no_grad():
            net[0].weight.copy_(router.w1[i].T), net[0].bias.copy_(router.b1[i])
            net[1].weight.copy_(router.ln_weight[i]), net[1].bias.copy_(router.ln_bias[i])
            net[4].weight.copy_(router.w2[i].T), net[4].bias.copy_(router.b2[i])
            r = net(torch.cat([x_st[:, :, i], x_ts[:, :, i]], -1)) + router.prior[i]
            expect = torch.softmax(r / 0.7, -1)
            assert torch.allclose(router(x_st, x_ts)[1][:, :, i], expect, atol=1e-5)
