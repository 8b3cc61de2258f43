"""The flow's SLURM task runner against a real one-node Slurm cluster (scripts/slurm-local).

Slow. Worker jobs are submitted with the real ``sbatch`` by ``dask_jobqueue.SLURMCluster`` built from a
``flows/slurm.example.yaml``-style file, start a Dask worker from this checkout's venv, reach the flow's
scheduler on loopback and run pose and recognition tasks; the task states go to a real Prefect server.
The tests skip with the reason when Slurm cannot start here (not root, slurm-wlm/munge missing).

Which worker ran which task comes from a scheduler preload (tests/dask_task_log.py) loaded through
Dask's own config by the flow's scheduler.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import yaml

from flow_fixtures import prefect_server, stop_group
from slurm_fixtures import free_port, slurm_local, unavailable_reason  # noqa: F401  (slurm_local: a fixture)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).with_name("prefect"))
DRIVER = str(ROOT / "tests" / "slurm_driver.py")
TASK_LOG_PRELOAD = str(ROOT / "tests" / "dask_task_log.py")
FLOW_TIMEOUT = 300  # no run here takes more than ~2 minutes; past this it hangs


# --------------------------------------------------------------------------------------------------
# The start-up script itself
# --------------------------------------------------------------------------------------------------
def _needs_slurm():
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"Slurm cannot start here: {reason}")


def _cluster_processes(conf: Path) -> list[int]:
    marker = f"SLURM_CONF={conf}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker in (entry / "environ").read_bytes().split(b"\0"):
                if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def test_slurm_local_runs_a_job_and_stops_everything_it_started(tmp_path):
    """`run` mode: a batch job runs on the node; a job still running at exit is cancelled, daemons stopped."""
    _needs_slurm()
    folder = tmp_path / "cluster"
    marker = tmp_path / "job-ran"
    script = (f"sbatch --wait -o /dev/null --wrap 'echo $SLURM_JOB_ID > {marker}' && "
              "sbatch -o /dev/null --wrap 'sleep 300' && "
              "for i in $(seq 50); do squeue -h -t R | grep -q . && break; sleep 0.2; done; squeue -h -t R")
    r = subprocess.run([str(ROOT / "scripts" / "slurm-local"), "run", "--dir", str(folder), "--",
                        "bash", "-c", script], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    assert marker.read_text().strip().isdigit()
    assert "sleep" in r.stdout or "wrap" in r.stdout  # the second job was running when the command ended
    assert f"node {os.uname().nodename.split('.')[0]} idle" in r.stderr
    assert _cluster_processes(folder / "slurm.conf") == []  # slurmstepd, the job's sleep, daemons: all gone
    assert not (folder / "ready").exists()


def test_slurm_local_start_failure_names_the_daemon_and_its_log_line(tmp_path):
    """slurmctld's port taken: one line on stderr naming slurmctld and its log's last line; munged stopped."""
    _needs_slurm()
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        r = subprocess.run([str(ROOT / "scripts" / "slurm-local"), "run", "--dir", str(tmp_path / "c"),
                            "--ctld-port", str(busy.getsockname()[1]), "--", "true"],
                           capture_output=True, text=True, timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert lines[0].startswith("slurm-local: slurmctld exited during start-up: ")
    assert "Address already in use" in lines[0]  # slurmctld's own last log line
    assert _cluster_processes(tmp_path / "c" / "slurm.conf") == []  # munged, started first, was stopped


# --------------------------------------------------------------------------------------------------
# Fixtures: a Prefect server, two tiny simulated cohorts, SLURM config files
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def prefect_env(slurm_local, tmp_path_factory):
    """A real Prefect server on a free loopback port; the environment for flow runs (SLURM_CONF included)."""
    env = slurm_local.env(PYTHONPATH=str(ROOT))
    with prefect_server(tmp_path_factory.mktemp("prefect-home"), env, port=free_port(),
                        server_env={k: v for k, v in env.items() if k != "SLURM_CONF"}) as run_env:
        yield run_env


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """4 simulated participants in 2 groups (4 s each) + a small checkpoint whose window plan fits them."""
    from flow_fixtures import small_cohort

    return small_cohort(tmp_path_factory.mktemp("cohort"), seconds=4)


def slurm_config(path: Path, env: dict, *, walltime: str = "00:10:00", minimum: int = 1, maximum: int = 2,
                 gpus: int = 0, scheduler_file: Path | None = None) -> Path:
    """A flows/slurm.example.yaml-style file for this cluster.

    The job's environment is explicit (the usual break on real clusters: a job that does not activate the
    project's environment): the venv's python, the checkout on PYTHONPATH, the Prefect server's URL.
    """
    work = path.parent
    scheduler_options = {"dashboard_address": None}
    if scheduler_file:
        scheduler_options["scheduler_file"] = str(scheduler_file)
    cfg = {
        "cluster": {
            "queue": "debug", "cores": 1, "processes": 1, "memory": "4GB", "walltime": walltime,
            "python": sys.executable, "interface": "lo",
            "job_script_prologue": [f"cd {ROOT}", f"export PYTHONPATH={ROOT}",
                                    f"export PREFECT_API_URL={env['PREFECT_API_URL']}",
                                    f"export PREFECT_HOME={env['PREFECT_HOME']}"],
            "log_directory": str(work / "slurm-logs"), "local_directory": str(work / "dask-worker-space"),
            "scheduler_options": scheduler_options,
        },
        "gpus_per_job": gpus,
        "adapt": {"minimum": minimum, "maximum": maximum},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


class Run:
    """A flow run in its own process group, bounded by a timeout; squeue polled while it runs."""

    def __init__(self, cmd: list[str], env: dict, workdir: Path, slurm):
        self.task_log = workdir / "tasks.jsonl"
        env = {**env, "DASK_TASK_LOG": str(self.task_log),
               "DASK_DISTRIBUTED__SCHEDULER__PRELOAD": json.dumps([TASK_LOG_PRELOAD])}
        self.out_path, self.err_path = workdir / "run.out", workdir / "run.err"
        self.slurm = slurm
        self.jobs_before = {j["id"] for j in slurm.jobs()}
        self.seen_running: set[int] = set()
        self._done = threading.Event()
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err, start_new_session=True)
        self._poller = threading.Thread(target=self._poll, daemon=True)
        self._poller.start()

    def _poll(self):
        while not self._done.is_set():
            try:
                self.seen_running |= {j["id"] for j in self.slurm.queued() if j["state"] == "RUNNING"}
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
            self._done.wait(1.0)

    def wait(self, timeout: float = FLOW_TIMEOUT) -> int:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_group(self.proc)
            pytest.fail(f"the flow run did not end within {timeout} s (it hangs): {self.stderr()[-3000:]}")
        finally:
            self._done.set()
            self._poller.join()
        return rc

    def stderr(self) -> str:
        return self.err_path.read_text()

    def stdout(self) -> str:
        return self.out_path.read_text()

    def tasks(self) -> list[dict]:
        if not self.task_log.exists():
            return []
        return [json.loads(line) for line in self.task_log.read_text().splitlines() if line.strip()]

    def new_jobs(self) -> list[dict]:
        return [j for j in self.slurm.jobs() if j["id"] not in self.jobs_before]

    def kill(self):
        stop_group(self.proc)


def cli_run(cohort, out: Path, env, slurm, runner: str, *extra: str) -> Run:
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "flows.cohort_analysis", "--manifest", str(cohort["manifest"]), "--out", str(out),
           "--weights", str(cohort["weights"]), "--groups", "ASD", "TDC", "--task-runner", runner, *extra]
    return Run(cmd, env, out.parent, slurm)


def driver_run(env, slurm, workdir: Path, *args: str) -> Run:
    workdir.mkdir(parents=True, exist_ok=True)
    return Run([sys.executable, DRIVER, *args], env, workdir, slurm)


def cohort_params(cohort, out: Path, **extra) -> str:
    return json.dumps({"manifest": str(cohort["manifest"]), "out": str(out), "weights": str(cohort["weights"]),
                       "statistics": {"groups": ["ASD", "TDC"], "top_actions": 0}, **extra})


def assert_nothing_left(slurm) -> None:
    """No job pending or running, and no job step or Dask worker process of this cluster."""
    assert slurm.wait_queue_empty(60) == []
    deadline = time.monotonic() + 30
    while (left := slurm.processes()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left == {}, left


def assert_run_outputs_complete(out: Path, videos: set[str]) -> pd.DataFrame:
    """One keypoints and one windows file per video, one QC row each, no half-written file, no duplicate."""
    for stage, sub, qc in (("pose", "keypoints", "qc.parquet"), ("recognize", "windows", "qc_recognize.parquet")):
        files = sorted(p.name for p in (out / stage / sub).iterdir())
        assert files == sorted([f"{v}.parquet" for v in videos] + [f"{v}.parquet.json" for v in videos]), files
        table = pd.read_parquet(out / stage / qc)
        assert sorted(table["video_id"]) == sorted(videos)
        assert set(table["status"]) <= {"ok", "skipped"}
    cohort_table = pd.read_parquet(out / "readout" / "cohort.parquet")
    assert not cohort_table.duplicated(["participant_id", "action"]).any()
    assert set(cohort_table["participant_id"]) == videos
    return cohort_table


@pytest.fixture(scope="module")
def thread_table(slurm_local, prefect_env, cohort, tmp_path_factory):
    """The cohort table of the thread runner on this machine: what every SLURM run must reproduce."""
    out = tmp_path_factory.mktemp("threads") / "out"
    run = cli_run(cohort, out, prefect_env, slurm_local, "threads", "-q")
    assert run.wait() == 0, run.stderr()[-3000:]
    return pd.read_parquet(out / "readout" / "cohort.parquet")


# --------------------------------------------------------------------------------------------------
# The flow through SLURM
# --------------------------------------------------------------------------------------------------
def test_cohort_flow_runs_on_slurm_jobs_and_matches_the_thread_runner(slurm_local, prefect_env, cohort,
                                                                     thread_table, tmp_path):
    """`python -m flows.cohort_analysis --task-runner slurm`: the documented command, as a user runs it."""
    cfg = slurm_config(tmp_path / "slurm.yaml", prefect_env)
    run = cli_run(cohort, tmp_path / "out", prefect_env, slurm_local, "slurm", "--slurm-config", str(cfg), "-q")
    assert run.wait() == 0, run.stderr()[-3000:]

    # The workers were Slurm jobs: squeue listed them running, each reached the flow's scheduler.
    jobs = run.new_jobs()
    assert jobs and {j["name"] for j in jobs} == {"dask-worker"}, jobs
    assert run.seen_running & {j["id"] for j in jobs}
    for job in jobs:
        if job["id"] in run.seen_running:
            assert "Registered to:" in (tmp_path / "slurm-logs" / f"dask-worker-{job['id']}.err").read_text()
    # Every pose and recognition task ran on one of them.
    placed = [t for t in run.tasks() if t["event"] == "memory" and t["key"].startswith(("pose", "recognize"))]
    assert len(placed) == 8 and all(t["name"].startswith("SLURMCluster-") for t in placed), placed

    table = assert_run_outputs_complete(tmp_path / "out", cohort["videos"])
    pd.testing.assert_frame_equal(table, thread_table)
    assert_nothing_left(slurm_local)


def test_cancelled_worker_job_loses_no_task(slurm_local, prefect_env, cohort, thread_table, tmp_path):
    """`scancel` of the worker job while a pose task runs on it: the task reruns on a new job, the flow completes."""
    cfg = slurm_config(tmp_path / "slurm.yaml", prefect_env, minimum=1, maximum=1)
    run = cli_run(cohort, tmp_path / "out", prefect_env, slurm_local, "slurm", "--slurm-config", str(cfg), "-q")
    deadline = time.monotonic() + 180
    running = None
    while running is None:  # the first pose task placed on a worker, not yet finished
        assert run.proc.poll() is None and time.monotonic() < deadline, run.stderr()[-3000:]
        events = run.tasks()
        done = {t["key"] for t in events if t["event"] == "memory"}
        running = next((t for t in events if t["event"] == "processing" and t["key"].startswith("pose")
                        and t["key"] not in done), None)
        time.sleep(0.2)
    victims = [j["id"] for j in run.new_jobs() if j["state"] == "RUNNING"]
    assert len(victims) == 1, run.new_jobs()
    slurm_local.command("scancel", str(victims[0]))
    assert run.wait() == 0, run.stderr()[-3000:]

    states = {j["id"]: j["state"] for j in run.new_jobs()}
    assert states[victims[0]] == "CANCELLED"
    assert any(job > victims[0] for job in states), states  # a new job took over
    events = run.tasks()
    assert any(t["event"] == "remove-worker" and t["worker"] == running["worker"] for t in events)
    finished = [t for t in events if t["event"] == "memory" and t["key"].startswith(("pose", "recognize"))]
    assert len({t["key"] for t in finished}) == 8, finished  # every task finished (outputs: once each, below)
    assert any(t["key"] == running["key"] and t["worker"] != running["worker"] for t in finished)

    table = assert_run_outputs_complete(tmp_path / "out", cohort["videos"])
    pd.testing.assert_frame_equal(table, thread_table)
    assert_nothing_left(slurm_local)


def test_walltime_shorter_than_the_work_recovers_on_new_jobs(slurm_local, prefect_env, tmp_path):
    """Jobs of 1 minute (Slurm's least walltime), one at a time, for two tasks of 50 s each.

    Slurm ends the first job at its walltime (state TIMEOUT; its log says DUE TO TIME LIMIT) with a task
    running; that task reruns on the next job and the run completes, every result once, within a bound.
    (A rerun sleeps 2 s, so the replacement job finishes inside its own minute.)
    """
    cfg = slurm_config(tmp_path / "slurm.yaml", prefect_env, walltime="00:01:00", minimum=1, maximum=1)
    out = tmp_path / "attempts"
    run = driver_run(prefect_env, slurm_local, tmp_path, "sleepers", "2", "50", "2", str(out), str(cfg))
    assert run.wait() == 0, run.stderr()[-3000:]
    assert json.loads(run.stdout().strip().splitlines()[-1]) == [0, 1]

    jobs = run.new_jobs()
    timed_out = [j for j in jobs if j["state"] == "TIMEOUT"]
    assert timed_out, jobs
    # the flow's console names the walltime when a job leaves with a task running (flows.slurm_watch)
    assert "a SLURM worker left while running 1 task(s)" in run.stderr() and "walltime of 00:01:00" in run.stderr(), \
        run.stderr()[-3000:]
    for job in timed_out:
        assert job["time_limit"] == "1:00"
        log = (tmp_path / "slurm-logs" / f"dask-worker-{job['id']}.err").read_text()
        assert f"JOB {job['id']} ON" in log and "DUE TO TIME LIMIT" in log, log[-2000:]
    # A task that was running when its job hit the walltime started again on a later job.
    attempts = {i: (out / f"attempts-{i}.log").read_text().splitlines() for i in range(2)}
    retried = [i for i, lines in attempts.items() if len(lines) > 1]
    assert retried, attempts
    for i in retried:
        assert attempts[i][0].split()[1] in {f"job={j['id']}" for j in timed_out}
        assert attempts[i][-1].split()[1] != attempts[i][0].split()[1]
    assert_nothing_left(slurm_local)


def test_recognition_goes_only_to_the_gpu_worker(slurm_local, prefect_env, cohort, tmp_path):
    """device=cuda: recognition tasks carry the Dask resource GPU=1; a CPU worker never gets one.

    The flow's SLURM runner starts CPU workers; a second job from a ``gpus_per_job: 1`` config (real
    ``--gres=gpu:1`` on a node with a count-only GPU, worker ``--resources GPU=1``) joins the same
    scheduler. This machine has no CUDA, so recognition then fails on the GPU worker, which is the point:
    the routing is what is checked, and the flow ends with the reason instead of waiting.
    """
    from dask_jobqueue.slurm import SLURMJob

    from flows.task_runners import load_slurm_config, slurm_cluster_kwargs

    scheduler_file = tmp_path / "scheduler.json"
    cfg = slurm_config(tmp_path / "slurm.yaml", prefect_env, minimum=1, maximum=1, scheduler_file=scheduler_file)
    run = cli_run(cohort, tmp_path / "out", prefect_env, slurm_local, "slurm", "--slurm-config", str(cfg),
                  "--device", "cuda", "-q")
    deadline = time.monotonic() + 120
    while not scheduler_file.exists():
        assert run.proc.poll() is None and time.monotonic() < deadline, run.stderr()[-3000:]
        time.sleep(0.2)
    time.sleep(0.5)
    address = json.loads(scheduler_file.read_text())["address"]

    gpu_cfg = slurm_config(tmp_path / "gpu.yaml", prefect_env, gpus=1)
    kwargs = slurm_cluster_kwargs(load_slurm_config(gpu_cfg))
    kwargs.pop("scheduler_options")
    script = SLURMJob(scheduler=address, name="gpu-worker", **kwargs).job_script()
    assert "#SBATCH --gres=gpu:1" in script and "--resources GPU=1" in script
    r = subprocess.run(["sbatch", "--parsable", "-J", "dask-gpu-worker"], input=script, env=slurm_local.env(),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr  # slurmctld accepted the GPU request
    gpu_job = int(r.stdout.strip().split(";")[0])
    try:
        rc = run.wait()
    finally:
        slurm_local.command("scancel", str(gpu_job))  # ours, not the SLURMCluster's: it does not cancel it

    assert rc != 0
    events = run.tasks()
    rec = [t for t in events if t["event"] == "processing" and t["key"].startswith("recognize")]
    assert len({t["key"] for t in rec}) == 4, events
    assert all(t["name"] == "gpu-worker" and t["resources"] == {"GPU": 1.0} for t in rec), rec
    pose_workers = {t["name"] for t in events if t["event"] == "processing" and t["key"].startswith("pose")}
    assert any(name.startswith("SLURMCluster-") for name in pose_workers)  # a CPU worker was there, and busy
    # Recognition ran on the GPU worker and failed there for want of a real GPU: the flow says so and stops.
    err = run.stderr()
    # (recognition checks the device once per task: the GPU worker's first task stops the run with one line)
    assert "--device cuda: CUDA is not available on this machine" in err, err[-3000:]
    assert_nothing_left(slurm_local)


def test_afterwards_no_job_and_no_slurm_or_dask_process(slurm_local):
    """After all the runs above, whatever they did: an empty queue, no job step, no Dask worker."""
    assert_nothing_left(slurm_local)
