"""Agreement of a run's model with coders: the CLI on a real run folder (tests/test_report_fixture.make_run).

Coders are made from the run's own detected segments (coder ``same`` copies them, ``jit`` moves their
boundaries), so the expected agreement is known: the model agrees with ``same`` perfectly on the
frames both observed, and the run's no-pose stretches are excluded and counted.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from analysis.agreement.cli import main
from analysis.agreement.compare import ALL, CONFUSION, PAIRS_LEADING
from agreement_fixtures import write_codings
from pipeline.artifacts import read_artifact
from pipeline.manifest import read_manifest
from test_report_fixture import DURATION_S, FPS, make_run


def coded_run(root, *, threshold=0.5, jitter=6, seed=1):
    run = make_run(root, hurdle=False, threshold=threshold)
    m = read_manifest(run / "manifest.csv", check_videos=False).videos
    rng = np.random.default_rng(seed)
    source = run if threshold == 0.5 else make_run(root.parent / (root.name + "-src"), hurdle=False)
    events, sessions = [], []
    for row in m.itertuples(index=False):
        seg_path = source / "readout" / "segments" / f"{row.video_id}.parquet"
        if not seg_path.exists():
            continue
        seg = pd.read_parquet(seg_path)
        for c in ("same", "jit"):
            sessions.append({"video_id": row.video_id, "coder": c, "participant_id": row.participant_id, "fps": FPS,
                             "num_frames": int(DURATION_S * FPS)})
        for s in seg.itertuples(index=False):
            events.append({"video_id": row.video_id, "coder": "same", "action": s.action, "start_s": s.start_s, "stop_s": s.end_s})
            d = rng.integers(-jitter, jitter + 1, 2) / FPS
            events.append({"video_id": row.video_id, "coder": "jit", "action": s.action,
                           "start_s": max(0.0, s.start_s + d[0]), "stop_s": s.end_s + d[1]})
    write_codings(run / "codings", events, sessions)
    return run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return coded_run(tmp_path_factory.mktemp("agree") / "run")


def test_cli_writes_the_validation_set(run, capsys):
    assert main(["--run", str(run), "--bootstrap", "200", "-q"]) == 0
    out = run / "validation"
    written = capsys.readouterr().out
    for name in ("pairs.parquet", "pairs.csv", "participants.parquet", "coverage.parquet", "confusion.parquet",
                 "summary.json", "figures/kappa_by_action.png"):
        assert (out / name).is_file() and f"wrote {out / name}" in written
    pairs = pd.read_parquet(out / "pairs.parquet")
    assert list(pairs.columns[: len(PAIRS_LEADING)]) == list(PAIRS_LEADING)
    assert pd.read_csv(out / "pairs.csv").shape == pairs.shape
    same = pairs[(pairs["rater_a"] == "model") & (pairs["rater_b"] == "same")]
    coded = same[same["prevalence"] > 0]
    assert len(coded) and (coded["kappa"].dropna() == 1).all() and (coded["mae_pp"] == 0).all()
    assert (coded["event_f1"].dropna() == 1).all()
    # the no-pose stretch (6 s of 40 s in every third participant) is excluded and counted
    cov = pd.read_parquet(out / "coverage.parquet")
    mc = cov[(cov["rater_a"] == "model") & (cov["rater_b"] == "same")]
    assert mc["excluded_share"].max() >= 6 / 40 - 0.02 and (mc["frames_shared"] <= mc["frames_either"]).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reference"] == "consensus" and 0 < summary["excluded_share"] < 0.3
    assert set(pairs["pair"]) == {"model-coder", "model-consensus", "coder-coder"}
    verdicts = pairs.loc[pairs["pair"] == "model-coder", "verdict"]
    assert verdicts.notna().all()


def test_confusion_table_follows_the_contract(run):
    if not (run / "validation" / "confusion.parquet").exists():
        main(["--run", str(run), "--bootstrap", "0", "-q", "--no-figures"])
    conf = read_artifact(run / "validation" / "confusion.parquet", CONFUSION).to_pandas()
    assert list(conf.columns) == ["participant_id", "group", "action", "reference", "tp", "fp", "fn", "tn", "frames",
                                  "model_pct", "coder_pct"]
    assert (conf["frames"] == conf[["tp", "fp", "fn", "tn"]].sum(axis=1)).all()
    assert np.allclose(conf["model_pct"], 100 * (conf["tp"] + conf["fp"]) / conf["frames"])
    assert set(conf["reference"]) == {"consensus"} and conf["group"].isin(["ASD", "PSY", "TDC"]).all()


def test_reference_coder_and_time_bins(run, tmp_path):
    out = tmp_path / "val"
    assert main(["--run", str(run), "--reference", "same", "--bin", "1", "--bootstrap", "0", "--no-figures",
                 "--out", str(out), "-q"]) == 0
    conf = pd.read_parquet(out / "confusion.parquet")
    assert set(conf["reference"]) == {"same"}
    pairs = pd.read_parquet(out / "pairs.parquet")
    assert set(pairs["pair"]) == {"model-coder", "coder-coder"} and (pairs["bin"] == "1").all()
    allrow = pairs[(pairs["action"] == ALL) & (pairs["rater_b"] == "same")].iloc[0]
    assert allrow["bins"] < allrow["frames_shared"] / 20  # one bin per second, not per frame


def test_model_that_never_fires(tmp_path):
    run = coded_run(tmp_path / "never", threshold=1.0)
    assert main(["--run", str(run), "--bootstrap", "50", "--no-figures", "-q"]) == 0
    pairs = pd.read_parquet(run / "validation" / "pairs.parquet")
    model = pairs[pairs["pair"] == "model-coder"]
    assert (model["event_recall"].fillna(0) == 0).all()
    coded = model[model["prevalence"] > 0.01]
    assert len(coded) and (coded["kappa"].dropna() == 0).all()
    notes = [c for c in pairs.columns if c.endswith("_note") or c == "verdict_reason"]
    for c in pairs.columns:
        if c in notes or pairs[c].dtype == object:
            continue
        for i in np.flatnonzero(pairs[c].isna().to_numpy()):
            assert any(isinstance(pairs[n].iloc[i], str) for n in notes), c


def test_bad_input_exits_2_and_writes_nothing(run, tmp_path, capsys):
    bad = tmp_path / "run"
    shutil.copytree(run, bad, ignore=shutil.ignore_patterns("validation"))
    ses = pd.read_parquet(bad / "codings" / "sessions.parquet")
    ev = pd.read_parquet(bad / "codings" / "events.parquet")
    ses.loc[0, "video_id"] = "not-in-manifest"
    ev.loc[ev["video_id"] == ses.loc[1, "video_id"], "video_id"] = ev["video_id"]
    ses.to_parquet(bad / "codings" / "sessions.parquet")
    with pytest.raises(SystemExit) as e:
        main(["--run", str(bad), "-q"])
    assert e.value.code == 2
    assert "not-in-manifest" in capsys.readouterr().err
    assert not any((bad / "validation").glob("*.parquet"))
    with pytest.raises(SystemExit) as e:
        main(["--run", str(bad), "--reference", "nobody", "-q"])
    assert e.value.code == 2
