"""One writer per run folder: ``RUN/.run.lock``, held by the flow and by every CLI writing into a run.

Two runs into one folder both used to complete, the second redoing the first's pose work; with
different parameters their outputs could mix. Now the flow (:mod:`flows.cohort_analysis`) holds the
lock for the whole run, and a stage CLI whose output is part of a run folder (``--run RUN``, or
``--out RUN/pose`` and the like: :func:`run_root_of`) holds it while it writes. A second writer is
refused at once (:class:`RunLocked`, a :class:`pipeline.cli.BadInput`: one line, exit 2, nothing
written) with the holder's host, pid, start time and run id::

    RUN is in use by another run (host lab-ws1, pid 48211, started 2026-12-02 18:41:07 UTC,
    run id 3f2c...): wait for it to finish, or cancel it (docs/scale.md, "Operating the deployment")

**How.** The lock is an exclusive ``flock`` on ``RUN/.run.lock`` taken without waiting; the file's
content (one JSON object: host, pid, started, run_id, command) says who holds it. The kernel drops a
``flock`` when its holder's process ends however it ends (SIGKILL, a crash, a node's reboot on a local
disk), so there is no stale lock to guess about: when the ``flock`` is free but the file still names a
holder (it did not get to clear it), that holder is gone; the lock is taken over and the takeover is
reported (a warning, and :attr:`RunLock.took_over` names the previous holder). On release the content
is emptied; the file stays (removing it would let a waiter lock an unlinked file).

The lock is per process and re-entrant within it (the flow's own steps may call functions that take
it). Shared file systems: NFSv4 and Lustre (with ``flock`` mounts) pass ``flock`` between hosts; on a
file system without it, ``flock`` raises and the run is refused with that reason rather than run
unguarded.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import logging
import os
import platform
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.cli import BadInput

__all__ = ["LOCK_NAME", "RunLocked", "Holder", "RunLock", "run_lock", "run_root_of", "lock_for_output", "read_holder",
           "is_held"]

log = logging.getLogger("pipeline.run_lock")

LOCK_NAME = ".run.lock"
_RUN_MARKERS = ("manifest.csv", LOCK_NAME)  # a folder holding one of these is a run folder


class RunLocked(BadInput):
    """The run folder is held by another live run; the message names it."""


@dataclass(frozen=True)
class Holder:
    """Who holds (or held) a run folder."""

    host: str
    pid: int
    started: str  # ISO 8601, UTC
    run_id: str = ""
    command: str = ""

    def describe(self) -> str:
        started = self.started.replace("T", " ").split(".")[0].replace("+00:00", " UTC")
        parts = [f"host {self.host}", f"pid {self.pid}", f"started {started}"]
        if self.run_id:
            parts.append(f"run id {self.run_id}")
        if self.command:
            parts.append(self.command)
        return ", ".join(parts)


def read_holder(root: str | os.PathLike) -> Holder | None:
    """The holder recorded in ``root/.run.lock`` (None when there is none or the file is not ours)."""
    try:
        data = json.loads((Path(root) / LOCK_NAME).read_text() or "null")
        return Holder(host=str(data["host"]), pid=int(data["pid"]), started=str(data["started"]),
                      run_id=str(data.get("run_id") or ""), command=str(data.get("command") or ""))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def is_held(root: str | os.PathLike) -> bool:
    """Whether some live process holds the run folder's lock (a probe: takes and drops the flock at
    once, without touching the recorded holder). False when there is no lock file."""
    key = Path(root).resolve()
    if key in _held:
        return True
    try:
        fd = os.open(key / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


_held: dict[Path, "RunLock"] = {}  # this process's locks by run root (re-entrant)
_held_guard = threading.Lock()


class RunLock:
    """The exclusive lock of one run folder (use :func:`run_lock`)."""

    def __init__(self, root: Path, fd: int, holder: Holder, took_over: Holder | None) -> None:
        self.root, self.fd, self.holder, self.took_over = root, fd, holder, took_over
        self.depth = 1

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.ftruncate(self.fd, 0)
        os.close(self.fd)  # drops the flock


def _acquire(root: Path, run_id: str, command: str) -> RunLock:
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise RunLocked(f"{root}: cannot lock the run folder ({exc.strerror}); the file system must support "
                            "flock (docs/scale.md, \"Locks\")") from None
        holder = read_holder(root)
        who = holder.describe() if holder else "a process that has not yet recorded itself"
        raise RunLocked(f"{root} is in use by another run ({who}): wait for it to finish or cancel it "
                        "(docs/scale.md, \"Operating the deployment\")") from None
    previous = read_holder(root)
    holder = Holder(host=platform.node() or "host", pid=os.getpid(),
                    started=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    run_id=run_id, command=command)
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(holder.__dict__) + "\n").encode(), 0)
    os.fsync(fd)
    if previous is not None:
        log.warning("%s: took over the lock of a run that ended without releasing it (%s)", root, previous.describe())
    return RunLock(root, fd, holder, previous)


@contextlib.contextmanager
def run_lock(root: str | os.PathLike, *, run_id: str = "", command: str | None = None) -> Iterator[RunLock]:
    """Hold the run folder ``root`` (created if missing) for the block; :class:`RunLocked` when another
    live process holds it. Re-entrant within a process."""
    key = Path(root).resolve()
    with _held_guard:
        lock = _held.get(key)
        if lock is not None:
            lock.depth += 1
        else:
            lock = _held[key] = _acquire(key, run_id, " ".join(sys.argv[:1]) if command is None else command)
    try:
        yield lock
    finally:
        with _held_guard:
            lock.depth -= 1
            if lock.depth == 0:
                _held.pop(key, None)
                lock.release()


def run_root_of(path: str | os.PathLike) -> Path | None:
    """The run folder that ``path`` (an output folder) is, or is a stage folder of, else None.

    A run folder is recognised by its manifest copy or its lock file (:data:`_RUN_MARKERS`): ``RUN``
    itself, or its parent for ``RUN/pose``, ``RUN/recognize``, ``RUN/readout``, ``RUN/hurdle``,
    ``RUN/report``.
    """
    p = Path(path).resolve()
    for candidate in (p, p.parent):
        if any((candidate / m).exists() for m in _RUN_MARKERS):
            return candidate
    return None


def lock_for_output(path: str | os.PathLike | None, *, command: str) -> contextlib.AbstractContextManager:
    """The run lock of the run folder ``path`` belongs to (:func:`run_root_of`), or a no-op context when
    it belongs to none (a stage CLI writing into a folder of its own)."""
    root = run_root_of(path) if path is not None else None
    return run_lock(root, command=command) if root is not None else contextlib.nullcontext()
