"""The stage runner: the reusable part of every per-item stage (pose, recognition, read-out).

A stage turns each *item* (a video, an upstream artifact) into one or more artifacts and one QC row.
The stage supplies only what is specific to it (a :class:`Stage`); this module does the rest:

    for each job:  input hash -> config (+ stage version) -> up to date? -> compute -> QC row
                   skip              (is_up_to_date on the    (stage.compute writes atomically
                                      first output)             through ctx.write_artifact)
                   failure -> failed QC row, the item's earlier outputs of this stage removed
    jobs run in this process or in a spawned process pool whose workers die with the parent;
    QC rows merged into <out>/<qc_file>.parquet + .csv (rows of items not in this run are kept)

API (what a stage author needs)
-------------------------------
Job: any picklable object with attributes ``item_id`` (str, unique in a run, names the outputs),
``source`` (str, the input path, for messages and QC), ``out_dir`` (str) and ``force`` (bool: redo
even when up to date). :class:`Job` is a frozen dataclass with exactly these; subclass it (frozen) to
add stage fields, or give your own class these attributes (e.g. a property).

Stage: an object (picklable: it is sent to worker processes; a frozen dataclass or a module-level
instance) with

========================= ===========================================================================
``name``                  str: recorded as the sidecar's ``stage``; identifies this stage's files
``version``               int: bump when the stage's logic changes output for the same config
``id_column``             str: QC column holding ``job.item_id`` (e.g. ``"video_id"``)
``qc_file``               str: QC table stem under ``out_dir`` (``"qc"`` -> qc.parquet + qc.csv)
``done_word``             str: verb for the summary line (``"posed"``, ``"recognised"``)
``input_hash(job)``       -> str, sha256 of the input. Raise for a missing/unusable input.
``artifact_config(job)``  -> dict of everything the outputs depend on (JSON-able; dataclasses ok).
                          The runner adds ``"stage_version": version``, hashes it, stores it.
``outputs(job)``          -> list[Path] of the artifacts (Parquet + sidecar) this item gets. The
                          first one decides "up to date" (with the others existing).
``compute(job, ctx)``     -> dict, the QC row. Writes the outputs with ``ctx.write_artifact(table,
                          path, contract=..., extra=...)`` (stage, input hash and config filled in,
                          path recorded as written); other files: ``ctx.wrote(path)``.
``qc_for_existing(job)``  -> dict, the QC row of an up-to-date item from its stored outputs. May
                          raise: the item is then computed again (a damaged file under a good sidecar).
``failed_qc(job, error)`` -> dict, the QC row of a failed item.
``derived_outputs(job)``  optional -> list[Path]: files without a sidecar made from the outputs
                          (overlays); removed with the outputs when the item fails.
``refresh_existing(job, ctx)`` optional: called for an up-to-date item after ``qc_for_existing``,
                          e.g. to draw derived files that are missing (record them with ``ctx.wrote``).
========================= ===========================================================================

Before computing an item the runner removes temp files that a killed run left for its outputs
(``.<name>.*.tmp``, see :mod:`pipeline.artifacts`). The runner overwrites the row's ``status`` (``ok`` computed now / ``skipped`` up to date / ``failed``),
``error``, ``seconds``, ``source``, the ``id_column``, and adds ``updated`` (UTC time of the run that
produced the row). Exceptions from the stage are caught per item: ``failed``, message naming the
source. An exception whose text already starts with the source path is used as is; one with a
``qc_flag`` attribute (e.g. :class:`pipeline.video.TruncatedVideo`: ``"truncated"``) adds that flag
to the failed row's ``flags``.

Functions: :func:`run_item` (one job, in this process), :func:`run_items` (many, optionally in
``workers`` processes; results in job order; takes a ``worker`` callable for fault injection),
:func:`write_qc_table` (merge and write the QC table), :func:`summary` (the text for stderr),
:func:`exit_code` (0 all ok/skipped, 1 some failed; 2 is for bad arguments, raised before any
work through :class:`pipeline.cli.BadInput`), :func:`full_config` (the config a sidecar records for a
job), :func:`remove_outputs` (an item's outputs of this stage). A CLI's ``main`` does: parse -> ``check_output_dir``
-> make jobs -> ``run_items`` -> ``report_written`` for each result's ``written`` and for the QC table
-> print ``summary`` -> return ``exit_code``.

Worker processes (``workers > 1``) are spawned (MediaPipe's and OpenCV's threads do not survive a
fork). Each worker asks Linux to kill it when its parent dies (``prctl(PR_SET_PDEATHSIG, SIGKILL)``)
and also runs a watchdog thread that exits when the parent's pid changes (other systems, or a parent
that died before the request took effect). A worker that dies (segfault, ``os._exit``, the OOM killer)
fails only the item it was running: see :func:`run_items`.
"""

