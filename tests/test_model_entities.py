"""Spatial Entity Module: ROIAlign geometry (pixels, stride 32, per-frame batch index), clip
permutation, box carry-over, and the locality of Spatial-T / Temporal-T attention."""

from __future__ import annotations

import torch

from model.config import MicroDualNetConfig
from model.entity_module import SpatialEntityModule
from model.micro_dualnet import MicroDualNet
from model.taxonomy import MA52_ENTITIES
from model.transformers import SpatialTransformer, TemporalTransformer
from model.entities import entity_boxes


def _coordinate_maps(b, t, h, w):
    """maps [B, T, 3, h, w]: channel 0 = cell column, 1 = cell row, 2 = frame id b*T + t.

    Bilinear interpolation reproduces linear functions exactly, so ROIAlign of these maps reads back
    where (in feature cells) and on which frame it sampled.
    """
    cols = torch.arange(w, dtype=torch.float32).expand(h, w)
    rows = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w)
    maps = torch.zeros(b, t, 3, h, w)
    maps[:, :, 0], maps[:, :, 1] = cols, rows
    maps[:, :, 2] = torch.arange(b * t, dtype=torch.float32).reshape(b, t, 1, 1)
    return maps


def test_roi_align_reads_pixel_boxes_at_stride_32_on_their_own_frame():
    b, t, k, s = 2, 3, MA52_ENTITIES.num_entities, 3
    h, w = 8, 10  # a 256 x 320 frame
    sem = SpatialEntityModule(MA52_ENTITIES, in_channels=3, dim=4, roi_size=s).eval()
    g = torch.Generator().manual_seed(0)
    # Boxes well inside the frame (sample points stay between cell centres: no border clamping).
    x1 = 32 + torch.rand(b, t, k, generator=g) * 120
    y1 = 32 + torch.rand(b, t, k, generator=g) * 80
    boxes = torch.stack([x1, y1, x1 + 20 + torch.rand(b, t, k, generator=g) * 100,
                         y1 + 20 + torch.rand(b, t, k, generator=g) * 80], dim=-1)
    crops = sem.roi_crops(_coordinate_maps(b, t, h, w), boxes)
    assert crops.shape == (b, t, k, 3, s, s)
    # Bin centres in pixels, then in feature cells: cell j is centred on pixel 32 j + 16.
    frac = (torch.arange(s) + 0.5) / s
    bx = boxes[..., 0:1] + frac * (boxes[..., 2:3] - boxes[..., 0:1])  # [B, T, K, s]
    by = boxes[..., 1:2] + frac * (boxes[..., 3:4] - boxes[..., 1:2])
    expect_col = (bx / 32 - 0.5)[..., None, :].expand(b, t, k, s, s)
    expect_row = (by / 32 - 0.5)[..., :, None].expand(b, t, k, s, s)
    assert torch.allclose(crops[:, :, :, 0], expect_col, atol=1e-4)
    assert torch.allclose(crops[:, :, :, 1], expect_row, atol=1e-4)
    # Each ROI sampled its own frame: (b, t) -> frame b*T + t, for every entity.
    frame = torch.arange(b * t, dtype=torch.float32).reshape(b, t, 1, 1, 1).expand(b, t, k, s, s)
    assert torch.allclose(crops[:, :, :, 2], frame, atol=1e-5)


