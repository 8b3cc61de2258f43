"""The simulator's own properties (fast, no pose model): programs, rendering, recordings, clips, CLI.

The pose-based acceptance (detection rate, planted motion in keypoints) is tests/test_synthetic_pose.py.
"""

from __future__ import annotations

import json
from dataclasses import replace

import cv2
import numpy as np
import pandas as pd
import pytest
from scipy import special

from model.preprocessing import BACKGROUND, ClassList
from model.taxonomy import MA52
from pipeline.artifacts import read_artifact
from recipes.prepare_clips import find_clip_inputs, parse_classes, read_clip_list
from simulator.__main__ import main
from simulator.appearance import LookRanges, sample_look
from simulator.camera import Camera
from simulator.clips import ClipConfig, write_clips
from simulator.motions import ACTIONS, PROGRAMS, idle_controls
from simulator.recording import CohortConfig, cohort_specs, sample_participant, write_cohort
from simulator.render import Renderer
from simulator.skeleton import arm_ik, skeleton_at

FPS = 30.0


# ------------------------------------------------------------------------------------------ programs
def test_programs_cover_all_body_parts_and_both_kinds_with_ma52_names():
    assert len(PROGRAMS) >= 12
    assert set(ACTIONS) <= set(MA52.actions)
    assert list(ACTIONS) == sorted(ACTIONS, key=MA52.index)
    assert {p.body_part for p in PROGRAMS.values()} == set(MA52.body_parts)
    assert {p.kind for p in PROGRAMS.values()} == {"motion", "position"}
    for name, p in PROGRAMS.items():
        assert MA52.actions[p.action_id] == name


@pytest.mark.parametrize("name", ACTIONS)
def test_program_edits_only_its_event_and_is_randomised(name):
    n, a, b = 120, 30, 90
    base = idle_controls(n, FPS, np.random.default_rng(0))
    edits = []
    for seed in (1, 2, 3):
        c = {k: v.copy() for k, v in base.items()}
        params = PROGRAMS[name].plant(c, a, b, FPS, np.random.default_rng(seed))
        changed = np.zeros(n, bool)
        for k in c:
            diff = c[k] != base[k]
            changed |= diff.reshape(n, -1).any(axis=1)
        assert not changed[:a].any() and not changed[b:].any()
        assert changed[a:b].mean() > 0.8
        edits.append({k: v for k, v in params.items() if k != "signal"} | {"sig": np.round(params["signal"], 6).tolist()})
    assert edits[0] != edits[1] or edits[1] != edits[2]  # amplitude / speed / side drawn per event


def test_idle_is_not_a_still_image_but_stays_small():
    rng = np.random.default_rng(4)
    look = sample_look(rng, (240, 288))
    n = 90
    c = idle_controls(n, FPS, rng)
    joints = [skeleton_at(look.body, c, i) for i in range(n)]
    neck = np.array([look.camera.project(j["neck"][None])[0][0] for j in joints])
    nose = np.array([look.camera.project(j["head"][None])[0][0] for j in joints])
    assert np.ptp(neck[:, 1]) > 0.3 and np.ptp(nose, axis=0).max() > 0.5  # breathing, sway, head drift
    assert np.ptp(nose, axis=0).max() < 15  # ... but no micro-action sized movement
    r = Renderer(replace(look, noise_sigma=0.0), seed=0)
    f0, f1 = r.render(joints[0], 0.0), r.render(joints[60], 2.0)
    assert np.abs(f0.astype(int) - f1).mean() > 0.05


def test_arm_ik_keeps_segment_lengths_and_reaches_reachable_targets():
    rng = np.random.default_rng(0)
    for _ in range(200):
        s = rng.normal(size=3)
        t = s + rng.normal(size=3) * 0.3
        elbow, wrist = arm_ik(s, t, 0.3, 0.26, rng.normal(size=3))
        assert np.linalg.norm(elbow - s) == pytest.approx(0.3, abs=1e-6)
        assert np.linalg.norm(wrist - elbow) == pytest.approx(0.26, abs=1e-6)
        if 0.05 < np.linalg.norm(t - s) < 0.55:
            assert np.linalg.norm(wrist - t) < 1e-6


