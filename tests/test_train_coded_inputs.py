"""Bad input to ``python -m recipes.train_coded``: one line, exit 2, nothing written; and the splits and
labels it builds on (participants never in two parts, stratified by group, labels from the per-frame truth).

The cohort here is the simulator's truth coded by simulated coders (``simulator coders --format none``:
the codings folder itself) with empty video files: every check below is made before a video is read.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from model.taxonomy import MA52
from model.windows import WindowPlan
from pipeline.manifest import read_manifest
from recipes.coded_classes import choose_classes
from recipes.coded_labels import count_events, label_source, read_coded_sessions, truth_frames, window_labels
from recipes.coded_splits import holdout_split, kfold_splits
from recipes.coded_windows import VideoTable
from recipes.train_coded import main
from simulator.__main__ import main as simulate
from simulator.motions import ACTIONS

from test_simulated_coders import fake_cohort  # noqa: E402  (tests/ helper)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("coded")
    sim = fake_cohort(root / "sim", groups={"ASD": 3, "PSY": 3, "TDC": 3}, seconds=60, seed=2)
    (sim / "videos").mkdir()
    for vid in pd.read_csv(sim / "manifest.csv")["participant_id"]:
        (sim / "videos" / f"{vid}.mp4").write_bytes(b"")
    codings = root / "codings"
    assert simulate(["-q", "coders", "--cohort", str(sim), "--out", str(codings), "--coders", "2", "--no-perfect",
                     "--format", "none", "--seed", "1"]) == 0
    (root / "pose").mkdir()
    return sim, codings, root


def _run(capsys, sim, codings, root, out, *extra, manifest=None):
    with pytest.raises(SystemExit) as exc:
        main(["--manifest", str(manifest or sim / "manifest.csv"), "--keypoints", str(root / "pose"), "--codings",
              str(codings), "--out", str(out), *extra])
    err = capsys.readouterr().err.strip()
    return exc.value.code, err


def test_codings_of_a_video_not_in_the_manifest(cohort, capsys, tmp_path):
    sim, codings, root = cohort
    lines = (sim / "manifest.csv").read_text().splitlines()
    short = tmp_path / "manifest.csv"
    short.write_text("\n".join(lines[:-1]).replace("videos/", f"{sim}/videos/") + "\n")
    code, err = _run(capsys, sim, codings, root, tmp_path / "out", manifest=short)
    assert code == 2 and len(err.splitlines()) == 1
    assert "TDC-003" in err and "is not in" in err and "sessions.parquet" in err
    assert not (tmp_path / "out").exists()


def test_a_requested_class_with_too_few_events(cohort, capsys, tmp_path):
    sim, codings, root = cohort
    never = next(a for a in MA52.actions if a not in ACTIONS)  # an MA-52 action the simulator never shows
    code, err = _run(capsys, sim, codings, root, tmp_path / "out", "--classes", f"shaking legs,{never}",
                     "--min-events", "1", "--min-participants", "1")
    assert code == 2 and len(err.splitlines()) == 1
    assert f"{never!r} has 0 coded event(s) across 0 participant(s)" in err
    code, err = _run(capsys, sim, codings, root, tmp_path / "out", "--min-events", "100000")
    assert code == 2 and "no coded action has >= 100000 events" in err
    assert not (tmp_path / "out").exists()


def test_more_folds_than_a_group_has_participants(cohort, capsys, tmp_path):
    sim, codings, root = cohort
    code, err = _run(capsys, sim, codings, root, tmp_path / "out", "--folds", "4")
    assert code == 2 and len(err.splitlines()) == 1
    assert "--folds 4 is larger than group" in err and "3 participants" in err
    assert not (tmp_path / "out").exists()


def test_coded_videos_without_keypoints(cohort, capsys, tmp_path):
    sim, codings, root = cohort
    code, err = _run(capsys, sim, codings, root, tmp_path / "out", "--folds", "3")
    assert code == 2 and len(err.splitlines()) == 1 and "no keypoints for 9 coded video(s)" in err
    assert not (tmp_path / "out").exists()


def test_a_folder_of_another_tool_is_refused(cohort, capsys, tmp_path):
    sim, codings, root = cohort
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("x")
    code, err = _run(capsys, sim, codings, root, tmp_path / "out")
    assert code == 2 and "not a train_coded folder" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mine.txt"]


# --------------------------------------------------------------------------------------------------
# Splits: participants only, stratified, every participant validates once (K-fold)
# --------------------------------------------------------------------------------------------------


def _people(sizes):
    return pd.DataFrame([(f"{g}-{i}", g) for g, n in sizes.items() for i in range(n)],
                        columns=["participant_id", "group"])


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_kfold_every_participant_validates_once_and_every_fold_sees_every_group(seed):
    people = _people({"ASD": 12, "PSY": 5, "TDC": 9})
    s = kfold_splits(people, 3, seed=seed)
    assert sorted(s["participant_id"]) == sorted(people["participant_id"])
    assert s["participant_id"].is_unique and set(s["fold"]) == {1, 2, 3}
    for k in (1, 2, 3):
        val = set(s.loc[s["fold"] == k, "participant_id"])
        train = set(s.loc[s["fold"] != k, "participant_id"])
        assert val and train and not (val & train) and val | train == set(people["participant_id"])
        counts = s[s["fold"] == k].groupby("group").size()
        assert set(counts.index) == {"ASD", "PSY", "TDC"}
        assert counts["ASD"] == 4 and counts["TDC"] == 3 and counts["PSY"] in (1, 2)


def test_holdout_is_stratified_by_group_and_disjoint():
    people = _people({"ASD": 12, "PSY": 12, "TDC": 12})
    s = holdout_split(people, share=0.25, seed=3)
    val = s[s["part"] == "validation"]
    assert val.groupby("group").size().to_dict() == {"ASD": 3, "PSY": 3, "TDC": 3}
    assert s["participant_id"].is_unique
    assert holdout_split(people, share=0.25, seed=3).equals(s)  # seeded
    assert not holdout_split(people, share=0.25, seed=4).equals(s)


# --------------------------------------------------------------------------------------------------
# Labels and classes from the per-frame truth
# --------------------------------------------------------------------------------------------------


def test_window_labels_and_event_counts_follow_the_per_frame_truth(cohort):
    sim, codings, root = cohort
    manifest = read_manifest(sim / "manifest.csv")
    events, sessions = read_coded_sessions([codings], manifest)
    source = label_source(events, sessions)
    assert source.name == "sim-coder-1"  # the coder with the most sessions; ties: the first
    plan = WindowPlan(clip_len=6, stride=8, hop_s=8 / 30)
    tables = {}
    for vid in source.videos:
        n = int(sessions.loc[(sessions["video_id"] == vid) & (sessions["coder"] == "sim-coder-1"), "num_frames"].iloc[0])
        ws = plan.windows(n, 30.0)
        tables[vid] = VideoTable(vid, pd.DataFrame({
            "video_id": vid, "window": [w.index for w in ws], "start_frame": [w.start_frame for w in ws],
            "end_frame": [w.end_frame for w in ws], "valid_fraction": 1.0, "clip": [f"{vid}-{w.index}" for w in ws]}),
            30.0, n)
    frames = pd.concat([pd.read_parquet(p) for p in sorted((codings / "frames" / "sim-coder-1").glob("*.parquet"))])
    by_frame = frames.groupby(["video_id", "frame"])["action"].apply(lambda a: sorted(x for x in a if isinstance(x, str)))
    centre = window_labels(source, tables, manifest, rule="centre")
    for r in centre.sample(200, random_state=0).itertuples():
        acts = by_frame[(r.video_id, (r.start_frame + r.end_frame - 1) // 2)]
        assert (r.action == "background") == (not acts) and (not acts or r.action in acts)
    major = window_labels(source, tables, manifest, rule="majority")
    for r in major.sample(200, random_state=1).itertuples():
        span = frames[(frames["video_id"] == r.video_id) & frames["frame"].between(r.start_frame, r.end_frame - 1)]
        counts = span["action"].fillna("background").value_counts()
        assert counts[r.action] == counts.max() and np.isclose(r.purity, counts.max() / (r.end_frame - r.start_frame))
    # event counts = runs of frames in the coder's per-frame files
    counts = count_events(source).set_index("action")
    for action in counts.index:
        runs = 0
        for vid, d in frames[frames["action"] == action].groupby("video_id"):
            f = np.sort(d["frame"].to_numpy())
            runs += 1 + int((np.diff(f) > 1).sum())
        assert counts.loc[action, "events"] == runs
    choice = choose_classes(count_events(source), min_events=10, min_participants=3)
    assert choice.classes.names[-1] == "background" and len(choice.classes) > 2
    # the truth handed to the read-out calibration is the coder's per-frame files
    truth = truth_frames(source, list(tables))
    mine = frames[["video_id", "frame", "action"]].sort_values(["video_id", "frame", "action"], na_position="first")
    got = truth.sort_values(["video_id", "frame", "action"], na_position="first")
    assert got[["video_id", "frame"]].to_numpy().tolist() == mine[["video_id", "frame"]].to_numpy().tolist()
    def name(a):
        return a if isinstance(a, str) else None

    assert [name(a) for a in got["action"]] == [name(a) for a in mine["action"]]


def test_training_records_subsample_background_and_balance_classes():
    from recipes.coded_config import CodedConfig
    from recipes.train_coded import _records

    counts = {"nodding": 40, "shaking legs": 10, "touching nose": 4, "waving": 7, "background": 400}
    rows = [(a, i) for a, n in counts.items() for i in range(n)] + [(None, 0)] * 5
    rng = np.random.default_rng(0)
    labels = pd.DataFrame({"video_id": "v", "participant_id": "p", "group": "g",
                           "window": np.arange(len(rows)), "clip": [f"c{i}" for i in range(len(rows))],
                           "action": [a for a, _ in rows], "bg_u": rng.random(len(rows))})
    choice = choose_classes(pd.DataFrame({"action": ["nodding", "shaking legs", "touching nose", "waving"],
                                          "events": [20, 10, 10, 3], "participants": [5, 5, 5, 5],
                                          "frames": [1, 1, 1, 1]}), min_events=10, min_participants=3)
    assert choice.classes.names == ("nodding", "shaking legs", "touching nose", "background")
    assert choice.table.set_index("action").loc["waving", "status"] == "folded into background"
    names = choice.classes.names

    def per_class(coded):
        recs = _records(labels, choice, coded=coded, train=True, rel="w")
        return pd.Series([names[r["label"]] for r in recs]).value_counts().to_dict(), recs

    plain, recs = per_class(CodedConfig())
    bg_kept = int(((labels["action"].isin(["background", "waving"])) & (labels["bg_u"] < 0.25)).sum())
    assert plain == {"nodding": 40, "shaking legs": 10, "touching nose": 4, "background": bg_kept}
    assert all(r["file"] == f"w/clips/{r['id']}.npz" for r in recs)  # no window twice without balancing
    balanced, recs = per_class(CodedConfig(balance="sampling", max_repeat=4))
    assert balanced == {"nodding": 40, "shaking legs": 40, "touching nose": 16, "background": bg_kept}
    assert len({r["id"] for r in recs}) == len(recs)
    dropped, _ = per_class(CodedConfig(unused="drop", window_step=2))
    choice_drop = choose_classes(choice.table[["action", "events", "participants", "frames"]], min_events=10,
                                 min_participants=3, unused="drop")
    recs = _records(labels, choice_drop, coded=CodedConfig(unused="drop"), train=True, rel="w")
    assert "waving" not in {labels.set_index("clip").loc[r["id"], "action"] for r in recs}
    val = _records(labels, choice, coded=CodedConfig(), train=False, rel="w")
    assert len(val) == len(labels)  # validation: every window with a clip, once
