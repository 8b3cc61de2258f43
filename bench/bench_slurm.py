"""Benchmark: what the SLURM task runner costs on a one-node Slurm cluster (one run; not a test).

Starts ``scripts/slurm-local up`` (needs root and the Debian packages slurm-wlm and munge) and a Prefect
server on loopback, then measures:

- job start latency: ``sbatch --wrap true`` to the job RUNNING in ``squeue`` and to it ending (``--jobs``
  jobs, one after the other); and ``SLURMCluster.scale(1)`` to a Dask worker registered with the scheduler
  (a job that starts the project's venv python and imports distributed);
- plain Dask tasks/s on one worker job (``20 x --tasks`` calls of a function returning its argument);
- tasks/s of a trivial Prefect task (returns its argument): ``--tasks`` tasks mapped through the flow's
  SLURM task runner (``--workers`` worker jobs of one core, started and waited for before the clock
  starts) against the thread runner in this process;
- the cohort flow (``python -m flows.cohort_analysis``) on a small simulated cohort (4 participants of
  ``--seconds`` s, a tiny random checkpoint, as tests/test_flow_slurm.py uses) with ``--task-runner
  slurm`` against ``--task-runner threads``, wall time of the whole command, same machine.

Printed: each figure, then the ratios side by side. Wall times on a shared 2-core machine vary with its
load: read the ratios, run it twice.

Usage::

    sudo .venv/bin/python bench/bench_slurm.py [--jobs 5] [--tasks 200] [--workers 2] [--seconds 4]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

PREFECT = str(Path(sys.executable).with_name("prefect"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], log: Path, env: dict) -> subprocess.Popen:
    with open(log, "w") as f:
        return subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_for(predicate, seconds: float, what: str, poll: float = 0.2):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise SystemExit(f"bench_slurm: {what} not within {seconds} s")


def squeue_state(env: dict, job: str) -> str:
    r = subprocess.run(["squeue", "-h", "--states=all", "-j", job, "-o", "%T"], env=env, capture_output=True, text=True)
    return r.stdout.strip()


def job_latency(env: dict, n: int) -> tuple[list[float], list[float]]:
    to_running, to_end = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        job = subprocess.run(["sbatch", "--parsable", "-o", "/dev/null", "--wrap", "true"], env=env,
                             capture_output=True, text=True, check=True).stdout.strip()
        running = None
        while True:
            state = squeue_state(env, job)
            if state in ("RUNNING", "COMPLETING") and running is None:
                running = time.perf_counter() - t0
            if state in ("COMPLETED", "FAILED", "CANCELLED"):
                break
            time.sleep(0.02)
        end = time.perf_counter() - t0
        to_running.append(running if running is not None else end)  # a job over before a poll saw it run
        to_end.append(end)
    return to_running, to_end


def slurm_yaml(path: Path, env: dict, workers: int) -> Path:
    cfg = {"cluster": {"queue": "debug", "cores": 1, "processes": 1, "memory": "4GB", "walltime": "00:30:00",
                       "python": sys.executable, "interface": "lo",
                       "job_script_prologue": [f"cd {REPO}", f"export PYTHONPATH={REPO}",
                                               f"export PREFECT_API_URL={env['PREFECT_API_URL']}",
                                               f"export PREFECT_HOME={env['PREFECT_HOME']}"],
                       "log_directory": str(path.parent / "slurm-logs"),
                       "local_directory": str(path.parent / "dask-worker-space"),
                       "scheduler_options": {"dashboard_address": None}},
           "gpus_per_job": 0, "adapt": {"minimum": workers, "maximum": workers}}
    path.write_text(yaml.safe_dump(cfg))
    return path


def worker_latency(cfg: Path, n: int) -> tuple[float, float]:
    """SLURMCluster.scale(1) to a worker registered, with the settings the flow's runner uses; then plain
    Dask tasks/s on that worker (``n`` calls of a function that returns its argument, no Prefect)."""
    from dask_jobqueue import SLURMCluster
    from distributed import Client

    from flows.task_runners import load_slurm_config, slurm_cluster_kwargs

    with SLURMCluster(**slurm_cluster_kwargs(load_slurm_config(cfg))) as cluster, Client(cluster) as client:
        t0 = time.perf_counter()
        cluster.scale(1)
        client.wait_for_workers(1, timeout=300)
        started = time.perf_counter() - t0
        client.gather(client.map(_identity, range(10), pure=False))  # warm-up
        t0 = time.perf_counter()
        assert client.gather(client.map(_identity, range(n), pure=False)) == list(range(n))
        return started, n / (time.perf_counter() - t0)


def _identity(x):
    return x


TRIVIAL = """
import json, sys, time
from prefect import flow, task
from prefect.context import get_run_context
from flows.cohort_analysis import direct_run_settings
from flows.task_runners import make_task_runner

@task(name="trivial")
def trivial(i):
    return i

@flow(name="trivial-tasks")
def trivial_flow(n, workers):
    if workers:
        get_run_context().task_runner.client.wait_for_workers(workers, timeout=300)
    [f.result() for f in trivial.map(list(range(4)))]  # warm-up: task engine imported where it runs
    t0 = time.perf_counter()
    results = [f.result() for f in trivial.map(list(range(n)))]
    assert results == list(range(n))
    return time.perf_counter() - t0

n, runner, cfg, workers = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
with direct_run_settings():
    kind = make_task_runner(runner, slurm_config=cfg or None)
    print(json.dumps({"seconds": trivial_flow.with_options(task_runner=kind)(n, workers if runner == "slurm" else 0)}))
