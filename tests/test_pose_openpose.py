"""OpenPose JSON import: round trip through the pose stage and the target-person selection rules."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from model.taxonomy import BODY25_JOINTS
from pipeline.keypoints import read_keypoints
from pipeline.pose import main
from pipeline.pose_openpose import OpenPoseConfig, OpenPoseError, list_frames, load_people, select_people

J = {n: i for i, n in enumerate(BODY25_JOINTS)}
SIZE = (1000, 800)


def person(cx: float, top: float, scale: float, conf: float = 0.8) -> np.ndarray:
    """A plausible upright BODY_25 skeleton centred at ``cx`` with its nose at ``top``, ``scale`` px per unit."""
    unit = {
        "Nose": (0, 0), "Neck": (0, 1), "RShoulder": (-1, 1), "RElbow": (-1.2, 2), "RWrist": (-1, 3),
        "LShoulder": (1, 1), "LElbow": (1.2, 2), "LWrist": (1, 3), "MidHip": (0, 3), "RHip": (-0.6, 3),
        "RKnee": (-0.7, 4.5), "RAnkle": (-0.7, 6), "LHip": (0.6, 3), "LKnee": (0.7, 4.5), "LAnkle": (0.7, 6),
        "REye": (-0.2, -0.2), "LEye": (0.2, -0.2), "REar": (-0.4, -0.1), "LEar": (0.4, -0.1),
        "LBigToe": (0.9, 6.3), "LSmallToe": (1.0, 6.3), "LHeel": (0.7, 6.1), "RBigToe": (-0.9, 6.3),
        "RSmallToe": (-1.0, 6.3), "RHeel": (-0.7, 6.1),
    }
    p = np.zeros((25, 3), np.float32)
    for name, (u, v) in unit.items():
        p[J[name]] = (cx + u * scale, top + v * scale, conf)
    return p


def participant(t: int) -> np.ndarray:
    return person(500 + 2 * t, 200, 40)  # centre, drifting slowly


def examiner(t: int) -> np.ndarray:
    return person(880, 100, 90)  # right edge, much larger (closer to the camera)


def bystander(t: int) -> np.ndarray:
    return person(120, 300, 25)  # small, far left


def scene() -> dict[int, list[np.ndarray]]:
    """Frames 0-11: participant throughout except 10-11; examiner enters at 5; bystander on even frames;
    frame 3 has nobody; frame 7's file is missing."""
    frames = {}
    for t in range(12):
        if t == 7:
            continue
        people = []
        if t != 3 and t < 10:
            people.append(participant(t))
        if t >= 5 and t != 3:
            people.append(examiner(t))
        if t % 2 == 0 and t != 3:
            people.append(bystander(t))
        # shuffle the listing order so the rule, not the file order, decides
        rng = np.random.default_rng(t)
        frames[t] = [people[i] for i in rng.permutation(len(people))]
    return frames


