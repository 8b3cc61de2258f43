"""Tests of intensity contrasts among engagers: the methods of ``HurdleConfig.intensity_se``.

A contrast is ``theta = L beta`` of a fractional-logit fit (:mod:`analysis.fractional`): the log odds
ratio of the mean fraction of time, group a relative to group b. The methods (calibrated against each
other in ``bench/bench_hurdle_calibration.py``; the table and the choice of the default are in
docs/hurdle.md):

``"hc0-z"``
    Wald ``z = theta / se`` with the HC0 x n/(n-1) sandwich and a normal reference: the only method
    before issue 28 (Stata's ``fracreg logit``).
``"hc0-t"``, ``"hc2-z"``, ``"hc2-t"``, ``"hc3-z"``, ``"hc3-t"``
    The HC0 x n/(n-1), HC2 or HC3 sandwich (HC2/HC3 with the GLM hat values) and a normal (``-z``) or
    Student t reference with ``n - p`` degrees of freedom (``-t``; n engagers in the model, p columns).
``"wild"``
    Wild score bootstrap (Kline & Santos 2012) with Rademacher weights. The model is refitted once
    under ``L beta = 0`` (in the null space of L); with its residuals ``e_i = y_i - mu0_i`` and
    ``a_i = L B0^{-1} x_i e_i`` (``B0 = X' diag(mu0 (1 - mu0)) X``) the robust score statistic is
    ``T = sum a_i / sqrt(sum a_i^2)``; a draw is ``T*_b = sum v_bi a_i / sqrt(sum a_i^2)``,
    ``v_bi = +-1`` (Rademacher: ``v^2 = 1`` leaves the denominator unchanged), so no draw refits.
    ``p = (1 + #{b: |T*_b| >= |T|}) / (B + 1)``. Score rather than residual resampling: ``mu0 + v e``
    would leave the unit interval.
``"permutation"``
    The labels a and b are permuted among the two groups' engagers (other groups, and every covariate
    value, stay with their participants) and the same robust score statistic T is recomputed. The fit
    under ``L beta = 0`` does not tell a from b, so it is the same for every relabelling and no draw is
    refitted (:func:`permutation_pvalues`). The test is exact when the two groups' fractions are
    exchangeable (no covariates, the same distribution), and the studentised statistic keeps it
    asymptotically valid when only the means are equal (Janssen 1997; Chung & Romano 2013); only
    asymptotically: with skewed shares and one group's spread a quarter of the others' it still
    over-rejects at 12-40 engagers (docs/hurdle.md).
    ``p = (1 + #{|T*| >= |T|}) / (B + 1)``.

The two resampling methods report the HC2 standard error with a t(n - p) interval next to their p.
Draws come from ``numpy.random.default_rng(seed)``, so a result repeats exactly.
"""

from __future__ import annotations

import numpy as np
from scipy import special, stats

from .contrasts import wald_contrast
from .design import Design
from .fractional import FractionalFit, fit_fractional_batch, robust_sandwich

__all__ = [
    "INTENSITY_METHODS",
    "sandwich_of",
    "method_label",
    "describe",
    "analytic_tests",
    "score_statistic",
    "wild_score_pvalues",
    "permutation_pvalues",
    "contrast_test",
]

# name -> (sandwich kind, reference) for the analytic methods; None for resampling.
INTENSITY_METHODS: dict[str, tuple[str, str] | None] = {
    "hc0-z": ("hc0n", "z"),
    "hc0-t": ("hc0n", "t"),
    "hc2-z": ("hc2", "z"),
    "hc2-t": ("hc2", "t"),
    "hc3-z": ("hc3", "z"),
    "hc3-t": ("hc3", "t"),
    "wild": None,
    "permutation": None,
}

_KIND_TEXT = {"hc0n": "HC0 x n/(n-1)", "hc2": "HC2", "hc3": "HC3"}


def sandwich_of(method: str) -> str:
    """The sandwich kind a method's standard error uses (HC2 for the resampling methods)."""
    spec = INTENSITY_METHODS[method]
    return spec[0] if spec is not None else "hc2"


