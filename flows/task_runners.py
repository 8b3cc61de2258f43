"""Where the flow's tasks run: threads on this machine, a Dask cluster (local or existing), or SLURM.

The flow itself never changes; only its task runner does (``cohort_analysis.with_options(task_runner=...)``).
A deployment fixes its task runner when it is served (``python -m flows.serve --task-runner ...``), so the
choice is a serving option, not a run parameter.

=================  ==============================================================================
``threads``        Prefect's ThreadPoolTaskRunner (default). Each stage's own ``--workers`` pool does
                   the CPU parallelism inside a task.
``dask-local``     a ``distributed.LocalCluster`` with ``n_workers`` worker processes, started and
                   stopped with the run (prefect-dask's DaskTaskRunner).
``dask-address``   an existing Dask scheduler (``tcp://host:8786``): workers were started by the lab,
                   e.g. GPU workers with ``--resources GPU=1`` and CPU workers without.
``slurm``          ``dask_jobqueue.SLURMCluster`` built from a YAML file (docs/scale.md,
                   ``flows/slurm.example.yaml``): each SLURM job is one Dask worker; ``adapt`` scales
                   the number of jobs with the queue of tasks.
=================  ==============================================================================

GPU tasks (recognition on ``device="cuda"``) are submitted under ``dask.annotate(resources={"GPU": 1})``
(:func:`gpu_annotation`), so a Dask scheduler places them only on workers started with that resource; CPU
work (decoding, pose) spreads over all workers. Dask workers need the project importable and the output
folder on a shared file system: results are files, not task return values.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Literal

import yaml
from prefect.task_runners import ThreadPoolTaskRunner

__all__ = ["RUNNERS", "RunnerKind", "make_task_runner", "local_cluster_kwargs", "load_slurm_config", "slurm_cluster_kwargs", "gpu_annotation"]

RunnerKind = Literal["threads", "dask-local", "dask-address", "slurm"]
RUNNERS: tuple[str, ...] = ("threads", "dask-local", "dask-address", "slurm")

# Keys of the SLURM YAML file and what they map to (dask_jobqueue.SLURMCluster arguments).
_SLURM_KEYS = {
    "queue", "account", "cores", "processes", "memory", "walltime", "job_extra_directives",
    "job_script_prologue", "worker_extra_args", "local_directory", "log_directory", "interface",
    "scheduler_options", "python",
}


def load_slurm_config(path: str | Path) -> dict[str, Any]:
    """Read a SLURM YAML file: ``cluster`` (SLURMCluster arguments), ``gpus_per_job``, ``adapt`` {minimum, maximum}.

    Unknown keys are refused with a one-line error naming the file and the key, so a typo does not
    silently submit jobs with the wrong request.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SLURM config not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    unknown = set(data) - {"cluster", "gpus_per_job", "adapt"}
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {', '.join(sorted(unknown))} (allowed: cluster, gpus_per_job, adapt)")
    cluster = data.get("cluster") or {}
    bad = set(cluster) - _SLURM_KEYS
    if bad:
        raise ValueError(f"{path}: unknown cluster key(s) {', '.join(sorted(bad))} (allowed: {', '.join(sorted(_SLURM_KEYS))})")
    gpus = int(data.get("gpus_per_job", 0))
    if gpus < 0:
        raise ValueError(f"{path}: gpus_per_job must be >= 0, got {gpus}")
    adapt = data.get("adapt") or {"minimum": 0, "maximum": 4}
    return {"cluster": dict(cluster), "gpus_per_job": gpus, "adapt": dict(adapt)}


def slurm_cluster_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    """SLURMCluster keyword arguments with the GPU request added: ``--gres=gpu:N`` and the Dask resource ``GPU=N``."""
    kwargs = dict(config["cluster"])
    gpus = config["gpus_per_job"]
    if gpus:
        kwargs["job_extra_directives"] = [*kwargs.get("job_extra_directives", []), f"--gres=gpu:{gpus}"]
        kwargs["worker_extra_args"] = [*kwargs.get("worker_extra_args", []), "--resources", f"GPU={gpus}"]
    return kwargs


def local_cluster_kwargs(n_workers: int) -> dict[str, Any]:
    """``distributed.LocalCluster`` arguments of ``dask-local``: worker processes of one thread, everything
    on the loopback interface, no dashboard.

    ``dashboard_address=None`` does not do that: the scheduler still starts its HTTP server (health and
    metrics routes; the dashboard's pages where bokeh is installed) on the fixed default port 8787, so a
    second run at the same time logs "Port 8787 is already in use". Here the dashboard is off
    (``scheduler_kwargs={"dashboard": False}``) and the HTTP server, which cannot be switched off, listens
    on a free loopback port.
    """
    return {"n_workers": n_workers, "threads_per_worker": 1, "processes": True, "host": "127.0.0.1",
            "dashboard_address": "127.0.0.1:0", "scheduler_kwargs": {"dashboard": False}}


def make_task_runner(kind: RunnerKind = "threads", *, n_workers: int = 2, address: str | None = None,
                     slurm_config: str | Path | None = None, max_threads: int | None = None):
    """The Prefect task runner for ``kind`` (see the module docstring)."""
    if kind == "threads":
        return ThreadPoolTaskRunner(max_workers=max_threads)
    from prefect_dask import DaskTaskRunner  # imported only when asked for: it pulls in distributed

    if kind == "dask-local":
        return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs=local_cluster_kwargs(n_workers))
    if kind == "dask-address":
        if not address:
            raise ValueError("--dask-address is required with --task-runner dask-address (e.g. tcp://host:8786)")
        return DaskTaskRunner(address=address)
    if kind == "slurm":
        if slurm_config is None:
            raise ValueError("--slurm-config FILE is required with --task-runner slurm (see flows/slurm.example.yaml)")
        config = load_slurm_config(slurm_config)
        kwargs = slurm_cluster_kwargs(config)
        # a worker job that leaves with tasks running is named on the console with its walltime
        from flows import slurm_watch

        slurm_watch.WALLTIME = kwargs.get("walltime")
        import dask

        options = dict(kwargs.get("scheduler_options") or {})
        # an explicit preload replaces dask's configured ones (distributed.scheduler.preload): keep them
        preload = options.get("preload") or dask.config.get("distributed.scheduler.preload", None) or []
        options["preload"] = [*([preload] if isinstance(preload, str) else preload), "flows.slurm_watch"]
        kwargs["scheduler_options"] = options
        return DaskTaskRunner(cluster_class="dask_jobqueue.SLURMCluster", cluster_kwargs=kwargs,
                              adapt_kwargs=config["adapt"])
    raise ValueError(f"unknown task runner {kind!r}; choose from {', '.join(RUNNERS)}")


def gpu_annotation(device: str):
    """``dask.annotate(resources={"GPU": 1})`` for CUDA work, a no-op context otherwise.

    The annotation only matters under a Dask task runner; with threads it is ignored. It is not used for
    CPU inference: a Dask cluster without GPU workers would then never schedule the task.
    """
    if not str(device).startswith("cuda"):
        return contextlib.nullcontext()
    import dask

    return dask.annotate(resources={"GPU": 1})
