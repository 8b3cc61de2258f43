"""End to end on planted ground truth: simulate -> pose -> recognition -> read-out -> hurdle statistics.

A simulated cohort (three groups, planted group effects on the probability of any engagement and on
the intensity among engagers, ten null actions) goes through the real stages, each by its plain
Python entry point: MediaPipe pose on the frames the demo checkpoint's window plan samples
(:func:`pipeline.pose.run_pose`), recognition with the shipped demo model
(:func:`pipeline.recognize.recognize_videos`), the read-out (:func:`pipeline.aggregate.aggregate` +
:func:`~pipeline.aggregate.write_outputs`), agreement with the per-frame truth
(:mod:`pipeline.agreement`), detection mAP (:func:`pipeline.detection_eval.evaluate_detections`) and
the hurdle analysis (:func:`analysis.hurdle.hurdle_analysis`, BH per hurdle part over all simulated
actions x 3 contrasts). Measured and asserted (numbers printed; run with ``-s`` to see them):

- per action, MAE of percent time vs truth <= :data:`MAX_MAE_PP` percentage points (the goal, 2;
  measured worst 1.72, turning head, which the demo model rarely recognises; mean 0.68);
- detection average mAP over tIoU 0.1-0.9 >= :data:`MIN_AVERAGE_MAP` (the goal, 0.6; measured 0.709:
  0.89 at tIoU 0.1, 0.16 at 0.9);
- every planted effect (planted group vs the reference group, each part) estimated in the planted
  direction and found at p_adj < 0.05 (measured: all five; the weakest, shaking legs, p_adj 0.017);
- null actions: at most :data:`MAX_NULL_DISCOVERIES` discoveries, or 5 % of all discoveries if more
  (BH at 5 %; measured 1 of 60 tests).

The read-out is the demo checkpoint's own (interpolated window scores, per-class thresholds and a
0.2 s minimum duration chosen on its calibration recordings, never on this cohort).
The test is seeded end to end (simulator, pose on CPU, model in eval mode), so the numbers repeat.
"""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pandas as pd
import pytest

from analysis.agreement.hook import run_validation
from analysis.agreement.verdicts import VERDICTS
from analysis.config import HurdleConfig
from analysis.hurdle import hurdle_analysis
from analysis.misclassification import corrected_cohort, estimate_rates, read_validation
from model.checkpoint import load_checkpoint
from pipeline.artifacts import write_artifact
from pipeline.codings.contract import CODING_EVENTS, CODING_SESSIONS
from pipeline.agreement import percent_time_agreement, read_frame_truth
from pipeline.aggregate import aggregate, write_outputs
from pipeline.detection_eval import evaluate_detections
from pipeline.manifest import read_manifest
from pipeline.pose import PoseConfig, keypoints_path, make_jobs, run_pose
from pipeline.readout import ReadoutConfig
from pipeline.recognize import RecognizeJob, RecognizeOptions, recognize_videos
from recipes.demo_model import demo_checkpoint_path, demo_readout
from simulator.motions import ACTIONS
from simulator.coders import CoderConfig, read_cohort_truth, simulated_coders
from simulator.recording import ActionRates, CohortConfig, write_cohort

pytestmark = pytest.mark.slow

GROUPS = {"ASD": 24, "PSY": 24, "TDC": 24}
SECONDS = 30.0
WORKERS = 2
READOUT = demo_readout()  # calibrated on the demo model's calibration recordings (seed 3003), not on this cohort
PLANTED = {  # strong enough to be found with 24 per group after BH over 45 tests per part
    "shaking legs": ActionRates("shaking legs", p_engaged=0.15, mean_share=0.06, prob_effects={"ASD": 3.5}),
    "nodding": ActionRates("nodding", p_engaged=0.85, mean_share=0.06, prob_effects={"ASD": -3.5}),
    "crossing arms": ActionRates("crossing arms", p_engaged=0.15, mean_share=0.06, prob_effects={"PSY": 3.5}),
    "touching nose": ActionRates("touching nose", p_engaged=0.85, mean_share=0.04, intensity_effects={"PSY": 1.5}),
    "patting legs": ActionRates("patting legs", p_engaged=0.85, mean_share=0.04, intensity_effects={"ASD": 1.5}),
}
RATES = tuple(PLANTED.get(a, ActionRates(a, p_engaged=0.4, mean_share=0.05)) for a in ACTIONS)

