"""A served flow run ends with its serving process, in a final state, so ``--watch`` returns.

``python -m flows.serve`` (Prefect's Runner) starts each flow run as a child process (``python -m
prefect.engine``). Killed with SIGKILL (or by an out-of-memory kill, a closed terminal's SIGHUP), the
serving process used to leave that child running as an orphan, finishing its run unseen while a restarted
serve and a resubmitted run wrote into the same folder, and a run whose process was gone stayed
``Running`` forever (``prefect deployment run --watch`` never returned). Two guards:

- **In the flow-run process** (:func:`watch_serving_process`, called first thing in the flow): the
  serving process records its pid and start time in :data:`SERVE_ENV` (:func:`mark_serving_process`),
  which its flow-run children inherit; a daemon thread checks every half second that this process still
  exists (same pid, same start time: a reused pid is not mistaken for it). When it is gone, the thread
  sets the run's state to ``Crashed`` with a message saying why and how to resume, and ends the process
  (``os._exit``): its pose workers follow (their own parent-death hook), its run lock is released by the
  kernel. Only a process started by ``flows.serve`` is watched (a direct run has its own server, which
  dies with it: :mod:`flows.server`).
- **In the serving process at start-up** (:func:`sweep_crashed_runs`): runs of this deployment still
  ``Running``/``Pending`` whose run folder is not locked by anyone (the run lock is an ``flock``, dropped
  when its holder's process ends: :mod:`pipeline.run_lock`) are set to ``Crashed``: they are left over
  from a serve process that died with its machine, or whose flow-run process was killed with it.

SIGTERM of the serving process: Prefect 3.8.8's Runner handler calls its ``stop`` coroutine without
awaiting it ("coroutine 'Runner.astop' was never awaited") and exits, so its runs are not cancelled; the
watch then ends them as for a kill (``Crashed``). A resubmitted run resumes from the per-video sidecars (docs/scale.md, "Crash recovery").
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

__all__ = ["SERVE_ENV", "mark_serving_process", "watch_serving_process", "sweep_crashed_runs", "CRASH_MESSAGE"]

log = logging.getLogger("flows.run_watch")

SERVE_ENV = "MICROACTION_SERVE_PROCESS"  # "<pid>:<start time>" of the flows.serve process
CRASH_MESSAGE = ("the serving process (flows.serve, pid {pid}) died while this run was running; the run was stopped "
                 "with it. Resubmit the same parameters to resume: finished videos are kept (docs/scale.md, "
                 "\"Crash recovery\")")
_watching: dict = {}


def _start_time(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def mark_serving_process() -> None:
    """In ``flows.serve``: record this process in the environment its flow-run children inherit."""
    os.environ[SERVE_ENV] = f"{os.getpid()}:{_start_time(os.getpid())!r}"


def _set_crashed(flow_run_id: str, message: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run_id, Crashed(message=message), force=True)


def watch_serving_process(flow_run_id: str | None, *, poll_s: float = 0.5) -> bool:
    """In a flow run started by ``flows.serve``: end this process, its run marked ``Crashed``, when the
    serving process is gone. True when a watch was started (once per process)."""
    mark = os.environ.get(SERVE_ENV)
    if not mark or not flow_run_id or _watching.get("pid") == os.getpid():
        return False
    pid_text, _, started_text = mark.partition(":")
    try:
        pid, started = int(pid_text), float(started_text)
    except ValueError:
        return False
    if pid == os.getpid():  # the serving process itself (a flow called in it): nothing to watch
        return False

    def gone() -> bool:
        t = _start_time(pid)
        return t is None or abs(t - started) > 1e-3

    def watch() -> None:
        while not gone():
            time.sleep(poll_s)
        message = CRASH_MESSAGE.format(pid=pid)
        try:
            _set_crashed(flow_run_id, message)
        except Exception as exc:  # the server gone too: the serving process's next start sweeps the run
            log.warning("could not mark flow run %s crashed: %s", flow_run_id, exc)
        log.error("flow run %s: %s", flow_run_id, message)
        os._exit(70)  # EX_SOFTWARE; the kernel releases the run lock, the pose workers follow

    _watching["pid"] = os.getpid()
    threading.Thread(target=watch, name="serving-process-watch", daemon=True).start()
    return True


def sweep_crashed_runs(deployment_name: str) -> list[str]:
    """In ``flows.serve`` at start-up: set runs of ``cohort-analysis/<deployment_name>`` that are still
    Running/Pending but whose run folder no process holds to ``Crashed``; returns their names."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter, DeploymentFilterId, FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Crashed

    from pipeline.run_lock import is_held, read_holder

    swept = []
    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(f"cohort-analysis/{deployment_name}")
        except ObjectNotFound:
            return swept
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                type=FlowRunFilterStateType(any_=[StateType.RUNNING, StateType.PENDING]))))
        for run in runs:
            out = ((run.parameters or {}).get("params") or {}).get("out")
            if not out or is_held(Path(out)):
                continue
            holder = read_holder(Path(out))
            last = f" (its last holder: {holder.describe()})" if holder and holder.run_id == str(run.id) else ""
            client.set_flow_run_state(run.id, Crashed(message=(
                f"its process is gone and {out} is not locked by any run{last}: the serving process or the "
                "machine stopped while it ran. Resubmit the same parameters to resume (docs/scale.md, "
                "\"Crash recovery\")")), force=True)
            swept.append(run.name)
    return swept
