"""Backbone weight conversion (torchvision / official TSM / mmaction2) and full checkpoints."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from torchvision.models.resnet import Bottleneck, ResNet

from model.backbone import TSMResNet
from model.config import MicroDualNetConfig
from model.micro_dualnet import MicroDualNet, micro_dualnet
from model.checkpoint import load_checkpoint, save_checkpoint
from model.preprocessing import ClassList, Preprocessing
from model.windows import IMIGUE_PLAN, MA52_PLAN
from model.weights import BackboneWeights, WeightsMismatchError, load_backbone_weights


@pytest.fixture(scope="module")
def r101_state():
    torch.manual_seed(0)
    return torchvision.models.resnet101(weights=None).state_dict()


def _as_tsm(sd, shifted_blocks):
    """Official TSM layout: module.base_model.*, shifted convs under conv1.net, new_fc head."""
    out = {}
    for k, v in sd.items():
        if k.startswith("fc."):
            continue
        m = re.match(r"^(layer\d+\.\d+)\.conv1\.(.+)$", k)
        if m and m.group(1) in shifted_blocks:
            k = f"{m.group(1)}.conv1.net.{m.group(2)}"
        out[f"module.base_model.{k}"] = v
    out["module.new_fc.weight"] = torch.zeros(52, 2048)
    out["module.new_fc.bias"] = torch.zeros(52)
    return out


def _as_mmaction2(sd, shifted_blocks):
    """mmaction2 ResNetTSM layout: ConvModule names, backbone.*, cls_head.*."""
    out = {}
    for k, v in sd.items():
        if k.startswith("fc."):
            continue
        k2 = re.sub(r"^conv1\.", "conv1.conv.", k)
        k2 = re.sub(r"^bn1\.", "conv1.bn.", k2)
        m = re.match(r"^(layer\d+\.\d+)\.(conv|bn)(\d)\.(.+)$", k)
        if m:
            block, kind, n, rest = m.groups()
            net = ".net" if kind == "conv" and n == "1" and block in shifted_blocks else ""
            k2 = f"{block}.conv{n}.{'conv' + net if kind == 'conv' else 'bn'}.{rest}"
        k2 = re.sub(r"\.downsample\.0\.", ".downsample.conv.", k2)
        k2 = re.sub(r"\.downsample\.1\.", ".downsample.bn.", k2)
        out[f"backbone.{k2}"] = v
    out["cls_head.fc_cls.weight"] = torch.zeros(400, 2048)
    out["cls_head.fc_cls.bias"] = torch.zeros(400)
    return {"meta": {"epoch": 50}, "state_dict": out}


def _assert_equal_to_source(backbone: TSMResNet, sd):
    got = backbone.state_dict()
    n = 0
    for k, v in sd.items():
        if k.startswith("fc."):
            continue
        target = k
        m = re.match(r"^(layer\d+\.\d+)\.conv1\.(.+)$", k)
        if m and m.group(1) in backbone.shifted_blocks:
            target = f"{m.group(1)}.conv1.net.{m.group(2)}"
        assert torch.equal(got[target], v), k
        n += 1
    assert n == len(got)  # every backbone tensor came from the source


@pytest.mark.parametrize("fmt", ["torchvision", "tsm", "mmaction2"])
def test_resnet101_layouts_load_exactly(fmt, r101_state, tmp_path):
    backbone = TSMResNet("resnet101", block_interval=2)
    assert "layer3.0" in backbone.shifted_blocks and "layer3.1" not in backbone.shifted_blocks
    # The file's shift placement is deliberately different (every block): it must not matter.
    all_blocks = {f"layer{s}.{i}" for s, n in zip(range(1, 5), (3, 4, 23, 3)) for i in range(n)}
    src = {"torchvision": lambda: r101_state, "tsm": lambda: _as_tsm(r101_state, all_blocks),
           "mmaction2": lambda: _as_mmaction2(r101_state, all_blocks)}[fmt]()
    path = tmp_path / f"{fmt}.pth"
    torch.save(src, path)
    report = load_backbone_weights(backbone, path)
    assert report.format == fmt
    assert report.loaded == len(backbone.state_dict())
    if fmt != "torchvision":
        assert report.dropped  # the classifier head was dropped, not loaded
    _assert_equal_to_source(backbone, r101_state)


def test_mismatch_lists_missing_and_unexpected_keys(tmp_path):
    sd = torchvision.models.resnet50(weights=None).state_dict()
    path = tmp_path / "r50.pth"
    torch.save(sd, path)
    backbone = TSMResNet("resnet101")
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    with pytest.raises(WeightsMismatchError) as err:
        load_backbone_weights(backbone, BackboneWeights(path, "torchvision"))
    msg = str(err.value)
    assert "missing in file" in msg and "layer3.22.conv1.weight" in msg
    assert "layer3.22.conv1.weight" in err.value.missing and not err.value.unexpected
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())  # untouched
    sd["layer9.extra.weight"] = torch.zeros(1)
    torch.save(sd, path)
    with pytest.raises(WeightsMismatchError, match="unexpected in file"):
        load_backbone_weights(TSMResNet("resnet50"), path)


def test_mismatch_lists_mis_shaped_keys_and_leaves_model_unchanged(tmp_path):
    torch.manual_seed(0)
    src = ResNet(Bottleneck, [1, 1, 1, 1], width_per_group=16).state_dict()
    src["layer2.0.conv1.weight"] = torch.zeros(7, 256, 1, 1)  # model: [32, 256, 1, 1] (shifted: conv1.net)
    src["bn1.running_mean"] = torch.zeros(3)
    path = tmp_path / "bad.pth"
    torch.save({"state_dict": src}, path)
    backbone = TSMResNet("resnet_tiny", width_per_group=16, block_interval=1)
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    with pytest.raises(WeightsMismatchError) as err:
        load_backbone_weights(backbone, path)
    assert sorted(m.split(":")[0] for m in err.value.mis_shaped) == ["bn1.running_mean", "layer2.0.conv1.weight"]
    assert not err.value.missing and not err.value.unexpected
    assert "shape mismatch (2)" in str(err.value) and "file (7, 256, 1, 1) vs model (32, 256, 1, 1)" in str(err.value)
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())


def test_tiny_model_loads_backbone_through_builder(tmp_path):
    torch.manual_seed(0)
    src = ResNet(Bottleneck, [1, 1, 1, 1], width_per_group=16).state_dict()
    path = tmp_path / "tiny.pth"
    torch.save(src, path)
    model = micro_dualnet(config=MicroDualNetConfig.tiny(), backbone_weights=BackboneWeights(path))
    _assert_equal_to_source(model.backbone, src)


def _trained_tiny(cfg):
    """A tiny model whose BatchNorm statistics moved away from their initial values."""
    torch.manual_seed(0)
    model = MicroDualNet(cfg)
    frames = torch.randn(2, 4, 3, 64, 64)
    kp = torch.rand(2, 4, 25, 3) * torch.tensor([64.0, 64.0, 1.0])
    with torch.no_grad():
        model(frames, kp)  # train mode: updates running mean / var
    return model.eval(), frames, kp


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    cfg = MicroDualNetConfig.tiny(routing_temperature=0.7, extra={"run": "t1"})
    model, frames, kp = _trained_tiny(cfg)
    path = save_checkpoint(tmp_path / "ckpt.pt", model, classes=ClassList.ma52(), preprocessing=Preprocessing(),
                           plan=MA52_PLAN, provenance={"epoch": 3})
    raw = torch.load(path, weights_only=True)
    assert raw["config"]["routing_temperature"] == 0.7
    assert isinstance(raw["config"], dict)  # plain data, not a pickled dataclass
    ckpt = load_checkpoint(path)
    loaded = ckpt.model
    assert loaded.cfg == cfg and ckpt.provenance["epoch"] == 3
    assert loaded.dual_path.fusion.temperature == 0.7
    assert not loaded.training  # ready for inference
    with torch.no_grad():
        # Exactly the same numbers, not merely close: same weights, same BN statistics, same graph.
        a, b = model(frames, kp), loaded(frames, kp)
        assert torch.equal(a.logits, b.logits) and torch.equal(a.routing, b.routing)


def test_checkpoint_loads_weights_only_in_a_fresh_process(tmp_path):
    """Nothing in the file needs this project's classes to unpickle, and it rebuilds the same model."""
    model, frames, kp = _trained_tiny(MicroDualNetConfig.tiny(entity_layout="imigue", num_classes=32))
    path = save_checkpoint(tmp_path / "ckpt.pt", model, classes=ClassList.from_actions(list(range(32))),
                           preprocessing=Preprocessing(), plan=IMIGUE_PLAN,
                           provenance={"epoch": 1, "metrics": {"top1": 0.5}})
    with torch.no_grad():
        expect = model(frames, kp).logits
    torch.save({"frames": frames, "kp": kp, "expect": expect}, tmp_path / "io.pt")
    repo = Path(__file__).resolve().parents[1]
    code = f"""
import sys, torch
raw = torch.load({str(path)!r}, weights_only=True)   # before anything of the project is imported
assert not any(m.startswith("model") for m in sys.modules), "weights_only load imported project code"
sys.path.insert(0, {str(repo)!r})
from model.checkpoint import load_checkpoint
model = load_checkpoint({str(path)!r}).model
io = torch.load({str(tmp_path / "io.pt")!r}, weights_only=True)
with torch.no_grad():
    out = model(io["frames"], io["kp"]).logits
# a fresh process may pick another thread count, so float sums may round differently (3e-8 seen under load)
assert torch.allclose(out, io["expect"], rtol=0, atol=1e-5), (out - io["expect"]).abs().max()
print("OK", raw["config"]["entity_layout"], raw["provenance"]["metrics"]["top1"])
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["OK", "imigue", "0.5"]


def test_checkpoint_of_compiled_model_loads_into_plain_model(tmp_path):
    model, frames, kp = _trained_tiny(MicroDualNetConfig.tiny())
    compiled = torch.compile(model)  # wrapping only; nothing is compiled until it is called
    assert next(iter(compiled.state_dict())).startswith("_orig_mod.")
    path = save_checkpoint(tmp_path / "ckpt.pt", compiled, classes=ClassList.ma52(), preprocessing=Preprocessing(),
                           plan=MA52_PLAN)
    assert not any(k.startswith(("_orig_mod.", "module.")) for k in torch.load(path, weights_only=True)["state_dict"])
    loaded = load_checkpoint(path).model
    with torch.no_grad():
        assert torch.equal(model(frames, kp).logits, loaded(frames, kp).logits)
