"""Data contracts between the pipeline's stages: one pyarrow schema and its value rules per artifact.

Stages talk only through these artifacts, so each stage can be run, tested and replaced alone.
The column-by-column documentation (type, unit, meaning) is ``docs/contracts.md``; keep both in step.

Each :class:`Contract` holds

- the *required* columns as a pyarrow schema (extra columns are allowed where the contract says so,
  e.g. participant covariates in the cohort table), and
- value rules (ranges, non-null, uniqueness) checked row by row.

:func:`validate` checks a :class:`pyarrow.Table` or :class:`pandas.DataFrame` against a contract and
raises :class:`ContractError` naming the first offending column and row. :func:`conform` casts a
table to the contract's types (e.g. int64 -> int32) before writing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from model.taxonomy import NUM_BODY25, NUM_EXTRA

__all__ = [
    "Contract",
    "ContractError",
    "KEYPOINTS",
    "WINDOWS",
    "SEGMENTS",
    "COHORT",
    "HURDLE_RESULTS",
    "CONTRACTS",
    "validate",
    "conform",
]


class ContractError(ValueError):
    """A table does not satisfy an artifact contract. The message names the column and row."""


@dataclass(frozen=True)
class Rule:
    """A value rule on one column: ``ok(values) -> bool mask`` over the non-null values."""

    column: str
    ok: Callable[[np.ndarray], np.ndarray]
    what: str  # e.g. "in [0, 100]"


def _in_range(lo: float, hi: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda v: (v >= lo) & (v <= hi)


def _nonneg(v: np.ndarray) -> np.ndarray:
    return v >= 0


@dataclass(frozen=True)
class Contract:
    """Schema and value rules of one artifact kind.

    Attributes
    ----------
    name : str
        Artifact kind, e.g. ``"keypoints"``; used in error messages.
    schema : pyarrow.Schema
        Required columns and their types. Field nullability is enforced.
    rules : tuple of Rule
        Row-wise value rules.
    unique : tuple of str
        Columns that together identify a row (duplicates are rejected).
    allow_extra : bool
        Whether columns beyond ``schema`` are allowed (kept as they are).
    version : int
        Version of the contract, starting at 1. Raise it whenever the meaning or layout of the
        artifact changes (a column added, a unit or a rule changed): the version is written into every
        artifact's sidecar (``contract_version``) and :func:`pipeline.artifacts.is_up_to_date` treats an
        artifact written under another version as out of date, so it is redone rather than reused.
    """

    name: str
    schema: pa.Schema
    rules: tuple[Rule, ...] = ()
    unique: tuple[str, ...] = ()
    allow_extra: bool = False
    metadata: dict[str, str] = field(default_factory=dict)
    version: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.version, int) or isinstance(self.version, bool) or self.version < 1:
            raise ValueError(f"contract {self.name!r}: version must be an integer >= 1, got {self.version!r}")

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)


# --------------------------------------------------------------------------------------------------
# keypoints/<video_id>.parquet
# --------------------------------------------------------------------------------------------------
KEYPOINTS = Contract(
    name="keypoints",
    version=1,
    schema=pa.schema(
        [
            pa.field("frame", pa.int32(), nullable=False),
            pa.field("time_s", pa.float64(), nullable=False),
            # [25 * 3] = (x, y, confidence) per BODY_25 joint, x/y in source-pixel coordinates,
            # missing joint = (0, 0, 0).
            pa.field("body25", pa.list_(pa.float32(), NUM_BODY25 * 3), nullable=False),
            # [8 * 3] extra points (model.taxonomy.EXTRA_POINTS), zeros when the backend has none.
            pa.field("extra", pa.list_(pa.float32(), NUM_EXTRA * 3), nullable=False),
            pa.field("detected", pa.bool_(), nullable=False),  # a person was found in the frame
            pa.field("rejected", pa.bool_(), nullable=False),  # found but failed plausibility QC
        ]
    ),
    rules=(Rule("frame", _nonneg, ">= 0"), Rule("time_s", _nonneg, ">= 0")),
    unique=("frame",),
)

# --------------------------------------------------------------------------------------------------
# windows/<video_id>.parquet
# --------------------------------------------------------------------------------------------------
WINDOWS = Contract(
    name="windows",
    version=1,
    schema=pa.schema(
        [
            pa.field("video_id", pa.string(), nullable=False),
            pa.field("window", pa.int32(), nullable=False),
            pa.field("start_frame", pa.int32(), nullable=False),
            pa.field("end_frame", pa.int32(), nullable=False),  # exclusive
            pa.field("start_s", pa.float64(), nullable=False),
            pa.field("end_s", pa.float64(), nullable=False),
            pa.field("valid_fraction", pa.float32(), nullable=False),
            # class probabilities (softmax), one per class of the model's taxonomy; null when the
            # window had too little valid pose to be classified.
            pa.field("probs", pa.list_(pa.float32()), nullable=True),
            pa.field("model_id", pa.string(), nullable=False),
            pa.field("config_id", pa.string(), nullable=False),
        ]
    ),
    rules=(
        Rule("window", _nonneg, ">= 0"),
        Rule("start_frame", _nonneg, ">= 0"),
        Rule("start_s", _nonneg, ">= 0"),
        Rule("valid_fraction", _in_range(0.0, 1.0), "in [0, 1]"),
    ),
    unique=("video_id", "window"),
    # optional extra columns, kept after the required ones: routing_st list<float32> (ST routing weight
    # per entity, mean over the window's frames; entity names in the sidecar's "entities"), null with probs
    allow_extra=True,
)

# --------------------------------------------------------------------------------------------------
# segments/<video_id>.parquet (MMA-52 detection style)
# --------------------------------------------------------------------------------------------------
SEGMENTS = Contract(
    name="segments",
    version=1,
    schema=pa.schema(
        [
            pa.field("video_id", pa.string(), nullable=False),
            pa.field("action_id", pa.int16(), nullable=False),
            pa.field("action", pa.string(), nullable=False),
            pa.field("start_s", pa.float64(), nullable=False),
            pa.field("end_s", pa.float64(), nullable=False),
            pa.field("score", pa.float32(), nullable=False),
        ]
    ),
    rules=(
        Rule("action_id", _nonneg, ">= 0"),
        Rule("start_s", _nonneg, ">= 0"),
        Rule("score", _in_range(0.0, 1.0), "in [0, 1]"),
    ),
)

# --------------------------------------------------------------------------------------------------
# cohort.parquet: one row per participant x action; covariates as extra columns
# --------------------------------------------------------------------------------------------------
COHORT = Contract(
    name="cohort",
    # 2: the read-out adds mean_score (float64, [0, 1]) after observed_s (an optional column: other
    # producers, e.g. analysis.simulate, may leave it out)
    version=2,
    schema=pa.schema(
        [
            pa.field("participant_id", pa.string(), nullable=False),
            pa.field("group", pa.string(), nullable=False),
            pa.field("action_id", pa.int16(), nullable=False),
            pa.field("action", pa.string(), nullable=False),
            pa.field("percent_time", pa.float64(), nullable=False),  # 0-100
            pa.field("observed_s", pa.float64(), nullable=False),  # valid-pose seconds (denominator)
        ]
    ),
    rules=(
        Rule("action_id", _nonneg, ">= 0"),
        Rule("percent_time", _in_range(0.0, 100.0), "in [0, 100]"),
        Rule("observed_s", _nonneg, ">= 0"),
    ),
    unique=("participant_id", "action"),
    allow_extra=True,
)

# --------------------------------------------------------------------------------------------------
# hurdle results: one row per action x contrast x part
# --------------------------------------------------------------------------------------------------
HURDLE_RESULTS = Contract(
    name="hurdle_results",
    version=1,
    schema=pa.schema(
        [
            pa.field("action", pa.string(), nullable=False),
            pa.field("contrast", pa.string(), nullable=False),  # "ASD vs TDC"
            pa.field("group_a", pa.string(), nullable=False),
            pa.field("group_b", pa.string(), nullable=False),
            pa.field("part", pa.string(), nullable=False),  # "probability" | "intensity" | "count" | "duration"
            pa.field("n_a", pa.int64(), nullable=False),
            pa.field("n_b", pa.int64(), nullable=False),
            pa.field("engaged_a", pa.int64(), nullable=False),
            pa.field("engaged_b", pa.int64(), nullable=False),
            pa.field("estimate", pa.float64(), nullable=True),  # log odds ratio, a vs b
            pa.field("effect", pa.float64(), nullable=True),  # odds ratio, a vs b
            pa.field("ci_low", pa.float64(), nullable=True),
            pa.field("ci_high", pa.float64(), nullable=True),
            pa.field("p", pa.float64(), nullable=True),
            pa.field("p_adj", pa.float64(), nullable=True),
            pa.field("method", pa.string(), nullable=False),
            pa.field("correction", pa.string(), nullable=False),
            pa.field("family", pa.string(), nullable=False),
            pa.field("note", pa.string(), nullable=True),
        ]
    ),
    rules=(
        Rule("part", lambda v: np.isin(v, ["probability", "intensity", "count", "duration"]),
             "'probability', 'intensity', 'count' or 'duration'"),
        Rule("effect", lambda v: v > 0, "> 0"),
        Rule("p", _in_range(0.0, 1.0), "in [0, 1]"),
        Rule("p_adj", _in_range(0.0, 1.0), "in [0, 1]"),
    ),
    unique=("action", "contrast", "part"),
    allow_extra=True,
)

CONTRACTS: dict[str, Contract] = {
    c.name: c for c in (KEYPOINTS, WINDOWS, SEGMENTS, COHORT, HURDLE_RESULTS)
}


def _to_table(data: pa.Table | pd.DataFrame) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pd.DataFrame):
        return pa.Table.from_pandas(data, preserve_index=False)
    raise TypeError(f"expected a pyarrow.Table or pandas.DataFrame, got {type(data).__name__}")


def _compatible(actual: pa.DataType, expected: pa.DataType) -> bool:
    """Whether a column of type ``actual`` can be losslessly read as ``expected``."""
    if actual.equals(expected):
        return True
    if pa.types.is_integer(expected):
        return pa.types.is_integer(actual)
    if pa.types.is_floating(expected):
        return pa.types.is_floating(actual) or pa.types.is_integer(actual)
    if pa.types.is_string(expected) or pa.types.is_large_string(expected):
        return pa.types.is_string(actual) or pa.types.is_large_string(actual)
    if pa.types.is_fixed_size_list(expected):
        return (
            pa.types.is_fixed_size_list(actual)
            and actual.list_size == expected.list_size
            and _compatible(actual.value_type, expected.value_type)
        ) or (pa.types.is_list(actual) or pa.types.is_large_list(actual)) and _compatible(
            actual.value_type, expected.value_type
        )
    if pa.types.is_list(expected) or pa.types.is_large_list(expected):
        return (
            pa.types.is_list(actual) or pa.types.is_large_list(actual) or pa.types.is_fixed_size_list(actual)
        ) and _compatible(actual.value_type, expected.value_type)
    if pa.types.is_boolean(expected):
        return pa.types.is_boolean(actual)
    return False


def _fmt(value: object) -> str:
    """repr of a cell value without numpy's type wrapper (``101.0``, not ``np.float64(101.0)``)."""
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    return repr(value)