from __future__ import annotations

import concurrent.futures as cf
import ctypes
import ctypes.util
import datetime as _dt
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pandas as pd

from pipeline.artifacts import atomic_write_text, is_up_to_date, read_sidecar, sidecar_path, write_artifact
from pipeline.cli import EXIT_OK, EXIT_PARTIAL, progress

__all__ = [
    "Job", "Stage", "ItemContext", "ItemResult", "full_config", "run_item", "run_items", "remove_outputs", "write_qc_table",
    "read_qc_table", "summary", "exit_code", "STATUSES", "die_with_parent",
]

log = logging.getLogger("pipeline.stage")

STATUSES = ("ok", "skipped", "failed")


@dataclass(frozen=True)
class Job:
    """The fields every job carries (subclass it, frozen, to add a stage's own)."""

    item_id: str
    source: str
    out_dir: str
    force: bool = False


@runtime_checkable
class Stage(Protocol):
    """What a stage supplies (see the module docstring for the contract of each member)."""

    name: str
    version: int
    id_column: str
    qc_file: str
    done_word: str

    def input_hash(self, job: Any) -> str: ...

    def artifact_config(self, job: Any) -> dict: ...

    def outputs(self, job: Any) -> list[Path]: ...

    def compute(self, job: Any, ctx: "ItemContext") -> dict: ...

    def qc_for_existing(self, job: Any) -> dict: ...

    def failed_qc(self, job: Any, error: str) -> dict: ...


@dataclass
class ItemContext:
    """Handed to ``Stage.compute``: writes artifacts with this item's provenance, records written files."""

    stage: str
    input_hash: str
    config: dict
    written: list[str] = field(default_factory=list)

    def write_artifact(self, data, path: str | os.PathLike, *, contract, extra: dict | None = None) -> Path:
        """:func:`pipeline.artifacts.write_artifact` with this stage's name, input hash and config."""
        p = write_artifact(data, path, contract=contract, stage=self.stage, input_hash=self.input_hash,
                           config=self.config, extra=extra)
        self.written.append(str(p))
        return p

    def wrote(self, path: str | os.PathLike) -> None:
        """Record another file written for this item (printed by ``main`` as ``wrote <path>``)."""
        self.written.append(str(path))


@dataclass
class ItemResult:
    """What happened to one job."""

    item_id: str
    source: str
    status: str  # ok | skipped | failed
    qc: dict
    written: list[str] = field(default_factory=list)
    error: str | None = None
    removed: list[str] = field(default_factory=list)  # stale outputs of a failed item


# --------------------------------------------------------------------------------------------------
# One item
# --------------------------------------------------------------------------------------------------
def full_config(stage: Stage, job: Any) -> dict:
    """The config recorded in (and hashed into) the item's sidecars: the stage's plus its version."""
    return {"stage_version": stage.version, **stage.artifact_config(job)}


def _message(job: Any, exc: BaseException) -> str:
    text = str(exc)
    if text.startswith(str(job.source)):
        return text
    return f"{job.source}: {type(exc).__name__}: {text}"


