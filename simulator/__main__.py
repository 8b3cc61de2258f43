"""``python -m simulator``: simulated cohorts, training clips, a contact sheet, the action list.

::

    python -m simulator cohort --out sim/ --groups ASD=10,PSY=10,TDC=10 --seconds 120 --seed 1
    python -m simulator clips --out clips/train --per-class 40 --seed 1
    python -m simulator clips --out clips/test --per-class 10 --seed 2      # unseen seeds
    python -m simulator sheet --out sheet.png
    python -m simulator coders --cohort sim/ --out sim/codings --coders 2 --jitter-s 0.2 --miss 0.1 --seed 1
    python -m simulator actions

Exit codes: 0 done, 2 bad arguments (nothing written). Every file written is printed as ``wrote <path>``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2

from model.taxonomy import MA52
from pipeline.artifacts import atomic_write_bytes
from pipeline.cli import EXIT_OK, BadInput, check_output_dir, handle_errors, make_parser, progress, report_written, setup_logging
from simulator.clips import ClipConfig, write_clips
from simulator.coders import FORMATS as CODER_FORMATS
from simulator.coders import CoderConfig, write_simulated_coders
from simulator.motions import ACTIONS, PROGRAMS
from simulator.recording import CohortConfig, cohort_specs, write_cohort
from simulator.sheet import action_sheet, recording_sheet

PROG = "python -m simulator"


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise BadInput(f"size must be WIDTHxHEIGHT, got {text!r}") from None
    if w < 64 or h < 64:
        raise BadInput(f"size must be at least 64x64, got {text}")
    return w, h


def _groups(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in text.split(","):
        name, sep, n = part.partition("=")
        if not sep or not name.strip() or not n.strip().isdigit():
            raise BadInput(f"--groups must look like ASD=10,PSY=10,TDC=10, got {text!r}")
        out[name.strip()] = int(n)
    if sum(out.values()) < 1:
        raise BadInput("--groups: no participants")
    return out


def _actions(text: str) -> tuple[str, ...]:
    names = []
    for part in text.split(","):
        name = part.strip().lower()
        if name not in PROGRAMS:
            raise BadInput(f"--actions: {part.strip()!r} is not simulated; choose from: {', '.join(ACTIONS)}")
        names.append(name)
    return tuple(names)


def _common():
    """-v / -q also accepted after the subcommand (without overriding them when given before it)."""
    import argparse
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="warnings only, no progress bars")
    return common


def build_parser():
    p = make_parser("Kinematic video simulator: seated participants doing MA-52 micro-actions, with ground truth.",
                    prog=PROG)
    sub = p.add_subparsers(dest="command", required=True, metavar="{cohort,clips,sheet,coders,actions}")
    c = sub.add_parser("cohort", parents=[_common()], help="untrimmed participant videos + manifest + ground truth",
                       description="Render a cohort of untrimmed recordings with planted group effects.")
    c.add_argument("--out", required=True, help="output folder (manifest.csv, videos/, truth/, config.json)")
    c.add_argument("--config", help="JSON file with CohortConfig fields (rates and effects, look ranges, ...); "
                                    "the options below override it")
    c.add_argument("--groups", help="group sizes, e.g. ASD=4,PSY=4,TDC=4 (default from --config, else that)")
    c.add_argument("--seconds", type=float, help="recording length (default 60)")
    c.add_argument("--fps", type=float, help="frame rate (default 30)")
    c.add_argument("--size", help="WIDTHxHEIGHT (default 360x432)")
    c.add_argument("--seed", type=int, help="master seed (default 0)")
    c.add_argument("--workers", type=int, default=1, help="participants rendered in parallel (processes)")
    c.add_argument("--force", action="store_true", help="render again even when up to date")
    k = sub.add_parser("clips", parents=[_common()], help="trimmed labelled clips for training",
                       description="Render trimmed clips (one action each) + MA-52 list, CSV and class list.")
    k.add_argument("--out", required=True, help="output folder (clips/, clips.txt, clips.csv, classes.json)")
    k.add_argument("--per-class", type=int, default=ClipConfig.per_class, help="clips per class")
    k.add_argument("--actions", help="comma-separated action names (default: all simulated)")
    k.add_argument("--no-background", action="store_true", help="no idle 'background' class")
    k.add_argument("--size", default="320x384", help="WIDTHxHEIGHT")
    k.add_argument("--fps", type=float, default=30.0)
    k.add_argument("--seed", type=int, default=0, help="seed (use different seeds for train and test)")
    k.add_argument("--workers", type=int, default=1, help="clips rendered in parallel (processes)")
    s = sub.add_parser("sheet", parents=[_common()], help="contact sheet PNG of every simulated action",
                       description="PNG of every simulated action, or (--recording) frames + ground-truth "
                                   "ethogram of one simulated recording.")
    s.add_argument("--out", required=True, help="PNG file to write")
    s.add_argument("--tile", default="160x192", help="tile WIDTHxHEIGHT")
    s.add_argument("--columns", type=int, default=5)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--no-noise", action="store_true", help="no sensor noise (smaller PNG)")
    s.add_argument("--recording", action="store_true",
                   help="instead: one recording (participant 1 of a default cohort, --seconds, --seed)")
    s.add_argument("--seconds", type=float, default=60.0, help="recording length with --recording")
    d = sub.add_parser("coders", parents=[_common()], help="simulated human coders of a cohort's truth (BORIS, ELAN)",
                       description="Code a simulated cohort's truth again: a perfect coder and coders with seeded "
                                   "boundary jitter and misses (docs/simulator.md, 'Simulated coders').")
    d.add_argument("--cohort", required=True, metavar="SIMDIR", help="a folder written by 'python -m simulator cohort'")
    d.add_argument("--out", required=True, metavar="DIR", help="output folder (a codings folder + boris/, elan/)")
    d.add_argument("--coders", type=int, default=CoderConfig.coders, help="jittered coders (sim-coder-1 ...)")
    d.add_argument("--jitter-s", type=float, default=CoderConfig.jitter_s, help="sd of onset/offset jitter, seconds")
    d.add_argument("--clip-sigmas", type=float, default=CoderConfig.clip_sigmas, help="jitter clipped at this many sd")
    d.add_argument("--miss", type=float, default=CoderConfig.miss, help="probability that a coder misses an event")
    d.add_argument("--no-perfect", action="store_true", help="no perfect coder (sim-perfect)")
    d.add_argument("--seed", type=int, default=CoderConfig.seed)
    d.add_argument("--format", choices=CODER_FORMATS, default="both", help="review files to write besides the tables")
    d.add_argument("--layout", choices=("per-action", "single-tier"), default="per-action", help="ELAN tier layout")
    sub.add_parser("actions", parents=[_common()], help="list the simulated actions (MA-52 index, code, body part, kind)")
    return p


def _cohort_config(args) -> CohortConfig:
    base: dict = {}
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise BadInput(f"--config {path}: file not found")
        try:
            base = json.loads(path.read_text())
        except ValueError as exc:
            raise BadInput(f"--config {path}: not valid JSON ({exc})") from None
    if args.groups:
        base["groups"] = _groups(args.groups)
    for name in ("seconds", "fps", "seed"):
        if getattr(args, name) is not None:
            base[name] = getattr(args, name)
    if args.size:
        base["size"] = list(_size(args.size))
    try:
        return CohortConfig.from_dict(base)
    except (TypeError, ValueError, KeyError) as exc:
        raise BadInput(f"cohort config: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(verbose=args.verbose, quiet=args.quiet)
    with handle_errors("simulator"):
        if args.command == "actions":
            for name, prog in PROGRAMS.items():
                i = MA52.index(name)
                print(f"{i:2d}  {MA52.codes[i]:4s} {name:34s} {prog.body_part:11s} {prog.kind}")
            return EXIT_OK
        if args.command == "sheet":
            out = Path(args.out)
            check_output_dir(out.parent if str(out.parent) else ".", what="--out folder")
            tile = _size(args.tile)
            if args.columns < 1:
                raise BadInput(f"--columns must be >= 1, got {args.columns}")
            if args.recording:
                image = recording_sheet(CohortConfig(groups={"ASD": 1}, seconds=args.seconds, seed=args.seed))
            else:
                image = action_sheet(tile=tile, columns=args.columns, seed=args.seed, noise=not args.no_noise)
            ok, png = cv2.imencode(".png", image)
            atomic_write_bytes(out, png.tobytes())
            report_written(out)
            return EXIT_OK
        if args.command == "coders":
            try:
                config = CoderConfig(coders=args.coders, jitter_s=args.jitter_s, clip_sigmas=args.clip_sigmas,
                                     miss=args.miss, perfect=not args.no_perfect, seed=args.seed)
            except ValueError as exc:
                raise BadInput(str(exc)) from None
            out = check_output_dir(args.out)
            for path in write_simulated_coders(args.cohort, out, config, fmt=args.format, layout=args.layout):
                report_written(path)
            return EXIT_OK
        if args.workers < 1:
            raise BadInput(f"--workers must be >= 1, got {args.workers}")
        if args.command == "cohort":
            config = _cohort_config(args)
            out = check_output_dir(args.out)
            n = len(cohort_specs(config))
            bar = progress([], desc="participants", total=n, unit="video")
            result = write_cohort(config, out, workers=args.workers, force=args.force, on_done=lambda: bar.update(1))
            bar.close()
        else:
            try:
                config = ClipConfig(per_class=args.per_class,
                                    actions=_actions(args.actions) if args.actions else ACTIONS,
                                    background=not args.no_background, size=_size(args.size), fps=args.fps,
                                    seed=args.seed)
            except ValueError as exc:
                raise BadInput(str(exc)) from None
            out = check_output_dir(args.out)
            n = config.per_class * (len(config.actions) + int(config.background))
            bar = progress([], desc="clips", total=n, unit="clip")
            result = write_clips(config, out, workers=args.workers, on_done=lambda: bar.update(1))
            bar.close()
        for path in result["written"]:
            report_written(path)
        if result["skipped"]:
            print(f"{len(result['skipped'])} files up to date, kept", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
