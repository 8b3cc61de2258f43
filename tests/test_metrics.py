"""MA-52 metrics against scikit-learn (when installed) and against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from model.metrics import METRIC_KEYS, class_to_body, classification_metrics, f1_scores
from model.preprocessing import ClassList
from model.taxonomy import MA52


def _fixed_predictions(seed: int = 0, n: int = 60, c: int = 52):
    rng = np.random.default_rng(seed)
    labels = rng.choice(np.arange(0, 30), size=n)  # classes 30..51 never true
    scores = rng.normal(size=(n, c))
    scores[np.arange(n), labels] += rng.uniform(0, 3, size=n)  # some right, some wrong
    scores[:5, 45] += 10.0  # a class absent from the labels gets predicted
    return labels, scores


def test_hand_computed_values():
    # 3 classes mapped to bodies [0, 0, 1]; 4 clips.
    labels = np.array([0, 1, 2, 2])
    scores = np.array([[3, 2, 1], [3, 2, 1], [0, 1, 2], [2, 1, 0]], float)  # preds 0, 0, 2, 0
    m = classification_metrics(labels, scores, [0, 0, 1])
    assert m["top1"] == pytest.approx(2 / 4)
    assert m["top5"] == 1.0  # only 3 classes: every label is within the top 3
    # bodies: true [0, 0, 1, 1], pred [0, 0, 1, 0]
    assert m["body_top1"] == pytest.approx(3 / 4)
    # action F1: class 0: TP1 FP2 FN0 -> 2/4; class 1: TP0 FN1 -> 0; class 2: TP1 FN1 -> 2/3
    assert m["f1_macro"] == pytest.approx((0.5 + 0 + 2 / 3) / 3)
    assert m["f1_micro"] == pytest.approx(0.5)
    # body F1: body 0: TP2 FP1 -> 4/5; body 1: TP1 FN1 -> 2/3
    assert m["body_f1_macro"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert m["body_f1_micro"] == pytest.approx(0.75)
    assert m["f1_mean"] == pytest.approx(np.mean([0.5, (0.5 + 2 / 3) / 3, 0.75, (0.8 + 2 / 3) / 2]))
    assert tuple(m) == METRIC_KEYS


def test_equal_to_scikit_learn_including_absent_classes():
    skm = pytest.importorskip("sklearn.metrics", reason="scikit-learn not installed (comparison only)")
    labels, scores = _fixed_predictions()
    m = classification_metrics(labels, scores, MA52)
    pred = scores.argmax(1)
    body = MA52.action_to_body
    assert 45 in pred and 45 not in labels
    assert m["top1"] == pytest.approx(skm.accuracy_score(labels, pred))
    assert m["top5"] == pytest.approx(skm.top_k_accuracy_score(labels, scores, k=5, labels=np.arange(52)))
    assert m["body_top1"] == pytest.approx(skm.accuracy_score(body[labels], body[pred]))
    for avg in ("micro", "macro"):
        assert m[f"f1_{avg}"] == pytest.approx(skm.f1_score(labels, pred, average=avg, zero_division=0))
        assert m[f"body_f1_{avg}"] == pytest.approx(skm.f1_score(body[labels], body[pred], average=avg, zero_division=0))
    assert all(0.0 <= v <= 1.0 for v in m.values())


def test_f1_random_against_scikit_learn():
    skm = pytest.importorskip("sklearn.metrics", reason="scikit-learn not installed (comparison only)")
    rng = np.random.default_rng(3)
    for _ in range(20):
        t, p = rng.integers(0, 7, 40), rng.integers(2, 9, 40)
        micro, macro = f1_scores(t, p)
        assert micro == pytest.approx(skm.f1_score(t, p, average="micro", zero_division=0))
        assert macro == pytest.approx(skm.f1_score(t, p, average="macro", zero_division=0))


def test_class_list_with_background_maps_bodies():
    classes = ClassList.from_actions(["nodding", "shaking body", "touching nose"], background=True)
    body = class_to_body(classes)
    assert body.tolist() == [1, 0, 5, MA52.num_body_parts]
    labels = np.array([0, 3, 3])
    scores = np.array([[0.9, 0, 0, 0.1], [0, 0, 0.1, 0.9], [0.9, 0, 0, 0.1]])
    m = classification_metrics(labels, scores, classes)
    assert m["top1"] == pytest.approx(2 / 3) and m["body_top1"] == pytest.approx(2 / 3)


def test_bad_shapes_rejected():
    with pytest.raises(ValueError, match="score columns"):
        classification_metrics([0], np.zeros((1, 3)), MA52)
    with pytest.raises(ValueError, match="class indices"):
        classification_metrics([60], np.zeros((1, 52)), MA52)
