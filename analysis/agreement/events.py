"""Event agreement: precision, recall and F1 of one rater's events against another's.

An *event* is a maximal run of frames of one action that both raters observed (a run broken by an
unobserved stretch is two events). Rater a's events are matched to rater b's (the reference of
precision and recall: for the model, a = model, b = coder) per video and action by this rule:

    a and b may match when  |onset_a - onset_b| <= tolerance_s                 (onset tolerance)
                       and  overlap_frames >= max(1, min_overlap * shorter)    (overlap rule)

and every event is matched at most once: the pairs are chosen by a maximum bipartite matching
(:func:`scipy.sparse.csgraph.maximum_bipartite_matching`), so the count of matches is the largest
any one-to-one assignment gives. Then precision = matches / events of a, recall = matches / events
of b, F1 = 2 P R / (P + R). Split events (b one, a two) give one match: precision 1/2, recall 1;
merged events the reverse. Over all actions (the ``all`` row), matches and events are summed
(micro-average), as sed_eval's overall event-based metrics are.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_bipartite_matching

__all__ = ["runs", "match_events", "event_counts", "prf"]


def runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and (exclusive) stops of the runs of True in a 1-D bool array."""
    m = np.concatenate([[False], np.asarray(mask, bool), [False]])
    d = np.diff(m.astype(np.int8))
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


def match_events(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], *, fps: float,
                 tolerance_s: float, min_overlap: float) -> int:
    """Number of matched events between ``a`` and ``b`` (each ``(starts, stops)`` in frames)."""
    sa, ea = (np.asarray(v, np.int64) for v in a)
    sb, eb = (np.asarray(v, np.int64) for v in b)
    if sa.size == 0 or sb.size == 0:
        return 0
    onset_ok = np.abs(sa[:, None] - sb[None, :]) / fps <= tolerance_s + 1e-9
    overlap = np.minimum(ea[:, None], eb[None, :]) - np.maximum(sa[:, None], sb[None, :])
    shorter = np.minimum((ea - sa)[:, None], (eb - sb)[None, :])
    ok = onset_ok & (overlap >= np.maximum(1, min_overlap * shorter))
    if not ok.any():
        return 0
    match = maximum_bipartite_matching(csr_matrix(ok.astype(np.int8)), perm_type="column")
    return int((match >= 0).sum())


def event_counts(on_a: np.ndarray, on_b: np.ndarray, shared: np.ndarray, *, fps: float, tolerance_s: float,
                 min_overlap: float) -> np.ndarray:
    """Per action column: (matches, events of a, events of b) over the shared frames [A, 3]."""
    A = on_a.shape[1]
    out = np.zeros((A, 3), np.int64)
    for j in range(A):
        ra = runs(on_a[:, j] & shared)
        rb = runs(on_b[:, j] & shared)
        out[j] = (match_events(ra, rb, fps=fps, tolerance_s=tolerance_s, min_overlap=min_overlap),
                  ra[0].size, rb[0].size)
    return out


def prf(matched: float, n_a: float, n_b: float) -> tuple[float, float, float, str | None]:
    """(precision, recall, F1, note); NaN with a note where a denominator is 0."""
    p = matched / n_a if n_a else np.nan
    r = matched / n_b if n_b else np.nan
    if n_a == 0 and n_b == 0:
        return p, r, np.nan, "no event by either rater"
    if n_a == 0 or n_b == 0:
        who = "rater_a" if n_a == 0 else "rater_b"
        return (0.0 if n_a else np.nan), (0.0 if n_b else np.nan), 0.0, f"no event by {who}"
    f = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return p, r, f, None
