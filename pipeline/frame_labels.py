"""Frame labels from per-frame class scores: the selectable read-out rules (DESIGN.md section 3b, step 2).

Input: ``scores`` [F, C] and ``valid`` [F] from :func:`pipeline.frame_scores.frame_scores`; output: a
boolean matrix ``active`` [F, C] (frame f shows class c). Invalid frames are never active, and the
background class (if the model has one) is never active: it means "no micro-action".

Rules (``thr[c]`` is the threshold of class c; uniform ``tau`` unless a per-class file gives one):

``threshold`` (default)
    The top action class of the frame if its score >= tau, else no micro-action. Single label.
``top1``
    Every valid frame gets its top action class (a closed-set classifier's reading). Single label.
``per-class``
    Among the action classes whose score >= their own ``thr[c]``, the one with the highest score;
    no micro-action when none passes. Single label. With equal thresholds this is ``threshold``.
``multi-label``
    Every action class with score >= ``thr[c]``; micro-actions may co-occur. Percent times of one
    participant may then sum to more than 100.
``background``
    The top class over all classes *including* background; background means no micro-action. Needs a
    model trained with a background class (``model.preprocessing.ClassList``).

"Action classes" excludes the background class. Ties between classes go to the lower class index
(``numpy.argmax``).

Default tau = 0.5: it is the smallest threshold at which at most one class can pass (softmax
probabilities, and therefore their window means, sum to 1), so the single-label ``threshold`` rule
and ``multi-label`` agree and a frame's label never depends on tie-breaking; it labels a frame only
when the model puts more mass on that action than on all other classes together. It leans to
precision; calibrate it (or per-class thresholds) against per-frame ground truth with
:mod:`pipeline.agreement` when such data exist.
"""

from __future__ import annotations

import numpy as np

__all__ = ["RULES", "SINGLE_LABEL_RULES", "DEFAULT_THRESHOLD", "label_frames"]

RULES: tuple[str, ...] = ("threshold", "top1", "per-class", "multi-label", "background")
SINGLE_LABEL_RULES: tuple[str, ...] = ("threshold", "top1", "per-class", "background")
DEFAULT_THRESHOLD = 0.5


def label_frames(
    scores: np.ndarray,
    valid: np.ndarray,
    *,
    rule: str = "threshold",
    thresholds: np.ndarray | float = DEFAULT_THRESHOLD,
    background_index: int | None = None,
) -> np.ndarray:
    """Apply a read-out rule to per-frame scores.

    Parameters
    ----------
    scores : float array [F, C]
    valid : bool array [F]
    rule : one of :data:`RULES`
    thresholds : float or float array [C]
        Uniform tau or one threshold per class (ignored by ``top1`` and ``background``).
    background_index : int or None
        Column of the background class, if the model has one.

    Returns
    -------
    bool array [F, C]: ``active[f, c]``. Single-label rules give at most one True per row.
    """
    scores = np.asarray(scores, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool)
    F, C = scores.shape
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; choose one of {', '.join(RULES)}")
    thr = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (C,))
    is_action = np.ones(C, dtype=bool)
    if background_index is not None:
        is_action[background_index] = False
    active = np.zeros((F, C), dtype=bool)
    if F == 0 or not is_action.any():
        return active
    if rule == "multi-label":
        return (scores >= thr) & is_action & valid[:, None]
    action_scores = scores if is_action.all() else np.where(is_action, scores, -np.inf)
    rows = np.arange(F)
    if rule == "background":
        if background_index is None:
            raise ValueError("rule 'background' needs a model with a background class")
        k = np.argmax(scores, axis=1)
        hit = valid & (k != background_index)
    elif rule == "top1":
        k = np.argmax(action_scores, axis=1)
        hit = valid
    elif np.all(thr == thr[0]):  # one tau: the top action passes or none does
        k = np.argmax(action_scores, axis=1)
        hit = valid & (action_scores[rows, k] >= thr[0])
    else:  # per-class thresholds: the top class among those passing their own threshold
        passing = (scores >= thr) & is_action
        k = np.argmax(np.where(passing, scores, -np.inf), axis=1)
        hit = valid & passing.any(axis=1)
    active[rows[hit], k[hit]] = True
    return active

