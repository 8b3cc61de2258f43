"""Calibration under a simulated null and recovery of planted effects (simulator -> analysis)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from analysis.calibration import IntensityCell, ProbabilityCell, intensity_pvalues, probability_pvalues, rejection_summary
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


# --------------------------------------------------------------------------------------------------
# issue 28: the intensity test's size at small n (a fixed seed set; the full grid is
# bench/bench_hurdle_calibration.py and its table is in docs/hurdle.md)
# --------------------------------------------------------------------------------------------------
SIZE_CELLS = (
    IntensityCell(12, "equal", "skewed", quantised=True),  # the cohort: ~12 engagers, skewed, frames
    IntensityCell(12, "paper", "skewed", quantised=True),  # 120/46/124
    IntensityCell(20, "paper", "skewed", quantised=False),
    IntensityCell(40, "equal", "mild", quantised=False),
)


@pytest.mark.slow
@pytest.mark.parametrize("i", range(len(SIZE_CELLS)))
def test_default_intensity_test_holds_its_size(i):
    """Null rejection at 0.05 within 2.5 Monte-Carlo se of 0.05 for the default, on cells from its
    smallest testable engagers up; the method before issue 28 (hc0-z) over-rejects on the same data."""
    cell = SIZE_CELLS[i]
    default = HurdleConfig().intensity_se
    assert cell.engagers >= HurdleConfig().min_engaged_test
    P = intensity_pvalues(cell, 1000, seed=2800 + i, methods=(default, "hc0-z"), resamples=999)
    rate, se, with_p = rejection_summary(P[default], 0.05)
    assert with_p == 1.0
    assert abs(rate - 0.05) <= 2.5 * se, (cell.label(), rate, se)
    old, old_se, _ = rejection_summary(P["hc0-z"], 0.05)
    if cell.shape == "skewed":
        assert old - 0.05 > 2.5 * old_se, (cell.label(), old)


@pytest.mark.slow
def test_probability_part_size_at_small_n():
    """The logistic part at small n, by the analysis' own fits (issue 28, item 3).

    Rare engagement (p = 0.15, 8 in the smallest group of 120/46/124, often separated: Firth's penalised
    LR) is conservative, within the band or below it. Balanced groups of 12 with p = 0.5 (ML Wald z)
    over-reject a little: 0.066 here (0.059 in the bench's grid), above the 2.5-se band but below 0.08;
    docs/hurdle.md reports it as found.
    """
    rare, se_rare, _ = rejection_summary(probability_pvalues(ProbabilityCell(8, "paper", 0.15), 1000, seed=2900), 0.05)
    assert rare <= 0.05 + 2.5 * se_rare, (rare, se_rare)
    half, se_half, _ = rejection_summary(probability_pvalues(ProbabilityCell(12, "equal", 0.5), 1000, seed=2900), 0.05)
    assert 0.05 - 2.5 * se_half <= half < 0.08, (half, se_half)
