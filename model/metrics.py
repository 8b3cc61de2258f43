"""MA-52 classification metrics (MA-52/MANet paper V-A; the benchmark's code uses scikit-learn).

::

    labels [N] int (class indices), scores [N, C] (logits or probabilities; only the order matters)

    top1, top5          fraction of clips whose label is the arg-max / among the 5 highest scores
    body_top1           fraction whose predicted action's body part (taxonomy) is the label's
    f1_micro, f1_macro  F1 of the top-1 action predictions
    body_f1_micro/macro F1 of the top-1 predictions mapped to body parts
    f1_mean             mean of those four F1 values (the benchmark's F1_mean)

F1 follows scikit-learn's ``f1_score(y_true, y_pred, average=...)`` without ``labels=`` (as the
benchmark calls it): macro averages over the classes that occur in the labels *or* the predictions
(a class predicted but never true scores F1 = 0, a class in neither is left out), and micro F1 of
single-label predictions equals accuracy. It is written with numpy here because scikit-learn is
not a runtime dependency; ``tests/test_metrics.py`` checks it against scikit-learn itself.

Body parts: with a :class:`model.taxonomy.Taxonomy` class ``i`` is action ``i``; with a
:class:`model.preprocessing.ClassList` class ``i`` is MA-52 action ``taxonomy_ids[i]`` and a
background class gets a body group of its own (after the taxonomy's body parts).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from model.preprocessing import ClassList
from model.taxonomy import MA52, Taxonomy

__all__ = ["classification_metrics", "class_to_body", "f1_scores", "top_k_predictions", "METRIC_KEYS"]

METRIC_KEYS = ("top1", "top5", "body_top1", "f1_micro", "f1_macro", "body_f1_micro", "body_f1_macro", "f1_mean")


def class_to_body(taxonomy: Taxonomy | ClassList | Sequence[int] | np.ndarray) -> np.ndarray:
    """[C] int64: body-part index of each class output (see module docstring)."""
    if isinstance(taxonomy, Taxonomy):
        return np.asarray(taxonomy.action_to_body, dtype=np.int64)
    if isinstance(taxonomy, ClassList):
        background = MA52.num_body_parts
        return np.array([background if t is None else int(MA52.action_to_body[t]) for t in taxonomy.taxonomy_ids],
                        dtype=np.int64)
    return np.asarray(taxonomy, dtype=np.int64)


def top_k_predictions(scores: np.ndarray, k: int) -> np.ndarray:
    """[N, k] class indices by decreasing score (ties: lower index first, a stable sort)."""
    scores = np.asarray(scores, dtype=np.float64)
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def f1_scores(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float]:
    """(micro, macro) F1 of single-label predictions, as scikit-learn's ``f1_score`` (no ``labels=``).

    Per class c over the classes present in ``y_true`` or ``y_pred``: F1_c = 2 TP / (2 TP + FP + FN)
    (0 when the denominator is 0, scikit-learn's ``zero_division`` result); macro = mean of F1_c;
    micro = 2 sum TP / (2 sum TP + sum FP + sum FN).
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.size == 0:
        return 0.0, 0.0
    classes = np.union1d(y_true, y_pred)
    hit = y_true == y_pred
    tp = np.array([np.sum(hit & (y_true == c)) for c in classes], dtype=np.float64)
    fp = np.array([np.sum(~hit & (y_pred == c)) for c in classes], dtype=np.float64)
    fn = np.array([np.sum(~hit & (y_true == c)) for c in classes], dtype=np.float64)
    denom = 2 * tp + fp + fn
    per_class = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    micro_denom = 2 * tp.sum() + fp.sum() + fn.sum()
    micro = float(2 * tp.sum() / micro_denom) if micro_denom > 0 else 0.0
    return micro, float(per_class.mean())


def classification_metrics(labels: Sequence[int] | np.ndarray, scores: np.ndarray,
                           taxonomy: Taxonomy | ClassList | Sequence[int] | np.ndarray = MA52) -> dict[str, float]:
    """The MA-52 benchmark metrics as fractions in [0, 1] (keys :data:`METRIC_KEYS`).

    Parameters
    ----------
    labels : [N] int
        True class indices.
    scores : [N, C]
        Class scores; only their order per row matters.
    taxonomy : Taxonomy, ClassList or [C] int array
        How classes map to body parts (:func:`class_to_body`).
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] != labels.shape[0]:
        raise ValueError(f"scores must be [N, C] with N = {labels.shape[0]} labels, got {scores.shape}")
    body = class_to_body(taxonomy)
    if body.shape[0] != scores.shape[1]:
        raise ValueError(f"{scores.shape[1]} score columns but the taxonomy has {body.shape[0]} classes")
    if labels.size and (labels.min() < 0 or labels.max() >= scores.shape[1]):
        raise ValueError(f"labels must be class indices in [0, {scores.shape[1]})")
    if labels.size == 0:
        return {k: 0.0 for k in METRIC_KEYS}
    top = top_k_predictions(scores, min(5, scores.shape[1]))
    pred = top[:, 0]
    out = {
        "top1": float(np.mean(pred == labels)),
        "top5": float(np.mean((top == labels[:, None]).any(axis=1))),
        "body_top1": float(np.mean(body[pred] == body[labels])),
    }
    out["f1_micro"], out["f1_macro"] = f1_scores(labels, pred)
    out["body_f1_micro"], out["body_f1_macro"] = f1_scores(body[labels], body[pred])
    out["f1_mean"] = float(np.mean([out["f1_micro"], out["f1_macro"], out["body_f1_micro"], out["body_f1_macro"]]))
    return {k: out[k] for k in METRIC_KEYS}
