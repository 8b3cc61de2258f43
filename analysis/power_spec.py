"""What the power analysis simulates: per action x group, engagement probability and intensity among engagers.

Three sources, one result (:class:`PowerModel`):

- a **pilot** cohort table (:func:`model_from_pilot`): per action and group the share of participants
  with any engagement, and the distribution of the engagers' fractions of time ``y = percent_time / 100``,
  either a Beta fitted to them (method of moments: ``phi = m (1 - m) / s^2 - 1`` with the mean m and
  sample variance s^2; or maximum likelihood, ``scipy.stats.beta.fit`` with the support fixed to [0, 1])
  or the fractions themselves, resampled with replacement;
- a **spec** file (:func:`model_from_spec`), the same numbers given by hand (YAML, docs/power.md)::

      observed_s: 150                  # seconds of valid pose per participant (frame model only)
      actions:
        shaking legs:
          engagement: {ASD: 0.5, PSY: 0.3, TDC: 0.5}   # or one number for every group
          mean_share: 0.08                             # mean fraction of time among engagers
          precision: 8                                 # Beta precision phi (default 8)

- **effects** (:func:`read_effects`, :func:`apply_effects`): an ``EFFECTS.yaml`` that gives group
  differences per action and part relative to a reference group::

      reference: ASD          # default: the first group
      effects:
        shaking legs:
          probability: {PSY: 0.33}   # odds ratio of any engagement, group vs reference
          intensity: {TDC: 1.5}      # ratio of the mean fraction of time among engagers

  With an effects file every group starts from one baseline (the pilot's numbers pooled over groups,
  or the spec's reference group) and only the listed effects make groups differ. A ratio of means
  keeps the Beta's precision (a resampled pool is scaled by the ratio, capped at 1). Without one, a
  pilot's own group differences are the effects ("observed": optimistic, see docs/power.md).

Machine-coding error (:func:`read_agreement`): per action the true- and false-positive frame rates of
``validation/confusion.parquet`` (contract in docs/contracts.md), summed over participants.

Every problem is a :class:`pipeline.cli.BadInput` naming the file and the key (exit 2, one line).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import special, stats

from pipeline.cli import BadInput

from .cohort import load_cohort, select_actions, validate_cohort
from .config import HurdleConfig

__all__ = ["CellModel", "PowerModel", "DEFAULT_PRECISION", "DEFAULT_OBSERVED_S", "fit_beta", "model_from_pilot",
           "model_from_spec", "read_yaml", "read_effects", "apply_effects", "read_agreement"]  # fmt: skip

log = logging.getLogger(__name__)

DEFAULT_PRECISION = 8.0  # Beta precision of a spec without one (analysis.simulate's default)
DEFAULT_OBSERVED_S = 150.0  # seconds of valid pose per participant in a spec without one (simulate: 120-180)
_SHARE_CLIP = (1e-4, 1 - 1e-4)  # a Beta fit needs fractions strictly inside (0, 1)


@dataclass(frozen=True)
class CellModel:
    """One action x group: ``engaged ~ Bernoulli(engage)``; an engager's fraction of time ~ Beta or the pool.

    Attributes
    ----------
    engage : float
        P(any engagement), in [0, 1].
    mean_share : float
        Mean fraction of time among engagers, in (0, 1).
    precision : float or None
        Beta precision phi (``Beta(mean phi, (1 - mean) phi)``); None when ``shares`` are resampled.
    shares : tuple of float
        Resampling pool of fractions in (0, 1] (empty for a Beta).
    """

    engage: float
    mean_share: float
    precision: float | None = None
    shares: tuple[float, ...] = ()


@dataclass(frozen=True)
class PowerModel:
    """The generating model of a power analysis.

    Attributes
    ----------
    groups : tuple of str
        Group labels in contrast order (the analysis's ``HurdleConfig.groups``).
    actions : tuple of str
        The analysed actions (the correction family's size follows from them).
    cells : tuple of tuple of CellModel
        ``cells[a][g]`` for action a and group g.
    observed_s : tuple of float
        Seconds of valid pose per participant, drawn with replacement (one value = the same for all).
    covariate_rows : dict of str to tuple of tuple, or None
        Per group, the pilot participants' covariate values (resampled with the participant; their
        outcomes are drawn from the group's model, so covariates carry no effect).
    covariates : tuple of str
        Names of those covariate columns.
    agreement : tuple of (float, float) or None
        Per action (tpr, fpr) of machine frames against the reference coder.
    source : str
        Where the numbers came from (written into the summary).
    effects : str
        "observed", "spec" or the effects file.
    """

    groups: tuple[str, ...]
    actions: tuple[str, ...]
    cells: tuple[tuple[CellModel, ...], ...]
    observed_s: tuple[float, ...] = (DEFAULT_OBSERVED_S,)
    covariate_rows: dict[str, tuple[tuple, ...]] | None = None
    covariates: tuple[str, ...] = ()
    agreement: tuple[tuple[float, float], ...] | None = None
    source: str = ""
    effects: str = "spec"

    def is_null(self, action: int, a: int, b: int, part: str) -> bool:
        """Whether groups a and b have the same distribution in ``part`` of ``action`` (no effect).

        Engagement: the same probability; intensity: the same share distribution. With machine-coding
        error the coded engagement depends on the shares (a short true engagement may be missed) and the
        coded shares on the engagement (false-positive frames of non-engagers), so a part is null only
        when both are equal.
        """
        ca, cb = self.cells[action][a], self.cells[action][b]
        same_p = ca.engage == cb.engage
        same_i = (ca.mean_share, ca.precision, ca.shares) == (cb.mean_share, cb.precision, cb.shares)
        if self.agreement is not None:
            return same_p and same_i
        return same_p if part == "probability" else same_i

    def table(self) -> pd.DataFrame:
        """One row per action x group: engage, mean_share, precision, pool size (for the summary)."""
        rows = []
        for i, a in enumerate(self.actions):
            for j, g in enumerate(self.groups):
                c = self.cells[i][j]
                rows.append({"action": a, "group": g, "engage": c.engage, "mean_share": c.mean_share,
                             "precision": c.precision, "pool": len(c.shares) or None})  # fmt: skip
        return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# Beta fits and pilot
# --------------------------------------------------------------------------------------------------


def fit_beta(y: np.ndarray, method: str = "beta-mom") -> tuple[float, float]:
    """(mean, precision) of a Beta fitted to fractions ``y`` (clipped into (0, 1)).

    ``beta-mom``: ``mean = m``, ``phi = m (1 - m) / s^2 - 1`` (s^2 with ddof 1); ``beta-ml``:
    ``scipy.stats.beta.fit(y, floc=0, fscale=1)``, ``phi = a + b``. Raises ValueError when the
    fractions cannot give a Beta (fewer than 2, no spread, or a variance at least ``m (1 - m)``).
    """
    y = np.clip(np.asarray(y, dtype=np.float64), *_SHARE_CLIP)
    if y.size < 2:
        raise ValueError(f"{y.size} engager(s); a Beta needs at least 2")
    m, v = float(y.mean()), float(y.var(ddof=1))
    if v <= 0:
        raise ValueError("every engager has the same fraction of time")
    phi = m * (1 - m) / v - 1
    if phi <= 0:
        raise ValueError(f"variance {v:.4g} too large for a Beta with mean {m:.4g}")
    if method == "beta-ml":
        a, b, _, _ = stats.beta.fit(y, m * phi, (1 - m) * phi, floc=0, fscale=1)
        return float(a / (a + b)), float(a + b)
    return m, float(phi)


def _cell(y: np.ndarray, engage: float, method: str, where: str) -> CellModel:
    if method == "resample":
        if y.size == 0:
            raise BadInput(f"{where}: no engagers to resample")
        return CellModel(engage=float(engage), mean_share=float(np.mean(y)), shares=tuple(float(v) for v in y))
    try:
        m, phi = fit_beta(y, method)
    except ValueError as exc:
        raise BadInput(f"{where}: cannot fit a Beta to the engagers' fractions of time ({exc}); "
                       "use --intensity-model resample, or --effects with pooled numbers") from None  # fmt: skip
    return CellModel(engage=float(engage), mean_share=m, precision=phi)


def model_from_pilot(path: str | os.PathLike, config: HurdleConfig, *, intensity: str = "beta-mom",
                     pooled: bool = False) -> PowerModel:  # fmt: skip
    """The generating model estimated from a pilot cohort table.

    Parameters
    ----------
    path : path
        Pilot cohort table (cohort contract); validated as ``analysis.hurdle`` would (exit 2 on bad input).
    config : HurdleConfig
        The planned analysis: its groups, action selection and covariates.
    intensity : {"beta-mom", "beta-ml", "resample"}
    pooled : bool
        Every group gets the numbers pooled over all groups (the baseline for an effects file).
    """
    src = str(path)
    cohort = validate_cohort(load_cohort(path), config, source=src)
    actions = tuple(select_actions(cohort, config))
    cells = []
    for a in actions:
        data = cohort[cohort["action"] == a]
        y_all = data["percent_time"].to_numpy(dtype=np.float64) / 100.0
        if pooled:
            cell = _cell(y_all[y_all > 0], float(np.mean(y_all > 0)), intensity, f"{src}: action {a!r}")
            cells.append(tuple(cell for _ in config.groups))
            continue
        row = []
        for g in config.groups:
            y = y_all[(data["group"] == g).to_numpy()]
            row.append(_cell(y[y > 0], float(np.mean(y > 0)), intensity, f"{src}: action {a!r}, group {g!r}"))
        cells.append(tuple(row))
    people = cohort.drop_duplicates("participant_id")
    cov_rows = None
    if config.covariates:
        cov_rows = {g: tuple(map(tuple, people.loc[people["group"] == g, list(config.covariates)].itertuples(index=False)))
                    for g in config.groups}  # fmt: skip
    return PowerModel(
        groups=tuple(config.groups), actions=actions, cells=tuple(cells),
        observed_s=tuple(float(v) for v in people["observed_s"].to_numpy()), covariate_rows=cov_rows,
        covariates=tuple(config.covariates), source=f"pilot {src} ({len(people)} participants)",
        effects="pooled" if pooled else "observed",
    )  # fmt: skip


# --------------------------------------------------------------------------------------------------
# YAML files
# --------------------------------------------------------------------------------------------------


def read_yaml(path: str | os.PathLike, what: str) -> dict:
    """A YAML (or JSON) file holding a mapping; BadInput naming the file otherwise."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{what} file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise BadInput(f"{path}: not valid YAML{at}") from None
    if not isinstance(data, dict):
        raise BadInput(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _number(v: object, where: str, lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
        raise BadInput(f"{where}: expected a number, got {v!r}")
    x = float(v)
    if x < lo or x > hi or (lo_open and x == lo) or (hi_open and x == hi):
        lb, rb = "(" if lo_open else "[", ")" if hi_open else "]"
        raise BadInput(f"{where}: {x!r} is outside {lb}{lo:g}, {hi:g}{rb}")
    return x


def _per_group(v: object, groups: Sequence[str], where: str, check) -> list[float]:
    """One number for every group, or a mapping group -> number covering every group."""
    if isinstance(v, Mapping):
        unknown = [str(k) for k in v if str(k) not in groups]
        if unknown:
            raise BadInput(f"{where}: unknown group {unknown[0]!r} (groups: {', '.join(groups)})")
        missing = [g for g in groups if g not in {str(k) for k in v}]
        if missing:
            raise BadInput(f"{where}: no value for group {missing[0]!r}")
        given = {str(k): x for k, x in v.items()}
        return [check(given[g], f"{where}.{g}") for g in groups]
    return [check(v, where)] * len(groups)


def model_from_spec(path: str | os.PathLike, groups: Sequence[str], *, baseline: str | None = None) -> PowerModel:
    """The generating model given by hand in a spec file (module docstring).

    ``baseline``: a group whose numbers every group takes (the baseline for an effects file).
    """
    src = str(path)
    spec = read_yaml(path, "spec")
    unknown = sorted(set(spec) - {"actions", "observed_s"})
    if unknown:
        raise BadInput(f"{src}: unknown key {unknown[0]!r} (known: actions, observed_s)")
    acts = spec.get("actions")
    if not isinstance(acts, Mapping) or not acts:
        raise BadInput(f"{src}: 'actions' must be a mapping of action name -> numbers, with at least one action")
    observed = _number(spec.get("observed_s", DEFAULT_OBSERVED_S), f"{src}: observed_s", 0, 1e7, lo_open=True)
    cells = []
    for name, entry in acts.items():
        where = f"{src}: actions.{name}"
        if not isinstance(entry, Mapping):
            raise BadInput(f"{where}: expected a mapping with engagement, mean_share (and precision)")
        bad = sorted(set(map(str, entry)) - {"engagement", "mean_share", "precision"})
        if bad:
            raise BadInput(f"{where}: unknown key {bad[0]!r} (known: engagement, mean_share, precision)")
        for key in ("engagement", "mean_share"):
            if key not in entry:
                raise BadInput(f"{where}: missing {key!r}")
        p = _per_group(entry["engagement"], groups, f"{where}.engagement", lambda v, w: _number(v, w, 0, 1))
        m = _per_group(entry["mean_share"], groups, f"{where}.mean_share",
                       lambda v, w: _number(v, w, 0, 1, lo_open=True, hi_open=True))  # fmt: skip
        phi = _per_group(entry.get("precision", DEFAULT_PRECISION), groups, f"{where}.precision",
                         lambda v, w: _number(v, w, 0, 1e9, lo_open=True))  # fmt: skip
        row = tuple(CellModel(engage=p[j], mean_share=m[j], precision=phi[j]) for j in range(len(groups)))
        if baseline is not None:
            row = tuple(row[list(groups).index(baseline)] for _ in groups)
        cells.append(row)
    return PowerModel(groups=tuple(groups), actions=tuple(str(a) for a in acts), cells=tuple(cells),
                      observed_s=(observed,), source=f"spec {src}", effects="spec")  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Effects
# --------------------------------------------------------------------------------------------------


def read_effects(path: str | os.PathLike, groups: Sequence[str], actions: Sequence[str]) -> tuple[str, dict]:
    """(reference group, {action: {part: {group: ratio}}}) from an effects file (module docstring).

    Raises BadInput for an unknown group or part, an effect for an action the model does not have
    (the pilot never saw it or the analysis does not select it), a non-positive ratio, or an effect
    on the reference group.
    """
    src = str(path)
    data = read_yaml(path, "effects")
    unknown = sorted(set(data) - {"reference", "effects"})
    if unknown:
        raise BadInput(f"{src}: unknown key {unknown[0]!r} (known: reference, effects)")
    ref = str(data.get("reference", groups[0]))
    if ref not in groups:
        raise BadInput(f"{src}: reference: unknown group {ref!r} (groups: {', '.join(groups)})")
    eff = data.get("effects") or {}
    if not isinstance(eff, Mapping):
        raise BadInput(f"{src}: 'effects' must be a mapping of action -> part -> group -> ratio")
    out: dict = {}
    for action, parts in eff.items():
        where = f"{src}: effects.{action}"
        if str(action) not in actions:
            raise BadInput(f"{where}: action {str(action)!r} is not among the simulated actions "
                           f"({', '.join(actions[:5])}{' ...' if len(actions) > 5 else ''}): the pilot never saw it or "
                           "the analysis does not select it (set --actions)")  # fmt: skip
        if not isinstance(parts, Mapping):
            raise BadInput(f"{where}: expected a mapping with probability and/or intensity")
        for part, by_group in parts.items():
            if part not in ("probability", "intensity"):
                raise BadInput(f"{where}: unknown part {part!r} (probability: odds ratio; intensity: ratio of means)")
            if not isinstance(by_group, Mapping):
                raise BadInput(f"{where}.{part}: expected a mapping group -> ratio")
            for g, r in by_group.items():
                if str(g) not in groups:
                    raise BadInput(f"{where}.{part}: unknown group {str(g)!r} (groups: {', '.join(groups)})")
                if str(g) == ref and r != 1:
                    raise BadInput(f"{where}.{part}.{g}: effects are relative to the reference group {ref!r}")
                out.setdefault(str(action), {}).setdefault(part, {})[str(g)] = _number(
                    r, f"{where}.{part}.{g}", 0, 1e6, lo_open=True)
    return ref, out


def apply_effects(model: PowerModel, reference: str, effects: Mapping, source: str) -> PowerModel:
    """Every group of every action takes the reference group's cell, then its effects (module docstring)."""
    r = model.groups.index(reference)
    cells = []
    for i, a in enumerate(model.actions):
        base = model.cells[i][r]
        row = []
        for g in model.groups:
            c = base
            odds = effects.get(a, {}).get("probability", {}).get(g, 1.0)
            ratio = effects.get(a, {}).get("intensity", {}).get(g, 1.0)
            if odds != 1.0:
                if base.engage in (0.0, 1.0):
                    raise BadInput(f"{source}: effects.{a}.probability.{g}: an odds ratio cannot move a baseline "
                                   f"engagement probability of {base.engage:g}")  # fmt: skip
                c = replace(c, engage=float(special.expit(special.logit(base.engage) + np.log(odds))))
            if ratio != 1.0:
                m = base.mean_share * ratio
                if not 0 < m < 1:
                    raise BadInput(f"{source}: effects.{a}.intensity.{g}: ratio {ratio:g} x baseline mean fraction "
                                   f"{base.mean_share:.4g} = {m:.4g} is not a fraction in (0, 1)")  # fmt: skip
                pool = tuple(min(1.0, v * ratio) for v in base.shares)
                c = replace(c, mean_share=float(np.mean(pool)) if pool else m, shares=pool)
            row.append(c)
        cells.append(tuple(row))
    return replace(model, cells=tuple(cells), effects=source)


# --------------------------------------------------------------------------------------------------
# Machine-coding error
# --------------------------------------------------------------------------------------------------


def read_agreement(path: str | os.PathLike, actions: Sequence[str]) -> tuple[tuple[tuple[float, float], ...], str]:
    """Per action (tpr, fpr) from ``validation/confusion.parquet`` and a description of the source.

    ``path`` is the run folder, its ``validation`` folder or the file. Rows of the ``consensus``
    reference are used when there are any, else every reference's rows; counts are summed over
    participants (and groups): ``tpr = tp / (tp + fn)``, ``fpr = fp / (fp + tn)``.
    """
    path = Path(path)
    for cand in (path / "validation" / "confusion.parquet", path / "confusion.parquet", path):
        if cand.is_file():
            file = cand
            break
    else:
        raise BadInput(f"--agreement {path}: no validation/confusion.parquet there")
    try:
        df = pd.read_parquet(file)
    except Exception as exc:  # pyarrow raises several unrelated types for unreadable files
        raise BadInput(f"{file}: cannot read ({type(exc).__name__})") from None
    need = ["action", "reference", "tp", "fp", "fn", "tn"]
    miss = [c for c in need if c not in df.columns]
    if miss:
        raise BadInput(f"{file}: missing column {miss[0]!r} (contract: docs/contracts.md, validation/confusion.parquet)")
    ref = "consensus" if (df["reference"] == "consensus").any() else "all references pooled"
    if ref == "consensus":
        df = df[df["reference"] == "consensus"]
    sums = df.groupby("action")[["tp", "fp", "fn", "tn"]].sum()
    rates = []
    for a in actions:
        if a not in sums.index:
            raise BadInput(f"{file}: no confusion counts for action {a!r}")
        tp, fp, fn, tn = (float(sums.at[a, c]) for c in ("tp", "fp", "fn", "tn"))
        if tp + fn <= 0 or fp + tn <= 0:
            raise BadInput(f"{file}: action {a!r} has no {'coded' if tp + fn <= 0 else 'uncoded'} frames, so no "
                           f"{'tpr' if tp + fn <= 0 else 'fpr'}")  # fmt: skip
        rates.append((tp / (tp + fn), fp / (fp + tn)))
    return tuple(rates), f"{file} (reference: {ref})"