MAX_MAE_PP = 2.0  # the goal; measured 1.72
MIN_AVERAGE_MAP = 0.6  # the goal; measured 0.709
MAX_NULL_DISCOVERIES = 1


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    sim, out = root / "sim", root / "out"
    config = CohortConfig(groups=GROUPS, seconds=SECONDS, rates=RATES, seed=7)
    times = {}
    t0 = time.perf_counter()
    write_cohort(config, sim, workers=WORKERS)
    times["render"] = time.perf_counter() - t0

    ckpt = load_checkpoint(demo_checkpoint_path())
    manifest = read_manifest(sim / "manifest.csv")
    videos = [sim / v for v in manifest.videos["video"]]
    t0 = time.perf_counter()
    pose = run_pose(make_jobs(videos, out / "pose", PoseConfig(frames="sampled", plan=ckpt.plan)), workers=WORKERS)
    times["pose"] = time.perf_counter() - t0
    assert all(r.status == "ok" for r in pose), [r.error for r in pose if r.status != "ok"]

    t0 = time.perf_counter()
    jobs = [RecognizeJob(item_id=v.stem, source=str(v), out_dir=str(out / "recognize"),
                         keypoints=str(keypoints_path(out / "pose", v.stem))) for v in videos]
    rec, _ = recognize_videos(jobs, ckpt, RecognizeOptions(batch_size=64, workers=1))
    times["recognition"] = time.perf_counter() - t0
    assert all(r.status == "ok" for r in rec), [r.error for r in rec if r.status != "ok"]

    t0 = time.perf_counter()
    result = aggregate(manifest, out / "recognize" / "windows", READOUT)
    truth = read_frame_truth(sim / "truth" / "frames")
    agreement = percent_time_agreement(truth, manifest, result.readouts, result.classes)
    write_outputs(result, out / "readout", agreement=agreement)
    times["read-out"] = time.perf_counter() - t0
    detection = evaluate_detections(pd.read_csv(sim / "truth" / "detections.csv"),
                                    pd.read_csv(out / "readout" / "detections.csv"))
    t0 = time.perf_counter()
    cohort = pd.read_parquet(out / "readout" / "cohort.parquet")
    results = hurdle_analysis(cohort, HurdleConfig(groups=tuple(GROUPS), top_actions=None))
    times["hurdle"] = time.perf_counter() - t0
    effects = pd.read_csv(sim / "truth" / "effects.csv")
    print(f"\nend to end: {sum(GROUPS.values())} participants x {SECONDS:g} s, stage wall times "
          + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))
    return {"agreement": agreement, "detection": detection, "results": results, "effects": effects,
            "cohort": cohort, "truth_pt": pd.read_parquet(sim / "truth" / "percent_time.parquet"), "result": result,
            "sim": sim, "out": out}


def test_percent_time_error_per_action(e2e):
    ag = e2e["agreement"]
    print("\nper action: MAE (pp), bias (pp), mean true %, mean detected %")
    for row in ag.itertuples():
        print(f"  {row.action:34s} {row.mae_pp:5.2f} {row.bias_pp:+6.2f} {row.mean_true_pct:6.2f} {row.mean_pred_pct:6.2f}")
    print(f"  worst MAE {ag['mae_pp'].max():.2f} pp, mean {ag['mae_pp'].mean():.2f} pp")
    assert len(ag) == len(ACTIONS)
    assert (ag["n_participants"] == sum(GROUPS.values())).all()
    worst = ag.loc[ag["mae_pp"].idxmax()]
    assert worst["mae_pp"] <= MAX_MAE_PP, f"{worst['action']}: MAE {worst['mae_pp']:.2f} pp > {MAX_MAE_PP}"


