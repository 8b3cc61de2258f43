"""One unit of work of the power analysis: simulate replicates of one design and analyse them.

**Drawing a replicate** (:func:`draw_replicate`). Participants come in group order (as in
``analysis.simulate``); replicate ``i`` of a design with group sizes ``n`` uses
``default_rng(SeedSequence(seed, spawn_key=(*n, i)))``, so it is the same in any chunk, on any worker.
For participant j of group g and action a (cells of :class:`analysis.power_spec.PowerModel`)::

    engaged_ja ~ Bernoulli(engage[a, g])
    y_ja       ~ Beta(m phi, (1 - m) phi)  or  a draw from the pool   (clipped to [1e-4, 1])
    percent_time_ja = 100 * engaged_ja * y_ja

With machine-coding error (``model.agreement``) the *frame model* replaces the last line: the
recording has ``F_j = max(1, round(observed_s_j * fps))`` frames (observed_s drawn from the pool),
the reference coder marks ``k = engaged * clip(round(y F), 1, F)`` of them, and the machine marks each
of those with probability tpr and each other frame with probability fpr, independently::

    machine_on = Binomial(k, tpr) + Binomial(F - k, fpr),   percent_time = 100 * machine_on / F

(frames independent given the truth: real errors come in runs, which this ignores; docs/power.md).

**Analysing it.** ``engine="full"`` runs :func:`analysis.hurdle.hurdle_analysis` on the replicate's
cohort table (with the analysis's covariates resampled with their participants). ``engine="fast"``
gives the same p-values without pandas or statsmodels wherever the fits have a closed form: with
groups only, both hurdle models are saturated, so

- engagement (logistic ML, no separation): ``beta_g = logit(k_g / n_g)`` and the inverse information
  is diagonal in the group means, so the Wald z of a vs b is
  ``(logit p_a - logit p_b) / sqrt(1/(n_a p_a (1-p_a)) + 1/(n_b p_b (1-p_b)))``;
- intensity (fractional logit): the quasi-ML means are the group means ``mu_g`` of the engagers'
  fractions, the GLM hat values are ``1/m_g`` (m_g engagers), so the sandwich's contrast variance is
  ``sum_{g in a,b} c_g RSS_g / (m_g mu_g (1 - mu_g))^2`` with ``c_g = n/(n-1)`` (HC0 x n/(n-1), n
  engagers in the model), ``1/(1 - 1/m_g)`` (HC2) or its square (HC3), and a z or t(n - k) reference;
- the resampling tests call :func:`analysis.intensity_tests.permutation_pvalues` /
  :func:`~analysis.intensity_tests.wild_score_pvalues` on the engagers' model matrix, as the analysis does;
- everything else (separation -> Firth, a diverging coefficient, ``firth="always"``) goes to the real
  :func:`analysis.hurdle.probability_part` / :func:`~analysis.hurdle.intensity_part` for that replicate
  and action;

then the p-values are adjusted over the configured family as :func:`analysis.correction.adjust_pvalues`
does (per family, untested rows left out; :func:`adjusted` says why the formulas are written out). ``tests/test_power.py`` checks that both
engines give the same p-values. Confidence intervals are not needed, so Firth contrasts use Wald
intervals (``firth_ci`` does not change a p-value).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import special, stats

from .config import HurdleConfig
from .contrasts import contrast_label, pairs
from .correction import FAMILY_KEYS
from .design import Design
from .intensity_tests import INTENSITY_METHODS, permutation_pvalues, wild_score_pvalues
from .power_spec import PowerModel

__all__ = ["PARTS", "Task", "analysis_tests", "family_index", "draw_replicate", "analyse_fast", "analyse_full",
           "adjusted", "adjust", "run_task"]  # fmt: skip

PARTS: tuple[str, str] = ("probability", "intensity")
_RUNAWAY = 15.0  # as analysis.logistic / analysis.fractional: |log odds ratio| beyond this is diverging
_AT_MAX = 1.0  # fraction 1 = 100 % of the time


@dataclass(frozen=True)
class Task:
    """Replicates ``start`` .. ``stop - 1`` of one design (group sizes ``sizes``)."""

    model: PowerModel
    config: HurdleConfig
    sizes: tuple[int, ...]
    start: int
    stop: int
    seed: int
    alpha: float
    fps: float
    engine: str  # "fast" | "full"


def analysis_tests(model: PowerModel) -> pd.DataFrame:
    """The tests of one analysis in a fixed order: action, part, contrast, group_a, group_b, null."""
    rows = []
    idx = {g: j for j, g in enumerate(model.groups)}
    for i, a in enumerate(model.actions):
        for part in PARTS:
            for ga, gb in pairs(model.groups):
                rows.append({"action": a, "part": part, "contrast": contrast_label(ga, gb), "group_a": ga,
                             "group_b": gb, "null": model.is_null(i, idx[ga], idx[gb], part)})  # fmt: skip
    return pd.DataFrame(rows)


def family_index(keys: pd.DataFrame, family: str) -> list[tuple[str, np.ndarray]]:
    """(family name, positions of its tests) for ``HurdleConfig.family`` (as analysis.correction)."""
    key = FAMILY_KEYS[family]
    if key is None:
        return [("all", np.arange(len(keys)))]
    return [(str(k), np.asarray(v)) for k, v in keys.groupby(key, sort=False).indices.items()]


def adjusted(p: np.ndarray, method: str) -> np.ndarray:
    """Adjusted p-values of one family (finite ``p`` only), the definitions of statsmodels' ``multipletests``.

    Written out because ``multipletests`` runs ``gc.collect()`` on every call (statsmodels 0.15), about
    0.3 s in a process holding a simulation, which a power loop calls 10^4 times; tests/test_power.py
    checks these against it. With ``p_(1) <= ... <= p_(m)``: Bonferroni ``m p``; Holm
    ``max_{j <= i} (m - j + 1) p_(j)``; Benjamini-Hochberg ``min_{j >= i} m p_(j) / j`` (Benjamini-Yekutieli:
    times ``sum_{k <= m} 1/k``); all capped at 1.
    """
    m = p.size
    if method == "bonferroni":
        return np.minimum(p * m, 1.0)
    order = np.argsort(p, kind="mergesort")
    ps = p[order]
    j = np.arange(1, m + 1)
    if method == "holm":
        adj = np.maximum.accumulate((m - j + 1) * ps)
    elif method in ("fdr_bh", "fdr_by"):
        scale = float(np.sum(1.0 / j)) if method == "fdr_by" else 1.0
        adj = np.minimum.accumulate((m * scale * ps / j)[::-1])[::-1]
    else:
        raise ValueError(f"unknown correction {method!r}")
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    return out


def adjust(P: np.ndarray, families: list[tuple[str, np.ndarray]], correction: str) -> np.ndarray:
    """Adjusted p-values of replicates ``P`` (R, T), per family as :func:`analysis.correction.adjust_pvalues`."""
    if correction == "none":
        return P.copy()
    out = np.full_like(P, np.nan)
    for r in range(P.shape[0]):
        for _, idx in families:
            vals = P[r, idx]
            ok = np.isfinite(vals)
            if ok.any():
                out[r, idx[ok]] = adjusted(vals[ok], correction)
    return out


# --------------------------------------------------------------------------------------------------
# drawing
# --------------------------------------------------------------------------------------------------


def _rng(seed: int, sizes: tuple[int, ...], i: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(*sizes, i)))


def draw_replicate(model: PowerModel, sizes: tuple[int, ...], seed: int, i: int, fps: float = 30.0
                   ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:  # fmt: skip
    """Replicate ``i``: percent time (A, n), observed seconds (n,) and covariate columns (module docstring)."""
    rng = _rng(seed, sizes, i)
    n = int(sum(sizes))
    pool = np.asarray(model.observed_s, dtype=np.float64)
    observed = pool[rng.integers(0, pool.size, n)] if pool.size > 1 else np.full(n, pool[0])
    covs: dict[str, np.ndarray] = {}
    if model.covariates:
        picked = []
        for g, ng in zip(model.groups, sizes):
            rows = model.covariate_rows[g]
            picked += [rows[k] for k in rng.integers(0, len(rows), ng)]
        for c, col in zip(model.covariates, zip(*picked)):
            covs[c] = np.asarray(col)
    frames = np.maximum(1, np.rint(observed * fps)).astype(np.int64)
    pct = np.empty((len(model.actions), n))
    for a, row in enumerate(model.cells):
        lo = 0
        for cell, ng in zip(row, sizes):
            engaged = rng.random(ng) < cell.engage
            if cell.shares:
                y = np.asarray(cell.shares)[rng.integers(0, len(cell.shares), ng)]
            else:
                y = rng.beta(cell.mean_share * cell.precision, (1 - cell.mean_share) * cell.precision, ng)
            y = np.clip(y, 1e-4, 1.0)
            if model.agreement is None:
                pct[a, lo : lo + ng] = np.where(engaged, 100.0 * y, 0.0)
            else:
                tpr, fpr = model.agreement[a]
                F = frames[lo : lo + ng]
                k = np.where(engaged, np.clip(np.rint(y * F), 1, F), 0).astype(np.int64)
                on = rng.binomial(k, tpr) + rng.binomial(F - k, fpr)
                pct[a, lo : lo + ng] = 100.0 * on / F
            lo += ng
    return pct, observed, covs


# --------------------------------------------------------------------------------------------------
# analysis: fast engine
# --------------------------------------------------------------------------------------------------


def _models(groups: tuple[str, ...], config: HurdleConfig) -> list[tuple[list[int], list[tuple[int, int, int]]]]:
    """(group indices of a model, its pairs as (contrast index, a, b)): one joint model or one per pair."""
    prs = [(c, groups.index(a), groups.index(b)) for c, (a, b) in enumerate(pairs(groups))]
    if not config.pairwise_subsets:
        return [(list(range(len(groups))), prs)]
    return [([a, b], [(c, a, b)]) for c, a, b in prs]


def _real_part(pct: np.ndarray, gidx: np.ndarray, groups: tuple[str, ...], config: HurdleConfig, part: str) -> np.ndarray:
    """p of every contrast of one replicate and action from the real analysis function (contrast order)."""
    from .hurdle import intensity_part, probability_part

    data = pd.DataFrame({"participant_id": np.arange(pct.size).astype(str), "group": np.asarray(groups)[gidx],
                         "percent_time": pct})  # fmt: skip
    fn = probability_part if part == "probability" else intensity_part
    res = fn(data, config)
    labels = [contrast_label(a, b) for a, b in pairs(groups)]
    p = res.set_index("contrast").reindex(labels)["p"] if "p" in res else pd.Series(np.nan, index=labels)
    return p.to_numpy(dtype=np.float64)


def _probability(PCT: np.ndarray, gidx: np.ndarray, sizes: np.ndarray, groups, config, P: np.ndarray) -> None:
    """Fill P[:, a, 0, c] (engagement p-values) for a batch PCT (R, A, n)."""
    G = len(groups)
    E = PCT > 0
    k = np.stack([E[..., gidx == g].sum(axis=-1) for g in range(G)], axis=-1).astype(np.float64)  # (R, A, G)
    n = sizes.astype(np.float64)
    for members, prs in _models(groups, config):
        km, nm = k[..., members], n[members]
        sep = np.any((km == 0) | (km == nm), axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ph = k / n
            lg = special.logit(ph)
            var = 1.0 / (n * ph * (1 - ph))
            run = np.any(np.abs(lg[..., members] - lg[..., members[:1]]) > _RUNAWAY, axis=-1)
        slow = sep | run | (config.firth == "always")
        for c, a, b in prs:
            with np.errstate(divide="ignore", invalid="ignore"):
                z = (lg[..., a] - lg[..., b]) / np.sqrt(var[..., a] + var[..., b])
            P[..., 0, c] = np.where(slow, np.nan, 2 * stats.norm.sf(np.abs(z)))
        for r, a_ in zip(*np.nonzero(slow)):
            p = _real_part(PCT[r, a_], gidx, groups, config, "probability")
            for c, _, _ in prs:
                P[r, a_, 0, c] = p[c]


def _intensity(PCT: np.ndarray, gidx: np.ndarray, groups, config, P: np.ndarray) -> None:
    """Fill P[:, a, 1, c] (intensity p-values) for a batch PCT (R, A, n)."""
    G = len(groups)
    Y = PCT / 100.0
    E = Y > 0
    masks = [gidx == g for g in range(G)]
    m = np.stack([E[..., mk].sum(axis=-1) for mk in masks], axis=-1).astype(np.float64)  # (R, A, G)
    s1 = np.stack([np.where(E[..., mk], Y[..., mk], 0).sum(axis=-1) for mk in masks], axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = s1 / m
    rss = np.stack([np.where(E[..., mk], (Y[..., mk] - mu[..., g : g + 1]) ** 2, 0).sum(axis=-1) for g, mk in enumerate(masks)], axis=-1)
    ymin = np.stack([np.where(E[..., mk], Y[..., mk], np.inf).min(axis=-1) for mk in masks], axis=-1)
    at_max = (m > 0) & (ymin >= _AT_MAX)
    ok_all = (m >= config.min_engaged) & ~at_max
    spec = INTENSITY_METHODS[config.intensity_se]
    with np.errstate(divide="ignore", invalid="ignore"):
        lg = special.logit(mu)
        w = mu * (1 - mu)
    for members, prs in _models(groups, config):
        ok = ok_all[..., members]
        n_ok = ok.sum(axis=-1)
        n_fit = np.where(ok, m[..., members], 0).sum(axis=-1)
        first = np.argmax(ok, axis=-1)  # the model's reference: first group in the model
        ref_lg = np.take_along_axis(lg[..., members], first[..., None], axis=-1)
        with np.errstate(invalid="ignore"):
            run = np.any(ok & (np.abs(lg[..., members] - ref_lg) > _RUNAWAY), axis=-1) & (n_ok >= 2)
        if spec is not None:
            kind, ref = spec
            if kind == "hc0n":
                cfac = np.broadcast_to((n_fit / (n_fit - 1))[..., None], m.shape)
            else:
                with np.errstate(divide="ignore", invalid="ignore"):
                    cfac = 1.0 / (1 - 1 / m) ** (1 if kind == "hc2" else 2)
            with np.errstate(divide="ignore", invalid="ignore"):
                var = cfac * rss / (m * w) ** 2
        for c, a, b in prs:
            tested = (n_ok >= 2) & ok_all[..., a] & ok_all[..., b] & (m[..., a] >= config.min_engaged_test) & (m[..., b] >= config.min_engaged_test) & ~run
            if spec is not None:
                with np.errstate(divide="ignore", invalid="ignore"):
                    se = np.sqrt(var[..., a] + var[..., b])
                    stat = (lg[..., a] - lg[..., b]) / se
                    if ref == "t":
                        p = 2 * stats.t.sf(np.abs(stat), n_fit - n_ok)
                    else:
                        p = 2 * stats.norm.sf(np.abs(stat))
                good = tested & np.isfinite(se) & (se > 0)
                P[..., 1, c] = np.where(good, p, np.nan)
            else:
                P[..., 1, c] = np.nan
                for r, a_ in zip(*np.nonzero(tested)):
                    P[r, a_, 1, c] = _resampling_p(Y[r, a_], gidx, groups, members, ok[r, a_], a, b, config)
        for r, a_ in zip(*np.nonzero(run)):
            p = _real_part(PCT[r, a_], gidx, groups, config, "intensity")
            for c, _, _ in prs:
                P[r, a_, 1, c] = p[c]


def _resampling_p(y: np.ndarray, gidx: np.ndarray, groups, members, ok, a: int, b: int, config: HurdleConfig) -> float:
    """The permutation / wild p of one contrast: the engagers of the model's usable groups, in cohort order."""
    kept = [g for g, good in zip(members, ok) if good]
    rows = (y > 0) & np.isin(gidx, kept)
    gi = gidx[rows]
    X = np.column_stack([np.ones(gi.size)] + [(gi == g).astype(np.float64) for g in kept[1:]])
    names = [groups[g] for g in kept]
    design = Design(X=X, names=["Intercept"] + [f"group[{g}]" for g in names[1:]], groups=names,
                    group_col={g: (None if j == 0 else j) for j, g in enumerate(names)},
                    group=np.asarray(groups)[gi], dropped=[])  # fmt: skip
    yy = y[rows][None, :]
    if config.intensity_se == "permutation":
        return float(permutation_pvalues(design, yy, groups[a], groups[b], resamples=config.intensity_resamples,
                                         seed=config.intensity_seed)[0])  # fmt: skip
    L = design.contrast_vector(groups[a], groups[b])
    return float(wild_score_pvalues(X, yy, L, resamples=config.intensity_resamples, seed=config.intensity_seed)[0])


