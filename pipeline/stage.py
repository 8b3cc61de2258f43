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
``sidecars``              optional bool (default True): the outputs have sidecars (``X.json``).
``is_current(job, input_hash, config)`` optional -> bool: replaces the sidecar check of "up to date"
                          for outputs that keep their provenance inside (prepared clips).
``adopts(job, path)``     optional -> bool: whether an output file that no output manifest records is
                          this stage's all the same (default: its sidecar's ``stage`` is ``name``).
========================= ===========================================================================

Ownership (:mod:`pipeline.ownership`): the stage's files in ``out_dir`` are recorded in its output
manifest ``out_dir/.<name>.outputs.json`` as each item finishes (outputs, sidecars, derived files)
and with the QC table. Before an item is computed, each of its output names must be free or ours: a
file there that the manifest does not vouch for (and that ``adopts`` does not claim: an earlier run's
file with our sidecar is recorded then) fails the item with a one-line reason and stays untouched.
:func:`check_outputs_free` runs the same check over all jobs and the QC table before any work, so a
CLI exits 2 naming the file. A failed item's earlier outputs are removed by
:func:`remove_item_outputs` (through :func:`pipeline.ownership.remove_owned`: only files we wrote
and that are unchanged; the user's files under the same names stay).

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
job), :func:`remove_item_outputs` (a failed item's outputs of this stage), :func:`check_outputs_free`.
A CLI's ``main`` does: parse -> ``check_output_dir`` -> make jobs -> ``check_outputs_free`` ->
``run_items`` -> ``report_written`` for each result's ``written`` and for the QC table -> print
``summary`` -> return ``exit_code``.

Worker processes (``workers > 1``) are spawned (MediaPipe's and OpenCV's threads do not survive a
fork). Each worker asks Linux to kill it when its parent dies (``prctl(PR_SET_PDEATHSIG, SIGKILL)``)
and also runs a watchdog thread that exits when the parent's pid changes (other systems, or a parent
that died before the request took effect): :func:`die_with_parent`. It does so *first*, before the
spawned interpreter imports anything of ours or re-imports the parent's main module (which pulls in
torch, MediaPipe, OpenCV: 15-30 s on a loaded machine), so a parent killed while its workers are
still starting takes them with it: the hook travels as the first entry of the spawn's preparation
data and runs when the child unpickles it (:class:`_WorkerContext`). A worker that dies (segfault,
``os._exit``, the OOM killer) fails only the item it was running: see :func:`run_items`.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as _dt
import importlib
import logging
import marshal
import multiprocessing
import multiprocessing.context
import multiprocessing.spawn
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pandas as pd

from pipeline.artifacts import atomic_write_text, is_up_to_date, read_sidecar, sidecar_path, write_artifact
from pipeline.cli import EXIT_OK, EXIT_PARTIAL, progress
from pipeline.ownership import (ForeignOutput, check_free, foreign_message, foreign_names, read_manifest, relative_name,
                                remove_owned, status, update_manifest)

