"""Acceptance of the simulator against the real pose stage (MediaPipe BlazePose, CPU).

- the person is found in >= 95 % of frames across looks drawn from the whole allowed parameter range
  (plus its corners: smallest/largest, most offset, most turned, noisiest, darkest/brightest);
- every motion-defined action's planted track is visible in the keypoints (Pearson r >= 0.9 between
  the planted control and an independent keypoint feature, e.g. nose y - neck y for nodding);
- every position-defined action moves the right joints (e.g. touching nose brings a hand to the nose);
- a rendered recording goes through ``python -m pipeline.pose`` (MP4 decode, QC) with >= 95 % valid frames.
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pandas as pd
import pytest

from model.taxonomy import BODY25_JOINTS
from pipeline.pose_mediapipe import MediaPipeConfig, MediaPipePose, blazepose_to_body25
from simulator.appearance import LookRanges, sample_look
from simulator.camera import Camera
from simulator.motions import PROGRAMS, idle_controls
from simulator.render import Renderer
from simulator.skeleton import skeleton_at

pytestmark = pytest.mark.slow

FPS = 30.0
SIZE = (288, 336)
J = {name: i for i, name in enumerate(BODY25_JOINTS)}


def _pose(frames: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe on frames in video mode -> (BODY_25 [F, 25, 3] with NaN where missed, extra [F, 8, 3])."""
    body = np.full((len(frames), 25, 3), np.nan)
    extra = np.full((len(frames), 8, 3), np.nan)
    with MediaPipePose(MediaPipeConfig()) as pose:
        for i, f in enumerate(frames):
            lm = pose.landmarks(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
            if lm is not None:
                b, e, _ = blazepose_to_body25(lm, (f.shape[1], f.shape[0]))
                body[i], extra[i] = b, e
    return body, extra


def _render(look, controls, n):
    r = Renderer(look, seed=1)
    return [r.render(skeleton_at(look.body, controls, i), i / FPS) for i in range(n)]


def _corner_looks(rng) -> list:
    """Looks at the corners of the allowed ranges."""
    R = LookRanges()
    corners = []
    for lo_hi in (0, 1):
        look = sample_look(rng, SIZE, age=5.0 if lo_hi == 0 else 52.0)
        cam = Camera(size=SIZE, distance=R.distance[lo_hi], fill=R.fill[lo_hi],
                     offset=(R.offset_x[lo_hi], R.offset_y[1 - lo_hi]), yaw=R.yaw[lo_hi], pitch=R.pitch[lo_hi],
                     scale=look.body.scale)
        corners.append(replace(look, camera=cam, noise_sigma=R.noise_sigma[1], light_amplitude=R.light_amplitude[1],
                               brightness=R.brightness[lo_hi]))
    return corners


def test_person_found_in_95_percent_of_frames_across_the_parameter_range():
    rng = np.random.default_rng(2024)
    looks = _corner_looks(rng) + [sample_look(rng, SIZE) for _ in range(6)]
    names = list(PROGRAMS)
    found, total, per_look = 0, 0, []
    for k, look in enumerate(looks):
        n = 45
        c = idle_controls(n, FPS, rng)
        # each look performs two actions, cycling through all of them across the looks
        PROGRAMS[names[(2 * k) % len(names)]].plant(c, 2, 22, FPS, rng)
        PROGRAMS[names[(2 * k + 1) % len(names)]].plant(c, 24, 44, FPS, rng)
        body, _ = _pose(_render(look, c, n))
        hit = int(np.isfinite(body[:, 0, 0]).sum())
        per_look.append(hit / n)
        found += hit
        total += n
    rate = found / total
    print(f"detection rate {rate:.3f} over {total} frames; per look {np.round(per_look, 2)}")
    assert rate >= 0.95, per_look
    assert min(per_look) >= 0.85, per_look


def _feature(name: str, body: np.ndarray, params: dict) -> np.ndarray:
    """An independent keypoint measurement of each motion-defined action's planted movement."""
    def side_joint(side, joint):
        return J[("R" if side == "r" else "L") + joint]

    if name == "nodding":  # chin down -> nose drops relative to the shoulders
        return body[:, J["Nose"], 1] - body[:, J["Neck"], 1]
    if name == "shaking head":  # face turns to the person's left (image right)
        return body[:, J["Nose"], 0] - body[:, J["Neck"], 0]
    if name == "shaking body":  # upper body sways to the person's left
        return body[:, J["Neck"], 0] - body[:, J["MidHip"], 0]
    if name == "shrugging":  # shoulders rise (static camera: image y of the shoulder line)
        return -body[:, J["Neck"], 1]
    if name == "waving":  # the raised hand swings sideways
        s = params["side"]
        return body[:, side_joint(s, "Wrist"), 0] - body[:, side_joint(s, "Shoulder"), 0]
    if name == "shaking legs":  # heel lifts -> the lower leg rises
        return -np.mean([body[:, side_joint(s, "Ankle"), 1] for s in params["sides"]], axis=0)
    if name == "patting legs":  # the hand lifts off the thigh and pats down
        return -np.mean([body[:, side_joint(s, "Wrist"), 1] for s in params["sides"]], axis=0)
    raise KeyError(name)


MOTION = [n for n, p in PROGRAMS.items() if p.kind == "motion"]
POSITION = [n for n, p in PROGRAMS.items() if p.kind == "position"]


@pytest.mark.parametrize("name", MOTION)
def test_motion_defined_action_visible_in_keypoints(name):
    rng = np.random.default_rng([7, PROGRAMS[name].action_id])
    look = sample_look(rng, SIZE)
    n, a, b = 66, 6, 66
    c = idle_controls(n, FPS, rng)
    params = PROGRAMS[name].plant(c, a, b, FPS, rng)
    planted = np.zeros(n)
    planted[a:b] = params["signal"]
    body, _ = _pose(_render(look, c, n))
    feature = _feature(name, body, params)
    use = np.isfinite(feature)
    if name == "waving":  # the swing, once the hand is up (the raise itself is a position change)
        use &= np.r_[np.zeros(a), c[params["side"] + "_hand_w"][a:b]] > 0.99
    assert use.sum() >= 20
    r = np.corrcoef(planted[use], feature[use])[0, 1]
    print(f"{name}: r = {r:.3f}, feature range {np.ptp(feature[use]):.1f} px")
    assert r >= 0.9


def _dist(p, q):
    return np.linalg.norm(p[..., :2] - q[..., :2], axis=-1)


@pytest.mark.parametrize("name", POSITION)
def test_position_defined_action_moves_the_right_joints(name):
    rng = np.random.default_rng([8, PROGRAMS[name].action_id])
    look = sample_look(rng, SIZE)
    n, a, b = 50, 8, 50
    c = idle_controls(n, FPS, rng)
    params = PROGRAMS[name].plant(c, a, b, FPS, rng)
    body, extra = _pose(_render(look, c, n))
    rest = np.nanmedian(body[:a], axis=0)  # [25, 3]
    hold = np.nanmedian(body[30:42], axis=0)
    hold_extra = np.nanmedian(extra[30:42], axis=0)
    sw = _dist(rest[J["RShoulder"]], rest[J["LShoulder"]])  # shoulder width: the unit of distance
    side = params.get("side", "r")
    S = "R" if side == "r" else "L"
    hand_points = lambda s: np.stack([hold[J[f"{s}Wrist"]], hold_extra[2 if s == "R" else 3]])  # wrist, index  # noqa: E731
    if name == "touching nose":  # the fingers touch the nose, so the wrist is about a hand below it
        assert _dist(hand_points(S), hold[J["Nose"]]).min() < 0.6 * sw
        assert _dist(rest[J[f"{S}Wrist"]], rest[J["Nose"]]) > 1.5 * sw
    elif name == "covering face":
        for s in "RL":
            assert _dist(hand_points(s), hold[J["Nose"]]).min() < 0.6 * sw
    elif name == "crossing arms":
        # both hands come up from the thighs to the chest, within the torso's width. (MediaPipe names the
        # hands by the side of the image they are on, so a crossed-over wrist is not reported as crossed.)
        chest = lambda p: p[J["Neck"], 1] + 0.55 * (p[J["MidHip"], 1] - p[J["Neck"], 1])  # noqa: E731
        for s in "RL":
            assert hold[J[f"{s}Wrist"], 1] < chest(hold) < rest[J[f"{s}Wrist"], 1]
            assert abs(hold[J[f"{s}Wrist"], 0] - hold[J["Neck"], 0]) < 0.9 * sw
    elif name == "arms akimbo":  # hands at the hips, elbows out beyond the shoulders
        for s in params["sides"].upper():
            assert _dist(hold[J[f"{s}Wrist"]], hold[J[f"{s}Hip"]]) < 0.75 * sw
            assert abs(hold[J[f"{s}Elbow"], 0] - hold[J["Neck"], 0]) > abs(hold[J[f"{s}Shoulder"], 0] - hold[J["Neck"], 0]) + 0.2 * sw
    elif name == "scratching or touching hindbrain":  # hand up at the head, elbow raised
        assert hold[J[f"{S}Wrist"], 1] < hold[J[f"{S}Shoulder"], 1] - 0.25 * sw
        assert hold[J[f"{S}Elbow"], 1] < rest[J[f"{S}Elbow"], 1] - 0.5 * sw
        assert _dist(hold[J[f"{S}Wrist"]], hold[J["Nose"]]) < 1.0 * sw
    elif name == "stretching arms":  # wrist(s) far out sideways from the shoulder
        for s in params["sides"]:
            S2 = "R" if s == "r" else "L"
            reach = lambda p: abs(p[J[f"{S2}Wrist"], 0] - p[J[f"{S2}Shoulder"], 0])  # noqa: E731
            assert reach(hold) > 1.2 * sw and reach(hold) > reach(rest) + 0.8 * sw
    elif name == "turning head":  # the nose moves towards the turned side, relative to the shoulders
        shift = (hold[J["Nose"], 0] - hold[J["Neck"], 0]) - (rest[J["Nose"], 0] - rest[J["Neck"], 0])
        assert shift * (1 if side == "l" else -1) > 0.1 * sw
    elif name == "spread legs":  # knees apart
        knees = lambda p: _dist(p[J["RKnee"]], p[J["LKnee"]])  # noqa: E731
        assert knees(hold) > knees(rest) + 0.25 * sw
    else:
        raise AssertionError(f"no check for position-defined action {name!r}")


def test_rendered_recording_through_the_pose_cli(tmp_path):
    from pipeline.pose import main as pose_main
    from simulator.recording import CohortConfig, write_cohort

    config = CohortConfig(groups={"ASD": 1}, seconds=4.0, size=SIZE, seed=3)
    write_cohort(config, tmp_path / "sim")
    code = pose_main([str(tmp_path / "sim" / "videos"), "--out", str(tmp_path / "pose"), "-q"])
    assert code == 0
    qc = pd.read_csv(tmp_path / "pose" / "qc.csv")
    assert len(qc) == 1 and qc["frames_total"].iloc[0] == 120
    assert qc["valid_fraction"].iloc[0] >= 0.95
