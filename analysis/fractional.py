"""Part 2 of the hurdle model: intensity among engagers (fractional logit, Papke & Wooldridge 1996).

The outcome is the fraction of time engaged, y = percent_time / 100 in (0, 1], among participants with
any engagement. Its conditional mean is modelled as ``E[y | x] = expit(x beta)`` and beta is the
Bernoulli quasi-maximum-likelihood estimate (a binomial GLM with logit link on a fractional outcome),
which is consistent whatever the distribution of y as long as the mean is right. Because the
Bernoulli variance is not the true variance, standard errors come from a sandwich
``V = B^{-1} M B^{-1}`` with ``B = X' diag(w) X``, ``w = mu (1 - mu)``, and a meat
``M = X' diag(omega) X`` whose weights are one of (MacKinnon & White 1985; Long & Ervin 2000)::

    "hc0"   omega_i = r_i^2                       r_i = y_i - mu_i
    "hc0n"  omega_i = r_i^2 * n / (n - 1)         Stata's fracreg logit / glm, vce(robust)
    "hc2"   omega_i = r_i^2 / (1 - h_i)           h_i = w_i x_i' B^{-1} x_i, the GLM hat values
    "hc3"   omega_i = r_i^2 / (1 - h_i)^2

(the same definitions as R's ``sandwich::vcovHC`` on a quasi-binomial ``glm``; "hc0n" is its HC0
times n/(n-1)). Which one the hurdle analysis uses, and with which reference distribution, is
:attr:`analysis.config.HurdleConfig.intensity_se` (:mod:`analysis.intensity_tests`).

statsmodels' GLM accepts ``cov_type="HC1"``, ``"HC2"`` and ``"HC3"`` but silently computes HC0 for all
of them (statsmodels 0.15: the GLM robust covariance has no leverage term), and its default IRLS
tolerance leaves the standard errors wrong in the 5th digit; so the fit uses a tight tolerance and the
sandwich is written out here. :func:`fit_fractional_batch` fits many outcome vectors on one model
matrix at once (Newton's method, vectorised over the batch), for resampling tests and calibration
studies where thousands of small fits would otherwise each pay statsmodels' set-up cost.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import statsmodels.api as sm
from scipy import special

from .design import Design
from .logistic import effect_span

__all__ = ["SANDWICH_KINDS", "FractionalFit", "hat_values", "robust_sandwich", "fit_fractional", "fit_fractional_batch"]

# Meat weights of the sandwich (see the module docstring).
SANDWICH_KINDS: tuple[str, ...] = ("hc0", "hc0n", "hc2", "hc3")

# A coefficient whose effect over its column's observed range exceeds this is running off to infinity
# (see analysis.logistic.effect_span).
_RUNAWAY_COEF = 15.0


def _bread_inv(X: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``(X' diag(w) X)^{-1}``; X (..., n, p), w (..., n) -> (..., p, p)."""
    return np.linalg.inv(np.einsum("...i,...ij,...ik->...jk", w, X, X))


def _linear(X: np.ndarray, params: np.ndarray) -> np.ndarray:
    """``X @ beta`` for each of a batch: X (..., n, p), params (..., p) -> (..., n)."""
    return np.einsum("...ij,...j->...i", X, params)


