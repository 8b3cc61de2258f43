"""Power analysis (analysis.power*): agreement with analytic and independent power, size, families, CLI.

Monte-Carlo checks allow 3 standard errors of the simulated rate (about 1 in 370 chance of a false
alarm per check, with fixed seeds so a run repeats exactly).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import special, stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize

from analysis.config import HurdleConfig
from analysis.power import main
from analysis.power_config import PowerConfig
from analysis.power_grid import LEADING_COLUMNS, designs, family_table, power_table, run_power
from analysis.correction import adjust_pvalues
from analysis.power_sim import (adjust, adjusted, analyse_fast, analyse_full, analysis_config, draw_replicate, family_index,
                                replicate_cohort, analysis_tests)
from analysis.power_spec import CellModel, PowerModel
from analysis.simulate import SimConfig, simulate_cohort, write_simulation
from pipeline.cli import BadInput


def _model(groups, cells, actions=None, **kw) -> PowerModel:
    actions = actions or tuple(f"action {i}" for i in range(len(cells)))
    return PowerModel(groups=tuple(groups), actions=tuple(actions), cells=tuple(tuple(r) for r in cells), **kw)


def _run(model, grid, *, nsim, seed=1, cache=None, workers=1, chunk=50, **cfg):
    config = HurdleConfig(groups=model.groups, **cfg)
    return run_power(model, config, PowerConfig(nsim=nsim, seed=seed, chunk=chunk), grid, workers=workers, cache=cache)


def _se(p: float, n: int) -> float:
    return float(np.sqrt(max(p * (1 - p), 0.01 * 0.99) / n))


# --------------------------------------------------------------------------------------------------
# the fast engine is the real analysis
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method,pairwise", [("hc0-z", False), ("hc2-t", True), ("permutation", False), ("wild", True)])
def test_fast_engine_gives_the_p_values_of_hurdle_analysis(method, pairwise):
    # Three actions: ordinary, rare (separation -> Firth in many replicates), near the 100 % boundary.
    cells = [(CellModel(0.5, 0.1, 8), CellModel(0.3, 0.15, 8), CellModel(0.5, 0.1, 4)),
             (CellModel(0.05, 0.1, 8), CellModel(0.02, 0.15, 8), CellModel(0.1, 0.1, 4)),
             (CellModel(0.9, 0.6, 3), CellModel(0.97, 0.8, 2), CellModel(0.9, 0.5, 4))]  # fmt: skip
    model = _model(("ASD", "PSY", "TDC"), cells)
    cfg = analysis_config(model, HurdleConfig(groups=model.groups, intensity_se=method, pairwise_subsets=pairwise,
                                              min_engaged_test=5, intensity_resamples=199))  # fmt: skip
    sizes = (30, 14, 30)
    draws = [draw_replicate(model, sizes, 7, i) for i in range(8)]
    fast = analyse_fast(np.stack([d[0] for d in draws]), sizes, model, cfg)
    full = np.stack([analyse_full(replicate_cohort(*d, sizes, model), model, cfg)[0] for d in draws])
    assert np.array_equal(np.isnan(fast), np.isnan(full))
    assert np.isnan(fast).any() and np.isfinite(fast).any()
    np.testing.assert_allclose(fast[np.isfinite(fast)], full[np.isfinite(full)], rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("method", ["bonferroni", "holm", "fdr_bh", "fdr_by"])
def test_adjusted_p_values_are_multipletests(method):
    rng = np.random.default_rng(0)
    for m in (1, 2, 7, 30):
        p = rng.uniform(size=m) ** 3
        p[: m // 3] = p[0]  # ties
        np.testing.assert_allclose(adjusted(p, method), multipletests(p, method=method)[1], rtol=1e-12)


def test_adjust_follows_the_families_of_adjust_pvalues():
    model = _model(("A", "B", "C"), [(CellModel(0.4, 0.2, 10),) * 3] * 4)
    keys = analysis_tests(model)
    rng = np.random.default_rng(1)
    P = rng.uniform(size=(3, len(keys))) ** 2
    P[:, ::5] = np.nan
    for family in ("part", "all", "action", "contrast"):
        ours = adjust(P, family_index(keys, family), "fdr_bh")
        for r in range(3):
            ref = adjust_pvalues(keys.assign(p=P[r]), "fdr_bh", family).to_numpy()
            np.testing.assert_allclose(ours[r], ref, rtol=1e-12)


# --------------------------------------------------------------------------------------------------
# power against independent computations
# --------------------------------------------------------------------------------------------------


def _exact_wald_power(p1: float, p2: float, n: int, alpha: float = 0.05) -> float:
    """Exact power of the two-group Wald test of the log odds ratio, summing over both binomial outcomes."""
    k = np.arange(n + 1)
    f1, f2 = stats.binom.pmf(k, n, p1), stats.binom.pmf(k, n, p2)
    with np.errstate(all="ignore"):
        lg, v = special.logit(k / n), 1 / (n * (k / n) * (1 - k / n))
        z = (lg[:, None] - lg[None, :]) / np.sqrt(v[:, None] + v[None, :])
    inner = (k > 0) & (k < n)
    reject = (np.abs(z) > stats.norm.ppf(1 - alpha / 2)) & inner[:, None] & inner[None, :]
    return float((f1[:, None] * f2[None, :] * reject).sum())


def test_engagement_power_matches_two_proportion_power():
    model = _model(("A", "B"), [(CellModel(0.3, 0.1, 8), CellModel(0.5, 0.1, 8))])
    nsim = 1500
    res = _run(model, [(40, 40), (80, 80), (120, 120)], nsim=nsim, intensity_se="hc0-z")
    tab = power_table(res)
    eng = tab[tab["part"] == "probability"].set_index("n_total")["power"]
    for n in (40, 80, 120):
        exact = _exact_wald_power(0.3, 0.5, n)
        normal = NormalIndPower().power(proportion_effectsize(0.5, 0.3), n, 0.05)
        se = _se(exact, nsim)
        assert abs(eng[2 * n] - exact) < 3 * se, (n, eng[2 * n], exact)
        assert abs(eng[2 * n] - normal) < 3 * se + 0.01, (n, eng[2 * n], normal)  # arcsine approximation: within 0.01


def _independent_intensity_power(m1, m2, phi, n, nsim, rng) -> float:
    """Beta fractions, statsmodels' fractional logit with HC0 x n/(n-1) errors, Wald z: a separate implementation."""
    X = np.column_stack([np.ones(2 * n), np.r_[np.zeros(n), np.ones(n)]])
    hits = 0
    for _ in range(nsim):
        y = np.r_[rng.beta(m1 * phi, (1 - m1) * phi, n), rng.beta(m2 * phi, (1 - m2) * phi, n)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = sm.GLM(np.clip(y, 1e-4, 1), X, family=sm.families.Binomial()).fit(cov_type="HC0", tol=1e-12)
        se = np.sqrt(fit.cov_params()[1, 1] * 2 * n / (2 * n - 1))
        hits += 2 * stats.norm.sf(abs(fit.params[1] / se)) < 0.05
    return hits / nsim


def test_intensity_power_matches_an_independent_simulation():
    # Everybody engages, so only the intensity part is tested.
    model = _model(("A", "B"), [(CellModel(1.0, 0.10, 10), CellModel(1.0, 0.14, 10))])
    nsim = 600
    res = _run(model, [(25, 25), (60, 60)], nsim=nsim, intensity_se="hc0-z")
    tab = power_table(res)
    assert tab.loc[tab["part"] == "probability", "tested"].eq(0).all()
    ours = tab[tab["part"] == "intensity"].set_index("n_total")["power"]
    rng = np.random.default_rng(123)
    for n in (25, 60):
        ref = _independent_intensity_power(0.10, 0.14, 10, n, nsim, rng)
        assert abs(ours[2 * n] - ref) < 3 * np.sqrt(2) * _se(ref, nsim), (n, ours[2 * n], ref)
    assert ours[120] > ours[50]


# --------------------------------------------------------------------------------------------------
# size and families
# --------------------------------------------------------------------------------------------------


def test_null_rejects_at_alpha_in_each_part():
    model = _model(("A", "B"), [(CellModel(0.4, 0.2, 10), CellModel(0.4, 0.2, 10))])
    nsim = 1000
    res = _run(model, [(100, 100)], nsim=nsim, intensity_resamples=199)  # the default permutation test
    tab = power_table(res)
    assert tab["null"].all()
    for part in ("probability", "intensity"):
        rate = float(tab.loc[tab["part"] == part, "power"].iloc[0])
        assert abs(rate - 0.05) < 3 * _se(0.05, nsim), (part, rate)


def test_correction_controls_familywise_error_and_fdr():
    null = (CellModel(0.4, 0.2, 10), CellModel(0.4, 0.2, 10))
    strong = (CellModel(0.2, 0.2, 10), CellModel(0.7, 0.2, 10))
    nsim = 400
    m_null = _model(("A", "B"), [null] * 10)
    fw = {}
    for corr in ("holm", "none"):
        fam = family_table(_run(m_null, [(60, 60)], nsim=nsim, correction=corr, intensity_se="hc0-z"))
        fw[corr] = float(fam.loc[fam["family"] == "probability", "fwer"].iloc[0])
    assert fw["holm"] < 0.05 + 3 * _se(0.05, nsim)
    uncorrected = 1 - 0.95**10  # ten independent tests at 0.05
    assert abs(fw["none"] - uncorrected) < 3 * _se(uncorrected, nsim)
    mixed = _model(("A", "B"), [strong] * 3 + [null] * 7)
    res = _run(mixed, [(60, 60)], nsim=nsim, correction="fdr_bh", intensity_se="hc0-z")
    fam = family_table(res).set_index("family")
    assert fam.at["probability", "true_nulls"] == 7
    assert fam.at["probability", "fdr"] < 0.05 * 7 / 10 + 3 * _se(0.035, nsim)  # BH: FDR <= alpha m0 / m
    tab = power_table(res)
    assert tab.loc[(tab["part"] == "probability") & ~tab["null"], "power"].min() > 0.9
    assert (tab["power"] <= tab["power_unadjusted"]).all()


# --------------------------------------------------------------------------------------------------
# reproducibility and resume
# --------------------------------------------------------------------------------------------------


def _small():
    return _model(("A", "B", "C"), [(CellModel(0.4, 0.2, 10), CellModel(0.6, 0.2, 10), CellModel(0.4, 0.3, 10))] * 2)


def test_same_seed_same_table_whatever_the_workers_and_chunks(tmp_path):
    model = _small()
    grid = designs(("A", "B", "C"), (1, 1, 1), [30, 60])
    one = power_table(_run(model, grid, nsim=40, chunk=20, intensity_se="hc2-t"))
    two = power_table(_run(model, grid, nsim=40, chunk=7, workers=2, intensity_se="hc2-t"))
    pd.testing.assert_frame_equal(one, two)
    other = power_table(_run(model, grid, nsim=40, seed=2, intensity_se="hc2-t"))
    assert not one["power"].equals(other["power"])


def test_resume_reuses_chunks(tmp_path):
    model = _small()
    grid = designs(("A", "B", "C"), (1, 1, 1), [30, 45])
    first = _run(model, grid, nsim=40, chunk=20, cache=tmp_path, intensity_se="hc2-t")
    assert (first.reused, first.computed) == (0, 4)
    again = _run(model, grid, nsim=40, chunk=20, cache=tmp_path, intensity_se="hc2-t")
    assert (again.reused, again.computed) == (4, 0)
    pd.testing.assert_frame_equal(power_table(first), power_table(again))
    longer = _run(model, grid + [(20, 20, 20)], nsim=60, chunk=20, cache=tmp_path, intensity_se="hc2-t")
    assert (longer.reused, longer.computed) == (4, 5)
    fresh = _run(model, grid + [(20, 20, 20)], nsim=60, chunk=20, intensity_se="hc2-t")
    pd.testing.assert_frame_equal(power_table(longer), power_table(fresh))
    changed = _run(model, grid, nsim=40, chunk=20, cache=tmp_path, intensity_se="hc0-z")  # another analysis
    assert changed.reused == 0


# --------------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------------


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


SPEC = """
actions:
  shaking legs:
    engagement: {ASD: 0.5, PSY: 0.3}
    mean_share: 0.1
  head up:
    engagement: 0.6
    mean_share: {ASD: 0.1, PSY: 0.15}
    precision: 6
"""


def test_cli_spec_writes_the_output_set(tmp_path, capsys):
    spec = _write(tmp_path / "spec.yaml", SPEC)
    out = tmp_path / "out"
    rc = main(["--spec", str(spec), "--groups", "ASD=30,PSY=20", "--n-range", "40:80:20", "--nsim", "20",
               "--intensity-se", "hc2-t", "--out", str(out), "-q"])  # fmt: skip
    assert rc == 0
    tab = pd.read_csv(out / "power.csv")
    assert list(tab.columns[:9]) == LEADING_COLUMNS + ["n_ASD", "n_PSY"]
    assert sorted(tab["n_total"].unique()) == [40, 60, 80]
    assert (tab["n_ASD"] + tab["n_PSY"] == tab["n_total"]).all()
    assert (tab.loc[tab["n_total"] == 40, "n_ASD"] == 24).all()
    pd.testing.assert_frame_equal(pd.read_parquet(out / "power.parquet"), tab, check_dtype=False)
    for name in ("sample_size.csv", "family.csv", "power_curves.png", "summary.md", "summary.html"):
        assert (out / name).stat().st_size > 0
    summary = (out / "summary.md").read_text()
    assert "hc2-t" in summary and "Benjamini-Hochberg" in summary and "--nsim 20" in summary
    side = json.loads((out / "power.parquet.json").read_text())
    assert side["config"]["power"]["nsim"] == 20


def test_cli_pilot_with_effects_and_agreement(tmp_path):
    cohort, _ = simulate_cohort(SimConfig(groups=(("ASD", 30), ("PSY", 20)), n_actions=3, seed=4, effects=()))
    pilot, _ = write_simulation(cohort, _, SimConfig(), tmp_path / "pilot.parquet")
    actions = list(dict.fromkeys(cohort["action"]))
    eff = _write(tmp_path / "eff.yaml", f"effects:\n  {actions[0]}:\n    probability: {{PSY: 0.3}}\n")
    conf = pd.DataFrame([{"participant_id": "P1", "group": "ASD", "action": a, "reference": "consensus",
                          "tp": 90, "fp": 0, "fn": 10, "tn": 900} for a in actions])  # fmt: skip
    (tmp_path / "run" / "validation").mkdir(parents=True)
    conf.to_parquet(tmp_path / "run" / "validation" / "confusion.parquet")
    out = tmp_path / "out"
    rc = main(["--pilot", str(pilot), "--groups", "ASD=30,PSY=20", "--effects", str(eff), "--agreement",
               str(tmp_path / "run"), "--nsim", "20", "--intensity-se", "hc0-z", "--all-actions", "--out", str(out), "-q"])  # fmt: skip
    assert rc == 0
    tab = pd.read_csv(out / "power.csv")
    assert set(tab["action"]) == set(actions)
    assert tab.loc[tab["action"] != actions[0], "null"].all()
    assert not tab.loc[tab["action"] == actions[0], "null"].any()  # machine coding: both parts differ
    assert np.isclose(tab.loc[(tab["action"] == actions[0]) & (tab["part"] == "probability"), "effect"].iloc[0], 1 / 0.3)
    assert "machine coding" in (out / "summary.md").read_text()


@pytest.mark.parametrize("case,needle", [
    ("prob", "outside [0, 1]"),
    ("group", "unknown group 'XYZ'"),
    ("size1", "smaller than 2"),
    ("unseen", "not among the simulated actions"),
    ("effect_group", "unknown group 'XYZ'"),
])  # fmt: skip
def test_cli_bad_specs_exit_2_with_one_line(tmp_path, capsys, case, needle):
    groups = "ASD=30,PSY=20"
    args = []
    if case == "prob":
        args = ["--spec", str(_write(tmp_path / "s.yaml", "actions:\n  a:\n    engagement: 1.4\n    mean_share: 0.1\n"))]
    elif case == "group":
        args = ["--spec", str(_write(tmp_path / "s.yaml", "actions:\n  a:\n    engagement: {ASD: 0.5, XYZ: 0.5}\n    mean_share: 0.1\n"))]
    elif case == "size1":
        args = ["--spec", str(_write(tmp_path / "s.yaml", SPEC))]
        groups = "ASD=30,PSY=1"
    else:
        cohort, truth = simulate_cohort(SimConfig(groups=(("ASD", 30), ("PSY", 20)), n_actions=3, seed=4, effects=()))
        pilot, _ = write_simulation(cohort, truth, SimConfig(), tmp_path / "pilot.parquet")
        action, grp = ("flying kick", "PSY") if case == "unseen" else (cohort["action"].iloc[0], "XYZ")
        eff = _write(tmp_path / "e.yaml", f"effects:\n  {action}:\n    intensity: {{{grp}: 1.5}}\n")
        args = ["--pilot", str(pilot), "--effects", str(eff)]
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main([*args, "--groups", groups, "--nsim", "10", "--out", str(out), "-q"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not (out / "power.csv").exists()


def test_designs_split_totals_in_proportion():
    assert designs(("A", "B", "C"), (40, 20, 40), [100, 50]) == [(40, 20, 40), (20, 10, 20)]
    assert sum(designs(("A", "B", "C"), (1, 1, 1), [31])[0]) == 31
    with pytest.raises(BadInput, match="smaller than 2"):
        designs(("A", "B"), (40, 1))


@pytest.mark.slow
def test_cli_workers_interrupt_leaves_no_worker(tmp_path):
    """Ctrl-C during a pooled run: the parent stops its workers and exits at once with 130, saying which
    finished chunks stay for a resume."""
    import os
    import signal
    import subprocess
    import sys
    import time

    spec = _write(tmp_path / "spec.yaml", SPEC)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen([sys.executable, "-m", "analysis.power", "--spec", str(spec), "--groups", "ASD=30,PSY=20",
                             "--n-range", "40:400:40", "--nsim", "400", "--chunk", "10", "--workers", "2", "--out", str(out), "-q"],
                            env=env, start_new_session=True, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob(".power-chunks/*/*.npz")):
        time.sleep(0.5)
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "analysis.power: interrupted;" in err and "finished chunk(s) kept in" in err, err
    time.sleep(1)
    alive = [c for c in children if os.path.exists(f"/proc/{c}") and "zombie" not in open(f"/proc/{c}/status").read().lower()]
    assert not alive
    assert list(out.glob(".power-chunks/*/*.npz")) and not (out / "power.csv").exists()


def test_ctrl_c_exit_is_not_held_by_a_thread_that_never_ends():
    """Fault injected: a non-daemon thread that would hold the interpreter's exit for 10 minutes (as the
    process pool's management thread once did in CI). ``python -m analysis.power``'s Ctrl-C path gives
    it the grace period, then leaves with 130 and says why."""
    import os
    import subprocess
    import sys

    code = ("import threading, time\n"
            "import analysis.power as power\n"
            "def interrupted(argv=None):\n"
            "    threading.Thread(target=time.sleep, args=(600,)).start()\n"
            "    raise KeyboardInterrupt\n"
            "power.main = interrupted\n"
            "power._run_command(grace_s=0.5)\n")  # fmt: skip
    r = subprocess.run([sys.executable, "-c", code], cwd=os.getcwd(), env={**os.environ, "PYTHONPATH": os.getcwd()},
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 130, r.stderr
    assert "did not end 0.5 s after Ctrl-C" in r.stderr  # a held exit would end in the subprocess timeout
