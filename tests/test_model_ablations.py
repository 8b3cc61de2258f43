"""Every MA-52 row of the paper's Tables I-IV as a config (recipes.paper_rows.PAPER_ROWS): each builds at toy
size, runs forward and backward, and has the structural property that defines the row. Also: routing
starts at exactly 0.5/0.5, MAC granularity, the MAC confidence rule, and the entity definition that a
checkpoint carries across keypoint formats."""

from __future__ import annotations

import pytest
import torch

from model.checkpoint import load_checkpoint, save_checkpoint
from model.config import MicroDualNetConfig
from recipes.paper_rows import PAPER_ROWS, paper_row_config
from model.entities import EntityDefinition, KeypointFormatError, entity_boxes
from model.entity_module import center_crop_boxes, fixed_region_boxes
from model.losses import mac_loss
from model.micro_dualnet import MicroDualNet
from model.preprocessing import ClassList, Preprocessing
from model.taxonomy import KEYPOINT_NAMES, NUM_BODY25
from model.windows import MA52_16F_PLAN, MA52_PLAN

# The tiny preset's sizes; frame count, layout and the row's switches come from the row.
TINY = dict(image_size=(64, 64), backbone="resnet_tiny", backbone_width_per_group=16, tsm_block_interval=1,
            embed_dim=32, num_layers=1, num_heads=2, ffn_dim=64, residual_mlp_hidden=32, classifier_hidden=32)
H = W = 64


def _keypoints(b, t, j=33, seed=0, conf=None):
    g = torch.Generator().manual_seed(seed)
    kp = torch.rand(b, t, j, 3, generator=g) * torch.tensor([W - 1.0, H - 1.0, 1.0])
    if conf is not None:
        kp[..., 2] = conf
    return kp


def _frames(b, t, seed=0):
    return torch.randn(b, t, 3, H, W, generator=torch.Generator().manual_seed(seed))


def test_registry_covers_every_ma52_row_of_tables_i_to_iv():
    per_table = {}
    for row in PAPER_ROWS.values():
        per_table.setdefault(row.table, []).append(row.label)
    # Table I: the three Micro-DualNet rows (the others are published baselines); II: 7; III: 5; IV: 11.
    assert {t: len(v) for t, v in per_table.items()} == {"I": 3, "II": 7, "III": 5, "IV": 11}
    assert PAPER_ROWS["II.full"].top1 == 65.10 and PAPER_ROWS["IV.avg"].top1 == 61.4  # the table, not the text
    assert PAPER_ROWS["I.full"].plan == MA52_PLAN and PAPER_ROWS["II.full"].plan == MA52_16F_PLAN
    assert PAPER_ROWS["IV.32f"].plan.span == PAPER_ROWS["IV.4f"].plan.span == 64
    with pytest.raises(KeyError, match="unknown paper row"):
        paper_row_config("II.nope")


def _names(model):
    return [n for n, _ in model.named_parameters()]