def remove_outputs(stage: Stage, job: Any) -> list[str]:
    """Remove this item's outputs that this stage wrote (sidecar ``stage`` == ``stage.name``).

    Files of another tool or of the user under the same names are left alone. Derived outputs
    (``stage.derived_outputs``) go only together with an output of this stage. Returns removed paths.
    """
    removed: list[str] = []
    owned = False
    for path in stage.outputs(job):
        meta = read_sidecar(path)
        if not meta or meta.get("stage") != stage.name:
            continue
        owned = True
        for p in (Path(path), sidecar_path(path)):
            if p.exists():
                p.unlink()
                removed.append(str(p))
    derived = getattr(stage, "derived_outputs", None)
    if owned and derived is not None:
        for p in map(Path, derived(job)):
            if p.is_file():
                p.unlink()
                removed.append(str(p))
    return removed


def _remove_leftover_temp_files(outputs: Sequence[Path]) -> None:
    """Temp files of an atomic write that a killed process left behind (``.<name>.<random>.tmp``).

    Only the names :mod:`pipeline.artifacts` gives its temp files for these outputs and their
    sidecars; runs into the same folder at the same time are not supported (their QC tables would
    race too), so nothing else can be writing them.
    """
    for p in outputs:
        for leftover in Path(p).parent.glob(f".{Path(p).name}.*.tmp"):
            try:
                leftover.unlink()
            except OSError:
                pass


def _failed(
    stage: Stage, job: Any, message: str, seconds: float, written: list[str] | None = None, flag: str | None = None
) -> ItemResult:
    try:
        removed = remove_outputs(stage, job)
    except OSError as exc:  # never let the clean-up hide the item's own error
        log.warning("%s: could not remove stale outputs: %s", job.source, exc)
        removed = []
    row = _finish_row(stage, job, stage.failed_qc(job, message), "failed", message, seconds)
    if flag:
        row["flags"] = ";".join(f for f in (row.get("flags") or "", flag) if f)
    return ItemResult(job.item_id, str(job.source), "failed", row, [w for w in (written or []) if Path(w).exists()],
                      error=message, removed=removed)


def _finish_row(stage: Stage, job: Any, row: dict, status: str, error: str | None, seconds: float) -> dict:
    row = dict(row)
    row[stage.id_column] = job.item_id
    row["source"] = str(job.source)
    row["status"] = status
    row["error"] = error
    row["seconds"] = float(seconds)
    row["updated"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return row


def run_item(stage: Stage, job: Any) -> ItemResult:
    """Run one job end to end in this process. Never raises for a bad item (status ``failed``)."""
    t0 = time.perf_counter()
    ctx = None
    try:
        input_hash = stage.input_hash(job)
        config = full_config(stage, job)
        outputs = [Path(p) for p in stage.outputs(job)]
        if (not job.force and outputs and is_up_to_date(outputs[0], input_hash=input_hash, config=config)
                and all(p.exists() for p in outputs[1:])):
            try:
                row = stage.qc_for_existing(job)
            except Exception as exc:  # damaged output under a matching sidecar: compute it again
                log.warning("%s: up-to-date outputs are unreadable (%s); computing again", job.source, exc)
            else:
                ctx = ItemContext(stage.name, input_hash, config)
                refresh = getattr(stage, "refresh_existing", None)
                if refresh is not None:
                    refresh(job, ctx)
                row = _finish_row(stage, job, row, "skipped", None, time.perf_counter() - t0)
                return ItemResult(job.item_id, str(job.source), "skipped", row, list(ctx.written))
        _remove_leftover_temp_files(outputs)
        ctx = ItemContext(stage.name, input_hash, config)
        row = stage.compute(job, ctx)
        row = _finish_row(stage, job, row, "ok", None, time.perf_counter() - t0)
        return ItemResult(job.item_id, str(job.source), "ok", row, list(ctx.written))
    except Exception as exc:  # one bad item must not stop the batch; keep the reason, name the input
        log.debug("%s failed", job.source, exc_info=True)
        return _failed(stage, job, _message(job, exc), time.perf_counter() - t0, ctx.written if ctx else None,
                       flag=getattr(exc, "qc_flag", None))


# --------------------------------------------------------------------------------------------------
# Worker processes
# --------------------------------------------------------------------------------------------------
_PR_SET_PDEATHSIG = 1
_started = None  # in worker processes: queue on which each job announces its index when it starts


def die_with_parent(parent_pid: int, poll_s: float = 0.5) -> None:
    """Make this (worker) process exit when ``parent_pid`` dies, however it dies."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the watchdog below still works
            pass
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _init_worker(queue, parent_pid: int) -> None:
    global _started
    die_with_parent(parent_pid)
    _started = queue


def _run_job(i: int, job: Any, worker: Callable[[Any], ItemResult]) -> ItemResult:
    if _started is not None:
        _started.put(i)
    return worker(job)


def _worker_died(stage: Stage, job: Any, detail: str = "") -> ItemResult:
    msg = (f"{job.source}: the worker process died while processing this item (crashed, killed or out of memory)"
           + (f": {detail}" if detail else ""))
    return _failed(stage, job, msg, float("nan"))


def _pool_round(stage, jobs, todo, workers, worker, results, done) -> tuple[bool, set[int]]:
    """Run ``todo`` in one spawned pool; returns (pool broke, indices that started in it)."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.SimpleQueue()
    started: set[int] = set()

    def drain() -> None:
        while not queue.empty():
            started.add(queue.get())

    broken = False
    with cf.ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx,
                                initializer=_init_worker, initargs=(queue, os.getpid())) as pool:
        futures = {pool.submit(_run_job, i, jobs[i], worker): i for i in todo}
        for fut in cf.as_completed(futures):
            drain()  # keep the pipe short; also tells which jobs had begun when a worker died
            i = futures[fut]
            try:
                results[i] = fut.result()
            except BrokenProcessPool:
                broken = True  # every unfinished future of the pool ends up here, not only the culprit's
                continue
            except Exception as exc:  # e.g. a result that cannot be sent back
                results[i] = _worker_died(stage, jobs[i], f"{type(exc).__name__}: {exc}")
            done()
    drain()
    queue.close()
    return broken, started