def test_cohort_percent_time_matches_the_agreement_table(e2e):
    """Independent check of the agreement numbers: cohort.parquet vs truth/percent_time.parquet."""
    merged = e2e["cohort"].merge(e2e["truth_pt"], on=["participant_id", "action"], suffixes=("", "_true"))
    assert len(merged) == sum(GROUPS.values()) * len(ACTIONS)
    mae = (merged["percent_time"] - merged["percent_time_true"]).abs().groupby(merged["action"]).mean()
    ag = e2e["agreement"].set_index("action")["mae_pp"]
    # the agreement counts only frames with a usable pose; with the person found in (nearly) every
    # frame the two agree closely
    assert np.allclose(mae.sort_index(), ag.sort_index(), atol=0.3)


def test_detection_average_map(e2e):
    d = e2e["detection"]
    print("\ndetection mAP per tIoU: " + " ".join(f"{t:.1f}:{m:.3f}" for t, m in zip(d["tiou_thresholds"], d["map_per_tiou"]))
          + f"  average {d['average_map']:.3f} ({d['n_ground_truth']} true events, {d['n_predictions']} detections)")
    assert not d["classes_without_ground_truth"] or sum(d["classes_without_ground_truth"].values()) <= 2
    assert d["average_map"] >= MIN_AVERAGE_MAP


def _row(results: pd.DataFrame, action: str, part: str, g: str, ref: str) -> tuple[pd.Series, int]:
    r = results[(results["action"] == action) & (results["part"] == part)
                & (((results["group_a"] == g) & (results["group_b"] == ref))
                   | ((results["group_a"] == ref) & (results["group_b"] == g)))]
    assert len(r) == 1, (action, part, g, ref)
    row = r.iloc[0]
    return row, (1 if row["group_a"] == g else -1)


def test_planted_effects_found_in_their_direction(e2e):
    results, effects = e2e["results"], e2e["effects"]
    print("\nplanted effects: action, part, group vs reference, planted log OR, estimated log OR, p_adj")
    assert len(effects) == 5
    wrong_way, misses = [], []
    for eff in effects.itertuples():
        row, sign = _row(results, eff.action, eff.part, eff.group, eff.reference)
        est = sign * row["estimate"]
        print(f"  {eff.action:16s} {eff.part:11s} {eff.group} vs {eff.reference}  {eff.log_or:+.2f}  {est:+.2f}  "
              f"p_adj={row['p_adj']:.2g}")
        if not (np.isfinite(est) and np.sign(est) == np.sign(eff.log_or)):
            wrong_way.append(f"{eff.action} {eff.part} {eff.group}: estimate {est:+.2f}")
        elif not row["p_adj"] < 0.05:
            misses.append(f"{eff.action} {eff.part} {eff.group}: estimate {est:+.2f}, p_adj {row['p_adj']:.3g}")
    assert not wrong_way, wrong_way
    assert not misses, misses


def test_null_actions_no_more_false_discoveries_than_the_fdr_allows(e2e):
    results, effects = e2e["results"], e2e["effects"]
    planted = set(effects["action"])
    null = results[~results["action"].isin(planted)]
    found = null[null["p_adj"] < 0.05]
    discoveries = int((results["p_adj"] < 0.05).sum())
    print(f"\nnull actions: {null['action'].nunique()} actions, {len(null)} tests, {len(found)} discoveries "
          f"(of {discoveries} in all)" + "".join(f"\n  {r.action} {r.part} {r.contrast} p_adj={r.p_adj:.3g}"
                                                 for r in found.itertuples()))
    assert null["action"].nunique() == len(ACTIONS) - len(planted)
    assert len(found) <= max(MAX_NULL_DISCOVERIES, math.floor(0.05 * discoveries))


CODED_PER_GROUP = 4  # 12 coded participants: too few per group for per-group rates, so they are pooled
CODERS = CoderConfig(coders=3, perfect=False, seed=0)  # majority consensus of 3 jittered coders (0.2 s, 10 % misses)


