"""Cohort table I/O for the hurdle analysis: load, validate, select actions, tidy per-participant data.

The cohort table (``cohort.parquet``, contract :data:`pipeline.contracts.COHORT`) is long: one row per
participant x action with ``percent_time`` in [0, 100], plus participant-level covariate columns
repeated on every row of a participant. :func:`validate_cohort` checks everything the statistics rely
on and raises :class:`CohortError` naming the offending rows, so that the command line can stop with
exit code 2 before anything is written.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.cli import BadInput
from pipeline.contracts import COHORT, conform

from .config import HurdleConfig

__all__ = [
    "CohortError",
    "REQUIRED_COLUMNS",
    "TEXT_COLUMNS",
    "NUMERIC_NA",
    "load_cohort",
    "validate_cohort",
    "select_actions",
    "action_frequencies",
    "categorical_covariates",
]

REQUIRED_COLUMNS: tuple[str, ...] = tuple(COHORT.schema.names)


class CohortError(BadInput):
    """The cohort table cannot be analysed; the message names the problem and the rows."""


def _rows(idx: Sequence[int] | np.ndarray, limit: int = 8) -> str:
    """'rows 3, 7, 9' with at most ``limit`` rows listed (0-based row positions in the table)."""
    idx = [int(i) for i in idx]
    shown = ", ".join(str(i) for i in idx[:limit])
    more = f" and {len(idx) - limit} more" if len(idx) > limit else ""
    return f"row{'s' if len(idx) > 1 else ''} {shown}{more}"


# Text columns of the cohort contract: read from CSV exactly as written ("007" stays "007").
TEXT_COLUMNS: tuple[str, ...] = ("participant_id", "group", "action")
# Spellings that mean "missing" in a numeric CSV column (never in a text column, where "NA" can be a site).
NUMERIC_NA: frozenset[str] = frozenset({"NA", "N/A", "n/a", "NaN", "nan", "-nan", "null", "NULL", "None", "#N/A", "."})


def _column_from_csv(values: pd.Series, text: bool) -> pd.Series:
    """One CSV column read as text: numeric if every non-missing cell is a number, else text as written.

    An empty cell is missing in every column. In a numeric column the usual missing spellings
    (:data:`NUMERIC_NA`) are missing too; in a text column every other cell is kept verbatim.
    """
    stripped = values.str.strip()
    empty = stripped == ""
    if not text:
        na = empty | stripped.isin(NUMERIC_NA)
        numbers = pd.to_numeric(stripped.where(~na), errors="coerce")
        if (~na).any() and numbers.notna().sum() == int((~na).sum()):
            return numbers
    return values.where(~empty, None)


def _read_csv(path: Path) -> pd.DataFrame:
    raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    return pd.DataFrame({c: _column_from_csv(raw[c], c in TEXT_COLUMNS) for c in raw.columns})


def load_cohort(path: str | os.PathLike) -> pd.DataFrame:
    """Read a cohort table from Parquet (or CSV, by suffix) without validating it.

    CSV rule: ``participant_id``, ``group`` and ``action`` are text exactly as written (leading zeros
    kept). Every other column is numeric when all its non-missing cells are numbers, otherwise text as
    written (so a site called ``NA`` stays ``"NA"``). An empty cell is missing in every column; in a
    numeric column ``NA``, ``NaN``, ``null``, ``N/A``, ``#N/A``, ``None`` and ``.`` are missing too.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    CohortError
        If the file cannot be read as a table.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"cohort file not found: {path}")
    try:
        if path.suffix.lower() == ".csv":
            return _read_csv(path)
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for unreadable files
        raise CohortError(f"{path}: cannot read the cohort table ({type(exc).__name__}: {exc})") from None


def categorical_covariates(df: pd.DataFrame, covariates: Sequence[str], declared: Sequence[str] = ()) -> list[str]:
    """The covariates to dummy-code: declared ones plus non-numeric (string, bool, category) columns."""
    out = []
    for c in covariates:
        s = df[c]
        if c in declared or not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
            out.append(c)
    return out