def run_items(
    stage: Stage, jobs: Sequence[Any], *, workers: int = 1, worker: Callable[[Any], ItemResult] | None = None,
    desc: str | None = None, unit: str = "item",
) -> list[ItemResult]:
    """Run jobs, in spawned worker processes when ``workers > 1``; results in job order.

    ``worker`` is the per-job callable (default: ``functools.partial(run_item, stage)``); it must be
    picklable (a module-level function) for ``workers > 1``.

    A worker process that dies (segfault in native code, ``os._exit``, the OOM killer) breaks the whole
    ``ProcessPoolExecutor``: every unfinished future then fails, not only the one that crashed. So
    after a break the jobs that had started (at most ``workers``) are re-run in a one-process pool,
    where a crash can only be the running job's, and the jobs that had not started go on in a fresh
    pool: only an item that crashes its worker on its own is reported failed.
    """
    if worker is None:
        import functools

        worker = functools.partial(run_item, stage)
    jobs = list(jobs)
    results: dict[int, ItemResult] = {}
    bar = progress(range(len(jobs)), desc=desc or stage.name, total=len(jobs), unit=unit)
    it = iter(bar)

    def done() -> None:
        next(it, None)

    if workers <= 1 or len(jobs) <= 1:
        for i, job in enumerate(jobs):
            results[i] = worker(job)
            done()
    else:
        todo = list(range(len(jobs)))
        while todo:
            broken, started = _pool_round(stage, jobs, todo, workers, worker, results, done)
            left = [i for i in todo if i not in results]
            if not broken or not left:
                break
            suspects = [i for i in left if i in started]
            if not suspects:  # the pool died before any job began: no point in trying again
                for i in left:
                    results[i] = _worker_died(stage, jobs[i], "the worker pool could not run")
                    done()
                break
            log.warning("a %s worker process died; re-running the %d item(s) it may have been processing one at a time",
                        stage.name, len(suspects))
            while suspects:  # one worker: a break now names its job
                broken, started1 = _pool_round(stage, jobs, suspects, 1, worker, results, done)
                suspects = [i for i in suspects if i not in results]
                if not broken or not suspects:
                    break
                culprits = [i for i in suspects if i in started1] or suspects
                for i in culprits:
                    results[i] = _worker_died(stage, jobs[i])
                    done()
                suspects = [i for i in suspects if i not in results]
            todo = [i for i in left if i not in started]
    if hasattr(bar, "close"):
        bar.close()
    return [results[i] for i in range(len(jobs))]


