"""Size and power of both hurdle parts' tests by simulation: the study behind the choice of ``intensity_se``.

Each *cell* is one data-generating design with three groups (ASD, PSY, TDC, the paper's labels); its
replicates are simulated at once and every method of :data:`analysis.intensity_tests.INTENSITY_METHODS`
is applied to the same replicates, so the methods are compared on identical data.

Intensity cells (:class:`IntensityCell`), engagers only, no covariates::

    n engagers per group: (k, k, k) ("equal") or (round(k 120/46), k, round(k 124/46)) ("paper")
    share ~ Beta(mu phi, (1 - mu) phi)
        shape "mild":   mu = 0.30, phi = 20  (sd 10 pp, nearly symmetric)
        shape "skewed": mu = 0.06, phi = 6   (sd 9 pp, skewness about 2)
        spread "unequal": PSY's phi x 16 (a quarter of the others' sd, same mean)
    quantised: y = max(round(900 share), 30) / 900  (frames of a 30 s recording at 30 fps, at least 1 s)
    effect: PSY's mean moved to expit(logit(mu) + effect) (0 = the null)

Under the null every group has the same mean fraction, so every one of the three pairwise contrasts is a
true null; with an effect, the contrast PSY vs TDC carries it (``POWER_CONTRAST``). Probability cells
(:class:`ProbabilityCell`): all participants, engaged ~ Bernoulli(p) in every group, tested by the
analysis' own :func:`analysis.logistic.fit_logistic` and :func:`analysis.logistic.logistic_contrast`
(ML Wald, Firth's penalised LR under separation).

Rates are summarised with a Monte-Carlo standard error computed from the replicates (the three
contrasts of one replicate are not independent: the se is that of the replicate means).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special

from .contrasts import pairs
from .design import build_design
from .fractional import fit_fractional_batch
from .intensity_tests import INTENSITY_METHODS, analytic_tests, permutation_pvalues, wild_score_pvalues
from .logistic import fit_logistic, logistic_contrast

__all__ = [
    "GROUPS",
    "POWER_CONTRAST",
    "IntensityCell",
    "ProbabilityCell",
    "group_sizes",
    "simulate_intensity",
    "intensity_pvalues",
    "probability_pvalues",
    "rejection_summary",
]

GROUPS: tuple[str, ...] = ("ASD", "PSY", "TDC")
CONTRASTS: list[tuple[str, str]] = pairs(GROUPS)
POWER_CONTRAST: tuple[str, str] = ("PSY", "TDC")

_SHAPES = {"mild": (0.30, 20.0), "skewed": (0.06, 6.0)}
_UNEQUAL_PHI = 16.0
_FRAMES, _MIN_FRAMES = 900, 30  # 30 s at 30 fps; at least 1 s


def group_sizes(k: int, sizes: str) -> tuple[int, int, int]:
    """Per-group counts (ASD, PSY, TDC) with k in the smallest group: ``"equal"`` or ``"paper"`` (120/46/124)."""
    if sizes == "equal":
        return (k, k, k)
    if sizes == "paper":
        return (round(k * 120 / 46), k, round(k * 124 / 46))
    raise ValueError(f"sizes must be 'equal' or 'paper', got {sizes!r}")


@dataclass(frozen=True)
class IntensityCell:
    """One intensity design (module docstring)."""

    engagers: int
    sizes: str = "equal"
    shape: str = "skewed"
    quantised: bool = True
    spread: str = "equal"
    effect: float = 0.0

    def label(self) -> str:
        return (f"k={self.engagers} {self.sizes} {self.shape} {'frames' if self.quantised else 'continuous'}"
                f"{' unequal-spread' if self.spread == 'unequal' else ''}")  # fmt: skip


@dataclass(frozen=True)
class ProbabilityCell:
    """One engagement design: ``participants`` in the smallest group, engagement probability ``p`` in all."""

    participants: int
    sizes: str = "equal"
    p: float = 0.5

    def label(self) -> str:
        return f"n={self.participants} {self.sizes} p={self.p:g}"


def simulate_intensity(cell: IntensityCell, reps: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Engagers' group labels, shape (n,), and ``reps`` replicate fractions, shape (reps, n)."""
    counts = group_sizes(cell.engagers, cell.sizes)
    group = np.repeat(np.array(GROUPS), counts)
    mu0, phi0 = _SHAPES[cell.shape]
    mu = np.where(group == "PSY", special.expit(special.logit(mu0) + cell.effect), mu0)
    phi = np.where((group == "PSY") & (cell.spread == "unequal"), phi0 * _UNEQUAL_PHI, phi0)
    share = rng.beta(mu * phi, (1 - mu) * phi, size=(reps, group.size))
    if cell.quantised:
        share = np.maximum(np.round(share * _FRAMES), _MIN_FRAMES) / _FRAMES
    return group, np.clip(share, 1e-6, 1.0)


