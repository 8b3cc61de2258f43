import csv

import numpy as np
import pytest

from model.taxonomy import (
    BODY25_JOINTS,
    IMIGUE_ENTITIES,
    KEYPOINT_FLIP_PERMUTATION,
    KEYPOINT_NAMES,
    MA52,
    MA52_ENTITIES,
    NUM_BODY25,
)


def test_ma52_sizes_and_endpoints():
    assert len(MA52.actions) == 52
    assert MA52.actions[0] == "shaking body"
    assert MA52.actions[51] == "scratching feet"
    assert MA52.body_parts == ("body", "head", "upper limb", "lower limb", "body-hand", "head-hand", "leg-hand")


def test_action_to_body_matches_benchmark_index_ranges():
    ranges = [(0, 4), (5, 10), (11, 23), (24, 31), (32, 37), (38, 47), (48, 51)]
    expected = np.concatenate([np.full(hi - lo + 1, b) for b, (lo, hi) in enumerate(ranges)])
    np.testing.assert_array_equal(MA52.action_to_body, expected)
    assert MA52.action_to_body.dtype == np.int64
    with pytest.raises(ValueError):
        MA52.action_to_body[0] = 3  # read-only


def test_codes_belong_to_their_body_part():
    for i, code in enumerate(MA52.codes):
        assert code[0] == MA52.body_codes[MA52.action_to_body[i]]


def test_lookups():
    assert MA52.index("Nodding") == 9
    assert MA52.by_code("b1") == 9
    assert MA52.body_of("touching nose") == "head-hand"
    assert MA52.actions_of_body("leg-hand") == [48, 49, 50, 51]
    assert "hand" in MA52.describe(43)
    with pytest.raises(KeyError, match="unknown MA-52 action"):
        MA52.index("juggling")
    with pytest.raises(KeyError):
        MA52.by_code("Z9")


def test_matches_shared_taxonomy_csv(ma52_dir):
    rows = list(csv.DictReader(open(ma52_dir / "taxonomy.csv", encoding="utf-8")))
    assert len(rows) == 52
    for r in rows:
        i = int(r["action_id"])
        assert MA52.actions[i] == r["action"]
        assert MA52.codes[i] == r["code"]
        assert int(MA52.action_to_body[i]) == int(r["body_id"])
        assert MA52.body_parts[int(r["body_id"])] == r["body_part"]
        assert MA52.descriptions[i] == r["description"]


def test_matches_benchmark_label_file(ma52_dir):
    lines = (ma52_dir / "label_name.txt").read_text(encoding="utf-8").splitlines()
    names = [ln.split("\t", 1)[1].strip() for ln in lines if ln.strip()]
    assert tuple(names) == MA52.actions


def test_flip_permutation_is_an_involution_swapping_sides():
    perm = np.array(KEYPOINT_FLIP_PERMUTATION)
    np.testing.assert_array_equal(perm[perm], np.arange(len(perm)))
    for i, j in enumerate(perm):
        a, b = KEYPOINT_NAMES[i], KEYPOINT_NAMES[j]
        if i == j:
            assert a in ("Nose", "Neck", "MidHip")
        else:
            assert a.replace("L", "R", 1) == b or a.replace("R", "L", 1) == b or a[:-1] == b[:-1]


def test_entity_layouts():
    assert MA52_ENTITIES.names == ("head", "face", "left hand", "right hand", "torso", "lower body")
    assert IMIGUE_ENTITIES.names == MA52_ENTITIES.names[:5]
    assert MA52_ENTITIES.flip_permutation == (0, 1, 3, 2, 4, 5)
    for e in MA52_ENTITIES.entities:
        assert len(e.joints_for(False)) >= 2
        assert all(j < NUM_BODY25 for j in e.joints_for(False)), e.name  # OpenPose-only fallback
        assert all(j < len(KEYPOINT_NAMES) for j in e.joints)
    lw = BODY25_JOINTS.index("LWrist")
    assert lw in MA52_ENTITIES.entities[2].joints
