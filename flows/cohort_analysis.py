"""The ``cohort-analysis`` Prefect flow: manifest -> pose -> recognition -> read-out -> hurdle -> report.

With human codings (the manifest's ``coding`` column or ``params.codings``; docs/codings.md, "In the
flow") two steps join: the codings are imported into ``RUN/codings`` before any pose work
(:mod:`pipeline.codings.plan`; read and checked at submission), and when ``RUN/codings`` exists the
validation against them (:func:`analysis.agreement.hook.run_validation`) runs after the read-out and
before the statistics, its summary the ``cohort-validation`` markdown artifact; the statistics'
error correction (``statistics.misclassification``) then reads ``RUN/validation``.

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

The run folder's layout is :class:`pipeline.run_folder.RunFolder` (docs/contracts.md, "Run folder").

Everything that can be checked before the first video is checked first, by :func:`prepare_run`
(the CLI calls it before starting a server, the flow before creating any folder): the parameters'
bounds (already by pydantic at submission), the manifest and its groups, the checkpoint (loadable,
and compatible with the pose settings and the read-out), the thresholds file, the statistics' and the
validation's settings and the human codings (every file read). A bad value fails within seconds, naming the field, with nothing written.
"""

# No `from __future__ import annotations` here: Prefect builds the flow's parameter model from the real
# annotation objects (string annotations leave it "not fully defined" in a served run's process).
import contextlib
import functools
import logging
import os
import platform
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
from pydantic import ValidationError
import prefect.runtime as prefect_runtime
from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NONE as NO_CACHE
from prefect.futures import as_completed
from prefect.settings import (
    PREFECT_SERVER_ANALYTICS_ENABLED,
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
    temporary_settings,
)

from analysis.agreement.config import AgreementConfig
from analysis.agreement.hook import has_codings, run_validation
from analysis.cohort import load_cohort, validate_cohort
from analysis.config import MISCLASSIFICATION, HurdleConfig, OutputConfig
from analysis.hurdle import hurdle_analysis
from analysis.outputs import write_outputs as write_hurdle_outputs
from flows.console import quiet_http_clients
from flows.params import CohortAnalysisParams
from flows.run_watch import watch_serving_process
from flows.task_runners import RUNNERS, gpu_annotation, make_task_runner
from model.checkpoint import Checkpoint, load_checkpoint
from pipeline import aggregate as aggregate_stage
from pipeline import native_stderr
from pipeline.artifacts import atomic_write_text, is_up_to_date, sha256_file
from pipeline.cli import BadInput
from pipeline.codings.plan import PlannedImport, read_planned, resolve_codings, write_planned
from pipeline.manifest import Manifest, check_manifest_groups, read_manifest
from pipeline.pose import POSE_STAGE, PoseConfig, VideoJob, process_video
from pipeline.readout import ReadoutConfig
from pipeline.run_folder import RunFolder
from pipeline.run_lock import RunLocked, run_lock
from pipeline.settings import SettingsError, add_arguments, args_values
from pipeline.recognize import RecognizeOptions, RecognizeStage, recognize_video
from pipeline.stage import ItemResult, write_qc_table
from reports.build import build_report, report_up_to_date

__all__ = ["cohort_analysis", "run_cohort_analysis", "prepare_run", "RunPlan", "RunRefused", "main", "FlowFailed"]

log = logging.getLogger("flows.cohort_analysis")


class FlowFailed(RuntimeError):
    """Too many videos failed; the message lists them."""


# --------------------------------------------------------------------------------------------------
# Plain steps (testable without Prefect)
# --------------------------------------------------------------------------------------------------
DEMO_WEIGHTS = "demo"
NO_WEIGHTS_HELP = (
    "a run needs a Micro-DualNet checkpoint (params.weights, --weights FILE): train one on MA-52 "
    "(python -m recipes.train, docs/training.md) or on the lab's own coded sessions; --weights demo names "
    "the built-in demo model, which was trained on simulated mannequins only and is not for real videos")