def _check_row(key, model, cfg, out, frames, kp):
    names = _names(model)
    t = frames.shape[1]
    if key == "I.pose":
        assert not hasattr(model, "backbone") and out.boxes is None
    elif key == "I.rgb":
        assert (out.entity_conf == 1).all()
        assert torch.equal(out.boxes, fixed_region_boxes(cfg.layout, *out.boxes.shape[:2], H, W))
        with torch.no_grad():  # no keypoints anywhere: the output ignores them
            model.eval()
            assert torch.equal(model(frames, None).logits, model(frames, _keypoints(*kp.shape[:2], seed=9)).logits)
    elif key == "II.tsm":
        assert {n.split(".")[0] for n in names} == {"backbone", "global_proj", "classifier"}
        assert out.fused is None and out.routing is None and model.classifier[0].in_features == cfg.embed_dim
    elif key == "II.ts_only":
        assert not hasattr(model, "entities") and out.x_ts.shape[2] == 1  # no SEM: one whole-frame entity
        assert not any(n.startswith("dual_path.st_") for n in names) and out.boxes is None
    elif key == "II.sem":
        assert hasattr(model, "entities") and out.x_st is None and out.x_ts.shape[2] == 6
        assert not any(n.startswith("dual_path.st_") for n in names)
    elif key in ("II.dual", "II.mac"):
        assert not any(".fusion." in n for n in names) and (out.routing == 0.5).all()
        assert (model.loss(out, torch.zeros(len(frames), dtype=torch.long)).mac > 0) == (key == "II.mac")
    elif key == "II.routing":
        assert any(".fusion.w1" in n for n in names) and not cfg.mac_active
    elif key == "III.center":
        expect = center_crop_boxes(6, *out.boxes.shape[:2], H, W, 0.5)
        assert torch.equal(out.boxes, expect) and (out.boxes[..., :] == out.boxes[:, :, :1]).all()
        assert torch.equal(model.entities.boxes(_keypoints(*kp.shape[:2], seed=5), *kp.shape[:2], H, W, "cpu")[0],
                           expect)  # independent of the keypoints
    elif key == "III.fixed":
        assert torch.equal(out.boxes, fixed_region_boxes(cfg.layout, *out.boxes.shape[:2], H, W))
        assert not (out.entity_conf == 1).all()  # unlike Table I's RGB-only row, keypoints weight MAC
    elif key == "III.no_conf":
        a = mac_loss(out.x_st, out.x_ts, None)
        assert torch.allclose(model.loss(out, torch.zeros(len(frames), dtype=torch.long)).mac, a)
        assert not torch.allclose(a, mac_loss(out.x_st, out.x_ts, out.entity_conf))
    elif key == "III.no_lower":
        assert model.entity_definition.names == ("head", "face", "left hand", "right hand", "torso")
        assert out.x_st.shape[2] == 5
    elif key in ("IV.4f", "IV.8f", "IV.16f", "IV.32f"):
        assert out.x_st.shape[1] == t == cfg.num_frames == PAPER_ROWS[key].plan.clip_len
    elif key in ("IV.avg", "IV.max", "IV.lstm", "IV.temporal"):
        assert not hasattr(model, "dual_path") and out.x_st is None and out.routing is None
        agg = model.aggregation
        x = torch.randn(2, 5, 6, cfg.embed_dim)
        perm = torch.tensor([3, 0, 4, 1, 2])
        with torch.no_grad():
            agg.eval()
            f, f_perm = agg(x)[1], agg(x[:, perm])[1]
            # Entities are processed independently: changing entity 0 changes only entity 0's sequence.
            x2 = x.clone()
            x2[:, :, 0] += 1
            assert torch.equal(agg(x)[0][:, :, 1:], agg(x2)[0][:, :, 1:])
        order_free = key in ("IV.avg", "IV.max")
        assert torch.allclose(f, f_perm, atol=1e-6) == order_free
        assert (len(list(agg.parameters())) == 0) == order_free
    elif key in ("IV.frame_mac", "IV.video_mac"):
        # Video level ignores which time step matches which: reorder the TS path's time steps.
        perm = torch.arange(t).flip(0)
        a = model.loss(out, torch.zeros(len(frames), dtype=torch.long)).mac
        out.x_ts = out.x_ts[:, perm]
        b = model.loss(out, torch.zeros(len(frames), dtype=torch.long)).mac
        assert torch.allclose(a, b, atol=1e-5) == (key == "IV.video_mac")
    else:  # the full model, in each table
        assert key in ("I.full", "II.full", "III.keypoints", "IV.ours", "IV.16f")
        assert any(".fusion.w1" in n for n in names) and cfg.mac_active and cfg.boxes_from == "keypoints"


@pytest.mark.parametrize("key", sorted(PAPER_ROWS))
def test_every_paper_row_builds_runs_and_has_its_defining_structure(key):
    cfg = paper_row_config(key, **TINY)
    torch.manual_seed(0)
    model = MicroDualNet(cfg)
    t = cfg.num_frames if key.startswith("IV.") and key.endswith("f") else 4
    b = 1 if t > 8 else 2
    frames, kp = _frames(b, t), _keypoints(b, t, conf=None)
    out = model(None if cfg.modality == "pose" else frames, None if cfg.modality == "rgb" else kp)
    assert out.logits.shape == (b, 52) and torch.isfinite(out.logits).all()
    terms = model.loss(out, torch.arange(b))
    terms.total.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing  # every parameter of the row's model is used
    if not cfg.mac_active:
        assert terms.mac.item() == 0
    _check_row(key, model, cfg, out, frames, kp)


def test_classifier_input_switch_512_or_2304_at_paper_size():
    assert MicroDualNetConfig.ma52().classifier_input_dim == 512
    assert MicroDualNetConfig.ma52(project_global=False).classifier_input_dim == 2304
    assert MicroDualNetConfig.ma52_16f().num_frames == 16


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_routing_is_exactly_half_for_any_input_at_initialisation(seed):
    torch.manual_seed(seed)
    model = MicroDualNet(MicroDualNetConfig.tiny())
    g = torch.Generator().manual_seed(100 + seed)
    frames = torch.randn(2, 4, 3, H, W, generator=g) * (1 + 10 * seed)
    kp = _keypoints(2, 4, seed=seed)
    for mode in (model.eval, model.train):  # router dropout in train mode changes nothing either
        mode()
        out = model(frames, kp)
        assert torch.equal(out.routing, torch.full_like(out.routing, 0.5))
    # ... and it learns: one step moves the output layer away from zero.
    model.loss(out, torch.tensor([0, 1])).total.backward()
    assert model.dual_path.fusion.w2.grad.abs().sum() > 0


def test_video_level_mac_by_hand():
    torch.manual_seed(0)
    x_st, x_ts = torch.randn(2, 3, 4, 8), torch.randn(2, 3, 4, 8)
    conf = torch.rand(2, 3, 4)
    got = mac_loss(x_st, x_ts, conf, 0.07, granularity="video")
    num = den = 0.0
    for b in range(2):
        z_st = torch.nn.functional.normalize(x_st[b].mean(0), dim=-1)
        z_ts = torch.nn.functional.normalize(x_ts[b].mean(0), dim=-1)
        for i in range(4):
            sims = torch.stack([z_st[i] @ z_ts[j] for j in range(4)]) / 0.07
            w = conf[b, :, i].mean()
            num += w * -(sims[i] - torch.logsumexp(sims, 0))
            den += w
    assert torch.allclose(got, num / den, atol=1e-5)