# ------------------------------------------------------------------------------------------ rendering
def _peak_joints(look, name, rng):
    n = 60
    c = idle_controls(n, FPS, rng)
    p = PROGRAMS[name].plant(c, 0, n, FPS, rng)
    i = int(np.argmax(np.abs(p["signal"]))) if PROGRAMS[name].kind == "motion" else n // 2
    return skeleton_at(look.body, c, i)


def test_person_stays_in_frame_over_the_whole_look_range():
    """Every joint (and the head top) of every action's most extreme frame projects inside the image,
    for looks across the allowed ranges and at their corners."""
    rng = np.random.default_rng(1)
    R = LookRanges()
    looks = [sample_look(rng, (360, 432)) for _ in range(30)]
    for lo_hi in (0, 1):
        look = sample_look(rng, (360, 432), age=5.0 if lo_hi == 0 else 52.0)
        cam = Camera(size=(360, 432), distance=R.distance[lo_hi], fill=R.fill[1], offset=(R.offset_x[lo_hi], R.offset_y[lo_hi]),
                     yaw=R.yaw[lo_hi], pitch=R.pitch[lo_hi], scale=look.body.scale)
        looks.append(replace(look, camera=cam))
    for look in looks:
        for name in ACTIONS:
            j = _peak_joints(look, name, rng)
            pts = np.stack([v for v in j.values() if v.shape == (3,)])
            top = j["head"] + j["head_rot"] @ np.array([0.0, -1.2 * look.body.head * look.body.scale, 0.0])
            uv, _ = look.camera.project(np.vstack([pts, top]))
            w, h = look.camera.size
            assert (uv[:, 0] > 0).all() and (uv[:, 0] < w).all(), (name, uv[:, 0].min(), uv[:, 0].max())
            assert (uv[:, 1] > 0).all() and (uv[:, 1] < h).all(), (name, uv[:, 1].min(), uv[:, 1].max())


@pytest.mark.parametrize("size", [(64, 64), (200, 120), (1280, 720)])
def test_any_size_renders_the_person_centred_and_scaled(size):
    rng = np.random.default_rng(2)
    look = replace(sample_look(rng, size), noise_sigma=0.0, light_amplitude=0.0, brightness=0.0)
    c = idle_controls(1, FPS, rng)
    frame = Renderer(look, seed=0).render(skeleton_at(look.body, c, 0), 0.0)
    assert frame.shape == (size[1], size[0], 3) and frame.dtype == np.uint8
    # the person differs from the empty room, and covers roughly `fill` of the height
    diff = np.abs(frame.astype(int) - Renderer(replace(look), seed=0).background).sum(axis=2) > 40
    rows = np.flatnonzero(diff.any(axis=1))
    assert diff.mean() > 0.02
    share = (rows[-1] - rows[0] + 1) / size[1]
    if size[0] >= size[1]:  # wide frames: the person covers `fill` of the height (portrait: less, to fit the arm span)
        assert 0.85 * look.camera.fill < share < 1.1 * look.camera.fill + 2 / size[1]


def test_rendering_is_deterministic_per_seed_and_noise_follows_sigma():
    rng = np.random.default_rng(3)
    look = replace(sample_look(rng, (160, 192)), noise_sigma=5.0, light_amplitude=0.0, brightness=0.0)
    j = skeleton_at(look.body, idle_controls(1, FPS, rng), 0)
    a, b = Renderer(look, seed=7).render(j, 0.0), Renderer(look, seed=7).render(j, 0.0)
    assert np.array_equal(a, b)
    clean = Renderer(replace(look, noise_sigma=0.0), seed=7).render(j, 0.0).astype(float)
    residual = a - clean
    inner = (clean > 20) & (clean < 235)  # away from saturation
    assert residual[inner].std() == pytest.approx(5.0, rel=0.15)


# ------------------------------------------------------------------------------------------ recordings
def test_timeline_events_are_disjoint_in_range_and_of_allowed_duration():
    config = CohortConfig(groups={"ASD": 20, "PSY": 20, "TDC": 20}, seconds=90.0)
    for spec in cohort_specs(config):
        ev = sorted(spec.events, key=lambda e: e.start)
        for e in ev:
            assert 0 <= e.start < e.stop <= spec.num_frames
            assert config.duration_s[0] * FPS - 1 <= e.stop - e.start <= config.duration_s[1] * FPS + 1
        for e1, e2 in zip(ev, ev[1:]):
            assert e2.start - e1.stop >= config.min_gap_s * FPS - 1
        assert sum(e.stop - e.start for e in ev) <= config.busy_max * spec.num_frames + 1


