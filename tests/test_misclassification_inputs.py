"""The inputs of the probabilistic correction (issue 23): the read-out's ``mean_score`` column and the
agreement step's ``validation/scores.parquet``, checked against hand computations from the windows;
then ``--misclassification acc`` and ``pacc`` end to end on a small run folder, and pacc recovering
planted shares and a planted log odds ratio from synthetic scores."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from agreement_fixtures import write_codings  # noqa: E402  (tests/ helper)
from analysis.agreement.hook import run_validation
from analysis.config import HurdleConfig
from analysis.hurdle import hurdle_analysis
from analysis.hurdle import main as hurdle_main
from analysis.misclassification import ValidationError, corrected_cohort, estimate_rates, read_validation
from analysis.simulate import PlantedEffect, SimConfig, simulate_cohort
from analysis.simulate_errors import ReadoutErrors, misread_cohort
from model.preprocessing import ClassList
from pipeline.aggregate import main as aggregate_main
from pipeline.artifacts import read_sidecar
from pipeline.contracts import COHORT
from windows_fixtures import write_windows  # noqa: E402

CLASSES = ClassList.from_actions(["nodding", "shaking legs", "touching nose"], background=True)
FPS = 10.0
WIN = 10  # frames per window; windows do not overlap, so a frame's score is its window's probability
N_WIN = 600  # 6000 frames = 600 s per participant
SHARES = {"ASD": (0.10, 0.30), "PSY": (0.25, 0.45), "TDC": (0.10, 0.30)}
KEYS = ["action", "contrast", "part"]


def _run_folder(root, *, per_group=8, coded_per_group=5, seed=0):
    """A run folder (manifest, windows, read-out, codings) with planted nodding.

    Each window is truly nodding with the participant's share (PSY more than the others). The model's
    nodding probability is U(0.3, 0.9) on true windows and U(0, 0.52) on the others, the rest of the mass
    on background: at the read-out's tau 0.5 it finds 2/3 of the true frames and marks 1/26 of the
    others. The first ``coded_per_group`` participants of each group are coded by one coder who codes
    the truth exactly.
    """
    rng = np.random.default_rng(seed)
    wdir = root / "recognize" / "windows"
    lines = ["participant_id,group,video"]
    events, sessions, truth = [], [], {}
    starts = np.arange(N_WIN) * WIN
    for g, (lo, hi) in SHARES.items():
        for i in range(per_group):
            pid, vid = f"{g}-{i:02d}", f"v-{g}-{i:02d}"
            lines.append(f"{pid},{g},videos/{vid}.mp4")
            on = rng.random(N_WIN) < rng.uniform(lo, hi)
            p_nod = np.where(on, rng.uniform(0.3, 0.9, N_WIN), rng.uniform(0.0, 0.52, N_WIN))
            p_nod = p_nod.astype(np.float32).astype(np.float64)  # as stored in the windows file
            probs = np.column_stack([p_nod, np.full(N_WIN, 0.02), np.full(N_WIN, 0.02), 0.96 - p_nod])
            write_windows(wdir, vid, starts, starts + WIN, probs, classes=CLASSES, fps=FPS)
            truth[pid] = {"on": on, "p_nod": p_nod, "group": g}
            if i < coded_per_group:
                sessions.append({"video_id": vid, "coder": "coder-1", "participant_id": pid, "fps": FPS,
                                 "num_frames": N_WIN * WIN})  # fmt: skip
                edges = np.flatnonzero(np.diff(np.concatenate([[0], on.astype(int), [0]])))
                for a, b in zip(edges[::2], edges[1::2]):  # runs of true windows -> one coded event each
                    events.append({"video_id": vid, "coder": "coder-1", "action": "nodding",
                                   "start_s": a * WIN / FPS, "stop_s": b * WIN / FPS})  # fmt: skip
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    assert aggregate_main(["--windows", str(wdir), "--manifest", str(root / "manifest.csv"),
                           "--out", str(root / "readout"), "-q"]) == 0  # fmt: skip
    write_codings(root / "codings", events, sessions)
    return truth


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    truth = _run_folder(root)
    summary = run_validation(root)
    return root, truth, summary


def test_readout_writes_mean_score(run):
    root, truth, _ = run
    cohort = pd.read_parquet(root / "readout" / "cohort.parquet")
    assert list(cohort.columns[:7]) == [*COHORT.schema.names, "mean_score"]
    assert read_sidecar(root / "readout" / "cohort.parquet")["contract_version"] == COHORT.version == 2
    nod = cohort[cohort["action"] == "nodding"].set_index("participant_id")
    for pid, t in truth.items():
        # every frame is valid and scored by its one window: the mean over frames is the mean over windows
        assert nod.at[pid, "mean_score"] == pytest.approx(t["p_nod"].mean(), abs=1e-9)
        assert nod.at[pid, "percent_time"] == pytest.approx(100 * (t["p_nod"] >= 0.5).mean(), abs=1e-9)
    legs = cohort[cohort["action"] == "shaking legs"]
    np.testing.assert_allclose(legs["mean_score"], 0.02, atol=1e-9)


def test_validation_writes_score_sums_beside_the_confusion(run):
    root, truth, summary = run
    assert str(root / "validation" / "scores.parquet") in summary["written"]
    conf = pd.read_parquet(root / "validation" / "confusion.parquet")
    scores = pd.read_parquet(root / "validation" / "scores.parquet")
    assert read_sidecar(root / "validation" / "scores.parquet")["contract"] == "validation_scores"
    both = conf.merge(scores, on=["participant_id", "group", "action", "reference"], validate="one_to_one")
    assert len(both) == len(conf) == len(scores) == 15 * 3  # 15 coded participants x 3 actions
    assert (both["pos_frames"] == both["tp"] + both["fn"]).all()
    assert (both["neg_frames"] == both["fp"] + both["tn"]).all()
    nod = both[both["action"] == "nodding"].set_index("participant_id")
    for pid, row in nod.iterrows():
        t = truth[pid]
        assert row["pos_score_sum"] == pytest.approx(WIN * t["p_nod"][t["on"]].sum(), rel=1e-9)
        assert row["neg_score_sum"] == pytest.approx(WIN * t["p_nod"][~t["on"]].sum(), rel=1e-9)
        assert row["tp"] == WIN * int((t["on"] & (t["p_nod"] >= 0.5)).sum())
    vs = read_validation(root / "validation")
    assert vs.has_scores and vs.reference == "coder-1"


def test_pacc_and_acc_recover_the_planted_shares(run):
    """The model under-reads nodding (tpr 2/3, fpr 1/26); both corrections bring each participant's share
    back to its planted value within sampling noise, the uncorrected read-out is off by several pp."""
    root, truth, _ = run
    cohort = pd.read_parquet(root / "readout" / "cohort.parquet")
    rates = estimate_rates(read_validation(root / "validation"))
    r = rates.set_index("action").loc["nodding"]
    assert r["s_pos"] == pytest.approx(0.6, abs=0.03) and r["s_neg"] == pytest.approx(0.26, abs=0.02)
    nod = cohort["action"] == "nodding"
    true = 100 * cohort.loc[nod, "participant_id"].map({p: t["on"].mean() for p, t in truth.items()}).to_numpy()
    err = {"uncorrected": cohort.loc[nod, "percent_time"].to_numpy() - true}
    for m in ("acc", "pacc"):
        err[m] = corrected_cohort(cohort, rates, m, frame_rate=FPS).loc[nod, "percent_time"].to_numpy() - true
    mae = {k: float(np.abs(v).mean()) for k, v in err.items()}
    bias = {k: float(v.mean()) for k, v in err.items()}
    print(f"\nnodding share, MAE (pp): {mae}; bias (pp): {bias}")
    assert bias["uncorrected"] < -3  # -4.2 pp (MAE 4.5): the read-out loses a third of the true frames; acc, pacc MAE 1.6
    for m in ("acc", "pacc"):
        assert abs(bias[m]) < 1.5 and mae[m] < 0.6 * mae["uncorrected"], (m, mae, bias)


@pytest.mark.parametrize("method", ["acc", "pacc"])
def test_hurdle_corrected_end_to_end(run, tmp_path, method):
    root, truth, _ = run
    out = tmp_path / method
    rc = hurdle_main(["--cohort", str(root / "readout" / "cohort.parquet"), "--misclassification", method,
                      "--validation", str(root / "validation"), "--imputations", "5", "--intensity-se", "hc2-t",
                      "--min-engaged-test", "3", "--frame-rate", "10", "--actions", "nodding", "--no-plots",
                      "--out", str(out), "-q"])  # fmt: skip
    assert rc == 0
    res = pd.read_parquet(out / "results.parquet")
    word = {"acc": "by the adjusted count", "pacc": "by the probabilistic adjusted count"}[method]
    assert res["misclassification"].str.contains(word).all()
    assert res["misclassification"].str.contains("15 coded participants (reference coder-1", regex=False).all()
    k = res.set_index(KEYS).loc[("nodding", "ASD vs PSY", "intensity")]
    assert np.isfinite(k["estimate"]) and k["imputations_used"] == 5 and np.isfinite(k["estimate_uncorrected"])
    # planted: PSY nods more than ASD (shares 0.25-0.45 vs 0.10-0.30); the correction keeps that, further from 1
    assert k["effect"] < k["effect_uncorrected"] < 1


def test_pacc_needs_both_inputs(run, tmp_path):
    root, _, _ = run
    cohort = pd.read_parquet(root / "readout" / "cohort.parquet").drop(columns="mean_score")
    cohort.to_parquet(tmp_path / "cohort.parquet")
    with pytest.raises(SystemExit) as exc:
        hurdle_main(["--cohort", str(tmp_path / "cohort.parquet"), "--misclassification", "pacc", "--validation",
                     str(root / "validation"), "--frame-rate", "10", "--out", str(tmp_path / "o"), "-q"])  # fmt: skip
    assert exc.value.code == 2 and not (tmp_path / "o").exists()
    scores = pd.read_parquet(root / "validation" / "scores.parquet")
    conf = pd.read_parquet(root / "validation" / "confusion.parquet")
    from analysis.misclassification import validation_set

    bad = scores.assign(pos_frames=scores["pos_frames"] + 1)
    with pytest.raises(ValidationError, match="pos_frames .* does not match the confusion row"):
        validation_set(conf, bad)


def test_pacc_recovers_a_planted_log_odds_ratio_from_synthetic_scores():
    """Analysis level (analysis.simulate_errors: scores with mean 0.7 on positive frames, 0.05 on negative
    ones, tpr 0.6, fpr 0.2 %): the planted intensity log OR log(2.5) of PSY is attenuated uncorrected and
    recovered by pacc, whose interval covers it."""
    eff = (PlantedEffect("nodding", "PSY", "intensity", float(np.log(2.5))),
           PlantedEffect("nodding", "TDC", "probability", float(np.log(0.4))))  # fmt: skip
    cfg_sim = SimConfig(groups=(("ASD", 300), ("PSY", 200), ("TDC", 300)), effects=eff, intensity_range=(0.08, 0.2),
                        actions=("nodding", "shaking head", "turning head", "head up"), precision=20.0, seed=3)  # fmt: skip
    cohort, truth = simulate_cohort(cfg_sim)
    observed, confusion, scores = misread_cohort(cohort, ReadoutErrors(fpr=0.002), seed=1)
    from analysis.misclassification import validation_set

    vs = validation_set(confusion, scores)
    cfg = HurdleConfig(top_actions=0, intensity_se="hc2-t")
    plain = hurdle_analysis(observed, cfg).set_index(KEYS)
    pacc = hurdle_analysis(observed, replace(cfg, misclassification="pacc", imputations=20), validation=vs).set_index(KEYS)
    k = ("nodding", "ASD vs PSY", "intensity")
    t = float(truth.set_index(KEYS).loc[k, "true_log_or"])
    print(f"\nplanted {t:.3f}, uncorrected {plain.loc[k, 'estimate']:.3f}, pacc {pacc.loc[k, 'estimate']:.3f} "
          f"(se {pacc.loc[k, 'se']:.3f})")  # fmt: skip
    assert abs(plain.loc[k, "estimate"] - t) > 0.2
    assert abs(pacc.loc[k, "estimate"] - t) < 2 * pacc.loc[k, "se"]
    assert pacc.loc[k, "ci_low"] < np.exp(t) < pacc.loc[k, "ci_high"]
