"""Part 2 of the hurdle model: intensity among engagers (fractional logit, Papke & Wooldridge 1996).

The outcome is the fraction of time engaged, y = percent_time / 100 in (0, 1], among participants with
any engagement. Its conditional mean is modelled as ``E[y | x] = expit(x beta)`` and beta is the
Bernoulli quasi-maximum-likelihood estimate (a binomial GLM with logit link on a fractional outcome),
which is consistent whatever the distribution of y as long as the mean is right. Because the
Bernoulli variance is not the true variance, standard errors come from the sandwich
``V = n/(n-1) * B^{-1} M B^{-1}`` with ``B = X' diag(mu (1 - mu)) X`` and ``M = X' diag((y - mu)^2) X``:
HC0 with Stata's small-sample factor, the convention of ``fracreg logit`` and ``glm, vce(robust)``.

statsmodels' GLM accepts ``cov_type="HC1"`` but silently computes HC0, and its default IRLS tolerance
leaves the standard errors wrong in the 5th digit, so the fit uses a tight tolerance and the sandwich
is written out here.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import statsmodels.api as sm
from scipy import special

from .design import Design
from .logistic import effect_span

__all__ = ["FractionalFit", "robust_sandwich", "fit_fractional"]

# A coefficient whose effect over its column's observed range exceeds this is running off to infinity
# (see analysis.logistic.effect_span).
_RUNAWAY_COEF = 15.0


def robust_sandwich(X: np.ndarray, y: np.ndarray, params: np.ndarray, *, small_sample: bool = True) -> np.ndarray:
    """Sandwich covariance of the Bernoulli quasi-ML logit estimate.

    Parameters
    ----------
    X, y, params : numpy.ndarray
    small_sample : bool
        Multiply by n/(n-1) (Stata's ``vce(robust)``); False gives plain HC0.

    Returns
    -------
    numpy.ndarray, shape (p, p)
    """
    mu = special.expit(X @ params)
    bread_inv = np.linalg.inv((X * (mu * (1 - mu))[:, None]).T @ X)
    u = X * (y - mu)[:, None]  # per-observation scores
    V = bread_inv @ (u.T @ u) @ bread_inv
    n = X.shape[0]
    return V * (n / (n - 1)) if small_sample else V


@dataclass
class FractionalFit:
    """A fitted intensity model.

    Attributes
    ----------
    params, cov : numpy.ndarray
        Coefficients and robust covariance (HC0 x n/(n-1)).
    design : Design
    y : numpy.ndarray
        Fractions in (0, 1].
    converged : bool
    problem : str or None
        Why the fit cannot be used (diverging coefficient, singular information), else None.
    """

    params: np.ndarray
    cov: np.ndarray
    design: Design
    y: np.ndarray
    converged: bool
    problem: str | None = None

    method_label = "fractional logit (Bernoulli QML, robust SE HC0 x n/(n-1))"

    def predict(self, X: np.ndarray) -> np.ndarray:
        return special.expit(X @ self.params)


def fit_fractional(design: Design, y: np.ndarray) -> FractionalFit:
    """Fit ``E[y | x] = expit(x beta)`` by Bernoulli quasi-likelihood with robust covariance.

    Parameters
    ----------
    design : Design
        Model matrix of the engagers.
    y : numpy.ndarray
        Fraction of time engaged, in (0, 1].

    Returns
    -------
    FractionalFit
        ``problem`` is set (and the numbers are not to be reported) when the fit diverged, e.g. a group
        whose engagers all sit at 100 %.
    """
    X = design.X
    y = np.asarray(y, dtype=np.float64)
    k = X.shape[1]
    nan = np.full(k, np.nan)
    if X.shape[0] <= k:
        return FractionalFit(nan, np.full((k, k), np.nan), design, y, False, "fewer observations than parameters")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            res = sm.GLM(y, X, family=sm.families.Binomial()).fit(tol=1e-13, maxiter=300)
        except (np.linalg.LinAlgError, ValueError, OverflowError) as exc:
            return FractionalFit(nan, np.full((k, k), np.nan), design, y, False, f"fit failed ({type(exc).__name__})")
    params = np.asarray(res.params, dtype=np.float64)
    names = {type(w.message).__name__ for w in caught}
    problem = None
    span = effect_span(X, params)
    runaway = [design.names[j + 1] for j in np.flatnonzero(~np.isfinite(span) | (span > _RUNAWAY_COEF))]
    if runaway:
        # Quasi-separation of the mean, e.g. every engager with one covariate level at 100 % (groups at
        # 100 % are left out before the fit). The diverging coefficient is named; no Wald test or
        # sandwich of this fit means anything.
        problem = f"coefficient diverging ({', '.join(runaway)}): intensity at the 100 % boundary (quasi-separation)"
    elif not res.converged or "ConvergenceWarning" in names:
        problem = "fit did not converge"
    elif "PerfectSeparationWarning" in names:
        problem = "coefficient diverging (intensity at a boundary)"
    try:
        cov = robust_sandwich(X, y, params)
    except np.linalg.LinAlgError:
        cov, problem = np.full((k, k), np.nan), problem or "singular information matrix"
    return FractionalFit(params, cov, design, y, problem is None, problem)