# --------------------------------------------------------------------------------------------------
# The QC table, persistent across runs
# --------------------------------------------------------------------------------------------------
def qc_paths(stage: Stage, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    out = Path(out_dir)
    return out / f"{stage.qc_file}.parquet", out / f"{stage.qc_file}.csv"


def read_qc_table(stage: Stage, out_dir: str | os.PathLike) -> pd.DataFrame | None:
    """The stage's QC table in ``out_dir`` from an earlier run, or None (absent, unreadable, not ours)."""
    parquet, _ = qc_paths(stage, out_dir)
    if not parquet.exists():
        return None
    meta = read_sidecar(parquet)
    if not meta or meta.get("stage") != f"{stage.name}-qc":
        log.warning("%s was not written by the %s stage; it will be replaced", parquet, stage.name)
        return None
    try:
        return pd.read_parquet(parquet)
    except Exception as exc:
        log.warning("%s is unreadable (%s); it will be replaced by this run's rows", parquet, exc)
        return None


def write_qc_table(
    stage: Stage, rows: Sequence[dict], out_dir: str | os.PathLike, *, config: Any = None
) -> tuple[Path, Path]:
    """Merge this run's QC rows into ``<out_dir>/<qc_file>.parquet`` (+ sidecar) and ``.csv``.

    Rows of items this run did not touch are kept as they were (failures included); rows of items it
    did replace theirs. Rows are sorted by ``id_column``. Returns both paths.
    """
    parquet, csv = qc_paths(stage, out_dir)
    new = pd.DataFrame(list(rows))
    old = read_qc_table(stage, out_dir)
    if old is not None and not old.empty and stage.id_column in old:
        keep = old[~old[stage.id_column].astype(str).isin(set(new.get(stage.id_column, pd.Series(dtype=str)).astype(str)))]
        frames = [f for f in (keep, new) if not f.empty]
        df = pd.concat(frames, ignore_index=True, sort=False) if frames else new
        # the concatenation must not reorder the stage's own column order
        df = df[list(new.columns) + [c for c in df.columns if c not in new.columns]] if not new.empty else df
    else:
        df = new
    if not df.empty:
        df = df.sort_values(stage.id_column, kind="stable").reset_index(drop=True)
    for col in ("error", "updated"):
        df[col] = df[col].astype("string") if col in df else pd.Series(dtype="string")
    parquet = write_artifact(df, parquet, contract=None, stage=f"{stage.name}-qc", config=config)
    csv = atomic_write_text(csv, df.to_csv(index=False, float_format="%.4f"))
    return parquet, csv


# --------------------------------------------------------------------------------------------------
# Summary and exit code
# --------------------------------------------------------------------------------------------------
def summary(stage: Stage, results: Sequence[ItemResult], *, noun: str = "input") -> str:
    """``<stage>: N input(s): a <done_word>, b up to date, c failed, d flagged`` + one line per problem."""
    n = len(results)
    ok = sum(r.status == "ok" for r in results)
    skipped = sum(r.status == "skipped" for r in results)
    failed = [r for r in results if r.status == "failed"]
    flagged = [r for r in results if r.status != "failed" and r.qc.get("flags")]
    lines = [f"{stage.name}: {n} {noun}(s): {ok} {stage.done_word}, {skipped} up to date, {len(failed)} failed, "
             f"{len(flagged)} flagged"]
    for r in failed:
        lines.append(f"  failed  {r.error}")
    for r in flagged:
        valid = r.qc.get("valid_fraction")
        extra = f" (valid {valid:.0%})" if isinstance(valid, float) and valid == valid else ""
        lines.append(f"  flagged {r.item_id}: {r.qc['flags']}{extra}")
    return "\n".join(lines)


def exit_code(results: Sequence[ItemResult]) -> int:
    """0 when no item failed, 1 when some did (2, bad input, is raised before any work)."""
    return EXIT_PARTIAL if any(r.status == "failed" for r in results) else EXIT_OK