def resolve_weights(weights: Path | str | None) -> Path:
    """The checkpoint file to use: the given file, or the built-in demo model when ``weights`` is ``demo``.

    There is no default: a lab's videos read by the demo model (trained on simulated mannequins) would
    give numbers that look like results. ``demo`` is a name, not a path (a checkpoint file called
    ``demo`` is given as ``./demo``). Raises FileNotFoundError naming ``params.weights`` and where a real
    model comes from.
    """
    if weights is None:
        raise FileNotFoundError(f"params.weights: no checkpoint given; {NO_WEIGHTS_HELP}")
    if str(weights) == DEMO_WEIGHTS:
        from recipes.demo_model import demo_checkpoint_path  # the demo model ships with the simulator

        return demo_checkpoint_path()
    if not Path(weights).is_file():
        raise FileNotFoundError(f"params.weights: checkpoint not found: {weights}; {NO_WEIGHTS_HELP}")
    return Path(weights)


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
    return atomic_write_text(RunFolder(out).manifest, table[cols].to_csv(index=False))


def failed_videos(results: dict[str, ItemResult]) -> dict[str, str]:
    return {vid: (r.error or "failed") for vid, r in results.items() if r.status == "failed"}


def check_failure_share(failures: dict[str, str], total: int, max_share: float) -> None:
    """Raise :class:`FlowFailed` when more than ``max_share`` of ``total`` videos failed."""
    if total and len(failures) / total > max_share:
        listing = "; ".join(f"{vid}: {err}" for vid, err in sorted(failures.items()))
        raise FlowFailed(f"{len(failures)} of {total} videos failed (more than {max_share:.0%}): {listing}")


class RunRefused(ValueError):
    """A parameter or referenced file is unusable; the message names the field (``params.<field>``)."""


@dataclass(frozen=True)
class RunPlan:
    """What :func:`prepare_run` checked and resolved: everything the flow needs before its first video."""

    folder: RunFolder
    manifest: Manifest
    weights: Path
    checkpoint: Checkpoint
    pose: PoseConfig
    recognition: RecognizeOptions
    readout: ReadoutConfig
    readout_sources: dict
    statistics: HurdleConfig
    validation: AgreementConfig = AgreementConfig()
    codings: PlannedImport | None = None  # the codings to import (read and checked), None: nothing to import


def prepare_run(params: CohortAnalysisParams) -> RunPlan:
    """Check and resolve everything before any work (module docstring); :class:`RunRefused` naming the field."""
    if not Path(params.manifest).is_file():
        raise RunRefused(f"params.manifest: manifest not found: {params.manifest}")
    try:
        manifest = read_manifest(params.manifest, check_videos=False)
    except ValueError as exc:
        raise RunRefused(f"params.manifest: {' '.join(str(exc).split())}") from None
    try:
        check_manifest_groups(manifest, params.statistics.groups)
    except ValueError as exc:
        raise RunRefused(f"params.{exc}") from None
    try:
        weights = resolve_weights(params.weights)
        ckpt = checkpoint_for(weights)
    except (OSError, ValueError) as exc:  # CheckpointError is a ValueError
        msg = " ".join(str(exc).split())
        raise RunRefused(msg if msg.startswith("params.weights") else f"params.weights: {msg}") from None
    try:  # the checkpoint's calibrated read-out is the default; the user's fields override it
        try:
            base = ReadoutConfig.record_fields(ckpt.provenance.get("readout"))
        except (TypeError, ValueError) as exc:
            raise SettingsError(f"readout: the checkpoint's calibrated read-out (provenance.readout) is not valid: {exc}") from None
        resolved = params.readout.settings(base=base, base_name="checkpoint", stage="readout")
        readout = resolved.settings.resolved()
        readout.check_classes(ckpt.classes)
        if readout.rule == "background" and ckpt.classes.background_index is None:
            raise SettingsError("readout.rule: 'background' needs a model with a background class; "
                                f"{weights} has none")
    except SettingsError as exc:
        raise RunRefused(f"params.{exc}") from None
    try:
        pose = params.pose.settings(stage="pose").settings.config(plan=ckpt.plan, plan_from_checkpoint=True)
        # the schema admits cpu/cuda/cuda:N only; availability is the worker's to check (GPU workers)
        recognition = params.recognition.settings(stage="recognition").settings.options(workers=0)
        statistics = hurdle_config(params)
    except SettingsError as exc:
        raise RunRefused(f"params.{exc}") from None
    except ValueError as exc:
        raise RunRefused(f"params: {' '.join(str(exc).split())}") from None
    folder = RunFolder(Path(params.out).resolve())
    codings = plan_codings(params, manifest)
    try:
        validation = params.validation.settings(stage="validation").settings
        statistics = statistics_validation(statistics, folder, codings is not None or has_codings(folder))
    except SettingsError as exc:
        raise RunRefused(f"params.{exc}") from None
    except ValueError as exc:
        raise RunRefused(f"params.validation: {' '.join(str(exc).split())}") from None
    return RunPlan(folder=folder, manifest=manifest, weights=weights, checkpoint=ckpt,
                   pose=pose, recognition=recognition, readout=readout, readout_sources=resolved.sources,
                   statistics=statistics, validation=validation, codings=codings)


