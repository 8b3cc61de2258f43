"""Part 1 of the hurdle model: probability of any engagement (logistic GLM, Firth when separated).

Maximum likelihood (statsmodels GLM, binomial family, logit link, fitted to a tight tolerance) gives
odds ratios with Wald tests. Rare actions and small groups often produce *separation*: a group with no
engager, or with every participant engaged, or a covariate that predicts engagement perfectly. The ML
estimate then runs off to infinity and its Wald test is meaningless. For those models we use Firth's
(1993) penalised likelihood, ``l(beta) + 0.5 log det I(beta)`` (the Jeffreys prior), whose estimates
are always finite; contrasts are tested with the penalised likelihood ratio (Heinze & Schemper 2002)
and given profile penalised-likelihood confidence intervals (or Wald, by option).

The Firth fit is a damped Newton iteration on the modified score
``U*(beta) = X' (y - p + h (1/2 - p))``, h the diagonal of the weighted hat matrix. A linear
constraint ``L beta = t`` (for likelihood-ratio tests and profile intervals) is handled by fitting in
the null space of L while keeping the *full* model's penalty, as logistf does.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import statsmodels.api as sm
from scipy import linalg, optimize, special, stats

from .contrasts import wald_contrast, z_crit
from .descriptives import group_counts
from .design import Design

__all__ = [
    "LogisticFit",
    "FirthResult",
    "inverse_information",
    "firth_fit",
    "firth_penalized_loglik",
    "separation_reason",
    "fit_logistic",
    "logistic_contrast",
]

# A coefficient whose effect over its column's observed range exceeds this (|log odds ratio| > 15,
# i.e. OR > 3e6, for a dummy) or a fitted probability this close to 0/1 means the ML fit is drifting
# to infinity even if statsmodels reports convergence.
_RUNAWAY_COEF = 15.0
_RUNAWAY_PROB = 1e-9


def effect_span(X: np.ndarray, params: np.ndarray) -> np.ndarray:
    """|coefficient| x observed range of its column, for every column but the intercept.

    The change of the linear predictor a coefficient makes across the sample: for a dummy the
    coefficient itself; for a numeric covariate it does not depend on the units (a coefficient of
    2000 on a covariate ranging over 0-0.01 is an ordinary effect, not a diverging one).
    """
    if X.shape[1] <= 1:
        return np.zeros(0)
    return np.abs(np.asarray(params, dtype=np.float64)[1:]) * np.ptp(X[:, 1:], axis=0)


def inverse_information(X: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """``(X' W X)^-1`` with ``W = diag(p (1 - p))``, ``p = expit(X beta)``: the ML covariance at ``beta``.

    Computed here at the returned estimate because statsmodels' IRLS reports the covariance with the
    weights of the iteration before the last one (relative error up to 1e-7 against R's glm).
    """
    p = special.expit(X @ beta)
    info = (X * (p * (1 - p))[:, None]).T @ X
    try:
        return linalg.cho_solve(linalg.cho_factor(info), np.eye(info.shape[0]))
    except linalg.LinAlgError:
        return np.linalg.pinv(info)


def firth_penalized_loglik(X: np.ndarray, y: np.ndarray, beta: np.ndarray) -> float:
    """Firth's penalised log-likelihood ``sum(y eta - log(1 + e^eta)) + 0.5 log det(X' W X)``."""
    eta = X @ beta
    ll = float(np.sum(y * eta - np.logaddexp(0.0, eta)))
    p = special.expit(eta)
    w = p * (1 - p)
    sign, logdet = np.linalg.slogdet((X * w[:, None]).T @ X)
    return ll + 0.5 * logdet if sign > 0 else -np.inf


@dataclass
class FirthResult:
    """A (possibly constrained) Firth fit.

    Attributes
    ----------
    params : numpy.ndarray
    cov : numpy.ndarray
        Inverse Fisher information at ``params`` (for Wald intervals).
    pll : float
        Penalised log-likelihood at ``params``.
    converged : bool
    iterations : int
    """

    params: np.ndarray
    cov: np.ndarray
    pll: float
    converged: bool
    iterations: int


def firth_fit(
    X: np.ndarray,
    y: np.ndarray,
    *,
    L: np.ndarray | None = None,
    t: float = 0.0,
    start: np.ndarray | None = None,
    maxiter: int = 200,
    tol: float = 1e-10,
    max_step: float = 5.0,
) -> FirthResult:
    """Firth's penalised-likelihood logistic regression, optionally under ``L @ beta = t``.

    Parameters
    ----------
    X : numpy.ndarray, shape (n, p)
    y : numpy.ndarray, shape (n,)
        0/1 outcome.
    L : numpy.ndarray, shape (p,), optional
        A linear constraint; the penalty is still the full model's (as in logistf's PLR test).
    t : float
        Value of the constraint.
    start : numpy.ndarray, optional
        Starting values (projected onto the constraint).
    maxiter, tol, max_step
        Scoring iterations; convergence threshold and step cap, both on the largest change of the
        linear predictor ``X @ beta`` (so independent of covariate units). A step is also halved until
        the penalised likelihood increases.

    Returns
    -------
    FirthResult
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, k = X.shape
    if L is None:
        base = np.zeros(k)
        N = np.eye(k)
    else:
        L = np.asarray(L, dtype=np.float64)
        base = L * (t / float(L @ L))
        N = linalg.null_space(L[None, :])
    gamma = np.zeros(N.shape[1]) if start is None else N.T @ (np.asarray(start) - base)

    def parts(g: np.ndarray):
        beta = base + N @ g
        eta = X @ beta
        p = special.expit(eta)
        w = p * (1 - p)
        info = (X * w[:, None]).T @ X
        return beta, eta, p, w, info

    beta, eta, p, w, info = parts(gamma)
    pll = firth_penalized_loglik(X, y, beta)
    XN = X @ N  # a step in gamma changes the linear predictor by XN @ step
    converged = False
    prev_move = None
    it = 0
    for it in range(1, maxiter + 1):
        try:
            info_inv = np.linalg.inv(info)
        except np.linalg.LinAlgError:
            break
        h = w * np.einsum("ij,jk,ik->i", X, info_inv, X)
        score = N.T @ (X.T @ (y - p + h * (0.5 - p)))
        H = N.T @ info @ N
        try:
            step = np.linalg.solve(H, score)
        except np.linalg.LinAlgError:
            break
        # Sizes are measured on the linear predictor, so that the cap and the convergence test do not
        # depend on a covariate's units (a coefficient of 2000 on a 0-0.01 scale is an ordinary effect).
        move = XN @ step
        size = float(np.max(np.abs(move))) if step.size else 0.0
        decrement = float(score @ step)  # expected gain of the full step, twice over
        if size < tol:
            # Converged: judged on the *full* scoring step. (Judging it on a step shrunk by the halving
            # below stopped the iteration up to 1e-7 short of the optimum, where the penalised
            # likelihood no longer resolves an improvement in double precision.)
            gamma = gamma + step
            beta, eta, p, w, info = parts(gamma)
            pll = firth_penalized_loglik(X, y, beta)
            converged = True
            break
        if size > max_step:
            step *= max_step / size
        elif size < 1e-6 and prev_move is not None and float(move @ prev_move) < 0:
            # Scoring overshoots back and forth around the optimum (a 2-cycle, e.g. a group of one
            # participant): half a step lands on the optimum.
            step *= 0.5
        prev_move = move
        # Step halving keeps the iteration ascending in the penalised likelihood. Fisher scoring on the
        # modified score is not Newton on the penalised likelihood and can fall into a 2-cycle around
        # the optimum (e.g. a group of one participant); an ascent requirement halves such a step onto
        # the optimum. Close to the optimum (a step below 1e-6 on the linear predictor) the change is
        # below double-precision resolution of the likelihood and the full step is taken.
        for _ in range(60):
            cand = gamma + step
            b2, e2, p2, w2, i2 = parts(cand)
            pll2 = firth_penalized_loglik(X, y, b2)
            if pll2 > pll or size < 1e-6:
                break
            step *= 0.5
        else:
            # No step along an ascent direction increases the computed penalised likelihood: the
            # optimum is reached to the precision the likelihood can be evaluated (ill-conditioned
            # information, e.g. quasi-separation by a covariate) if the expected gain is negligible.
            converged = decrement < 1e-8 * (1.0 + abs(pll))
            break
        gamma = cand
        beta, eta, p, w, info, pll = b2, e2, p2, w2, i2, pll2
    try:
        cov = np.linalg.inv(info)
    except np.linalg.LinAlgError:
        cov = np.full((k, k), np.nan)
    return FirthResult(params=beta, cov=cov, pll=pll, converged=converged, iterations=it)


