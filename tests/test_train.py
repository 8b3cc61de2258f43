"""recipes.train: learning a small synthetic task, exact resume, DDP (2 CPU processes) = 1 process."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from clip_fixtures import SYNTHETIC_CLASSES, write_synthetic_prepared
from model.checkpoint import load_checkpoint, load_training_state
from model.clips import ClipDataset
from recipes.evaluate import predict_clips
from recipes.train import LOG_COLUMNS, GlobalBatchSampler, TrainConfig, build_model, lr_at, main, train

REPO = Path(__file__).resolve().parents[1]
NO_DROPOUT = {"dropout": 0.0, "routing_dropout": 0.0, "classifier_dropout": 0.0}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    return write_synthetic_prepared(tmp_path_factory.mktemp("syn") / "prep", clips_per_class=8, num_frames=8)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_schedule_follows_iv_b():
    cfg = TrainConfig()
    assert lr_at(cfg, 0) == pytest.approx(0.001) and lr_at(cfg, 5) == pytest.approx(0.0055)
    assert lr_at(cfg, 10) == pytest.approx(0.01) and lr_at(cfg, 65) == pytest.approx(0.005)
    assert lr_at(cfg, 120) == pytest.approx(0.0)
    big = TrainConfig(batch_size=48)  # linear scaling rule: 4 x the batch, 4 x the rates
    assert lr_at(big, 0) == pytest.approx(0.004) and lr_at(big, 10) == pytest.approx(0.04)
    assert (cfg.momentum, cfg.weight_decay, cfg.batch_size, cfg.epochs, cfg.warmup_epochs) == (0.9, 5e-4, 12, 120, 10)


def test_global_batches_are_split_over_ranks():
    one = list(GlobalBatchSampler(20, 4, seed=1))
    r0 = list(GlobalBatchSampler(20, 4, rank=0, world_size=2, seed=1))
    r1 = list(GlobalBatchSampler(20, 4, rank=1, world_size=2, seed=1))
    assert [a + b for a, b in zip(r0, r1)] == one and len(one) == 5
    assert sorted(sum(one, [])) == list(range(20))


@pytest.mark.slow  # about 10 s of CPU; 30 s wall on the shared 2-core machine
def test_tiny_learns_a_synthetic_task(synthetic, tmp_path):
    cfg = TrainConfig(preset="tiny", epochs=6, batch_size=8, lr=0.05, warmup_epochs=1, workers=0, num_frames=2,
                      precise_bn_batches=3, val_every=3)
    best = train(cfg, synthetic, tmp_path / "run", val_dir=synthetic, provenance={"trained_on": "synthetic"})
    ckpt = load_checkpoint(best)
    assert ckpt.classes == SYNTHETIC_CLASSES and ckpt.plan.clip_len == 2 and ckpt.preprocessing.size == 64
    assert ckpt.provenance["trained_on"] == "synthetic" and ckpt.config.num_classes == 3
    pred = predict_clips(ckpt.model, ClipDataset(synthetic, 2, train=False), batch_size=8)
    accuracy = float(np.mean(pred.scores.argmax(1) == pred.labels))
    assert accuracy >= 0.95, accuracy  # eval mode, centre frames and crop
    with (tmp_path / "run" / "train_log.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == LOG_COLUMNS and len(rows) == 6
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert rows[2]["val_f1_mean"] != "" and rows[1]["val_f1_mean"] == ""
    assert (tmp_path / "run" / "train_log.png").stat().st_size > 1000


@pytest.mark.slow  # about 12 s of CPU
def test_pose_modality_trains_on_keypoints_without_touching_pixels(synthetic, tmp_path, monkeypatch):
    """The synthetic classes move differently (right, down, still) and the keypoints follow the square,
    so keypoints alone tell them apart; the training step must not normalise pixels the model ignores."""
    import recipes.train as train_module

    def no_pixels(*args, **kwargs):
        raise AssertionError("the pose modality's training step normalised pixels")

    monkeypatch.setattr(train_module, "normalize_frames", no_pixels)
    cfg = TrainConfig(preset="tiny", epochs=25, batch_size=8, lr=0.05, warmup_epochs=1, workers=0, num_frames=4,
                      flip_p=0.0, model_overrides={"modality": "pose", "embed_dim": 32, "num_heads": 2, "num_layers": 1,
                                       "ffn_dim": 64, "residual_mlp_hidden": 32, "classifier_hidden": 32})
    ckpt = load_checkpoint(train(cfg, synthetic, tmp_path / "run"))
    assert ckpt.config.modality == "pose"
    monkeypatch.undo()
    pred = predict_clips(ckpt.model, ClipDataset(synthetic, 4, train=False), batch_size=8)
    accuracy = float(np.mean(pred.scores.argmax(1) == pred.labels))
    assert accuracy >= 0.8, accuracy  # chance 1/3; measured 0.875 (21 of 24: noisy keypoints, 4 frames)


def _small(**kw) -> TrainConfig:
    base = dict(preset="tiny", epochs=3, batch_size=4, lr=0.05, warmup_epochs=1, workers=0, num_frames=4,
                max_steps_per_epoch=2)
    return TrainConfig(**{**base, **kw})


@pytest.mark.slow  # about 8 s of CPU; 20-30 s wall on the shared 2-core machine
def test_resume_equals_uninterrupted(synthetic, tmp_path):
    cfg = _small(precise_bn_batches=1)  # dropout on: the RNG state must be restored too
    train(cfg, synthetic, tmp_path / "full")
    train(cfg, synthetic, tmp_path / "split", until_epoch=1)
    train(cfg, synthetic, tmp_path / "split", resume=True)
    full = load_training_state(tmp_path / "full" / "latest.state.pt")["extra"]["history"]
    split = load_training_state(tmp_path / "split" / "latest.state.pt")["extra"]["history"]
    assert [r["train_loss"] for r in split] == [r["train_loss"] for r in full]
    a = load_checkpoint(tmp_path / "full" / "latest.pt").model.state_dict()
    b = load_checkpoint(tmp_path / "split" / "latest.pt").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="different training config"):
        train(_small(precise_bn_batches=1, warmup_epochs=2), synthetic, tmp_path / "split", resume=True)


@pytest.mark.slow
def test_ddp_two_cpu_processes_equal_one(synthetic, tmp_path):
    """torchrun, 2 processes (gloo), global batch 4 = one process with batch 4.

    BatchNorm is frozen and dropout off: otherwise per-process batch statistics and dropout draws
    legitimately differ between the two set-ups."""
    cfg = _small(freeze_bn=True, model_overrides=NO_DROPOUT, epochs=2)
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps(cfg.to_dict()))
    train(cfg, synthetic, tmp_path / "one")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    res = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "recipes.train",
         "--config", str(cfg_file), "--preset", "tiny", "--train", str(synthetic), "--out", str(tmp_path / "two"), "-q"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    one = load_checkpoint(tmp_path / "one" / "latest.pt").model.state_dict()
    two = load_checkpoint(tmp_path / "two" / "latest.pt").model.state_dict()
    for k in one:
        torch.testing.assert_close(two[k], one[k], rtol=1e-4, atol=1e-5, msg=k)
    h1 = load_training_state(tmp_path / "one" / "latest.state.pt")["extra"]["history"]
    h2 = load_training_state(tmp_path / "two" / "latest.state.pt")["extra"]["history"]
    np.testing.assert_allclose([r["train_loss"] for r in h2], [r["train_loss"] for r in h1], rtol=1e-5)
    fresh = build_model(cfg, 3).state_dict()  # the weights did move (same seed, same initialisation)
    assert sum(not torch.equal(fresh[k], one[k]) for k in one if one[k].is_floating_point()) > 10


def test_cli_bad_inputs_exit_2(synthetic, tmp_path, capsys):
    assert main(["--train", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "manifest.json not found" in capsys.readouterr().err
    assert main(["--train", str(synthetic), "--out", str(tmp_path / "o"), "--preset", "huge"]) == 2
    assert "unknown model preset" in capsys.readouterr().err
    assert main(["--train", str(synthetic), "--out", str(tmp_path / "o2"), "--preset", "tiny", "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_cli_ablation_preset_and_overrides(synthetic, tmp_path):
    rc = main(["--train", str(synthetic), "--out", str(tmp_path / "st"), "--preset", "tiny", "--set", "paths=st",
               "--set", "use_mac=False", "--epochs", "1", "--batch-size", "4", "--max-steps-per-epoch", "1",
               "--workers", "0", "-q"])
    assert rc == 0
    ckpt = load_checkpoint(tmp_path / "st" / "latest.pt")
    assert ckpt.config.paths == "st" and not ckpt.config.use_mac and ckpt.model.dual_path.paths == "st"


def test_synthetic_loader_shapes_and_seeded_randomness(synthetic):
    ds = ClipDataset(synthetic, 4, train=True, seed=5)
    a = ds[3]
    assert a["frames"].shape == (4, 3, 64, 64) and a["frames"].dtype == torch.uint8
    assert a["keypoints"].shape == (4, 33, 3) and int(a["label"]) == 0 and int(a["index"]) == 3
    assert torch.equal(ds[3]["frames"], a["frames"])  # same (seed, epoch, clip): same sample
    ds.set_epoch(1)
    assert not torch.equal(ds[3]["frames"], a["frames"])  # a new epoch draws new frames / crop / flip


def test_class_subset_with_background_trains_and_evaluates(tmp_path):
    from recipes.evaluate import evaluate
    from model.preprocessing import ClassList

    classes = ClassList.from_actions(["nodding", "shaking head"], background=True)
    prep = write_synthetic_prepared(tmp_path / "prep", clips_per_class=2, num_frames=4, classes=classes)
    cfg = _small(epochs=1, max_steps_per_epoch=1, batch_size=2)
    best = train(cfg, prep, tmp_path / "run", val_dir=prep, provenance={"trained_on": "simulated"})
    ckpt = load_checkpoint(best)
    assert ckpt.classes.background_index == 2 and ckpt.provenance["trained_on"] == "simulated"
    evaluate(best, prep, tmp_path / "eval", workers=0)
    per_class = (tmp_path / "eval" / "per_class.csv").read_text().splitlines()
    assert per_class[-1].split(",")[1:3] == ["background", "background"]
