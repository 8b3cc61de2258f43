"""Temporal detection evaluation, the MMA-52 / ActivityNet way: per-class AP at tIoU 0.1 ... 0.9, mAP.

Usage::

    python -m pipeline.detection_eval --gt GT.csv --pred detections.csv --out metrics.json

Inputs (CSV or Parquet):

- ground truth, either ``video_id,t_start,t_end,class`` (seconds) or the benchmark's frame form
  ``video_id,start_frame,end_frame,class,total_frames,fps`` (converted with t = frame / fps;
  ``end_frame`` must not exceed ``total_frames``);
- predictions in the detection CSV format ``video_id,t_start,t_end,class,score`` (what
  :mod:`pipeline.aggregate` writes as detections.csv).

``class`` may be an MA-52 taxonomy index or action name in either file; names are mapped to indices,
so the two files may use different forms.

Per class and tIoU threshold theta (``tIoU = |A ∩ B| / |A ∪ B|`` of two time intervals):

1. predictions of the class are taken in order of decreasing score (ties: video_id, t_start, t_end,
   so the result does not depend on the order of rows);
2. each is matched to the not yet matched ground-truth segment of the same video and class with the
   highest tIoU, if that tIoU >= theta (within 1e-9); it is then a true positive, else a false
   positive; each ground-truth segment is matched at most once, so duplicates are false positives;
3. AP = area under the precision-recall curve after making precision monotone non-increasing
   (VOC-style interpolation over all points): ``AP = sum_k (r_k - r_{k-1}) * max_{j >= k} p_j``.

``mAP(theta)`` is the mean AP over the classes that have ground truth (a class with ground truth but
no predictions has AP 0); ``average_map`` is the mean of mAP over the thresholds. A class with
predictions but no ground truth has no defined recall: it is left out of every mean and listed
under ``classes_without_ground_truth`` with its prediction count (the benchmark's script returns NaN
for the whole mean instead).

Matching is done per (class, video), which gives the same result as one pass over all predictions
in score order (a prediction competes only for ground truth of its own video), with memory bounded
by the largest video.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from model.taxonomy import MA52
from pipeline.artifacts import atomic_write_text
from pipeline.cli import BadInput, check_output_dir, handle_errors, make_parser, report_written, setup_logging, EXIT_OK

__all__ = ["TIOU_THRESHOLDS", "read_ground_truth", "read_predictions", "tiou", "interpolated_ap",
           "evaluate_detections", "main"]

TIOU_THRESHOLDS: tuple[float, ...] = tuple(round(0.1 * k, 1) for k in range(1, 10))
_TOL = 1e-9


def _read(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"file not found: {path}")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype={"video_id": str, "class": str}, keep_default_na=False)
    except Exception as exc:  # pandas / pyarrow raise several unrelated types
        raise BadInput(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None


def _class_keys(values: pd.Series, source: str) -> pd.Series:
    """Class labels -> canonical text: MA-52 names become their index; other labels stay as text."""
    index = {name: str(i) for i, name in enumerate(MA52.actions)}

    def key(v: object) -> str:
        s = str(v).strip()
        if s in index:
            return index[s]
        try:
            f = float(s)
        except ValueError:
            return s
        return str(int(f)) if f == int(f) else s

    out = values.map(key)
    empty = np.flatnonzero((out == "").to_numpy())
    if empty.size:
        raise BadInput(f"{source}: row {int(empty[0])}: empty 'class'")
    return out


def _numeric(df: pd.DataFrame, cols: list[str], source: str) -> dict[str, np.ndarray]:
    out = {}
    for c in cols:
        v = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(v))
        if bad.size:
            raise BadInput(f"{source}: row {int(bad[0])}: column {c!r} value {df[c].iloc[bad[0]]!r} is not a number")
        out[c] = v
    return out


def _intervals(df: pd.DataFrame, t0: np.ndarray, t1: np.ndarray, source: str) -> None:
    bad = np.flatnonzero(~(t1 > t0) | (t0 < 0))
    if bad.size:
        r = int(bad[0])
        raise BadInput(f"{source}: row {r}: segment [{t0[r]!r}, {t1[r]!r}] must have 0 <= start < end")


def read_ground_truth(data: str | os.PathLike | pd.DataFrame, *, source: str = "") -> pd.DataFrame:
    """Ground truth in either form -> columns video_id, t_start, t_end, class (canonical text)."""
    if not isinstance(data, pd.DataFrame):
        source = source or str(data)
        data = _read(Path(data))
    source = source or "ground truth"
    if {"t_start", "t_end"} <= set(data.columns):
        need = ["video_id", "t_start", "t_end", "class"]
    else:
        need = ["video_id", "start_frame", "end_frame", "class", "total_frames", "fps"]
    missing = [c for c in need if c not in data.columns]
    if missing:
        raise BadInput(
            f"{source}: missing column {missing[0]!r}; ground truth needs video_id,t_start,t_end,class "
            f"or video_id,start_frame,end_frame,class,total_frames,fps"
        )
    if "t_start" in need:
        v = _numeric(data, ["t_start", "t_end"], source)
        t0, t1 = v["t_start"], v["t_end"]
    else:
        v = _numeric(data, ["start_frame", "end_frame", "total_frames", "fps"], source)
        bad = np.flatnonzero(v["fps"] <= 0)
        if bad.size:
            raise BadInput(f"{source}: row {int(bad[0])}: fps must be > 0")
        bad = np.flatnonzero(v["end_frame"] > v["total_frames"])
        if bad.size:
            raise BadInput(f"{source}: row {int(bad[0])}: end_frame is past total_frames")
        t0, t1 = v["start_frame"] / v["fps"], v["end_frame"] / v["fps"]
    _intervals(data, t0, t1, source)
    return pd.DataFrame({"video_id": data["video_id"].astype(str).to_numpy(), "t_start": t0, "t_end": t1,
                         "class": _class_keys(data["class"], source).to_numpy()})


def read_predictions(data: str | os.PathLike | pd.DataFrame, *, source: str = "") -> pd.DataFrame:
    """Detections ``video_id,t_start,t_end,class,score`` -> the same columns, class canonical text."""
    if not isinstance(data, pd.DataFrame):
        source = source or str(data)
        data = _read(Path(data))
    source = source or "predictions"
    missing = [c for c in ("video_id", "t_start", "t_end", "class", "score") if c not in data.columns]
    if missing:
        raise BadInput(f"{source}: missing column {missing[0]!r} (required: video_id,t_start,t_end,class,score)")
    v = _numeric(data, ["t_start", "t_end", "score"], source)
    _intervals(data, v["t_start"], v["t_end"], source)
    return pd.DataFrame({"video_id": data["video_id"].astype(str).to_numpy(), "t_start": v["t_start"],
                         "t_end": v["t_end"], "class": _class_keys(data["class"], source).to_numpy(),
                         "score": v["score"]})


def tiou(a0: np.ndarray, a1: np.ndarray, b0: np.ndarray, b1: np.ndarray) -> np.ndarray:
    """Temporal IoU of intervals [a0, a1] x [b0, b1], broadcast (e.g. [P, 1] against [1, G])."""
    inter = np.clip(np.minimum(a1, b1) - np.maximum(a0, b0), 0.0, None)
    union = (a1 - a0) + (b1 - b0) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def interpolated_ap(tp: np.ndarray, n_gt: int) -> float:
    """VOC-style interpolated AP of a ranked list of hits ``tp`` [N] (bool) against ``n_gt`` ground truths."""
    if n_gt == 0:
        return float("nan")
    tp = np.asarray(tp, dtype=np.float64)
    if tp.size == 0:
        return 0.0
    ctp, cfp = np.cumsum(tp), np.cumsum(1.0 - tp)
    recall = ctp / n_gt
    precision = ctp / (ctp + cfp)
    mprec = np.concatenate([[0.0], precision, [0.0]])
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mprec = np.maximum.accumulate(mprec[::-1])[::-1]
    idx = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))


def _hits(pred: pd.DataFrame, gt: pd.DataFrame, thresholds: np.ndarray) -> np.ndarray:
    """True-positive flags [P, T] of one class's predictions (already in rank order) per threshold."""
    hits = np.zeros((len(pred), thresholds.size), dtype=bool)
    gt_by_video = gt.groupby("video_id", sort=False).indices
    for vid, p_idx in pred.groupby("video_id", sort=False).indices.items():
        g_idx = gt_by_video.get(vid)
        if g_idx is None:
            continue
        p_idx = np.sort(p_idx)  # rank order within the video
        iou = tiou(pred["t_start"].to_numpy()[p_idx, None], pred["t_end"].to_numpy()[p_idx, None],
                   gt["t_start"].to_numpy()[None, g_idx], gt["t_end"].to_numpy()[None, g_idx])
        for t, theta in enumerate(thresholds):
            free = np.ones(g_idx.size, dtype=bool)
            for k, row in enumerate(iou):
                cand = np.where(free & (row >= theta - _TOL), row, -1.0)
                j = int(np.argmax(cand))
                if cand[j] >= 0:
                    free[j] = False
                    hits[p_idx[k], t] = True
    return hits


