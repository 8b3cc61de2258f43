"""Says on the console when a SLURM worker job leaves with tasks running, naming the jobs' walltime.

A Slurm job that reaches its walltime is killed, and with it the Dask worker it ran. Dask reruns the
worker's tasks on another job, and after three such losses of one task gives up (``KilledWorker``);
neither says why the worker left. This scheduler plugin (loaded as a Dask ``preload`` into the
scheduler, which a ``SLURMCluster`` runs in the flow's own process) logs one warning per lost worker
that had tasks running: which tasks, and the walltime the jobs were given, so a user whose tasks are
longer than it knows what to raise. The same warning covers ``scancel`` and node failures, which look
the same to Dask.
"""

from __future__ import annotations

import logging

from distributed.diagnostics.plugin import SchedulerPlugin

__all__ = ["WALLTIME", "WalltimeWatch", "dask_setup"]

log = logging.getLogger("flows.slurm")

WALLTIME: str | None = None
"""The walltime of the worker jobs (``cluster.walltime`` of the SLURM config); set by
:func:`flows.task_runners.make_task_runner` before the cluster starts (same process as the scheduler)."""


class WalltimeWatch(SchedulerPlugin):
    """Logs a warning when a worker is removed while tasks were processing on it."""

    name = "microaction-walltime-watch"

    def __init__(self, walltime: str | None) -> None:
        self.walltime = walltime

    def remove_worker(self, scheduler, worker: str, **kwargs) -> None:
        # the scheduler logs the tasks that were processing on the worker just before calling plugins
        lost: set = set()
        try:
            events = scheduler.get_events(worker)
        except KeyError:  # no event was ever logged for this worker
            events = ()
        for _, msg in reversed(events):
            if isinstance(msg, dict) and msg.get("action") == "remove-worker":
                lost = set(msg.get("processing-tasks") or ())
                break
        if not lost:
            return
        names = sorted({str(k[0] if isinstance(k, tuple) else k).split("-")[0] for k in lost})
        limit = f"the walltime of {self.walltime}" if self.walltime else "their walltime"
        log.warning(
            "a SLURM worker left while running %d task(s) (%s): Slurm ends worker jobs at %s (or they were "
            "cancelled); the tasks are rerun on another job, and a task that needs longer than the walltime "
            "fails after 3 tries: raise cluster.walltime in the SLURM config", len(lost), ", ".join(names), limit)


def dask_setup(scheduler) -> None:
    scheduler.add_plugin(WalltimeWatch(WALLTIME))
