"""Command-line conventions shared by every ``python -m <package>.<module>`` entry point.

- ``--help`` explains every option (argparse, with defaults shown).
- Exit code 0 on success, 2 on bad input (:class:`BadInput`, a missing file, a broken contract) with
  a one-line reason on stderr, 1 when some items of a batch failed (e.g. one video of many).
- Results: the CLI prints where it wrote them (``wrote <path>``) on stdout.
- Logging goes to stderr; ``-v`` for debug, ``-q`` for warnings only.
- Long loops show a progress bar (:func:`progress`), silenced when stderr is not a terminal or
  ``--quiet`` is given, so CI logs stay readable.

Example
-------
>>> def main(argv=None):
...     parser = make_parser("Do a thing.", prog="python -m pkg.thing")
...     args = parser.parse_args(argv)
...     with handle_errors():
...         ...
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from tqdm.auto import tqdm

from pipeline.contracts import ContractError

__all__ = ["BadInput", "EXIT_OK", "EXIT_PARTIAL", "EXIT_BAD_INPUT", "make_parser", "setup_logging", "handle_errors",
           "progress", "report_written", "check_output_dir", "HelpFormatter"]

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_BAD_INPUT = 2

T = TypeVar("T")
_quiet = False


class BadInput(ValueError):
    """The user gave input the program cannot use. The message is shown as the one-line reason."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default only where it says something: not for flags, empty values, or help that has one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or action.default in (None, False, ()) or action.default is argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


def make_parser(description: str, *, prog: str) -> argparse.ArgumentParser:
    """An argparse parser with the project's common options (``-v``, ``-q``) and :class:`HelpFormatter`."""
    parser = argparse.ArgumentParser(prog=prog, description=description, formatter_class=HelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings only, no progress bars")
    return parser


class _OneLineFormatter(logging.Formatter):
    """A logged exception as ``(Type: first line)`` after the message instead of a traceback (``-q``)."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage().splitlines()[0] if record.getMessage() else ""
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            text += f" ({type(exc).__name__}: {(str(exc).splitlines() or [''])[0]})"
        return self.formatMessage(logging.makeLogRecord({**record.__dict__, "message": text}))


def setup_logging(*, verbose: bool = False, quiet: bool = False) -> None:
    """Log to stderr at DEBUG (``-v``), INFO, or WARNING (``-q``, one line per record, no tracebacks).

    The level is set on the console handler too, not only on the root logger: a record from a logger
    with a level of its own (Prefect sets ``prefect`` to INFO) reaches the root's handlers without
    passing the root logger's level, so ``-q`` printed Prefect's INFO lines.
    """
    global _quiet
    _quiet = quiet
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    fmt = "%(levelname)s %(name)s: %(message)s"
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(level)
    handler.setFormatter(_OneLineFormatter(fmt) if quiet else logging.Formatter(fmt))
    logging.basicConfig(level=level, handlers=[handler], force=True)


@contextlib.contextmanager
def handle_errors(prog: str = "") -> Iterator[None]:
    """Turn bad-input exceptions into a one-line message on stderr and exit code 2."""
    try:
        yield
    except (BadInput, ContractError, FileNotFoundError) as exc:
        _fail(prog, str(exc))
    except OSError as exc:  # cannot write an output (permissions, a file where a folder should be, disk full)
        where = f" {exc.filename}" if exc.filename else ""
        _fail(prog, f"cannot write{where}: {exc.strerror or exc}")


def _fail(prog: str, message: str) -> None:
    name = f"{prog}: " if prog else ""
    print(f"{name}error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_INPUT) from None


def check_output_dir(path: str | os.PathLike, *, what: str = "--out") -> Path:
    """Make sure ``path`` can hold outputs *before* any work starts; return it as a Path.

    Creates the folder if needed. Raises :class:`BadInput` (exit 2, one line) when it is an existing
    file, cannot be created, or is not writable (checked by creating and removing a probe file, which
    also catches read-only mounts that ``os.access`` misses when running as root).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise BadInput(f"{what} {path} is an existing file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise BadInput(f"{what} {path} is not writable: {exc.strerror or exc}") from None
    return path


def progress(iterable: Iterable[T], *, desc: str, total: int | None = None, unit: str = "it") -> Iterable[T]:
    """A tqdm progress bar on stderr, disabled when quiet or when stderr is not a terminal."""
    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=_quiet or None, file=sys.stderr, dynamic_ncols=True)


def report_written(path: object, what: str = "") -> None:
    """Print where a result was written (stdout, one line per file)."""
    print(f"wrote {what + ': ' if what else ''}{path}")