def validate(data: pa.Table | pd.DataFrame, contract: Contract | str, *, source: str = "") -> pa.Table:
    """Check a table against a contract; return it unchanged if it conforms.

    Parameters
    ----------
    data : pyarrow.Table or pandas.DataFrame
    contract : Contract or str
        The contract or its name (``"keypoints"``, ``"windows"``, ``"segments"``, ``"cohort"``,
        ``"hurdle_results"``).
    source : str, optional
        Where the table came from (a path), put at the start of error messages.

    Returns
    -------
    pyarrow.Table

    Raises
    ------
    ContractError
        On the first problem found, in this order: missing column, unexpected column, wrong type,
        null in a non-nullable column, value rule, wrong list length, duplicate key. The message names
        the column and the (0-based) row.
    """
    c = CONTRACTS[contract] if isinstance(contract, str) else contract
    table = _to_table(data)
    where = f"{source}: " if source else ""
    prefix = f"{where}{c.name} table"

    missing = [n for n in c.schema.names if n not in table.column_names]
    if missing:
        raise ContractError(f"{prefix}: missing column {missing[0]!r} (required: {', '.join(c.schema.names)})")
    if not c.allow_extra:
        extra = [n for n in table.column_names if n not in c.schema.names]
        if extra:
            raise ContractError(f"{prefix}: unexpected column {extra[0]!r}")

    for f in c.schema:
        col = table.column(f.name)
        if pa.types.is_null(col.type) and f.nullable:
            continue  # an all-missing optional column (e.g. every note empty)
        if not _compatible(col.type, f.type):
            raise ContractError(f"{prefix}: column {f.name!r} has type {col.type}, expected {f.type}")
        if not f.nullable and col.null_count:
            row = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
            raise ContractError(f"{prefix}: column {f.name!r} row {row}: missing value (null/NaN)")
        if pa.types.is_floating(f.type) and not f.nullable:
            vals = col.to_numpy(zero_copy_only=False).astype(np.float64)
            bad = np.flatnonzero(~np.isfinite(vals))
            if bad.size:
                raise ContractError(f"{prefix}: column {f.name!r} row {int(bad[0])}: value {_fmt(vals[bad[0]])} is not finite")
        if pa.types.is_fixed_size_list(f.type):
            lengths = pa.compute.list_value_length(col).to_numpy(zero_copy_only=False)
            bad = np.flatnonzero(lengths != f.type.list_size)
            if bad.size:
                raise ContractError(
                    f"{prefix}: column {f.name!r} row {int(bad[0])}: list has {int(lengths[bad[0]])} values, "
                    f"expected {f.type.list_size}"
                )
            flat = pa.compute.list_flatten(col).to_numpy(zero_copy_only=False).astype(np.float64)
            bad = np.flatnonzero(~np.isfinite(flat))
            if bad.size:
                raise ContractError(
                    f"{prefix}: column {f.name!r} row {int(bad[0]) // f.type.list_size}: non-finite value"
                )

    for rule in c.rules:
        col = table.column(rule.column)
        valid = ~col.is_null().to_numpy(zero_copy_only=False)
        vals = col.to_numpy(zero_copy_only=False)
        ok = np.ones(len(vals), dtype=bool)
        if valid.any():
            ok[valid] = rule.ok(np.asarray(vals[valid]))
        bad = np.flatnonzero(~ok)
        if bad.size:
            r = int(bad[0])
            raise ContractError(f"{prefix}: column {rule.column!r} row {r}: value {_fmt(vals[r])} is not {rule.what}")

    if c.unique:
        keys = table.select(list(c.unique)).to_pandas()
        dup = keys.duplicated(keep=False)
        if dup.any():
            rows = np.flatnonzero(dup.to_numpy())
            key = ", ".join(f"{k}={_fmt(keys.iloc[rows[0]][k])}" for k in c.unique)
            raise ContractError(
                f"{prefix}: duplicate rows for ({key}) at rows {rows[0]} and {rows[1]}; "
                f"({', '.join(c.unique)}) must be unique"
            )
    return table