def intensity_pvalues(
    cell: IntensityCell, reps: int, seed: int, methods: Sequence[str] = tuple(INTENSITY_METHODS), *, resamples: int = 999
) -> dict[str, np.ndarray]:
    """p-values of the three contrasts (:data:`CONTRASTS`) for every method on the same replicates.

    Returns
    -------
    dict of str to numpy.ndarray, shape (reps, 3)
        NaN where a method gives no p-value (a replicate whose fit did not converge).
    """
    rng = np.random.default_rng(seed)
    group, Y = simulate_intensity(cell, reps, rng)
    design = build_design(pd.DataFrame({"group": group}), list(GROUPS))
    params, converged = fit_fractional_batch(design.X, Y)
    out: dict[str, np.ndarray] = {}
    for m in methods:
        P = np.full((reps, len(CONTRASTS)), np.nan)
        for j, (a, b) in enumerate(CONTRASTS):
            L = design.contrast_vector(a, b)
            if INTENSITY_METHODS[m] is not None:
                P[:, j] = analytic_tests(design.X, Y, params, L, m)["p"]
            elif m == "wild":
                P[:, j] = wild_score_pvalues(design.X, Y, L, resamples=resamples, seed=int(rng.integers(2**31)))
            else:
                P[:, j] = permutation_pvalues(design, Y, a, b, resamples=resamples, seed=int(rng.integers(2**31)))
        P[~converged] = np.nan
        out[m] = P
    return out


def probability_pvalues(cell: ProbabilityCell, reps: int, seed: int) -> np.ndarray:
    """p-values of the three engagement contrasts by the analysis' own fits, shape (reps, 3).

    NaN where the analysis gives no p-value (no engager in either group of the pair, or all engaged).
    """
    rng = np.random.default_rng(seed)
    counts = group_sizes(cell.participants, cell.sizes)
    group = np.repeat(np.array(GROUPS), counts)
    design = build_design(pd.DataFrame({"group": group}), list(GROUPS))
    P = np.full((reps, len(CONTRASTS)), np.nan)
    for r in range(reps):
        y = (rng.random(group.size) < cell.p).astype(np.float64)
        if not y.any() or y.all():
            continue
        fit = fit_logistic(design, y)
        if fit.method == "firth" and not fit.converged:
            continue
        for j, (a, b) in enumerate(CONTRASTS):
            ya, yb = y[group == a], y[group == b]
            if (ya.sum() == 0 and yb.sum() == 0) or (ya.all() and yb.all()):
                continue
            P[r, j] = float(logistic_contrast(fit, a, b, ci="wald")["p"])
    return P


def rejection_summary(P: np.ndarray, alpha: float) -> tuple[float, float, float]:
    """(rejection rate, its Monte-Carlo se, share of tests with a p-value) of a (reps, tests) p array.

    The se is that of the per-replicate rejection shares (replicates are independent, their tests not).
    """
    ok = np.isfinite(P)
    if not ok.any():
        return float("nan"), float("nan"), 0.0
    rej = np.where(ok, P < alpha, False).astype(np.float64)
    per_rep_n = ok.sum(axis=1)
    keep = per_rep_n > 0
    rate = float(rej[keep].sum() / per_rep_n[keep].sum())
    # ratio estimator's se from the replicate totals
    r_tot, n_tot = rej[keep].sum(axis=1), per_rep_n[keep].astype(np.float64)
    m = keep.sum()
    se = float(np.sqrt(np.sum((r_tot - rate * n_tot) ** 2) / (m * (m - 1))) / n_tot.mean()) if m > 1 else float("nan")
    return rate, se, float(ok.mean())
