"""Benchmark: the power grid of issue 24 against 500 single hurdle fits, side by side.

The grid: ``--nsim`` (500) simulated cohorts x 10 actions x 3 contrasts (ASD, PSY, TDC; 2 parts) x 20
sample sizes (n_total 30..600 in the paper's 120/46/124 proportions), generated from a simulated
pilot, on ``--workers`` processes (2). The intensity test is ``--intensity-se`` (default ``hc2-t``: the
analysis's default permutation test with 1999 draws resamples every intensity contrast of every
replicate and does not fit the 5-minute target on 2 cores; its cost is measured on a smaller grid,
``--perm-nsim``, and extrapolated). The reference is 500 calls of ``analysis.hurdle.hurdle_analysis``
on one cohort of the middle design with the same settings. Prints wall times and their ratio; not a
test, nothing is asserted.

    .venv/bin/python bench/bench_power.py [--nsim 500] [--workers 2] [--perm-nsim 20]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.config import HurdleConfig  # noqa: E402
from analysis.hurdle import hurdle_analysis  # noqa: E402
from analysis.power_config import PowerConfig  # noqa: E402
from analysis.power_grid import designs, run_power  # noqa: E402
from analysis.power_sim import analysis_config, draw_replicate, replicate_cohort  # noqa: E402
from analysis.power_spec import model_from_pilot  # noqa: E402
from analysis.simulate import SimConfig, simulate_cohort, write_simulation  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--nsim", type=int, default=500)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--sizes", type=int, default=20)
    ap.add_argument("--intensity-se", default="hc2-t")
    ap.add_argument("--perm-nsim", type=int, default=20, help="replicates for the permutation-test estimate (0 = skip)")
    args = ap.parse_args()

    groups = (("ASD", 120), ("PSY", 46), ("TDC", 124))
    with tempfile.TemporaryDirectory() as tmp:
        cohort, truth = simulate_cohort(SimConfig(groups=groups, n_actions=20, seed=11))
        pilot, _ = write_simulation(cohort, truth, SimConfig(), Path(tmp) / "pilot.parquet")
        config = HurdleConfig(groups=tuple(g for g, _ in groups), intensity_se=args.intensity_se)
        model = model_from_pilot(pilot, config)
    labels = model.groups
    grid = designs(labels, tuple(n for _, n in groups), [30 * (k + 1) for k in range(args.sizes)])
    settings = PowerConfig(nsim=args.nsim, seed=1)
    print(f"grid: {args.nsim} simulations x {len(model.actions)} actions x 3 contrasts x 2 parts x {len(grid)} sizes "
          f"(n_total {sum(grid[0])}..{sum(grid[-1])}), intensity test {args.intensity_se}, {args.workers} workers")  # fmt: skip

    t0 = time.perf_counter()
    res = run_power(model, config, settings, grid, workers=args.workers)
    t_power = time.perf_counter() - t0

    mid = grid[len(grid) // 2]
    cfg = analysis_config(model, config)
    one = replicate_cohort(*draw_replicate(model, mid, 1, 0), mid, model)
    t0 = time.perf_counter()
    for _ in range(500):
        hurdle_analysis(one, cfg, validate=False)
    t_fits = time.perf_counter() - t0
    print(f"power grid ({len(grid) * args.nsim} simulated cohorts): {t_power:8.1f} s wall")
    print(f"500 single hurdle fits (n_total {sum(mid)}, 1 process): {t_fits:8.1f} s wall")
    print(f"ratio power grid / 500 hurdle fits: {t_power / t_fits:8.2f}   (target: grid < 300 s on 2 cores; "
          f"{'met' if t_power < 300 else 'NOT met'})")  # fmt: skip

    if args.perm_nsim:
        pcfg = HurdleConfig(groups=labels)  # the analysis's default: permutation, 1999 draws
        t0 = time.perf_counter()
        run_power(model, pcfg, PowerConfig(nsim=args.perm_nsim, seed=1, chunk=max(1, args.perm_nsim // args.workers)),
                  grid, workers=args.workers)  # fmt: skip
        t_perm = time.perf_counter() - t0
        est = t_perm * args.nsim / args.perm_nsim
        print(f"default permutation test: {args.perm_nsim} simulations x {len(grid)} sizes in {t_perm:.1f} s -> about "
              f"{est:.0f} s ({est / 60:.1f} min) for {args.nsim}; {est / t_power:.1f}x the {args.intensity_se} grid")  # fmt: skip


if __name__ == "__main__":
    main()
