"""Rubin's rules: combining M analyses of M completed (here: error-corrected) data sets.

For one quantity with estimates ``q_m`` and standard errors ``u_m`` (m = 1..M; Rubin 1987)::

    Q = mean(q_m)                       combined estimate
    W = mean(u_m^2)                     within-imputation variance
    B = var(q_m)  (ddof 1)              between-imputation variance
    T = W + (1 + 1/M) B                 total variance; se = sqrt(T)
    lambda = (1 + 1/M) B / T            fraction of the variance due to the imputations
    nu_old = (M - 1) / lambda^2         Rubin's degrees of freedom
    nu_obs = (nu_com + 1) / (nu_com + 3) nu_com (1 - lambda)
    nu     = nu_old nu_obs / (nu_old + nu_obs)     (Barnard & Rubin 1999; nu_old when nu_com is infinite)

and ``t = Q / se`` is referred to t(nu): ``p = 2 P(T_nu > |t|)``, interval ``Q +- t_{nu, 1-a/2} se``.
``nu_com`` is the complete-data degrees of freedom (n - p of the fit; infinity for a z reference).
With B = 0 (every imputation the same) nu is nu_com. Written out here: statsmodels' ``MICE`` pools
only its own chained-equations models, and the combination is these few lines.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["rubin_combine"]


def rubin_combine(estimates: np.ndarray, ses: np.ndarray, df_complete: np.ndarray | float = np.inf,
                  ci_level: float = 0.95) -> dict[str, np.ndarray]:  # fmt: skip
    """Rubin's rules for K quantities over M imputations (module docstring).

    Parameters
    ----------
    estimates, ses : numpy.ndarray, shape (M, K)
        NaN where an imputation gave no number: such entries are left out of that quantity's
        combination (``m`` says how many were used; fewer than 2 give NaN).
    df_complete : float or numpy.ndarray, shape (K,)
        Complete-data degrees of freedom (inf for a normal reference).
    ci_level : float

    Returns
    -------
    dict of numpy.ndarray, shape (K,)
        ``estimate, se, within, between, total, lambda, df, statistic, p, ci_low, ci_high, m``.
    """
    q = np.atleast_2d(np.asarray(estimates, dtype=np.float64))
    u = np.atleast_2d(np.asarray(ses, dtype=np.float64))
    ok = np.isfinite(q) & np.isfinite(u)
    m = ok.sum(axis=0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        qbar = np.where(ok, q, 0.0).sum(axis=0) / m
        W = np.where(ok, u * u, 0.0).sum(axis=0) / m
        B = np.where(ok, (q - qbar) ** 2, 0.0).sum(axis=0) / (m - 1)
        T = W + (1 + 1 / m) * B
        lam = (1 + 1 / m) * B / T
        nu_com = np.broadcast_to(np.asarray(df_complete, dtype=np.float64), qbar.shape)
        nu_old = np.where(lam > 0, (m - 1) / lam**2, np.inf)
        nu_obs = np.where(np.isfinite(nu_com), (nu_com + 1) / (nu_com + 3) * nu_com * (1 - lam), np.inf)
        nu = np.where(np.isinf(nu_old), nu_obs, np.where(np.isinf(nu_obs), nu_old, nu_old * nu_obs / (nu_old + nu_obs)))
        se = np.sqrt(T)
        t = qbar / se
        p = 2 * stats.t.sf(np.abs(t), nu)
        crit = stats.t.ppf(0.5 + ci_level / 2, nu)
    bad = m < 2
    res = {"estimate": qbar, "se": se, "within": W, "between": B, "total": T, "lambda": lam, "df": nu,
           "statistic": t, "p": p, "ci_low": qbar - crit * se, "ci_high": qbar + crit * se}  # fmt: skip
    out = {k: np.where(bad, np.nan, v) for k, v in res.items()}
    out["m"] = m
    return out