def method_label(method: str, resamples: int = 1999) -> str:
    """The ``method`` column of an intensity row, e.g. ``fractional logit (Bernoulli QML, robust SE HC2, t(n-p))``."""
    spec = INTENSITY_METHODS[method]
    if spec is not None:
        kind, ref = spec
        return f"fractional logit (Bernoulli QML, robust SE {_KIND_TEXT[kind]}" + (", t(n-p))" if ref == "t" else ")")
    what = "wild score bootstrap" if method == "wild" else "permutation of group labels among engagers"
    return f"fractional logit (Bernoulli QML, {what}, {resamples} draws)"


def describe(method: str, resamples: int = 1999, seed: int = 0) -> str:
    """A method in words for a Methods section, e.g. for ``"hc2-t"``: "Wald tests with HC2 robust
    (sandwich) standard errors and a t reference with n - p degrees of freedom"."""
    spec = INTENSITY_METHODS[method]
    if spec is not None:
        kind, ref = spec
        ref_text = "a t reference with n - p degrees of freedom" if ref == "t" else "a normal reference"
        return f"Wald tests with {_KIND_TEXT[kind]} robust (sandwich) standard errors and {ref_text}"
    if method == "wild":
        return (f"a wild score bootstrap of the robust score statistic (Rademacher weights, {resamples} draws, "
                f"seed {seed}; HC2 standard errors and t(n - p) intervals)")  # fmt: skip
    return (f"a permutation test of the group labels among the two groups' engagers, on the robust score "
            f"statistic ({resamples} draws, seed {seed}; HC2 standard errors and t(n - p) intervals)")  # fmt: skip


def analytic_tests(X: np.ndarray, Y: np.ndarray, params: np.ndarray, L: np.ndarray, method: str) -> dict[str, np.ndarray]:
    """Wald tests of ``L beta = 0`` for a batch of fits on one model matrix.

    Parameters
    ----------
    X : numpy.ndarray, shape (n, p)
    Y : numpy.ndarray, shape (B, n)
    params : numpy.ndarray, shape (B, p)
    L : numpy.ndarray, shape (p,)
    method : str
        An analytic key of :data:`INTENSITY_METHODS`.

    Returns
    -------
    dict of numpy.ndarray, shape (B,)
        ``estimate``, ``se``, ``statistic`` and two-sided ``p``; ``df`` (a float, inf for z).
    """
    kind, ref = INTENSITY_METHODS[method]  # type: ignore[misc]
    V = robust_sandwich(X, Y, params, kind=kind)
    est = params @ L
    var = np.einsum("j,...jk,k->...", L, V, L)
    with np.errstate(invalid="ignore", divide="ignore"):
        se = np.where(var > 0, np.sqrt(np.where(var > 0, var, 1.0)), np.nan)
        stat = est / se
    df = float(X.shape[0] - X.shape[1]) if ref == "t" else np.inf
    p = 2 * (stats.t.sf(np.abs(stat), df) if np.isfinite(df) else stats.norm.sf(np.abs(stat)))
    return {"estimate": est, "se": se, "statistic": stat, "p": p, "df": df}