def separation_reason(design: Design, y: np.ndarray) -> str | None:
    """Why the ML fit would be separated, from group counts alone; None if no group is separated."""
    reasons = []
    for g, c in group_counts(design.group, y, design.groups).items():
        if c.engaged == 0:
            reasons.append(f"{g}: no engagers")
        elif c.engaged == c.n:
            reasons.append(f"{g}: all engaged")
    return "; ".join(reasons) or None


@dataclass
class LogisticFit:
    """A fitted engagement model.

    Attributes
    ----------
    params, cov : numpy.ndarray
        Coefficients and their covariance (ML: inverse information; Firth: inverse information at
        the penalised estimate).
    method : {"ml", "firth"}
    design : Design
    y : numpy.ndarray
    converged : bool
    separation : str or None
        Why Firth was used ("PSY: no engagers", "quasi-complete separation by a covariate", ...).
    firth : FirthResult or None
    """

    params: np.ndarray
    cov: np.ndarray
    method: str
    design: Design
    y: np.ndarray
    converged: bool
    separation: str | None = None
    firth: FirthResult | None = field(default=None, repr=False)

    @property
    def method_label(self) -> str:
        if self.method == "firth":
            return "Firth penalised logistic regression"
        return "logistic GLM (maximum likelihood)"

    def predict(self, X: np.ndarray) -> np.ndarray:
        return special.expit(X @ self.params)