__all__ = [
    "Job", "Stage", "ItemContext", "ItemResult", "full_config", "run_item", "run_items", "remove_item_outputs",
    "check_outputs_free", "write_qc_table", "read_qc_table", "summary", "exit_code", "STATUSES", "die_with_parent",
    "worker_context",
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

    sidecars: list[str] = field(default_factory=list)

    def write_artifact(self, data, path: str | os.PathLike, *, contract, extra: dict | None = None) -> Path:
        """:func:`pipeline.artifacts.write_artifact` with this stage's name, input hash and config."""
        p = write_artifact(data, path, contract=contract, stage=self.stage, input_hash=self.input_hash,
                           config=self.config, extra=extra)
        self.written.append(str(p))
        self.sidecars.append(str(sidecar_path(p)))
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


def _root(job: Any) -> Path:
    return Path(job.out_dir)


def _item_names(stage: Stage, job: Any) -> tuple[list[str], list[str]]:
    """(artifact names, derived names) of the item, relative to ``job.out_dir``; artifacts with their sidecars."""
    root = _root(job)
    with_sidecars = getattr(stage, "sidecars", True)
    arts: list[str] = []
    for p in map(Path, stage.outputs(job)):
        arts.append(_rel(root, p))
        if with_sidecars:
            arts.append(_rel(root, sidecar_path(p)))
    derived = getattr(stage, "derived_outputs", None)
    return arts, [_rel(root, Path(p)) for p in (derived(job) if derived is not None else [])]


def _rel(root: Path, path: Path) -> str:
    try:
        rel = relative_name(path.relative_to(root))
    except ValueError:
        rel = None
    if rel is None:
        raise ValueError(f"{path}: a stage output must lie inside its out_dir {root}")
    return rel


def _adopter(stage: Stage, job: Any):
    """Whether an unrecorded (or changed) file at one of the item's output names is this stage's anyway:
    an output or its sidecar when the sidecar names the stage (or ``stage.adopts`` says so); a derived
    file when an output of the item is ours."""
    root = _root(job)
    outputs = [Path(p) for p in stage.outputs(job)]
    decides: dict[str, Path] = {}  # name -> the output whose record decides
    for p in outputs:
        decides[_rel(root, p)] = p
        if getattr(stage, "sidecars", True):
            decides[_rel(root, sidecar_path(p))] = p
    _, derived = _item_names(stage, job)
    own = getattr(stage, "adopts", None)

    def ours(p: Path) -> bool:
        if own is not None:
            return bool(own(job, p))
        meta = read_sidecar(p)
        return bool(meta) and meta.get("stage") == stage.name

    def adopt(rel: str) -> bool:
        if rel in decides:
            return ours(decides[rel])
        if rel in derived:
            return any(p.exists() and ours(p) for p in outputs)
        return False

    return adopt


def _check_item(stage: Stage, job: Any) -> None:
    """Refuse (ForeignOutput) if an output name of the item holds a file that is not ours; record the
    files an earlier run of the stage wrote without a manifest (their sidecar names the stage)."""
    root = _root(job)
    arts, derived = _item_names(stage, job)
    foreign, adoptable = foreign_names(root, stage.name, arts + derived, adopt=_adopter(stage, job))
    if foreign:
        raise ForeignOutput(foreign_message(root, stage.name, foreign))
    if adoptable:
        update_manifest(root, stage.name, add=adoptable)


def _claim(stage: Stage, job: Any) -> None:
    """Before computing: the item's names (just checked) are about to be written (see pipeline.ownership)."""
    arts, derived = _item_names(stage, job)
    update_manifest(_root(job), stage.name, claim=arts + derived)


def _record(stage: Stage, job: Any, ctx: "ItemContext", *, claimed: bool = True) -> None:
    """Record what the item wrote in the stage's manifest and drop its claim (nothing to do for an
    up-to-date item that wrote nothing: no manifest write)."""
    root = _root(job)
    files = []
    for p in map(Path, list(ctx.written) + list(ctx.sidecars)):
        try:
            rel = _rel(root, p)
        except ValueError:
            log.debug("%s is outside %s; not recorded", p, root)
            continue
        if p.is_file():
            files.append(rel)
    if files or claimed:
        arts, derived = _item_names(stage, job)
        update_manifest(root, stage.name, add=sorted(set(files)), unclaim=arts + derived + files)


def check_outputs_free(stage: Stage, jobs: Sequence[Any], qc_dir: str | os.PathLike | None = None) -> None:
    """Before any work: raise :class:`pipeline.ownership.ForeignOutput` (exit 2, one line naming the first
    file) when an output name of a job, or of the QC table in ``qc_dir``, holds a file that is not ours.

    Earlier runs' files that the stage can show are its own (sidecar naming the stage) are fine.
    """
    found: list[str] = []
    manifests: dict[Path, Any] = {}
    for job in jobs:
        root = _root(job)
        m = manifests.setdefault(root, read_manifest(root, stage.name))
        arts, derived = _item_names(stage, job)
        foreign, _ = foreign_names(root, stage.name, arts + derived, adopt=_adopter(stage, job), manifest=m)
        found += [str(root / f) for f in foreign]
    if qc_dir is not None:
        names, adopt = _qc_names(stage), _qc_adopter(stage, qc_dir)
        foreign, _ = foreign_names(qc_dir, stage.name, names, adopt=adopt)
        found += [str(Path(qc_dir) / f) for f in foreign]
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise ForeignOutput(f"{found[0]}{more} is in the way: {stage.name} would write there, but it is not a file "
                            f"{stage.name} wrote (or it changed since); move it or choose another output folder")


def remove_item_outputs(stage: Stage, job: Any) -> list[str]:
    """Remove the item's outputs of this stage (artifacts, sidecars, derived files): only files the stage's
    output manifest records and that are unchanged (:func:`pipeline.ownership.remove_owned`).

    Files of another tool or of the user under the same names are left alone. Returns removed paths.
    """
    root = _root(job)
    arts, derived = _item_names(stage, job)
    names = arts + derived
    m = read_manifest(root, stage.name)
    # what a write of this run (or a killed one) left under a claimed name is ours: record it first
    left = [n for n in names if n in m.claimed and status(m, n) in ("changed", "unrecorded")]
    if left or m.claimed & set(names):
        update_manifest(root, stage.name, add=left, unclaim=names)
    # folders stay: another item (another worker) may be writing into them right now
    return [str(p) for p in remove_owned(root, stage.name, names, prune_dirs=False).removed]


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
        removed = remove_item_outputs(stage, job)
    except (OSError, ValueError) as exc:  # never let the clean-up hide the item's own error
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


def _current(stage: Stage, job: Any, outputs: list[Path], input_hash: str, config: dict) -> bool:
    own = getattr(stage, "is_current", None)
    if own is not None:
        return bool(own(job, input_hash, config))
    return (bool(outputs) and is_up_to_date(outputs[0], input_hash=input_hash, config=config)
            and all(p.exists() for p in outputs[1:]))


def run_item(stage: Stage, job: Any) -> ItemResult:
    """Run one job end to end in this process. Never raises for a bad item (status ``failed``)."""
    t0 = time.perf_counter()
    ctx = None
    try:
        _check_item(stage, job)  # a user's file under an output name: fail the item, touch nothing
    except ForeignOutput as exc:
        row = _finish_row(stage, job, stage.failed_qc(job, str(exc)), "failed", str(exc), time.perf_counter() - t0)
        return ItemResult(job.item_id, str(job.source), "failed", row, [], error=str(exc))
    except Exception as exc:
        return _failed(stage, job, _message(job, exc), time.perf_counter() - t0)
    try:
        input_hash = stage.input_hash(job)
        config = full_config(stage, job)
        outputs = [Path(p) for p in stage.outputs(job)]
        if not job.force and _current(stage, job, outputs, input_hash, config):
            try:
                row = stage.qc_for_existing(job)
            except Exception as exc:  # damaged output under a matching sidecar: compute it again
                log.warning("%s: up-to-date outputs are unreadable (%s); computing again", job.source, exc)
            else:
                ctx = ItemContext(stage.name, input_hash, config)
                refresh = getattr(stage, "refresh_existing", None)
                if refresh is not None:
                    refresh(job, ctx)
                _record(stage, job, ctx, claimed=False)
                row = _finish_row(stage, job, row, "skipped", None, time.perf_counter() - t0)
                return ItemResult(job.item_id, str(job.source), "skipped", row, list(ctx.written))
        _remove_leftover_temp_files(outputs)
        _claim(stage, job)
        ctx = ItemContext(stage.name, input_hash, config)
        row = stage.compute(job, ctx)
        _record(stage, job, ctx)
        row = _finish_row(stage, job, row, "ok", None, time.perf_counter() - t0)
        return ItemResult(job.item_id, str(job.source), "ok", row, list(ctx.written))
    except Exception as exc:  # one bad item must not stop the batch; keep the reason, name the input
        log.debug("%s failed", job.source, exc_info=True)
        return _failed(stage, job, _message(job, exc), time.perf_counter() - t0, ctx.written if ctx else None,
                       flag=getattr(exc, "qc_flag", None))


# --------------------------------------------------------------------------------------------------
# Worker processes
# --------------------------------------------------------------------------------------------------
_started = None  # in worker processes: queue on which each job announces its index when it starts


def die_with_parent(parent_pid: int, poll_s: float = 0.5) -> None:
    """Make this (worker) process exit when ``parent_pid`` dies, however it dies.

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` has the kernel kill us the moment the parent thread
    exits. Everywhere: a daemon thread polls ``getppid()`` every ``poll_s`` seconds and exits when it
    changed (reparented: the parent is gone), which also covers a parent that died before the prctl.

    Self-contained on purpose (imports inside, no module globals): its code object is shipped to a
    spawned child and run there before anything else is imported (:func:`_death_hook`).
    """
    import os
    import sys
    import threading
    import time

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            # CDLL(None): the symbols already loaded into the interpreter (libc's prctl among them);
            # ctypes.util.find_library would run ldconfig in a subprocess.
            ctypes.CDLL(None, use_errno=True).prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG = 1, SIGKILL = 9
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


class _Call:
    """``func(*args)``, pickled as that call: unpickling it in another process makes the call there.

    Used to build :func:`die_with_parent` from its code object in a spawned child out of standard
    library callables only (``importlib.import_module``, ``getattr``, ``marshal.loads``), because the
    child cannot import this package yet at that point (its ``sys.path`` is not set up).
    """

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args

    def evaluate(self):
        """The call's value here (what unpickling produces there)."""
        func = self.func.evaluate() if isinstance(self.func, _Call) else self.func
        return func(*(a.evaluate() if isinstance(a, _Call) else a for a in self.args))

    def __call__(self, *args):  # pickle insists that a reduce's callable be callable here too
        return self.evaluate()(*args)


def _death_hook(parent_pid: int) -> _Call:
    """An object whose unpickling runs ``die_with_parent(parent_pid, 0.5)`` in the unpickling process."""
    function_type = _Call(getattr, _Call(importlib.import_module, "types"), "FunctionType")
    code = _Call(marshal.loads, marshal.dumps(die_with_parent.__code__))
    fn = _Call(function_type, code, {}, "die_with_parent")
    return _Call(fn, parent_pid, 0.5)


_spawning = threading.local()
_patch_lock = threading.Lock()


def _install_preparation_hook() -> None:
    """Wrap :func:`multiprocessing.spawn.get_preparation_data` (once) so that processes started through
    :class:`_WorkerContext` get :func:`_death_hook` as the first entry of their preparation data: the
    child unpickles that dict before it sets up ``sys.path`` or re-imports the parent's ``__main__``,
    so the hook is in place before torch, MediaPipe or OpenCV load. Other processes are unaffected
    (the entry is added only while this thread starts one of ours; unknown keys are ignored)."""
    with _patch_lock:
        original = multiprocessing.spawn.get_preparation_data
        if getattr(original, "_with_death_hook", False):
            return

        def get_preparation_data(name):
            data = original(name)
            if getattr(_spawning, "active", False):
                data = {"die_with_parent": _death_hook(os.getpid()), **data}
            return data

        get_preparation_data._with_death_hook = True
        multiprocessing.spawn.get_preparation_data = get_preparation_data


class _WorkerProcess(multiprocessing.context.SpawnProcess):
    @staticmethod
    def _Popen(process_obj):
        _install_preparation_hook()
        _spawning.active = True
        try:
            return multiprocessing.context.SpawnProcess._Popen(process_obj)
        finally:
            _spawning.active = False


class _WorkerContext(multiprocessing.context.SpawnContext):
    """The spawn context whose processes die with this one from their first instruction on."""

    Process = _WorkerProcess


def worker_context() -> multiprocessing.context.SpawnContext:
    """A spawn context whose processes run :func:`die_with_parent` before anything else (for other
    process pools that must not outlive this process, e.g. decode workers)."""
    return _WorkerContext()


def _init_worker(queue, parent_pid: int) -> None:
    global _started
    die_with_parent(parent_pid)  # already done by the preparation hook; a second watchdog costs nothing
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
    ctx = _WorkerContext()
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


def _computed_since(stage: Stage, result: ItemResult, job: Any, since: float) -> ItemResult:
    """A re-run's "skipped" as "ok" when its outputs were written since ``since`` (this run): the first
    attempt computed them, and only its result was lost when another job's crash broke the pool."""
    if result.status != "skipped":
        return result
    try:
        first = Path(stage.outputs(job)[0])
        if first.stat().st_mtime < since:
            return result
    except (OSError, IndexError, TypeError):
        return result
    return replace(result, status="ok", qc={**result.qc, "status": "ok"})


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
    pool: only an item that crashes its worker on its own is reported failed. A re-run job whose
    outputs the first attempt had finished (written in this run) is reported ``ok``, not ``skipped``.
    """
    if worker is None:
        import functools

        worker = functools.partial(run_item, stage)
    jobs = list(jobs)
    results: dict[int, ItemResult] = {}
    since = time.time() - 1.0  # file times have a coarser clock on some filesystems
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
                for i in suspects:
                    if i in results:
                        results[i] = _computed_since(stage, results[i], jobs[i], since)
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


def _qc_names(stage: Stage) -> list[str]:
    return [f"{stage.qc_file}.parquet", f"{stage.qc_file}.parquet.json", f"{stage.qc_file}.csv"]


def _qc_adopter(stage: Stage, out_dir: str | os.PathLike):
    """The QC table of an earlier run (before output manifests) is ours when its sidecar says so."""
    parquet, _ = qc_paths(stage, out_dir)

    def adopt(rel: str) -> bool:
        meta = read_sidecar(parquet)
        return bool(meta) and meta.get("stage") == f"{stage.name}-qc"

    return adopt


def read_qc_table(stage: Stage, out_dir: str | os.PathLike) -> pd.DataFrame | None:
    """The stage's QC table in ``out_dir`` from an earlier run, or None (absent, unreadable, not ours)."""
    parquet, _ = qc_paths(stage, out_dir)
    if not parquet.exists():
        return None
    meta = read_sidecar(parquet)
    if not meta or meta.get("stage") != f"{stage.name}-qc":
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

    Raises
    ------
    pipeline.ownership.ForeignOutput
        A file of the user's holds one of the QC table's names (nothing is written then).
    """
    parquet, csv = qc_paths(stage, out_dir)
    adoptable = check_free(out_dir, stage.name, _qc_names(stage), adopt=_qc_adopter(stage, out_dir))
    if adoptable:
        update_manifest(out_dir, stage.name, add=adoptable)
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
    update_manifest(out_dir, stage.name, add=[parquet, sidecar_path(parquet), csv])
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