def test_planted_group_effects_show_in_the_sampled_timelines():
    """Engagement and share of time per group agree with the generating model (many participants,
    timelines only, no rendering); null actions show no group difference."""
    config = CohortConfig(groups={"ASD": 400, "PSY": 400, "TDC": 400}, seconds=120.0)
    rows = []
    for spec in cohort_specs(config):
        for r in config.rates:
            frames = sum(e.stop - e.start for e in spec.events if e.action == r.action)
            rows.append({"group": spec.group, "action": r.action, "share": frames / spec.num_frames})
    df = pd.DataFrame(rows)
    engaged = df.assign(e=df["share"] > 0).groupby(["action", "group"])["e"].mean()
    share = df[df["share"] > 0].groupby(["action", "group"])["share"].mean()
    rates = {r.action: r for r in config.rates}
    for action, group in (("shaking legs", "ASD"), ("nodding", "ASD"), ("crossing arms", "PSY")):
        r = rates[action]
        expect = special.expit(special.logit(r.p_engaged) + r.prob_effects[group])
        assert engaged[action, group] == pytest.approx(expect, abs=0.07)
        assert engaged[action, "TDC"] == pytest.approx(r.p_engaged, abs=0.07)
    for action, group in (("touching nose", "PSY"), ("patting legs", "ASD")):
        assert share[action, group] > 2.0 * share[action, "TDC"]
    for action in ("waving", "arms akimbo", "spread legs"):  # nulls
        assert np.ptp(engaged[action].to_numpy()) < 0.1
        assert np.ptp(share[action].to_numpy()) < 0.012


@pytest.fixture(scope="module")
def tiny_cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("cohort")
    config = CohortConfig(groups={"ASD": 1, "TDC": 1}, seconds=8.0, size=(96, 112), seed=5,
                          rates=tuple(replace(r, p_engaged=0.9) for r in CohortConfig().rates))
    result = write_cohort(config, out)
    return config, out, result


def test_cohort_outputs_agree_with_each_other(tiny_cohort):
    config, out, _ = tiny_cohort
    manifest = pd.read_csv(out / "manifest.csv")
    assert list(manifest.columns) == ["participant_id", "group", "age", "sex", "video"]
    det = pd.read_csv(out / "truth" / "detections.csv")
    assert list(det.columns) == ["video_id", "t_start", "t_end", "class"]
    assert set(det["class"]) <= set(ACTIONS) and len(det) > 0
    pt = read_artifact(out / "truth" / "percent_time.parquet", "cohort").to_pandas()
    for row in manifest.itertuples():
        video = out / row.video
        cap = cv2.VideoCapture(str(video))
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == config.size
        assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(30.0)
        cap.release()
        frames = pd.read_parquet(out / "truth" / "frames" / f"{row.participant_id}.parquet")
        assert len(frames) == n == int(config.seconds * config.fps)
        assert (frames["action"].isna() == (frames["action_id"] == -1)).all()
        # per-frame truth rebuilt from the detection CSV
        labels = np.full(n, None, object)
        for d in det[det["video_id"] == row.participant_id].itertuples():
            labels[round(d.t_start * FPS):round(d.t_end * FPS)] = d[4]
        assert list(labels) == [None if pd.isna(a) else a for a in frames["action"]]
        # percent time recounted from the frames
        mine = pt[pt["participant_id"] == row.participant_id].set_index("action")["percent_time"]
        counts = frames["action"].value_counts()
        for action in ACTIONS:
            assert mine[action] == pytest.approx(100.0 * counts.get(action, 0) / n)
        assert set(pt.columns) >= {"participant_id", "group", "action_id", "action", "percent_time", "observed_s", "age", "sex"}
    effects = pd.read_csv(out / "truth" / "effects.csv")
    assert set(effects["group"]) == {"ASD"} and set(effects["reference"]) == {"TDC"}  # PSY absent here
    assert CohortConfig.from_dict(json.loads((out / "config.json").read_text())) == config