def simulated_validation(sim, run, coded_per_group: int = CODED_PER_GROUP):
    """The first ``coded_per_group`` participants of each group coded by the simulated coders
    (``simulator.coders``) into ``run/codings``, then the agreement step (``run/validation``)."""
    truth, sessions, _, _ = read_cohort_truth(sim)
    manifest = read_manifest(sim / "manifest.csv", check_videos=False)
    people = manifest.participants
    coded = [p for _, d in people.groupby("group", sort=True) for p in d["participant_id"].head(coded_per_group)]
    sessions = sessions[sessions["participant_id"].isin(coded)].reset_index(drop=True)
    events, sessions, _ = simulated_coders(truth[truth["video_id"].isin(sessions["video_id"])], sessions, CODERS)
    write_artifact(events, run / "codings" / "events.parquet", contract=CODING_EVENTS, stage="sim-coders")
    write_artifact(sessions, run / "codings" / "sessions.parquet", contract=CODING_SESSIONS, stage="sim-coders")
    copy = pd.read_csv(sim / "manifest.csv", dtype=str, keep_default_na=False)  # the run's manifest, absolute paths
    copy["video"] = [str((sim / v).resolve()) for v in copy["video"]]
    copy.to_csv(run / "manifest.csv", index=False)
    run_validation(run)
    return coded


def _errors_vs_truth(tables: dict[str, pd.DataFrame], truth: pd.DataFrame, coded) -> pd.DataFrame:
    """Per action, bias and MAE (pp) of each named cohort table against the truth, over the participants
    not coded; columns ``(name, "bias" | "mae")``."""
    parts = {}
    for name, table in tables.items():
        m = table.merge(truth, on=["participant_id", "action"], suffixes=("", "_true"))
        m = m[~m["participant_id"].isin(coded)]
        err = m["percent_time"] - m["percent_time_true"]
        parts[name] = pd.DataFrame({"bias": err.groupby(m["action"]).mean(), "mae": err.abs().groupby(m["action"]).mean()})
    return pd.concat(parts, axis=1)


@pytest.fixture(scope="module")
def corrected(e2e):
    """Demo model -> read-out -> simulated-coder validation of 12 participants -> ACC, PACC and ratio
    corrected percent time, per action over the 60 participants not coded: bias and MAE against the truth."""
    run = e2e["out"]
    coded = simulated_validation(e2e["sim"], run)
    vs = read_validation(run / "validation")
    assert vs.participants == 3 * CODED_PER_GROUP and vs.reference == "consensus" and vs.has_scores
    cohort = e2e["cohort"]
    fps = float(json.loads((e2e["sim"] / "config.json").read_text())["fps"])
    rates = estimate_rates(vs)  # pooled: 4 coded participants per group (< 5)
    table = _errors_vs_truth({"uncorrected": cohort, "acc": corrected_cohort(cohort, rates, "acc", frame_rate=fps),
                              "pacc": corrected_cohort(cohort, rates, "pacc", frame_rate=fps),
                              "ratio": corrected_cohort(cohort, rates, "ratio")}, e2e["truth_pt"], coded)  # fmt: skip
    r = rates.set_index("action")
    print(f"\nper action over the {cohort['participant_id'].nunique() - len(coded)} participants not coded: "
          "tpr, fpr (%), ratio R vs the coders' consensus | bias, MAE (pp) vs the truth: uncorrected | acc | pacc | ratio")
    for a, row in table.iterrows():
        print(f"  {a:34s} {r.at[a, 'tpr']:5.2f} {100 * r.at[a, 'fpr']:5.2f} {r.at[a, 'ratio']:5.2f} | "
              + " | ".join(f"{row[(m, 'bias')]:+6.2f} {row[(m, 'mae')]:5.2f}" for m in ("uncorrected", "acc", "pacc", "ratio")))
    biased = table[table[("uncorrected", "bias")].abs() > 1.0]
    print(f"  actions with |uncorrected bias| > 1 pp: {', '.join(biased.index) or 'none'}")
    return {"table": table, "biased": biased, "validation": vs, "fps": fps, "coded": coded}