def _ml_fit(X: np.ndarray, y: np.ndarray):
    """statsmodels GLM fit; returns (result, runaway reason or None). Warnings never reach the user."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            res = sm.GLM(y, X, family=sm.families.Binomial()).fit(tol=1e-12, maxiter=200)
        except (np.linalg.LinAlgError, ValueError, OverflowError) as exc:
            return None, f"ML fit failed ({type(exc).__name__})"
    names = {type(w.message).__name__ for w in caught}
    if "PerfectSeparationWarning" in names:
        return res, "perfect separation"
    params = np.asarray(res.params)
    p = np.asarray(res.fittedvalues)
    if not res.converged or "ConvergenceWarning" in names:
        return res, "ML fit did not converge"
    if not np.all(np.isfinite(params)) or np.max(effect_span(X, params), initial=0) > _RUNAWAY_COEF:
        return res, "quasi-complete separation (coefficient diverging)"
    if np.min(np.minimum(p, 1 - p)) < _RUNAWAY_PROB:
        return res, "quasi-complete separation (fitted probability 0 or 1)"
    return res, None


def fit_logistic(design: Design, y: np.ndarray, *, firth: str = "auto") -> LogisticFit:
    """Fit the engagement model ``logit P(engaged) = X beta``.

    Parameters
    ----------
    design : Design
        Model matrix with group dummies and covariates.
    y : numpy.ndarray
        1 = engaged (percent_time > 0), 0 = not.
    firth : {"auto", "always"}
        ``"auto"``: ML unless separation is detected (a group with no or only engagers, a statsmodels
        separation warning, a diverging coefficient or fitted probabilities at 0/1), then Firth.

    Returns
    -------
    LogisticFit
    """
    y = np.asarray(y, dtype=np.float64)
    X = design.X
    reason = separation_reason(design, y)
    if firth == "auto" and reason is None:
        res, reason = _ml_fit(X, y)
        if reason is None:
            params = np.asarray(res.params)
            return LogisticFit(params, inverse_information(X, params), "ml", design, y, True)
    fr = firth_fit(X, y)
    return LogisticFit(fr.params, fr.cov, "firth", design, y, fr.converged, separation=reason, firth=fr)


def _profile_bound(fit: LogisticFit, L: np.ndarray, est: float, se: float, target: float, sign: int) -> float:
    """One end of the profile penalised-likelihood interval: where 2 (pll_max - pll(t)) = target."""
    X, y, pmax = fit.design.X, fit.y, fit.firth.pll
    warm = {"beta": fit.params}

    def f(t: float) -> float:
        r = firth_fit(X, y, L=L, t=t, start=warm["beta"])
        warm["beta"] = r.params
        return 2.0 * (pmax - r.pll) - target

    step = max(se if np.isfinite(se) else 1.0, 0.25)
    inner, outer = est, est + sign * step
    for _ in range(40):
        if f(outer) > 0:
            break
        inner, step = outer, step * 2
        outer = est + sign * step
    else:
        return float("nan")
    # Constrained Firth fits far from the estimate depend slightly on their starting point, so the sign
    # seen during the search can flip when an end is fitted again from the estimate. Check the bracket
    # as brentq will see it; if it no longer holds, report no profile bound (the caller then gives the
    # Wald interval and says so in the "ci" column) instead of failing the whole analysis.
    warm["beta"] = fit.params
    a, b = min(inner, outer), max(inner, outer)
    fa = f(a)
    warm["beta"] = fit.params
    fb = f(b)
    if not (np.isfinite(fa) and np.isfinite(fb)) or fa * fb > 0:
        return float("nan")
    warm["beta"] = fit.params
    return float(optimize.brentq(f, a, b, xtol=1e-8, rtol=1e-10))


def logistic_contrast(fit: LogisticFit, a: str, b: str, *, ci_level: float = 0.95, ci: str = "profile") -> dict[str, float | str]:
    """Test and estimate the log odds ratio of engagement, group ``a`` vs group ``b``.

    ML fits: Wald z test and Wald interval. Firth fits: penalised likelihood-ratio test (chi-square,
    1 df) and profile penalised-likelihood interval (``ci="profile"``) or Wald interval (``"wald"``).

    Returns
    -------
    dict
        ``estimate``, ``se``, ``ci_low``, ``ci_high`` (log scale), ``statistic``, ``p``, ``test``.
    """
    L = fit.design.contrast_vector(a, b)
    out: dict[str, float | str] = dict(wald_contrast(fit.params, fit.cov, L, ci_level))
    if fit.method == "ml":
        out["test"] = "Wald z"
        return out
    constrained = firth_fit(fit.design.X, fit.y, L=L, t=0.0, start=fit.params)
    lr = max(0.0, 2.0 * (fit.firth.pll - constrained.pll))
    out["statistic"] = lr
    out["p"] = float(stats.chi2.sf(lr, 1))
    out["test"] = "penalised LR chi2"
    if ci == "profile":
        target = z_crit(ci_level) ** 2
        est, se = float(out["estimate"]), float(out["se"])
        lo = _profile_bound(fit, L, est, se, target, -1)
        hi = _profile_bound(fit, L, est, se, target, +1)
        if np.isfinite(lo) and np.isfinite(hi):
            out["ci_low"], out["ci_high"] = lo, hi
            out["ci"] = "profile"
        else:
            out["ci"] = "wald"
    else:
        out["ci"] = "wald"
    return out
