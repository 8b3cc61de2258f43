"""A temporary Prefect API server that dies with the process that started it.

Why not Prefect's own ephemeral server: ``prefect.server.api.server.SubprocessASGIServer`` (Prefect
3.8.8) starts ``python -m uvicorn ... prefect.server.api.server:create_app`` with ``subprocess.Popen``
and stops it from an ``atexit`` hook. SIGTERM (Python's default action) and SIGKILL skip ``atexit``, so
a killed run left its server reparented to PID 1 and still listening. :func:`temporary_server` starts
the same app, with the same environment Prefect gives its own (no UI, ``PREFECT__SERVER_EPHEMERAL``,
the current settings), as a child whose first act is :func:`pipeline.stage.die_with_parent`
(``prctl(PR_SET_PDEATHSIG, SIGKILL)`` plus a watchdog on the parent's PID), and points
``PREFECT_API_URL`` at it, so Prefect never starts one of its own. The server dies within the
watchdog's half second of its parent however the parent dies, even during the server's start-up: the
hook is installed before uvicorn and Prefect's server are imported (pipeline.stage's own import,
mostly pandas, comes first).

The listening socket is bound here (port 0: the kernel picks a free port) and handed to the child as
an inherited descriptor, so there is no window between choosing a port and binding it in which
another process can take it (Prefect picks a random port and retries on a collision). The child runs
in its own session: Ctrl-C in the terminal reaches only the run, which drains Prefect's log and event
queues into the server before stopping it.

Child: ``python -m flows.server --parent PID --fd FD``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["TemporaryServer", "temporary_server", "start_server"]

_ROOT = Path(__file__).resolve().parents[1]  # the folder holding flows/ and pipeline/
# What SubprocessASGIServer._run_uvicorn_command gives its server (Prefect 3.8.8): no UI, the ephemeral
# app (services off), and the hint that it is the process's last app.
SERVER_ENV = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}


class TemporaryServer:
    """A started server process and its API URL (``http://127.0.0.1:<port>/api``)."""

    def __init__(self, process: subprocess.Popen, port: int, log=None):
        self.process = process
        self.port = port
        self.api_url = f"http://127.0.0.1:{port}/api"
        self.log = log  # the server's stdout and stderr (an unlinked temporary file), or None: inherited

    def log_tail(self, chars: int = 2000) -> str:
        """``": <the last lines the server wrote>"`` when it wrote any to its log file, else ``""``."""
        if self.log is None:
            return ""
        self.log.seek(0)
        text = self.log.read().decode(errors="replace").strip()[-chars:]
        return f": {text}" if text else ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (uvicorn shuts down cleanly), SIGKILL if it has not exited after ``timeout`` seconds."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.log is not None:
            self.log.close()
            self.log = None


def start_server(startup_timeout: float = 120.0) -> TemporaryServer:
    """Start the server as a child of this process and wait until ``/api/health`` answers.

    Raises RuntimeError when the child exits first or does not answer within ``startup_timeout``
    seconds (the child is then killed).
    """
    import httpx  # Prefect's own HTTP client, already imported by any process that runs a flow
    from prefect.settings import get_current_settings

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        port = sock.getsockname()[1]
        env = {**os.environ, **SERVER_ENV, **get_current_settings().to_environment_variables(exclude_unset=True)}
        env.pop("PREFECT_API_URL", None)  # the server is the API; it needs no client URL
        # the child imports this package whatever the working folder (an uninstalled checkout run via -m)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_ROOT), env.get("PYTHONPATH", "")) if p)
        # The server's own log (errors only: uvicorn at "error") stays off the console but is kept for
        # the message when it fails to start; -v shows it as it comes.
        log = None if logging.getLogger().isEnabledFor(logging.DEBUG) else tempfile.TemporaryFile()
        process = subprocess.Popen(
            [sys.executable, "-m", "flows.server", "--parent", str(os.getpid()), "--fd", str(sock.fileno())],
            env=env, pass_fds=(sock.fileno(),), start_new_session=True, stdout=log, stderr=log)
    finally:
        sock.close()  # the child holds its own copy; ours would keep the port open after the child dies
    server = TemporaryServer(process, port, log)
    deadline = time.monotonic() + startup_timeout
    with httpx.Client(timeout=5.0) as client:
        while True:
            if process.poll() is not None:
                tail = server.log_tail()
                server.stop()
                raise RuntimeError(f"the temporary Prefect server exited with code {process.returncode} while "
                                   f"starting{tail}")
            try:
                if client.get(f"{server.api_url}/health").status_code == 200:
                    return server
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                tail = server.log_tail()
                server.stop(timeout=2.0)
                raise RuntimeError(f"the temporary Prefect server did not answer within {startup_timeout:.0f} s "
                                   f"(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS){tail}")
            time.sleep(0.1)


def _drain_prefect_queues(timeout: float = 10.0) -> None:
    """Send the logs and events Prefect still holds to the server before it goes (as Prefect's own
    test harness does before stopping its server); otherwise they are retried against a closed port."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):  # a queue that never started has nothing to send
            service.drain_all(timeout=timeout)


@contextlib.contextmanager
def temporary_server(startup_timeout: float = 120.0) -> Iterator[TemporaryServer]:
    """A :class:`TemporaryServer` for the block, with ``PREFECT_API_URL`` pointing at it.

    The URL is set both in Prefect's settings context (this process, its threads) and in
    ``os.environ`` (processes started inside the block: a local Dask cluster's workers), and both are
    restored afterwards. On leaving, Prefect's queues are drained and the server is stopped; if this
    process is killed instead, the server's death hook ends it.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server = start_server(startup_timeout)
    previous = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            try:
                yield server
            finally:
                _drain_prefect_queues()
    finally:
        if previous is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = previous
        server.stop()


def _serve(parent: int, fd: int) -> None:
    """Child side: the death hook first, then the heavy imports, then uvicorn on the inherited socket."""
    from pipeline.stage import die_with_parent

    die_with_parent(parent)
    import uvicorn

    sock = socket.socket(fileno=fd)  # family and type are read from the descriptor
    config = uvicorn.Config("prefect.server.api.server:create_app", factory=True, log_level="error",
                            lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m flows.server",
                                     description="(internal) the temporary Prefect server of a direct run")
    parser.add_argument("--parent", type=int, required=True, help="PID whose death ends this server")
    parser.add_argument("--fd", type=int, required=True, help="inherited listening socket")
    args = parser.parse_args()
    _serve(args.parent, args.fd)