def conform(data: pa.Table | pd.DataFrame, contract: Contract | str, *, source: str = "") -> pa.Table:
    """Validate, then cast the required columns to the contract's exact types (extra columns kept).

    Required columns come first in contract order, extra columns after them.
    """
    c = CONTRACTS[contract] if isinstance(contract, str) else contract
    table = validate(data, c, source=source)
    arrays, fields = [], []
    for f in c.schema:
        arrays.append(table.column(f.name).cast(f.type))
        fields.append(f)
    for name in table.column_names:
        if name not in c.schema.names:
            arrays.append(table.column(name))
            fields.append(table.schema.field(name))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


# --------------------------------------------------------------------------------------------------
# bouts.parquet (aggregation stage): one row per participant x action, beside cohort.parquet
# --------------------------------------------------------------------------------------------------
BOUTS = Contract(
    name="bouts",
    version=1,
    schema=pa.schema(
        [
            pa.field("participant_id", pa.string(), nullable=False),
            pa.field("group", pa.string(), nullable=False),
            pa.field("action_id", pa.int16(), nullable=False),
            pa.field("action", pa.string(), nullable=False),
            pa.field("bouts", pa.int64(), nullable=False),  # final segments of the action
            pa.field("total_s", pa.float64(), nullable=False),  # summed bout duration
            pa.field("mean_bout_s", pa.float64(), nullable=True),  # null when no bout
            pa.field("median_bout_s", pa.float64(), nullable=True),
            pa.field("latency_s", pa.float64(), nullable=True),  # start of the first bout
        ]
    ),
    rules=(
        Rule("action_id", _nonneg, ">= 0"),
        Rule("bouts", _nonneg, ">= 0"),
        Rule("total_s", _nonneg, ">= 0"),
        Rule("mean_bout_s", lambda v: v > 0, "> 0"),
        Rule("median_bout_s", lambda v: v > 0, "> 0"),
        Rule("latency_s", _nonneg, ">= 0"),
    ),
    unique=("participant_id", "action"),
)

# --------------------------------------------------------------------------------------------------
# exclusions.parquet (aggregation stage): failed videos and participants left out of the cohort
# --------------------------------------------------------------------------------------------------
EXCLUSIONS = Contract(
    name="exclusions",
    version=1,
    schema=pa.schema(
        [
            pa.field("participant_id", pa.string(), nullable=False),
            pa.field("group", pa.string(), nullable=False),
            pa.field("video_id", pa.string(), nullable=True),  # null for a participant-level row
            pa.field("scope", pa.string(), nullable=False),  # "video" | "participant"
            pa.field("reason", pa.string(), nullable=False),
        ]
    ),
    rules=(Rule("scope", lambda v: np.isin(v, ["video", "participant"]), "'video' or 'participant'"),),
)

CONTRACTS.update({c.name: c for c in (BOUTS, EXCLUSIONS)})
__all__ += ["BOUTS", "EXCLUSIONS"]
