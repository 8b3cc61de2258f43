"""Units of the hurdle analysis: correction families, action selection, tables, descriptives, simulator."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests

from analysis.cohort import CohortError, select_actions, validate_cohort
from analysis.config import HurdleConfig
from analysis.correction import adjust_pvalues
from analysis.descriptives import describe_groups
from analysis.plots import stars
from analysis.simulate import SimConfig, simulate_cohort, truth_table
from analysis.tables import format_p, publication_table, to_latex, to_markdown


def _results(seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for a in ("x", "y", "z"):
        for c in ("A vs B", "A vs C", "B vs C"):
            for part in ("probability", "intensity"):
                rows.append({"action": a, "contrast": c, "part": part, "p": rng.uniform(0, 0.2)})
    df = pd.DataFrame(rows)
    df.loc[4, "p"] = np.nan  # a non-estimable test
    return df


@pytest.mark.parametrize("method", ["fdr_bh", "holm", "bonferroni", "fdr_by"])
@pytest.mark.parametrize("family,key", [("part", "part"), ("all", None), ("action", "action"), ("contrast", "contrast")])
def test_adjust_pvalues_families(method, family, key):
    df = _results()
    adj = adjust_pvalues(df, method, family)
    assert np.isnan(adj[4])
    groups = [df.index] if key is None else df.groupby(key).groups.values()
    for idx in groups:
        sub = df.loc[idx].dropna(subset=["p"])
        np.testing.assert_allclose(adj[sub.index], multipletests(sub["p"], method=method)[1])


def test_part_family_is_30_tests_for_10_actions_x_3_contrasts():
    rng = np.random.default_rng(1)
    df = pd.DataFrame([{"action": f"a{i}", "contrast": c, "part": part, "p": rng.uniform()} for i in range(10)
                       for c in ("1", "2", "3") for part in ("probability", "intensity")])  # fmt: skip
    adj = adjust_pvalues(df, "bonferroni", "part")
    np.testing.assert_allclose(adj, np.minimum(df["p"] * 30, 1))
    assert adjust_pvalues(df, "none", "part").equals(df["p"])


def test_select_actions_by_engaged_share_or_mean():
    rows = []
    # a: many engagers with little time; b: few engagers with a lot of time
    for i in range(10):
        rows.append({"participant_id": f"p{i}", "action": "a", "percent_time": 1.0 if i < 8 else 0.0})
        rows.append({"participant_id": f"p{i}", "action": "b", "percent_time": 50.0 if i < 3 else 0.0})
        rows.append({"participant_id": f"p{i}", "action": "c", "percent_time": 0.0})
    df = pd.DataFrame(rows).assign(action_id=0, group="A", observed_s=1.0)
    assert select_actions(df, HurdleConfig(top_actions=2)) == ["a", "b"]
    assert select_actions(df, HurdleConfig(top_actions=1, rank_by="mean")) == ["b"]
    assert select_actions(df, HurdleConfig(top_actions=0)) == ["a", "b", "c"]
    assert select_actions(df, HurdleConfig(actions=("c", "a"))) == ["c", "a"]
    with pytest.raises(CohortError, match="'q' not in the cohort"):
        select_actions(df, HurdleConfig(actions=("q",)))
    assert HurdleConfig(top_actions=2, rank_by="mean").selection == "top 2 actions by mean percent time"


def test_validate_cohort_api_raises_cohort_error():
    df, _ = simulate_cohort(SimConfig(groups=(("ASD", 5), ("TDC", 5)), n_actions=2, effects=()))
    assert len(validate_cohort(df, HurdleConfig(groups=("ASD", "TDC")))) == 20
    with pytest.raises(CohortError, match="unknown group 'TDC'"):
        validate_cohort(df, HurdleConfig(groups=("ASD", "PSY")))
    bad = df.assign(percent_time=df["percent_time"].astype(str))
    with pytest.raises(CohortError, match="must be numeric"):
        validate_cohort(bad, HurdleConfig(groups=("ASD", "TDC")))


def test_format_p_and_stars():
    assert [format_p(p) for p in (0.0004, 0.004, 0.0541, 0.25, 1.0, np.nan)] == ["<.001", ".004", ".054", ".250", "1.000", "—"]
    assert [stars(p) for p in (0.0005, 0.005, 0.03, 0.2, np.nan)] == ["***", "**", "*", "", ""]


def test_publication_table_is_sorted_by_p_and_escaped():
    res = pd.DataFrame({
        "action": ["a_b", "c", "d", "e"], "contrast": ["A vs B"] * 4, "part": ["intensity", "probability", "intensity", "probability"],
        "direction": ["A < B", "A > B", "A > B", None], "effect": [0.37, 3.0, 1.2, np.nan],
        "p": [0.0001, 0.002, 0.3, np.nan], "p_adj": [0.004, 0.054, 0.5, np.nan],
    })  # fmt: skip
    t = publication_table(res, k=10)
    assert t.values.tolist() == [["a_b", "A < B", "%", "0.37", "<.001", ".004"], ["c", "A > B", "Prob.", "3.00", ".002", ".054"],
                                 ["d", "A > B", "%", "1.20", ".300", ".500"]]  # fmt: skip
    assert len(publication_table(res, k=2)) == 2
    tex = to_latex(t, "100% & more")
    assert r"a\_b" in tex and r"100\% \& more" in tex and "$<$.001" in tex
    assert "| a_b | A < B | % | 0.37 | <.001 | .004 |" in to_markdown(t, "cap")


def test_describe_groups():
    df = pd.DataFrame({"action": "a", "group": ["A"] * 4 + ["B"] * 2, "percent_time": [0, 2, 4, 9, 0, 0]})
    d = describe_groups(df, ["a"], ["A", "B"])
    a = d.iloc[0]
    assert (a.n, a.n_engaged, a.pct_engaged, a.mean_percent_engaged, a.median_percent_engaged) == (4, 3, 75.0, 5.0, 4.0)
    assert d.iloc[1].n_engaged == 0 and np.isnan(d.iloc[1].mean_percent_engaged)


def test_simulator_shapes_truth_and_reproducibility():
    cfg = SimConfig(n_actions=5, covariates=True, seed=3)
    a, truth = simulate_cohort(cfg)
    b, _ = simulate_cohort(cfg)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 290 * 5 and a["participant_id"].nunique() == 290
    assert a.groupby("group")["participant_id"].nunique().to_dict() == {"ASD": 120, "PSY": 46, "TDC": 124}
    assert a["percent_time"].between(0, 100).all() and (a["percent_time"] > 0).any()
    assert set(a["action"]) == {"retracting feet", "shaking legs", "turning head", "head up", "shaking body"}
    assert len(truth) == 5 * 3 * 2 and truth["planted"].sum() == 8
    r = truth[(truth.action == "retracting feet") & (truth.part == "intensity") & (truth.contrast == "ASD vs PSY")].iloc[0]
    assert r.true_effect == pytest.approx(1 / 2.5) and r.direction == "ASD < PSY"
    null = truth_table(SimConfig(effects=(), n_actions=3))
    assert not null["planted"].any() and null["direction"].isna().all()


def test_table_v_prob_rows_are_reproduced_by_bh_over_30_tests():
    """The paper's Table V, Prob. rows: BH over one part's 30 tests (10 actions x 3 contrasts).

    Raw p chosen consistent with the printed p (.002 .004 .007 .008 .019 .020) give exactly the
    printed p_adj (.054 .054 .058 .058 .102 .102); 24 further tests with p > .05 fill the family.
    """
    printed_p = [".002", ".004", ".007", ".008", ".019", ".020"]
    printed_adj = [".054", ".054", ".058", ".058", ".102", ".102"]
    raw = [0.0018, 0.0036, 0.0070, 0.0077, 0.019, 0.0204]
    rest = list(np.linspace(0.06, 0.95, 24))
    acts = [f"a{i}" for i in range(10)]
    rows = [{"action": a, "contrast": c, "part": "probability"} for a in acts for c in ("ASD vs PSY", "ASD vs TDC", "PSY vs TDC")]
    df = pd.DataFrame(rows).assign(p=raw + rest)
    # the other part must not change this part's adjustment
    df = pd.concat([df, df.assign(part="intensity", p=0.001)], ignore_index=True)
    adj = adjust_pvalues(df, "fdr_bh", "part")
    assert [format_p(p) for p in df["p"][:6]] == printed_p
    assert [format_p(p) for p in adj[:6]] == printed_adj
    # the same p-values in a family of 60 (both parts together) would not match the paper
    assert [format_p(p) for p in adjust_pvalues(df, "fdr_bh", "all")[:6]] != printed_adj


def test_non_estimable_tests_do_not_count_in_the_family_size():
    df = pd.DataFrame({"action": "x", "contrast": list("abcdef"), "part": "probability",
                       "p": [0.01, 0.02, 0.03, np.nan, np.nan, np.nan]})  # fmt: skip
    adj = adjust_pvalues(df, "bonferroni", "part")
    np.testing.assert_allclose(adj[:3], [0.03, 0.06, 0.09])  # m = 3, not 6
    assert adj[3:].isna().all()
    bh = adjust_pvalues(df, "fdr_bh", "part")
    np.testing.assert_allclose(bh[:3], [0.03, 0.03, 0.03])
    # an all-NaN family is fine and stays NaN
    assert adjust_pvalues(df.assign(p=np.nan), "holm", "part").isna().all()


def test_plot_file_names_from_action_names_with_slashes(tmp_path):
    from analysis.outputs import slug

    assert slug("head up/down") == "head_up_down" and slug("../etc/passwd") == "etc_passwd" and slug("/") == "action"
    rows = [{"participant_id": f"p{i}", "group": "AB"[i % 2], "action_id": j, "action": a, "percent_time": float((i * 7 + j) % 5) * 3,
             "observed_s": 10.0} for i in range(24) for j, a in enumerate(("head up/down", "head up down"))]  # fmt: skip
    df = pd.DataFrame(rows)
    from analysis.config import OutputConfig
    from analysis.hurdle import hurdle_analysis
    from analysis.outputs import write_outputs

    cfg = HurdleConfig(groups=("A", "B"), min_engaged=2)
    written = write_outputs(hurdle_analysis(df, cfg), df, cfg, OutputConfig(formats=("png",)), tmp_path / "o")
    plots = sorted(p.name for p in (tmp_path / "o" / "plots").iterdir())
    assert plots == ["head_up_down.png", "head_up_down_.png"]  # distinct files, inside plots/
    assert all((tmp_path / "o") in p.parents for p in written)


def test_group_counts_agree_across_results_descriptives_and_separation():
    """One counting function behind the results table, descriptives.csv and the separation check."""
    from analysis.design import build_design
    from analysis.descriptives import group_counts
    from analysis.hurdle import hurdle_analysis
    from analysis.logistic import separation_reason

    cfg = SimConfig(groups=(("ASD", 25), ("PSY", 12), ("TDC", 25)), n_actions=4, seed=5)
    cohort = simulate_cohort(cfg)[0]
    hc = HurdleConfig(top_actions=0)
    res = hurdle_analysis(cohort, hc)
    desc = describe_groups(cohort, list(res["action"].unique()), hc.groups).set_index(["action", "group"])
    for r in res.itertuples():
        for g, n, e, m in ((r.group_a, r.n_a, r.engaged_a, r.mean_a), (r.group_b, r.n_b, r.engaged_b, r.mean_b)):
            d = desc.loc[(r.action, g)]
            assert (n, e) == (d.n, d.n_engaged) and np.allclose(m, d.mean_percent_engaged, equal_nan=True)
            sub = cohort[(cohort.action == r.action) & (cohort.group == g)]["percent_time"]
            assert (n, e) == (len(sub), int((sub > 0).sum()))  # against pandas directly
    c = group_counts(["A", "A", "B", "B"], [0.0, 1.0, 0.0, 0.0], ["A", "B", "C"])
    assert (c["A"].n, c["A"].engaged, c["B"].engaged, c["C"].n) == (2, 1, 0, 0) and np.isnan(c["C"].pct_engaged)
    df = pd.DataFrame({"group": ["A", "A", "B", "B"]})
    assert separation_reason(build_design(df, ["A", "B"]), np.array([0.0, 1.0, 0.0, 0.0])) == "B: no engagers"
