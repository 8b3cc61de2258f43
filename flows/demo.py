"""The built-in demo: ``make demo`` / ``python -m flows.demo [--out DIR]``.

Runs the most complete job the project has end to end on data it makes itself (no download, no
``../shared``): a simulated cohort of the reference study's size (ASD 120, PSY 46, TDC 124, with age
and sex) with planted group effects, then the full hurdle analysis of the planted actions and the ten
most frequent ones, writing results, publication tables, descriptives and violin plots. It prints
where everything went and how the planted effects were recovered.

When the recognition stages land (pose -> Micro-DualNet windows -> percent time), this entry point
becomes the Prefect ``cohort-analysis`` flow run on the kinematic simulator's demo videos; the command
stays the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis.cohort import select_actions
from analysis.config import HurdleConfig, OutputConfig
from analysis.hurdle import hurdle_analysis
from analysis.outputs import check_out_dir_free, planned_outputs, write_outputs
from analysis.simulate import SimConfig, simulate_cohort, write_simulation
from pipeline.cli import check_output_dir, handle_errors, make_parser, report_written, setup_logging

DEFAULT_OUT = Path("demo_output")


@dataclass
class DemoResult:
    """What the demo produced: how each planted effect came out, and every file written (in order)."""

    check: pd.DataFrame
    written: list[Path] = field(default_factory=list)


def run_demo(out: Path = DEFAULT_OUT, *, seed: int = 0, show_progress: bool = False) -> DemoResult:
    """Simulate a cohort, analyse it, write everything under ``out``; prints nothing.

    Returns the planted-effect check (one row per planted effect x contrast involving its group) and
    the written paths.
    """
    out = Path(out)
    sim = SimConfig(covariates=True, age_effect=0.2, sex_effect=-0.3, seed=seed)
    cohort, truth = simulate_cohort(sim)
    planted = list(dict.fromkeys(e.action for e in sim.effects))
    top = select_actions(cohort, HurdleConfig(top_actions=10))
    config = HurdleConfig(actions=tuple(dict.fromkeys(planted + list(top))), covariates=("age", "sex"))
    # Both output places are checked before anything is written (a user's file in the way: exit 2).
    check_output_dir(out)
    check_out_dir_free(out / "hurdle", planned_outputs(config.actions, OutputConfig()))
    written = list(write_simulation(cohort, truth, sim, out / "cohort.parquet"))
    results = hurdle_analysis(cohort, config, show_progress=show_progress)
    written += write_outputs(results, cohort, config, OutputConfig(), out / "hurdle", source=written[0])

    # How each planted effect came out: the contrasts involving the planted group, same part.
    rows = []
    for e in sim.effects:
        hits = results[(results["action"] == e.action) & (results["part"] == e.part)
                       & ((results["group_a"] == e.group) | (results["group_b"] == e.group))]  # fmt: skip
        for _, r in hits.iterrows():
            rows.append({"planted": f"{e.action} / {e.group} / {e.part}", "contrast": r["contrast"],
                         "effect": r["effect"], "p_adj": r["p_adj"], "note": r["note"] if isinstance(r["note"], str) else ""})  # fmt: skip
    return DemoResult(pd.DataFrame(rows), written)


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__.split("\n\n")[0], prog="python -m flows.demo")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="simulation seed")
    args = parser.parse_args(argv)
    setup_logging(verbose=args.verbose, quiet=args.quiet)
    with handle_errors("flows.demo"):
        check_output_dir(args.out)
        result = run_demo(args.out, seed=args.seed, show_progress=not args.quiet)
    for path in result.written:
        report_written(path)
    with pd.option_context("display.width", 140, "display.max_columns", 10):
        print("\nPlanted effects and how the analysis recovered them (effect = odds ratio, first vs second group):")
        print(result.check.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"\nDemo finished. Open {args.out / 'hurdle' / 'table.html'} and {args.out / 'hurdle' / 'overview.png'}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