def plan_codings(params: CohortAnalysisParams, manifest: Manifest) -> PlannedImport | None:
    """The human codings to import (:mod:`pipeline.codings.plan`: the manifest's ``coding`` column or
    ``params.codings``), every file read and checked now; None when the run names none. A bad coding
    is :class:`RunRefused` naming the parameter and the file (nothing is written)."""
    try:
        plan = resolve_codings(manifest, folder=params.codings, format=params.codings_format,
                               mapping=params.codings_mapping, coder=params.codings_coder,
                               allow_unmapped=params.codings_allow_unmapped,
                               close_open_states=params.codings_close_open_states, fps=params.codings_fps)
        return None if plan is None else read_planned(plan, manifest)
    except BadInput as exc:
        raise RunRefused(f"params.{' '.join(str(exc).split())}") from None


def statistics_validation(config: HurdleConfig, folder: RunFolder, coded: bool) -> HurdleConfig:
    """The statistics' settings with the validation folder the error correction reads: with
    ``misclassification`` other than none and no ``statistics.validation`` given, the run's own
    ``RUN/validation``, which needs codings (imported by this run or already in ``RUN/codings``).

    Refused (:class:`SettingsError` naming the field) where the correction could not run after all the
    work: no codings; a given folder without ``confusion.parquet`` (and, for ``pacc``, without the
    per-frame score sums ``scores.parquet``; the run's own validation writes both)."""
    if config.misclassification == "none":
        return config
    if config.validation is not None:
        given = Path(config.validation)
        for name in ("confusion.parquet", *(("scores.parquet",) if config.misclassification == "pacc" else ())):
            if not (given / name).is_file():
                raise SettingsError(f"statistics.validation: no {name} in {given} (python -m analysis.agreement writes "
                                    "confusion.parquet; pacc also needs scores.parquet)")
        return config
    if not coded:
        raise SettingsError(f"statistics.misclassification: {config.misclassification} corrects for the read-out's "
                            "errors measured against human codings, and this run has none: give codings (params.codings, "
                            "or a 'coding' column in the manifest), or statistics.validation (a validation folder)")
    return replace(config, validation=str(folder.validation))


def hurdle_config(params: CohortAnalysisParams) -> HurdleConfig:
    """The statistics' settings: the user's fields over the flow's own default (other groups are
    dropped, not refused: a manifest may hold groups the run does not compare)."""
    return params.statistics.settings(base={"ignore_other_groups": True}, base_name="flow", stage="statistics").settings


def statistics_up_to_date(cohort_path: Path, out_dir: Path, config: HurdleConfig) -> bool:
    """Whether ``out_dir`` holds these statistics of this cohort table: the results' sidecar records the
    table's sha256 and the same settings (what :func:`analysis.outputs.write_outputs` records).

    Never with ``misclassification`` other than none: the results then depend on the validation
    folder's error rates too, which the sidecar does not record, so they are fitted again."""
    if config.misclassification != "none":
        return False
    return is_up_to_date(Path(out_dir) / "results.parquet", input_hash=sha256_file(cohort_path),
                         config={"analysis": config, "output": OutputConfig()}, contract="hurdle_results")


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


def report_pointer(index: Path, run_root: Path) -> str:
    """Markdown for the ``cohort-report`` artifact: the report's path to copy (a ``file://`` link from the
    UI is refused by browsers and names the serving machine's disk) and the command that serves it."""
    host = platform.node() or "the machine that ran the flow"
    return "\n".join([
        f"**HTML report** (self-contained; on `{host}`):", "", "```", str(index), "```", "",
        "Open it in a browser on that machine, copy the folder elsewhere, or serve it on localhost:", "",
        "```", f"python -m reports.serve {run_root}", "```", "",
        "(then http://127.0.0.1:8765/ there, or through `ssh -L 8765:127.0.0.1:8765` from another machine)"])