def hat_values(X: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Diagonal of the GLM hat matrix ``W^{1/2} X (X' W X)^{-1} X' W^{1/2}``, ``W = diag(mu (1 - mu))``.

    Parameters
    ----------
    X : numpy.ndarray, shape (n, p) or (..., n, p)
    params : numpy.ndarray, shape (..., p)

    Returns
    -------
    numpy.ndarray, shape (..., n)
        Leverages in [0, 1], summing to p (R's ``hatvalues`` of the fitted ``glm``).
    """
    mu = special.expit(_linear(X, np.asarray(params)))
    w = mu * (1 - mu)
    return w * np.einsum("...ij,...jk,...ik->...i", X, _bread_inv(X, w), X)


def robust_sandwich(
    X: np.ndarray, y: np.ndarray, params: np.ndarray, *, small_sample: bool = True, kind: str | None = None
) -> np.ndarray:
    """Sandwich covariance of the Bernoulli quasi-ML logit estimate, ``B^{-1} X' diag(omega) X B^{-1}``.

    Parameters
    ----------
    X : numpy.ndarray, shape (n, p) or (..., n, p)
        One model matrix for the whole batch, or one per outcome vector.
    y : numpy.ndarray, shape (..., n)
        Fractions; leading dimensions are a batch of outcome vectors.
    params : numpy.ndarray, shape (..., p)
        The estimates for each outcome vector.
    small_sample : bool
        Without ``kind``: "hc0n" (Stata's ``vce(robust)``, HC0 x n/(n-1)) if True, else plain "hc0".
    kind : {"hc0", "hc0n", "hc2", "hc3"}, optional
        Meat weights (module docstring); overrides ``small_sample``.

    Returns
    -------
    numpy.ndarray, shape (..., p, p)
    """
    kind = kind or ("hc0n" if small_sample else "hc0")
    if kind not in SANDWICH_KINDS:
        raise ValueError(f"kind must be one of {', '.join(SANDWICH_KINDS)}, got {kind!r}")
    y = np.asarray(y, dtype=np.float64)
    mu = special.expit(_linear(X, np.asarray(params)))
    w = mu * (1 - mu)
    bread_inv = _bread_inv(X, w)
    omega = (y - mu) ** 2
    n = X.shape[-2]
    if kind == "hc0n":
        omega = omega * (n / (n - 1))
    elif kind in ("hc2", "hc3"):
        h = w * np.einsum("...ij,...jk,...ik->...i", X, bread_inv, X)
        # A leverage of 1 (an observation alone in its group) leaves no residual to learn from: its
        # weight is infinite and so is the variance, which the caller reports as not estimable.
        with np.errstate(divide="ignore", invalid="ignore"):
            omega = omega / (1 - h) ** (1 if kind == "hc2" else 2)
    meat = np.einsum("...i,...ij,...ik->...jk", omega, X, X)
    return bread_inv @ meat @ bread_inv


def fit_fractional_batch(
    X: np.ndarray, Y: np.ndarray, *, start: np.ndarray | None = None, tol: float = 1e-11, maxiter: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """Bernoulli quasi-ML fits of many outcome vectors on one model matrix, vectorised.

    Newton's method on the quasi-log-likelihood ``sum(y eta - log(1 + e^eta))`` (concave, so Newton
    from the intercept-only start converges; steps are capped at 5 on the linear predictor), all
    outcome vectors at once.

    Parameters
    ----------
    X : numpy.ndarray, shape (n, p) or (B, n, p)
        One model matrix for all outcome vectors, or one each (e.g. permuted group labels).
    Y : numpy.ndarray, shape (B, n)
        Fractions in [0, 1].
    start : numpy.ndarray, shape (B, p) or (p,), optional
    tol : float
        Convergence when the largest Newton step on the linear predictor is below ``tol``.
    maxiter : int

    Returns
    -------
    params : numpy.ndarray, shape (B, p)
    converged : numpy.ndarray of bool, shape (B,)
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.atleast_2d(np.asarray(Y, dtype=np.float64))
    nb, p = Y.shape[0], X.shape[-1]
    if start is None:
        beta = np.zeros((nb, p))
        if np.all(X[..., 0] == 1.0):  # an intercept: start it at the logit of the mean fraction
            beta[:, 0] = special.logit(np.clip(Y.mean(axis=1), 1e-3, 1 - 1e-3))
    else:
        beta = np.broadcast_to(np.asarray(start, dtype=np.float64), (nb, p)).copy()
    converged = np.zeros(nb, dtype=bool)
    active = np.arange(nb)
    batched = X.ndim == 3
    for _ in range(maxiter):
        b = beta[active]
        Xa = X[active] if batched else X
        mu = special.expit(_linear(Xa, b))
        w = mu * (1 - mu)
        info = np.einsum("...i,...ij,...ik->...jk", w, Xa, Xa)
        score = np.einsum("...i,...ij->...j", Y[active] - mu, Xa)
        try:
            step = np.linalg.solve(info, score[..., None])[..., 0]
        except np.linalg.LinAlgError:
            break
        move = np.max(np.abs(_linear(Xa, step)), axis=1)
        scale = np.minimum(1.0, 5.0 / np.maximum(move, 1e-300))
        beta[active] = b + step * scale[:, None]
        done = move < tol
        converged[active[done]] = True
        active = active[~done]
        if not active.size:
            break
    return beta, converged


@dataclass
class FractionalFit:
    """A fitted intensity model.

    Attributes
    ----------
    params, cov : numpy.ndarray
        Coefficients and robust covariance (the sandwich of kind ``sandwich``).
    design : Design
    y : numpy.ndarray
        Fractions in (0, 1].
    converged : bool
    problem : str or None
        Why the fit cannot be used (diverging coefficient, singular information), else None.
    sandwich : {"hc0", "hc0n", "hc2", "hc3"}
        The meat weights of ``cov``.
    """

    params: np.ndarray
    cov: np.ndarray
    design: Design
    y: np.ndarray
    converged: bool
    problem: str | None = None
    sandwich: str = "hc0n"

    def predict(self, X: np.ndarray) -> np.ndarray:
        return special.expit(X @ self.params)


def fit_fractional(design: Design, y: np.ndarray, *, sandwich: str = "hc0n") -> FractionalFit:
    """Fit ``E[y | x] = expit(x beta)`` by Bernoulli quasi-likelihood with robust covariance.

    Parameters
    ----------
    design : Design
        Model matrix of the engagers.
    y : numpy.ndarray
        Fraction of time engaged, in (0, 1].
    sandwich : {"hc0", "hc0n", "hc2", "hc3"}
        Meat weights of the covariance (module docstring).

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
        return FractionalFit(nan, np.full((k, k), np.nan), design, y, False, "fewer observations than parameters", sandwich)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            res = sm.GLM(y, X, family=sm.families.Binomial()).fit(tol=1e-13, maxiter=300)
        except (np.linalg.LinAlgError, ValueError, OverflowError) as exc:
            return FractionalFit(nan, np.full((k, k), np.nan), design, y, False, f"fit failed ({type(exc).__name__})", sandwich)
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
        cov = robust_sandwich(X, y, params, kind=sandwich)
    except np.linalg.LinAlgError:
        cov, problem = np.full((k, k), np.nan), problem or "singular information matrix"
    return FractionalFit(params, cov, design, y, problem is None, problem, sandwich)
