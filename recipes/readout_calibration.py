"""Per-class read-out thresholds chosen against per-frame ground truth (the ``per-class`` rule).

A model's probabilities are not calibrated per class: one action spills into neighbouring frames
(over-read at tau = 0.5), another rarely reaches 0.5 (under-read). Where recordings with per-frame
truth exist (annotated sessions, or the simulator's cohorts), each action's threshold can be chosen
so that the read-out agrees with the truth on what the statistics use:

    cost[a](thr) = MAE[a](thr) + engagement_weight * disagree[a](thr)

    MAE[a]      mean over participants of |pred_pct - true_pct| in percentage points
                (:func:`pipeline.agreement.percent_time_agreement`)
    disagree[a] share of participants whose "any engagement" differs: (pred_pct > 0) != (true_pct > 0),
                the outcome of the hurdle's first part (analysis.hurdle)

``engagement_weight`` is in percentage points per unit share: at the default 5, reading one
participant in twenty as engaged when they are not (or the reverse) costs as much as 0.25 pp of
MAE. With weight 0 only the percent-time error counts.

Search: coordinate descent, once per candidate minimum segment duration (``min_durations``; the
total cost over all actions picks one, since a minimum duration drops brief spurious detections
that would otherwise make a participant "engaged"). All thresholds start at ``base.threshold``;
each action in turn takes the grid value of least cost (ties: the value nearest the start, so a flat
cost leaves the threshold where it was), with the other actions' thresholds fixed; ``rounds`` passes, because thresholds
interact under the ``per-class`` rule (a frame takes the highest-scoring class among those passing,
so lowering one action's threshold can take frames from another). Every evaluation re-runs the real
read-out (:func:`pipeline.readout.read_out_video`) on window probabilities loaded once.

Choose thresholds on recordings that are not the ones you report on (the demo model's are chosen
on a calibration split of their own seed, :mod:`recipes.demo_model`).

CLI::

    python -m recipes.readout_calibration --windows run/recognize --manifest cal/manifest.csv \\
        --gt-frames cal/truth/frames --out cal/readout_calibration [--scores interpolate]

writes ``thresholds.json`` (for ``python -m pipeline.aggregate --rule per-class --thresholds``),
``readout.json`` (the whole chosen read-out, minimum duration included) and ``calibration.csv`` (per
action: threshold, MAE, bias and engagement disagreement before and after).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from model.preprocessing import ClassList
from pipeline.agreement import FrameTruth, index_frame_truth, percent_time_agreement, read_frame_truth
from pipeline.aggregate import read_cohort_windows, windows_dir_of
from pipeline.artifacts import atomic_write_text
from pipeline.cli import (EXIT_OK, BadInput, check_output_dir, handle_errors, make_parser, progress, report_written,
                          setup_logging)
from pipeline.frame_scores import SCORE_METHODS
from pipeline.manifest import Manifest, read_manifest
from pipeline.readout import ClassListMismatch, ReadoutConfig, ReadoutError, WindowArrays, read_out_video, window_arrays

__all__ = ["DEFAULT_GRID", "Calibration", "calibrate_thresholds", "main"]

DEFAULT_GRID: tuple[float, ...] = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8)
"""Candidate thresholds. Below 0.5 two classes can pass in one frame (the highest wins), above 0.8 a
short event rarely passes at all."""


@dataclass(frozen=True)
class Calibration:
    """Result of :func:`calibrate_thresholds`.

    Attributes
    ----------
    config : the read-out with the chosen per-class thresholds (rule ``per-class``)
    table : one row per action: action, threshold, then mae_pp, bias_pp, disagree for the start
        (``*_before``, every threshold at ``base.threshold``) and for the chosen thresholds
    participants : number of participants the costs were measured on
    """

    config: ReadoutConfig
    table: pd.DataFrame
    participants: int

    def summary(self) -> str:
        t = self.table
        return (f"min duration {self.config.min_duration_s:g} s; {self.participants} participants, {len(t)} actions: "
                f"worst MAE {t['mae_pp_before'].max():.2f} -> {t['mae_pp'].max():.2f} pp, "
                f"mean {t['mae_pp_before'].mean():.2f} -> {t['mae_pp'].mean():.2f} pp, "
                f"engagement disagreement {t['disagree_before'].mean():.3f} -> {t['disagree'].mean():.3f}")


def _load(manifest: Manifest, windows_dir: Path) -> tuple[dict[str, tuple[WindowArrays, float, int | None]], ClassList]:
    """Window arrays, fps and frame count of every video (one model); any unreadable video is BadInput."""
    files, failures, classes, _ = read_cohort_windows(manifest, windows_dir)
    if failures:
        raise BadInput(next(iter(failures.values())))
    if classes is None:
        raise BadInput("the manifest lists no videos")
    loaded = {}
    for vid, wf in files.items():
        try:
            loaded[vid] = (window_arrays(wf.table, len(classes), source=str(wf.path)), wf.fps, wf.frame_count)
        except (ClassListMismatch, ReadoutError) as exc:
            raise BadInput(str(exc)) from None
    return loaded, classes


def _measure(loaded, classes: ClassList, manifest: Manifest, truth: FrameTruth, config: ReadoutConfig) -> pd.DataFrame:
    """The agreement table (mae_pp, bias_pp, engagement_disagree, ...) of the read-out ``config``."""
    readouts = {vid: read_out_video(a, video_id=vid, fps=fps, classes=classes, config=config, num_frames=n)
                for vid, (a, fps, n) in loaded.items()}
    return percent_time_agreement(truth, manifest, readouts, classes)


def calibrate_thresholds(
    manifest: Manifest,
    windows_dir: str | Path,
    truth: pd.DataFrame,
    *,
    base: ReadoutConfig | None = None,
    grid: tuple[float, ...] = DEFAULT_GRID,
    engagement_weight: float = 5.0,
    rounds: int = 2,
    min_durations: tuple[float, ...] | None = None,
    show_progress: bool = False,
) -> Calibration:
    """Choose one threshold per action (module docstring) on windows with per-frame truth.

    Parameters
    ----------
    manifest : the recordings' manifest (participants and their videos)
    windows_dir : folder of ``<video_id>.parquet`` windows files (the recognition stage's output)
    truth : per-frame truth (:func:`pipeline.agreement.read_frame_truth`)
    base : read-out to start from: its ``scores``, ``threshold`` (start value), ``min_duration_s`` and
        ``merge_gap_s`` are kept; default: interpolated scores, 0.5, no minimum, no merging
    min_durations : candidate minimum segment durations in seconds, each searched in full; the one
        of least total cost is kept (default: ``base.min_duration_s`` only)
    grid : candidate thresholds, each in (0, 1]
    engagement_weight : pp of cost per unit share of engagement disagreement (>= 0)
    rounds : passes over the actions (>= 1)

    Raises
    ------
    BadInput : empty grid, bad weight or rounds, unreadable windows, truth without the manifest's videos
    """
    if base is None:
        base = ReadoutConfig(scores="interpolate")
    if not grid or any(not (0.0 < g <= 1.0) for g in grid):
        raise BadInput(f"threshold grid must be non-empty values in (0, 1], got {list(grid)}")
    if not engagement_weight >= 0 or rounds < 1:
        raise BadInput(f"engagement_weight must be >= 0 and rounds >= 1, got {engagement_weight}, {rounds}")
    loaded, classes = _load(manifest, Path(windows_dir))
    truth = index_frame_truth(truth, classes)  # once: the truth is the same for every read-out compared
    actions = [n for n, t in zip(classes.names, classes.taxonomy_ids) if t is not None]
    durations = tuple(min_durations) if min_durations else (base.min_duration_s,)
    if any(not (d >= 0) for d in durations):
        raise BadInput(f"minimum durations must be >= 0 s, got {list(durations)}")

    def cost(table: pd.DataFrame) -> pd.Series:
        return table["mae_pp"] + engagement_weight * table["engagement_disagree"]

    uniform = {a: float(base.threshold) for a in actions}
    start = _measure(loaded, classes, manifest, truth,
                     replace(base, rule="per-class", thresholds=uniform)).set_index("action")
    best_total = None
    for duration in durations:
        thr = dict(uniform)

        def config(th: dict[str, float], duration=duration) -> ReadoutConfig:
            return replace(base, rule="per-class", thresholds=dict(th), min_duration_s=float(duration))

        steps = [(r, a) for r in range(rounds) for a in actions]
        desc = f"calibrate thresholds (min duration {duration:g} s)"
        for _, a in (progress(steps, desc=desc, unit="action") if show_progress else steps):
            best = None
            for g in sorted(grid, key=lambda g: (abs(g - thr[a]), g)):
                table = _measure(loaded, classes, manifest, truth, config({**thr, a: g})).set_index("action")
                c = float(cost(table)[a])
                if best is None or c < best[0] - 1e-9:
                    best = (c, g)
            thr[a] = float(best[1])
        result = _measure(loaded, classes, manifest, truth, config(thr)).set_index("action")
        total = float(cost(result).sum())
        if best_total is None or total < best_total[0] - 1e-9:
            best_total = (total, config(thr), result)
    _, chosen, final = best_total
    thr = dict(chosen.thresholds)
    table = pd.DataFrame({
        "action": actions,
        "threshold": [thr[a] for a in actions],
        "mae_pp_before": start.loc[actions, "mae_pp"].to_numpy(),
        "mae_pp": final.loc[actions, "mae_pp"].to_numpy(),
        "bias_pp_before": start.loc[actions, "bias_pp"].to_numpy(),
        "bias_pp": final.loc[actions, "bias_pp"].to_numpy(),
        "disagree_before": start.loc[actions, "engagement_disagree"].to_numpy(),
        "disagree": final.loc[actions, "engagement_disagree"].to_numpy(),
    })
    return Calibration(config=chosen, table=table, participants=int(final["n_participants"].iloc[0]))


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def _grid(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise BadInput(f"--grid must be comma-separated numbers, got {text!r}") from None


def build_parser():
    p = make_parser(
        "Choose per-class read-out thresholds against per-frame ground truth (percent-time error plus "
        "'any engagement' disagreement, coordinate descent). Writes thresholds.json for "
        "'python -m pipeline.aggregate --rule per-class --thresholds' and calibration.csv. "
        "Exit status: 0 ok, 2 bad input.",
        prog="python -m recipes.readout_calibration",
    )
    p.add_argument("--windows", required=True, metavar="DIR", help="recognition output (windows/<video_id>.parquet)")
    p.add_argument("--manifest", required=True, metavar="FILE", help="manifest of the calibration recordings")
    p.add_argument("--gt-frames", required=True, metavar="PATH",
                   help="per-frame ground truth, a CSV/Parquet file or a folder of them (video_id,frame,action)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--scores", choices=SCORE_METHODS, default="interpolate",
                   help="per-frame scores the thresholds are for (use the same with pipeline.aggregate)")
    p.add_argument("--start", type=float, default=0.5, metavar="TAU", help="every threshold's starting value")
    p.add_argument("--grid", default=",".join(f"{g:g}" for g in DEFAULT_GRID), metavar="T1,T2,...",
                   help="candidate thresholds")
    p.add_argument("--engagement-weight", type=float, default=5.0, metavar="PP",
                   help="cost in percentage points of a unit share of participants whose 'any engagement' is "
                        "read wrongly")
    p.add_argument("--min-duration", default="0", metavar="S[,S...]",
                   help="minimum segment duration(s) in seconds, as pipeline.aggregate; several: each is searched "
                        "and the one of least total cost kept")
    p.add_argument("--merge-gap", type=float, default=0.0, metavar="S", help="as pipeline.aggregate (kept fixed)")
    p.add_argument("--rounds", type=int, default=2, help="passes over the actions")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(verbose=args.verbose, quiet=args.quiet)
    with handle_errors("recipes.readout_calibration"):
        out = check_output_dir(args.out)
        grid = _grid(args.grid)
        try:
            durations = tuple(float(x) for x in args.min_duration.split(",") if x.strip())
        except ValueError:
            raise BadInput(f"--min-duration must be comma-separated seconds, got {args.min_duration!r}") from None
        try:
            base = ReadoutConfig(scores=args.scores, threshold=args.start, merge_gap_s=args.merge_gap)
        except ValueError as exc:
            raise BadInput(str(exc)) from None
        manifest = read_manifest(args.manifest, check_videos=False)
        truth = read_frame_truth(args.gt_frames)
        cal = calibrate_thresholds(manifest, windows_dir_of(args.windows), truth, base=base, grid=grid,
                                   engagement_weight=args.engagement_weight, rounds=args.rounds,
                                   min_durations=durations, show_progress=True)
        out.mkdir(parents=True, exist_ok=True)
        written = [
            atomic_write_text(out / "thresholds.json", json.dumps(cal.config.thresholds, indent=1) + "\n"),
            atomic_write_text(out / "readout.json", json.dumps(cal.config.to_dict(), indent=1) + "\n"),
            atomic_write_text(out / "calibration.csv", cal.table.to_csv(index=False, float_format="%.4f")),
        ]
    for path in written:
        report_written(path)
    print(f"readout_calibration: {cal.summary()}; read out with --scores {args.scores} --rule per-class "
          f"--thresholds {written[0]} --min-duration {cal.config.min_duration_s:g}", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
