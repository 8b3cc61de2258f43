"""MANet (MA-52 paper IV-C): shapes, parameter counts at the paper's configuration, every paper row
(forward, backward, defining property), the temporal SE gate, the SE-then-shift order, the
joint-embedding loss against a hand computation, label-vector files, weights and a state-dict round
trip. Tiny inputs throughout (the paper-size model is only built, never run)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torchvision
from pydantic import TypeAdapter, ValidationError

from model.backbone import TSMResNet, TemporalShift, temporal_shift
from model.config import BACKBONE_ARCHS
from model.inference import count_parameters
from model.manet import MANet, MANetConfig, MANetOutput, TemporalSE
from model.manet_loss import LabelVectorsError, joint_embedding_loss, manet_loss, read_label_vectors
from model.preprocessing import ClassList
from model.weights import load_backbone_weights
from recipes.manet_paper_rows import MANET_PAPER_ROWS, MANET_TRAINING, METRICS, manet_row_config

H, W = 32, 32
TINY = dict(num_frames=4, image_size=(H, W), backbone="resnet_tiny", backbone_width_per_group=16,
            embedding_dim=16, embedding_hidden=16)


def _frames(b=2, t=4, h=H, w=W, seed=0):
    return torch.randn(b, t, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _vectors(c=52, d=16, seed=0):
    return torch.randn(c, d, generator=torch.Generator().manual_seed(seed))


def _tiny(**overrides) -> MANet:
    torch.manual_seed(0)
    return MANet(MANetConfig.tiny(**overrides))


# --- config -------------------------------------------------------------------------------------

def test_defaults_are_the_papers_ma52_configuration():
    cfg = MANetConfig()
    assert (cfg.num_classes, cfg.num_frames, cfg.image_size) == (52, 8, (224, 224))  # V-B
    assert (cfg.backbone, cfg.tsm_shift_div, cfg.se_ratio, cfg.se_squeeze) == ("resnet50", 8, 4, "frame")  # IV-C
    assert (cfg.embedding_dim, cfg.embedding_weight, cfg.embedding_distance) == (300, 5.0, "euclidean")  # Eqs. 2-3
    assert cfg.use_se and cfg.has_embedding_head and MANetConfig.ma52() == cfg
    assert (MANET_TRAINING.lr, MANET_TRAINING.momentum, MANET_TRAINING.weight_decay, MANET_TRAINING.batch_size,
            MANET_TRAINING.epochs, MANET_TRAINING.lr_milestones) == (0.001, 0.9, 1e-4, 10, 80, (30, 60))


def test_config_round_trips_as_plain_data_and_refuses_bad_values():
    cfg = MANetConfig.tiny(se_squeeze="clip", extra={"run": "x"})
    d = cfg.to_dict()
    assert d["image_size"] == [H, W] and MANetConfig.from_dict(d) == cfg
    with pytest.raises(ValueError, match="unknown MANet config fields"):
        MANetConfig.from_dict({**d, "nope": 1})
    for bad, match in ((dict(backbone="vgg"), "backbone"), (dict(se_ratio=0), "se_ratio"),
                       (dict(se_squeeze="time"), "se_squeeze"), (dict(embedding_weight=-1.0), "embedding_weight"),
                       (dict(dropout=1.0), "dropout"), (dict(embedding_distance="cos"), "embedding_distance"),
                       (dict(image_size=(1, 2, 3)), "image_size")):
        with pytest.raises(ValueError, match=match):
            MANetConfig(**bad)
    with pytest.raises(ValidationError):  # the annotations carry the same bounds for pydantic
        TypeAdapter(MANetConfig).validate_python({"se_ratio": -2})
    assert TypeAdapter(MANetConfig).validate_python({"num_frames": 16}).num_frames == 16


# --- shapes, outputs -----------------------------------------------------------------------------

@pytest.mark.parametrize("t,h,w", [(4, 32, 32), (1, 32, 32), (3, 32, 48)])
def test_shapes_for_any_t_and_frame_size(t, h, w):
    model = _tiny().eval()
    with torch.no_grad():
        out = model(_frames(2, t, h, w))
    assert isinstance(out, MANetOutput)
    assert out.logits.shape == (2, 52) and out.embedding.shape == (2, 16) and out.features.shape == (2, 2048)
    assert torch.allclose(model.forward_features(_frames(2, t, h, w)), out.features)
    assert MANet.inputs == ("pixels",)


def test_keypoints_are_ignored_and_frames_required():
    model = _tiny().eval()
    frames = _frames()
    with torch.no_grad():
        assert torch.equal(model(frames).logits, model(frames, torch.rand(2, 4, 25, 3)).logits)
    with pytest.raises(ValueError, match="needs frames"):
        model(None)


def test_logits_are_the_average_of_per_frame_scores_and_embedding_order():
    model = _tiny().eval()
    frames = _frames()
    with torch.no_grad():
        per_frame = model.frame_features(frames)
        out = model(frames)
        assert torch.allclose(out.logits, model.classifier(per_frame).mean(1), atol=1e-6)
        assert torch.allclose(out.embedding, model.embedding_head(per_frame.mean(1)), atol=1e-6)  # average, then map
        model.cfg = model.cfg.replace(embed_before_average=True)
        assert torch.allclose(model(frames).embedding, model.embedding_head(per_frame).mean(1), atol=1e-6)


# --- parameter counts ------------------------------------------------------------------------------

def _block_inputs(arch: str) -> list[int]:
    """Input channels of every Bottleneck block: 64 into layer1.0, then 4 * planes (planes 64, 128, 256, 512)."""
    out, c = [], 64
    for planes, n in zip((64, 128, 256, 512), BACKBONE_ARCHS[arch]):
        out += [c] + [4 * planes] * (n - 1)
        c = 4 * planes
    return out


def test_parameter_count_at_the_paper_configuration():
    model = MANet(MANetConfig())
    r50 = torchvision.models.resnet50(weights=None)
    r50_trunk = count_parameters(r50) - (2048 * 1000 + 1000)
    se = sum(2 * c * (c // 4) for c in _block_inputs("resnet50"))  # reduce C->C/4 and expand C/4->C, no bias
    heads = (2048 * 52 + 52) + (2048 * 300 + 300) + (300 * 300 + 300)  # classifier, Linear-tanh-Linear to 300-d
    assert (r50_trunk, se, heads) == (23_508_032, 7_964_672, 811_548)
    assert count_parameters(model.backbone) == r50_trunk + se
    assert count_parameters(model) == r50_trunk + se + heads == 32_284_252
    assert len(model.backbone.shifted_blocks) == 16  # every ResNet-50 block shifts
    # For comparison, SE-ResNet-50 of Hu et al. (ratio 16 on each block's output, with biases) is
    # ResNet-50 + 2.53 M = 28.09 M with its 1000-class fc, the published number.
    hu = sum(2 * (4 * p) * (4 * p // 16) + 4 * p // 16 + 4 * p
             for p, n in zip((64, 128, 256, 512), (3, 4, 6, 3)) for _ in range(n))
    assert hu == 2_530_992 and round((count_parameters(r50) + hu) / 1e6, 2) == 28.09
    baseline = MANet(manet_row_config("V.baseline"))
    assert count_parameters(baseline) == r50_trunk + 2048 * 52 + 52  # plain TSM ResNet-50, 52-way fc


# --- every paper row -----------------------------------------------------------------------------

def test_rows_cover_every_manet_row_of_tables_ii_to_v():
    per_table: dict[str, int] = {}
    for row in MANET_PAPER_ROWS.values():
        per_table[row.table] = per_table.get(row.table, 0) + 1
        assert set(row.metrics) == set(METRICS)
    assert per_table == {"II": 1, "III": 3, "IV": 6, "V": 4}
    rows = MANET_PAPER_ROWS
    assert rows["II.manet"].metrics == rows["V.manet"].metrics == rows["IV.alpha5"].metrics == rows["III.T8"].metrics
    assert rows["IV.alpha0"].metrics == rows["V.no_emb"].metrics
    assert rows["II.manet"].top1 == 61.33 and rows["III.T16"].plan.clip_len == 16
    # The differences the text quotes (V-C) follow from the table values.
    f1 = {k: r.metrics["f1_mean"] for k, r in rows.items()}
    assert round(f1["V.manet"] - f1["V.no_emb"], 2) == 2.04 and round(f1["V.manet"] - f1["V.no_se"], 2) == 0.82
    assert round(f1["II.manet"] - f1["V.baseline"], 2) == 4.20
    assert round(rows["III.T8"].top1 - rows["III.T4"].top1, 2) == 6.76
    # Eq. 6 (F1mean = mean of the four F1) holds to rounding except where a row's note says otherwise.
    for key, row in rows.items():
        m = row.metrics
        mean4 = (m["f1_macro_coarse"] + m["f1_macro_fine"] + m["f1_micro_coarse"] + m["f1_micro_fine"]) / 4
        assert (abs(mean4 - m["f1_mean"]) < 0.01) == ("Eq. 6" not in row.note), key
    with pytest.raises(KeyError, match="unknown MANet paper row"):
        manet_row_config("V.nope")


@pytest.mark.parametrize("key", sorted(MANET_PAPER_ROWS))
def test_every_paper_row_builds_runs_and_has_its_defining_structure(key):
    row = MANET_PAPER_ROWS[key]
    cfg = row.config(**{**TINY, "num_frames": row.config().num_frames})
    torch.manual_seed(0)
    model = MANet(cfg, label_vectors=_vectors())
    t = min(cfg.num_frames, 8)
    out = model(_frames(2, t))
    assert out.logits.shape == (2, 52) and torch.isfinite(out.logits).all()
    terms = model.loss(out, torch.tensor([0, 1]))
    terms.total.backward()
    bad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not bad  # every parameter of the row's model is used and gets a finite gradient
    names = [n for n, _ in model.named_parameters()]
    has_gates = any(".conv1.gate." in n for n in names)
    assert has_gates == cfg.use_se == (key not in ("V.baseline", "V.no_se"))
    assert (out.embedding is None) == (cfg.embedding_weight == 0) == (key in ("IV.alpha0", "V.no_emb", "V.baseline"))
    if out.embedding is None:
        assert terms.emb.item() == 0 and torch.allclose(terms.total, terms.ce)
    else:
        assert terms.emb.item() > 0
        assert torch.allclose(terms.total, terms.ce + cfg.embedding_weight * terms.emb)
    assert cfg.num_frames == {"III.T4": 4, "III.T16": 16}.get(key, 8) == row.plan.clip_len


# --- the temporal SE gate --------------------------------------------------------------------------

def test_se_gates_lie_in_open_unit_interval_and_are_half_with_zero_excitation():
    torch.manual_seed(0)
    se = TemporalSE(64, ratio=4)
    x = torch.randn(8, 64, 5, 5) * 3
    s = se.gates(x, 4)
    assert s.shape == (8, 64) and (s > 0).all() and (s < 1).all()
    assert torch.allclose(se(x, 4), x * s[..., None, None])
    assert se.reduce.weight.shape == (16, 64) and se.expand.weight.shape == (64, 16) and se.reduce.bias is None
    with torch.no_grad():
        se.expand.weight.zero_()
    assert torch.equal(se(x * 100, 4), x * 100 * 0.5)  # sigmoid(0) = 1/2 for any input


def test_frame_squeeze_gates_each_frame_from_itself_clip_squeeze_shares_one_gate():
    torch.manual_seed(0)
    frame, clip = TemporalSE(32, squeeze="frame"), TemporalSE(32, squeeze="clip")
    clip.load_state_dict(frame.state_dict())
    x = torch.randn(2 * 4, 32, 3, 3)
    x2 = x.clone()
    x2[1] += 5  # clip 0, frame 1 changes
    a, b = frame.gates(x, 4), frame.gates(x2, 4)
    changed = (a - b).abs().amax(dim=1) > 0
    assert changed.tolist() == [False, True] + [False] * 6
    g = clip.gates(x, 4).reshape(2, 4, 32)
    assert torch.equal(g, g[:, :1].expand_as(g))
    # clip squeeze = frame squeeze of the clip-averaged descriptor
    z = x.mean(dim=(-2, -1)).reshape(2, 4, 32).mean(1)
    assert torch.allclose(g[:, 0], torch.sigmoid(frame.expand(torch.relu(frame.reduce(z)))), atol=1e-6)


def test_se_comes_before_the_shift_on_the_residual_branch():
    torch.manual_seed(0)
    t, fold = 4, 32 // 8
    se = TemporalSE(32)
    stage = TemporalShift(torch.nn.Identity(), 8, gate=se)
    stage.num_frames = t
    x = torch.randn(2 * t, 32, 3, 3)
    y = stage(x).reshape(2, t, 32, 3, 3)
    gx = se(x, t).reshape(2, t, 32, 3, 3)
    assert torch.equal(stage(x), temporal_shift(se(x, t), t, 8))
    assert torch.equal(y[:, :-1, :fold], gx[:, 1:, :fold]) and (y[:, -1, :fold] == 0).all()        # from t+1
    assert torch.equal(y[:, 1:, fold:2 * fold], gx[:, :-1, fold:2 * fold]) and (y[:, 0, fold:2 * fold] == 0).all()
    assert torch.equal(y[:, :, 2 * fold:], gx[:, :, 2 * fold:])
    assert not torch.allclose(stage(x), se(temporal_shift(x, t, 8), t))  # the order matters
    # In the model: every block's first conv is gated, its convolution stays at conv1.net.
    model = _tiny()
    for stage_name in ("layer1", "layer2", "layer3", "layer4"):
        conv1 = getattr(model.backbone, stage_name)[0].conv1
        assert isinstance(conv1, TemporalShift) and isinstance(conv1.gate, TemporalSE) and conv1.shift


def test_shift_makes_the_model_order_sensitive_and_without_it_frames_are_a_bag():
    frames = _frames(1, 4)
    perm = torch.tensor([2, 0, 3, 1])
    for interval, squeeze, order_free in ((1, "frame", False), (0, "frame", True), (0, "clip", True)):
        model = _tiny(tsm_block_interval=interval, se_squeeze=squeeze).eval()
        with torch.no_grad():
            a, b = model(frames).logits, model(frames[:, perm]).logits
        assert torch.allclose(a, b, atol=1e-6) == order_free, (interval, squeeze)


def test_without_se_the_backbone_is_the_plain_tsm_resnet():
    model = _tiny(use_se=False)
    plain = TSMResNet("resnet_tiny", width_per_group=16, block_interval=1)
    assert set(model.backbone.state_dict()) == set(plain.state_dict())
    gated = _tiny()
    extra = set(gated.backbone.state_dict()) - set(plain.state_dict())
    assert extra and all(re.fullmatch(r"layer\d\.0\.conv1\.gate\.(reduce|expand)\.weight", k) for k in extra)


# --- weights --------------------------------------------------------------------------------------

def test_imagenet_layout_weights_load_and_gates_keep_their_initialisation(tmp_path):
    source = TSMResNet("resnet_tiny", width_per_group=16, block_interval=0)  # no wrappers: torchvision names
    torch.manual_seed(1)
    for p in source.parameters():
        torch.nn.init.normal_(p)
    torch.save(source.state_dict(), tmp_path / "r.pth")
    model = _tiny()
    gates_before = {k: v.clone() for k, v in model.backbone.state_dict().items() if ".gate." in k}
    report = load_backbone_weights(model, tmp_path / "r.pth")
    got = model.backbone.state_dict()
    assert sorted(report.initialised) == sorted(gates_before) and len(gates_before) == 8
    assert all(torch.equal(got[k], v) for k, v in gates_before.items())
    for k, v in source.state_dict().items():
        assert torch.equal(got[k.replace(".conv1.", ".conv1.net.")], v), k


def test_the_authors_mmaction2_release_layout_loads_gates_too(tmp_path):
    torch.manual_seed(2)
    trained = _tiny()
    for p in trained.backbone.parameters():
        torch.nn.init.normal_(p)
    sd = {}
    for k, v in trained.backbone.state_dict().items():  # the release's names for the same tensors
        k2 = re.sub(r"^bn1\.", "conv1.bn.", re.sub(r"^conv1\.", "conv1.conv.", k))
        k2 = re.sub(r"\.conv1\.net\.", ".conv1.conv.net.", k2)
        k2 = re.sub(r"\.conv1\.gate\.reduce\.", ".conv1.conv.fcce.0.", k2)
        k2 = re.sub(r"\.conv1\.gate\.expand\.", ".conv1.conv.fcce.2.", k2)
        k2 = re.sub(r"\.(conv[23])\.weight$", r".\1.conv.weight", k2)
        k2 = re.sub(r"\.bn(\d)\.", r".conv\1.bn.", k2) if k2.startswith("layer") else k2
        k2 = re.sub(r"\.downsample\.0\.", ".downsample.conv.", re.sub(r"\.downsample\.1\.", ".downsample.bn.", k2))
        sd[f"backbone.{k2}"] = v
    sd["backbone.layer1.0.conv1.conv.action_p2_squeeze.weight"] = torch.zeros(16, 64, 1, 1)  # unused in the release
    sd["cls_head.fc_emb.weight"] = torch.zeros(300, 2048)
    torch.save({"state_dict": sd}, tmp_path / "manet.pth")
    model = _tiny()
    report = load_backbone_weights(model, tmp_path / "manet.pth")
    assert report.format == "mmaction2" and report.initialised == []
    assert "backbone.layer1.0.conv1.conv.action_p2_squeeze.weight" in report.dropped
    for k, v in trained.backbone.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[k], v), k


def test_state_dict_round_trip_through_a_weights_only_file(tmp_path):
    model = _tiny()
    model.set_label_vectors(_vectors())
    assert "label_vectors" not in model.state_dict()  # non-persistent: checkpoints do not carry the file
    torch.save({"config": model.cfg.to_dict(), "state_dict": model.state_dict()}, tmp_path / "m.pt")
    obj = torch.load(tmp_path / "m.pt", weights_only=True)
    again = MANet(MANetConfig.from_dict(obj["config"]))
    again.load_state_dict(obj["state_dict"], strict=True)
    model.eval(), again.eval()
    frames = _frames()
    with torch.no_grad():
        a, b = model(frames), again(frames)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.embedding, b.embedding)
    assert again.cfg == model.cfg and again.label_vectors is None and not again.embedding_loss_active


# --- the joint-embedding loss -----------------------------------------------------------------------

def test_joint_embedding_loss_by_hand():
    torch.manual_seed(0)
    z, q = torch.randn(3, 5), torch.randn(4, 5)
    y = torch.tensor([2, 0, 2])
    by_hand = sum(math.sqrt(sum((q[y[b], d] - z[b, d]).item() ** 2 for d in range(5))) for b in range(3)) / 3
    assert joint_embedding_loss(z, y, q).item() == pytest.approx(by_hand, rel=1e-6)
    mse = sum((q[y[b], d] - z[b, d]).item() ** 2 for b in range(3) for d in range(5)) / 15
    assert joint_embedding_loss(z, y, q, distance="mse").item() == pytest.approx(mse, rel=1e-6)
    logits = torch.randn(3, 4)
    out = MANetOutput(logits=logits, embedding=z, features=torch.zeros(3, 8))
    ce = -sum(torch.log_softmax(logits[b], 0)[y[b]].item() for b in range(3)) / 3
    terms = manet_loss(out, y, label_vectors=q, alpha=5.0)
    assert terms.ce.item() == pytest.approx(ce, rel=1e-6) and terms.emb.item() == pytest.approx(by_hand, rel=1e-6)
    assert terms.total.item() == pytest.approx(ce + 5 * by_hand, rel=1e-6)
    zz = q[y].clone().requires_grad_(True)  # z = q exactly: the norm's kink, gradient kept finite
    joint_embedding_loss(zz, y, q).backward()
    assert torch.isfinite(zz.grad).all()


def test_loss_is_off_without_label_vectors():
    model = _tiny()
    assert model.cfg.has_embedding_head and not model.embedding_loss_active
    out = model(_frames())
    terms = model.loss(out, torch.tensor([3, 4]))
    assert terms.emb.item() == 0 and torch.equal(terms.total, terms.ce)
    terms.total.backward()
    assert all(p.grad is None for p in model.embedding_head.parameters())  # the head is unused
    assert model.classifier.weight.grad is not None
    model.set_label_vectors(_vectors())
    assert model.embedding_loss_active and model.loss(model(_frames()), torch.tensor([3, 4])).emb.item() > 0
    with pytest.raises(ValueError, match=r"label vectors must be \[52, 16\]"):
        model.set_label_vectors(torch.zeros(51, 16))


# --- label-vector files -----------------------------------------------------------------------------

def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_label_vector_files_in_every_format(tmp_path):
    q = np.random.default_rng(0).normal(size=(52, 300))
    names = ClassList.ma52().names
    np.save(tmp_path / "q.npy", q)
    np.savetxt(tmp_path / "q.csv", q, delimiter=",")
    (tmp_path / "q.txt").write_text("\n".join(f"{n.replace(' ', '_')} " + " ".join(repr(float(v)) for v in row)
                                              for n, row in zip(names, q)) + "\n")
    (tmp_path / "named.csv").write_text("\n".join(f"{n}," + ",".join(repr(float(v)) for v in row)
                                                   for n, row in zip(names, q)))
    for name in ("q.npy", "q.csv", "q.txt", "named.csv"):
        got = read_label_vectors(tmp_path / name, 52)
        assert got.shape == (52, 300) and got.dtype == torch.float32
        assert torch.allclose(got, torch.as_tensor(q, dtype=torch.float32)), name
    assert read_label_vectors(tmp_path / "named.csv", 52, class_names=names).shape == (52, 300)


def test_bad_label_vector_files_give_one_line_errors(tmp_path):
    q = np.zeros((52, 300))
    np.save(tmp_path / "short.npy", q[:51])
    np.save(tmp_path / "narrow.npy", q[:, :299])
    np.savetxt(tmp_path / "short.csv", q[:50], delimiter=",")
    (tmp_path / "word.csv").write_text("0.1,0.2\n0.3,abc\n")
    (tmp_path / "ragged.txt").write_text("0.1 0.2\n0.3\n")
    q_nan = q.copy()
    q_nan[3, 4] = np.nan
    np.save(tmp_path / "nan.npy", q_nan)
    names = list(ClassList.ma52().names)
    swapped = [names[1], names[0]] + names[2:]
    (tmp_path / "order.csv").write_text("\n".join(f"{n}," + ",".join("0" for _ in range(300)) for n in swapped))
    (tmp_path / "q.json").write_text("[]")
    cases = {
        "missing.npy": "label-vector file not found",
        "short.npy": r"expected 52 rows \(one per class\) of 300 numbers, got shape \(51, 300\)",
        "narrow.npy": r"got shape \(52, 299\)",
        "short.csv": r"got shape \(50, 300\)",
        "word.csv": "line 2: 'abc' is not a number",
        "ragged.txt": "line 2 has 1 numbers, the first row 2",
        "nan.npy": "finite",
        "order.csv": "row 1 is .* but the model's class 0 is",
        "q.json": "must be a .npy, .csv, .txt file",
    }
    for name, match in cases.items():
        with pytest.raises(LabelVectorsError) as exc:
            read_label_vectors(tmp_path / name, 52, class_names=names)
        msg = _one_line(exc)
        assert re.search(match, msg) and str(tmp_path / name) in msg, (name, msg)
