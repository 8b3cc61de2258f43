"""python -m pipeline.aggregate end to end on windows tables written here: outputs, failures, exit codes, resume."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from model.preprocessing import ClassList
from model.taxonomy import MA52
from pipeline.aggregate import main
from pipeline.artifacts import read_artifact, read_sidecar, write_artifact
from pipeline.contracts import BOUTS, CONTRACTS, COHORT, EXCLUSIONS, SEGMENTS, conform

from windows_fixtures import CLASSES, FPS, write_windows  # noqa: E402  (tests/ helper)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def cohort(tmp_path):
    """Four participants: 007 (two videos), 010 (one), 020 (windows missing), 030 (no classified window)."""
    w = tmp_path / "windows"
    # 007_a: 20 frames; nodding 0-10 (1 s), shaking legs 10-20.
    write_windows(w, "v007_a", [0, 10], [10, 20], [[.9, .05, .05], [.1, .8, .1]])
    # 007_b: 10 frames; first 5 invalid, then nodding 5-10.
    write_windows(w, "v007_b", [0, 5], [5, 10], [None, [.7, .2, .1]])
    # 010: 10 frames; no class passes 0.5.
    write_windows(w, "v010", [0], [10], [[.4, .3, .3]])
    write_windows(w, "v030", [0, 5], [5, 10], [None, None])
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "participant_id,group,video,age,sex\n"
        "007,ASD,videos/v007_a.mp4,9,F\n007,ASD,videos/v007_b.mp4,9,F\n"
        "010,TDC,videos/v010.mp4,12,M\n020,PSY,videos/v020.mp4,30,F\n030,TDC,videos/v030.mp4,14,NA\n"
    )
    return tmp_path, w, manifest


def run(argv, capsys):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_end_to_end_tables_failures_and_sidecars(cohort, capsys):
    tmp, w, manifest = cohort
    out = tmp / "out"
    code, stdout, stderr = run(["--windows", w, "--manifest", manifest, "--out", out, "-q"], capsys)
    assert code == 1  # two videos failed
    assert "aggregate: 5 video(s) of 4 participant(s): 3 read out, 2 failed" in stderr
    assert "excluded participant '020'" in stderr and "excluded participant '030'" in stderr
    assert f"wrote {out / 'cohort.parquet'}" in stdout

    cohort_df = read_artifact(out / "cohort.parquet", COHORT).to_pandas()
    assert cohort_df["participant_id"].tolist() == ["007"] * 3 + ["010"] * 3  # ids verbatim, excluded left out
    assert cohort_df["action"].tolist() == list(CLASSES.names) * 2  # every action, zeros included
    p007 = cohort_df[cohort_df.participant_id == "007"].set_index("action")
    # 007 pooled: 25 valid frames (20 + 5); nodding 10 + 5 frames, shaking legs 10.
    assert p007["percent_time"].to_dict() == {"nodding": 60.0, "shaking legs": 40.0, "touching nose": 0.0}
    assert p007["observed_s"].iloc[0] == pytest.approx(2.5)
    assert (cohort_df.loc[cohort_df.participant_id == "010", "percent_time"] == 0).all()
    assert cohort_df["age"].tolist() == [9] * 3 + [12] * 3 and cohort_df["sex"].tolist() == ["F"] * 3 + ["M"] * 3

    bouts = read_artifact(out / "bouts.parquet", BOUTS).to_pandas().set_index(["participant_id", "action"])
    nod = bouts.loc[("007", "nodding")]
    assert nod["bouts"] == 2 and nod["total_s"] == pytest.approx(1.5) and nod["latency_s"] == 0.0
    assert nod["mean_bout_s"] == pytest.approx(0.75) and nod["median_bout_s"] == pytest.approx(0.75)
    legs = bouts.loc[("007", "shaking legs")]
    assert legs["bouts"] == 1 and legs["latency_s"] == pytest.approx(1.0)
    assert bouts.loc[("010", "nodding")]["bouts"] == 0 and pd.isna(bouts.loc[("010", "nodding")]["latency_s"])

    excl = read_artifact(out / "exclusions.parquet", EXCLUSIONS).to_pandas()
    assert excl[["participant_id", "scope"]].values.tolist() == [
        ["020", "video"], ["020", "participant"], ["030", "video"], ["030", "participant"]]
    assert "no windows file" in excl.reason[0] and "no classified window" in excl.reason[2]

    seg = read_artifact(out / "segments" / "v007_a.parquet", SEGMENTS).to_pandas()
    assert seg[["action", "start_s", "end_s"]].values.tolist() == [["nodding", 0.0, 1.0], ["shaking legs", 1.0, 2.0]]
    det = pd.read_csv(out / "detections.csv", dtype={"video_id": str})
    assert det.columns.tolist() == ["video_id", "t_start", "t_end", "class", "score"]
    assert det[["video_id", "class"]].values.tolist() == [["v007_a", 9], ["v007_a", 24], ["v007_b", 9]]
    assert det["t_start"].tolist() == [0.0, 1.0, 0.5]

    side = read_sidecar(out / "cohort.parquet")
    assert side["readout"] == {"scores": "mean", "rule": "threshold", "threshold": 0.5, "thresholds": {},
                               "thresholds_file": None, "min_duration_s": 0.0, "merge_gap_s": 0.0,
                               "min_observed_s": 1.0, "order": "merge then drop"}
    # no checkpoint read-out in these windows' sidecars: every value is the stage's default
    assert set(side["readout_sources"].values()) == {"default"}
    assert side["classes"] == CLASSES.to_dict() and side["model_id"] == "m1"
    assert side["excluded_participants"] == 2 and "rule threshold (tau=0.5)" in side["readout_text"]
    assert read_sidecar(out / "segments" / "v007_a.parquet")["readout"]["rule"] == "threshold"


def test_cohort_is_accepted_by_the_analysis_reader(cohort, capsys):
    from analysis.cohort import validate_cohort
    from analysis.config import HurdleConfig

    tmp, w, manifest = cohort
    run(["--windows", w, "--manifest", manifest, "--out", tmp / "out", "-q"], capsys)
    df = pd.read_parquet(tmp / "out" / "cohort.parquet")
    clean = validate_cohort(df, HurdleConfig(groups=("ASD", "TDC"), covariates=("age", "sex")))
    assert len(clean) == 6 and clean["participant_id"].tolist()[0] == "007"


def test_all_ok_exits_0_and_rerun_rewrites_no_segment(tmp_path, capsys):
    w = tmp_path / "windows"
    write_windows(w, "a", [0], [10], [[.9, .05, .05]])
    write_windows(w, "b", [0], [10], [[.05, .9, .05]])
    (tmp_path / "m.csv").write_text("participant_id,group,video\n1,ASD,a.mp4\n2,TDC,b.mp4\n")
    args = ["--windows", tmp_path, "--manifest", tmp_path / "m.csv", "--out", tmp_path / "out"]  # parent of windows/
    code, stdout, _ = run(args, capsys)
    assert code == 0 and "segments/a.parquet" in stdout
    code, stdout, _ = run(args, capsys)
    assert code == 0 and "segments/" not in stdout and "cohort.parquet" in stdout
    # A video that leaves the manifest leaves no stale segments behind.
    (tmp_path / "m.csv").write_text("participant_id,group,video\n1,ASD,a.mp4\n")
    code, _, _ = run(args, capsys)
    assert code == 0 and sorted(p.name for p in (tmp_path / "out" / "segments").iterdir()) == ["a.parquet", "a.parquet.json"]
    # Another read-out rule rewrites the segments and records itself.
    code, stdout, _ = run(args + ["--rule", "top1"], capsys)
    assert "segments/a.parquet" in stdout and read_sidecar(tmp_path / "out" / "segments" / "a.parquet")["readout"]["rule"] == "top1"


@pytest.mark.parametrize("case", ["class-list", "model", "prob-length"])
def test_windows_from_another_model_are_bad_input(tmp_path, capsys, case):
    w = tmp_path / "windows"
    write_windows(w, "a", [0], [10], [[.9, .05, .05]])
    if case == "class-list":
        other = ClassList.from_actions(["nodding", "shaking legs", "waving"])
        write_windows(w, "b", [0], [10], [[.9, .05, .05]], classes=other)
        expect = "class list (3 classes) differs from"
    elif case == "model":
        write_windows(w, "b", [0], [10], [[.9, .05, .05]], model_id="m2")
        expect = "model_id 'm2' differs from 'm1'"
    else:
        write_windows(w, "b", [0, 5], [5, 10], [[.9, .05, .05], [.5, .5]])
        expect = "row 1 has 2 class probabilities but the model's class list has 3"
    (tmp_path / "m.csv").write_text("participant_id,group,video\n1,ASD,a.mp4\n2,TDC,b.mp4\n")
    code, stdout, stderr = run(["--windows", w, "--manifest", tmp_path / "m.csv", "--out", tmp_path / "out"], capsys)
    assert code == 2 and stdout == ""
    assert stderr.count("\n") == 1 and stderr.startswith("pipeline.aggregate: error:") and expect in stderr
    assert not (tmp_path / "out" / "cohort.parquet").exists() and not (tmp_path / "out" / "segments").exists()


@pytest.mark.parametrize(
    "manifest,args,expect",
    [
        ("participant_id,group,video\n1,ASD,a.mp4\n1,TDC,b.mp4\n", [], "row 2 (line 3): participant '1' is in group 'TDC'"),
        ("participant_id,video\n1,a.mp4\n", [], "missing column 'group'"),
        ("participant_id,group,video\n1,ASD,a.mp4\n", ["--rule", "background"], "needs a model with a background class"),
        ("participant_id,group,video\n1,ASD,a.mp4\n", ["--threshold", "1.5"], "readout.threshold"),
        ("participant_id,group,video\n1,ASD,a.mp4\n", ["--rule", "per-class", "--thresholds", "T"], "'waving'"),
    ],
    ids=["two-groups", "no-group-column", "no-background", "bad-threshold", "unknown-class-threshold"],
)
def test_bad_input_one_line_exit_2(tmp_path, capsys, manifest, args, expect):
    w = tmp_path / "windows"
    write_windows(w, "a", [0], [10], [[.9, .05, .05]])
    write_windows(w, "b", [0], [10], [[.9, .05, .05]])
    (tmp_path / "m.csv").write_text(manifest)
    (tmp_path / "T").write_text(json.dumps({"waving": 0.3}))
    args = [a.replace("T", str(tmp_path / "T")) if a == "T" else a for a in args]
    code, stdout, stderr = run(["--windows", w, "--manifest", tmp_path / "m.csv", "--out", tmp_path / "out", *args], capsys)
    assert code == 2 and stdout == "" and stderr.count("\n") == 1 and expect in stderr
    assert not (tmp_path / "out" / "cohort.parquet").exists()


def test_out_is_a_file_fails_before_work(tmp_path, capsys):
    (tmp_path / "out").write_text("")
    (tmp_path / "m.csv").write_text("participant_id,group,video\n1,ASD,a.mp4\n")
    code, _, stderr = run(["--windows", tmp_path, "--manifest", tmp_path / "m.csv", "--out", tmp_path / "out"], capsys)
    assert code == 2 and "is an existing file" in stderr


def test_broken_sidecar_or_contract_fails_only_that_video(tmp_path, capsys):
    w = tmp_path / "windows"
    write_windows(w, "a", [0], [10], [[.9, .05, .05]])
    write_windows(w, "b", [0], [10], [[.9, .05, .05]], sidecar=False)
    p = write_windows(w, "c", [0], [10], [[.9, .05, .05]])
    side = json.loads((w / "c.parquet.json").read_text())
    del side["video"]
    (w / "c.parquet.json").write_text(json.dumps(side))
    (tmp_path / "m.csv").write_text("participant_id,group,video\n1,ASD,a.mp4\n2,TDC,b.mp4\n3,TDC,c.mp4\n")
    code, _, stderr = run(["--windows", w, "--manifest", tmp_path / "m.csv", "--out", tmp_path / "out"], capsys)
    assert code == 1
    assert "failed   b: " in stderr and "no sidecar" in stderr
    assert "failed   c: " in stderr and "'video' -> 'fps'" in stderr
    assert pd.read_parquet(tmp_path / "out" / "cohort.parquet")["participant_id"].unique().tolist() == ["1"]
    assert p.exists()


def test_ground_truth_agreement(cohort, capsys):
    tmp, w, manifest = cohort
    # Truth for 007: nodding on frames 0-4 of v007_a only (5 of 25 valid frames -> 20 %), shaking legs 10-19
    # (40 %); the invalid frames 0-4 of v007_b hold nodding in the truth but are not counted.
    rows = [("v007_a", f, "nodding") for f in range(5)] + [("v007_a", f, "shaking legs") for f in range(10, 20)]
    rows += [("v007_a", f, "shaking legs") for f in range(10, 20)]  # duplicate rows count once
    rows += [("v007_b", f, "nodding") for f in range(5)] + [("v010", 0, "")] + [("v010", 3, "touching nose")]
    truth = pd.DataFrame(rows, columns=["video_id", "frame", "action"])
    truth.to_csv(tmp / "truth.csv", index=False)
    code, stdout, _ = run(["--windows", w, "--manifest", manifest, "--out", tmp / "out", "--gt-frames", tmp / "truth.csv"], capsys)
    assert code == 1 and "agreement.csv" in stdout
    ag = pd.read_csv(tmp / "out" / "agreement.csv").set_index("action")
    # nodding: 007 predicted 60 vs true 20 -> 40; 010: 0 vs 0 -> MAE 20.
    assert ag.loc["nodding", "mae_pp"] == pytest.approx(20.0) and ag.loc["nodding", "bias_pp"] == pytest.approx(20.0)
    assert ag.loc["shaking legs", "mae_pp"] == pytest.approx(0.0)
    # touching nose: 010 true 1 of 10 frames = 10 %, predicted 0 -> MAE 5, bias -5.
    assert ag.loc["touching nose", "mae_pp"] == pytest.approx(5.0) and ag.loc["touching nose", "bias_pp"] == pytest.approx(-5.0)
    assert (ag["n_participants"] == 2).all()
    # any engagement read wrongly: touching nose for 010 (true 10 %, read 0), of 2 participants
    assert ag["engagement_disagree"].to_dict() == {"nodding": 0.0, "shaking legs": 0.0, "touching nose": 0.5}


def test_ground_truth_missing_a_video_is_bad_input(cohort, capsys):
    tmp, w, manifest = cohort
    pd.DataFrame({"video_id": ["v007_a"], "frame": [0], "action": ["nodding"]}).to_csv(tmp / "t.csv", index=False)
    code, _, stderr = run(["--windows", w, "--manifest", manifest, "--out", tmp / "out", "--gt-frames", tmp / "t.csv"], capsys)
    assert code == 2 and "no rows for video 'v007_b'" in stderr


def test_new_contracts_round_trip(tmp_path):
    bouts = pd.DataFrame({"participant_id": ["007"], "group": ["ASD"], "action_id": [9], "action": ["nodding"],
                          "bouts": [0], "total_s": [0.0], "mean_bout_s": [None], "median_bout_s": [None],
                          "latency_s": [None]})
    excl = pd.DataFrame({"participant_id": ["007", "007"], "group": ["ASD", "ASD"], "video_id": ["v1", None],
                         "scope": ["video", "participant"], "reason": ["no windows file", "all failed"]})
    for name, df in (("bouts", bouts), ("exclusions", excl)):
        assert name in CONTRACTS
        path = write_artifact(df, tmp_path / f"{name}.parquet", contract=name, stage="aggregate")
        back = read_artifact(path, name)
        assert back.schema.equals(conform(df, name).schema)
    with pytest.raises(Exception, match="scope"):
        conform(excl.assign(scope=["video", "cohort"]), "exclusions")


def test_python_dash_m_help_and_run(cohort):
    tmp, w, manifest = cohort
    r = subprocess.run([sys.executable, "-m", "pipeline.aggregate", "--windows", str(w), "--manifest", str(manifest),
                        "--out", str(tmp / "o2"), "--rule", "top1", "--min-duration", "0.2", "--merge-gap", "0.1"],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 1, r.stderr
    assert "rule top1, min duration 0.2 s, merge gap 0.1 s (merge first, then drop)" in r.stderr


def test_simulator_ground_truth_read_back_exactly(tmp_path, capsys):
    """Windows built from the simulator's own frame truth (one frame each, one-hot) give its percent times
    exactly, and --gt-frames on its truth/frames folder gives zero error."""
    from simulator.recording import CohortConfig, frame_truth, percent_time, sample_participant

    config = CohortConfig(groups={"ASD": 1, "TDC": 1}, seconds=20.0, fps=FPS, seed=3)
    classes = ClassList.from_actions(sorted({r.action for r in config.rates}, key=MA52.actions.index))
    w, truth_dir = tmp_path / "windows", tmp_path / "truth" / "frames"
    truth_dir.mkdir(parents=True)
    rows, expected = [], []
    for i, group in enumerate(("ASD", "TDC")):
        spec = sample_participant(config, group, i, f"00{i}")
        truth = frame_truth(spec, FPS)
        truth.to_pandas().to_parquet(truth_dir / f"00{i}.parquet")
        labels = truth.column("action").to_pylist()
        probs = [[1.0 if lab == name else 0.0 for name in classes.names] if lab is not None else [1 / len(classes)] * len(classes)
                 for lab in labels]
        n = len(labels)
        write_windows(w, f"00{i}", np.arange(n), np.arange(1, n + 1), probs, classes=classes)
        rows.append(f"00{i},{group},videos/00{i}.mp4")
        expected += percent_time(spec, config)
    (tmp_path / "m.csv").write_text("participant_id,group,video\n" + "\n".join(rows) + "\n")
    code, _, _ = run(["--windows", w, "--manifest", tmp_path / "m.csv", "--out", tmp_path / "out",
                      "--gt-frames", truth_dir], capsys)
    assert code == 0
    got = pd.read_parquet(tmp_path / "out" / "cohort.parquet").set_index(["participant_id", "action"])["percent_time"]
    for e in expected:
        assert got[(e["participant_id"], e["action"])] == pytest.approx(e["percent_time"], abs=1e-9)
    assert sum(e["percent_time"] for e in expected) > 0
    ag = pd.read_csv(tmp_path / "out" / "agreement.csv")
    assert (ag["mae_pp"] < 1e-9).all() and (ag["n_participants"] == 2).all()


@pytest.mark.parametrize("text,expect", [("{not json", "not valid JSON"), ('{"nodding": 2}', "'nodding' must be a number in (0, 1]"),
                                         ('[0.3]', "expected a JSON object")])
def test_bad_thresholds_file_is_one_line_exit_2(tmp_path, capsys, text, expect):
    write_windows(tmp_path / "windows", "a", [0], [10], [[.9, .05, .05]])
    (tmp_path / "m.csv").write_text("participant_id,group,video\n1,ASD,a.mp4\n")
    (tmp_path / "t.json").write_text(text)
    code, _, stderr = run(["--windows", tmp_path / "windows", "--manifest", tmp_path / "m.csv", "--out", tmp_path / "out",
                           "--rule", "per-class", "--thresholds", tmp_path / "t.json"], capsys)
    assert code == 2 and expect in stderr and stderr.count("\n") == 1


def test_per_class_thresholds_change_the_read_out(tmp_path, capsys):
    write_windows(tmp_path / "windows", "a", [0, 10], [10, 20], [[.45, .35, .2], [.2, .3, .5]])
    (tmp_path / "m.csv").write_text("participant_id,group,video\n1,ASD,a.mp4\n")
    (tmp_path / "t.json").write_text('{"nodding": 0.4}')
    code, _, _ = run(["--windows", tmp_path / "windows", "--manifest", tmp_path / "m.csv", "--out", tmp_path / "out",
                      "--rule", "per-class", "--thresholds", tmp_path / "t.json"], capsys)
    assert code == 0
    pct = pd.read_parquet(tmp_path / "out" / "cohort.parquet").set_index("action")["percent_time"]
    assert pct.to_dict() == {"nodding": 50.0, "shaking legs": 0.0, "touching nose": 50.0}
    assert read_sidecar(tmp_path / "out" / "cohort.parquet")["readout"]["thresholds"] == {"nodding": 0.4}


def test_empty_windows_table_is_a_failed_video_not_a_model_mismatch(tmp_path, capsys):
    import pyarrow as pa

    from pipeline.contracts import WINDOWS

    w = tmp_path / "windows"
    empty = pa.table({f.name: pa.array([], f.type) for f in WINDOWS.schema})
    write_artifact(empty, w / "a.parquet", contract="windows", stage="recognize",
                   extra={"video": {"fps": FPS, "frame_count": 0}, "classes": CLASSES.to_dict()})
    write_windows(w, "b", [0], [10], [[.9, .05, .05]])
    (tmp_path / "m.csv").write_text("participant_id,group,video\n1,ASD,a.mp4\n2,TDC,b.mp4\n")
    code, _, stderr = run(["--windows", w, "--manifest", tmp_path / "m.csv", "--out", tmp_path / "out"], capsys)
    assert code == 1 and "failed   a: " in stderr and "no classified window" in stderr
    assert pd.read_parquet(tmp_path / "out" / "cohort.parquet")["participant_id"].unique().tolist() == ["2"]


def test_windows_option_accepts_the_recognition_output_folder(tmp_path, capsys):
    """--windows given the recognition stage's --out: windows/ is used, its QC table beside it is not a windows file."""
    w = tmp_path / "recognize" / "windows"
    write_windows(w, "a", [0], [10], [[.9, .05, .05]])
    pd.DataFrame({"video_id": ["a"], "status": ["ok"]}).to_parquet(tmp_path / "recognize" / "qc_recognize.parquet")
    (tmp_path / "m.csv").write_text("participant_id,group,video\n1,ASD,a.mp4\n")
    code, stdout, _ = run(["--windows", tmp_path / "recognize", "--manifest", tmp_path / "m.csv", "--out", tmp_path / "out"], capsys)
    assert code == 0 and "segments/a.parquet" in stdout