def qc_rows(videos: list[dict], pose_results: dict[str, ItemResult], rec_results: dict[str, ItemResult]) -> list[dict]:
    """The ``cohort-qc`` table: one row per video; a stage not reached yet says ``pending``."""
    failures = {**failed_videos(pose_results), **failed_videos(rec_results)}
    rows = []
    for v in videos:
        vid = v["video_id"]
        pose = pose_results[vid].status if vid in pose_results else "pending"
        rec = (rec_results[vid].status if vid in rec_results else
               "not run" if pose == "failed" else "pending")
        rows.append({"video_id": vid, "participant_id": v["participant_id"], "group": v["group"], "pose": pose,
                     "recognition": rec, "error": failures.get(vid, "")})
    return rows


def publish_qc(videos, pose_results, rec_results) -> None:
    create_table_artifact(key="cohort-qc", table=qc_rows(videos, pose_results, rec_results),
                          description="per-video QC of this run (updated as videos finish)")


class VideoProgress:
    """The ``cohort-progress`` artifact: videos through pose and recognition, counted as they finish.

    progress = 100 * (videos done with pose + videos done with recognition) / (2 * videos); a video
    whose pose failed counts as done for recognition. The description gives the counts and an ETA from
    the mean time per finished step so far (pose steps are slower than recognition's, so the ETA is
    conservative while pose runs). The QC table artifact is republished at most every ``qc_every_s``
    seconds and when a stage ends.
    """

    def __init__(self, n: int, qc_every_s: float = 10.0) -> None:
        self.n, self.counts, self.t0 = n, {"pose": 0, "recognition": 0}, time.monotonic()
        self.qc_every_s, self._qc_at = qc_every_s, 0.0
        self.id = create_progress_artifact(progress=0.0, key="cohort-progress", description=self.describe())

    def describe(self, eta_s: float | None = None) -> str:
        eta = "" if eta_s is None else f"; about {_duration(eta_s)} left"
        return (f"videos finished: pose {self.counts['pose']}/{self.n}, "
                f"recognition {self.counts['recognition']}/{self.n}{eta}")

    def _update(self) -> None:
        done, total = sum(self.counts.values()), 2 * max(self.n, 1)
        elapsed = time.monotonic() - self.t0
        eta = elapsed / done * (total - done) if 0 < done < total else None
        update_progress_artifact(self.id, 100.0 * done / total, description=self.describe(eta))
        log.info("progress: %s", self.describe(eta))

    def skip(self, stage: str, count: int) -> None:
        self.counts[stage] += count

    def finished(self, stage: str, videos: list[dict], expected: int, pose_results: dict | None = None):
        """The callback for :func:`bounded_map`: count one video, update progress, now and then the QC."""
        def on_done(vid: str, results: dict[str, ItemResult]) -> None:
            self.counts[stage] += 1
            self._update()
            last = len(results) == expected
            if time.monotonic() - self._qc_at >= self.qc_every_s or last:
                self._qc_at = time.monotonic()
                pose, rec = (results, {}) if stage == "pose" else (pose_results, results)
                publish_qc(videos, pose, rec)
        return on_done

    def done(self) -> None:
        self.counts = {"pose": self.n, "recognition": self.n}
        update_progress_artifact(self.id, 100.0, description=self.describe())


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{seconds:.0f} s" if seconds < 90 else f"{minutes} min" if minutes < 90 else f"{minutes / 60:.1f} h"


def bounded_map(submit, keys: list[str], limit: int, on_done=None) -> dict[str, ItemResult]:
    """``submit(key)`` for every key with at most ``limit`` futures unfinished at a time; results by key.

    Prefect's ``.map`` submits everything at once, so every pose task started together (memory: one
    decoded video and one MediaPipe graph each) and none finished until all did. Here a new task is
    submitted as one finishes, and ``on_done(key, results_so_far)`` runs in finishing order.
    """
    results: dict[str, ItemResult] = {}
    queue, pending = list(keys), {}
    while queue or pending:
        while queue and len(pending) < limit:
            key = queue.pop(0)
            pending[submit(key)] = key
        fut = next(as_completed(list(pending)))
        key = pending.pop(fut)
        results[key] = fut.result()
        if on_done is not None:
            on_done(key, results)
    return results


