"""Time-unit agreement on binned labels: Cohen's kappa, percent agreement, Gwet's AC1, prevalence.

Bins (``AgreementConfig.bin``)::

    one frame (default)   bin k = frame k
    u seconds             bin k is sampled at t_k = k * u (video time, k = 0, 1, ... while t_k < duration):
                          a state codes the bin when it covers the frame holding t_k, floor(t_k * fps);
                          a point event at frame p codes the bin when |p / fps - t_k| <= u / 2

This is BORIS's "Cohen's kappa (time-unit)" rule (states current at each sampled time; points within
half a unit), on the contract's frames: a state's stop is exclusive at frame resolution where BORIS
compares seconds inclusively, so a stop falling exactly on a sampled time differs by that one bin.
A bin counts only when both raters observed its frame.

Per action, the two raters' binary bin labels give the 2x2 counts ``c = (n11, n10, n01, n00)``
(both on; a only; b only; neither). With n = sum(c), p_a = (n11 + n10) / n, p_b = (n11 + n01) / n::

    percent agreement  p_o = (n11 + n00) / n
    Cohen's kappa      (p_o - p_e) / (1 - p_e),  p_e = p_a p_b + (1 - p_a)(1 - p_b)   (Cohen 1960)
    prevalence         pi = (p_a + p_b) / 2
    Gwet's AC1         (p_o - e) / (1 - e),       e = 2 pi (1 - pi)                    (Gwet 2008, Br J Math
                                                                                          Stat Psychol 61:29-48)

Point estimates of kappa are scikit-learn's ``cohen_kappa_score`` on the four label pairs weighted by
their counts (the same number as on the full sequences); the bootstrap uses the closed form above,
vectorised over draws (tests check both against ``cohen_kappa_score`` on the sequences). AC1 is
written out because no kept library has it; it stays defined where kappa's p_e reaches 1.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import cohen_kappa_score

from analysis.agreement.raters import Track

__all__ = ["sample_frames", "binned", "pair_counts", "kappa_from_counts", "ac1_from_counts", "kappa_sklearn",
           "kappa_with_reason", "with_any"]

_A = np.array([1, 1, 0, 0])
_B = np.array([1, 0, 1, 0])


def sample_frames(num_frames: int, fps: float, bin_s: float | None) -> np.ndarray:
    """Frame index of each bin: every frame, or floor(k * bin_s * fps) for t_k = k * bin_s < duration."""
    if bin_s is None:
        return np.arange(num_frames)
    k = np.arange(int(np.ceil(num_frames / fps / bin_s - 1e-9)))
    idx = np.floor(k * bin_s * fps + 1e-9).astype(np.int64)
    return idx[idx < num_frames]


def with_any(on: np.ndarray) -> np.ndarray:
    """``on`` [K, A] with a last column "any micro-action" [K, A + 1]."""
    return np.concatenate([on, on.any(axis=1, keepdims=True)], axis=1)


def binned(track: Track, fps: float, bin_s: float | None, num_frames: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(on [K, A], seen [K]) of a track on the bins (see the module docstring)."""
    t = track.padded(num_frames or track.num_frames)
    idx = sample_frames(t.num_frames, fps, bin_s)
    on = t.on[idx].copy()
    seen = t.seen[idx]
    if bin_s is not None and t.points is not None and t.points.any():
        cum = np.vstack([np.zeros((1, on.shape[1]), np.int64), np.cumsum(t.points, axis=0)])
        t_k = np.arange(idx.size) * bin_s
        lo = np.clip(np.ceil((t_k - bin_s / 2) * fps - 1e-9).astype(np.int64), 0, t.num_frames)
        hi = np.clip(np.floor((t_k + bin_s / 2) * fps + 1e-9).astype(np.int64) + 1, 0, t.num_frames)
        on |= (cum[hi] - cum[lo]) > 0
    return on & seen[:, None], seen


def pair_counts(on_a: np.ndarray, on_b: np.ndarray, shared: np.ndarray) -> np.ndarray:
    """2x2 counts per column over the shared bins: [A, 4] = (n11, n10, n01, n00)."""
    a = on_a[shared]
    b = on_b[shared]
    n11 = (a & b).sum(0)
    n10 = (a & ~b).sum(0)
    n01 = (~a & b).sum(0)
    n00 = a.shape[0] - n11 - n10 - n01
    return np.stack([n11, n10, n01, n00], axis=-1).astype(np.int64)


def _rates(c: np.ndarray):
    c = np.asarray(c, dtype=np.float64)
    n = c.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        po = (c[..., 0] + c[..., 3]) / n
        pa = (c[..., 0] + c[..., 1]) / n
        pb = (c[..., 0] + c[..., 2]) / n
    return n, po, pa, pb


def kappa_from_counts(c: np.ndarray) -> np.ndarray:
    """Cohen's kappa from counts [..., 4]; NaN where p_e = 1 (both raters constant) or n = 0."""
    n, po, pa, pb = _rates(c)
    pe = pa * pb + (1 - pa) * (1 - pb)
    with np.errstate(invalid="ignore", divide="ignore"):
        k = (po - pe) / (1 - pe)
    return np.where((n > 0) & (1 - pe > 1e-12), k, np.nan)


def ac1_from_counts(c: np.ndarray) -> np.ndarray:
    """Gwet's AC1 from counts [..., 4]; NaN where n = 0."""
    n, po, pa, pb = _rates(c)
    pi = (pa + pb) / 2
    e = 2 * pi * (1 - pi)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (po - e) / (1 - e), np.nan)


def kappa_sklearn(c: np.ndarray) -> float:
    """scikit-learn's ``cohen_kappa_score`` on the four label pairs weighted by the counts ``c`` [4]."""
    w = np.asarray(c, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(cohen_kappa_score(_A, _B, labels=[0, 1], sample_weight=w))


def kappa_with_reason(c: np.ndarray, min_prevalence: float) -> tuple[float, float, float, float, str | None]:
    """(kappa, percent agreement, AC1, prevalence, note) of one pair and action; kappa is NaN with a note
    when undefined (no shared bin, or neither rater ever / always codes the action) or unstable (the
    prevalence is below ``min_prevalence`` or above 1 - it)."""
    c = np.asarray(c, dtype=np.int64)
    n, po, pa, pb = _rates(c)
    if n == 0:
        return np.nan, np.nan, np.nan, np.nan, "no bin observed by both raters"
    prev = float((pa + pb) / 2)
    ac1 = float(ac1_from_counts(c))
    if c[1] + c[2] == 0 and (c[0] == 0 or c[3] == 0):
        what = "neither rater coded the action" if c[0] == 0 else "both raters coded the action in every bin"
        return np.nan, 100 * float(po), ac1, prev, f"kappa undefined: {what} (AC1 {ac1:.2f})"
    if pa in (0.0, 1.0) and pb in (0.0, 1.0):
        return np.nan, 100 * float(po), ac1, prev, "kappa undefined: both raters constant"
    if min(prev, 1 - prev) < min_prevalence:
        return (np.nan, 100 * float(po), ac1, prev,
                f"kappa unstable: prevalence {100 * prev:.2f} % of bins (< {100 * min_prevalence:g} %); read AC1")
    k = kappa_sklearn(c)
    if not np.isfinite(k):
        return np.nan, 100 * float(po), ac1, prev, "kappa undefined: expected agreement is 1"
    return k, 100 * float(po), ac1, prev, None