def test_cohort_outputs_are_read_by_the_downstream_readers(tiny_cohort):
    """The manifest, per-frame truth and detection truth load with the read-out's own readers."""
    from pipeline.agreement import read_frame_truth
    from pipeline.detection_eval import read_ground_truth
    from pipeline.manifest import read_manifest

    _, out, _ = tiny_cohort
    m = read_manifest(out / "manifest.csv")
    assert list(m.videos["video_id"]) == ["ASD-001", "TDC-001"] and set(m.covariates) == {"age", "sex"}
    truth = read_frame_truth(out / "truth" / "frames")
    det = read_ground_truth(out / "truth" / "detections.csv")
    labelled = truth.dropna(subset=["action"])
    assert len(labelled) == pytest.approx(sum(round((r.t_end - r.t_start) * FPS) for r in det.itertuples()), abs=len(det))


def test_cohort_rerun_keeps_up_to_date_videos_and_force_renders(tiny_cohort):
    config, out, first = tiny_cohort
    video = out / "videos" / "ASD-001.mp4"
    stamp = video.stat().st_mtime_ns
    again = write_cohort(config, out)
    assert video in again["skipped"] and video.stat().st_mtime_ns == stamp
    changed = replace(config, seed=6)
    assert video in write_cohort(changed, out)["written"]


def test_participant_streams_are_independent_of_cohort_size():
    small = CohortConfig(groups={"ASD": 2, "TDC": 2})
    big = replace(small, groups={"ASD": 2, "TDC": 2, "PSY": 5})
    assert cohort_specs(small) == cohort_specs(big)[:4]
    assert sample_participant(small, "ASD", 0, "x") != sample_participant(replace(small, seed=1), "ASD", 0, "x")


# ------------------------------------------------------------------------------------------ clips
def test_clips_are_readable_by_prepare_clips(tmp_path):
    config = ClipConfig(per_class=1, actions=("nodding", "touching nose"), size=(96, 112), duration_s=(1.0, 1.2))
    write_clips(config, tmp_path)
    classes = ClassList.from_dict(json.loads((tmp_path / "classes.json").read_text()))
    assert classes.names == ("nodding", "touching nose", BACKGROUND)
    assert parse_classes((tmp_path / "classes.txt").read_text().strip()) == classes
    items = find_clip_inputs(read_clip_list(tmp_path / "clips.txt"), tmp_path, classes)
    assert [i.label for i in items] == [0, 1, 2]
    csv_items = find_clip_inputs(read_clip_list(tmp_path / "clips.csv"), tmp_path, classes)
    assert [i.label for i in csv_items] == [0, 1, 2]
    table = pd.read_csv(tmp_path / "clips.csv")
    for row in table.itertuples():
        cap = cv2.VideoCapture(str(tmp_path / row.video))
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == round(row.duration_s * 30)
        cap.release()
        assert 1.0 - 1 / 30 <= row.duration_s <= 1.2 + 1 / 30


# ------------------------------------------------------------------------------------------ CLI
def test_cli_help_and_bad_input(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    for argv in (["cohort", "--out", str(tmp_path / "a"), "--size", "10x10"],
                 ["cohort", "--out", str(tmp_path / "a"), "--groups", "ASD"],
                 ["clips", "--out", str(tmp_path / "a"), "--actions", "flying"],
                 ["cohort", "--out", str(tmp_path / "a"), "--config", str(tmp_path / "missing.json")]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "error" in err
    assert not (tmp_path / "a").exists()


def test_cli_cohort_prints_written_files(tmp_path, capsys):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"rates": [{"action": "nodding", "p_engaged": 0.9, "prob_effects": {"A": 1.0}}]}))
    code = main(["cohort", "--out", str(tmp_path / "sim"), "--config", str(cfg), "--groups", "A=1,B=1",
                 "--seconds", "2", "--size", "80x96", "--seed", "3", "-q"])
    assert code == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "manifest.csv" in out
    pt = pd.read_parquet(tmp_path / "sim" / "truth" / "percent_time.parquet")
    assert set(pt["action"]) == {"nodding"} and len(pt) == 2
