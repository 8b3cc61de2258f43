"""Keep native libraries' start-up noise off stderr without ever pointing file descriptor 2 elsewhere.

MediaPipe's C++ side writes TFLite/absl lines straight to fd 2, before (and without) any logging set-up
that environment variables could quieten: ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.``
once per process, ``WARNING: All log messages before absl::InitializeLog() ...`` once, and two
``W0000 ... inference_feedback_manager.cc:114] Feedback manager requires ...`` lines per graph, i.e. per
video (measured with mediapipe 0.10.14; ``GLOG_minloglevel``/``TF_CPP_MIN_LOG_LEVEL`` change none of it).

The old way, pointing fd 2 at ``/dev/null`` while a graph started, swaps a process-wide resource from
worker threads: every other thread's error lines written meanwhile were lost, and an unbalanced
save/restore left the rest of a flow run's console on ``/dev/null``. Here fd 2 is replaced **once per
process** (:func:`install`, under a lock, idempotent; the flow calls it before its threads start, and
:class:`pipeline.pose_mediapipe.MediaPipePose` calls it too) by the write end of a pipe; a daemon thread
copies everything from the pipe to the original stderr as it arrives, except whole lines that match
:data:`NOISE` (the native libraries' INFO/WARNING lines; their ERROR and FATAL lines pass). Nothing is
ever switched back and forth, so no thread can observe or leave a silenced descriptor.

Limits: a line is held back only while it could still become a noise line (a few bytes, until its
newline arrives); text without a newline (a progress bar's ``\\r`` updates) is forwarded at once. At
interpreter exit (``atexit``) the original fd 2 is put back and what the pipe still holds is copied out.
A process killed by SIGKILL loses what the copier had not yet read (it reads as data arrives: the window
is the scheduler's latency, not a buffer). With debug logging on (``-v``) nothing is installed: the
native lines are shown.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
import threading

__all__ = ["NOISE", "install", "installed", "is_noise"]

# Whole lines the native libraries print on their own that carry nothing for the user.
NOISE = re.compile(
    rb"^(?:INFO: Created TensorFlow Lite (?:XNNPACK )?delegate for CPU\."
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|[IW]\d{4} [\d:. ]+\d+ [\w./-]+\.(?:cc|h):\d+\] .*)\r?$"
)
# The beginnings a noise line can have: a partial line matching one is held until its newline.
_MAYBE_NOISE = (b"INFO: Created", b"WARNING: All log", b"I0", b"I1", b"W0", b"W1")

_lock = threading.Lock()
_state: dict = {}  # "original": the real stderr's fd (a dup), "thread": the copier, "write": the pipe's write end


def is_noise(line: bytes) -> bool:
    """Whether one line (without its newline) is native start-up noise (see :data:`NOISE`)."""
    return NOISE.match(line) is not None


def installed() -> bool:
    return bool(_state)


def _could_become_noise(partial: bytes) -> bool:
    head = partial[: max(len(p) for p in _MAYBE_NOISE)]
    return any(p.startswith(head) or head.startswith(p) for p in _MAYBE_NOISE) and b"\r" not in partial


def _write_all(fd: int, data: bytes) -> None:
    while data:
        try:
            n = os.write(fd, data)
        except InterruptedError:
            continue
        except OSError:  # the original stderr is gone (a closed terminal): nothing to keep
            return
        data = data[n:]


def _copy(read_fd: int, out_fd: int) -> None:
    """The copier: pipe -> original stderr, dropping whole noise lines."""
    pending = b""
    while True:
        try:
            chunk = os.read(read_fd, 65536)
        except InterruptedError:
            continue
        except OSError:
            chunk = b""
        if not chunk:
            if pending:
                _write_all(out_fd, pending)
            os.close(read_fd)
            return
        pending += chunk
        *lines, pending = pending.split(b"\n")
        kept = b"".join(line + b"\n" for line in lines if not is_noise(line))
        if pending and not _could_become_noise(pending):
            kept, pending = kept + pending, b""
        if kept:
            _write_all(out_fd, kept)


def install() -> bool:
    """Route fd 2 through the noise filter, once per process; True when it is (now or already) installed.

    Call it from the main thread before worker threads start where possible; it is safe from any
    thread (a lock makes the first call the only one that acts). Does nothing with debug logging on.
    """
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        return False
    with _lock:
        if _state.get("pid") == os.getpid():
            return True
        _state.clear()  # a forked child inherits the parent's record, not its copier thread: start anew
        try:
            sys.stderr.flush()
        except (AttributeError, ValueError, OSError):
            pass
        original = os.dup(2)
        read_fd, write_fd = os.pipe()
        os.set_inheritable(original, False)
        os.dup2(write_fd, 2)  # the one switch: from here on fd 2 is the pipe (inherited by children)
        os.close(write_fd)
        thread = threading.Thread(target=_copy, args=(read_fd, original), name="native-stderr-filter", daemon=True)
        thread.start()
        _state.update(pid=os.getpid(), original=original, thread=thread)
    atexit.register(_uninstall)
    return True


def _uninstall(timeout: float = 2.0) -> None:
    """At exit: put the original stderr back on fd 2 and let the copier drain what the pipe holds."""
    with _lock:
        if _state.get("pid") != os.getpid():
            return
        try:
            sys.stderr.flush()
        except (AttributeError, ValueError, OSError):
            pass
        os.dup2(_state["original"], 2)  # closes our last reference to the pipe's write end
        thread, original = _state["thread"], _state["original"]
        _state.clear()
    thread.join(timeout)  # EOF once no child process holds the write end any more
    if not thread.is_alive():
        os.close(original)
