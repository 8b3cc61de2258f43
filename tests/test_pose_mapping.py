"""BlazePose -> BODY_25 mapping, plausibility check, backend settings, ROI parsing, keypoints I/O, QC rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from model.taxonomy import BODY25_JOINTS, EXTRA_POINTS, MA52_ENTITIES
from pipeline.artifacts import read_sidecar, write_artifact
from pipeline.cli import BadInput
from pipeline.contracts import KEYPOINTS
from pipeline.keypoints import Keypoints, empty_keypoints, read_keypoints
from pipeline.pose import POSE_STAGE, PoseConfig, VideoJob
from pipeline.roi import clip_roi, parse_roi
from pipeline.pose_mediapipe import BODY25_FROM_BLAZEPOSE, MediaPipeConfig, blazepose_to_body25
from pipeline.qc import PlausibilityConfig, QCConfig, entity_column, failed_row, implausible, qc_row
from pipeline.stage import write_qc_table
from pipeline.video import VideoError

J = {n: i for i, n in enumerate(BODY25_JOINTS)}

# A frontal seated person in a 1000x1000 image (BlazePose indices -> pixel positions).
_BP = {
    0: (500, 200), 2: (520, 185), 5: (480, 185), 7: (540, 195), 8: (460, 195), 9: (515, 230), 10: (485, 230),
    11: (580, 300), 12: (420, 300), 13: (600, 420), 14: (400, 420), 15: (590, 520), 16: (410, 520),
    17: (595, 545), 18: (405, 545), 19: (590, 550), 20: (410, 550), 21: (580, 540), 22: (420, 540),
    23: (550, 560), 24: (450, 560), 25: (560, 700), 26: (440, 700), 27: (560, 850), 28: (440, 850),
    29: (565, 870), 30: (435, 870), 31: (570, 880), 32: (430, 880),
}


def blazepose(vis: float = 0.9, **moves) -> np.ndarray:
    lm = np.zeros((33, 3), np.float32)
    for i in range(33):
        x, y = _BP.get(i, (500, 190))
        lm[i] = (x, y, vis)
    for k, (x, y) in moves.items():
        lm[int(k[1:])] = (x, y, vis)
    return lm


def test_mapping_table_names_match_taxonomy():
    assert len(BODY25_FROM_BLAZEPOSE) == 25
    assert BODY25_FROM_BLAZEPOSE[J["RShoulder"]] == 12 and BODY25_FROM_BLAZEPOSE[J["LShoulder"]] == 11
    assert BODY25_FROM_BLAZEPOSE[J["LSmallToe"]] is None and BODY25_FROM_BLAZEPOSE[J["RSmallToe"]] is None
    assert EXTRA_POINTS == ("LPinky", "RPinky", "LIndex", "RIndex", "LThumb", "RThumb", "MouthL", "MouthR")


def test_blazepose_to_body25():
    lm = blazepose()
    lm[11, 2], lm[12, 2] = 0.8, 0.6
    body, extra, raw = blazepose_to_body25(lm, (1000, 1000))
    assert body.dtype == np.float32 and body.shape == (25, 3) and extra.shape == (8, 3)
    np.testing.assert_allclose(body[J["Neck"]], (500, 300, 0.6))  # midpoint, min confidence
    np.testing.assert_allclose(body[J["MidHip"]], (500, 560, 0.9))
    np.testing.assert_allclose(body[J["RShoulder"]], (420, 300, 0.6))
    np.testing.assert_allclose(body[J["LBigToe"]], (570, 880, 0.9))  # foot index
    np.testing.assert_allclose(body[J["RHeel"]], (435, 870, 0.9))
    np.testing.assert_allclose(body[J["REye"]], (480, 185, 0.9))
    np.testing.assert_allclose(body[J["LEar"]], (540, 195, 0.9))
    assert np.all(body[J["LSmallToe"]] == 0) and np.all(body[J["RSmallToe"]] == 0)
    np.testing.assert_allclose(extra[0], (595, 545, 0.9))  # LPinky = 17
    np.testing.assert_allclose(extra[6], (515, 230, 0.9))  # MouthL = 9
    np.testing.assert_allclose(raw[:, :2], body[:, :2])


def test_outside_image_joints_are_missing():
    # Head-and-shoulders framing: hips and below extrapolated under the image, with high visibility.
    lm = blazepose(vis=0.95)
    body, extra, raw = blazepose_to_body25(lm, (1000, 500))
    for name in ("RHip", "LHip", "MidHip", "RKnee", "LAnkle", "LHeel", "RBigToe", "LWrist", "RWrist"):
        assert np.all(body[J[name]] == 0), name
    assert np.all(extra[:6] == 0)  # hand points at y > 500
    assert body[J["Nose"], 2] > 0.9 and body[J["Neck"], 2] > 0.9
    assert raw[J["RHip"], 1] == 560  # raw keeps the extrapolation for the plausibility check
    # one shoulder outside on the left -> Neck missing too (min of the two)
    lm2 = blazepose(m12=(-10, 300))
    body2, _, _ = blazepose_to_body25(lm2, (1000, 1000))
    assert np.all(body2[J["RShoulder"]] == 0) and np.all(body2[J["Neck"]] == 0)


def test_plausibility():
    cfg = PlausibilityConfig()
    present = np.ones(25, bool)
    body, _, raw = blazepose_to_body25(blazepose(), (1000, 1000))
    assert implausible(raw, present, (1000, 1000), cfg) is None
    # hips folded up to the chest: rejected
    folded = raw.copy()
    folded[[J["RHip"], J["LHip"]], 1] = 330
    assert implausible(folded, present, (1000, 1000), cfg) == "hips not below shoulders"
    # collapsed skeleton: everything within a few pixels
    collapsed = np.tile(np.array([[500, 500, 0.9]], np.float32), (25, 1)) + np.random.default_rng(0).normal(0, 2, (25, 3)).astype(np.float32)
    assert implausible(collapsed, present, (1000, 1000), cfg) == "collapsed"
    # not checkable without hips (OpenPose zeros), and switchable off
    absent = present.copy()
    absent[J["RHip"]] = False
    assert implausible(folded, absent, (1000, 1000), cfg) is None
    assert implausible(folded, present, (1000, 1000), PlausibilityConfig(enabled=False)) is None


def test_mediapipe_config_refuses_downloading_models():
    MediaPipeConfig()
    for c in (0, 2):
        with pytest.raises(ValueError, match="model_complexity"):
            MediaPipeConfig(model_complexity=c)
    with pytest.raises(ValueError):
        MediaPipeConfig(min_detection_confidence=2)


def _artifact_config(config: PoseConfig, roi=None) -> dict:
    return POSE_STAGE.artifact_config(VideoJob("v.mp4", "v", "out", config, roi))


def test_pose_config_hash_depends_on_active_backend_only():
    a = _artifact_config(PoseConfig())
    b = _artifact_config(PoseConfig(openpose=PoseConfig().openpose.__class__(select="largest")))
    assert a == b
    c = _artifact_config(PoseConfig(backend="openpose-json"))
    d = _artifact_config(PoseConfig(backend="openpose-json", mediapipe=MediaPipeConfig(min_detection_confidence=0.1)))
    assert c == d and c != a
    assert a["plan"] is None and _artifact_config(PoseConfig(frames="sampled"))["plan"] is not None
    assert _artifact_config(PoseConfig(), (1, 2, 3, 4))["roi"] == [1, 2, 3, 4]
    with pytest.raises(ValueError):
        PoseConfig(backend="openpose")
    with pytest.raises(ValueError):
        PoseConfig(frames="some")


def test_roi_parsing_and_clipping():
    assert parse_roi("10,20,300,400") == (10, 20, 300, 400)
    assert parse_roi(" 10.4, 20 ,300,400") == (10, 20, 300, 400)
    for bad in ("1,2,3", "a,b,c,d", "0,0,0,10", "-1,0,10,10"):
        with pytest.raises(BadInput):
            parse_roi(bad)
    assert clip_roi(None, (640, 480), "v") == (0, 0, 640, 480)
    assert clip_roi((600, 400, 200, 200), (640, 480), "v") == (600, 400, 40, 80)
    with pytest.raises(VideoError, match="v.mp4: ROI"):
        clip_roi((700, 0, 100, 100), (640, 480), "v.mp4")


def _keypoints(n: int = 6) -> Keypoints:
    body, extra, _ = blazepose_to_body25(blazepose(), (1000, 1000))
    kp = Keypoints(
        frames=np.arange(0, 8 * n, 8, dtype=np.int64), time_s=np.arange(n) * 8 / 30,
        body25=np.repeat(body[None], n, 0), extra=np.repeat(extra[None], n, 0),
        detected=np.ones(n, bool), rejected=np.zeros(n, bool), fps=30.0, size=(1000, 1000),
    )
    kp.body25[0] = 0
    kp.extra[0] = 0
    kp.detected[0] = False
    kp.body25[1] = 0
    kp.extra[1] = 0
    kp.rejected[1] = True
    return kp


def test_keypoints_roundtrip(tmp_path):
    kp = _keypoints()
    path = write_artifact(kp.to_table(), tmp_path / "keypoints" / "v.parquet", contract=KEYPOINTS, stage="pose",
                          input_hash="abc", config={}, extra={"video": {"fps": 30.0, "width": 1000, "height": 1000}})
    back = read_keypoints(path)
    np.testing.assert_array_equal(back.frames, kp.frames)
    np.testing.assert_allclose(back.body25, kp.body25)
    np.testing.assert_allclose(back.extra, kp.extra)
    np.testing.assert_array_equal(back.detected, kp.detected)
    np.testing.assert_array_equal(back.rejected, kp.rejected)
    assert back.fps == 30.0 and back.size == (1000, 1000)
    assert back.combined.shape == (6, 33, 3)
    assert back.valid.tolist() == [False, False, True, True, True, True]
    assert read_sidecar(path)["contract"] == "keypoints"
    # empty tables are valid too
    e = write_artifact(empty_keypoints(0).to_table(), tmp_path / "e.parquet", contract=KEYPOINTS, stage="pose")
    assert len(read_keypoints(e)) == 0
    with pytest.raises(ValueError, match="body25"):
        Keypoints(np.arange(2), np.zeros(2), np.zeros((2, 24, 3)), np.zeros((2, 8, 3)), np.zeros(2, bool), np.zeros(2, bool))


def test_qc_row_and_table(tmp_path):
    kp = _keypoints()
    row = qc_row("v", "v.mp4", kp, (1000, 1000), frames_total=48, config=QCConfig(min_detected=0.8))
    assert row["frames_posed"] == 6 and row["frames_total"] == 48
    assert row["detected_fraction"] == pytest.approx(5 / 6)
    assert row["valid_fraction"] == pytest.approx(4 / 6)
    assert row["rejected_frames"] == 1
    for name in MA52_ENTITIES.names:
        assert row[entity_column(name)] == pytest.approx(4 / 6)
    assert row["flags"].split(";")[:2] == ["low_detection", "many_rejected"]
    blank = qc_row("b", "b.mp4", empty_keypoints(10), (100, 100), frames_total=10)
    assert blank["valid_fraction"] == 0 and "low_detection" in blank["flags"] and "low_head" in blank["flags"]
    bad = failed_row("x", "x.mp4", "x.mp4: empty file (0 bytes)")
    pq_path, csv_path = write_qc_table(POSE_STAGE, [row, blank, bad], tmp_path)
    df = pd.read_parquet(pq_path)
    assert list(df["video_id"]) == ["b", "v", "x"]
    assert df.set_index("video_id").loc["x", "error"] == "x.mp4: empty file (0 bytes)"
    assert pd.read_csv(csv_path).shape[0] == 3
