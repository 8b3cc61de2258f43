"""Small cohort builders shared by the tests of the hurdle analysis (tests/test_analysis_*.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def make_cohort(spec: dict[str, list[float]], action: str = "nodding", action_id: int = 9, **covariates) -> pd.DataFrame:
    """A one-action cohort from {group: [percent_time per participant]}; covariates as per-participant lists."""
    rows = []
    k = 0
    for g, values in spec.items():
        for v in values:
            rows.append({"participant_id": f"p{k:04d}", "group": g, "action_id": action_id, "action": action,
                         "percent_time": float(v), "observed_s": 150.0})  # fmt: skip
            k += 1
    df = pd.DataFrame(rows)
    for name, vals in covariates.items():
        df[name] = np.asarray(vals)
    return df


def two_actions(df: pd.DataFrame, other: str = "shaking head", other_id: int = 10, seed: int = 0) -> pd.DataFrame:
    """Add a second, unremarkable action to a one-action cohort."""
    rng = np.random.default_rng(seed)
    extra = df.copy()
    extra["action"] = other
    extra["action_id"] = other_id
    extra["percent_time"] = np.where(rng.random(len(df)) < 0.5, rng.uniform(1, 20, len(df)), 0.0)
    return pd.concat([df, extra], ignore_index=True)
