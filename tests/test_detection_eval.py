"""Detection mAP: hand-computed cases, threshold edges, row-order invariance, an independent brute-force AP."""

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.detection_eval import TIOU_THRESHOLDS, evaluate_detections, interpolated_ap, main, tiou


def gt_frame(rows):
    return pd.DataFrame(rows, columns=["video_id", "t_start", "t_end", "class"])


def pred_frame(rows):
    return pd.DataFrame(rows, columns=["video_id", "t_start", "t_end", "class", "score"])


GT = gt_frame([("a", 0, 2, 9), ("a", 5, 7, 9), ("b", 1, 3, 9), ("b", 4, 8, 24)])


def test_perfect_predictions_give_1():
    m = evaluate_detections(GT, GT.assign(score=[0.9, 0.8, 0.7, 0.6]))
    assert m["map_per_tiou"] == [1.0] * 9 and m["average_map"] == 1.0
    assert m["tiou_thresholds"] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    assert set(m["ap_per_class"]) == {"9", "24"} and m["classes_without_ground_truth"] == {}


def test_duplicate_is_a_false_positive():
    pred = GT.assign(score=[0.9, 0.8, 0.7, 0.6])
    dup = pd.concat([pred, pred.iloc[[0]].assign(score=0.95)], ignore_index=True)
    m = evaluate_detections(GT, dup)
    # class 9 ranking: dup (TP), original (FP: its ground truth is taken), 0.8 TP, 0.7 TP
    # precision 1, 1/2, 2/3, 3/4 at recall 1/3, 1/3, 2/3, 1 -> AP = 1/3 * 1 + 1/3 * 3/4 + 1/3 * 3/4
    assert m["ap_per_class"]["9"][0] == pytest.approx(1 / 3 + 0.25 + 0.25)
    assert m["ap_per_class"]["24"] == [1.0] * 9
    assert m["average_map"] < 1.0


def test_tiou_just_below_and_above_a_threshold():
    gt = gt_frame([("a", 0.0, 10.0, "nodding")])
    above = evaluate_detections(gt, pred_frame([("a", 0.0, 5.1, "nodding", 0.9)]))["ap_per_class"]["9"]
    below = evaluate_detections(gt, pred_frame([("a", 0.0, 4.9, "nodding", 0.9)]))["ap_per_class"]["9"]
    assert above == [1.0] * 5 + [0.0] * 4  # tIoU 0.51: a hit up to 0.5
    assert below == [1.0] * 4 + [0.0] * 5  # tIoU 0.49: a miss from 0.5 on
    exact = evaluate_detections(gt, pred_frame([("a", 0.0, 5.0, "nodding", 0.9)]))["ap_per_class"]["9"]
    assert exact[4] == 1.0  # tIoU exactly 0.5 counts (>=)


def test_prediction_matches_the_highest_tiou_ground_truth_and_only_in_its_video():
    gt = gt_frame([("a", 0, 4, 1), ("a", 3, 9, 1), ("b", 0, 4, 1)])
    # One prediction overlapping both a-segments: it takes the better one (3-9, tIoU 5/7), leaving 0-4.
    m = evaluate_detections(gt, pred_frame([("a", 3.5, 9, 1, 0.9), ("c", 0, 4, 1, 0.8)]))
    assert m["ap_per_class"]["1"][0] == pytest.approx(1 / 3)  # one of three found; video c matches nothing


@pytest.mark.parametrize("seed", range(4))
def test_invariant_to_row_order(seed):
    rng = np.random.default_rng(seed)
    gt, pred = random_case(rng)
    pred["score"] = np.round(pred["score"], 1)  # many ties
    m1 = evaluate_detections(gt, pred)
    m2 = evaluate_detections(gt.sample(frac=1, random_state=seed), pred.sample(frac=1, random_state=seed + 1))
    assert json.dumps(m1, sort_keys=True) == json.dumps(m2, sort_keys=True)


def random_case(rng, n_videos=4, n_gt=25, n_pred=60, classes=(1, 2, 3)):
    vids = [f"v{i}" for i in range(n_videos)]
    s = rng.uniform(0, 50, n_gt)
    gt = gt_frame(list(zip(rng.choice(vids, n_gt), s, s + rng.uniform(0.5, 5, n_gt), rng.choice(classes, n_gt))))
    base = gt.sample(n=n_pred, replace=True, random_state=int(rng.integers(1 << 30))).reset_index(drop=True)
    jitter = rng.normal(0, 1.0, (n_pred, 2))
    t0 = np.clip(base["t_start"] + jitter[:, 0], 0, None)
    t1 = np.maximum(base["t_end"] + jitter[:, 1], t0 + 0.1)
    cls = np.where(rng.random(n_pred) < 0.15, rng.choice(classes, n_pred), base["class"])
    pred = pred_frame(list(zip(base["video_id"], t0, t1, cls, rng.random(n_pred))))
    return gt, pred


