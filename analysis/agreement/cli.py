"""``python -m analysis.agreement``: agreement of the model with human coders, and of coders with each other.

Usage::

    python -m analysis.agreement --run RUN [--codings RUN/codings] [--coders A,B,...]
        [--reference CODER|consensus] [--bin 1frame|SECONDS] [--tolerance 0.5] [--bootstrap 2000]
        [--seed 0] [--out RUN/validation]
    python -m analysis.agreement --codings CODINGS --out DIR      # coders only (no model)

Exit status: 0 written, 2 bad input (one line naming the file or flag; nothing written).
"""

from __future__ import annotations

import sys
from pathlib import Path

from analysis.agreement.config import AgreementConfig
from analysis.agreement.hook import validate
from analysis.agreement.outputs import write_validation
from pipeline.cli import BadInput, check_output_dir, handle_errors, make_parser, report_written, setup_logging
from pipeline.run_folder import RunFolder
from pipeline.settings import SettingsError, add_arguments, from_args

__all__ = ["build_parser", "main"]


def build_parser():
    p = make_parser("Agreement of the model's per-frame labels and percent time with human coders, beside the "
                    "coders' agreement with each other (docs/validation.md).", prog="python -m analysis.agreement")
    p.add_argument("--run", type=Path, metavar="RUN",
                   help="cohort run folder (its read-out is the model's coding); leave out to compare coders only")
    p.add_argument("--codings", type=Path, metavar="DIR", help="codings folder (default: RUN/codings)")
    p.add_argument("--out", type=Path, metavar="DIR", help="output folder (default: RUN/validation)")
    p.add_argument("--no-figures", action="store_true", help="write the tables only")
    add_arguments(p, AgreementConfig)
    p.epilog = "exit status: 0 written, 2 bad input (nothing written)"
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(verbose=args.verbose, quiet=args.quiet)
    with handle_errors("analysis.agreement"):
        run = RunFolder(args.run) if args.run else None
        if run is not None and not run.root.is_dir():
            raise BadInput(f"--run {run.root} is not a folder")
        codings = args.codings or (run.codings if run else None)
        out = args.out or (run.validation if run else None)
        if codings is None or out is None:
            raise BadInput("--codings and --out are required without --run")
        try:
            resolved = from_args(AgreementConfig, args, stage="agreement")
        except (SettingsError, ValueError) as exc:
            raise BadInput(str(exc)) from None
        check_output_dir(out)
        result = validate(codings, resolved.settings, run=run.root if run else None)
        written = write_validation(result, out, figures=not args.no_figures, sources=resolved.sources)
    for path in written:
        report_written(path)
    print(result.markdown(), file=sys.stderr)
    return 0