def evaluate_detections(
    gt: pd.DataFrame, pred: pd.DataFrame, tiou_thresholds: tuple[float, ...] = TIOU_THRESHOLDS
) -> dict:
    """Per-class AP at each tIoU threshold, mAP per threshold and their average (see module docstring).

    Parameters
    ----------
    gt : ground truth, columns video_id, t_start, t_end, class (:func:`read_ground_truth` output or raw)
    pred : predictions, columns video_id, t_start, t_end, class, score

    Returns
    -------
    dict with ``tiou_thresholds`` [T], ``map_per_tiou`` [T], ``average_map``, ``ap_per_class``
    ({class: [T]}), ``classes_without_ground_truth`` ({class: number of predictions}),
    ``n_ground_truth``, ``n_predictions``.
    """
    gt = read_ground_truth(gt)
    pred = read_predictions(pred)
    thresholds = np.asarray(tiou_thresholds, dtype=np.float64)
    # Rank order independent of row order: score desc, then video, start, end.
    pred = pred.sort_values(["score", "video_id", "t_start", "t_end"], ascending=[False, True, True, True],
                            kind="stable").reset_index(drop=True)
    ap_per_class: dict[str, list[float]] = {}
    gt_classes = sorted(pd.unique(gt["class"]), key=_class_order)
    for c in gt_classes:
        g = gt[gt["class"] == c].reset_index(drop=True)
        p = pred[pred["class"] == c].reset_index(drop=True)
        hits = _hits(p, g, thresholds)
        ap_per_class[c] = [interpolated_ap(hits[:, t], len(g)) for t in range(thresholds.size)]
    no_gt = pred.loc[~pred["class"].isin(gt_classes), "class"].value_counts()
    maps = [float(np.mean([ap[t] for ap in ap_per_class.values()])) if ap_per_class else float("nan")
            for t in range(thresholds.size)]
    return {
        "tiou_thresholds": [float(t) for t in thresholds],
        "map_per_tiou": maps,
        "average_map": float(np.mean(maps)) if maps else float("nan"),
        "ap_per_class": ap_per_class,
        "classes_without_ground_truth": {str(k): int(v) for k, v in sorted(no_gt.items(), key=lambda kv: _class_order(kv[0]))},
        "n_ground_truth": int(len(gt)),
        "n_predictions": int(len(pred)),
    }