def brute_force_map(gt, pred, thresholds):
    """Independent implementation: plain Python lists, one pass over all predictions in score order per class,
    AP as (1 / n_gt) * sum over true positives of the best precision at that rank or later."""
    gt_rows = list(gt.itertuples(index=False))
    pred_rows = sorted(pred.itertuples(index=False), key=lambda r: (-r.score, r.video_id, r.t_start, r.t_end))
    classes = sorted({str(int(r[3])) for r in gt_rows})
    out = {}
    for c in classes:
        g = [r for r in gt_rows if str(int(r[3])) == c]
        p = [r for r in pred_rows if str(int(r[3])) == c]
        aps = []
        for theta in thresholds:
            used = [False] * len(g)
            hits = []
            for r in p:
                best, best_j = -1.0, None
                for j, q in enumerate(g):
                    if used[j] or q.video_id != r.video_id:
                        continue
                    inter = max(0.0, min(r.t_end, q.t_end) - max(r.t_start, q.t_start))
                    iou = inter / ((r.t_end - r.t_start) + (q.t_end - q.t_start) - inter)
                    if iou >= theta - 1e-9 and iou > best:
                        best, best_j = iou, j
                if best_j is not None:
                    used[best_j] = True
                hits.append(best_j is not None)
            prec = [sum(hits[: k + 1]) / (k + 1) for k in range(len(hits))]
            aps.append(sum(max(prec[k:]) for k in range(len(hits)) if hits[k]) / len(g))
        out[c] = aps
    return out


@pytest.mark.parametrize("seed", range(4))
def test_matches_an_independent_brute_force(seed):
    rng = np.random.default_rng(100 + seed)
    gt, pred = random_case(rng)
    m = evaluate_detections(gt, pred)
    ref = brute_force_map(gt, pred, TIOU_THRESHOLDS)
    assert set(m["ap_per_class"]) == set(ref)
    for c in ref:
        np.testing.assert_allclose(m["ap_per_class"][c], ref[c], atol=1e-12)
    np.testing.assert_allclose(m["map_per_tiou"], np.mean(list(ref.values()), axis=0), atol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_interpolated_ap_equals_sum_of_best_precision_at_hits(seed):
    rng = np.random.default_rng(seed)
    hits = rng.random(30) < 0.4
    n_gt = int(hits.sum()) + int(rng.integers(0, 4))
    prec = np.cumsum(hits) / np.arange(1, 31)
    ref = sum(prec[k:].max() for k in np.flatnonzero(hits)) / n_gt
    assert interpolated_ap(hits, n_gt) == pytest.approx(ref, abs=1e-12)


def test_class_without_ground_truth_is_listed_not_averaged_and_missing_class_scores_0():
    m = evaluate_detections(GT, pred_frame([("a", 0, 2, 9, 0.9), ("a", 5, 7, 9, 0.8), ("b", 1, 3, 9, 0.7),
                                            ("a", 0, 3, 30, 0.5), ("b", 0, 3, 30, 0.4)]))
    assert m["classes_without_ground_truth"] == {"30": 2}
    assert m["ap_per_class"]["24"] == [0.0] * 9  # ground truth, no prediction
    assert m["map_per_tiou"] == [0.5] * 9 and not np.isnan(m["average_map"])


def test_frame_based_ground_truth_and_names_or_ids():
    frames = pd.DataFrame({"video_id": ["a", "a"], "start_frame": [0, 150], "end_frame": [60, 210],
                           "class": ["nodding", "shaking legs"], "total_frames": [300, 300], "fps": [30, 30]})
    pred = pred_frame([("a", 0, 2, 9, 0.9), ("a", 5, 7, "shaking legs", 0.8)])
    assert evaluate_detections(frames, pred)["average_map"] == 1.0
    assert tiou(np.array([0.0]), np.array([2.0]), np.array([1.0]), np.array([3.0]))[0] == pytest.approx(1 / 3)


def test_cli_writes_metrics_and_rejects_bad_input(tmp_path, capsys):
    GT.to_csv(tmp_path / "gt.csv", index=False)
    GT.assign(score=0.5).to_csv(tmp_path / "pred.csv", index=False)
    assert main(["--gt", str(tmp_path / "gt.csv"), "--pred", str(tmp_path / "pred.csv"), "--out", str(tmp_path / "m.json")]) == 0
    m = json.loads((tmp_path / "m.json").read_text())
    assert {"tiou_thresholds", "map_per_tiou", "average_map", "ap_per_class"} <= set(m) and m["average_map"] == 1.0
    assert f"wrote {tmp_path / 'm.json'}" in capsys.readouterr().out
    GT.to_csv(tmp_path / "bad.csv", index=False)  # no score column
    with pytest.raises(SystemExit) as exc:
        main(["--gt", str(tmp_path / "gt.csv"), "--pred", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "m2.json")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "missing column 'score'" in err and err.count("\n") == 1
    gt_bad = GT.astype({"t_start": float, "t_end": float})
    gt_bad.loc[2, "t_end"] = 0.5
    gt_bad.to_csv(tmp_path / "gt_bad.csv", index=False)
    with pytest.raises(SystemExit):
        main(["--gt", str(tmp_path / "gt_bad.csv"), "--pred", str(tmp_path / "pred.csv"), "--out", str(tmp_path / "m3.json")])
    assert "row 2" in capsys.readouterr().err and not (tmp_path / "m3.json").exists()
