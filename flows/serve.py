"""Serve the ``cohort-analysis`` deployment against a running Prefect server.

Three processes, three commands (README, docs/scale.md)::

    prefect server start --host 127.0.0.1                 # 1. the API + UI (http://127.0.0.1:4200)
    python -m flows.serve --name default                  # 2. this: registers cohort-analysis/default, runs its flow runs
    prefect deployment run cohort-analysis/default \\
        --param 'params={"manifest": "/data/cohort.csv", "out": "/data/run1"}' --watch   # 3. start a run

Every process needs ``PREFECT_API_URL=http://127.0.0.1:4200/api`` (and, to keep state out of the home
folder, ``PREFECT_HOME``). This process stays in the foreground: each flow run it picks up runs here,
with the task runner chosen by ``--task-runner`` (threads, a local Dask cluster, a Dask scheduler
address, or SLURM). Stop it with Ctrl-C.
"""

from __future__ import annotations

import os
import sys

from flows.cohort_analysis import cohort_analysis
from flows.task_runners import RUNNERS, make_task_runner
from flows.console import setup_console
from flows.run_watch import mark_serving_process, sweep_crashed_runs
from pipeline.cli import handle_errors, make_parser

__all__ = ["main", "serving_flow"]


def serving_flow(task_runner: str = "threads", *, n_workers: int = 2, address: str | None = None,
                 slurm_config: str | None = None):
    """The ``cohort-analysis`` flow with the chosen task runner (what gets served)."""
    return cohort_analysis.with_options(
        task_runner=make_task_runner(task_runner, n_workers=n_workers, address=address, slurm_config=slurm_config))


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__.split("\n\n")[0], prog="python -m flows.serve")
    parser.add_argument("--name", default="default", help="deployment name: runs are started as cohort-analysis/NAME")
    parser.add_argument("--task-runner", choices=RUNNERS, default="threads",
                        help="where tasks run: threads here, a local Dask cluster, an existing Dask scheduler, or SLURM")
    parser.add_argument("--dask-workers", type=int, default=2, metavar="N", help="worker processes of --task-runner dask-local")
    parser.add_argument("--dask-address", metavar="URL", help="scheduler of --task-runner dask-address, e.g. tcp://host:8786")
    parser.add_argument("--slurm-config", metavar="FILE", help="YAML file for --task-runner slurm (flows/slurm.example.yaml)")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="at most N flow runs at a time (default: no limit)")
    args = parser.parse_args(argv)
    setup_console(verbose=args.verbose, quiet=args.quiet)  # no HTTP request lines; Prefect's INFO at -v
    with handle_errors("flows.serve"):
        if not os.environ.get("PREFECT_API_URL"):
            print("flows.serve: error: PREFECT_API_URL is not set; start `prefect server start` and export "
                  "PREFECT_API_URL=http://127.0.0.1:4200/api (docs/scale.md)", file=sys.stderr)
            return 2
        try:
            flow = serving_flow(args.task_runner, n_workers=args.dask_workers, address=args.dask_address,
                                slurm_config=args.slurm_config)
        except ValueError as exc:
            print(f"flows.serve: error: {exc}", file=sys.stderr)
            return 2
        mark_serving_process()  # its flow runs end (Crashed) when this process dies (flows.run_watch)
        for name in sweep_crashed_runs(args.name):
            print(f"flow run {name} was left Running by a process that is gone: marked Crashed", flush=True)
        print(f"serving cohort-analysis/{args.name} (task runner: {args.task_runner}); "
              f"start runs with: prefect deployment run cohort-analysis/{args.name} --param 'params={{...}}' --watch",
              flush=True)
        flow.serve(name=args.name, limit=args.limit, print_starting_message=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
