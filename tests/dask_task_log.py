"""Dask scheduler preload for the SLURM tests: one JSON line per task placement and per lost worker.

Loaded by the flow's own scheduler through Dask's config (``DASK_DISTRIBUTED__SCHEDULER__PRELOAD``), it
appends to the file named by ``$DASK_TASK_LOG``::

    {"event": "processing", "key": "pose_task-...", "worker": "tcp://...", "name": "SLURMCluster-0",
     "resources": {"GPU": 1.0}, "t": 1700000000.0}
    {"event": "memory" | "erred", "key": ..., "worker": ..., ...}
    {"event": "remove-worker", "worker": "tcp://...", "name": ..., "t": ...}

The tests read it to see which worker ran which task (GPU routing) and when a task is running (to cancel
its job mid-task).
"""

from __future__ import annotations

import json
import os
import time

from distributed.diagnostics.plugin import SchedulerPlugin


class TaskLog(SchedulerPlugin):
    name = "test-task-log"

    def __init__(self, scheduler, path: str):
        self.scheduler = scheduler
        self.path = path

    def _write(self, record: dict) -> None:
        record["t"] = time.time()
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def _worker(self, ws) -> dict:
        return {"worker": ws.address, "name": str(ws.name), "resources": dict(ws.resources)}

    def transition(self, key, start, finish, *args, **kwargs):
        if finish not in ("processing", "memory", "erred"):
            return
        ts = self.scheduler.tasks.get(key)
        ws = ts.processing_on if (ts is not None and finish == "processing") else None
        if ws is None and "worker" in kwargs:
            ws = self.scheduler.workers.get(kwargs["worker"])
        record = {"event": finish, "key": str(key)}
        if ws is not None:
            record.update(self._worker(ws))
        self._write(record)

    def remove_worker(self, scheduler, worker, **kwargs):
        ws = scheduler.workers.get(worker)
        self._write({"event": "remove-worker", "worker": worker, "name": str(ws.name) if ws else ""})


def dask_setup(scheduler):
    path = os.environ.get("DASK_TASK_LOG")
    if path:
        scheduler.add_plugin(TaskLog(scheduler, path))
