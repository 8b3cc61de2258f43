"""Proof on simulated coders: coder-vs-coder kappa and ICC follow the planted jitter and miss rate.

Truth: seeded events per participant (event rate differs between participants, events separated by
more than twice the jitter). Two coders (:func:`agreement_fixtures.simulated_coder`) each miss an event
with probability ``m`` and move its onset and offset by independent uniform whole-frame shifts in
``[-J, J]``. Expected values from the planted parameters alone (no package code):

- per event of L frames, both coders keep it with probability (1 - m)^2 and then overlap by
  L - E|D| frames on average, D the difference of two independent U{-J..J} (each boundary pair
  loses E|D| / 2); each coder codes (1 - m) L frames on average. Summed over events, these are
  the expected 2x2 counts, whose kappa is the expected kappa;
- per participant p with N_p frames, a coder's percent time is 100 / N_p * sum_e k_e (L_e + d_e),
  k_e ~ Bernoulli(1 - m), d_e the difference of two U{-J..J}; its variance given the truth is
  sum_e [(1 - m)(L_e^2 + 2 s^2) - (1 - m)^2 L_e^2] (100 / N_p)^2 with s^2 = ((2J + 1)^2 - 1) / 12, the
  coders err independently, so ICC = var_p[(1 - m) T_p] / (var_p[(1 - m) T_p] + mean_p error var),
  T_p = 100 sum_e L_e / N_p.

This proof keeps its own seeded generator (uniform whole-frame jitter, for which the expectations
above are exact); simulator/coders.py of the codings-export branch draws Gaussian jitter with clipping
and keeps events in order, whose expected overlap has no closed form this simple.
"""

from __future__ import annotations

import numpy as np
import pytest

from analysis.agreement.config import AgreementConfig
from analysis.agreement.hook import validate
from analysis.agreement.kappa import kappa_from_counts
from agreement_fixtures import simulated_coder, write_codings

FPS = 30.0
SECONDS = 120.0
N = int(SECONDS * FPS)


def truth_events(rng, n_participants=40):
    events = []
    for p in range(n_participants):
        rate = rng.uniform(0.2, 1.0)  # participants differ: the between-participant variance of the ICC
        t = rng.uniform(0, 3)
        while True:
            L = int(rng.integers(30, 90))  # 1-3 s
            start = int(round(t * FPS))
            if start + L + 20 >= N:
                break
            events.append({"video_id": f"v{p:02d}", "participant_id": f"P{p:02d}", "action": "nodding",
                           "start_s": start / FPS, "stop_s": (start + L) / FPS, "L": L})
            t = (start + L) / FPS + 1.0 + rng.exponential(4.0 / rate)
    return events


def expected(truth, J, m):
    d = np.arange(-2 * J, 2 * J + 1)
    e_abs = float((np.abs(d) * (2 * J + 1 - np.abs(d))).sum() / (2 * J + 1) ** 2)
    L = np.array([e["L"] for e in truth], float)
    n11 = ((1 - m) ** 2 * (L - e_abs)).sum()
    n10 = ((1 - m) * L).sum() - n11
    participants = sorted({e["participant_id"] for e in truth})
    total = N * len(participants)
    kappa = float(kappa_from_counts(np.array([n11, n10, n10, total - n11 - 2 * n10])))
    s2 = ((2 * J + 1) ** 2 - 1) / 12
    T, err = [], []
    for p in participants:
        Lp = np.array([e["L"] for e in truth if e["participant_id"] == p], float)
        T.append(100 * (1 - m) * Lp.sum() / N)
        err.append(((1 - m) * (Lp ** 2 + 2 * s2) - (1 - m) ** 2 * Lp ** 2).sum() * (100 / N) ** 2)
    between = np.var(T, ddof=1)
    return kappa, between / (between + np.mean(err))


def coded(tmp_path, truth, J, m, seed):
    rng = np.random.default_rng(seed)
    events = simulated_coder(truth, "sim-1", fps=FPS, jitter=J, miss=m, rng=rng) + \
        simulated_coder(truth, "sim-2", fps=FPS, jitter=J, miss=m, rng=rng)
    for e in events:
        e.pop("L", None)
        e.pop("participant_id", None)
    pids = sorted({(e["video_id"], e["participant_id"]) for e in truth})
    sessions = [{"video_id": v, "coder": c, "participant_id": p, "fps": FPS, "num_frames": N}
                for v, p in pids for c in ("sim-1", "sim-2")]
    folder = write_codings(tmp_path / f"codings-{J}-{m}", events, sessions)
    return validate(folder, AgreementConfig(bootstrap=200, seed=seed)).pairs.set_index("action").loc["nodding"]


@pytest.mark.parametrize("J,m", [(0, 0.0), (3, 0.0), (9, 0.1), (15, 0.25)])
def test_coder_kappa_and_icc_follow_the_planted_jitter(tmp_path, J, m):
    truth = truth_events(np.random.default_rng(11))
    row = coded(tmp_path, truth, J, m, seed=100 + J)
    k_exp, icc_exp = expected(truth, J, m)
    if J == 0 and m == 0:
        assert row["kappa"] == 1 and row["icc2_1"] == pytest.approx(1)
        return
    assert row["kappa"] == pytest.approx(k_exp, abs=0.03)
    assert row["kappa_low"] <= k_exp + 0.02 and k_exp - 0.02 <= row["kappa_high"]
    assert row["icc3_1"] == pytest.approx(icc_exp, abs=0.1)
    assert row["icc2_1_low"] <= icc_exp + 0.02


def test_more_jitter_and_misses_lower_the_agreement(tmp_path):
    truth = truth_events(np.random.default_rng(12))
    rows = [coded(tmp_path, truth, J, m, seed=7) for J, m in ((2, 0.0), (8, 0.1), (15, 0.3))]
    kappas = [r["kappa"] for r in rows]
    f1 = [r["event_f1"] for r in rows]
    assert kappas[0] > kappas[1] > kappas[2]
    assert f1[0] > f1[1] > f1[2]
    # with no misses every kept event matches within the 0.5 s tolerance (2 frames of jitter)
    assert f1[0] == 1.0
