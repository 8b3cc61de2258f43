"""The ``cohort-analysis`` Prefect flow: manifest -> pose -> recognition -> read-out -> hurdle -> report.

Three ways to run it (docs/scale.md):

- a served deployment: ``python -m flows.serve`` then ``prefect deployment run cohort-analysis/default
  --param 'params={"manifest": "...", "out": "..."}' --watch``;
- directly, with a temporary Prefect server: ``python -m flows.cohort_analysis --manifest M --out DIR``;
- from Python: ``cohort_analysis(CohortAnalysisParams(manifest=..., out=...))``.

Every task is a thin wrapper over a stage's plain function, which does its own resume: an item whose
output sidecar records the same input hash and config is skipped (Prefect's own caching is off: its
default key includes the run id, and its INPUTS policy hashes a path by its string, so neither notices
a changed video). A rerun after a crash or after adding participants therefore redoes only what is
missing. One bad video fails alone (its QC row says why and it is left out); when more than
``max_failed_share`` of the videos fail, the flow fails and lists them.

Run folder (what :mod:`reports.run` reads)::

    <out>/manifest.csv            the manifest, video paths absolute
    <out>/pose/                   keypoints/<video_id>.parquet + qc.parquet/csv    (pipeline.pose)
    <out>/recognize/              windows/<video_id>.parquet + qc.parquet/csv      (pipeline.recognize)
    <out>/readout/                segments/, detections.csv, cohort.parquet, bouts.parquet, exclusions
    <out>/hurdle/                 results, table, plots                            (analysis.hurdle)
    <out>/report/index.html       the HTML report                                  (reports.build)
"""

# No `from __future__ import annotations` here: Prefect builds the flow's parameter model from the real
# annotation objects (string annotations leave it "not fully defined" in a served run's process).
import functools
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
from prefect import flow, get_run_logger, task, unmapped
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NONE as NO_CACHE
from prefect.settings import (
    PREFECT_SERVER_ANALYTICS_ENABLED,
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
    temporary_settings,
)

from analysis.cohort import load_cohort, validate_cohort
from analysis.config import HurdleConfig, OutputConfig
from analysis.hurdle import hurdle_analysis
from analysis.outputs import write_outputs as write_hurdle_outputs
from flows.params import CohortAnalysisParams
from flows.task_runners import RUNNERS, gpu_annotation, make_task_runner
from model.checkpoint import Checkpoint, load_checkpoint
from pipeline import aggregate as aggregate_stage
from pipeline.artifacts import atomic_write_text
from pipeline.manifest import Manifest, read_manifest
from pipeline.pose import POSE_STAGE, PoseConfig, VideoJob, keypoints_path, process_video
from pipeline.readout import ReadoutConfig, read_thresholds_file
from pipeline.recognize import RecognizeOptions, RecognizeStage, recognize_video
from pipeline.stage import ItemResult, write_qc_table
from reports.build import build_report

__all__ = ["cohort_analysis", "run_cohort_analysis", "main", "FlowFailed"]

log = logging.getLogger("flows.cohort_analysis")


class FlowFailed(RuntimeError):
    """Too many videos failed; the message lists them."""


# --------------------------------------------------------------------------------------------------
# Plain steps (testable without Prefect)
# --------------------------------------------------------------------------------------------------
def resolve_weights(weights: Path | None) -> Path:
    """The checkpoint to use: the given file, or the built-in demo model (simulated data only)."""
    if weights is not None:
        if not Path(weights).is_file():
            raise FileNotFoundError(f"params.weights: checkpoint not found: {weights}")
        return Path(weights)
    from pipeline.synthetic.demo_model import demo_checkpoint_path  # the demo model ships with the simulator

    return demo_checkpoint_path()


@functools.lru_cache(maxsize=4)
def _checkpoint(path: str, mtime_ns: int) -> Checkpoint:
    """One load per worker process and checkpoint file (keyed on its modification time too)."""
    return load_checkpoint(path)


def checkpoint_for(path: Path) -> Checkpoint:
    return _checkpoint(str(Path(path).resolve()), Path(path).stat().st_mtime_ns)


def write_run_manifest(manifest: Manifest, out: Path) -> Path:
    """The manifest as the run used it (absolute video paths), so the report and reruns read the same."""
    table = manifest.participants.merge(manifest.videos[["participant_id", "video", "video_id"]], on="participant_id")
    cols = ["participant_id", "group", "video", "video_id", *manifest.covariates]
    return atomic_write_text(out / "manifest.csv", table[cols].to_csv(index=False))


