"""The MA-52 recipes (pose -> recipes.prepare_clips -> recipes.train -> recipes.evaluate) for every model family.

On the four real MA-52 sample clips (``../shared/data/ma52``; skipped when absent): our pose stage on
every frame, clips prepared with those keypoints, then for each registered family (Micro-DualNet,
MMN, MANet) a one-step training at its ``tiny`` preset and an evaluation, all through the CLIs, with
no family named anywhere but in ``--family``. Checked: the checkpoint records the family, the
evaluation's Top-1 equals the one recomputed from its own predictions file, MMN's predictions are
reproduced from the clips' keypoints alone (no pixels), MANet's joint-embedding term is on with a
label-vector file (``--family-file``) and off without. Fast checks on a synthetic folder: a
keypoint-reading family refuses clips prepared without keypoints, and a family refuses a training
file it does not take.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from clip_fixtures import write_synthetic_prepared
from model.checkpoint import load_checkpoint
from model.clips import ClipDataset, PreparedClips, collate_clips
from model.families import FAMILIES
from pipeline import pose
from recipes import evaluate as evaluate_cli
from recipes import prepare_clips
from recipes import train as train_cli

TINY = ["--preset", "tiny", "--epochs", "1", "--batch-size", "2", "--max-steps-per-epoch", "1", "--workers", "0",
        "--device", "cpu", "--seed", "0", "-q"]


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def ma52_prepared(ma52_dir, ma52_clips, tmp_path_factory):
    """The four clips posed (every frame) and prepared with and without those keypoints."""
    root = tmp_path_factory.mktemp("ma52_recipes")
    assert pose.main([*map(str, ma52_clips), "--out", str(root / "pose"), "--frames", "all", "-q"]) == 0
    labels = {r["file"]: r["action_id"] for r in _read_csv(ma52_dir / "clips" / "labels.csv")}
    (root / "list.txt").write_text("".join(f"{c.name} {labels[c.name]}\n" for c in ma52_clips))
    common = ["-q", "--list", str(root / "list.txt"), "--data-root", str(ma52_dir / "clips"), "--short-side", "64",
              "--crop-size", "64"]
    assert prepare_clips.main([*common, "--keypoints", str(root / "pose"), "--out", str(root / "prepared")]) == 0
    assert prepare_clips.main([*common, "--out", str(root / "no_keypoints")]) == 0
    return root


@pytest.mark.shared_data
@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_one_step_train_and_evaluate_on_real_clips(ma52_prepared, family, tmp_path):
    prep = ma52_prepared / "prepared"
    run, ev = tmp_path / "run", tmp_path / "eval"
    assert train_cli.main(["--train", str(prep), "--val", str(prep), "--out", str(run), "--family", family, *TINY]) == 0
    log = _read_csv(run / "train_log.csv")
    assert len(log) == 1 and np.isfinite(float(log[0]["train_loss"]))
    ck = load_checkpoint(run / "best.pt")
    assert ck.family.name == family and len(ck.classes) == 52
    assert ck.plan.clip_len == ck.model.cfg.num_frames  # the tiny preset's T, stored for inference

    assert evaluate_cli.main(["--weights", str(run / "best.pt"), "--prepared", str(prep), "--out", str(ev),
                              "--workers", "0", "--batch-size", "4", "--device", "cpu", "--submission"]) == 0
    report = json.loads((ev / "metrics.json").read_text())
    assert report["family"] == family and report["clips"] == 4
    preds = _read_csv(ev / "predictions.csv")
    assert len(preds) == 4
    top1 = np.mean([p["pred_1"] == p["label"] for p in preds])
    assert report["metrics"]["top1"] == pytest.approx(top1)
    assert len(_read_csv(ev / "prediction.csv")) == 4  # the challenge file, one row per clip

    if family == "mmn":  # keypoint-only: the clips' keypoints alone give the same probabilities
        assert ck.inputs == frozenset({"keypoints"})
        ds = ClipDataset(PreparedClips(prep), ck.plan.clip_len, train=False, preprocessing=ck.preprocessing)
        batch = collate_clips([ds[i] for i in range(len(ds))])
        with torch.inference_mode():
            probs = ck.forward(None, batch["keypoints"]).logits.float().softmax(-1)
        assert np.allclose(probs.max(-1).values.numpy(), [float(p["prob_1"]) for p in preds], atol=1e-4)


@pytest.mark.shared_data
@pytest.mark.slow
def test_manet_joint_embedding_term_follows_the_label_vector_file(ma52_prepared, tmp_path):
    prep = ma52_prepared / "prepared"
    vectors = tmp_path / "label_vectors.npy"  # one row per class, of the tiny preset's embedding size (16)
    dim = FAMILIES["manet"].preset("tiny").embedding_dim
    np.save(vectors, np.random.default_rng(0).normal(size=(52, dim)).astype(np.float32))
    assert train_cli.main(["--train", str(prep), "--out", str(tmp_path / "with"), "--family", "manet",
                           "--family-file", f"label_vectors={vectors}", *TINY]) == 0
    assert train_cli.main(["--train", str(prep), "--out", str(tmp_path / "without"), "--family", "manet", *TINY]) == 0
    with_file = _read_csv(tmp_path / "with" / "train_log.csv")[0]
    without = _read_csv(tmp_path / "without" / "train_log.csv")[0]
    assert float(with_file["train_mac"]) > 0 and float(without["train_mac"]) == 0
    # total = CE + alpha * emb (alpha = 5, the paper's), and CE is the same first step in both runs
    assert float(with_file["train_loss"]) == pytest.approx(float(with_file["train_ce"]) + 5 * float(with_file["train_mac"]),
                                                           rel=1e-5)
    assert float(with_file["train_ce"]) == pytest.approx(float(without["train_ce"]), rel=1e-5)


@pytest.mark.shared_data
@pytest.mark.slow
def test_keypoint_families_refuse_real_clips_prepared_without_keypoints(ma52_prepared, tmp_path, capsys):
    prep = ma52_prepared / "no_keypoints"
    assert train_cli.main(["--train", str(prep), "--out", str(tmp_path / "mmn"), "--family", "mmn", *TINY]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "4 of 4 training clips have no keypoints" in err and "MMN" in err
    # a pixels-only family trains on them
    assert train_cli.main(["--train", str(prep), "--out", str(tmp_path / "manet"), "--family", "manet", *TINY]) == 0


def test_keypoint_check_and_family_files_on_a_synthetic_folder(tmp_path, capsys):
    prep = write_synthetic_prepared(tmp_path / "prep", clips_per_class=2, num_frames=8)
    manifest = json.loads((prep / "manifest.json").read_text())
    manifest["clips"][0]["has_keypoints"] = False
    (prep / "manifest.json").write_text(json.dumps(manifest))
    assert train_cli.main(["--train", str(prep), "--out", str(tmp_path / "a"), "--family", "mmn", *TINY]) == 2
    assert "1 of 6 training clips have no keypoints (e.g. c0_000" in capsys.readouterr().err

    vectors = tmp_path / "q.npy"
    np.save(vectors, np.zeros((3, 300), np.float32))
    assert train_cli.main(["--train", str(prep), "--out", str(tmp_path / "b"), "--family", "manet",
                           "--family-file", f"label_vectors={vectors}", "--family-file", "glove=x", *TINY]) == 2
    assert "file not found" in capsys.readouterr().err  # glove=x: no such file
    (tmp_path / "x").write_text("")
    assert train_cli.main(["--train", str(prep), "--out", str(tmp_path / "c"), "--family", "manet",
                           "--family-file", f"glove={tmp_path / 'x'}", *TINY]) == 2
    assert "MANet has no training file 'glove' (it takes label_vectors)" in capsys.readouterr().err
    assert train_cli.main(["--train", str(prep), "--out", str(tmp_path / "d"), "--family", "mmn",
                           "--family-file", f"label_vectors={vectors}", *TINY]) == 2
    assert "has no training file 'label_vectors' (it takes none)" in capsys.readouterr().err
    assert train_cli.main(["--train", str(prep), "--out", str(tmp_path / "e"), "--family", "manet",
                           "--family-file", "label_vectors", *TINY]) == 2
    assert "--family-file expects NAME=PATH" in capsys.readouterr().err


def test_manet_paper_recipe_is_v_b_with_its_step_schedule():
    from recipes.manet_paper_rows import MANET_TRAINING
    from recipes.train import TrainConfig, lr_at

    cfg = TrainConfig.manet_paper()
    assert (cfg.family, cfg.optimizer, cfg.batch_size, cfg.epochs, cfg.num_frames) == ("manet", "sgd", 10, 80, 8)
    assert cfg.lr_scale == 1.0 and cfg.weight_decay == MANET_TRAINING.weight_decay == 1e-4
    # lr / 10 at epochs 30 and 60 (V-B), no warm-up; evaluated at fractional epochs as the trainer steps
    assert [lr_at(cfg, e) for e in (0, 29.99, 30, 59.99, 60, 79.99)] == pytest.approx(
        [1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5])
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg  # milestones survive JSON
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="linear")
    args = train_cli.build_parser().parse_args(["--train", "t", "--out", "o", "--recipe", "manet", "--epochs", "3"])
    assert train_cli.config_from_args(args) == TrainConfig.manet_paper(epochs=3)
