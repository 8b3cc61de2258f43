"""The built-in demo: ``make demo`` / ``python -m flows.demo [--out DIR]``: the whole chain on simulated video.

1. The kinematic simulator (:mod:`simulator`) renders a small cohort: seated participants in
   three groups (ASD, PSY, TDC) doing MA-52 micro-actions, with planted group effects and per-frame truth.
2. The Prefect flow ``cohort-analysis`` runs on it as a user's cohort would run: MediaPipe pose on the
   frames the model samples, recognition with the built-in demo Micro-DualNet (trained on simulated
   clips only), read-out to percent time, hurdle statistics, and the HTML report.
3. The demo compares the results with the truth it planted: percent-time error per action, and how each
   planted group effect came out.

Nothing is downloaded and ``../shared`` is not needed. Everything is written under ``--out``
(default ``demo_output/``); a rerun resumes (rendered videos and per-video stages are reused).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from flows.cohort_analysis import direct_run_settings, run_cohort_analysis
from flows.params import CohortAnalysisParams
from flows.console import flow_errors, setup_console
from pipeline.cli import check_output_dir, handle_errors, make_parser, report_written
from simulator.recording import CohortConfig, write_cohort

__all__ = ["DemoResult", "run_demo", "planted_check", "percent_time_error", "main", "DEMO_GROUPS"]

DEFAULT_OUT = Path("demo_output")
DEMO_GROUPS = {"ASD": 8, "PSY": 8, "TDC": 8}


@dataclass
class DemoResult:
    """What the demo made: the flow's summary, the planted-effect check and the percent-time agreement."""

    summary: dict
    check: pd.DataFrame
    agreement: pd.DataFrame
    report: Path


def planted_check(effects: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """For each planted effect (truth/effects.csv), the matching contrast's estimate and adjusted p.

    ``log_or`` is the planted log odds ratio of ``group`` relative to ``reference``; the analysis
    reports ``effect`` as the odds ratio of the contrast's first group relative to its second, so the
    direction is right when ``log(effect)`` has the planted sign after orienting the contrast.
    """
    rows = []
    for e in effects.itertuples(index=False):
        hit = results[(results["action"] == e.action) & (results["part"] == e.part)
                      & (((results["group_a"] == e.group) & (results["group_b"] == e.reference))
                         | ((results["group_a"] == e.reference) & (results["group_b"] == e.group)))]  # fmt: skip
        if hit.empty:
            rows.append({"planted": f"{e.action} / {e.group} vs {e.reference} / {e.part}", "planted_or": float(np.exp(e.log_or)),
                         "estimated_or": float("nan"), "p_adj": float("nan"), "right_direction": False, "note": "not tested"})
            continue
        r = hit.iloc[0]
        oriented = r["effect"] if r["group_a"] == e.group else 1.0 / r["effect"]
        rows.append({"planted": f"{e.action} / {e.group} vs {e.reference} / {e.part}",
                     "planted_or": float(np.exp(e.log_or)), "estimated_or": oriented, "p_adj": r["p_adj"],
                     "right_direction": bool(np.isfinite(oriented) and (oriented > 1) == (e.log_or > 0)),
                     "note": r["note"] if isinstance(r["note"], str) else ""})
    return pd.DataFrame(rows)


def percent_time_error(truth: pd.DataFrame, detected: pd.DataFrame) -> pd.DataFrame:
    """Per simulated action: mean true and detected percent time and their mean absolute difference (pp)."""
    both = truth[["participant_id", "action", "percent_time"]].merge(
        detected[["participant_id", "action", "percent_time"]], on=["participant_id", "action"],
        how="left", suffixes=("_true", "_detected"))
    both["percent_time_detected"] = both["percent_time_detected"].fillna(0.0)  # an action the model lacks
    both["abs_error"] = (both["percent_time_detected"] - both["percent_time_true"]).abs()
    return (both.groupby("action", sort=True)
            .agg(true_pct=("percent_time_true", "mean"), detected_pct=("percent_time_detected", "mean"),
                 mae_pp=("abs_error", "mean"))
            .reset_index())


def run_demo(out: Path = DEFAULT_OUT, *, seed: int = 0, groups: dict[str, int] | None = None,
             seconds: float = 60.0, workers: int = 1) -> DemoResult:
    """Simulate a cohort under ``out/cohort``, run the flow into ``out/run``, compare with the truth. Prints nothing."""
    out = Path(out)
    config = CohortConfig(groups=dict(groups or DEMO_GROUPS), seconds=seconds, seed=seed)
    cohort_dir = out / "cohort"
    write_cohort(config, cohort_dir, workers=workers)
    # No read-out parameters: the flow reads out the way the checkpoint was calibrated (its provenance).
    params = CohortAnalysisParams(manifest=cohort_dir / "manifest.csv", out=out / "run", weights="demo",
                                  statistics={"groups": list(config.groups), "top_actions": 0, "covariates": ["age"]})
    summary = run_cohort_analysis(params)
    results = pd.read_parquet(out / "run" / "hurdle" / "results.parquet")
    check = planted_check(pd.read_csv(cohort_dir / "truth" / "effects.csv"), results)
    agreement = percent_time_error(pd.read_parquet(cohort_dir / "truth" / "percent_time.parquet"),
                                   pd.read_parquet(out / "run" / "readout" / "cohort.parquet"))
    return DemoResult(summary=summary, check=check, agreement=agreement, report=Path(summary["report"]))


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__.split("\n\n")[0], prog="python -m flows.demo")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="simulation seed")
    parser.add_argument("--per-group", type=int, default=8, metavar="N", help="participants per group (ASD, PSY, TDC)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each simulated recording")
    parser.add_argument("--workers", type=int, default=2, help="participants rendered in parallel")
    args = parser.parse_args(argv)
    setup_console(verbose=args.verbose, quiet=args.quiet)  # no HTTP request lines; Prefect's INFO at -v
    with flow_errors("flows.demo", verbose=args.verbose), handle_errors("flows.demo"):
        check_output_dir(args.out)
        with direct_run_settings():
            result = run_demo(args.out, seed=args.seed, groups={g: args.per_group for g in DEMO_GROUPS},
                              seconds=args.seconds, workers=args.workers)
    report_written(result.summary["cohort"], "cohort table")
    report_written(result.report, "report")
    with pd.option_context("display.width", 160, "display.max_columns", 12):
        print("\nPercent time, detected vs planted truth (percentage points, over participants):")
        print(result.agreement.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
        print("\nPlanted group effects and how the analysis recovered them (odds ratios, planted group vs reference):")
        print(result.check.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"\nThe model was trained on simulated data only ({result.summary['trained_on']}): a demonstration, "
          f"not for clinical interpretation.\nOpen {result.report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
