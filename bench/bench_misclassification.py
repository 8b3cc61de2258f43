"""Benchmark: the misclassification-corrected hurdle, 50 imputations x 52 actions x 3 contrasts, 300 participants.

A simulated cohort (ASD 124, PSY 52, TDC 124; 52 actions), read out with frame error rates tpr 0.6,
fpr 0.002 (analysis.simulate_errors), 12 coded participants per group. Prints the wall and CPU time
of one uncorrected hurdle run and of the corrected analysis (1 point + M imputation hurdle runs,
Rubin's rules) side by side with their ratio, for the analytic intensity test hc2-t and for the
default permutation test, for each correction (--corrections: acc and ratio). Not a test: nothing is asserted. The issue's budget: under 60 s on 2 cores.

    .venv/bin/python bench/bench_misclassification.py [--imputations 50] [--participants 300] [--corrections acc,ratio]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.config import HurdleConfig  # noqa: E402
from analysis.hurdle import hurdle_analysis  # noqa: E402
from analysis.misclassification import validation_set  # noqa: E402
from analysis.simulate import SimConfig, simulate_cohort  # noqa: E402
from analysis.simulate_errors import ReadoutErrors, misread_cohort  # noqa: E402


def _timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--participants", type=int, default=300)
    ap.add_argument("--imputations", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2, help="processes for the imputations (2 cores)")
    ap.add_argument("--methods", default="hc2-t,permutation", help="intensity tests to time, comma-separated")
    ap.add_argument("--corrections", default="acc,ratio", help="misclassification corrections to time, comma-separated")
    args = ap.parse_args()
    n = args.participants
    sizes = (("ASD", round(n * 124 / 300)), ("PSY", round(n * 52 / 300)))
    sizes += (("TDC", n - sizes[0][1] - sizes[1][1]),)
    cohort, _ = simulate_cohort(SimConfig(groups=sizes, n_actions=52, seed=0))
    observed, confusion, scores = misread_cohort(cohort, ReadoutErrors(fpr=0.002), seed=1)
    vs = validation_set(confusion, scores)
    print(f"(CPU time is this process's only: the workers' is not in it)")
    print(f"cohort: {n} participants x 52 actions; groups {dict(sizes)}; {vs.participants} coded participants; "
          f"{args.imputations} imputations")  # fmt: skip
    for method in args.methods.split(","):
        cfg = HurdleConfig(top_actions=0, intensity_se=method)
        res, wall1, cpu1 = _timed(lambda: hurdle_analysis(observed, cfg))
        print(f"intensity test {method}: one uncorrected hurdle run {wall1:.2f} s wall ({cpu1:.2f} s CPU, {len(res)} rows)")
        for correction in args.corrections.split(","):
            corr = replace(cfg, misclassification=correction, imputations=args.imputations, imputation_workers=args.workers)
            res_c, wall, cpu = _timed(lambda: hurdle_analysis(observed, corr, validation=vs))
            tests = int(res_c["p"].notna().sum())
            print(f"  corrected ({correction}, {args.imputations} imputations on {args.workers} processes + point + uncorrected, "
                  f"Rubin) {wall:.2f} s wall ({cpu:.2f} s CPU), ratio to the uncorrected run {wall / wall1:.1f}; "
                  f"{tests} combined tests")  # fmt: skip


if __name__ == "__main__":
    main()
