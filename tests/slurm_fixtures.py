"""A one-node Slurm cluster for the tests (``scripts/slurm-local``), and the helpers the SLURM tests share.

:func:`slurm_local` (session-scoped) starts the cluster with one count-only GPU declared on the node (so
jobs may ask ``--gres=gpu:1`` on a CPU-only machine) and skips with the script's one-line reason when it
cannot start (not root, ``slurm-wlm``/``munge`` missing, a daemon failing). It stops the cluster, by PID,
when the session ends, whether the tests passed or not; the script also stops by itself when the test
process is gone.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "slurm-local"
_BINARIES = ("munged", "mungekey", "slurmctld", "slurmd", "sinfo", "squeue", "scancel", "sbatch")


class SlurmUnavailable(RuntimeError):
    """Slurm cannot start here; the message says why in one line."""


def unavailable_reason() -> str | None:
    """Why the cluster cannot even be tried here (None: it can)."""
    if os.geteuid() != 0:
        return "not root: scripts/slurm-local starts munged, slurmctld and slurmd directly as root"
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    missing = [b for b in _BINARIES if shutil.which(b, path=path) is None]
    if missing:
        return f"{', '.join(missing)} not found: install the Debian packages slurm-wlm and munge"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SlurmLocal:
    """A running ``scripts/slurm-local up``: its folder, slurm.conf and the script's process."""

    dir: Path
    proc: subprocess.Popen

    @property
    def conf(self) -> Path:
        return self.dir / "slurm.conf"

    def env(self, **extra: str) -> dict[str, str]:
        """This process's environment with SLURM_CONF pointing at the cluster (what sbatch/squeue need)."""
        return {**os.environ, "SLURM_CONF": str(self.conf), **extra}

    def command(self, *args: str, timeout: float = 60) -> str:
        r = subprocess.run(list(args), env=self.env(), capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")
        return r.stdout

    def jobs(self, *, finished: bool = True) -> list[dict]:
        """Jobs as squeue lists them (``--states=all``: finished ones stay listed for an hour)."""
        args = ["squeue", "-h", "-o", "%i|%j|%T|%l|%R"] + (["--states=all"] if finished else [])
        rows = []
        for line in self.command(*args).splitlines():
            job_id, name, state, limit, reason = line.split("|", 4)
            rows.append({"id": int(job_id), "name": name, "state": state, "time_limit": limit, "reason": reason})
        return rows

    def queued(self) -> list[dict]:
        """Jobs not finished (pending, running, completing)."""
        return self.jobs(finished=False)

    def wait_queue_empty(self, seconds: float = 60) -> list[dict]:
        """Wait until no job is pending or running; returns what is still queued after ``seconds``."""
        deadline = time.monotonic() + seconds
        while (left := self.queued()) and time.monotonic() < deadline:
            time.sleep(0.5)
        return left

    def processes(self) -> dict[int, str]:
        """Processes started under this cluster (their environment carries its SLURM_CONF), daemons excluded.

        Job steps (slurmstepd), the jobs' Dask workers and nannies: what must be gone once no job runs.
        A flow run's own process carries SLURM_CONF too: call this once it has ended.
        """
        daemons = set(self.daemon_pids())
        marker = f"SLURM_CONF={self.conf}".encode()
        found = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in daemons or int(entry.name) == self.proc.pid:
                continue
            try:
                if marker not in (entry / "environ").read_bytes().split(b"\0"):
                    continue
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                status = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if status == "Z" or not cmd or cmd.startswith("sleep ") or "slurmscriptd" in cmd:
                continue  # zombies, the script's own `sleep 1`, slurmctld's script helper (part of the daemon)
            found[int(entry.name)] = cmd
        return found

    def daemon_pids(self) -> list[int]:
        for line in (self.dir / "ready").read_text().splitlines():
            if line.startswith("SLURM_LOCAL_PIDS="):
                return [int(p) for p in line.split("=", 1)[1].split()]
        return []

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_slurm_local(folder: Path, *, fake_gpus: int = 1, timeout: float = 90) -> SlurmLocal:
    """``scripts/slurm-local up`` in ``folder``; returns once the node is idle, else :class:`SlurmUnavailable`."""
    reason = unavailable_reason()
    if reason:
        raise SlurmUnavailable(reason)
    log = open(folder.parent / f"{folder.name}.log", "w")
    proc = subprocess.Popen([str(SCRIPT), "up", "--dir", str(folder), "--fake-gpus", str(fake_gpus),
                             "--ctld-port", str(free_port()), "--slurmd-port", str(free_port()),
                             "--watch-pid", str(os.getpid()), "--timeout", str(int(timeout))],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    deadline = time.monotonic() + timeout + 30
    while not (folder / "ready").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=60)
            lines = (folder.parent / f"{folder.name}.log").read_text().strip().splitlines()
            raise SlurmUnavailable(lines[-1] if lines else f"scripts/slurm-local exited {proc.returncode}")
        time.sleep(0.2)
    return SlurmLocal(dir=folder, proc=proc)


@pytest.fixture(scope="session")
def slurm_local(tmp_path_factory):
    """A one-node Slurm cluster (one count-only GPU declared), stopped at the end of the session."""
    try:
        cluster = start_slurm_local(tmp_path_factory.mktemp("slurm"))
    except SlurmUnavailable as exc:
        pytest.skip(f"Slurm cannot start here: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()
