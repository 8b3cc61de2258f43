"""``python -m pipeline.codings``: human codings in and out.

::

    python -m pipeline.codings export --format elan|boris --run RUN --out DIR [--layout ...] [--mapping ETHOGRAM]

Each subcommand's module exposes ``add_arguments(parser)`` and ``run(args) -> int``; errors are one
line on stderr with exit code 2 (:func:`pipeline.cli.handle_errors`).
"""

from __future__ import annotations

import argparse

from pipeline.cli import HelpFormatter, handle_errors, make_parser, setup_logging
from pipeline.codings import export

PROG = "python -m pipeline.codings"
SUBCOMMANDS = {
    "export": (export, "the model's detections as ELAN (.eaf) or BORIS (.boris) files for review"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("Human codings of micro-actions in and out (BORIS, ELAN, The Observer, CSV).", prog=PROG)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(SUBCOMMANDS) + "}")
    for name, (module, text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=text, description=(module.__doc__ or text).strip().splitlines()[0],
                           formatter_class=HelpFormatter)
        module.add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(verbose=args.verbose, quiet=args.quiet)
    module, _ = SUBCOMMANDS[args.command]
    with handle_errors(f"{PROG} {args.command}"):
        return module.run(args)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
