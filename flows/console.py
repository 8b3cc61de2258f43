"""What a flow command (``flows.cohort_analysis``, ``flows.demo``, ``flows.serve``) prints on its console.

Prefect logs every client HTTP request (``httpx``: one INFO line per API call), every task run's
final state and the engine's own messages; all of them also go to the Prefect UI through Prefect's API
log handler, which sits on Prefect's own loggers and sees every record before the console does. The
console keeps to what the user acts on:

- default: the project's own INFO lines; one progress line per finished task (how many runs of each
  task have finished so far); warnings; a failed task or flow as one line naming it and the
  exception's first line; no tracebacks, no HTTP requests, no other Prefect INFO lines, no INFO lines
  of a local Dask cluster (its worker processes log on their own, with Prefect's format);
- ``-q``: warnings and errors only (still one line each, no tracebacks);
- ``-v``: everything, Prefect's and httpx's records and tracebacks included.

:func:`flow_errors` turns an exception that escapes a run (a task's error, re-raised by Prefect) into
that same one line and exit code 1, instead of a Python traceback.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from collections import Counter
from collections.abc import Iterator

from pipeline.cli import setup_logging

__all__ = ["FlowConsoleHandler", "setup_console", "flow_errors", "one_line", "quiet_http_clients"]

# Libraries whose INFO lines are theirs, not the user's: every Prefect client HTTP request (httpx,
# httpcore) and a local Dask cluster's start-up and connections (distributed).
_CHATTY_LIBRARIES = ("httpx", "httpcore", "distributed")


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (the message alone when it already names the type)."""
    text = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _in(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


class FlowConsoleHandler(logging.StreamHandler):
    """The console handler of a flow command (see the module docstring for what it shows)."""

    def __init__(self, stream=None):
        super().__init__(stream if stream is not None else sys.stderr)
        self.finished: Counter[str] = Counter()  # finished runs per task name (the progress line)
        self._reported: set[str] = set()  # failures already printed (Prefect logs each one 2-4 times)

    def emit(self, record: logging.LogRecord) -> None:
        if _in(record.name, _CHATTY_LIBRARIES) and record.levelno < logging.WARNING:
            return
        if not _in(record.name, ("prefect",)):
            super().emit(self._without_traceback(record))
            return
        task = getattr(record, "task_name", None)
        message = record.getMessage()
        if record.levelno < logging.WARNING:
            if task and record.name == "prefect.task_runs" and message.startswith("Finished in state Completed"):
                self.finished[task] += 1
                counts = ", ".join(f"{name} {n}" for name, n in self.finished.items())
                super().emit(self._copy(record, f"tasks finished: {counts}", name="progress"))
            return
        what = f"task {task!r}" if task else "flow run" if record.name == "prefect.flow_runs" else record.name
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            line = one_line(exc)
            if line in self._reported:
                return
            self._reported.add(line)
            super().emit(self._copy(record, f"{what} failed: {line}"))
        elif message.startswith("Finished in state"):
            if self._reported:  # the state of a run whose exception was already printed
                return
            super().emit(self._copy(record, f"{what}: {message.splitlines()[0]}"))
        else:
            super().emit(self._without_traceback(record))

    @staticmethod
    def _copy(record: logging.LogRecord, message: str, name: str | None = None) -> logging.LogRecord:
        """The record with another message and no exception (a copy: other handlers share the record)."""
        new = logging.makeLogRecord(record.__dict__)
        new.msg, new.args, new.exc_info, new.exc_text, new.stack_info = message, (), None, None, None
        new.name = name or record.name
        return new

    def _without_traceback(self, record: logging.LogRecord) -> logging.LogRecord:
        if not (record.exc_info or record.exc_text or record.stack_info):
            return record
        exc = record.exc_info[1] if record.exc_info else None
        suffix = f" ({one_line(exc)})" if exc is not None else ""
        return self._copy(record, record.getMessage().splitlines()[0] + suffix)


def quiet_http_clients() -> None:
    """In a flow-run process (started by ``flows.serve``, with Prefect's own logging set-up): the HTTP
    clients' INFO lines (one per API call: state updates, log and event uploads, polls) are dropped at
    the source, unless debug logging is on or the user set those loggers' levels. They made most of a
    serve log (161 of 197 lines seen)."""
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        return
    for name in ("httpx", "httpcore"):
        lg = logging.getLogger(name)
        if lg.level == logging.NOTSET:
            lg.setLevel(logging.WARNING)


def setup_console(*, verbose: bool = False, quiet: bool = False) -> None:
    """:func:`pipeline.cli.setup_logging`, then (unless ``verbose``) :class:`FlowConsoleHandler` as the
    console handler, at the level setup_logging chose."""
    setup_logging(verbose=verbose, quiet=quiet)
    if verbose:
        return
    # protobuf's deprecation warning fires on every MediaPipe call; pipeline.pose_mediapipe ignores it
    # with warnings.catch_warnings(), which is not thread-safe, so under the thread runner it leaks.
    warnings.filterwarnings("ignore", message="SymbolDatabase.GetPrototype", category=UserWarning)
    root = logging.getLogger()
    old = root.handlers[0]
    handler = FlowConsoleHandler(getattr(old, "stream", sys.stderr))
    handler.setLevel(old.level)
    handler.setFormatter(old.formatter)
    root.handlers = [handler]


@contextlib.contextmanager
def flow_errors(prog: str, *, verbose: bool = False) -> Iterator[None]:
    """An exception escaping the block (a task's error, re-raised by Prefect) becomes one line on stderr
    and exit code 1 (the run failed); ``verbose`` lets it through with its traceback. Bad input is
    :func:`pipeline.cli.handle_errors`'s (exit 2): use that inside this."""
    try:
        yield
    except Exception as exc:
        if verbose:
            raise
        print(f"{prog}: error: {one_line(exc)} (-v shows the traceback)", file=sys.stderr)
        raise SystemExit(1) from None  # the run failed; bad input (exit 2) is handle_errors'
