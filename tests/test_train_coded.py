"""End to end: a tiny simulated coded cohort -> ``python -m recipes.train_coded --folds 3`` (slow).

simulate -> pose -> two simulated coders exported as BORIS -> ``pipeline.codings import`` (one folder
per coder) -> windows -> a few epochs per fold from the demo checkpoint (``--init``, features frozen:
what a lab with an MA-52 model and a handful of coded sessions would do) -> per-fold and pooled
agreement tables. Checked on the written files:

- no leakage: in every fold the training and validation manifests share no participant and no video,
  and every participant validates in exactly one fold;
- every fold's table and the pooled one have finite kappa and ICC for the model and the coders, and
  the pooled model kappa clears a floor (docs/training.md has the measured run this scales down);
- every fold checkpoint carries its calibrated read-out and its validation agreement in provenance;
- the validation windows written from the prepared clips equal what ``pipeline.recognize`` computes
  for the same checkpoint on the same video;
- a rerun resumes: nothing is trained again and the checkpoints are unchanged.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from model.checkpoint import load_checkpoint
from pipeline.recognize import RecognizeJob, RecognizeOptions, recognize_videos
from recipes.demo_model import demo_checkpoint_path
from recipes.train_coded import main

from coded_fixtures import coded_cohort  # noqa: E402  (tests/ helper)

pytestmark = pytest.mark.slow

FOLDS = 3


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_coded")
    c = coded_cohort(root, groups={"ASD": 3, "TDC": 3}, seconds=24, workers=1)
    argv = ["-q", "--manifest", str(c["manifest"]), "--keypoints", str(c["keypoints"]), "--codings",
            *map(str, c["codings"]), "--out", str(root / "run"), "--folds", str(FOLDS), "--epochs", "3",
            "--min-events", "3", "--min-participants", "2", "--bootstrap", "100", "--agreement-every", "3",
            "--init", str(demo_checkpoint_path()), "--freeze", "features", "--trained-on", "simulated"]
    assert main(argv) == 0
    return root, c, argv


def _participants(manifest_json, video_pid):
    recs = json.loads(manifest_json.read_text())["clips"]
    return {video_pid[r["video"]] for r in recs}, {r["video"] for r in recs}


def test_no_participant_is_in_two_parts(trained):
    root, c, _ = trained
    man = pd.read_csv(c["manifest"])
    pid = dict(zip(man["participant_id"], man["participant_id"]))  # video id = participant id in the simulator
    validated = []
    for k in range(1, FOLDS + 1):
        part = root / "run" / "parts" / f"fold-{k}"
        tp, tv = _participants(part / "train" / "manifest.json", pid)
        vp, vv = _participants(part / "val" / "manifest.json", pid)
        assert tp and vp and not (tp & vp) and not (tv & vv)
        assert tp | vp == set(man["participant_id"])
        validated += sorted(vp)
    assert sorted(validated) == sorted(man["participant_id"])
    splits = pd.read_csv(root / "run" / "splits.csv")
    assert splits.groupby("fold")["group"].nunique().eq(2).all()  # every fold validates on both groups


def test_fold_and_pooled_tables_are_finite_and_the_model_agrees(trained):
    root, _, _ = trained
    per_fold = pd.read_parquet(root / "run" / "cv" / "per_fold.parquet")
    assert set(per_fold["fold"]) == {f"fold-{k}" for k in range(1, FOLDS + 1)}
    for pair in ("model-coder", "coder-coder"):
        rows = per_fold[(per_fold["pair"] == pair) & (per_fold["action"] != "all")]
        assert len(rows) and np.isfinite(rows["kappa"]).all()
    pooled = pd.read_parquet(root / "run" / "cv" / "pooled.parquet")
    summary = pd.read_parquet(root / "run" / "cv" / "summary.parquet")
    s = summary[summary["scope"] == "pooled"].set_index("action")
    assert np.isfinite(s[["model_kappa", "coder_kappa", "model_icc", "coder_icc"]].to_numpy()).all()
    assert pooled["n_participants"].max() == 6
    # the scaled-down claim of docs/training.md's measured run: on participants it never saw, the model
    # agrees with the coders about as well as they agree with each other on the position-defined actions
    # (measured: kappa 0.74-0.84 beside the coders' 0.75-0.81), and over all actions at more than half
    # the coders' level (measured 0.42 vs 0.64)
    for action in ("crossing arms", "touching nose"):
        assert s.loc[action, "model_kappa"] > max(0.5, s.loc[action, "coder_kappa"] - 0.25), s
    assert s.loc["all", "model_kappa"] > 0.5 * s.loc["all", "coder_kappa"] > 0.2, s
    md = (root / "run" / "cv" / "summary.md").read_text()
    assert md.count("|") > 20
    assert "No cross-fitted read-out: fold-1: group" in md  # one validation participant per group and fold


def test_checkpoints_carry_the_calibrated_readout_and_the_agreement(trained):
    root, _, _ = trained
    for k in range(1, FOLDS + 1):
        ck = load_checkpoint(root / "run" / "parts" / f"fold-{k}" / "model.pt")
        prov = ck.provenance
        assert prov["trained_on"] == "simulated"
        assert prov["readout"]["rule"] == "per-class" and set(prov["readout"]["thresholds"]) == set(ck.classes.names[:-1])
        assert prov["init"]["sha256"] == load_checkpoint(demo_checkpoint_path()).sha256
        v = prov["validation"]
        assert len(v["participants"]) == 2 and v["coders"] == ["sim-coder-1", "sim-coder-2"]
        assert {r["action"] for r in v["per_action"]} >= set(ck.classes.names[:-1])
        log = pd.read_csv(root / "run" / "parts" / f"fold-{k}" / "log.csv")
        assert list(log["epoch"]) == [1, 2, 3] and np.isfinite(log.loc[2, "val_kappa_all"])
        assert (root / "run" / "parts" / f"fold-{k}" / "training.png").stat().st_size > 0


def test_validation_windows_equal_the_recognition_stage(trained, tmp_path):
    root, c, _ = trained
    part = root / "run" / "parts" / "fold-1"
    vid = pd.read_csv(part / "validation_manifest.csv")["participant_id"].iloc[0]
    video = c["sim"] / "videos" / f"{vid}.mp4"
    job = RecognizeJob(item_id=vid, source=str(video), out_dir=str(tmp_path),
                       keypoints=str(c["keypoints"] / "keypoints" / f"{vid}.parquet"))
    results, _ = recognize_videos([job], part / "model.pt", RecognizeOptions(batch_size=16, workers=1))
    assert results[0].status == "ok", results[0].error
    stage = pd.read_parquet(tmp_path / "windows" / f"{vid}.parquet")
    ours = pd.read_parquet(part / "validation_windows" / f"{vid}.parquet")
    assert stage["window"].tolist() == ours["window"].tolist()
    assert stage["probs"].isna().tolist() == ours["probs"].isna().tolist()
    np.testing.assert_allclose(np.stack(stage["probs"].dropna()), np.stack(ours["probs"].dropna()), atol=1e-5)
    np.testing.assert_allclose(stage["valid_fraction"], ours["valid_fraction"])


def test_a_rerun_resumes_without_training_again(trained, capsys):
    root, _, argv = trained
    before = {k: load_checkpoint(root / "run" / "parts" / f"fold-{k}" / "model.pt").sha256 for k in range(1, FOLDS + 1)}
    state = (root / "run" / "parts" / "fold-1" / "run" / "latest.state.pt").stat().st_mtime_ns
    assert main(argv) == 0
    after = {k: load_checkpoint(root / "run" / "parts" / f"fold-{k}" / "model.pt").sha256 for k in range(1, FOLDS + 1)}
    assert after == before
    assert (root / "run" / "parts" / "fold-1" / "run" / "latest.state.pt").stat().st_mtime_ns == state
    # a changed setting that alters the results is refused, naming it
    with pytest.raises(SystemExit) as exc:
        main([*argv[:-2], "--trained-on", "simulated", "--label-rule", "majority"])
    assert exc.value.code == 2 and "coded.label_rule" in capsys.readouterr().err
