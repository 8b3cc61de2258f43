"""The shipped MMN demo checkpoint (``recipes/demo_mmn.pt``): small, plain data, the demo recipe's classes,
plan and seeds, a calibrated read-out, recognition from keypoints alone, and its recorded test counts
reproduced on a slice of the test recordings."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from model.checkpoint import load_checkpoint
from model.clips import ClipDataset, PreparedClips
from pipeline.readout import ReadoutConfig
from recipes import demo_model
from recipes.demo_model import (DEMO_PLAN, DEMO_TRAIN, DemoRecipe, demo_checkpoint_path, demo_classes, demo_readout,
                                evaluate_clips, prepared_windows, rebuild_command, simulate_split)
from pipeline.pose import keypoints_path
from pipeline.recognize import RecognizeJob, RecognizeOptions, recognize_videos
from recipes.evaluate import predict_clips
from recipes.train import TrainConfig
from simulator.motions import ACTIONS

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ckpt():
    return load_checkpoint(demo_checkpoint_path("mmn"))


def test_shipped_file_is_small_plain_data_and_package_data():
    path = demo_checkpoint_path("mmn")
    assert path == REPO / "recipes" / "demo_mmn.pt"
    assert path.stat().st_size < 2 * 1024 * 1024
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert any(path.name.endswith(p.lstrip("*")) for pats in package_data.values() for p in pats if p.startswith("*."))
    raw = torch.load(path, map_location="cpu", weights_only=True)  # readable without this project's code
    assert raw["family"] == "mmn" and raw["provenance"]["trained_on"] == "simulated"


def test_keypoint_only_model_of_the_demo_recipe(ckpt):
    assert ckpt.family.name == "mmn" and ckpt.inputs == frozenset({"keypoints"}) and not ckpt.uses_pixels
    assert ckpt.classes == demo_classes() and ckpt.plan == DEMO_PLAN
    recipe = ckpt.provenance["simulated"]["recipe"]
    assert recipe["family"] == "mmn"
    assert recipe["train"] == DemoRecipe.for_family("mmn").to_dict()["train"]
    assert TrainConfig.from_dict(recipe["train"]).family == "mmn"
    # the same recordings as the Micro-DualNet demo's recipe: one work folder serves both rebuilds
    shared = DemoRecipe().to_dict()
    for key in ("train_seed", "test_seed", "calibration_seed", "train_recordings", "test_recordings",
                "calibration_recordings", "seconds", "size", "p_engaged", "mean_share", "background_keep", "min_purity"):
        assert recipe[key] == shared[key], key
    cfg = ckpt.model.cfg
    assert (cfg.embed_dim, cfg.depths, cfg.augment) == (64, (2, 2), True)


def test_provenance_has_test_counts_and_a_calibrated_readout(ckpt):
    prov = ckpt.provenance
    assert prov["command"] == rebuild_command("mmn") == "python -m recipes.demo_model --rebuild --family mmn"
    sim = prov["simulated"]
    test = sim["test"]
    assert test["seed"] == sim["recipe"]["test_seed"] and len(test["per_recording"]) == test["recordings"]
    per = test["per_recording"].values()
    assert sum(r["windows"] for r in per) == test["windows"]
    assert sum(r["clean_windows"] for r in per) == test["clean_windows"]
    assert sum(r["clean_correct"] for r in per) / test["clean_windows"] == pytest.approx(test["top1_clean"], abs=5e-5)
    assert sum(r["correct"] for r in per) / test["windows"] == pytest.approx(test["top1_all"], abs=5e-5)
    assert prov["metrics"]["top1_clean"] == test["top1_clean"]
    readout, cal = demo_readout(family="mmn"), prov["readout_calibration"]
    assert ReadoutConfig.from_dict(prov["readout"]) == readout
    assert readout.rule == "per-class" and readout.scores == "interpolate" and set(readout.thresholds) == set(ACTIONS)
    assert cal["seed"] == sim["recipe"]["calibration_seed"] not in (sim["recipe"]["train_seed"], test["seed"])
    assert cal["worst_mae_pp"]["after"] <= cal["worst_mae_pp"]["before"]
    assert cal["engagement_disagree"]["after"] <= cal["engagement_disagree"]["before"]
    assert set(sim["train_windows_per_class"]) == set(demo_classes().names)


def test_cli_shows_the_mmn_demo(capsys):
    assert demo_model.main(["--family", "mmn"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["family"] == "mmn" and out["provenance"]["command"] == rebuild_command("mmn")


@pytest.mark.slow
def test_recorded_test_counts_reproduced_on_a_slice_and_recognised_without_video(ckpt, tmp_path):
    """The first two test recordings of the recorded recipe, rendered and posed again: the windows and the
    per-recording counts match the provenance; then, with the videos deleted, the recognition stage
    classifies the same windows from the keypoints alone, with the same probabilities."""
    recorded = ckpt.provenance["simulated"]
    recipe = DemoRecipe.from_recorded({**recorded["recipe"], "test_recordings": 2})
    split = simulate_split(recipe, "test", tmp_path, workers=1)
    prepared = prepared_windows(split, tmp_path / "prepared", classes=demo_classes(), background_keep=1.0,
                                min_purity=0.0, motion_repeat=1, seed=recipe.train_seed)
    res = evaluate_clips(ckpt, prepared, clean_purity=recipe.clean_purity)
    for vid, got in res["per_recording"].items():
        want = recorded["test"]["per_recording"][vid]
        print(f"\n{vid}: recorded {want}, now {got}")
        assert (got["windows"], got["clean_windows"]) == (want["windows"], want["clean_windows"])
        # pose and model are deterministic on CPU; allow one window's argmax to flip (float sums vary
        # with the thread count)
        assert abs(got["correct"] - want["correct"]) <= 1 and abs(got["clean_correct"] - want["clean_correct"]) <= 1

    ds = ClipDataset(PreparedClips(prepared), ckpt.plan.clip_len, train=False, preprocessing=ckpt.preprocessing)
    pred = predict_clips(ckpt.model, ds, batch_size=64, amp=False, family=ckpt.family)
    rows = [line.split(",") for line in (prepared / "windows.csv").read_text().splitlines()[1:]]
    videos = sorted((split / "videos").glob("*.mp4"))
    for video in videos:
        video.unlink()  # keypoint-only: the stage must not need the pixels
    jobs = [RecognizeJob(item_id=v.stem, source=str(v), out_dir=str(tmp_path / "recognize"),
                         keypoints=str(keypoints_path(split / "pose", v.stem))) for v in videos]
    results, stats = recognize_videos(jobs, ckpt, RecognizeOptions(batch_size=64, workers=1))
    assert all(r.status == "ok" for r in results), [r.error for r in results]
    assert stats.windows > 0
    stage = {}
    for path in (tmp_path / "recognize" / "windows").glob("*.parquet"):
        t = pq.read_table(path).to_pandas()
        for r in t.itertuples():
            if r.probs is not None:
                stage[(r.video_id, int(r.start_frame))] = np.asarray(r.probs)
    assert len(stage) == len(rows)  # the same windows are classified (the same min-valid rule)
    assert pred.indices.tolist() == list(range(len(rows)))  # windows.csv rows = the folder's clips, in order
    diff = [np.abs(stage[(r[1], int(r[2]))] - p).max() for r, p in zip(rows, pred.scores)]
    # windows cut by the recipe hold person-crop keypoints, the stage feeds source-pixel ones: MMN's
    # per-window normalisation makes them the same input (up to float rounding)
    assert max(diff) < 1e-4


def test_compare_refuses_checkpoints_of_different_test_splits(ckpt, tmp_path, capsys):
    from model.checkpoint import save_checkpoint
    from recipes import demo_compare

    prov = json.loads(json.dumps(ckpt.provenance))
    prov["simulated"]["recipe"]["test_seed"] += 1
    other = save_checkpoint(tmp_path / "other.pt", ckpt.model, classes=ckpt.classes, preprocessing=ckpt.preprocessing,
                            plan=ckpt.plan, provenance=prov)
    args = ["--work", str(tmp_path / "work"), "--out", str(tmp_path / "out"), "-q"]
    with pytest.raises(SystemExit) as stop:
        demo_compare.main(["--weights", str(ckpt.path), str(other), *args])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and len(err.strip().splitlines()) == 1 and "test split differs" in err and "test_seed" in err
    bare = save_checkpoint(tmp_path / "bare.pt", ckpt.model, classes=ckpt.classes, preprocessing=ckpt.preprocessing,
                           plan=ckpt.plan, provenance={})
    with pytest.raises(SystemExit) as stop:
        demo_compare.main(["--weights", str(bare), *args])
    assert stop.value.code == 2 and "not a demo checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "work").exists()  # refused before rendering anything
