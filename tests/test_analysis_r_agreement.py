"""Agreement with R: the intensity estimates and sandwich SEs against ``sandwich::vcovHC`` on a
quasi-binomial ``glm``, and the resampling tests against an R implementation written from their
definitions (restricted fit by merging the two groups, full-model information per draw, R's RNG).

Needs ``Rscript`` with the ``sandwich`` package (Debian: r-base-core, r-cran-sandwich; ``.ci/run``
installs them when root); skipped with that reason otherwise.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from analysis.config import HurdleConfig
from analysis.design import build_design
from analysis.fractional import fit_fractional
from analysis.hurdle import intensity_part
from analysis.intensity_tests import permutation_pvalues, score_statistic, wild_score_pvalues

GROUPS = ["ASD", "PSY", "TDC"]


def _r_available() -> str | None:
    if shutil.which("Rscript") is None:
        return "Rscript not installed (Debian: apt-get install r-base-core r-cran-sandwich)"
    rc = subprocess.run(["Rscript", "-e", "library(sandwich)"], capture_output=True).returncode
    return None if rc == 0 else "R package sandwich not installed (Debian: r-cran-sandwich)"


_REASON = _r_available()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


def _rscript(code: str, tmp_path, name: str) -> dict:
    script = tmp_path / f"{name}.R"
    script.write_text(code, encoding="utf-8")
    out = subprocess.run(["Rscript", str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads((tmp_path / f"{name}.json").read_text())


def _data(seed, sizes=(30, 12, 26), covariate=True):
    rng = np.random.default_rng(seed)
    g = np.repeat(GROUPS, sizes)
    y = np.maximum(np.round(rng.beta(0.5, 6.0, g.size) * 900), 30) / 900
    d = pd.DataFrame({"participant_id": [f"p{i}" for i in range(g.size)], "group": g, "percent_time": 100 * y})
    if covariate:
        d["age"] = np.round(rng.uniform(5, 50, g.size), 1)
    return d


_R_VCOV = r"""
library(sandwich)
d <- read.csv("{csv}")
d$group <- factor(d$group, levels = c("ASD", "PSY", "TDC"))
d$y <- d$percent_time / 100
m <- glm(y ~ group + age, family = quasibinomial(), data = d, control = glm.control(epsilon = 1e-15, maxit = 200))
out <- list(coef = unname(coef(m)), n = nrow(d))
for (type in c("HC0", "HC2", "HC3")) out[[type]] <- unname(as.vector(vcovHC(m, type = type)))
fields <- sprintf('"%s": [%s]', names(out), sapply(out, function(v) paste(sprintf("%.17g", v), collapse = ",")))
writeLines(paste0("{{", paste(fields, collapse = ","), "}}"), "{json}")
"""


def test_estimates_and_sandwich_kinds_equal_r_vcovhc(tmp_path):
    d = _data(1)
    d.to_csv(tmp_path / "d.csv", index=False)
    r = _rscript(_R_VCOV.format(csv=tmp_path / "d.csv", json=tmp_path / "vcov.json"), tmp_path, "vcov")
    design = build_design(d, GROUPS, ["age"])
    y = d["percent_time"].to_numpy() / 100
    k = design.X.shape[1]
    n = len(y)
    for ours, theirs in (("hc0", "HC0"), ("hc2", "HC2"), ("hc3", "HC3")):
        fit = fit_fractional(design, y, sandwich=ours)
        np.testing.assert_allclose(fit.params, r["coef"], rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(fit.cov, np.reshape(r[theirs], (k, k)), rtol=1e-7)
    np.testing.assert_allclose(fit_fractional(design, y, sandwich="hc0n").cov, np.reshape(r["HC0"], (k, k)) * n / (n - 1), rtol=1e-7)


def test_default_rows_equal_r(tmp_path):
    """The default's reported numbers (estimate, HC2 SE, t(n-p) interval) equal R's for every contrast."""
    from scipy import stats

    d = _data(2)
    d.to_csv(tmp_path / "d.csv", index=False)
    r = _rscript(_R_VCOV.format(csv=tmp_path / "d.csv", json=tmp_path / "vcov.json"), tmp_path, "vcov")
    cfg = HurdleConfig(covariates=("age",))
    res = intensity_part(d, cfg)
    design = build_design(d, GROUPS, ["age"])
    b = np.asarray(r["coef"])
    V = np.reshape(r["HC2"], (4, 4))
    q = stats.t.ppf(0.975, len(d) - 4)
    assert cfg.intensity_se == "permutation"  # the default the study chose; its SE is HC2 with a t interval
    for row in res.itertuples():
        L = design.contrast_vector(row.group_a, row.group_b)
        est, se = L @ b, np.sqrt(L @ V @ L)
        assert row.estimate == pytest.approx(est, rel=1e-8)
        assert row.se == pytest.approx(se, rel=1e-7)
        assert row.ci_low == pytest.approx(np.exp(est - q * se), rel=1e-7)
        assert row.ci_high == pytest.approx(np.exp(est + q * se), rel=1e-7)


_R_RESAMPLE = r"""
d <- read.csv("{csv}")
B <- {B}
set.seed(20281)
res <- c()
for (s in unique(d$dataset)) {{
  x <- d[d$dataset == s, ]
  x$y <- x$percent_time / 100
  cov <- {cov}
  X <- model.matrix(if (cov) ~ factor(group, levels = c("ASD", "PSY", "TDC")) + age else ~ factor(group, levels = c("ASD", "PSY", "TDC")), x)
  merged <- ifelse(x$group == "TDC", "PSY", x$group)  # contrast PSY vs TDC: merge them
  Z <- model.matrix(if (cov) ~ factor(merged) + age else ~ factor(merged), x)
  m0 <- glm.fit(Z, x$y, family = quasibinomial(), control = glm.control(epsilon = 1e-15, maxit = 200))
  mu0 <- m0$fitted.values; e <- x$y - mu0; w <- mu0 * (1 - mu0)
  L <- c(0, 1, -1, if (cov) 0)
  stat <- function(Xd) {{ a <- as.vector(L %*% solve(t(Xd * w) %*% Xd) %*% t(Xd)) * e; sum(a) / sqrt(sum(a^2)) }}
  t_obs <- stat(X)
  a <- as.vector(L %*% solve(t(X * w) %*% X) %*% t(X)) * e
  wild <- replicate(B, {{ v <- sample(c(-1, 1), length(e), replace = TRUE); sum(v * a) / sqrt(sum(a^2)) }})
  pair <- which(x$group %in% c("PSY", "TDC")); n_psy <- sum(x$group == "PSY")
  perm <- replicate(B, {{
    Xp <- X; lab <- rep(0, length(pair)); lab[sample(length(pair), n_psy)] <- 1
    Xp[pair, 2] <- 0; Xp[pair, 3] <- 1 - lab; Xp[pair[lab == 1], 2] <- 1
    stat(Xp)
  }})
  tol <- abs(t_obs) * (1 - 1e-9)
  res <- rbind(res, c(s, t_obs, (1 + sum(abs(wild) >= tol)) / (B + 1), (1 + sum(abs(perm) >= tol)) / (B + 1)))
}}
writeLines(paste0("[", paste(apply(res, 1, function(r) paste0("[", paste(sprintf("%.17g", r), collapse = ","), "]")), collapse = ","), "]"), "{json}")
"""


@pytest.mark.parametrize("covariate", [False, True])
def test_resampling_decisions_agree_with_r_across_a_grid(tmp_path, covariate):
    """24 datasets (5-40 engagers per group, skewed, frame-quantised; half with an effect): the observed
    statistic equals R's to 1e-8, the p-values agree within Monte-Carlo error and so do the decisions
    at 0.05 wherever the two p-values are not both within that error of 0.05."""
    B = 1999
    frames = []
    for s in range(24):
        k = (5, 8, 12, 20, 30, 40)[s % 6]
        d = _data(100 + s, sizes=(k + 4, k, k + 2), covariate=covariate)
        if s % 2:  # an effect in PSY: multiply its shares
            psy = d["group"] == "PSY"
            d.loc[psy, "percent_time"] = np.minimum(100, d.loc[psy, "percent_time"] * 2.2)
        frames.append(d.assign(dataset=s))
    allx = pd.concat(frames, ignore_index=True)
    allx.to_csv(tmp_path / "grid.csv", index=False)
    code = _R_RESAMPLE.format(csv=tmp_path / "grid.csv", json=tmp_path / "grid.json", B=B, cov="TRUE" if covariate else "FALSE")
    r = np.asarray(_rscript(code, tmp_path, "grid"))
    covs = ["age"] if covariate else []
    agree_tol = lambda p: 4 * np.sqrt(2 * max(p, 0.01) * (1 - p) / B) + 2 / B  # noqa: E731  (two independent estimates)
    decided = 0
    for s, t_r, p_wild_r, p_perm_r in r:
        d = frames[int(s)]
        design = build_design(d, GROUPS, covs)
        y = d["percent_time"].to_numpy() / 100
        L = design.contrast_vector("PSY", "TDC")
        p_wild = wild_score_pvalues(design.X, y[None], L, resamples=B, seed=0)[0]
        p_perm = permutation_pvalues(design, y[None], "PSY", "TDC", resamples=B, seed=0)[0]
        for ours, theirs in ((p_wild, p_wild_r), (p_perm, p_perm_r)):
            tol = agree_tol(theirs)
            assert abs(ours - theirs) <= tol, (s, ours, theirs)
            if abs(theirs - 0.05) > tol and abs(ours - 0.05) > tol:
                assert (ours < 0.05) == (theirs < 0.05), (s, ours, theirs)
                decided += 1
        # the observed statistic: our restricted fit in the null space of L, R's by merging the groups
        assert score_statistic(design.X, y[None], L)[0][0] == pytest.approx(t_r, rel=1e-8)
    assert decided >= 30  # of 48 comparisons: the decision check is not vacuous
