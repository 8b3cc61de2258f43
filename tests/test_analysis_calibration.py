"""Calibration under a simulated null and recovery of planted effects (simulator -> analysis)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from analysis.config import HurdleConfig
from analysis.hurdle import hurdle_analysis
from analysis.simulate import PlantedEffect, SimConfig, simulate_cohort

N_COHORTS = 400


def _null_cohorts() -> pd.DataFrame:
    """N_COHORTS independent null cohorts (one action each), stacked as one table with one action per cohort.

    Each cohort comes from its own simulator seed; renaming its action and participants lets a single
    hurdle_analysis call analyse all of them (every action is fitted separately, so this is the same as
    analysing the cohorts one by one, only faster).
    """
    frames = []
    for i in range(N_COHORTS):
        cfg = SimConfig(groups=(("A", 50), ("B", 50)), actions=("nodding",), effects=(), engage_range=(0.5, 0.5),
                        intensity_range=(0.1, 0.1), seed=1000 + i)  # fmt: skip
        df = simulate_cohort(cfg)[0]
        df["action"] = f"cohort{i:03d}"
        df["participant_id"] = df["participant_id"] + f"-{i}"
        frames.append(df)
    # Participants of one cohort have no rows for the other cohorts' actions, so the stacked table is
    # analysed with validate=False (the completeness check would rightly reject it).
    return pd.concat(frames, ignore_index=True)


def test_null_type_one_error_within_bounds():
    big = _null_cohorts()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = hurdle_analysis(big, HurdleConfig(groups=("A", "B"), top_actions=0, min_engaged=3), validate=False)
    assert res["action"].nunique() == N_COHORTS
    for part in ("probability", "intensity"):
        p = res.loc[res["part"] == part, "p"]
        assert p.notna().all()
        share = float((p < 0.05).mean())
        assert 0.03 <= share <= 0.07, (part, share)
        # roughly uniform: a KS-like check on deciles, loose
        assert abs(float((p < 0.5).mean()) - 0.5) < 0.08, part


def test_planted_effects_found_in_right_direction():
    """Table V-sized effects (odds ratios 0.33-2.5) in the paper's group sizes (120/46/124), with covariates.

    Over several simulated cohorts: every significant planted contrast points the right way, nearly all
    planted contrasts reach raw p < .05, estimates sit within 3 SE of the truth, and unplanted tests
    are rarely significant after correction.
    """
    effects = (
        PlantedEffect("retracting feet", "PSY", "intensity", float(np.log(2.5))),
        PlantedEffect("shaking legs", "PSY", "probability", float(np.log(1 / 3))),
        PlantedEffect("turning head", "TDC", "intensity", float(np.log(0.4))),
        PlantedEffect("head up", "TDC", "probability", float(np.log(0.4))),
    )
    found, planted_n, false_pos, null_n = 0, 0, 0, 0
    for seed in range(4):
        cfg = SimConfig(n_actions=6, effects=effects, engage_range=(0.45, 0.65), intensity_range=(0.05, 0.15),
                        seed=seed, covariates=True, age_effect=0.3, sex_effect=-0.4)  # fmt: skip
        cohort, truth = simulate_cohort(cfg)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            res = hurdle_analysis(cohort, HurdleConfig(top_actions=0, covariates=("age", "sex")))
        merged = res.merge(truth, on=["action", "contrast", "group_a", "group_b", "part"], suffixes=("", "_true"))
        assert len(merged) == len(res) == 6 * 3 * 2
        planted = merged[merged["planted"]]
        assert len(planted) == 8
        sig = planted[planted["p"] < 0.05]
        assert (sig["direction"] == sig["direction_true"]).all(), sig
        assert (np.abs(planted["estimate"] - planted["true_log_or"]) < 3 * planted["se"]).all()
        found += len(sig)
        planted_n += len(planted)
        false_pos += int((merged.loc[~merged["planted"], "p_adj"] < 0.05).sum())
        null_n += int((~merged["planted"]).sum())
    assert found / planted_n >= 0.85, found / planted_n
    assert false_pos / null_n <= 0.05
