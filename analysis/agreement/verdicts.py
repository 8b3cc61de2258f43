"""Bootstrap intervals over participants and the verdict per action.

Participants are the resampling unit (frames within a participant are not independent). One draw
picks P participants with replacement from the P participants of the comparison; every pair's
statistic is recomputed from the summed per-participant 2x2 counts of the drawn participants
(a participant drawn twice counts twice), with the same draws for every pair, so differences between
pairs are paired. Intervals are the 2.5 and 97.5 percentiles of the draws (percentile bootstrap);
draws where the statistic is undefined are left out (their share is reported when it is not zero).

Verdict per action (statistic: time-unit kappa), with ``d = mean kappa(model, coder_i) - mean
kappa(coder_i, coder_j)`` over the compared coders and coder pairs::

    "not enough coded data"   fewer than two coders (no human ceiling), fewer than min_participants
                              participants shared, fewer than min_engaged participants in whom both
                              coders of every coder pair coded the action, or kappa undefined/unstable
                              in a pair (the reason says which: e.g. the action was (almost) never coded)
    "below the coder range"   the 95 % bootstrap interval of d lies entirely below 0
    "within the coder range"  otherwise (the model agrees with the coders about as well as, or better
                              than, they agree with each other)
"""

from __future__ import annotations

import numpy as np

from analysis.agreement.kappa import kappa_from_counts

__all__ = ["draws", "interval", "kappa_draws", "verdict", "VERDICTS"]

VERDICTS = ("within the coder range", "below the coder range", "not enough coded data")


def draws(n_participants: int, n_draws: int, seed: int) -> np.ndarray:
    """Multiplicity of each participant in each draw [B, P] (int)."""
    rng = np.random.default_rng(seed)
    if n_participants == 0 or n_draws == 0:
        return np.zeros((n_draws, n_participants), np.int64)
    idx = rng.integers(0, n_participants, size=(n_draws, n_participants))
    w = np.zeros((n_draws, n_participants), np.int64)
    np.add.at(w, (np.repeat(np.arange(n_draws), n_participants), idx.ravel()), 1)
    return w


def kappa_draws(counts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Kappa per draw and column: counts [P, A, 4], weights [B, P] -> [B, A]."""
    if weights.shape[0] == 0:
        return np.zeros((0, counts.shape[1]))
    summed = np.einsum("bp,pak->bak", weights.astype(np.float64), counts.astype(np.float64))
    return kappa_from_counts(summed)


def interval(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2.5 / 97.5 percentiles over axis 0, ignoring NaN draws (NaN where every draw is NaN)."""
    if values.shape[0] == 0:
        nan = np.full(values.shape[1:], np.nan)
        return nan, nan.copy()
    ok = np.isfinite(values).any(axis=0)
    lo = np.full(values.shape[1:], np.nan)
    hi = np.full(values.shape[1:], np.nan)
    if ok.any():
        lo[ok] = np.nanpercentile(values[:, ok], 2.5, axis=0)
        hi[ok] = np.nanpercentile(values[:, ok], 97.5, axis=0)
    return lo, hi


def verdict(*, n_coders: int, n_participants: int, min_participants: int, model_kappas: list[float],
            coder_kappas: list[float], notes: list[str], diff_high: float, engaged: int | None = None,
            min_engaged: int = 0) -> tuple[str, str]:
    """(verdict, reason) of one action (see the module docstring); ``engaged`` is the fewest participants
    coded with the action by both coders of a coder pair (None: not counted)."""
    if n_coders < 2:
        return VERDICTS[2], f"only {n_coders} coder: no coder-vs-coder agreement to compare with"
    if n_participants < min_participants:
        return VERDICTS[2], f"{n_participants} participant(s) coded (at least {min_participants} needed)"
    if engaged is not None and engaged < min_engaged:
        return VERDICTS[2], (f"both coders coded the action in only {engaged} participant(s) "
                             f"(at least {min_engaged} needed)")
    bad = [n for n in notes if n]
    if bad or not all(np.isfinite(model_kappas + coder_kappas)):
        return VERDICTS[2], bad[0] if bad else "kappa undefined in a pair"
    if not np.isfinite(diff_high):
        return VERDICTS[2], "no bootstrap interval (bootstrap 0 or every draw undefined)"
    mk, ck = float(np.mean(model_kappas)), float(np.mean(coder_kappas))
    if diff_high < 0:
        return VERDICTS[1], f"model-vs-coder kappa {mk:.2f} is below coder-vs-coder kappa {ck:.2f} (95 % interval of the difference below 0)"
    return VERDICTS[0], f"model-vs-coder kappa {mk:.2f}, coder-vs-coder kappa {ck:.2f}"
