"""``python -m pipeline.codings``: human codings in (``import``) and out (``export``).

::

    python -m pipeline.codings import --format boris|elan|observer|csv FILE_OR_DIR ... \\
        --mapping ETHOGRAM --manifest MANIFEST --out RUN/codings [--coder NAME] [--fps N] \\
        [--allow-unmapped] [--close-open-states]
    python -m pipeline.codings export --format elan|boris --run RUN --out DIR [--layout ...] [--mapping ETHOGRAM]

Exit status: 0 ok, 2 bad input (one line naming file, place and time; nothing written).
Each subcommand adds its parser in a function of its own (``_add_import``, ``_add_export``); ``main`` dispatches on
``args.command`` to the function the subparser set as ``args.handler`` (``args.run`` is the export's ``--run`` folder).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pipeline.cli import HelpFormatter, handle_errors, make_parser, report_written, setup_logging

PROG = "python -m pipeline.codings"


def _add_import(sub) -> None:
    from pipeline.codings.importer import FORMATS

    p = sub.add_parser(
        "import", formatter_class=HelpFormatter,
        help="import BORIS / ELAN / Observer / CSV codings into RUN/codings",
        description="Read coding files, map their codes to MA-52 actions through the ethogram mapping, match "
                    "their media to the manifest's videos and write RUN/codings (events, sessions, per-frame truth "
                    "per coder, detections CSV, qc). See docs/codings.md. Exit status: 0 ok, 2 bad input (nothing "
                    "written).")
    p.add_argument("sources", nargs="+", metavar="FILE_OR_DIR", help="coding files, or folders of them")
    p.add_argument("--format", required=True, choices=FORMATS, help="the files' format")
    p.add_argument("--mapping", required=True, metavar="ETHOGRAM",
                   help="ethogram mapping: CSV code,action[,tier] or YAML (with per-format options)")
    p.add_argument("--manifest", required=True, metavar="MANIFEST", help="cohort manifest (CSV or Parquet)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (RUN/codings)")
    p.add_argument("--coder", metavar="NAME", help="the coder of every event (overrides what the files say)")
    p.add_argument("--fps", type=float, metavar="N",
                   help="frame rate for videos that cannot be opened (otherwise the video's own is used)")
    p.add_argument("--allow-unmapped", action="store_true",
                   help="drop codes the mapping does not list (reported in qc) instead of refusing")
    p.add_argument("--close-open-states", action="store_true",
                   help="close a state that was started and never stopped at the video's end (reported in qc) "
                        "instead of refusing")
    p.set_defaults(handler=_run_import)


def _run_import(args: argparse.Namespace) -> int:
    from pipeline.codings.importer import import_codings

    result = import_codings(args.sources, format=args.format, mapping=args.mapping, manifest=args.manifest,
                            out=args.out, coder=args.coder, fps=args.fps, allow_unmapped=args.allow_unmapped,
                            close_open_states=args.close_open_states)
    print(result.summary(), file=sys.stderr)
    for p in result.written:
        if p.name in ("events.parquet", "sessions.parquet", "qc.parquet"):
            report_written(p)
    report_written(result.out / "frames", "per-frame truth")
    return 0


def _add_export(sub) -> None:
    from pipeline.codings import export

    p = sub.add_parser(
        "export", formatter_class=HelpFormatter,
        help="the model's detections as ELAN (.eaf) or BORIS (.boris) files for review",
        description=(export.__doc__ or "").strip().splitlines()[0])
    export.add_arguments(p)
    p.set_defaults(handler=export.run)


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("Human codings in and out: BORIS, ELAN, Noldus The Observer and CSV.", prog=PROG)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_import(sub)
    _add_export(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(verbose=args.verbose, quiet=args.quiet)
    with handle_errors(PROG):
        return args.handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
