"""Per-frame class scores from overlapping window probabilities (DESIGN.md section 3b, step 1).

For frame ``f`` and class ``c``, two methods (:data:`SCORE_METHODS`)::

    "mean" (default, DESIGN.md 3b):
        score[f, c] = mean over classified windows w with start_w <= f < end_w of probs[w, c]
    "interpolate":
        score[f, c] = linear interpolation of probs[w, c] between the centres of the classified windows,
                      centre_w = (start_w + end_w - 1) / 2, held constant before the first / after the last
    valid[f]    = at least one classified window covers f   (both methods)

Which one fits depends on what a window's probability means. A model trained on trimmed clips says
"this window shows the action somewhere"; the mean over the covering windows then spreads that over
the window's span (a box filter as wide as the span, so boundaries are found to within about a hop
and an event shorter than the span peaks below the window probability). A model trained on windows
cut from untrimmed recordings and labelled by the class covering most of the span (the demo model,
:mod:`recipes.demo_model`) says "the action covers the window's centre": interpolating
between centres reads that back without the box filter, so boundaries fall between two window
centres (sub-hop) and short events keep their full height. Both keep the rows of a softmax summing
to 1 (a mean, or a convex combination of two windows), so the 0.5 threshold argument of
:mod:`pipeline.frame_labels` holds for either.

A window whose ``probs`` is null (too little valid pose) is not classified and contributes nothing;
a frame no classified window covers is *not valid*: it has no usable pose of the participant and is
left out of every denominator downstream.

Computation: the scores are piecewise constant between window boundaries, so the sums are taken once
per elementary interval between consecutive boundaries (``np.add.at`` of +probs at each start and
-probs at each end, then a cumulative sum over the K <= 2W + 1 intervals) and repeated over the
frames of each interval. Cost O(W * C + F * C) for W windows, C classes and F frames, instead of
O(F * W * C) for a frame-by-frame loop. Means are rounded to 12 decimals so that the float
subtraction in the running sum cannot move a score that is exactly a threshold (e.g. 0.5) below it.
Interpolation: windows sharing a centre are averaged, then one ``searchsorted`` over the sorted
centres gives every frame its two neighbours and weight, O(W log W + F * C).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SCORE_METHODS", "FrameScores", "frame_scores"]

SCORE_METHODS: tuple[str, ...] = ("mean", "interpolate")

_DECIMALS = 12


@dataclass(frozen=True)
class FrameScores:
    """Per-frame scores of one video.

    Attributes
    ----------
    scores : float64 array [F, C]
        Mean class probability over the classified windows covering each frame; 0 at invalid frames.
    valid : bool array [F]
        Frame covered by at least one classified window.
    coverage : int array [F]
        Number of classified windows covering each frame.
    """

    scores: np.ndarray
    valid: np.ndarray
    coverage: np.ndarray

    @property
    def num_frames(self) -> int:
        return int(self.valid.shape[0])


def frame_scores(
    start_frame: np.ndarray,
    end_frame: np.ndarray,
    probs: np.ndarray,
    classified: np.ndarray | None = None,
    *,
    num_frames: int | None = None,
    method: str = "mean",
) -> FrameScores:
    """Spread window probabilities over frames (mean over covering windows, or interpolation between centres).

    Parameters
    ----------
    start_frame, end_frame : int arrays [W]
        Window spans ``[start, end)`` in frames (end exclusive).
    probs : float array [W, C]
        Class probabilities per window (rows of unclassified windows are ignored, may be NaN).
    classified : bool array [W], optional
        Which windows were classified (default: rows of ``probs`` without NaN).
    num_frames : int, optional
        Frames in the video (default: the largest ``end_frame``). Spans are clipped to it.
    method : one of :data:`SCORE_METHODS` (module docstring); ``valid`` and ``coverage`` do not depend on it.

    Returns
    -------
    FrameScores with ``scores`` [F, C], ``valid`` [F], ``coverage`` [F].
    """
    if method not in SCORE_METHODS:
        raise ValueError(f"unknown frame-score method {method!r}; choose one of {', '.join(SCORE_METHODS)}")
    start = np.asarray(start_frame, dtype=np.int64).ravel()
    end = np.asarray(end_frame, dtype=np.int64).ravel()
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] != start.shape[0] or end.shape != start.shape:
        raise ValueError(f"probs must be [W, C] with W = {start.shape[0]} windows, got {probs.shape}")
    if classified is None:
        classified = ~np.isnan(probs).any(axis=1)
    classified = np.asarray(classified, dtype=bool)
    if num_frames is None:
        num_frames = int(end.max()) if end.size else 0
    F, C = int(num_frames), probs.shape[1]
    if F <= 0:
        return FrameScores(np.zeros((0, C)), np.zeros(0, bool), np.zeros(0, np.int64))

    s = np.clip(start[classified], 0, F)
    e = np.clip(end[classified], 0, F)
    keep = e > s
    s, e, p = s[keep], e[keep], probs[classified][keep]

    bounds = np.unique(np.concatenate([[0, F], s, e]))  # K + 1 boundaries -> K intervals
    diff = np.zeros((bounds.size, C))
    count = np.zeros(bounds.size, dtype=np.int64)
    si, ei = np.searchsorted(bounds, s), np.searchsorted(bounds, e)
    np.add.at(diff, si, p)
    np.add.at(diff, ei, -p)
    np.add.at(count, si, 1)
    np.add.at(count, ei, -1)
    sums = np.cumsum(diff[:-1], axis=0)
    cover = np.cumsum(count[:-1])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(cover[:, None] > 0, sums / np.maximum(cover, 1)[:, None], 0.0)
    mean = np.round(mean, _DECIMALS)
    lengths = np.diff(bounds)
    valid = np.repeat(cover > 0, lengths)
    if method == "interpolate" and s.size:
        scores = _interpolate_centres((s + e - 1) / 2.0, p, F)
        scores[~valid] = 0.0
    else:
        scores = np.repeat(mean, lengths, axis=0)
    return FrameScores(scores=scores, valid=valid, coverage=np.repeat(cover, lengths))


def _interpolate_centres(centre: np.ndarray, probs: np.ndarray, num_frames: int) -> np.ndarray:
    """[F, C] scores: probs [W, C] placed at ``centre`` [W] (frames), linear in between, constant outside."""
    c, inverse = np.unique(centre, return_inverse=True)
    p = np.zeros((c.size, probs.shape[1]))
    np.add.at(p, inverse, probs)
    p /= np.bincount(inverse, minlength=c.size)[:, None]
    if c.size == 1:
        return np.repeat(p, num_frames, axis=0)
    f = np.arange(num_frames, dtype=np.float64)
    hi = np.clip(np.searchsorted(c, f, side="right"), 1, c.size - 1)
    lo = hi - 1
    w = np.clip((f - c[lo]) / (c[hi] - c[lo]), 0.0, 1.0)[:, None]
    return np.round(p[lo] * (1.0 - w) + p[hi] * w, _DECIMALS)