# --------------------------------------------------------------------------------------------------
# Tasks: thin wrappers (no Prefect caching: the stages resume from their sidecars)
# --------------------------------------------------------------------------------------------------
@task(name="check-parameters", cache_policy=NO_CACHE)
def check_parameters(params: CohortAnalysisParams) -> RunPlan:
    return prepare_run(params)


@task(name="pose", task_run_name="pose-{job.video_id}", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def pose_task(job: VideoJob) -> ItemResult:
    return process_video(job)


@task(name="recognize", task_run_name="recognize-{video_id}", cache_policy=NO_CACHE, retries=1,
      retry_delay_seconds=5)
def recognize_task(video: str, keypoints: str, weights: str, out_dir: str, options: RecognizeOptions,
                   video_id: str) -> ItemResult:
    # Tasks in threads of one process share the cached checkpoint; pipeline.recognize prepares a shared
    # model once, under its own lock, so concurrent calls are safe.
    return recognize_video(video, keypoints, checkpoint_for(Path(weights)), out_dir, options=options,
                           video_id=video_id)


@task(name="read-out", cache_policy=NO_CACHE)
def readout_task(manifest_path: Path, windows_dir: Path, out_dir: Path, config: ReadoutConfig,
                 sources: dict | None = None) -> Path:
    manifest = read_manifest(manifest_path, check_videos=False)
    if aggregate_stage.readout_up_to_date(manifest, windows_dir, out_dir, config, sources):
        get_run_logger().info("read-out up to date (same windows, manifest and settings): skipped")
        return out_dir / "cohort.parquet"
    result = aggregate_stage.aggregate(manifest, windows_dir, config, sources=sources)
    aggregate_stage.write_outputs(result, out_dir)
    return out_dir / "cohort.parquet"


@task(name="hurdle", cache_policy=NO_CACHE)
def hurdle_task(cohort_path: Path, out_dir: Path, config: HurdleConfig) -> pd.DataFrame:
    cohort = validate_cohort(load_cohort(cohort_path), config, source=str(cohort_path))
    config = replace(config, groups=tuple(g for g in config.groups if g in set(cohort["group"])))
    if statistics_up_to_date(cohort_path, out_dir, config):
        get_run_logger().info("statistics up to date (same cohort table and settings): skipped")
        return pd.read_parquet(Path(out_dir) / "results.parquet")
    results = hurdle_analysis(cohort, config, validate=False)
    write_hurdle_outputs(results, cohort, config, OutputConfig(), out_dir, source=cohort_path)
    return results


@task(name="import-codings", cache_policy=NO_CACHE)
def codings_task(imported: PlannedImport, out_dir: Path) -> list[Path]:
    written = write_planned(imported, out_dir)
    logger = get_run_logger()
    logger.info("%s", imported.result.summary())
    if not written:
        logger.info("codings up to date (same coding files, mapping, manifest and options): skipped")
    return written


@task(name="validation", cache_policy=NO_CACHE)
def validation_task(run: RunFolder, settings: AgreementConfig) -> dict:
    summary = run_validation(run, settings)
    if summary.get("skipped"):
        get_run_logger().info("validation up to date (same codings, read-out and settings): skipped")
    return summary


@task(name="report", cache_policy=NO_CACHE)
def report_task(run_dir: Path, out_dir: Path, reference_group: str | None, show_paths: bool) -> Path:
    if report_up_to_date(run_dir, out_dir, reference_group=reference_group, show_paths=show_paths):
        get_run_logger().info("report up to date (same inputs and settings): skipped")
        return Path(out_dir) / "index.html"
    return build_report(run_dir, out_dir, reference_group=reference_group, show_paths=show_paths)


# --------------------------------------------------------------------------------------------------
# The flow
# --------------------------------------------------------------------------------------------------
@flow(name="cohort-analysis", log_prints=False, validate_parameters=True)
def cohort_analysis(params: CohortAnalysisParams) -> dict:
    """Videos of a cohort to percent time per micro-action, group statistics and an HTML report."""
    logger = get_run_logger()
    watch_serving_process(prefect_runtime.flow_run.id)  # a served run ends (Crashed) with its serving process
    quiet_http_clients()  # no line per API call in the serve log
    native_stderr.install()  # MediaPipe's start-up noise filtered once, before the pose threads start
    plan = check_parameters(params)  # before any folder exists: a bad value fails here, naming the field
    run_id = str(prefect_runtime.flow_run.id or "")
    with run_lock(plan.folder.root, run_id=run_id, command="cohort-analysis flow") as lock:
        if lock.took_over is not None:
            logger.warning("took over the lock of %s from a run that ended without releasing it (%s); "
                           "resuming from its finished videos", plan.folder.root, lock.took_over.describe())
        return _run(params, plan, logger)  # one writer per run folder (pipeline.run_lock): a second run is refused


def _run(params: CohortAnalysisParams, plan: RunPlan, logger) -> dict:
    """The flow's body, with the run folder locked."""
    run, manifest, ckpt, weights = plan.folder, plan.manifest, plan.checkpoint, plan.weights
    out = run.root
    write_run_manifest(manifest, out)
    if plan.codings is not None:  # read and checked at submission; written before any recognition work
        codings_task(plan.codings, run.codings)
    videos = manifest.videos.to_dict("records")
    n = len(videos)

    # Pose on the frames the checkpoint's windows sample (the plan travels with the weights), then
    # recognition on the videos that have keypoints (GPU tasks go to GPU workers under Dask). At most
    # params.max_concurrent_videos per stage at once; progress and QC count videos as they finish.
    pose_dir, rec_dir, options = run.pose, run.recognize, plan.recognition
    by_id = {v["video_id"]: v for v in videos}
    tracker = VideoProgress(n)
    pose_jobs = {v["video_id"]: VideoJob(v["video"], v["video_id"], str(pose_dir), plan.pose, v["roi"])
                 for v in videos}
    pose_results = bounded_map(lambda vid: pose_task.submit(pose_jobs[vid]), list(pose_jobs),
                               params.max_concurrent_videos, tracker.finished("pose", videos, n))
    write_qc_table(POSE_STAGE, [pose_results[vid].qc for vid in pose_jobs], pose_dir)

    todo = [vid for vid in pose_jobs if pose_results[vid].status != "failed"]
    tracker.skip("recognition", n - len(todo))

    def submit_recognition(vid: str):
        with gpu_annotation(params.recognition.device):
            return recognize_task.submit(by_id[vid]["video"], str(run.keypoints_file(vid)), str(weights),
                                         str(rec_dir), options, vid)

    rec_results = bounded_map(submit_recognition, todo, params.max_concurrent_videos,
                              tracker.finished("recognition", videos, len(todo), pose_results))
    tracker.done()
    if rec_results:
        write_qc_table(RecognizeStage(ckpt, options), [rec_results[vid].qc for vid in todo], rec_dir)

    failures = {**failed_videos(pose_results), **failed_videos(rec_results)}
    publish_qc(videos, pose_results, rec_results)
    if failures:
        logger.warning("%d of %d videos failed and are left out: %s", len(failures), n,
                       "; ".join(f"{k}: {e}" for k, e in sorted(failures.items())))
    check_failure_share(failures, n, params.max_failed_share)

    # Read-out, validation against the human codings (when the run has any), statistics, report.
    cohort_path = readout_task(run.manifest, run.windows, run.readout, plan.readout, plan.readout_sources)
    if has_codings(run):
        validation = validation_task(run, plan.validation)
        create_markdown_artifact(key="cohort-validation", markdown=validation["markdown"],
                                 description="agreement of the model with the human coders (RUN/validation)")
    results = hurdle_task(cohort_path, run.hurdle, plan.statistics)
    report = params.report.settings(stage="report").settings
    index = report_task(out, run.report, report.reference_group, report.show_paths)

    create_markdown_artifact(key="cohort-results", markdown=significant_summary(results),
                             description="significant hurdle tests (adjusted p)")
    create_markdown_artifact(key="cohort-report", markdown=report_pointer(index, out),
                             description="where the HTML report is (copy the path; or serve it on localhost)")
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
@contextlib.contextmanager
def direct_run_settings() -> Iterator[None]:
    """Prefect settings and server for a run without a deployment, for the ``with`` block.

    A temporary server (:func:`flows.server.temporary_server`: a child with a death hook, so it goes
    with this process even on SIGKILL, which Prefect's own ephemeral server did not) gets 120 s to
    start (the default 20 s is tight on 2 busy cores) and sends no analytics. Settings the user
    exported win; a user's ``PREFECT_API_URL`` (environment or profile) means their server is used and
    none is started.
    """
    from flows.server import temporary_server
    from prefect.settings import PREFECT_API_URL

    updates = {}
    if "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" not in os.environ:
        updates[PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS] = 120
    if "PREFECT_SERVER_ANALYTICS_ENABLED" not in os.environ:
        updates[PREFECT_SERVER_ANALYTICS_ENABLED] = False
    with temporary_settings(updates=updates):
        if PREFECT_API_URL.value():
            yield
        else:
            with temporary_server(startup_timeout=PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()):
                yield


def build_parser():
    from pipeline.cli import make_parser

    parser = make_parser("Run the cohort-analysis flow directly (a temporary Prefect server is started).",
                         prog="python -m flows.cohort_analysis")
    parser.add_argument("--manifest", required=True, type=Path, help="cohort manifest (CSV or Parquet)")
    parser.add_argument("--out", required=True, type=Path, help="output folder (reruns resume in it)")
    parser.add_argument("--weights", type=Path, metavar="CKPT|demo",
                        help="Micro-DualNet checkpoint (required; 'demo' names the demo model trained on simulated data)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--groups", nargs="+", default=["ASD", "PSY", "TDC"], metavar="G",
                        help="groups to compare, in contrast order")
    parser.add_argument("--covariates", nargs="*", default=[], metavar="COL", help="covariates for the statistics")
    parser.add_argument("--max-failed-share", type=float, default=0.25, metavar="F",
                        help="fail the run when more than this share of videos fail")
    c = parser.add_argument_group("human codings (docs/codings.md, 'In the flow'; params.codings* in a deployment)")
    c.add_argument("--codings", type=Path, metavar="DIR",
                   help="folder (or file) of coding files to import into RUN/codings before recognition; or leave it "
                        "out and name a coding file per video in the manifest's 'coding' column")
    c.add_argument("--codings-format", choices=("boris", "elan", "observer", "csv"),
                   help="format of the codings (required with --codings; else the manifest's coding_format column or "
                        "the extension .boris / .eaf)")
    c.add_argument("--codings-mapping", type=Path, metavar="ETHOGRAM", help="ethogram mapping (CSV or YAML)")
    c.add_argument("--misclassification", choices=MISCLASSIFICATION, default="none",
                   help="correct percent time for the read-out's errors measured against the codings (RUN/validation)")
    parser.add_argument("--task-runner", choices=RUNNERS, default="threads")
    parser.add_argument("--dask-workers", type=int, default=2, metavar="N")
    parser.add_argument("--dask-address", metavar="URL")
    parser.add_argument("--slurm-config", metavar="FILE")
    g = parser.add_argument_group("read-out (defaults: the checkpoint's calibrated read-out, if it has one, else the "
                                  "values below; params.readout.* in a deployment)")
    add_arguments(g, ReadoutConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    from flows.console import flow_errors, setup_console
    from pipeline.cli import handle_errors

    args = build_parser().parse_args(argv)
    setup_console(verbose=args.verbose, quiet=args.quiet)  # no HTTP request lines; Prefect's INFO at -v
    try:  # before the server starts: a bad value is refused at once
        readout = args_values(ReadoutConfig, args)
        params = CohortAnalysisParams(
            manifest=args.manifest, out=args.out, weights=args.weights, max_failed_share=args.max_failed_share,
            recognition={"device": args.device}, readout=readout,
            codings=args.codings, codings_format=args.codings_format, codings_mapping=args.codings_mapping,
            statistics={"groups": args.groups, "covariates": args.covariates,
                        **({"misclassification": args.misclassification} if args.misclassification != "none" else {})})
    except ValidationError as exc:
        err = exc.errors()[0]
        print(f"flows.cohort_analysis: error: params.{'.'.join(map(str, err['loc']))}: {err['msg']}", file=sys.stderr)
        return 2
    try:  # everything checkable is checked before a server starts or a folder is made
        plan = prepare_run(params)
        held = run_lock(plan.folder.root, command="python -m flows.cohort_analysis")
        held.__enter__()  # refused at once, before a server starts, when another run holds the folder
    except (RunRefused, RunLocked) as exc:
        print(f"flows.cohort_analysis: error: {exc}", file=sys.stderr)
        return 2
    with contextlib.ExitStack() as stack:
        stack.push(held)  # released on leaving, however the run ends
        stack.enter_context(flow_errors("flows.cohort_analysis", verbose=args.verbose))
        stack.enter_context(handle_errors("flows.cohort_analysis"))
        stack.enter_context(direct_run_settings())
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
