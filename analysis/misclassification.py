"""Misclassification-corrected percent time: the read-out's frame error rates from validation data.

The machine's percent time is not a measurement without error. On the coded (validation) participants
the read-out's frames are compared with a human coder's (``validation/confusion.parquet``,
docs/contracts.md: one row per participant x action x reference coder with ``tp, fp, fn, tn``
frames). Per action (and, when each group has enough coded participants, per group)::

    tpr = sum tp / sum (tp + fn)        frames the coder marked that the read-out also marked
    fpr = sum fp / sum (fp + tn)        frames the coder left empty that the read-out marked

pooled by frames over the coded participants. A participant's observed share ``o`` (percent_time /
100) then has expectation ``fpr + (tpr - fpr) s`` for a true share ``s``, and the adjusted count
(ACC; Forman 2006)::

    s_acc = clip((o - fpr) / (tpr - fpr), 0, 1)

The probabilistic variant (PACC, "scaled probability average"; Bella et al. 2010) replaces the 0/1
frame labels by the model's per-frame scores: with ``m`` the participant's mean per-frame score of
the action (over its valid frames) and ``s_pos``, ``s_neg`` the validation set's mean score on the
coder's positive and negative frames::

    s_pacc = clip((m - s_neg) / (s_pos - s_neg), 0, 1)

**Ratio (two-phase sampling).** ACC assumes that false positives fall on the negative frames
independently of the participant's true share. A model's errors are often at the ends of the action's
own segments instead (read a little too long or too short, or a fraction of the events found), so that
the observed share scales with the true one: ``o ~ R^-1 s``. The coded participants are then a second
phase sample of the cohort, and the ratio estimator of two-phase sampling (double sampling for ratio
estimation; Cochran, *Sampling Techniques*, 3rd ed. 1977, chapter 12) corrects every participant by
the ratio of the coder's to the read-out's frames over them::

    R = sum (tp + fn) / sum (tp + fp)        coded frames / read-out frames, coded participants
    s_ratio = clip(R o, 0, 1)

It needs only the confusion counts. A participant the read-out shows no frame of stays at 0 (no
zero floor: the model has no false-positive term), so the zero part is the read-out's. ``R`` is
undefined where the read-out marked no frame of the action on the coded participants (the action is
then left uncorrected and its tests are not estimable). Against ACC it trades the fpr subtraction
for a much smaller noise gain where the read-out finds a small share of the frames (``R`` rather than
``1 / (tpr - fpr)``; the simulator's turning head: 2.2 against 4.8): ``docs/hurdle.md`` ("End to end")
has the measured comparison.

What PACC needs besides the confusion counts, and where it comes from (docs/contracts.md):

- the cohort table's column ``mean_score`` (float, 0-1): the model's mean per-frame score of the
  action over the participant's valid frames (the per-frame scores the read-out thresholds,
  :mod:`pipeline.frame_scores`), written by the read-out (:func:`pipeline.readout.cohort_tables`);
  optional in the cohort contract, so other producers may leave it out (then only ACC runs);
- ``validation/scores.parquet`` beside the confusion counts (written by the agreement step,
  :mod:`analysis.agreement`): one row per participant x action x reference with ``pos_score_sum``
  (sum of the model's per-frame scores over the coder's positive frames, i.e. the ``tp + fn`` frames
  of the confusion row) and ``neg_score_sum`` (over the ``fp + tn`` frames), and those frame counts
  ``pos_frames``, ``neg_frames`` (checked against the confusion row when present).

**The zero part.** A participant whose read-out shows no frame of the action (``percent_time == 0``)
stays at 0. A participant whose observed frames are no more than false positives alone would give
is corrected to 0 too, so that it joins the hurdle's zero part: with ``N = observed_s x frame_rate``
frames, observed frames at or below the ``zero_floor`` quantile of Binomial(N, fpr) count as none.
(The binomial treats frames as independent; real false positives come in runs, so this floor is a
minimum.) Without the floor, clipping would leave about half of the true non-engagers with small
positive shares and bias the probability part. The corrected value is clipped to [0, 1], so
corrected-to-0 participants are non-engagers in the hurdle.

**Uncertainty.** :func:`bootstrap_rates` resamples the coded participants with replacement (within
group when the rates are per group) and recomputes the rates: M draws of (tpr, fpr) (or of
(s_pos, s_neg), or of R), each giving one corrected cohort table (:func:`corrected_cohort`); the hurdle is
fitted on each and combined by Rubin's rules (:mod:`analysis.rubin`, :mod:`analysis.corrected_hurdle`).

**Why not QuaPy.** QuaPy (BSD-3) implements ACC and PACC as *aggregative quantifiers*: it wraps a
scikit-learn classifier, estimates tpr/fpr itself by cross-validation or a held-out split of labelled
instances (feature vectors), and returns one class prevalence per sample of instances. Here the
classifier is a video model that was trained elsewhere, its validation data arrive as per-participant
frame counts (no instances, no features), the "sample" is each participant's time budget (hundreds per
cohort, each needing a prevalence), rates may differ by group, and the uncertainty must be propagated
by resampling *participants* of the validation set, which QuaPy does not do. What remains is the
one-line correction above, so it is written here (not installed: it would add a dependency for a
formula; evaluated from its documentation).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from pipeline.cli import BadInput

from .config import MISCLASSIFICATION

__all__ = [
    "METHODS",
    "METHOD_RATES",
    "CONFUSION_COLUMNS",
    "SCORE_COLUMNS",
    "ValidationSet",
    "ValidationError",
    "read_validation",
    "validation_set",
    "check_method_inputs",
    "rate_grouping",
    "estimate_rates",
    "bootstrap_rates",
    "corrected_cohort",
    "correction_text",
]

METHODS: tuple[str, ...] = MISCLASSIFICATION
CONFUSION_COLUMNS: tuple[str, ...] = ("participant_id", "group", "action", "reference", "tp", "fp", "fn", "tn")
SCORE_COLUMNS: tuple[str, ...] = ("participant_id", "action", "reference", "pos_score_sum", "neg_score_sum")
POOLED = "all"  # the ``group`` value of pooled rates


class ValidationError(BadInput):
    """The validation tables cannot be used (names the file, column and rows)."""


@dataclass(frozen=True)
class ValidationSet:
    """Per participant x action confusion counts of one reference coder (and optional score sums).

    Attributes
    ----------
    counts : pandas.DataFrame
        ``participant_id, group, action, tp, fp, fn, tn`` (int64) and, when scores were given,
        ``pos_score_sum, neg_score_sum`` (float64).
    reference : str
        The reference coder the counts are against.
    source : str
        Where they came from (for messages and the Methods).
    """

    counts: pd.DataFrame
    reference: str
    source: str = ""

    @property
    def has_scores(self) -> bool:
        return "pos_score_sum" in self.counts.columns

    @property
    def participants(self) -> int:
        return int(self.counts["participant_id"].nunique())

    def coded_per_group(self) -> dict[str, int]:
        return self.counts.drop_duplicates("participant_id").groupby("group")["participant_id"].size().to_dict()


def _rows(idx: np.ndarray) -> str:
    idx = np.asarray(idx)
    return f"row{'s' if idx.size > 1 else ''} {', '.join(map(str, idx[:5]))}{' ...' if idx.size > 5 else ''}"


def _check(df: pd.DataFrame, needed: tuple[str, ...], counts: tuple[str, ...], where: str) -> pd.DataFrame:
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ValidationError(f"{where}: missing column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}")
    df = df.reset_index(drop=True)
    for c in needed:
        na = df[c].isna().to_numpy()
        if na.any():
            raise ValidationError(f"{where}: column {c!r} has missing values at {_rows(np.flatnonzero(na))}")
    for c in counts:
        if not pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c]):
            raise ValidationError(f"{where}: column {c!r} must be numeric, found {df[c].dtype}")
        v = df[c].to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(v) | (v < 0))
        if bad.size:
            raise ValidationError(f"{where}: column {c!r} must be finite and >= 0; bad values at {_rows(bad)}")
    return df.astype({c: str for c in needed if c not in counts})


def validation_set(
    confusion: pd.DataFrame, scores: pd.DataFrame | None = None, *, reference: str | None = None, source: str = ""
) -> ValidationSet:
    """Check the confusion table (and optional score table) and keep one reference coder.

    ``reference`` None: ``consensus`` when present, else the only reference; several references and
    none chosen is an error naming them.
    """
    where = source or "confusion"
    df = _check(confusion, CONFUSION_COLUMNS, ("tp", "fp", "fn", "tn"), where)
    refs = sorted(pd.unique(df["reference"]))
    if reference is None:
        if "consensus" in refs:
            reference = "consensus"
        elif len(refs) == 1:
            reference = refs[0]
        else:
            raise ValidationError(f"{where}: several reference coders ({', '.join(refs)}) and no consensus; choose one "
                                  "with --validation-reference")  # fmt: skip
    if reference not in refs:
        raise ValidationError(f"{where}: no rows for reference {reference!r} (it has {', '.join(refs) or 'none'})")
    df = df[df["reference"] == reference].reset_index(drop=True)
    dup = df.duplicated(["participant_id", "action"], keep=False).to_numpy()
    if dup.any():
        raise ValidationError(f"{where}: duplicate participant x action rows for reference {reference!r} at {_rows(np.flatnonzero(dup))}")
    keep = ["participant_id", "group", "action", "tp", "fp", "fn", "tn"]
    counts = df[keep].astype({c: "int64" for c in ("tp", "fp", "fn", "tn")})
    if scores is not None:
        swhere = f"{where} (scores)"
        frames = [c for c in ("pos_frames", "neg_frames") if c in scores.columns]
        s = _check(scores, SCORE_COLUMNS + tuple(frames), ("pos_score_sum", "neg_score_sum", *frames), swhere)
        s = s.loc[s["reference"] == reference, [c for c in SCORE_COLUMNS if c != "reference"] + frames]
        if s.duplicated(["participant_id", "action"]).any():
            raise ValidationError(f"{swhere}: duplicate participant x action rows for reference {reference!r}")
        counts = counts.merge(s, on=["participant_id", "action"], how="left", validate="one_to_one")
        lacking = counts["pos_score_sum"].isna().to_numpy()
        if lacking.any():
            first = counts.loc[lacking].iloc[0]
            raise ValidationError(f"{swhere}: no score row for participant {first['participant_id']!r}, action "
                                  f"{first['action']!r} (every confusion row needs one for pacc)")  # fmt: skip
        for col, want in (("pos_frames", counts["tp"] + counts["fn"]), ("neg_frames", counts["fp"] + counts["tn"])):
            if col in counts.columns:
                off = np.flatnonzero(counts[col].to_numpy() != want.to_numpy())
                if off.size:
                    first = counts.iloc[off[0]]
                    raise ValidationError(f"{swhere}: participant {first['participant_id']!r}, action {first['action']!r}: "
                                          f"{col} {int(first[col])} does not match the confusion row ({int(want.iat[off[0]])}); "
                                          "the score and confusion tables are from different comparisons")  # fmt: skip
                counts = counts.drop(columns=col)
    return ValidationSet(counts, str(reference), source)


def read_validation(folder: str | os.PathLike, *, reference: str | None = None) -> ValidationSet:
    """Read ``<folder>/confusion.parquet`` and, when present, ``<folder>/scores.parquet``."""
    folder = Path(folder)
    path = folder / "confusion.parquet"
    if not path.is_file():
        raise ValidationError(f"--validation {folder}: no confusion.parquet in it (written by python -m analysis.agreement)")
    try:
        confusion = pd.read_parquet(path)
        spath = folder / "scores.parquet"
        scores = pd.read_parquet(spath) if spath.is_file() else None
    except (OSError, ValueError) as exc:
        raise ValidationError(f"{path}: cannot be read ({exc})") from None
    return validation_set(confusion, scores, reference=reference, source=str(path))


def check_method_inputs(method: str, vs: ValidationSet, cohort: pd.DataFrame) -> None:
    """Stop (ValidationError) when ``method`` lacks an input: pacc needs the validation set's score sums
    (``scores.parquet``) and the cohort column ``mean_score``."""
    if method != "pacc":
        return
    lacking = [what for what, ok in (("validation/scores.parquet (per-frame score sums on the coder's positive and "
                                      "negative frames, written by python -m analysis.agreement)", vs.has_scores),
                                     ("the cohort column 'mean_score' (the model's mean per-frame score of each "
                                      "action, written by python -m pipeline.aggregate)", "mean_score" in cohort.columns))
               if not ok]  # fmt: skip
    if lacking:
        raise ValidationError(f"--misclassification pacc needs {' and '.join(lacking)}; see docs/hurdle.md")


def rate_grouping(vs: ValidationSet, groups: tuple[str, ...], mode: str, min_coded: int) -> tuple[bool, str]:
    """Whether to estimate the rates per group, and the reason in words.

    ``mode`` "pooled": never; "group": always (an error when a group has no coded participant);
    "auto": per group when every group has at least ``min_coded`` coded participants.
    """
    per = {g: int(vs.coded_per_group().get(g, 0)) for g in groups}
    text = ", ".join(f"{g} {n}" for g, n in per.items())
    if mode == "pooled":
        return False, f"rates pooled over groups (coded participants: {text})"
    if mode == "group":
        none = [g for g, n in per.items() if n == 0]
        if none:
            raise ValidationError(f"per-group error rates requested but group(s) {', '.join(none)} have no coded participant")
        return True, f"rates per group (coded participants: {text})"
    few = [g for g, n in per.items() if n < min_coded]
    if few:
        return False, (f"rates pooled over groups: too few coded participants for per-group rates in "
                       f"{', '.join(few)} ({text}; at least {min_coded} each needed)")  # fmt: skip
    return True, f"rates per group (coded participants: {text})"


def _rates_from(c: pd.DataFrame, by_group: bool) -> pd.DataFrame:
    keys = ["action", "group"] if by_group else ["action"]
    cols = ["tp", "fp", "fn", "tn"] + (["pos_score_sum", "neg_score_sum"] if "pos_score_sum" in c.columns else [])
    c = c.assign(_pos=(c["tp"] + c["fn"]) > 0)
    s = c.groupby(keys, sort=True)[cols + ["_pos"]].sum()
    pos = s["tp"] + s["fn"]
    neg = s["fp"] + s["tn"]
    read = s["tp"] + s["fp"]
    out = pd.DataFrame({
        "tpr": s["tp"] / pos.where(pos > 0), "fpr": s["fp"] / neg.where(neg > 0),
        "pos_frames": pos, "neg_frames": neg, "n_positive": s["_pos"].astype("int64"),
        "ratio": pos / read.where(read > 0), "read_frames": read,
    })  # fmt: skip
    if "pos_score_sum" in cols:
        out["s_pos"] = s["pos_score_sum"] / pos.where(pos > 0)
        out["s_neg"] = s["neg_score_sum"] / neg.where(neg > 0)
    out = out.reset_index()
    if not by_group:
        out.insert(1, "group", POOLED)
    return out


_RATE_COLS = ["tpr", "fpr", "ratio", "s_pos", "s_neg"]

# The rates each method uses: an action whose rates are NaN is left uncorrected (corrected_cohort) and
# its tests are not estimable (analysis.corrected_hurdle).
METHOD_RATES: dict[str, tuple[str, ...]] = {"acc": ("tpr", "fpr"), "pacc": ("tpr", "fpr", "s_pos", "s_neg"),
                                            "ratio": ("ratio",)}


def _layout(c: pd.DataFrame, by_group: bool, groups, min_positive: int) -> tuple[pd.DataFrame, dict[str, bool]]:
    """Rates of the sample, per group for the actions where every group has ``min_positive`` coded
    participants showing the action, pooled for the others; and that choice per action."""
    pooled = _rates_from(c, False)
    if not by_group:
        return pooled, {a: False for a in pooled["action"]}
    per = _rates_from(c, True)
    per = per[per["group"].isin(groups)]
    choice = {}
    for a in pooled["action"]:
        n = per.loc[per["action"] == a].set_index("group")["n_positive"]
        choice[a] = all(int(n.get(g, 0)) >= min_positive for g in groups)
    grouped = [a for a, v in choice.items() if v]
    out = pd.concat([per[per["action"].isin(grouped)], pooled[~pooled["action"].isin(grouped)]], ignore_index=True)
    return out.sort_values(["action", "group"], kind="mergesort").reset_index(drop=True), choice


def estimate_rates(vs: ValidationSet, *, by_group: bool = False, groups: tuple[str, ...] | None = None,
                   min_positive: int = 3) -> pd.DataFrame:  # fmt: skip
    """Frame error rates per action (and group), pooled by frames over the coded participants.

    With ``by_group``, an action gets per-group rates only when every group of ``groups`` has at least
    ``min_positive`` coded participants who show it (a tpr from a participant or two is noise); the
    other actions keep pooled rates (group :data:`POOLED`).

    Returns
    -------
    pandas.DataFrame
        ``action, group``, ``tpr, fpr, pos_frames, neg_frames, n_positive`` (coded participants with a
        positive frame), ``ratio, read_frames`` (coded / read-out frames, and the latter) and, with
        scores, ``s_pos, s_neg``. NaN rates where the coder marked no positive (or no negative) frame;
        NaN ratio where the read-out marked none.
    """
    groups = tuple(groups) if groups is not None else tuple(sorted(vs.counts["group"].unique()))
    return _layout(vs.counts, by_group, groups, min_positive)[0]


def bootstrap_rates(vs: ValidationSet, draws: int, *, by_group: bool = False, groups: tuple[str, ...] | None = None,
                    min_positive: int = 3, seed: int = 0) -> list[pd.DataFrame]:  # fmt: skip
    """``draws`` bootstrap replicates of :func:`estimate_rates`: coded participants resampled with
    replacement (within each group when ``by_group``, so every group keeps its number of coded
    participants), all of a participant's actions together.

    Each draw keeps the point estimate's choice of per-group or pooled rates per action; a per-group
    rate a draw cannot estimate (no sampled participant shows the action) takes the draw's pooled
    rate, and a pooled one the point estimate.
    """
    groups = tuple(groups) if groups is not None else tuple(sorted(vs.counts["group"].unique()))
    point, choice = _layout(vs.counts, by_group, groups, min_positive)
    rng = np.random.default_rng(seed)
    c = vs.counts
    people = c.drop_duplicates("participant_id")[["participant_id", "group"]]
    strata = [people] if not by_group else [d for _, d in people.groupby("group", sort=True)]
    by_pid = {pid: d for pid, d in c.groupby("participant_id", sort=False)}
    cols = [k for k in _RATE_COLS if k in point.columns]
    keys = ["action", "group"]
    out = []
    for _ in range(draws):
        chosen = []
        for s in strata:
            ids = s["participant_id"].to_numpy()
            chosen += list(rng.choice(ids, size=ids.size, replace=True))
        sample = pd.concat([by_pid[p] for p in chosen], ignore_index=True)
        pooled = _rates_from(sample, False).set_index("action")
        if by_group and any(choice.values()):
            per = _rates_from(sample, True)
        else:
            per = pooled.reset_index().iloc[0:0]
        d = point[keys].merge(pd.concat([per, pooled.reset_index()], ignore_index=True)[keys + cols], on=keys, how="left")
        for col in cols:
            v = d[col].to_numpy(dtype=np.float64)
            fill = pooled[col].reindex(d["action"]).to_numpy(dtype=np.float64)
            v = np.where(np.isfinite(v), v, fill)
            d[col] = np.where(np.isfinite(v), v, point[col].to_numpy(dtype=np.float64))
        out.append(d)
    return out


def _lookup(rates: pd.DataFrame, cohort: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """Each cohort row's rates: its group's row where the action has per-group rates, else the pooled row."""
    own = cohort[["action", "group"]].merge(rates[["action", "group"] + cols], on=["action", "group"], how="left")
    pooled = rates[rates["group"] == POOLED].drop_duplicates("action").set_index("action")[cols]
    fill = pooled.reindex(cohort["action"].to_numpy())
    return pd.DataFrame({c: np.where(own[c].notna().to_numpy(), own[c].to_numpy(dtype=np.float64),
                                     fill[c].to_numpy(dtype=np.float64)) for c in cols})  # fmt: skip


def corrected_cohort(
    cohort: pd.DataFrame,
    rates: pd.DataFrame,
    method: str = "acc",
    *,
    frame_rate: float = 30.0,
    zero_floor: float = 0.99,
    min_separation: float = 0.05,
) -> pd.DataFrame:
    """The cohort table with ``percent_time`` corrected for the read-out's errors (module docstring).

    Parameters
    ----------
    cohort : pandas.DataFrame
        Cohort table (``percent_time`` in percent, ``observed_s``; ``mean_score`` for pacc).
    rates : pandas.DataFrame
        From :func:`estimate_rates` or one draw of :func:`bootstrap_rates`; per group when it has
        group values other than :data:`POOLED`.
    method : {"acc", "pacc", "ratio"}
    frame_rate : float
        Frames per second, for the frame count ``N = observed_s x frame_rate`` of the zero floor.
    zero_floor : float
        Quantile of Binomial(N, fpr) at or below which observed frames count as none (0 = only
        observed zeros stay zero). Not used by ``ratio`` (it has no false-positive term).
    min_separation : float
        ``tpr - fpr`` (or ``s_pos - s_neg``) is not taken below this (a draw where the read-out barely
        tells the action apart would otherwise blow the shares up).

    Returns
    -------
    pandas.DataFrame
        A copy; ``percent_time`` corrected (0-100); actions without rates (no coded positive or
        negative frame) are left as they are.
    """
    if method not in METHOD_RATES:
        raise ValueError(f"method must be one of {', '.join(METHOD_RATES)}, got {method!r}")
    if method == "ratio":
        if "ratio" not in rates.columns:
            raise ValueError("rates have no 'ratio' column (from estimate_rates or bootstrap_rates)")
        r = _lookup(rates, cohort, ["ratio"])["ratio"].to_numpy(dtype=np.float64)
        obs = cohort["percent_time"].to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore"):
            out = np.where(np.isfinite(r), np.clip(obs * r, 0.0, 100.0), obs)
        return cohort.assign(percent_time=out)
    cols = ["tpr", "fpr"] + (["s_pos", "s_neg"] if method == "pacc" else [])
    if method == "pacc" and not {"s_pos", "s_neg"} <= set(rates.columns):
        raise ValidationError("--misclassification pacc needs validation/scores.parquet (per-frame score sums on the "
                              "coder's positive and negative frames); see docs/hurdle.md")  # fmt: skip
    if method == "pacc" and "mean_score" not in cohort.columns:
        raise ValidationError("--misclassification pacc needs the cohort column 'mean_score' (the model's mean per-frame "
                              "score of each action); see docs/hurdle.md")  # fmt: skip
    r = _lookup(rates, cohort, cols)
    obs = cohort["percent_time"].to_numpy(dtype=np.float64) / 100.0
    tpr, fpr = r["tpr"].to_numpy(dtype=np.float64), r["fpr"].to_numpy(dtype=np.float64)
    if method == "acc":
        lo, hi, val = fpr, tpr, obs
    else:
        lo, hi = r["s_neg"].to_numpy(dtype=np.float64), r["s_pos"].to_numpy(dtype=np.float64)
        val = cohort["mean_score"].to_numpy(dtype=np.float64)
    known = np.isfinite(lo) & np.isfinite(hi)
    with np.errstate(invalid="ignore"):
        corr = np.clip((val - lo) / np.maximum(hi - lo, min_separation), 0.0, 1.0)
    zero = obs <= 0
    if zero_floor > 0:
        n = np.maximum(np.round(cohort["observed_s"].to_numpy(dtype=np.float64) * frame_rate), 1.0)
        f = np.where(np.isfinite(fpr), np.clip(fpr, 0.0, 1.0), 0.0)
        floor = stats.binom.ppf(zero_floor, n, f)
        zero |= np.round(obs * n) <= floor
    out = np.where(known, np.where(zero, 0.0, corr * 100.0), obs * 100.0)
    return cohort.assign(percent_time=out)


def correction_text(method: str, vs: ValidationSet, grouping: str, imputations: int) -> str:
    """The correction in words for the results and the Methods."""
    name = {"acc": "adjusted count (observed - fpr) / (tpr - fpr)",
            "pacc": "probabilistic adjusted count (mean score - s_neg) / (s_pos - s_neg)",
            "ratio": "two-phase ratio estimator observed x (coded frames / read-out frames)"}[method]  # fmt: skip
    what = "the coded-to-read-out frame ratio" if method == "ratio" else "frame error rates"
    return (f"percent time corrected for read-out errors by the {name}, clipped to [0, 100] %, with {what} "
            f"from {vs.participants} coded participants (reference {vs.reference}; {grouping}); uncertainty "
            f"of the rates carried by {imputations} bootstrap draws of the coded participants, combined by Rubin's rules")  # fmt: skip