"""


def trivial_tasks_per_s(env: dict, runner: str, cfg: Path, n: int, workers: int, work: Path) -> float:
    script = work / "trivial_flow.py"
    script.write_text(TRIVIAL)
    r = subprocess.run([sys.executable, str(script), str(n), runner, str(cfg), str(workers)], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise SystemExit(f"bench_slurm: trivial flow ({runner}) failed: {r.stderr[-2000:]}")
    return n / json.loads(r.stdout.strip().splitlines()[-1])["seconds"]


def make_cohort(root: Path, seconds: float) -> tuple[Path, Path]:
    from model.checkpoint import save_checkpoint
    from model.micro_dualnet import micro_dualnet_tiny
    from model.preprocessing import ClassList, Preprocessing
    from model.windows import WindowPlan
    from simulator.__main__ import main as simulate

    with contextlib.redirect_stdout(io.StringIO()):  # the simulator lists what it wrote
        ok = simulate(["-q", "cohort", "--out", str(root / "sim"), "--groups", "ASD=2,TDC=2", "--seconds", str(seconds),
                       "--size", "240x288", "--seed", "3"]) == 0
    assert ok
    classes = ClassList.from_actions(["nodding", "shaking legs", "crossing arms"], background=True)
    weights = save_checkpoint(root / "model.pt", micro_dualnet_tiny(num_classes=len(classes)), classes=classes,
                              preprocessing=Preprocessing(resize_short=72, size=64),
                              plan=WindowPlan(clip_len=4, stride=8), provenance={"trained_on": "random initialisation (bench)"})
    return root / "sim" / "manifest.csv", weights


def cohort_seconds(env: dict, manifest: Path, weights: Path, out: Path, runner: str, cfg: Path | None) -> float:
    cmd = [sys.executable, "-m", "flows.cohort_analysis", "--manifest", str(manifest), "--out", str(out),
           "--weights", str(weights), "--groups", "ASD", "TDC", "--task-runner", runner, "-q"]
    if cfg:
        cmd += ["--slurm-config", str(cfg)]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise SystemExit(f"bench_slurm: cohort flow ({runner}) failed: {r.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=5, help="sbatch jobs for the start latency")
    parser.add_argument("--tasks", type=int, default=200, help="trivial tasks per runner")
    parser.add_argument("--workers", type=int, default=2, help="worker jobs for the trivial tasks and the cohort")
    parser.add_argument("--seconds", type=float, default=4, help="length of each simulated recording")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-slurm-"))
    cluster_dir = work / "cluster"
    slurm = start([str(REPO / "scripts" / "slurm-local"), "up", "--dir", str(cluster_dir), "--watch-pid",
                   str(os.getpid())], work / "slurm-local.log", dict(os.environ))
    port = free_port()
    env = {**os.environ, "SLURM_CONF": str(cluster_dir / "slurm.conf"), "PYTHONPATH": str(REPO),
           "PREFECT_HOME": str(work / "prefect"), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING"}
    server = start([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], work / "prefect.log",
                   {k: v for k, v in env.items() if k != "SLURM_CONF"})
    try:
        wait_for(lambda: (cluster_dir / "ready").exists() or slurm.poll() is not None, 120, "the Slurm node idle")
        if slurm.poll() is not None:
            raise SystemExit((work / "slurm-local.log").read_text().strip().splitlines()[-1])

        def healthy():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_for(healthy, 120, "the Prefect server healthy", poll=0.5)
        os.environ["SLURM_CONF"] = env["SLURM_CONF"]  # for SLURMCluster's sbatch in this process
        cfg = slurm_yaml(work / "slurm.yaml", env, args.workers)

        to_running, to_end = job_latency(env, args.jobs)
        print(f"sbatch -> RUNNING        median {statistics.median(to_running):6.2f} s  (max {max(to_running):.2f}, {args.jobs} jobs)")
        print(f"sbatch -> job ended      median {statistics.median(to_end):6.2f} s  (`--wrap true`)")
        worker, dask_tps = worker_latency(cfg, 20 * args.tasks)
        print(f"scale(1) -> Dask worker  {worker:6.2f} s  (job start + venv python + distributed import + registration)")
        print(f"plain Dask tasks/s       {dask_tps:7.1f}  (1 worker job, no Prefect)")

        tps_threads = trivial_tasks_per_s(env, "threads", cfg, args.tasks, args.workers, work)
        tps_slurm = trivial_tasks_per_s(env, "slurm", cfg, args.tasks, args.workers, work)
        print(f"trivial Prefect tasks/s  threads {tps_threads:7.1f}   slurm ({args.workers} worker jobs) {tps_slurm:7.1f}")

        manifest, weights = make_cohort(work / "cohort", args.seconds)
        t_threads = cohort_seconds(env, manifest, weights, work / "out-threads", "threads", None)
        t_slurm = cohort_seconds(env, manifest, weights, work / "out-slurm", "slurm", cfg)
        print(f"cohort flow (4 x {args.seconds:g} s)   threads {t_threads:6.1f} s   slurm {t_slurm:6.1f} s")

        print("\nratios (slurm / threads, same machine)")
        print(f"  {'trivial tasks/s':<24} {tps_slurm / tps_threads:6.2f}")
        print(f"  {'cohort wall time':<24} {t_slurm / t_threads:6.2f}   (+{t_slurm - t_threads:.1f} s)")
        print(f"  {'worker start / job start':<24} {worker / statistics.median(to_running):6.1f}")
        print(f"  {'Prefect / plain Dask task':<24} {dask_tps / tps_slurm:6.0f}   (per-task cost through the cluster)")
    finally:
        stop(server)
        stop(slurm)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