def validate_cohort(df: pd.DataFrame, config: HurdleConfig = HurdleConfig(), *, source: str = "") -> pd.DataFrame:
    """Check a cohort table for the hurdle analysis and return a clean copy.

    Checks, in order: required and covariate columns present; no missing values in them;
    ``percent_time`` numeric and within [0, 100] (with ``config.percent_scale == "fraction"``: within
    [0, 1], then multiplied by 100; with ``percent_scale`` None, a table whose values are all <= 1
    is refused as probable fractions); one row per participant x action; every participant
    has one group and one value of each covariate; every participant has a row for every action;
    groups known (listed in ``config.groups``) and at least two of them present; finally the cohort
    contract's types.

    Parameters
    ----------
    df : pandas.DataFrame
        The cohort table (long format).
    config : HurdleConfig
        Supplies ``groups``, ``covariates`` and ``ignore_other_groups``.
    source : str
        Where the table came from, put at the start of messages.

    Returns
    -------
    pandas.DataFrame
        The rows of the analysed groups, index reset, ``group`` as str.

    Raises
    ------
    CohortError
        On the first problem, naming the column and the (0-based) rows.
    """
    where = f"{source}: " if source else ""
    df = df.reset_index(drop=True)

    needed = list(REQUIRED_COLUMNS) + [c for c in config.covariates if c not in REQUIRED_COLUMNS]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        what = "covariate column" if all(m in config.covariates for m in missing) else "column"
        raise CohortError(
            f"{where}missing {what}{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} "
            f"(required: {', '.join(REQUIRED_COLUMNS)}{'; covariates: ' + ', '.join(config.covariates) if config.covariates else ''})"
        )

    for c in needed:
        na = df[c].isna().to_numpy()
        if na.any():
            idx = np.flatnonzero(na)
            who = ""
            if c != "participant_id":
                pids = list(dict.fromkeys(str(v) for v in df["participant_id"].to_numpy()[idx] if pd.notna(v)))
                if pids:
                    more = f" and {len(pids) - 4} more" if len(pids) > 4 else ""
                    who = f" (participant{'s' if len(pids) > 1 else ''} {', '.join(map(repr, pids[:4]))}{more})"
            raise CohortError(f"{where}column {c!r} has missing values (NaN/null) at {_rows(idx)}{who}")

    for c in ("percent_time", "observed_s"):
        if not pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c]):
            raise CohortError(f"{where}column {c!r} must be numeric, found {df[c].dtype}")
    pct = df["percent_time"].to_numpy(dtype=np.float64)
    if config.percent_scale == "fraction":
        bad = np.flatnonzero(~np.isfinite(pct) | (pct < 0) | (pct > 1))
        if bad.size:
            raise CohortError(
                f"{where}with --percent-scale fraction, column 'percent_time' must be in [0, 1]; {bad.size} value(s) "
                f"outside at {_rows(bad)} (e.g. {float(pct[bad[0]])!r})"
            )
        pct = pct * 100.0
        df = df.assign(percent_time=pct)
    elif config.percent_scale is None and np.all(np.isfinite(pct)) and pct.size and 0 < pct.max() <= 1 and pct.min() >= 0:
        raise CohortError(
            f"{where}column 'percent_time' holds only values <= 1 (largest {float(pct.max())!r}): fractions of time "
            "rather than percent? Pass --percent-scale fraction to read them as fractions (x 100), or "
            "--percent-scale percent if they are percentages"
        )
    bad = np.flatnonzero(~np.isfinite(pct) | (pct < 0) | (pct > 100))
    if bad.size:
        raise CohortError(
            f"{where}column 'percent_time' must be in [0, 100]; {bad.size} value(s) outside at {_rows(bad)} "
            f"(e.g. {float(pct[bad[0]])!r})"
        )
    obs = df["observed_s"].to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(obs) | (obs < 0))
    if bad.size:
        raise CohortError(f"{where}column 'observed_s' must be finite and >= 0; bad values at {_rows(bad)}")

    df = df.astype({"participant_id": str, "group": str, "action": str})

    dup = df.duplicated(["participant_id", "action"], keep=False).to_numpy()
    if dup.any():
        first = df.loc[dup, ["participant_id", "action"]].iloc[0]
        raise CohortError(
            f"{where}duplicate participant x action rows at {_rows(np.flatnonzero(dup))} "
            f"(e.g. participant {first['participant_id']!r}, action {first['action']!r}); each pair must appear once"
        )

    for c in ("group", *config.covariates):
        nuniq = df.groupby("participant_id", sort=False)[c].nunique(dropna=False)
        conflicted = nuniq[nuniq > 1]
        if len(conflicted):
            pid = conflicted.index[0]
            rows = np.flatnonzero((df["participant_id"] == pid).to_numpy())
            vals = ", ".join(map(repr, pd.unique(df.loc[rows, c])[:4]))
            raise CohortError(
                f"{where}participant {pid!r} has conflicting {c!r} values ({vals}) at {_rows(rows)}; "
                f"{len(conflicted)} participant(s) affected; a participant-level column must be constant"
            )

    known = set(config.groups)
    unknown_mask = ~df["group"].isin(known).to_numpy()
    if unknown_mask.any():
        labels = ", ".join(map(repr, sorted(pd.unique(df.loc[unknown_mask, "group"]))))
        if config.ignore_other_groups:
            df = df.loc[~unknown_mask].reset_index(drop=True)
        else:
            raise CohortError(
                f"{where}unknown group{'s' if labels.count(',') else ''} {labels} at {_rows(np.flatnonzero(unknown_mask))}; "
                f"expected {', '.join(config.groups)} (set --groups, or --ignore-other-groups to drop them)"
            )
    present = [g for g in config.groups if (df["group"] == g).any()]
    if len(present) < 2:
        raise CohortError(
            f"{where}fewer than 2 groups to compare: found {present or 'none'} of {', '.join(config.groups)}"
        )
    absent = [g for g in config.groups if g not in present]
    if absent:
        raise CohortError(f"{where}group{'s' if len(absent) > 1 else ''} {', '.join(map(repr, absent))} requested but absent from the cohort")

    # Every participant needs a row for every action: an absent row is ambiguous (zero or unobserved?)
    # and silently treating it as either would bias the engagement model.
    n_actions = df["action"].nunique()
    per_pid = df.groupby("participant_id", sort=False)["action"].size()
    short = per_pid[per_pid < n_actions]
    if len(short):
        pid = short.index[0]
        have = set(df.loc[df["participant_id"] == pid, "action"])
        lacking = sorted(set(df["action"]) - have)
        raise CohortError(
            f"{where}participant {pid!r} has no row for action(s) {', '.join(map(repr, lacking[:4]))}"
            f"{' ...' if len(lacking) > 4 else ''}; {len(short)} participant(s) affected. Every participant needs "
            "one row per action (percent_time 0 when the action never occurs)"
        )
    nid = df.groupby("action", sort=False)["action_id"].nunique()
    if (nid > 1).any():
        a = nid[nid > 1].index[0]
        raise CohortError(f"{where}action {a!r} has several action_id values")

    # Last, the artifact contract's types (e.g. a string action_id); its message names column and row.
    conform(df, COHORT, source=source)
    return df


