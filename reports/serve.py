"""Serve a run's HTML report on localhost, for a browser that will not open a ``file://`` link.

The Prefect UI (a web page) may not open ``file://`` links, and the report sits on the disk of the
machine that ran the flow. The report itself is self-contained (its figures are inline, a
Content-Security-Policy forbids scripts and any request), so it can be copied anywhere and opened
there; or, on the machine that holds it::

    python -m reports.serve RUN            # RUN: the run folder (or its report/ folder)
    # serving /data/run1/report at http://127.0.0.1:8765/  (Ctrl-C stops)

and, from another machine, ``ssh -L 8765:127.0.0.1:8765 host`` then the same address. Only the report
folder is served, read-only, on the loopback interface only, with the report's own
Content-Security-Policy (read from its ``index.html``) sent as a header too, and ``X-Content-Type-Options:
nosniff``. Directory listings are off.
"""

from __future__ import annotations

import functools
import http.server
import re
import sys
from pathlib import Path

from pipeline.cli import BadInput, handle_errors, make_parser, setup_logging

__all__ = ["report_folder", "report_csp", "make_server", "main"]

_CSP = re.compile(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)"')


def report_folder(path: str | Path) -> Path:
    """The folder holding ``index.html``: ``path`` itself or ``path/report`` (a run folder)."""
    p = Path(path)
    for candidate in (p, p / "report"):
        if (candidate / "index.html").is_file():
            return candidate.resolve()
    raise BadInput(f"{p}: no report here (neither {p / 'index.html'} nor {p / 'report' / 'index.html'}); "
                   "build one with python -m reports.build --run RUN --out RUN/report")


def report_csp(folder: Path) -> str:
    """The Content-Security-Policy the report's index page declares."""
    m = _CSP.search((folder / "index.html").read_text(errors="replace"))
    if m is None:
        raise BadInput(f"{folder / 'index.html'}: no Content-Security-Policy; not a page of reports.build")
    return m.group(1)


class _ReportHandler(http.server.SimpleHTTPRequestHandler):
    csp = ""

    def end_headers(self) -> None:
        self.send_header("Content-Security-Policy", self.csp)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def list_directory(self, path):  # no listings: only the report's pages and files
        self.send_error(404, "no listing")
        return None

    def do_POST(self):  # read-only
        self.send_error(405)

    def log_message(self, format, *args):  # one line per request on stderr, as http.server does, but quieter
        if self.server.verbose:
            super().log_message(format, *args)


def make_server(folder: Path, port: int = 8765, *, verbose: bool = False) -> http.server.ThreadingHTTPServer:
    handler = type("ReportHandler", (_ReportHandler,), {"csp": report_csp(folder)})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(handler, directory=str(folder)))
    server.verbose = verbose
    return server


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__.split("\n\n")[0], prog="python -m reports.serve")
    parser.add_argument("run", type=Path, metavar="RUN", help="run folder (or its report/ folder)")
    parser.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0: any free port)")
    args = parser.parse_args(argv)
    setup_logging(verbose=args.verbose, quiet=args.quiet)
    with handle_errors("reports.serve"):
        folder = report_folder(args.run)
        try:
            server = make_server(folder, args.port, verbose=args.verbose)
        except OSError as exc:
            raise BadInput(f"--port {args.port}: {exc.strerror}") from None
    host, port = server.server_address[:2]
    print(f"serving {folder} at http://{host}:{port}/  (Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