def _class_order(c: str) -> tuple[int, int | str]:
    return (0, int(c)) if c.isdigit() else (1, c)


def build_parser():
    p = make_parser("Detection mAP at tIoU 0.1..0.9 (MMA-52 / ActivityNet style). Exit status: 0 ok, 2 bad input.",
                    prog="python -m pipeline.detection_eval")
    p.add_argument("--gt", required=True, metavar="CSV", help="ground truth: video_id,t_start,t_end,class or "
                   "video_id,start_frame,end_frame,class,total_frames,fps")
    p.add_argument("--pred", required=True, metavar="CSV", help="predictions: video_id,t_start,t_end,class,score")
    p.add_argument("--out", required=True, metavar="JSON", help="metrics file to write")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(verbose=args.verbose, quiet=args.quiet)
    with handle_errors("pipeline.detection_eval"):
        out = Path(args.out)
        check_output_dir(out.parent if str(out.parent) else ".", what="--out folder")
        if out.is_dir():
            raise BadInput(f"--out {out} is a folder; give a file name such as metrics.json")
        metrics = evaluate_detections(read_ground_truth(args.gt), read_predictions(args.pred))
        atomic_write_text(out, json.dumps(metrics, indent=2, allow_nan=True) + "\n")
    report_written(out)
    n_cls = len(metrics["ap_per_class"])
    print(f"detection_eval: {metrics['n_predictions']} prediction(s) against {metrics['n_ground_truth']} ground-truth "
          f"segment(s) of {n_cls} class(es); average mAP {metrics['average_map']:.4f} "
          f"(mAP@0.5 {metrics['map_per_tiou'][4]:.4f}); {len(metrics['classes_without_ground_truth'])} class(es) "
          f"with predictions but no ground truth left out of the mean", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
