"""Entity boxes (paper Eq. 1): threshold, padding, clipping, carry-over, fallback, confidence."""

import numpy as np
import pytest
import torch

from model.taxonomy import BODY25_JOINTS, IMIGUE_ENTITIES, KEYPOINT_NAMES, MA52_ENTITIES, NUM_KEYPOINTS
from model.entities import entity_boxes

J = {n: i for i, n in enumerate(KEYPOINT_NAMES)}
W, H = 200, 100
TORSO = MA52_ENTITIES.names.index("torso")
HEAD = MA52_ENTITIES.names.index("head")
LHAND = MA52_ENTITIES.names.index("left hand")


def blank(t=1, j=NUM_KEYPOINTS):
    return np.zeros((t, j, 3), dtype=np.float32)


def put(kp, t, name, x, y, c=0.9):
    kp[t, J[name]] = (x, y, c)


def test_min_enclosing_box_with_ten_percent_padding():
    kp = blank()
    put(kp, 0, "Neck", 50, 20)
    put(kp, 0, "MidHip", 70, 60)
    b = entity_boxes(kp, (W, H))
    # width 20, height 40 -> 2 px and 4 px padding on each side
    np.testing.assert_allclose(b.boxes[0, TORSO], [48, 16, 72, 64])
    assert b.own[0, TORSO]


def test_threshold_is_strict():
    kp = blank()
    put(kp, 0, "Neck", 50, 20)
    put(kp, 0, "MidHip", 70, 60, c=0.3)  # exactly theta: not visible
    put(kp, 0, "RShoulder", 40, 25, c=0.31)
    b = entity_boxes(kp, (W, H))
    assert b.own[0, TORSO]
    x1, y1, x2, y2 = b.boxes[0, TORSO]
    assert x2 < 60 and y2 < 40  # MidHip (c = 0.3) did not enter the box
    b2 = entity_boxes(kp, (W, H), threshold=0.2)
    assert b2.boxes[0, TORSO][3] > 60


def test_clipped_to_image():
    kp = blank()
    put(kp, 0, "Neck", 1, 1)
    put(kp, 0, "MidHip", 199, 99)
    b = entity_boxes(kp, (W, H))
    np.testing.assert_allclose(b.boxes[0, TORSO], [0, 0, 200, 100])


def test_carry_over_when_fewer_than_two_visible():
    kp = blank(t=3)
    put(kp, 0, "Neck", 50, 20)
    put(kp, 0, "MidHip", 70, 60)
    put(kp, 1, "Neck", 10, 10)  # only one visible -> previous box
    put(kp, 2, "Neck", 100, 20)
    put(kp, 2, "MidHip", 120, 60)
    b = entity_boxes(kp, (W, H))
    np.testing.assert_allclose(b.boxes[1, TORSO], b.boxes[0, TORSO])
    assert not b.own[1, TORSO] and b.own[2, TORSO]
    np.testing.assert_allclose(b.boxes[2, TORSO], [98, 16, 122, 64])


def test_fallback_before_first_box():
    kp = blank(t=3)
    put(kp, 2, "Neck", 50, 20)
    put(kp, 2, "MidHip", 70, 60)
    nxt = entity_boxes(kp, (W, H))
    np.testing.assert_allclose(nxt.boxes[0, TORSO], nxt.boxes[2, TORSO])
    img = entity_boxes(kp, (W, H), fallback="image")
    np.testing.assert_allclose(img.boxes[0, TORSO], [0, 0, W, H])
    np.testing.assert_allclose(img.boxes[2, TORSO], nxt.boxes[2, TORSO])
    # an entity never seen in the clip gets the whole image either way
    np.testing.assert_allclose(nxt.boxes[:, HEAD], np.tile([0, 0, W, H], (3, 1)))
    with pytest.raises(ValueError):
        entity_boxes(kp, (W, H), fallback="zero")


