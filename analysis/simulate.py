"""Cohort simulator: a cohort table with planted group effects and the ground truth of those effects.

``python -m analysis.simulate --out cohort.parquet`` (or ``--out cohort.csv``) or :func:`simulate_cohort`.

The generating model is the hurdle model itself, so the planted effects are exactly the parameters
the analysis estimates. For participant i in group g and action a::

    engaged_ia  ~ Bernoulli(expit(logit(p_a) + b_prob[a, g] + covariate terms))
    fraction_ia ~ Beta(mu phi, (1 - mu) phi),  mu = expit(logit(m_a) + b_int[a, g] + covariate terms)
    percent_time_ia = 100 * engaged_ia * fraction_ia      (fractions kept within [1e-4, 1])

``p_a`` (baseline engagement probability) and ``m_a`` (baseline mean fraction among engagers) are drawn
per action from the seed; ``b[a, g]`` are the planted effects on the logit scale relative to the first
group (0 for it). The truth table lists, for every action x contrast x part, the true log odds ratio
of group_a vs group_b (conditional on the covariates) and whether an effect was planted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import special

from model.taxonomy import MA52
from pipeline.artifacts import write_artifact
from pipeline.cli import BadInput, check_output_dir, handle_errors, make_parser, report_written, setup_logging

from .contrasts import contrast_label, direction, pairs

__all__ = ["PlantedEffect", "SimConfig", "DEFAULT_EFFECTS", "OUTPUT_SUFFIXES", "simulate_cohort", "truth_table", "truth_path",
           "write_simulation", "main"]  # fmt: skip

OUTPUT_SUFFIXES = (".parquet", ".csv")  # the cohort file's format follows its suffix


@dataclass(frozen=True)
class PlantedEffect:
    """A group effect: ``log_or`` added to the logit of ``part`` for ``group`` in ``action``.

    Relative to the first group of the simulation (whose effects are 0).
    """

    action: str
    group: str
    part: str  # "probability" | "intensity"
    log_or: float


# Effects of roughly the size reported in the paper's Table V (odds ratios about 2-3).
DEFAULT_EFFECTS: tuple[PlantedEffect, ...] = (
    PlantedEffect("retracting feet", "PSY", "intensity", float(np.log(2.5))),
    PlantedEffect("shaking legs", "PSY", "probability", float(np.log(1 / 3))),
    PlantedEffect("turning head", "PSY", "intensity", float(np.log(0.4))),
    PlantedEffect("head up", "TDC", "probability", float(np.log(0.4))),
)


@dataclass(frozen=True)
class SimConfig:
    """Simulation settings.

    Attributes
    ----------
    groups : tuple of (str, int)
        Group labels and sizes (default: the paper's ASD 120, PSY 46, TDC 124).
    actions : tuple of str or None
        MA-52 action names; None = the first ``n_actions`` actions in label order, with the actions
        named in ``effects`` moved to the front so they are always simulated.
    n_actions : int
        Used when ``actions`` is None.
    effects : tuple of PlantedEffect
        Planted group effects (``()`` = null cohort: no group differences).
    engage_range, intensity_range : (float, float)
        Range of the per-action baseline engagement probability and mean fraction of time among engagers.
    precision : float
        Beta precision phi of the fraction of time (larger = less spread).
    covariates : bool
        Add ``age`` (years, uniform 5-52) and ``sex`` ("F"/"M") columns.
    age_effect, sex_effect : float
        Log odds ratio per 10 years of age (centred at 25) and for "M" vs "F", in both parts.
    observed_range : (float, float)
        Seconds with valid pose per participant (uniform).
    seed : int
    """

    groups: tuple[tuple[str, int], ...] = (("ASD", 120), ("PSY", 46), ("TDC", 124))
    actions: tuple[str, ...] | None = None
    n_actions: int = 52
    effects: tuple[PlantedEffect, ...] = DEFAULT_EFFECTS
    engage_range: tuple[float, float] = (0.1, 0.8)
    intensity_range: tuple[float, float] = (0.02, 0.2)
    precision: float = 8.0
    covariates: bool = False
    age_effect: float = 0.0
    sex_effect: float = 0.0
    observed_range: tuple[float, float] = (120.0, 180.0)
    seed: int = 0

    def action_names(self) -> list[str]:
        if self.actions is not None:
            return list(self.actions)
        planted = [e.action for e in self.effects]
        ordered = list(dict.fromkeys(planted + list(MA52.actions)))
        return ordered[: self.n_actions]


def _validate(cfg: SimConfig, actions: list[str]) -> None:
    groups = [g for g, _ in cfg.groups]
    if len(set(groups)) != len(groups) or len(groups) < 1:
        raise BadInput(f"group labels must be distinct, got {groups}")
    if any(n < 1 for _, n in cfg.groups):
        raise BadInput("every group needs at least 1 participant")
    unknown = [a for a in actions if a not in MA52.actions]
    if unknown:
        raise BadInput(f"unknown MA-52 action(s): {', '.join(map(repr, unknown))}")
    for e in cfg.effects:
        if e.group not in groups:
            raise BadInput(f"planted effect for unknown group {e.group!r}")
        if e.part not in ("probability", "intensity"):
            raise BadInput(f"planted effect part must be 'probability' or 'intensity', got {e.part!r}")
        if e.group == groups[0] and e.log_or != 0:
            raise BadInput(f"effects are relative to the first group {groups[0]!r}; plant them on another group")


def _effect_matrix(cfg: SimConfig, actions: list[str], part: str) -> np.ndarray:
    groups = [g for g, _ in cfg.groups]
    B = np.zeros((len(actions), len(groups)))
    for e in cfg.effects:
        if e.part == part and e.action in actions:
            B[actions.index(e.action), groups.index(e.group)] += e.log_or
    return B


def simulate_cohort(cfg: SimConfig = SimConfig()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulate a cohort table and its ground truth.

    Parameters
    ----------
    cfg : SimConfig

    Returns
    -------
    cohort : pandas.DataFrame
        Cohort schema: participant_id, group, action_id, action, percent_time, observed_s
        (+ age, sex when ``cfg.covariates``), one row per participant x action.
    truth : pandas.DataFrame
        See :func:`truth_table`.
    """
    actions = cfg.action_names()
    _validate(cfg, actions)
    rng = np.random.default_rng(cfg.seed)
    labels = np.concatenate([[g] * n for g, n in cfg.groups])
    gidx = np.concatenate([[k] * n for k, (_, n) in enumerate(cfg.groups)])
    n, A = labels.size, len(actions)
    pids = np.array([f"P{i:05d}" for i in range(n)])
    observed = rng.uniform(*cfg.observed_range, size=n)

    base_p = rng.uniform(*cfg.engage_range, size=A)
    base_m = rng.uniform(*cfg.intensity_range, size=A)
    cov_term = np.zeros(n)
    extra_cols: dict[str, np.ndarray] = {}
    if cfg.covariates:
        age = np.round(rng.uniform(5, 52, size=n), 1)
        sex = np.where(rng.random(n) < 0.6, "M", "F")
        cov_term = cfg.age_effect * (age - 25) / 10 + cfg.sex_effect * (sex == "M")
        extra_cols = {"age": np.repeat(age, A), "sex": np.repeat(sex, A)}

    Bp = _effect_matrix(cfg, actions, "probability")  # [A, G]
    Bi = _effect_matrix(cfg, actions, "intensity")
    eta_p = special.logit(base_p)[None, :] + Bp.T[gidx] + cov_term[:, None]  # [n, A]
    eta_i = special.logit(base_m)[None, :] + Bi.T[gidx] + cov_term[:, None]
    engaged = rng.random((n, A)) < special.expit(eta_p)
    mu = special.expit(eta_i)
    frac = rng.beta(mu * cfg.precision, (1 - mu) * cfg.precision)
    # A Beta draw can underflow to 0 (which would silently turn an engager into a non-engager) or hit 1.
    frac = np.clip(frac, 1e-4, 1.0)
    pct = np.where(engaged, 100.0 * frac, 0.0)

    cohort = pd.DataFrame(
        {
            "participant_id": np.repeat(pids, A),
            "group": np.repeat(labels, A),
            "action_id": np.tile([MA52.index(a) for a in actions], n).astype(np.int16),
            "action": np.tile(actions, n),
            "percent_time": pct.ravel(),
            "observed_s": np.repeat(observed, A),
            **extra_cols,
        }
    )
    return cohort, truth_table(cfg, actions)


def truth_table(cfg: SimConfig, actions: Sequence[str] | None = None) -> pd.DataFrame:
    """The planted effect of every action x contrast x part.

    Returns
    -------
    pandas.DataFrame
        ``action``, ``contrast`` ("A vs B"), ``group_a``, ``group_b``, ``part``, ``true_log_or``
        (log odds ratio of group_a vs group_b, conditional on covariates), ``true_effect`` (its exp),
        ``planted`` (nonzero), ``direction`` ("A < B", or None when no effect).
    """
    actions = list(actions) if actions is not None else cfg.action_names()
    groups = [g for g, _ in cfg.groups]
    rows = []
    for part in ("probability", "intensity"):
        B = _effect_matrix(cfg, actions, part)
        for i, a in enumerate(actions):
            for ga, gb in pairs(groups):
                d = float(B[i, groups.index(ga)] - B[i, groups.index(gb)])
                rows.append(
                    {
                        "action": a, "contrast": contrast_label(ga, gb), "group_a": ga, "group_b": gb, "part": part,
                        "true_log_or": d, "true_effect": float(np.exp(d)), "planted": d != 0,
                        "direction": direction(ga, gb, d) if d != 0 else None,
                    }
                )  # fmt: skip
    return pd.DataFrame(rows)


def truth_path(out: str | os.PathLike) -> Path:
    """Where the truth table goes: ``<stem>_truth<suffix>`` beside the cohort (same format)."""
    out = Path(out)
    return out.with_name(f"{out.stem}_truth{out.suffix}")


def _check_suffix(out: str | os.PathLike) -> Path:
    out = Path(out)
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise BadInput(f"--out {out}: the cohort file must end in .parquet or .csv (its format follows the suffix)")
    return out


def write_simulation(cohort: pd.DataFrame, truth: pd.DataFrame, cfg: SimConfig, out: str | os.PathLike) -> tuple[Path, Path]:
    """Write a simulated cohort (cohort contract) to ``out`` and its planted effects beside it.

    The format follows the suffix of ``out``: ``.parquet`` or ``.csv`` (:data:`OUTPUT_SUFFIXES`);
    each file gets a JSON sidecar. Returns the two paths (cohort, ground truth); prints nothing.

    Raises
    ------
    pipeline.cli.BadInput
        For any other suffix (nothing is written).
    """
    out = _check_suffix(out)
    cohort_path = write_artifact(cohort, out, contract="cohort", stage="simulate", config=cfg)
    truth_file = write_artifact(truth, truth_path(out), contract=None, stage="simulate", config=cfg)
    return cohort_path, truth_file


def _parse_effect(text: str) -> PlantedEffect:
    parts = [s.strip() for s in text.split(":")]
    if len(parts) != 4:
        raise argparse.ArgumentTypeError(f"expected ACTION:GROUP:PART:LOG_OR, got {text!r}")
    try:
        return PlantedEffect(parts[0], parts[1], parts[2], float(parts[3]))
    except ValueError:
        raise argparse.ArgumentTypeError(f"LOG_OR must be a number in {text!r}") from None


def _parse_groups(text: str) -> tuple[tuple[str, int], ...]:
    out = []
    for item in text.split(","):
        name, _, n = item.partition("=")
        try:
            out.append((name.strip(), int(n)))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected GROUP=N[,GROUP=N...], got {text!r}") from None
    return tuple(out)


def build_parser() -> argparse.ArgumentParser:
    p = make_parser(
        "Simulate a cohort table (cohort schema: one row per participant x MA-52 action) from the hurdle model, "
        "with planted group effects, and write it plus a ground-truth table of the planted effects "
        "(<out stem>_truth.parquet).",
        prog="python -m analysis.simulate",
    )
    p.add_argument("--out", type=Path, required=True, help="cohort file to write: .parquet or .csv (the format follows the suffix)")
    p.add_argument("--groups", type=_parse_groups, default=SimConfig.groups, metavar="G=N,...",
                   help="groups and sizes, first = reference for planted effects (default ASD=120,PSY=46,TDC=124)")  # fmt: skip
    p.add_argument("--n-actions", type=int, default=52, help="number of MA-52 actions (planted-effect actions first, then label order)")
    p.add_argument("--actions", type=lambda s: tuple(a.strip() for a in s.split(",") if a.strip()), default=None,
                   help="exact MA-52 action names, comma-separated (overrides --n-actions)")  # fmt: skip
    p.add_argument("--effect", type=_parse_effect, action="append", default=None, metavar="ACTION:GROUP:PART:LOG_OR",
                   help="planted effect, repeatable; PART is probability or intensity; log odds ratio vs the first group. "
                   "Default: retracting feet PSY intensity log(2.5), shaking legs PSY probability log(1/3), "
                   "turning head PSY intensity log(0.4), head up TDC probability log(0.4)")  # fmt: skip
    p.add_argument("--null", action="store_true", help="no group effects at all (ignores --effect)")
    p.add_argument("--engage-range", type=float, nargs=2, default=(0.1, 0.8), metavar=("LO", "HI"), help="range of baseline engagement probabilities")
    p.add_argument("--intensity-range", type=float, nargs=2, default=(0.02, 0.2), metavar=("LO", "HI"), help="range of baseline mean fraction of time among engagers")
    p.add_argument("--precision", type=float, default=8.0, help="Beta precision of the fraction of time among engagers")
    p.add_argument("--covariates", action="store_true", help="add age (5-52 y) and sex (F/M) columns")
    p.add_argument("--age-effect", type=float, default=0.0, help="log odds ratio per 10 years of age, both parts (needs --covariates)")
    p.add_argument("--sex-effect", type=float, default=0.0, help="log odds ratio M vs F, both parts (needs --covariates)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(verbose=args.verbose, quiet=args.quiet)
    with handle_errors("analysis.simulate"):
        _check_suffix(args.out)  # before any work, like the folder
        if args.out.is_dir():
            raise BadInput(f"--out {args.out} is a folder; give a file name ending in .parquet or .csv")
        check_output_dir(args.out.parent, what="folder of --out")
        effects = () if args.null else tuple(args.effect) if args.effect else DEFAULT_EFFECTS
        cfg = SimConfig(
            groups=args.groups, actions=args.actions, n_actions=args.n_actions, effects=effects,
            engage_range=tuple(args.engage_range), intensity_range=tuple(args.intensity_range),
            precision=args.precision, covariates=args.covariates, age_effect=args.age_effect,
            sex_effect=args.sex_effect, seed=args.seed,
        )  # fmt: skip
        if args.actions is None:
            # Planted effects on actions outside the simulated set would be silently lost.
            missing = [e.action for e in effects if e.action not in cfg.action_names()]
            if missing:
                raise BadInput(f"planted effect on action(s) not simulated: {', '.join(missing)} (raise --n-actions)")
        for path in write_simulation(*simulate_cohort(cfg), cfg, args.out):
            report_written(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