def test_misclassification_correction_removes_the_bias(corrected, e2e):
    """Every action whose uncorrected bias exceeds 1 pp has a smaller bias corrected (ACC, PACC and
    ratio; seed 7: turning head, -1.50 pp, ACC -0.16, PACC -0.69, ratio -0.90), and the hurdle runs on the
    corrected tables with the same tests as the uncorrected analysis."""
    biased = corrected["biased"]
    assert len(biased)  # turning head: the demo model reads about a fifth of it
    for m in ("acc", "pacc", "ratio"):
        assert (biased[(m, "bias")].abs() < biased[("uncorrected", "bias")].abs()).all(), (m, biased)
    res = hurdle_analysis(e2e["cohort"], HurdleConfig(groups=tuple(GROUPS), top_actions=None, misclassification="acc",
                                                      imputations=20, frame_rate=corrected["fps"]),
                          validation=corrected["validation"])  # fmt: skip
    assert len(res) == len(e2e["results"]) and res["misclassification"].str.contains("12 coded participants").all()
    planted = res.merge(e2e["effects"][["action", "part"]], on=["action", "part"])
    print("\nplanted actions: action, part, contrast, estimate corrected (uncorrected), p_adj corrected (uncorrected)")
    for row in planted.itertuples():
        print(f"  {row.action:16s} {row.part:11s} {row.contrast}  {row.estimate:+.2f} ({row.estimate_uncorrected:+.2f})  "
              f"{row.p_adj:.2g} ({row.p_adj_uncorrected:.2g})")  # fmt: skip


def test_misclassification_correction_lowers_the_mae_where_the_readout_is_biased(corrected, e2e):
    """Issue 23's acceptance: the corrected percent-time MAE per action is below the uncorrected one for
    every action whose uncorrected bias exceeds 1 pp, with the ratio estimator (seed 7: turning head,
    MAE 1.80 -> 1.72 pp). ACC and PACC remove more of the bias but not the MAE (2.29 and 2.34 pp): the
    demo model reads about a fifth of turning head's frames, and dividing by tpr - fpr = 0.21 multiplies
    each participant's read-out noise about 5 times, where the ratio multiplies it by R = 2.2
    (docs/hurdle.md, "End to end"). The hurdle on the ratio-corrected tables finds every planted effect."""
    biased = corrected["biased"]
    worse = [a for a, row in biased.iterrows() if not row[("ratio", "mae")] < row[("uncorrected", "mae")]]
    assert not worse, biased
    res = hurdle_analysis(e2e["cohort"], HurdleConfig(groups=tuple(GROUPS), top_actions=None, misclassification="ratio",
                                                      imputations=20), validation=corrected["validation"])  # fmt: skip
    assert res["misclassification"].str.contains("ratio estimator").all()
    for eff in e2e["effects"].itertuples():
        row, sign = _row(res, eff.action, eff.part, eff.group, eff.reference)
        print(f"  ratio-corrected {eff.action:16s} {eff.part:11s} {eff.group} vs {eff.reference}: planted {eff.log_or:+.2f}, "
              f"{sign * row['estimate']:+.2f} (uncorrected {sign * row['estimate_uncorrected']:+.2f}), p_adj {row['p_adj']:.2g}")
        assert np.sign(sign * row["estimate"]) == np.sign(eff.log_or) and row["p_adj"] < 0.05, row