def test_hand_uses_finger_points_and_openpose_fallback():
    kp = blank()
    put(kp, 0, "LElbow", 20, 20)
    put(kp, 0, "LWrist", 40, 40)
    put(kp, 0, "LIndex", 50, 50)
    b = entity_boxes(kp, (W, H))
    assert b.boxes[0, LHAND][0] > 35  # hand box excludes the forearm (elbow)
    body25 = kp[:, : len(BODY25_JOINTS)]
    b25 = entity_boxes(body25, (W, H))
    assert b25.own[0, LHAND] and b25.boxes[0, LHAND][0] < 20  # wrist + elbow without finger points


def test_degenerate_box_has_positive_extent():
    kp = blank()
    put(kp, 0, "Neck", 50, 20)
    put(kp, 0, "MidHip", 50, 20)
    x1, y1, x2, y2 = entity_boxes(kp, (W, H)).boxes[0, TORSO]
    np.testing.assert_allclose([x1, y1, x2, y2], [49.5, 19.5, 50.5, 20.5])  # 1 px, centred
    # mirrored joints give the mirrored box (no one-sided widening)
    kp[..., 0] = np.where(kp[..., 2] > 0, W - kp[..., 0], 0)
    mx1, _, mx2, _ = entity_boxes(kp, (W, H)).boxes[0, TORSO]
    np.testing.assert_allclose([mx1, mx2], [W - x2, W - x1])
    corner = blank()
    put(corner, 0, "Neck", 0, 0)
    put(corner, 0, "MidHip", 0, 0)
    np.testing.assert_allclose(entity_boxes(corner, (W, H)).boxes[0, TORSO], [0, 0, 1, 1])


def test_confidence_is_mean_over_entity_joints():
    kp = blank()
    for name in ("Neck", "RShoulder", "LShoulder"):
        put(kp, 0, name, 50, 50, c=0.6)
    b = entity_boxes(kp, (W, H))
    assert b.confidence[0, TORSO] == pytest.approx(0.6 * 3 / 6)
    assert b.confidence[0, HEAD] == pytest.approx(0.6 / 6)  # Neck belongs to the head entity too


def test_batched_torch_matches_numpy_and_layouts():
    rng = np.random.default_rng(0)
    kp = np.concatenate([rng.uniform(0, 100, (2, 4, 8, NUM_KEYPOINTS, 2)), rng.uniform(0, 1, (2, 4, 8, NUM_KEYPOINTS, 1))], -1).astype(np.float32)
    bn = entity_boxes(kp, (W, H))
    bt = entity_boxes(torch.from_numpy(kp), (W, H))
    assert bn.boxes.shape == (2, 4, 8, 6, 4) and bn.own.shape == (2, 4, 8, 6)
    np.testing.assert_allclose(bt.boxes.numpy(), bn.boxes)
    single = entity_boxes(kp[1, 2], (W, H))
    np.testing.assert_allclose(single.boxes, bn.boxes[1, 2])
    assert entity_boxes(kp, (W, H), layout=IMIGUE_ENTITIES).boxes.shape[-2] == 5
    assert (bn.boxes[..., 2] > bn.boxes[..., 0]).all() and (bn.boxes[..., 3] <= H).all()


def test_nan_joints_count_as_missing():
    kp = blank()
    put(kp, 0, "Neck", 50, 20)
    put(kp, 0, "MidHip", 70, 60)
    clean = entity_boxes(kp, (W, H))
    kp[0, J["RShoulder"]] = (np.nan, np.nan, np.nan)
    kp[0, J["LShoulder"]] = (10, 10, np.nan)
    b = entity_boxes(kp, (W, H))
    np.testing.assert_allclose(b.boxes, clean.boxes)
    np.testing.assert_allclose(b.confidence, clean.confidence)
    assert np.isfinite(b.confidence).all()


def test_bad_shape():
    with pytest.raises(ValueError, match="shape"):
        entity_boxes(np.zeros((4, 25, 2)), (W, H))
    with pytest.raises(ValueError, match="BODY_25"):
        entity_boxes(np.zeros((4, 17, 3)), (W, H))