def failed_videos(results: dict[str, ItemResult]) -> dict[str, str]:
    return {vid: (r.error or "failed") for vid, r in results.items() if r.status == "failed"}


def check_failure_share(failures: dict[str, str], total: int, max_share: float) -> None:
    """Raise :class:`FlowFailed` when more than ``max_share`` of ``total`` videos failed."""
    if total and len(failures) / total > max_share:
        listing = "; ".join(f"{vid}: {err}" for vid, err in sorted(failures.items()))
        raise FlowFailed(f"{len(failures)} of {total} videos failed (more than {max_share:.0%}): {listing}")


def readout_config(params: CohortAnalysisParams) -> ReadoutConfig:
    s = params.readout
    thresholds = read_thresholds_file(s.thresholds_file) if s.thresholds_file else dict(s.thresholds)
    return ReadoutConfig(rule=s.rule, threshold=s.threshold, thresholds=thresholds,
                         min_duration_s=s.min_duration, merge_gap_s=s.merge_gap, scores=s.scores)


def readout_settings(config: ReadoutConfig) -> dict:
    """The flow's ``readout`` parameters for a read-out (the inverse of :func:`readout_config`)."""
    return {"scores": config.scores, "rule": config.rule, "threshold": config.threshold,
            "thresholds": dict(config.thresholds), "min_duration": config.min_duration_s,
            "merge_gap": config.merge_gap_s}


def hurdle_config(params: CohortAnalysisParams) -> HurdleConfig:
    s = params.statistics
    return HurdleConfig(groups=tuple(s.groups), top_actions=s.top_actions,
                        actions=tuple(s.actions) if s.actions else None, covariates=tuple(s.covariates),
                        correction=s.correction, family=s.family, ignore_other_groups=True)


