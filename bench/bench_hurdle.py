"""Benchmark: the full hurdle analysis of 52 actions x 3 groups x 10,000 participants.

Prints the wall time of the whole analysis (validation, 104 model fits, contrasts, correction) with the
default intensity test and with the method before issue 28 (``intensity_se="hc0-z"``), side by side,
and their ratio; and
the time per fit relative to a bare statsmodels GLM fit of the same model (the overhead ratio: our
fit + its three contrasts + bookkeeping, divided by ``sm.GLM(y, X, Binomial()).fit()``), measured side
by side in this one run. Not a test: nothing is asserted.

    .venv/bin/python bench/bench_hurdle.py [--participants 10000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import statsmodels.api as sm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.config import HurdleConfig  # noqa: E402
from analysis.design import build_design  # noqa: E402
from analysis.hurdle import hurdle_analysis, intensity_part, probability_part  # noqa: E402
from analysis.simulate import SimConfig, simulate_cohort  # noqa: E402


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--participants", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    n = args.participants
    sizes = (("ASD", round(n * 120 / 290)), ("PSY", round(n * 46 / 290)))
    sizes += (("TDC", n - sizes[0][1] - sizes[1][1]),)
    cohort, _ = simulate_cohort(SimConfig(groups=sizes, n_actions=52, covariates=True, seed=0))
    config = HurdleConfig(top_actions=0, covariates=("age", "sex"))
    print(f"cohort: {n} participants x 52 actions = {len(cohort):,} rows; groups {dict(sizes)}; covariates age, sex")

    t0, c0 = time.perf_counter(), time.process_time()
    res = hurdle_analysis(cohort, config)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    old = replace(config, intensity_se="hc0-z", min_engaged_test=0)
    t0, c0 = time.perf_counter(), time.process_time()
    hurdle_analysis(cohort, old)
    wall_old, cpu_old = time.perf_counter() - t0, time.process_time() - c0
    print(f"full analysis (validate + 52 actions x 2 parts x 3 contrasts = {len(res)} tests): {wall:.2f} s wall with the "
          f"default intensity test ({config.intensity_se}, {config.intensity_resamples} draws), {wall_old:.2f} s with hc0-z "
          f"(before issue 28): ratio {wall / wall_old:.2f}; CPU time {cpu:.2f} s vs {cpu_old:.2f} s (ratio {cpu / cpu_old:.2f}; "
          f"less than wall when the machine is shared)")

    # Per-fit overhead on a typical action, both parts, side by side with bare statsmodels GLM fits.
    action = cohort["action"].iloc[0]
    data = cohort.loc[cohort["action"] == action, ["participant_id", "group", "percent_time", "age", "sex"]].reset_index(drop=True)
    y_eng = (data["percent_time"] > 0).to_numpy(float)
    X_all = build_design(data, config.groups, config.covariates, ["sex"]).X
    eng = data[data["percent_time"] > 0]
    X_eng = build_design(eng, config.groups, config.covariates, ["sex"]).X
    y_int = eng["percent_time"].to_numpy() / 100

    def bare_prob():
        sm.GLM(y_eng, X_all, family=sm.families.Binomial()).fit()

    def bare_int():
        sm.GLM(y_int, X_eng, family=sm.families.Binomial()).fit()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_bare_p = _best(bare_prob, args.repeats * 5)
        t_bare_i = _best(bare_int, args.repeats * 5)
        t_ours_p = _best(lambda: probability_part(data, config), args.repeats * 5)
        t_ours_i = _best(lambda: intensity_part(data, config), args.repeats * 5)
    print(f"per fit, action {action!r} (n={len(data)}, engagers={len(eng)}):")
    print(f"  probability: bare statsmodels GLM {t_bare_p * 1e3:.2f} ms, ours (fit + 3 contrasts) {t_ours_p * 1e3:.2f} ms, overhead ratio {t_ours_p / t_bare_p:.2f}")
    print(f"  intensity:   bare statsmodels GLM {t_bare_i * 1e3:.2f} ms, ours (fit + {config.intensity_se} tests of 3 contrasts) {t_ours_i * 1e3:.2f} ms, overhead ratio {t_ours_i / t_bare_i:.2f}")
    per_fit_full = wall / (2 * 52)
    print(f"  full analysis per fit: {per_fit_full * 1e3:.2f} ms = {per_fit_full / ((t_bare_p + t_bare_i) / 2):.2f} x the mean bare GLM fit")
    n_firth = int(res["method"].str.startswith("Firth").sum())
    print(f"rows with Firth fits: {n_firth}; non-estimable rows: {int(res['p'].isna().sum())}")


if __name__ == "__main__":
    main()
