"""What the flow tests share (tests/test_flow_cohort.py, tests/test_flow_process.py,
tests/test_flow_slurm.py): a small simulated cohort with a tiny checkpoint whose window plan fits it,
and a real Prefect server on a free loopback port.

Real MP4s from the simulator (MediaPipe poses them) and an untrained tiny Micro-DualNet: the flow tests
check orchestration (resume, failures, runners), not recognition accuracy.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

PARTICIPANTS = {"ASD-001", "ASD-002", "TDC-001", "TDC-002"}


def small_cohort(root: Path, *, seconds: float = 6, seed: int = 3) -> dict:
    """4 participants in 2 groups (ASD=2, TDC=2) of ``seconds`` each under ``root/sim`` and ``root/model.pt``."""
    from model.checkpoint import save_checkpoint
    from model.micro_dualnet import micro_dualnet_tiny
    from model.preprocessing import ClassList, Preprocessing
    from model.windows import WindowPlan
    from simulator.__main__ import main as simulate

    assert simulate(["-q", "cohort", "--out", str(root / "sim"), "--groups", "ASD=2,TDC=2", "--seconds", f"{seconds:g}",
                     "--size", "240x288", "--seed", str(seed)]) == 0
    classes = ClassList.from_actions(["nodding", "shaking legs", "crossing arms"], background=True)
    weights = save_checkpoint(root / "model.pt", micro_dualnet_tiny(num_classes=len(classes)), classes=classes,
                              preprocessing=Preprocessing(resize_short=72, size=64),
                              plan=WindowPlan(clip_len=4, stride=8),
                              provenance={"trained_on": "random initialisation (test)"})
    return {"manifest": root / "sim" / "manifest.csv", "weights": weights, "root": root, "videos": set(PARTICIPANTS)}


def stop_group(proc) -> None:
    """Stop a process started with ``start_new_session=True`` and everything in its group: SIGTERM,
    then SIGKILL after 20 s."""
    import os
    import signal
    import subprocess

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def prefect_server(home: Path, env: dict, *, port: int | None = None, server_env: dict | None = None):
    """A real ``prefect server start`` on a free loopback port, logging to ``home/server.log``.

    ``env`` is the environment of the flow runs; it gets PREFECT_HOME, PREFECT_API_URL pointing at the
    server, analytics off, WARNING logging and a runner that looks for scheduled runs every 2 s (Prefect's
    default is 10 s: each submission in a test would wait up to that long to start). ``server_env`` (default: that environment) is the
    server's own. Yields the run environment once ``/api/health`` answers (fails the test after 120 s)
    and stops the server's process group on exit.
    """
    import subprocess
    import sys
    import time
    import urllib.request

    import pytest

    port = port or free_port()
    prefect_vars = {"PREFECT_HOME": str(home), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
                    "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING",
                    "PREFECT_RUNNER_POLL_FREQUENCY": "2"}
    prefect = str(Path(sys.executable).with_name("prefect"))
    with open(home / "server.log", "w") as log:
        server = subprocess.Popen([prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                                  env={**(env if server_env is None else server_env), **prefect_vars},
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"Prefect server not healthy in 120 s: {(home / 'server.log').read_text()[-2000:]}")
                time.sleep(0.5)
            yield {**env, **prefect_vars}
        finally:
            stop_group(server)