def write_folder(folder: Path, frames: dict[int, list[np.ndarray]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for t, people in frames.items():
        doc = {"version": 1.3, "people": [{"person_id": [-1], "pose_keypoints_2d": p.reshape(-1).tolist(),
                                           "face_keypoints_2d": []} for p in people]}
        (folder / f"{folder.name}_{t:012d}_keypoints.json").write_text(json.dumps(doc))
    return folder


def which(frames: dict[int, list[np.ndarray]], choice: list[int | None]) -> list[str | None]:
    names = []
    for (t, people), c in zip(sorted(frames.items()), choice):
        if c is None:
            names.append(None)
            continue
        p = people[c]
        for name, f in (("P", participant), ("E", examiner), ("B", bystander)):
            if np.allclose(p, f(t)):
                names.append(name)
    return names


def test_list_and_load(tmp_path):
    folder = write_folder(tmp_path / "clip", scene())
    pairs = list_frames(folder)
    assert [i for i, _ in pairs] == [0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11]
    assert load_people(pairs[3][1]) == []
    ppl = load_people(pairs[0][1])
    assert len(ppl) == 2 and ppl[0].shape == (25, 3)
    with pytest.raises(OpenPoseError, match="no \\*_keypoints.json"):
        list_frames(tmp_path)
    bad = tmp_path / "coco" / "coco_000000000000_keypoints.json"
    bad.parent.mkdir()
    bad.write_text(json.dumps({"people": [{"pose_keypoints_2d": [0.0] * 54}]}))
    with pytest.raises(OpenPoseError, match="54 pose_keypoints_2d values, expected 75"):
        load_people(bad)


@pytest.mark.parametrize(
    "rule, expected",
    [
        # continuity: start with the largest (participant; examiner not there yet), then follow her;
        # when she leaves (10-11) nobody is close, so restart with the largest: the examiner.
        ("continuity", list("PPP") + [None] + list("PPPPPEE")),
        ("largest", list("PPP") + [None] + list("PEEEEEE")),
        ("central", list("PPP") + [None] + list("PPPPPEE")),
    ],
)
def test_selection_rules(rule, expected):
    frames = scene()
    choice = select_people([frames[t] for t in sorted(frames)], OpenPoseConfig(select=rule), image_size=SIZE)
    got = which(frames, choice)
    assert got == [None if e is None else e for e in expected]


def test_roi_excludes_examiner():
    frames = scene()
    choice = select_people([frames[t] for t in sorted(frames)], OpenPoseConfig(select="largest"),
                           image_size=SIZE, roi=(300, 0, 450, 800))
    assert which(frames, choice) == list("PPP") + [None] + list("PPPPP") + [None, None]


def test_continuity_is_not_fooled_by_a_larger_newcomer():
    # The examiner is far larger from frame 5 on; continuity keeps the participant, largest does not.
    frames = scene()
    seq = [frames[t] for t in sorted(frames)]
    cont = which(frames, select_people(seq, OpenPoseConfig(), image_size=SIZE))
    big = which(frames, select_people(seq, OpenPoseConfig(select="largest"), image_size=SIZE))
    assert cont[4:9] == list("PPPPP") and big[4:9] == ["P"] + list("EEEE")


def test_round_trip_through_the_stage(tmp_path, capsys):
    frames = scene()
    root = tmp_path / "json"
    write_folder(root / "clipA", frames)
    write_folder(root / "clipB", {0: [participant(0)], 1: [participant(1)]})
    out = tmp_path / "out"
    rc = main([str(root), "--backend", "openpose-json", "--out", str(out), "--size", "1000x800", "--fps", "25", "-q"])
    assert rc == 0
    stdout = capsys.readouterr().out
    assert f"wrote {out / 'keypoints' / 'clipA.parquet'}" in stdout
    kp = read_keypoints(out / "keypoints" / "clipA.parquet")
    assert kp.frames.tolist() == [0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11]
    np.testing.assert_allclose(kp.time_s, kp.frames / 25.0)
    assert kp.size == (1000, 800) and kp.fps == 25.0
    assert kp.detected.tolist() == [True] * 3 + [False] + [True] * 7
    assert not kp.rejected.any()
    assert np.all(kp.extra == 0)
    for k, t in enumerate(kp.frames):
        expected = np.zeros((25, 3)) if t == 3 else (participant(t) if t < 10 else examiner(t))
        np.testing.assert_allclose(kp.body25[k], expected, rtol=1e-6, atol=1e-3)
    qc = pd.read_parquet(out / "qc.parquet").set_index("video_id")
    assert qc.loc["clipA", "frames_total"] == 12 and qc.loc["clipA", "frames_posed"] == 11
    assert qc.loc["clipA", "detected_fraction"] == pytest.approx(10 / 11)
    assert qc.loc["clipB", "status"] == "ok"

    # rerun: up to date, skipped; a different rule is a different config, so it is redone
    rc = main([str(root), "--backend", "openpose-json", "--out", str(out), "--size", "1000x800", "--fps", "25", "-q"])
    assert rc == 0
    assert "keypoints" not in capsys.readouterr().out
    assert set(pd.read_csv(out / "qc.csv")["status"]) == {"skipped"}
    rc = main([str(root / "clipA"), "--backend", "openpose-json", "--out", str(out), "--size", "1000x800",
               "--fps", "25", "--select", "largest", "-q"])
    assert rc == 0
    kp2 = read_keypoints(out / "keypoints" / "clipA.parquet")
    np.testing.assert_allclose(kp2.body25[kp2.frames.tolist().index(6)], examiner(6), atol=1e-3)


def test_sampled_frames_and_bad_folder(tmp_path, capsys):
    root = tmp_path / "json"
    write_folder(root / "long", {t: [participant(t % 50)] for t in range(120)})
    bad = root / "coco"
    bad.mkdir(parents=True)
    (bad / "coco_000000000000_keypoints.json").write_text(json.dumps({"people": [{"pose_keypoints_2d": [1.0] * 54}]}))
    out = tmp_path / "out"
    rc = main([str(root), "--backend", "openpose-json", "--out", str(out), "--frames", "sampled", "-q"])
    assert rc == 1  # one input failed, the other was written
    from model.windows import MA52_PLAN

    kp = read_keypoints(out / "keypoints" / "long.parquet")
    assert kp.frames.tolist() == MA52_PLAN.sampled_frames(120, 30.0).tolist()
    qc = pd.read_csv(out / "qc.csv").set_index("video_id")
    assert qc.loc["coco", "status"] == "failed"
    assert "coco_000000000000_keypoints.json" in qc.loc["coco", "error"] and "BODY_25" in qc.loc["coco", "error"]
    assert "failed" in capsys.readouterr().err