def test_participants_with_too_little_observed_time_are_left_out_and_listed(tmp_path, capsys):
    """A 1-frame video would enter as a non-engager in every action: below --min-observed it is excluded."""
    write_windows(tmp_path / "windows", "short", [0], [1], [[.9, .05, .05]])   # 1 frame = 0.1 s at 10 fps
    write_windows(tmp_path / "windows", "long", [0, 10], [10, 20], [[.9, .05, .05], [.2, .7, .1]])
    (tmp_path / "m.csv").write_text("participant_id,group,video\n1,ASD,short.mp4\n2,TDC,long.mp4\n")
    code, _, stderr = run(["--windows", tmp_path / "windows", "--manifest", tmp_path / "m.csv", "--out", tmp_path / "out"],
                          capsys)
    assert code == 0
    cohort = pd.read_parquet(tmp_path / "out" / "cohort.parquet")
    assert set(cohort["participant_id"]) == {"2"}
    excl = pd.read_parquet(tmp_path / "out" / "exclusions.parquet")
    row = excl[excl["participant_id"] == "1"].iloc[0]
    assert row["scope"] == "participant" and "0.10 s of valid pose" in row["reason"] and "min_observed_s" in row["reason"]
    assert "excluded participant '1': only 0.10 s" in stderr
    # 0 keeps every participant with a valid frame
    code, _, _ = run(["--windows", tmp_path / "windows", "--manifest", tmp_path / "m.csv", "--out", tmp_path / "out0",
                      "--min-observed", "0"], capsys)
    assert code == 0 and set(pd.read_parquet(tmp_path / "out0" / "cohort.parquet")["participant_id"]) == {"1", "2"}