def _resample_p(observed: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """``(1 + #{|draw| >= |observed|}) / (B + 1)`` per row; a non-finite draw counts as extreme.

    Draws equal to the observed statistic up to rounding (relative 1e-9) count as ties, hence as
    extreme: equivalent relabellings and sign vectors (e.g. flipping every sign) give the same
    statistic by algebra but not always to the last bit.
    """
    obs = np.abs(observed)[..., None] * (1 - 1e-9)
    with np.errstate(invalid="ignore"):
        extreme = ~(np.abs(draws) < obs)
    p = (1.0 + extreme.sum(axis=-1)) / (draws.shape[-1] + 1.0)
    return np.where(np.isfinite(observed), p, np.nan)


def score_statistic(X: np.ndarray, Y: np.ndarray, L: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The robust score statistic of ``L beta = 0`` (module docstring), for a batch of outcome vectors.

    Returns
    -------
    T : numpy.ndarray, shape (B,)
        ``sum a_i / sqrt(sum a_i^2)``.
    a : numpy.ndarray, shape (B, n)
        ``a_i = L B0^{-1} x_i e_i``, each observation's share of the restricted score.
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.atleast_2d(np.asarray(Y, dtype=np.float64))
    _, mu0, w0 = _restricted(X, Y, L)
    B0_inv = np.linalg.inv(np.einsum("bi,ij,ik->bjk", w0, X, X))
    c = np.einsum("j,bjk->bk", L, B0_inv)  # L B0^{-1}, (B, p)
    a = (c @ X.T) * (Y - mu0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return a.sum(axis=1) / np.sqrt(np.sum(a * a, axis=1)), a


def wild_score_pvalues(X: np.ndarray, Y: np.ndarray, L: np.ndarray, *, resamples: int = 1999, seed: int = 0) -> np.ndarray:
    """Wild (Rademacher) score-bootstrap p-values of ``L beta = 0`` (module docstring), for a batch.

    Parameters
    ----------
    X : numpy.ndarray, shape (n, p)
    Y : numpy.ndarray, shape (B, n)
    L : numpy.ndarray, shape (p,)
    resamples : int
        Draws B* of the sign vector (the same draws for every outcome vector of the batch).
    seed : int

    Returns
    -------
    numpy.ndarray, shape (B,)
    """
    t_obs, a = score_statistic(X, Y, L)
    scale = np.sqrt(np.sum(a * a, axis=1))
    v = np.random.default_rng(seed).choice(np.array([-1.0, 1.0]), size=(resamples, a.shape[1]))
    with np.errstate(invalid="ignore", divide="ignore"):
        t_draws = (a @ v.T) / scale[:, None]  # (B, B*)
    return _resample_p(t_obs, t_draws)


def _groups_only(design: Design) -> bool:
    return design.X.shape[1] == len(design.groups)


def _restricted(X: np.ndarray, Y: np.ndarray, L: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit under ``L beta = 0``: (restricted columns Z = X N, fitted means mu0 (B, n), weights w0 (B, n))."""
    N = np.linalg.svd(L[None, :])[2][1:].T  # orthonormal basis of the null space of L, (p, p - 1)
    Z = X @ N
    gamma, _ = fit_fractional_batch(Z, Y)
    mu0 = special.expit(gamma @ Z.T)
    return Z, mu0, mu0 * (1 - mu0)


def _relabellings(observed: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Indicators of label a on a pair's rows: the observed labelling, then ``resamples`` uniform draws
    (each row of ones and zeros shuffled by ``Generator.permuted``), shape (resamples + 1, m)."""
    observed = np.asarray(observed, dtype=bool)
    G = np.zeros((resamples + 1, observed.size))
    G[0] = observed
    G[1:, : int(observed.sum())] = 1.0
    np.random.default_rng(seed).permuted(G[1:], axis=1, out=G[1:])
    return G


def permutation_pvalues(design: Design, Y: np.ndarray, a: str, b: str, *, resamples: int = 1999, seed: int = 0) -> np.ndarray:
    """Permutation p-values of the contrast a vs b (module docstring), for a batch of outcome vectors.

    The statistic is the robust score statistic of the wild bootstrap, written with the indicator d of
    group a: ``T(d) = sum_i d_i e_i / sqrt(sum_i dt_i^2 e_i^2)``, ``dt = d - Z (Z' W0 Z)^{-1} Z' W0 d``
    (d's part not explained by the restricted model's columns Z; ``e``, ``W0`` from the fit under
    ``beta_a = beta_b``). Relabelling a and b among their engagers leaves that fit unchanged (it does
    not tell a from b), so a draw only changes d: no draw is refitted. In a groups-only model ``dt`` is
    ``d - n_a / (n_a + n_b)`` on the pair's rows and 0 elsewhere.

    Parameters
    ----------
    design : Design
        The engagers' model matrix (``design.group`` says which rows are a and b).
    Y : numpy.ndarray, shape (B, n)
    a, b : str
    resamples : int
        Random relabellings (the same for every outcome vector of the batch).
    seed : int

    Returns
    -------
    numpy.ndarray, shape (B,)
    """
    Y = np.atleast_2d(np.asarray(Y, dtype=np.float64))
    X = design.X
    rows = np.flatnonzero(np.isin(design.group, [a, b]))
    n_a = int(np.sum(design.group == a))
    G = _relabellings(design.group[rows] == a, resamples, seed)  # (draws + 1, m), row 0 observed
    Z, mu0, w0 = _restricted(X, Y, design.contrast_vector(a, b))
    E = Y - mu0
    if _groups_only(design):
        pi = n_a / rows.size
        Ep = E[:, rows]
        S = np.concatenate([Ep, Ep * Ep], axis=0) @ G.T  # sums over label a of e and e^2
        num, q = S[: len(Y)], S[len(Y) :]
        den = (1 - pi) ** 2 * q + pi**2 * ((Ep * Ep).sum(axis=1, keepdims=True) - q)
    else:
        # dt = d - Z u with u = (Z'W0Z)^{-1} Z'W0 d, so sum dt^2 e^2 = d'(e^2) - 2 u'Z'diag(e^2)d + u'Z'diag(e^2)Z u
        num, den = np.empty((len(Y), G.shape[0])), np.empty((len(Y), G.shape[0]))
        q = Z.shape[1]
        for r in range(Y.shape[0]):
            Zw = Z * w0[r][:, None]
            e2 = E[r] ** 2
            F = np.column_stack([E[r, rows], e2[rows], np.linalg.solve(Z.T @ Zw, Zw[rows].T).T, Z[rows] * e2[rows][:, None]])
            S = G @ F  # every sum over label a in one pass over the draws
            U, cross = S[:, 2 : 2 + q], S[:, 2 + q :]
            M = Z.T @ (Z * e2[:, None])
            num[r] = S[:, 0]
            den[r] = np.maximum(S[:, 1] - 2 * np.sum(U * cross, axis=1) + np.einsum("bj,jk,bk->b", U, M, U), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        T = num / np.sqrt(den)
    return _resample_p(T[:, 0], T[:, 1:])


def contrast_test(
    fit: FractionalFit, a: str, b: str, method: str, *, ci_level: float = 0.95, resamples: int = 1999, seed: int = 0
) -> dict[str, float | str]:
    """Estimate and test the intensity contrast a vs b of a fit by ``method``.

    ``fit.cov`` must be the sandwich :func:`sandwich_of` names for the method.

    Returns
    -------
    dict
        ``estimate``, ``se``, ``ci_low``, ``ci_high`` (log odds ratio scale), ``statistic``, ``p``,
        ``test`` (in words) and ``ci`` (``"wald"`` or ``"wald-t"``). For the resampling methods
        ``statistic`` is the robust score statistic T and ``se``/CI are HC2 with a t(n - p) interval.
    """
    D = fit.design
    L = D.contrast_vector(a, b)
    n, k = D.X.shape
    spec = INTENSITY_METHODS[method]
    ref = spec[1] if spec is not None else "t"
    out: dict[str, float | str] = dict(wald_contrast(fit.params, fit.cov, L, ci_level))
    kind_text = _KIND_TEXT[fit.sandwich]
    if ref == "t":
        q = float(stats.t.ppf(0.5 + ci_level / 2, n - k))
        est, se = float(out["estimate"]), float(out["se"])
        out.update(ci_low=est - q * se, ci_high=est + q * se, ci="wald-t")
        out["p"] = float(2 * stats.t.sf(abs(float(out["statistic"])), n - k)) if np.isfinite(out["statistic"]) else float("nan")
        out["test"] = f"Wald t ({kind_text}, {n - k} df)"
    else:
        out["ci"] = "wald"
        out["test"] = "Wald z (robust)" if method == "hc0-z" else f"Wald z ({kind_text})"
    if spec is None:
        # the statistic column holds the robust score statistic T that was resampled
        out["statistic"] = float(score_statistic(D.X, fit.y[None, :], L)[0][0])
    if method == "wild":
        out["p"] = float(wild_score_pvalues(D.X, fit.y[None, :], L, resamples=resamples, seed=seed)[0])
        out["test"] = f"wild score bootstrap ({resamples} Rademacher draws, robust score statistic)"
    elif method == "permutation":
        out["p"] = float(permutation_pvalues(D, fit.y[None, :], a, b, resamples=resamples, seed=seed)[0])
        out["test"] = f"permutation ({resamples} draws, robust score statistic)"
    return out