def significant_summary(results: pd.DataFrame, alpha: float = 0.05) -> str:
    """Markdown: the tests with adjusted p below ``alpha`` (the run's headline)."""
    if results.empty:
        return "No tests could be run."
    sig = results[results["p_adj"] < alpha].sort_values("p_adj")
    lines = [f"**{len(sig)} of {int(results['p_adj'].notna().sum())} tests** significant at adjusted p < {alpha}.", ""]
    if len(sig):
        lines += ["| action | part | contrast | odds ratio | p_adj |", "|---|---|---|---|---|"]
        for _, r in sig.iterrows():
            lines.append(f"| {r['action']} | {r['part']} | {r['contrast']} | {r['effect']:.2f} | {r['p_adj']:.3g} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Tasks: thin wrappers (no Prefect caching: the stages resume from their sidecars)
# --------------------------------------------------------------------------------------------------
@task(name="validate-manifest", cache_policy=NO_CACHE)
def validate_manifest(params: CohortAnalysisParams) -> Manifest:
    if not Path(params.manifest).is_file():
        raise FileNotFoundError(f"params.manifest: manifest not found: {params.manifest}")
    return read_manifest(params.manifest, check_videos=False)


@task(name="pose", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def pose_task(job: VideoJob) -> ItemResult:
    return process_video(job)


@task(name="recognize", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def recognize_task(video: str, keypoints: str, weights: str, out_dir: str, options: RecognizeOptions,
                   video_id: str) -> ItemResult:
    # Tasks in threads of one process share the cached checkpoint; pipeline.recognize prepares a shared
    # model once, under its own lock, so concurrent calls are safe.
    return recognize_video(video, keypoints, checkpoint_for(Path(weights)), out_dir, options=options,
                           video_id=video_id)


@task(name="read-out", cache_policy=NO_CACHE)
def readout_task(manifest_path: Path, windows_dir: Path, out_dir: Path, config: ReadoutConfig) -> Path:
    manifest = read_manifest(manifest_path, check_videos=False)
    result = aggregate_stage.aggregate(manifest, windows_dir, config)
    aggregate_stage.write_outputs(result, out_dir)
    return out_dir / "cohort.parquet"


@task(name="hurdle", cache_policy=NO_CACHE)
def hurdle_task(cohort_path: Path, out_dir: Path, config: HurdleConfig) -> pd.DataFrame:
    cohort = validate_cohort(load_cohort(cohort_path), config, source=str(cohort_path))
    config = replace(config, groups=tuple(g for g in config.groups if g in set(cohort["group"])))
    results = hurdle_analysis(cohort, config, validate=False)
    write_hurdle_outputs(results, cohort, config, OutputConfig(), out_dir, source=cohort_path)
    return results


@task(name="report", cache_policy=NO_CACHE)
def report_task(run_dir: Path, out_dir: Path, reference_group: str | None, show_paths: bool) -> Path:
    return build_report(run_dir, out_dir, reference_group=reference_group, show_paths=show_paths)


# --------------------------------------------------------------------------------------------------
# The flow
# --------------------------------------------------------------------------------------------------
@flow(name="cohort-analysis", log_prints=False, validate_parameters=True)
def cohort_analysis(params: CohortAnalysisParams) -> dict:
    """Videos of a cohort to percent time per micro-action, group statistics and an HTML report."""
    logger = get_run_logger()
    out = Path(params.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    manifest = validate_manifest(params)
    write_run_manifest(manifest, out)
    weights = resolve_weights(params.weights)
    ckpt = checkpoint_for(weights)
    videos = manifest.videos.to_dict("records")
    n = len(videos)

    # Pose on the frames the checkpoint's windows sample (the plan travels with the weights).
    pose_cfg = PoseConfig(frames=params.pose.frames, plan=ckpt.plan)
    pose_dir = out / "pose"
    pose_jobs = [VideoJob(v["video"], v["video_id"], str(pose_dir), pose_cfg, v["roi"]) for v in videos]
    progress = create_progress_artifact(progress=0.0, key="cohort-progress",
                                        description="videos through pose and recognition")
    pose_results: dict[str, ItemResult] = {}
    for job, fut in zip(pose_jobs, pose_task.map(pose_jobs)):
        pose_results[job.video_id] = fut.result()
        update_progress_artifact(progress, 50.0 * len(pose_results) / max(n, 1))
    write_qc_table(POSE_STAGE, [pose_results[j.video_id].qc for j in pose_jobs], pose_dir)

    # Recognition on the videos that have keypoints; GPU tasks go to GPU workers under Dask.
    rec_dir = out / "recognize"
    options = RecognizeOptions(device=params.recognition.device, batch_size=params.recognition.batch_size,
                               amp=params.recognition.amp, compile=params.recognition.compile,
                               min_valid=params.recognition.min_valid, workers=0)
    todo = [v for v in videos if pose_results[v["video_id"]].status != "failed"]
    with gpu_annotation(params.recognition.device):
        futures = recognize_task.map([v["video"] for v in todo],
                                     [str(keypoints_path(pose_dir, v["video_id"])) for v in todo],
                                     unmapped(str(weights)), unmapped(str(rec_dir)), unmapped(options),
                                     [v["video_id"] for v in todo])
    rec_results: dict[str, ItemResult] = {}
    for v, fut in zip(todo, futures):
        rec_results[v["video_id"]] = fut.result()
        update_progress_artifact(progress, 50.0 + 50.0 * len(rec_results) / max(len(todo), 1))
    update_progress_artifact(progress, 100.0)
    if rec_results:
        write_qc_table(RecognizeStage(ckpt, options), [r.qc for r in rec_results.values()], rec_dir)

    failures = {**failed_videos(pose_results), **failed_videos(rec_results)}
    qc = pd.DataFrame([{"video_id": v["video_id"], "participant_id": v["participant_id"], "group": v["group"],
                        "pose": pose_results[v["video_id"]].status,
                        "recognition": rec_results[v["video_id"]].status if v["video_id"] in rec_results else "not run",
                        "error": failures.get(v["video_id"], "")} for v in videos])
    create_table_artifact(key="cohort-qc", table=qc.to_dict("records"), description="per-video QC of this run")
    if failures:
        logger.warning("%d of %d videos failed and are left out: %s", len(failures), n,
                       "; ".join(f"{k}: {e}" for k, e in sorted(failures.items())))
    check_failure_share(failures, n, params.max_failed_share)

    # Read-out, statistics, report.
    cohort_path = readout_task(out / "manifest.csv", rec_dir / "windows", out / "readout", readout_config(params))
    results = hurdle_task(cohort_path, out / "hurdle", hurdle_config(params))
    index = report_task(out, out / "report", params.report.reference_group, params.report.show_paths)

    create_markdown_artifact(key="cohort-results", markdown=significant_summary(results),
                             description="significant hurdle tests (adjusted p)")
    create_link_artifact(key="cohort-report", link=index.as_uri(), link_text="HTML report")
    logger.info("report: %s", index)
    return {"out": str(out), "report": str(index), "cohort": str(cohort_path), "videos": n,
            "failed": failures, "trained_on": ckpt.provenance.get("trained_on", "")}


def run_cohort_analysis(params: CohortAnalysisParams, *, task_runner: str = "threads", **runner_options) -> dict:
    """Run the flow in this process with the chosen task runner (see :mod:`flows.task_runners`)."""
    runner = make_task_runner(task_runner, **runner_options)
    return cohort_analysis.with_options(task_runner=runner)(params)


# --------------------------------------------------------------------------------------------------
# Command line: direct run without a deployment
# --------------------------------------------------------------------------------------------------
def direct_run_settings():
    """Prefect settings for a run without a deployment: a temporary server gets 120 s to start (the
    default 20 s is tight on 2 busy cores) and sends no analytics. Settings the user exported win."""
    updates = {}
    if "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" not in os.environ:
        updates[PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS] = 120
    if "PREFECT_SERVER_ANALYTICS_ENABLED" not in os.environ:
        updates[PREFECT_SERVER_ANALYTICS_ENABLED] = False
    return temporary_settings(updates=updates)


def build_parser():
    from pipeline.cli import make_parser

    parser = make_parser("Run the cohort-analysis flow directly (a temporary Prefect server is started).",
                         prog="python -m flows.cohort_analysis")
    parser.add_argument("--manifest", required=True, type=Path, help="cohort manifest (CSV or Parquet)")
    parser.add_argument("--out", required=True, type=Path, help="output folder (reruns resume in it)")
    parser.add_argument("--weights", type=Path, help="Micro-DualNet checkpoint (default: the demo model)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threshold", type=float, default=0.5, help="read-out threshold (rule 'threshold')")
    parser.add_argument("--groups", nargs="+", default=["ASD", "PSY", "TDC"], metavar="G",
                        help="groups to compare, in contrast order")
    parser.add_argument("--covariates", nargs="*", default=[], metavar="COL", help="covariates for the statistics")
    parser.add_argument("--max-failed-share", type=float, default=0.25, metavar="F",
                        help="fail the run when more than this share of videos fail")
    parser.add_argument("--task-runner", choices=RUNNERS, default="threads")
    parser.add_argument("--dask-workers", type=int, default=2, metavar="N")
    parser.add_argument("--dask-address", metavar="URL")
    parser.add_argument("--slurm-config", metavar="FILE")
    return parser


def main(argv: list[str] | None = None) -> int:
    from pipeline.cli import handle_errors, setup_logging

    args = build_parser().parse_args(argv)
    setup_logging(verbose=args.verbose, quiet=args.quiet)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per API call otherwise
    with handle_errors("flows.cohort_analysis"), direct_run_settings():
        try:
            params = CohortAnalysisParams(
                manifest=args.manifest, out=args.out, weights=args.weights, max_failed_share=args.max_failed_share,
                recognition={"device": args.device}, readout={"threshold": args.threshold},
                statistics={"groups": args.groups, "covariates": args.covariates})
        except ValueError as exc:
            print(f"flows.cohort_analysis: error: {str(exc).splitlines()[1:3]}", file=sys.stderr)
            return 2
        try:
            summary = run_cohort_analysis(params, task_runner=args.task_runner, n_workers=args.dask_workers,
                                          address=args.dask_address, slurm_config=args.slurm_config)
        except FlowFailed as exc:
            print(f"flows.cohort_analysis: error: {exc}", file=sys.stderr)
            return 1
    for name in ("cohort", "report"):
        print(f"wrote {name}: {summary[name]}")
    if summary["failed"]:
        print(f"{len(summary['failed'])} of {summary['videos']} videos failed and were left out (see the report's QC)")
        return 1
    return 0


if __name__ == "__main__":
    # Run the importable module's flow, not this __main__ copy: Dask workers outside this process (a SLURM
    # job, `dask worker`) unpickle the tasks by module name, and their __main__ is not this file.
    from flows.cohort_analysis import main as _main

    raise SystemExit(_main())