def action_frequencies(df: pd.DataFrame) -> pd.DataFrame:
    """Per action: share of participants engaged and mean percent time over all participants.

    Returns
    -------
    pandas.DataFrame
        Columns ``action``, ``action_id``, ``share_engaged`` (0-1), ``mean_percent`` (0-100).
    """
    g = df.assign(_eng=df["percent_time"] > 0).groupby("action", sort=True)
    return pd.DataFrame(
        {
            "action_id": g["action_id"].first(),
            "share_engaged": g["_eng"].mean(),
            "mean_percent": g["percent_time"].mean(),
        }
    ).reset_index()


def select_actions(df: pd.DataFrame, config: HurdleConfig) -> list[str]:
    """The actions to analyse, in ranking (or user) order.

    Raises
    ------
    CohortError
        If a requested action is not in the cohort.
    """
    names = set(df["action"].unique())
    if config.actions is not None:
        unknown = [a for a in config.actions if a not in names]
        if unknown:
            raise CohortError(
                f"action{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} not in the cohort "
                f"(it has {len(names)} actions, e.g. {', '.join(map(repr, sorted(names)[:3]))})"
            )
        return list(dict.fromkeys(config.actions))
    freq = action_frequencies(df)
    keys = ["share_engaged", "mean_percent"] if config.rank_by == "engaged" else ["mean_percent", "share_engaged"]
    freq = freq.sort_values(keys + ["action"], ascending=[False, False, True], kind="mergesort")
    ranked = freq["action"].tolist()
    return ranked[: config.top_actions] if config.top_actions else ranked
