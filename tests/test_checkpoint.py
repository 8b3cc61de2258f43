"""Checkpoints (model/checkpoint.py): round trip of every field, weights_only safety, atomic writes,
one-line errors that name the file, and the training state that restores optimizer and RNG streams."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import model.checkpoint as ckpt_mod
from model.checkpoint import (CHECKPOINT_FORMAT, CheckpointError, load_checkpoint, load_training_state,
                              restore_training_state, save_checkpoint, save_training_state)
from model.config import MicroDualNetConfig
from model.micro_dualnet import MicroDualNet
from model.preprocessing import ClassList, Preprocessing
from model.windows import MA52_16F_PLAN, MA52_PLAN, WindowPlan

REPO = Path(__file__).resolve().parents[1]


def _model(**overrides):
    torch.manual_seed(0)
    model = MicroDualNet(MicroDualNetConfig.tiny(**overrides))
    with torch.no_grad():  # train-mode pass: BatchNorm statistics move away from their initial values
        model(torch.randn(2, 4, 3, 64, 64), torch.rand(2, 4, 33, 3) * torch.tensor([64.0, 64.0, 1.0]))
    return model.eval()


def _inputs(j=33, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 4, 3, 64, 64, generator=g), torch.rand(2, 4, j, 3, generator=g) * torch.tensor([64.0, 64.0, 1.0])


def _save(path, model, **kw):
    args = dict(classes=ClassList.ma52(), preprocessing=Preprocessing(), plan=MA52_PLAN)
    return save_checkpoint(path, model, **{**args, **kw})


def test_round_trip_restores_weights_and_every_field(tmp_path):
    classes = ClassList.from_actions(["nodding", "shaking legs", 43], background=True)
    model = _model(num_classes=4, keypoint_format="body25_extra", routing_temperature=0.7, keypoint_threshold=0.4)
    prep = Preprocessing(region="person", person_padding=0.2, resize_short=240, size=200)
    prov = {"training_data": "simulated clips, seed 3", "trained_on": "simulated", "metrics": {"top1": 0.25}}
    path = save_checkpoint(tmp_path / "sub" / "m.pt", model, classes=classes, preprocessing=prep,
                           plan=MA52_16F_PLAN, provenance=prov)
    ck = load_checkpoint(path)
    assert ck.path == path and ck.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert ck.config == model.cfg and ck.classes == classes and ck.preprocessing == prep
    assert ck.plan == MA52_16F_PLAN and isinstance(ck.plan, WindowPlan)
    assert ck.entities == model.entity_definition and ck.model.entity_definition == ck.entities
    assert ck.entities.keypoint_format == "body25_extra" and ck.entities.threshold == 0.4
    assert ck.provenance["trained_on"] == "simulated" and ck.provenance["metrics"] == {"top1": 0.25}
    assert ck.provenance["training_data"] == prov["training_data"]
    assert ck.provenance["code_version"] and ck.provenance["date"].startswith("20") and ck.provenance["torch"]
    assert not ck.model.training
    # Exactly the same tensors (weights and BatchNorm buffers), hence exactly the same outputs.
    for (k, a), (k2, b) in zip(model.state_dict().items(), ck.model.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    frames, kp = _inputs()
    with torch.no_grad():
        assert torch.equal(model(frames, kp).logits, ck.model(frames, kp).logits)


def test_fresh_process_reads_every_section_with_weights_only(tmp_path):
    """Before any project module is imported, torch.load(weights_only=True) reads the whole file."""
    path = _save(tmp_path / "m.pt", _model(), provenance={"trained_on": "MA-52"})
    code = f"""
import sys, torch
raw = torch.load({str(path)!r}, weights_only=True)
assert not any(m == "model" or m.startswith("model.") for m in sys.modules), "project code was imported"
print(raw["format"], sorted(raw), raw["window_plan"]["clip_len"], raw["entities"]["keypoint_format"],
      raw["provenance"]["trained_on"], len(raw["classes"]["names"]))
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[0] == CHECKPOINT_FORMAT
    assert res.stdout.split()[-4:] == ["8", "body25", "MA-52", "52"]
    assert "'entities'," in res.stdout and "'preprocessing'," in res.stdout and "'state_dict'" in res.stdout


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_saved_file_follows_the_umask_not_0600(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = _save(tmp_path / "m.pt", _model())
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_failure_mid_write_leaves_the_old_checkpoint_intact(tmp_path, monkeypatch):
    path = _save(tmp_path / "m.pt", _model())
    before = path.read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt_mod.torch, "save", broken_save)
    with pytest.raises(OSError, match="No space left"):
        _save(path, _model(routing_temperature=0.5))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]  # no temporary file left behind
    monkeypatch.undo()
    assert load_checkpoint(path).config.routing_temperature == 1.0