def test_ratio_on_an_uncalibrated_readout(corrected, e2e, tmp_path):
    """The same windows read out with one threshold 0.5 for every class (a model without its calibrated
    thresholds), validated on the same 12 coded participants. Every biased action (|bias| > 1 pp) that
    the read-out marks at all on the coded participants gets a lower MAE with the ratio estimator
    (seed 7: patting legs 1.70 -> 1.31, touching nose 1.26 -> 0.67; ACC 1.83 and 1.46); the two it never
    marks there (shaking head, turning head: no frame passes 0.5) have no ratio and stay as read out."""
    import os
    import shutil

    run = tmp_path / "run"
    run.mkdir()
    for name in ("recognize", "pose"):
        os.symlink(e2e["out"] / name, run / name)
    shutil.copytree(e2e["out"] / "codings", run / "codings")
    shutil.copy(e2e["out"] / "manifest.csv", run / "manifest.csv")
    uniform = ReadoutConfig.from_dict({**READOUT.to_dict(), "rule": "threshold", "thresholds": {}, "threshold": 0.5})
    write_outputs(aggregate(read_manifest(e2e["sim"] / "manifest.csv"), e2e["out"] / "recognize" / "windows", uniform),
                  run / "readout")  # fmt: skip
    run_validation(run)
    vs = read_validation(run / "validation")
    rates = estimate_rates(vs)
    cohort = pd.read_parquet(run / "readout" / "cohort.parquet")
    table = _errors_vs_truth({"uncorrected": cohort, "acc": corrected_cohort(cohort, rates, "acc", frame_rate=corrected["fps"]),
                              "ratio": corrected_cohort(cohort, rates, "ratio")}, e2e["truth_pt"], corrected["coded"])  # fmt: skip
    ratio = rates.set_index("action")["ratio"]
    biased = table[table[("uncorrected", "bias")].abs() > 1.0]
    print("\nuniform threshold 0.5, biased actions: R | bias, MAE (pp): uncorrected | acc | ratio")
    for a, row in biased.iterrows():
        print(f"  {a:16s} {ratio[a]:5.2f} | " + " | ".join(f"{row[(m, 'bias')]:+6.2f} {row[(m, 'mae')]:5.2f}"
                                                        for m in ("uncorrected", "acc", "ratio")))  # fmt: skip
    readable = biased[ratio.reindex(biased.index).notna().to_numpy()]
    assert len(readable) >= 2, biased
    assert (readable[("ratio", "mae")] < readable[("uncorrected", "mae")]).all(), readable
    unreadable = biased.index.difference(readable.index)
    assert (biased.loc[unreadable, ("ratio", "mae")] == biased.loc[unreadable, ("uncorrected", "mae")]).all()


def test_demo_model_verdicts_against_simulated_coders(corrected, e2e):
    """Issue 21's simulator proof, model side: the demo model (trained on seeds it never shares with this
    cohort) against three simulated coders on the 12 coded participants. Every action gets a verdict
    from the fixed list with its reason, the model-vs-coder rows compare with every coder, and the
    coder-vs-coder kappa of jittered coders (0.2 s boundaries, 10 % misses) is high wherever the action
    was coded at all. The measured verdicts are in docs/validation.md ("The demo model")."""
    pairs = pd.read_parquet(e2e["out"] / "validation" / "pairs.parquet")
    acts = pairs[pairs["action"] != "all"]
    model = acts[acts["pair"] == "model-coder"]
    coders = acts[acts["pair"] == "coder-coder"]
    assert model["rater_b"].nunique() == 3 and coders.groupby("action").size().eq(3).all()  # 3 coders, 3 pairs
    per_action = model.groupby("action").agg(model_kappa=("kappa", "mean"), verdict=("verdict", "first"),
                                             reason=("verdict_reason", "first"))
    per_action["coder_kappa"] = coders.groupby("action")["kappa"].mean()
    per_action["model_icc"] = model.groupby("action")["icc2_1"].mean()
    per_action["coder_icc"] = coders.groupby("action")["icc2_1"].mean()
    print("\naction: model-vs-coder kappa | coder-vs-coder kappa | model ICC(2,1) | coder ICC(2,1) | verdict")
    for a, r in per_action.iterrows():
        print(f"  {a:34s} {r.model_kappa:5.2f} | {r.coder_kappa:5.2f} | {r.model_icc:5.2f} | {r.coder_icc:5.2f} | {r.verdict}")
    counts = per_action["verdict"].value_counts()
    print("  verdicts: " + ", ".join(f"{v} {n}" for v, n in counts.items()))
    assert set(per_action["verdict"]) <= set(VERDICTS) and per_action["reason"].str.len().gt(0).all()
    # measured (seed 7, 12 coded participants): 12 within, 1 below (shaking head), 2 not enough coded
    # data (crossing arms, turning head: both coders of a pair coded them in fewer than 3 participants)
    engaged = coders.groupby("action")["engaged_both"].min()
    thin = per_action["verdict"] == VERDICTS[2]
    assert (engaged[thin.index[thin]] < 3).all() and (engaged[thin.index[~thin]] >= 3).all()
    judged = per_action[~thin]
    assert (judged["verdict"] == VERDICTS[0]).mean() >= 0.75, judged  # the demo model codes most actions like a coder
    below = judged[judged["verdict"] == VERDICTS[1]]
    assert (below["model_kappa"] < below["coder_kappa"] - 0.15).all(), below  # "below" only where clearly worse
