"""Power of the hurdle analysis for a planned cohort, by simulation: ``python -m analysis.power``.

::

    python -m analysis.power --pilot cohort.parquet --groups ASD=40,PSY=20,TDC=40 --n-range 30:300:30 --out power/
    python -m analysis.power --spec SPEC.yaml --groups ASD=40,PSY=20,TDC=40 --effects EFFECTS.yaml --out power/

For every design (group sizes) of the grid, ``nsim`` cohorts are drawn from the generating model
(:mod:`analysis.power_spec`: pilot or spec, effects, machine-coding error) and each is analysed as
``analysis.hurdle`` would analyse it with the user's :class:`~analysis.config.HurdleConfig` (same
models, Firth fallback, intensity test, correction and family; :mod:`analysis.power_sim`). The power
of a test is the share of replicates whose *adjusted* p is below alpha, with a Clopper-Pearson 95 %
Monte-Carlo interval.

Designs: ``--groups`` gives the labels (in contrast order) and the allocation; ``--n-range LO:HI:STEP``
the total sizes, each split in the ``--groups`` proportions (largest remainder; a group below 2 is
refused). Without ``--n-range`` the one design is ``--groups`` itself.

Chunks of replicates run on ``--workers`` processes, are kept in ``<out>/.power-chunks/`` and reused
by a later run with the same settings (:mod:`analysis.power_grid`).

Outputs (one set, written through :class:`pipeline.ownership.StagedSet`): ``power.parquet`` and
``power.csv`` (columns :data:`LEADING_COLUMNS`, then ``n_<GROUP>`` per group, then
:data:`TRAILING_COLUMNS`), ``sample_size.csv`` (smallest design reaching each target),
``family.csv`` (familywise error and false-discovery rate per family), ``power_curves.png``,
``summary.md`` and ``summary.html`` (the exact settings).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from pipeline.cli import BadInput, check_output_dir, handle_errors, make_parser, report_written, setup_logging
from pipeline.ownership import StagedSet
from pipeline.settings import SettingsError, add_arguments, args_values, validate_settings

from .config import CORRECTIONS, FAMILIES, INTENSITY_SE, RANK_BY, HurdleConfig
from .power_config import PowerConfig
from .power_grid import CHUNK_DIR, OUTPUTS, STAGE, designs, parse_groups, parse_range, run_power
from .power_outputs import write_power_outputs
from .power_spec import PowerModel, apply_effects, model_from_pilot, model_from_spec, read_agreement, read_effects, read_yaml

__all__ = ["build_parser", "build_model", "main"]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------------


def _csv_list(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


_HURDLE_FLAGS = ("actions", "top_actions", "all_actions", "rank_by", "covariates", "categorical", "min_engaged", "intensity_se",
                 "intensity_resamples", "intensity_seed", "min_engaged_test", "correction", "family", "pairwise_subsets", "firth")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    p = make_parser(
        "Power of the hurdle analysis for a planned cohort, by simulation: per action x part x contrast and sample "
        "size, the share of simulated cohorts in which analysis.hurdle (same models, Firth fallback, intensity test, "
        "correction) rejects at alpha. Writes power.parquet/.csv, sample_size.csv, family.csv, power_curves.png and "
        "summary.md/.html.",
        prog="python -m analysis.power",
    )
    p.epilog = "Exit status 2 on a bad pilot, spec, effects file or setting (one line, nothing written). Method: docs/power.md."
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--pilot", type=Path, metavar="COHORT", help="pilot cohort table (.parquet or .csv, cohort schema)")
    src.add_argument("--spec", type=Path, metavar="SPEC.yaml", help="engagement and intensity per action and group, by hand (docs/power.md)")
    p.add_argument("--groups", required=True, metavar="G=N,...", help="groups in contrast order and their sizes (the allocation of --n-range)")
    p.add_argument("--n-range", default=None, metavar="LO:HI:STEP", help="total sample sizes (inclusive), split in the --groups proportions")
    p.add_argument("--effects", default=None, metavar="EFFECTS.yaml",
                   help="group effects per action and part (odds ratios / ratios of means vs a reference group), or "
                   "'observed' (a pilot's own differences; the default with --pilot)")  # fmt: skip
    p.add_argument("--agreement", type=Path, default=None, metavar="RUN/validation",
                   help="simulate machine coding: frames pass through the per-action tpr/fpr of validation/confusion.parquet")  # fmt: skip
    p.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder (also keeps the chunks for resuming)")
    add_arguments(p.add_argument_group("simulation"), PowerConfig)
    h = p.add_argument_group("the planned analysis (as python -m analysis.hurdle; defaults: --config, else its defaults)")
    S = argparse.SUPPRESS
    h.add_argument("--config", type=Path, default=None, metavar="FILE",
                   help="YAML/JSON of HurdleConfig fields, or the results.parquet.json sidecar of an analysis.hurdle run")  # fmt: skip
    sel = h.add_mutually_exclusive_group()
    sel.add_argument("--actions", type=_csv_list, default=S, metavar="NAME,...", help="analyse exactly these actions (pilot)")
    sel.add_argument("--top-actions", type=int, default=S, metavar="N", help="the N most frequent actions of the pilot (default 10)")
    sel.add_argument("--all-actions", action="store_true", default=S, help="every action of the pilot")
    h.add_argument("--rank-by", choices=RANK_BY, default=S, help="what 'frequent' means (default engaged)")
    h.add_argument("--covariates", type=_csv_list, default=S, metavar="COL,...", help="covariates (pilot; resampled with participants)")
    h.add_argument("--categorical", type=_csv_list, default=S, metavar="COL,...", help="covariates treated as categorical")
    h.add_argument("--min-engaged", type=int, default=S, metavar="N", help="minimum engagers per group for the intensity part (default 3)")
    h.add_argument("--intensity-se", choices=INTENSITY_SE, default=S,
                   help=f"intensity test (default {HurdleConfig.intensity_se}; resampling tests are slow in a power loop, "
                   "see docs/power.md)")  # fmt: skip
    h.add_argument("--intensity-resamples", type=int, default=S, metavar="B", help=f"draws of the resampling tests (default {HurdleConfig.intensity_resamples})")
    h.add_argument("--intensity-seed", type=int, default=S, metavar="SEED", help="seed of those draws (default 0)")
    h.add_argument("--min-engaged-test", type=int, default=S, metavar="N", help=f"fewest engagers per group for an intensity p (default {HurdleConfig.min_engaged_test})")
    h.add_argument("--correction", choices=CORRECTIONS, default=S, help="multiple-comparison correction (default fdr_bh)")
    h.add_argument("--family", choices=FAMILIES, default=S, help="tests corrected together (default part)")
    h.add_argument("--pairwise-subsets", action="store_true", default=S, help="refit each contrast on its two groups")
    h.add_argument("--firth", choices=("auto", "always"), default=S, help="Firth fallback (default auto)")
    return p


def _hurdle_config(args: argparse.Namespace, labels: tuple[str, ...]) -> HurdleConfig:
    values: dict = {}
    if args.config is not None:
        data = read_yaml(args.config, "--config")
        if isinstance(data.get("config"), dict) and isinstance(data["config"].get("analysis"), dict):
            data = data["config"]["analysis"]  # an analysis.hurdle results sidecar
        known = {f for f in HurdleConfig.__dataclass_fields__}
        bad = sorted(set(data) - known)
        if bad:
            raise BadInput(f"{args.config}: unknown HurdleConfig field {bad[0]!r}")
        values.update(data)
        if "groups" in values and tuple(values["groups"]) != labels:
            raise BadInput(f"{args.config}: groups {', '.join(values['groups'])} differ from --groups {', '.join(labels)}")
    for name in _HURDLE_FLAGS:
        if hasattr(args, name):
            values[name] = getattr(args, name)
    if values.pop("all_actions", False):
        values["top_actions"] = 0
    if "actions" in values and values["actions"] is not None:
        values["top_actions"] = None
    values["groups"] = labels
    values.pop("ignore_other_groups", None)
    try:
        return HurdleConfig(**values)
    except (TypeError, ValueError) as exc:
        raise BadInput(f"analysis settings: {exc}") from None


def build_model(args: argparse.Namespace, config: HurdleConfig, settings: PowerConfig) -> PowerModel:
    """The generating model from the command line's --pilot/--spec, --effects and --agreement."""
    labels = config.groups
    effects_file = args.effects if args.effects not in (None, "observed") else None
    if args.pilot is not None:
        model = model_from_pilot(args.pilot, config, intensity=settings.intensity_model, pooled=effects_file is not None)
        if effects_file is None:
            log.warning("effects are the pilot's own group differences ('observed'): pilot estimates of effects are "
                        "optimistic (the large ones are the ones noticed), so this power is too; prefer --effects "
                        "with the smallest effect worth detecting")  # fmt: skip
    else:
        if config.covariates:
            raise BadInput("--covariates need a --pilot (a spec has no covariate values to resample)")
        if args.effects == "observed":
            raise BadInput("--effects observed needs a --pilot")
        ref = read_yaml(effects_file, "effects").get("reference", labels[0]) if effects_file else None
        if ref is not None and ref not in labels:
            raise BadInput(f"{effects_file}: reference: unknown group {ref!r} (groups: {', '.join(labels)})")
        model = model_from_spec(args.spec, labels, baseline=ref)
    if effects_file is not None:
        ref, eff = read_effects(effects_file, labels, model.actions)
        model = apply_effects(model, ref, eff, str(effects_file))
    if args.agreement is not None:
        rates, where = read_agreement(args.agreement, model.actions)
        model = replace(model, agreement=rates, source=f"{model.source}; machine coding from {where}")
    return model


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 on bad input, nothing written then)."""
    args = build_parser().parse_args(argv)
    setup_logging(verbose=args.verbose, quiet=args.quiet)
    with handle_errors("analysis.power"):
        labels, sizes = parse_groups(args.groups)
        try:
            settings = validate_settings(args_values(PowerConfig, args), PowerConfig, stage="power")
        except SettingsError as exc:
            raise BadInput(str(exc)) from None
        if args.workers < 1:
            raise BadInput(f"--workers must be >= 1, got {args.workers}")
        grid = designs(labels, sizes, parse_range(args.n_range) if args.n_range else None)
        config = _hurdle_config(args, labels)
        model = build_model(args, config, settings)
        out = check_output_dir(args.out)
        with StagedSet(out, STAGE) as st:
            st.check(list(OUTPUTS) + ["power.parquet.json"])
        if config.intensity_se in ("permutation", "wild"):
            log.warning("the intensity test is the %s test with %d draws (the analysis's default since issue 28): each "
                        "intensity contrast of each replicate resamples, which dominates the run time; --intensity-se "
                        "hc2-t is much faster but is a different test (anti-conservative with few or skewed engagers, "
                        "docs/hurdle.md), so its power would be optimistic", config.intensity_se, config.intensity_resamples)  # fmt: skip
        try:
            res = run_power(model, config, settings, grid, workers=args.workers, cache=out / CHUNK_DIR,
                            show_progress=not args.quiet)
        except KeyboardInterrupt:
            kept = len(list((out / CHUNK_DIR).glob("*/*.npz")))
            print(f"analysis.power: interrupted; {kept} finished chunk(s) kept in {out / CHUNK_DIR}, reused when the "
                  "same command is run again", file=sys.stderr, flush=True)
            raise
        for path in write_power_outputs(res, out, argv=list(sys.argv[1:] if argv is None else argv)):
            report_written(path)
    return 0


EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command ended by Ctrl-C


def _run_command(grace_s: float = 10.0) -> None:
    """``python -m analysis.power``: :func:`main`, and on Ctrl-C an exit with code 130 within ``grace_s``.

    By the time the interrupt reaches here, :func:`analysis.power_grid.run_power` has terminated and
    joined its worker processes, and every finished chunk is on disk (atomic writes). What may be left
    is the process pool's management thread, which the interpreter joins at exit without a time limit
    and which, on a pool whose workers were terminated, can wait without end (seen once in CI: the
    command still running 60 s after Ctrl-C; gdb found its threads all waiting on locks, consistent with
    CPython gh-125451, a lock-order deadlock of the pool's threads fixed after 3.11). It gets
    ``grace_s`` to end; the normal exit follows
    (the pool's semaphores released). If a thread is still running then, the process ends with
    ``os._exit``, without the exit handlers. Only the command does this; a caller of :func:`main` gets
    the KeyboardInterrupt.
    """
    import threading
    import time

    try:
        code = main()
    except KeyboardInterrupt:
        deadline = time.monotonic() + grace_s
        others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
        for t in others:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in others):
            log.warning("a thread of the process pool did not end %g s after Ctrl-C; leaving without the exit "
                        "handlers", grace_s)  # fmt: skip
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_INTERRUPTED)
        code = EXIT_INTERRUPTED
    sys.exit(code)


if __name__ == "__main__":
    _run_command()