def _error(path) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg and "weights_only=False" not in msg
    return msg


def test_truncated_checkpoint_is_a_one_line_error_naming_the_file(tmp_path):
    path = _save(tmp_path / "m.pt", _model())
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 100, 10):
        path.write_bytes(data[:cut])
        assert "truncated or corrupt" in _error(path)
    path.write_bytes(b"")
    assert "empty" in _error(path)


class _Payload:  # a custom class: its pickle would run this module's code on load
    pass


def test_checkpoint_with_a_pickled_custom_class_is_refused_by_name(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "state_dict": {}, "payload": _Payload()}, path)
    msg = _error(path)
    assert "refused" in msg and "_Payload" in msg


def test_missing_and_foreign_files(tmp_path):
    assert "not found" in _error(tmp_path / "nope.pt")
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "sd.pt")
    assert "not a model checkpoint" in _error(tmp_path / "sd.pt")
    torch.save({"format": "micro-dualnet/1", "config": {}, "state_dict": {}}, tmp_path / "old.pt")
    assert "micro-dualnet/1" in _error(tmp_path / "old.pt")
    raw = torch.load(_save(tmp_path / "m.pt", _model()), weights_only=True)
    raw["state_dict"].pop("classifier.3.bias")
    torch.save(raw, tmp_path / "short.pt")
    assert "missing" in _error(tmp_path / "short.pt") and "classifier.3.bias" in _error(tmp_path / "short.pt")


def test_save_validates_before_writing(tmp_path):
    with pytest.raises(ValueError, match="3 classes but the model outputs 52"):
        _save(tmp_path / "a.pt", _model(), classes=ClassList.from_actions([0, 1, 2]))
    with pytest.raises(TypeError, match=r"provenance\['when'\] is a datetime"):
        import datetime
        _save(tmp_path / "b.pt", _model(), provenance={"when": datetime.datetime.now()})
    assert list(tmp_path.iterdir()) == []


def _train_setup(seed=0):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=3)
    cos = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    sched = torch.optim.lr_scheduler.SequentialLR(opt, [warm, cos], milestones=[3])
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    return net, opt, sched, scaler


def _step(net, opt, sched):
    loss = net(torch.randn(5, 4)).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()


def test_training_state_round_trip_restores_optimizer_schedule_and_rng(tmp_path):
    net, opt, sched, scaler = _train_setup()
    for _ in range(4):
        _step(net, opt, sched)
    path = save_training_state(tmp_path / "state.pt", optimizer=opt, scheduler=sched, scaler=scaler, epoch=4,
                               step=40, extra={"best_top1": 0.5})
    torch.load(path, weights_only=True)  # plain data throughout
    # What an uninterrupted run draws next.
    expect = (random.random(), np.random.rand(3), torch.rand(3), torch.randn(2))
    for _ in range(5):  # move every stream on, as a crashed run and a fresh process would
        random.random(), np.random.rand(7), torch.rand(11)

    net2, opt2, sched2, scaler2 = _train_setup(seed=0)  # a fresh run with the same model weights
    state = restore_training_state(load_training_state(path), optimizer=opt2, scheduler=sched2, scaler=scaler2)
    assert (state["epoch"], state["step"], state["extra"]) == (4, 40, {"best_top1": 0.5})
    got = (random.random(), np.random.rand(3), torch.rand(3), torch.randn(2))
    assert got[0] == expect[0] and np.array_equal(got[1], expect[1])
    assert torch.equal(got[2], expect[2]) and torch.equal(got[3], expect[3])
    assert sched2.get_last_lr() == sched.get_last_lr() and sched2.last_epoch == sched.last_epoch
    assert scaler2.get_scale() == 1024.0
    for p, q in zip(opt.param_groups[0]["params"], opt2.param_groups[0]["params"]):
        assert torch.equal(opt.state[p]["momentum_buffer"], opt2.state[q]["momentum_buffer"])


def test_training_state_errors(tmp_path):
    net, opt, sched, _ = _train_setup()
    path = save_training_state(tmp_path / "s.pt", optimizer=opt, epoch=0)
    with pytest.raises(ValueError, match="scheduler: the file was saved without one"):
        restore_training_state(load_training_state(path), optimizer=opt, scheduler=sched)
    with pytest.raises(CheckpointError, match="not a training-state file"):
        load_training_state(_save(tmp_path / "m.pt", _model()))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=f"{path}: truncated or corrupt training state"):
        load_training_state(path)