def _inputs(b=3, t=4, h=64, w=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    frames = torch.randn(b, t, 3, h, w, generator=g)
    kp = torch.rand(b, t, 25, 3, generator=g) * torch.tensor([w, h, 1.0])
    kp[..., 2] = 0.5 + 0.5 * kp[..., 2]  # all joints visible
    return frames, kp


def test_permuting_clips_permutes_every_output():
    torch.manual_seed(0)
    model = MicroDualNet(MicroDualNetConfig.tiny()).eval()  # eval: BatchNorm uses running stats
    frames, kp = _inputs()
    perm = torch.tensor([2, 0, 1])
    with torch.no_grad():
        a = model(frames, kp)
        p = model(frames[perm], kp[perm])
    for name in ("logits", "x_st", "x_ts", "routing", "entity_conf", "boxes", "fused"):
        assert torch.allclose(getattr(p, name), getattr(a, name)[perm], atol=1e-5), name


def test_entity_box_is_carried_over_when_its_joints_disappear():
    torch.manual_seed(0)
    model = MicroDualNet(MicroDualNetConfig.tiny()).eval()
    frames, kp = _inputs(b=1)
    lh = MA52_ENTITIES.names.index("left hand")
    joints = list(MA52_ENTITIES.entities[lh].joints_for(False))  # BODY_25 input: fallback joints
    hidden = kp.clone()
    hidden[0, 2, joints, 2] = 0.1  # below theta = 0.3 at frame 2
    hidden[0, 2, joints, :2] = torch.tensor([1.0, 1.0])  # and somewhere else entirely
    with torch.no_grad():
        a, b = model(frames, kp), model(frames, hidden)
    assert torch.equal(b.boxes[0, 2, lh], b.boxes[0, 1, lh])  # Eq. 1: B_{i,t} = B_{i,t-1}
    assert not torch.equal(a.boxes[0, 2, lh], a.boxes[0, 1, lh])
    others = [i for i in range(MA52_ENTITIES.num_entities) if i != lh and
              not set(MA52_ENTITIES.entities[i].joints_for(False)) & set(joints)]
    assert torch.equal(b.boxes[0, :, others], a.boxes[0, :, others])
    assert b.entity_conf[0, 2, lh] < a.entity_conf[0, 2, lh]
    # The boxes the model used are exactly Eq. 1's (pixels of the frames).
    assert torch.equal(b.boxes, entity_boxes(hidden, (64, 64), layout=MA52_ENTITIES).boxes)


def _changed_positions(module, x, where):
    """Indices (b, t, k) whose output changes when x[where] is perturbed."""
    x2 = x.clone()
    x2[where] += 1.0
    with torch.no_grad():
        diff = (module(x) - module(x2)).abs().amax(-1)
    return {tuple(i) for i in (diff > 1e-6).nonzero().tolist()}


def test_spatial_t_attends_within_a_frame_and_temporal_t_within_an_entity():
    torch.manual_seed(0)
    b, t, k, d = 2, 5, MA52_ENTITIES.num_entities, 16
    x = torch.randn(b, t, k, d)
    spatial = SpatialTransformer(MA52_ENTITIES, d, num_layers=1, num_heads=2, ffn_dim=32, dropout=0.1).eval()
    temporal = TemporalTransformer(d, num_layers=1, num_heads=2, ffn_dim=32, dropout=0.1).eval()
    where = (1, 2, 3)
    assert _changed_positions(spatial, x, where) == {(1, 2, i) for i in range(k)}  # same (b, t)
    assert _changed_positions(temporal, x, where) == {(1, j, 3) for j in range(t)}  # same (b, k)


def test_encoder_layer_is_post_ln_eqs_4_5():
    """X'' = LN(X' + MHSA(X')), X^ = LN(X'' + FFN(X'')), written out by hand (eval: no dropout)."""
    from model.transformers import PostLNEncoderLayer

    torch.manual_seed(0)
    n, length, d, heads = 3, 5, 16, 4
    layer = PostLNEncoderLayer(d, heads, 32, 0.1).eval()
    with torch.no_grad():
        for norm in (layer.norm1, layer.norm2):  # non-trivial LayerNorm affine parameters
            norm.weight.normal_()
            norm.bias.normal_()
    x = torch.randn(n, length, d)
    q, k, v = layer.qkv(x).split(d, dim=-1)
    split = lambda z: z.reshape(n, length, heads, d // heads).transpose(1, 2)  # noqa: E731
    att = torch.softmax(split(q) @ split(k).transpose(-1, -2) / (d // heads) ** 0.5, dim=-1) @ split(v)
    mhsa = layer.proj(att.transpose(1, 2).reshape(n, length, d))
    ln = torch.nn.functional.layer_norm
    x2 = ln(x + mhsa, (d,), layer.norm1.weight, layer.norm1.bias)
    ffn = layer.ffn[3](torch.nn.functional.gelu(layer.ffn[0](x2)))
    expect = ln(x2 + ffn, (d,), layer.norm2.weight, layer.norm2.bias)
    with torch.no_grad():
        assert torch.allclose(layer(x), expect, atol=1e-5)