def analyse_fast(PCT: np.ndarray, sizes: tuple[int, ...], model: PowerModel, config: HurdleConfig) -> np.ndarray:
    """Raw p-values (R, T) of replicates PCT (R, A, n), tests in :func:`analysis_tests` order (groups only)."""
    R, A, _ = PCT.shape
    C = len(pairs(model.groups))
    gidx = np.repeat(np.arange(len(sizes)), sizes)
    P = np.full((R, A, 2, C), np.nan)
    _probability(PCT, gidx, np.asarray(sizes), model.groups, config, P)
    _intensity(PCT, gidx, model.groups, config, P)
    return P.reshape(R, A * 2 * C)


# --------------------------------------------------------------------------------------------------
# analysis: full engine
# --------------------------------------------------------------------------------------------------


def replicate_cohort(pct: np.ndarray, observed: np.ndarray, covs: dict, sizes: tuple[int, ...], model: PowerModel) -> pd.DataFrame:
    """The replicate as a cohort table (participant-major rows, as analysis.simulate writes them)."""
    A, n = pct.shape
    groups = np.repeat(np.asarray(model.groups), sizes)
    return pd.DataFrame({
        "participant_id": np.repeat(np.array([f"P{j:05d}" for j in range(n)]), A),
        "group": np.repeat(groups, A),
        "action_id": np.tile(np.arange(A), n).astype(np.int16),
        "action": np.tile(np.asarray(model.actions), n),
        "percent_time": pct.T.ravel(),
        "observed_s": np.repeat(observed, A),
        **{c: np.repeat(v, A) for c, v in covs.items()},
    })  # fmt: skip


