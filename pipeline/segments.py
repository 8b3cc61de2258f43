"""Segments from frame labels: runs of one label, gap merging, minimum duration (DESIGN.md 3b, step 3).

A label sequence ``labels`` [F] holds a class index per frame, or -1 for "no micro-action" and for
invalid frames. Segments are the maximal runs of one class, in frames ``[start, end)``.

Order: **merge, then drop.**

1. *Merge*: a gap of at most ``merge_frames`` frames, made only of -1 frames (no micro-action or no
   valid pose), between two runs of the same class is filled with that class.
2. *Drop*: runs shorter than ``min_frames`` frames are removed (become -1).

Merging first judges an action by its whole bout: a 0.9 s nod interrupted by a two-frame dip below
the threshold is one 0.9 s bout, whereas dropping first would cut it into two pieces that each fall
under, say, a 0.5 s minimum and lose the nod altogether. Merging only across -1 frames keeps segments
of different classes from overlapping under single-label rules, so the percent times of one
participant still sum to 100 minus the no-action share.

For multi-label read-outs every class is processed alone (its own 0/-1 sequence); its segments never
overlap each other but may overlap those of other classes.

Durations are converted to frames by :func:`duration_frames`: a run of n frames lasts n / fps
seconds; it is kept when n / fps >= min_duration; a gap of g frames is merged when g / fps <= merge_gap.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["runs", "merge_and_drop", "label_segments", "duration_frames"]

_EPS = 1e-9


def duration_frames(min_duration_s: float, merge_gap_s: float, fps: float) -> tuple[int, int]:
    """(min_frames, merge_frames) for durations in seconds at ``fps`` (see module docstring)."""
    min_frames = max(0, math.ceil(min_duration_s * fps - _EPS))
    merge_frames = max(0, math.floor(merge_gap_s * fps + _EPS))
    return min_frames, merge_frames


def runs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximal runs of equal values: (values [R], start [R], end [R]) with ``end`` exclusive."""
    labels = np.asarray(labels)
    n = labels.shape[0]
    if n == 0:
        z = np.zeros(0, dtype=np.int64)
        return labels[:0], z, z
    change = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    start = np.concatenate([[0], change]).astype(np.int64)
    end = np.concatenate([change, [n]]).astype(np.int64)
    return labels[start], start, end


def merge_and_drop(labels: np.ndarray, *, min_frames: int = 0, merge_frames: int = 0) -> np.ndarray:
    """Merge short -1 gaps between runs of one class, then drop runs shorter than ``min_frames``.

    Parameters
    ----------
    labels : int array [F], class index per frame, -1 for none
    min_frames, merge_frames : int

    Returns
    -------
    int array [F], the final labels.
    """
    out = np.array(labels, dtype=np.int64, copy=True)
    if merge_frames > 0:
        val, start, end = runs(out)
        if val.size >= 3:
            fill = np.zeros(val.size, dtype=bool)
            fill[1:-1] = (
                (val[1:-1] == -1)
                & (val[:-2] == val[2:])
                & (val[:-2] >= 0)
                & ((end[1:-1] - start[1:-1]) <= merge_frames)
            )
            new = val.copy()
            new[1:][fill[1:]] = val[:-1][fill[1:]]
            out = np.repeat(new, end - start)
    if min_frames > 1:
        val, start, end = runs(out)
        short = (val >= 0) & ((end - start) < min_frames)
        out = np.repeat(np.where(short, -1, val), end - start)
    return out


def label_segments(
    active: np.ndarray, *, single_label: bool, min_frames: int = 0, merge_frames: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Final segments of a video: (class index [S], start frame [S], end frame [S], end exclusive).

    ``active`` [F, C] comes from :func:`pipeline.frame_labels.label_frames`. Segments are sorted by
    start frame, then class.
    """
    active = np.asarray(active, dtype=bool)
    F, C = active.shape
    cls, st, en = [], [], []
    if single_label:
        labels = np.where(active.any(axis=1), np.argmax(active, axis=1), -1) if C else np.full(F, -1)
        val, start, end = runs(merge_and_drop(labels, min_frames=min_frames, merge_frames=merge_frames))
        keep = val >= 0
        cls, st, en = [val[keep]], [start[keep]], [end[keep]]
    else:
        for c in np.flatnonzero(active.any(axis=0)):
            labels = np.where(active[:, c], c, -1)
            val, start, end = runs(merge_and_drop(labels, min_frames=min_frames, merge_frames=merge_frames))
            keep = val >= 0
            cls.append(val[keep])
            st.append(start[keep])
            en.append(end[keep])
    if not cls:
        z = np.zeros(0, dtype=np.int64)
        return z, z.copy(), z.copy()
    c_, s_, e_ = (np.concatenate(x).astype(np.int64) for x in (cls, st, en))
    order = np.lexsort((c_, s_))
    return c_[order], s_[order], e_[order]