def test_mac_confidence_rule_for_carried_over_boxes():
    kp = torch.zeros(3, 25, 3)
    wrist, elbow = KEYPOINT_NAMES.index("LWrist"), KEYPOINT_NAMES.index("LElbow")
    kp[:, wrist] = torch.tensor([10.0, 10.0, 0.9])
    kp[:, elbow] = torch.tensor([20.0, 30.0, 0.9])
    kp[1, elbow, 2] = 0.2  # frame 1: one visible joint -> box carried over; elbow below theta
    hand = 2  # "left hand" in the MA-52 layout
    rules = {r: entity_boxes(kp, (64, 64), confidence_rule=r, keypoint_format="body25").confidence[:, hand]
             for r in ("all_joints", "visible_joints", "own_box")}
    assert rules["all_joints"][1] == pytest.approx((0.9 + 0.2) / 2)
    assert rules["visible_joints"][1] == pytest.approx(0.9 / 2)
    assert rules["own_box"][1] == 0 and rules["own_box"][0] == pytest.approx(0.9)
    assert MicroDualNetConfig().entity_confidence == "own_box"


def _blazepose_like(b=1, t=3, seed=0):
    """J=33 keypoints whose finger points lie far from wrist and elbow, so hand boxes differ by format."""
    kp = _keypoints(b, t, j=33, seed=seed)
    kp[..., 2] = 0.9
    for name in ("LPinky", "LIndex", "LThumb", "RPinky", "RIndex", "RThumb"):
        kp[..., KEYPOINT_NAMES.index(name), :2] = torch.tensor([60.0, 60.0])
    return kp


def test_body25_checkpoint_on_blazepose_keypoints_uses_body25_boxes(tmp_path):
    torch.manual_seed(0)
    model = MicroDualNet(MicroDualNetConfig.tiny(keypoint_format="body25"))
    path = save_checkpoint(tmp_path / "m.pt", model, classes=ClassList.ma52(), preprocessing=Preprocessing(),
                           plan=MA52_PLAN)
    ck = load_checkpoint(path)
    assert ck.entities.keypoint_format == "body25"
    assert dict(ck.entities.entities)["left hand"] == ("LWrist", "LElbow")
    kp33 = _blazepose_like()
    frames = _frames(1, 3)
    with torch.no_grad():
        out33 = ck.model(frames, kp33)
        out25 = ck.model(frames, kp33[..., :NUM_BODY25, :])  # the same person from OpenPose
    body25 = entity_boxes(kp33[..., :NUM_BODY25, :], (W, H)).boxes
    with_extra = entity_boxes(kp33, (W, H)).boxes  # what the per-clip "auto" rule would have used
    assert torch.equal(out33.boxes, body25) and torch.equal(out33.boxes, out25.boxes)
    assert torch.equal(out33.logits, out25.logits)
    assert not torch.equal(out33.boxes, with_extra)


def test_blazepose_extra_checkpoint_refuses_body25_keypoints(tmp_path):
    model = MicroDualNet(MicroDualNetConfig.tiny(keypoint_format="body25_extra"))
    path = save_checkpoint(tmp_path / "m.pt", model, classes=ClassList.ma52(), preprocessing=Preprocessing(),
                           plan=MA52_PLAN)
    ck = load_checkpoint(path)
    assert dict(ck.entities.entities)["left hand"] == ("LWrist", "LPinky", "LIndex", "LThumb")
    frames, kp33 = _frames(1, 3), _blazepose_like()
    with torch.no_grad():
        out = ck.model(frames, kp33)
    assert torch.equal(out.boxes, entity_boxes(kp33, (W, H)).boxes)
    with pytest.raises(KeypointFormatError, match="J=25"):
        ck.model(frames, kp33[..., :NUM_BODY25, :])
    padded = kp33.clone()
    padded[..., NUM_BODY25:, :] = 0  # OpenPose keypoints padded to 33 points
    with pytest.raises(KeypointFormatError, match="no extra point"):
        ck.model(frames, padded)


def test_entity_definition_round_trip_and_subsets():
    d = MicroDualNetConfig.tiny(entity_names=("head", "left hand", "right hand", "torso")).entity_definition
    assert d.names == ("head", "left hand", "right hand", "torso") and d.num_entities == 4
    assert EntityDefinition.from_dict(d.to_dict()) == d
    with pytest.raises(ValueError, match="uses extra points"):
        EntityDefinition("ma52", (("left hand", ("LWrist", "LThumb")),), keypoint_format="body25")
    with pytest.raises(ValueError, match="subset"):
        MicroDualNetConfig.tiny(entity_names=("tail",))