def analyse_full(cohort: pd.DataFrame, model: PowerModel, config: HurdleConfig) -> tuple[np.ndarray, np.ndarray]:
    """(p, p_adj), each (T,), of :func:`analysis.hurdle.hurdle_analysis` on one replicate's cohort."""
    from .hurdle import hurdle_analysis

    res = hurdle_analysis(cohort, config, validate=False)
    keys = analysis_tests(model)
    res = res.set_index(["action", "part", "contrast"]).reindex(pd.MultiIndex.from_frame(keys[["action", "part", "contrast"]]))
    return res["p"].to_numpy(dtype=np.float64), res["p_adj"].to_numpy(dtype=np.float64)


# --------------------------------------------------------------------------------------------------
# one task
# --------------------------------------------------------------------------------------------------


def analysis_config(model: PowerModel, config: HurdleConfig) -> HurdleConfig:
    """The analysis as run on every replicate: the model's actions, no re-selection, Wald CIs for Firth."""
    return replace(config, groups=model.groups, actions=model.actions, top_actions=None, firth_ci="wald",
                   percent_scale="percent")  # fmt: skip


def run_task(task: Task) -> dict[str, np.ndarray]:
    """Simulate and analyse replicates ``task.start .. task.stop - 1``; counts for the power tables.

    Returns
    -------
    dict of numpy.ndarray
        ``reject`` (T,) replicates with adjusted p < alpha per test; ``reject_raw`` (T,) raw p < alpha;
        ``tested`` (T,) replicates with a p; ``fam_any_null`` (F,) replicates with at least one
        rejected true null in the family; ``fam_any`` (F,) with any rejection; ``fam_fdp`` (F,) sum of
        false-discovery proportions; ``fam_rejections`` (F,) sum of rejections; ``nsim`` (1,).
    """
    model, sizes = task.model, task.sizes
    cfg = analysis_config(model, task.config)
    keys = analysis_tests(model)
    fams = family_index(keys, cfg.family)
    draws = [draw_replicate(model, sizes, task.seed, i, task.fps) for i in range(task.start, task.stop)]
    if task.engine == "full":
        pairs_ = [analyse_full(replicate_cohort(pct, obs, covs, sizes, model), model, cfg) for pct, obs, covs in draws]
        P = np.stack([p for p, _ in pairs_])
        Padj = np.stack([q for _, q in pairs_])
    else:
        P = analyse_fast(np.stack([d[0] for d in draws]), sizes, model, cfg)
        Padj = adjust(P, fams, cfg.correction)
    rej = np.nan_to_num(Padj, nan=1.0) < task.alpha
    null = keys["null"].to_numpy()
    fam_any_null, fam_any, fam_fdp, fam_rej = [], [], [], []
    for _, idx in fams:
        r_all = rej[:, idx].sum(axis=1)
        v = (rej[:, idx] & null[idx]).sum(axis=1)
        fam_any_null.append(int((v > 0).sum()))
        fam_any.append(int((r_all > 0).sum()))
        fam_fdp.append(float(np.sum(v / np.maximum(r_all, 1))))
        fam_rej.append(int(r_all.sum()))
    return {
        "reject": rej.sum(axis=0).astype(np.int64),
        "reject_raw": (np.nan_to_num(P, nan=1.0) < task.alpha).sum(axis=0).astype(np.int64),
        "tested": np.isfinite(P).sum(axis=0).astype(np.int64),
        "fam_any_null": np.asarray(fam_any_null, dtype=np.int64),
        "fam_any": np.asarray(fam_any, dtype=np.int64),
        "fam_fdp": np.asarray(fam_fdp, dtype=np.float64),
        "fam_rejections": np.asarray(fam_rej, dtype=np.int64),
        "nsim": np.asarray([task.stop - task.start], dtype=np.int64),
    }
