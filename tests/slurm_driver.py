"""Flow runs for the SLURM tests, each in its own process (as a user's run would be).

    python tests/slurm_driver.py cohort PARAMS_JSON RUNNER [SLURM_CONFIG]
        the cohort-analysis flow with any parameters (the CLI exposes only some); prints its summary
    python tests/slurm_driver.py sleepers N SECONDS RETRY_SECONDS OUT SLURM_CONFIG
        a flow of N tasks through the flow's SLURM task runner; each sleeps (no CPU) SECONDS on its first
        attempt and RETRY_SECONDS on a later one (a rerun after its worker was lost), and appends a line
        per attempt to OUT/attempts-<i>.log; prints the results in order

The sleepers' task is defined here, in ``__main__``, so Dask ships it to the workers by value.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path


def cohort(params_json: str, runner: str, slurm_config: str | None = None) -> int:
    from flows.cohort_analysis import FlowFailed, direct_run_settings, run_cohort_analysis
    from flows.params import CohortAnalysisParams

    params = CohortAnalysisParams.model_validate_json(params_json)
    with direct_run_settings():
        try:
            summary = run_cohort_analysis(params, task_runner=runner, slurm_config=slurm_config)
        except FlowFailed as exc:
            print(f"FlowFailed: {exc}", file=sys.stderr)
            return 1
    print(json.dumps({k: summary[k] for k in ("cohort", "videos", "failed")}))
    return 0


def sleepers(n: int, seconds: float, retry_seconds: float, out: str, slurm_config: str) -> int:
    from prefect import flow, task

    from flows.cohort_analysis import direct_run_settings
    from flows.task_runners import make_task_runner

    @task(name="sleeper")
    def sleeper(i: int) -> int:
        log = Path(out) / f"attempts-{i}.log"
        first = not log.exists()
        with open(log, "a") as f:
            f.write(f"{socket.gethostname()} job={os.environ.get('SLURM_JOB_ID', '')} start={time.time():.1f}\n")
        time.sleep(seconds if first else retry_seconds)
        return i

    @flow(name="sleepers")
    def sleepers_flow() -> list[int]:
        return [f.result() for f in sleeper.map(list(range(n)))]

    Path(out).mkdir(parents=True, exist_ok=True)
    with direct_run_settings():
        results = sleepers_flow.with_options(task_runner=make_task_runner("slurm", slurm_config=slurm_config))()
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "cohort":
        raise SystemExit(cohort(*args))
    if command == "sleepers":
        raise SystemExit(sleepers(int(args[0]), float(args[1]), float(args[2]), args[3], args[4]))
    raise SystemExit(f"unknown command {command!r}")
