"""Agreement with human coders (analysis.agreement): the statistics against independent computations.

Kappa against scikit-learn's ``cohen_kappa_score`` on the binned sequences; the 1 s time-unit bins
against BORIS's rule written out independently from the events' seconds; ICC against pingouin and the
Shrout-Fleiss formula; Bland-Altman against numpy; event F1 on hand-made cases; degenerate inputs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pingouin
import pytest
from sklearn.metrics import cohen_kappa_score

from analysis.agreement.compare import ALL, PAIRS_LEADING, compare
from analysis.agreement.config import AgreementConfig
from analysis.agreement.events import match_events, prf
from analysis.agreement.kappa import ac1_from_counts, kappa_from_counts
from analysis.agreement.hook import validate
from analysis.agreement.percent import bland_altman, icc
from analysis.agreement.raters import coder_ratings, read_codings
from agreement_fixtures import write_codings

FPS = 30.0
ACTS = ("nodding", "shaking legs", "touching nose")


def _random_codings(tmp_path, *, n_participants=6, seconds=40.0, seed=0, coders=("A", "B"), points=False):
    rng = np.random.default_rng(seed)
    events, sessions = [], []
    n = int(seconds * FPS)
    for p in range(n_participants):
        vid = f"v{p}"
        for c in coders:
            sessions.append({"video_id": vid, "coder": c, "participant_id": f"P{p}", "fps": FPS, "num_frames": n})
            t = rng.uniform(0, 2)
            while t < seconds - 3:
                dur = rng.uniform(0.4, 2.5)
                events.append({"video_id": vid, "coder": c, "action": ACTS[rng.integers(len(ACTS))],
                               "start_s": round(t, 3), "stop_s": round(t + dur, 3)})
                t += dur + rng.uniform(0.2, 4)
            if points:
                events.append({"video_id": vid, "coder": c, "action": "nodding", "kind": "point",
                               "start_s": round(rng.uniform(1, seconds - 1), 3), "stop_s": 0.0})
    return write_codings(tmp_path / "codings", events, sessions)


def _sequences(folder, coder, action):
    """Per-frame 0/1 of ``action`` for a coder from the frames/ files (independent of the package)."""
    out = {}
    for f in sorted((folder / "frames" / coder).glob("*.parquet")):
        df = pd.read_parquet(f)
        n = int(df["frame"].max()) + 1
        s = np.zeros(n, int)
        s[df.loc[df["action"] == action, "frame"].to_numpy()] = 1
        out[f.stem] = s
    return out


def test_kappa_equals_sklearn_on_the_frame_sequences(tmp_path):
    folder = _random_codings(tmp_path)
    res = validate(folder, AgreementConfig(bootstrap=50))
    for action in ACTS:
        a, b = _sequences(folder, "A", action), _sequences(folder, "B", action)
        x = np.concatenate([a[v] for v in sorted(a)])
        y = np.concatenate([b[v] for v in sorted(a)])
        row = res.pairs[(res.pairs["action"] == action)].iloc[0]
        assert row["kappa"] == pytest.approx(cohen_kappa_score(x, y), abs=1e-12)
        assert row["percent_agreement"] == pytest.approx(100 * np.mean(x == y))
        # the bootstrap's closed form is the same number
        c = np.array([(x & y).sum(), (x & ~y.astype(bool)).sum(), (~x.astype(bool) & y).sum(), ((1 - x) & (1 - y)).sum()])
        assert float(kappa_from_counts(c)) == pytest.approx(cohen_kappa_score(x, y), abs=1e-12)
        assert row["kappa_low"] <= row["kappa"] <= row["kappa_high"]
    assert list(res.pairs.columns[: len(PAIRS_LEADING)]) == list(PAIRS_LEADING)


def _boris_samples(events, coder, vid, action, seconds, unit):
    """BORIS's time-unit rule from the events' seconds: at t = k * unit, a state is current when
    start <= t <= stop; a point counts when |time - t| <= unit / 2."""
    ts = np.arange(0, seconds - 1e-9, unit)
    out = np.zeros(ts.size, int)
    for e in events:
        if (e["coder"], e["video_id"], e["action"]) != (coder, vid, action):
            continue
        if e.get("kind", "state") == "point":
            out |= (np.abs(ts - e["start_s"]) <= unit / 2 + 1e-9).astype(int)
        else:
            out |= ((ts >= e["start_s"]) & (ts <= e["stop_s"])).astype(int)
    return out


def test_time_unit_kappa_at_one_second_is_borises_rule(tmp_path):
    rng = np.random.default_rng(4)
    seconds, events, sessions = 60.0, [], []
    for p in range(4):
        vid = f"v{p}"
        for c in ("A", "B"):
            sessions.append({"video_id": vid, "coder": c, "participant_id": f"P{p}", "fps": FPS, "num_frames": int(seconds * FPS)})
            t = 0.3
            while t < seconds - 4:
                start = np.floor(t) + rng.choice([0.2, 0.4, 0.6, 0.8])  # never on a sampled second
                stop = start + rng.integers(1, 4) + rng.choice([0.1, 0.3, 0.7])
                events.append({"video_id": vid, "coder": c, "action": "nodding", "start_s": float(start), "stop_s": float(stop)})
                t = stop + rng.uniform(0.5, 4)
            events.append({"video_id": vid, "coder": c, "action": "nodding", "kind": "point",
                           "start_s": float(np.floor(rng.uniform(2, seconds - 2)) + 0.4), "stop_s": 0.0})
    folder = write_codings(tmp_path / "codings", events, sessions)
    res = validate(folder, AgreementConfig(bin="1", bootstrap=0))
    x = np.concatenate([_boris_samples(events, "A", f"v{p}", "nodding", seconds, 1.0) for p in range(4)])
    y = np.concatenate([_boris_samples(events, "B", f"v{p}", "nodding", seconds, 1.0) for p in range(4)])
    row = res.pairs[res.pairs["action"] == "nodding"].iloc[0]
    assert row["bins"] == x.size == 4 * 60
    assert row["kappa"] == pytest.approx(cohen_kappa_score(x, y), abs=1e-12)


def test_icc_equals_pingouin_and_shrout_fleiss(tmp_path):
    folder = _random_codings(tmp_path, n_participants=8, seed=2)
    res = validate(folder, AgreementConfig(bootstrap=0))
    for action in ACTS:
        a, b = _sequences(folder, "A", action), _sequences(folder, "B", action)
        x = np.array([100 * a[v].mean() for v in sorted(a)])
        y = np.array([100 * b[v].mean() for v in sorted(a)])
        long = pd.DataFrame({"t": np.tile(np.arange(x.size), 2), "r": np.repeat(["a", "b"], x.size), "s": np.r_[x, y]})
        ref = pingouin.intraclass_corr(long, targets="t", raters="r", ratings="s").set_index("Type")
        row = res.pairs[res.pairs["action"] == action].iloc[0]
        assert row["icc2_1"] == pytest.approx(ref.loc["ICC(A,1)", "ICC"], abs=1e-12)
        assert row["icc3_1"] == pytest.approx(ref.loc["ICC(C,1)", "ICC"], abs=1e-12)
        # Shrout & Fleiss (1979) from the two-way ANOVA mean squares, by hand
        m = np.c_[x, y]
        n, k = m.shape
        gm = m.mean()
        msr = k * ((m.mean(1) - gm) ** 2).sum() / (n - 1)
        msc = n * ((m.mean(0) - gm) ** 2).sum() / (k - 1)
        mse = ((m - m.mean(1, keepdims=True) - m.mean(0, keepdims=True) + gm) ** 2).sum() / ((n - 1) * (k - 1))
        assert row["icc2_1"] == pytest.approx((msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n), abs=1e-9)
        assert row["icc3_1"] == pytest.approx((msr - mse) / (msr + (k - 1) * mse), abs=1e-9)
        # Bland-Altman against numpy
        d = x - y
        assert row["bias_pp"] == pytest.approx(d.mean(), abs=1e-9)
        assert row["loa_low_pp"] == pytest.approx(d.mean() - 1.96 * np.std(d, ddof=1), abs=1e-9)
        assert row["loa_high_pp"] == pytest.approx(d.mean() + 1.96 * np.std(d, ddof=1), abs=1e-9)
        assert row["mae_pp"] == pytest.approx(np.abs(d).mean(), abs=1e-9)


def test_ac1_formula_and_prevalence():
    # Gwet (2008): p_o = 0.9, pi = 0.075 -> e = 2 pi (1 - pi) = 0.13875
    c = np.array([5, 5, 5, 85])
    po, pi = 0.9, (0.10 + 0.10) / 2
    e = 2 * pi * (1 - pi)
    assert float(ac1_from_counts(c)) == pytest.approx((po - e) / (1 - e))


@pytest.mark.parametrize("a,b,tol,expected", [
    (([30], [60]), ([45], [60]), 0.5, 1),     # onset 0.5 s apart at 30 fps: exactly at the tolerance -> match
    (([30], [60]), ([46], [60]), 0.5, 0),     # 16 frames = 0.533 s: past the tolerance
    (([0], [120]), ([0], [60]), 0.5, 1),      # one b event, two candidate a: matched once (below)
    (([0, 62], [60, 120]), ([0], [120]), 0.5, 1),   # split: two a events for one b event -> one match
    (([0], [120]), ([0, 62], [60, 120]), 0.5, 1),   # merged: one a event for two b events -> one match
    (([0], [10]), ([10], [20]), 0.5, 0),      # onsets close but no overlap -> no match
])
def test_event_matching_hand_cases(a, b, tol, expected):
    assert match_events(a, b, fps=30.0, tolerance_s=tol, min_overlap=0.5) == expected


def test_event_matched_at_most_once_and_f1():
    # two a events both within the tolerance of one b event: one match only
    n = match_events(([0, 3], [60, 60]), ([0], [60]), fps=30.0, tolerance_s=0.5, min_overlap=0.5)
    assert n == 1
    p, r, f, note = prf(1, 2, 1)
    assert (p, r, f, note) == (0.5, 1.0, pytest.approx(2 / 3), None)
    # split (precision 1/2, recall 1) and merged (precision 1, recall 1/2) as P/R
    assert prf(match_events(([0, 62], [60, 120]), ([0], [120]), fps=30, tolerance_s=0.5, min_overlap=0.5), 2, 1)[:2] == (0.5, 1.0)
    assert prf(match_events(([0], [120]), ([0, 62], [60, 120]), fps=30, tolerance_s=0.5, min_overlap=0.5), 1, 2)[:2] == (1.0, 0.5)
    assert np.isnan(prf(0, 0, 0)[2]) and prf(0, 0, 0)[3]


def test_identical_coders_give_kappa_one(tmp_path):
    folder = _random_codings(tmp_path, coders=("A",))
    ev, ses = read_codings(folder)
    ev2, ses2 = ev.assign(coder="B"), ses.assign(coder="B")
    r = coder_ratings(pd.concat([ev, ev2]), pd.concat([ses, ses2]))
    res = compare(r, AgreementConfig(bootstrap=20))
    rows = res.pairs
    assert (rows["kappa"] == 1).all() and (rows["icc2_1"].round(12) == 1).all()
    assert (rows["event_f1"] == 1).all() and (rows["bias_pp"] == 0).all()


def test_degenerate_inputs_are_finite_or_explained(tmp_path):
    # one participant, an action only one coder coded once
    events = [{"video_id": "v0", "coder": "A", "action": "nodding", "start_s": 1.0, "stop_s": 2.0},
              {"video_id": "v0", "coder": "B", "action": "nodding", "start_s": 1.1, "stop_s": 2.0},
              {"video_id": "v0", "coder": "A", "action": "touching nose", "start_s": 5.0, "stop_s": 5.1}]
    sessions = [{"video_id": "v0", "coder": c, "participant_id": "P0", "fps": FPS, "num_frames": 600} for c in ("A", "B")]
    folder = write_codings(tmp_path / "codings", events, sessions)
    res = validate(folder, AgreementConfig(bootstrap=30))
    _assert_explained(res.pairs)
    nod = res.pairs[res.pairs["action"] == "nodding"].iloc[0]
    assert nod["n_participants"] == 1 and np.isfinite(nod["kappa"]) and np.isnan(nod["icc2_1"]) and nod["icc_note"]
    assert np.isnan(nod["loa_low_pp"]) and "one participant" in nod["loa_note"]
    nose = res.pairs[res.pairs["action"] == "touching nose"].iloc[0]
    assert np.isnan(nose["kappa"]) and "unstable" in nose["kappa_note"] and np.isfinite(nose["ac1"])


def _assert_explained(table: pd.DataFrame) -> None:
    """Every NaN of a numeric column sits in a row whose reason columns say something."""
    notes = [c for c in table.columns if c.endswith("_note") or c == "verdict_reason"]
    for c in table.columns:
        if c in notes or table[c].dtype == object:
            continue
        for i in np.flatnonzero(table[c].isna().to_numpy()):
            assert any(isinstance(table[n].iloc[i], str) and table[n].iloc[i] for n in notes), (c, table.iloc[i].to_dict())


def test_bad_coder_and_reference_are_one_line_errors(tmp_path):
    from pipeline.cli import BadInput

    folder = _random_codings(tmp_path, n_participants=2)
    with pytest.raises(BadInput, match="'C' not in the codings"):
        validate(folder, AgreementConfig(coders=("A", "C")))
    with pytest.raises(ValueError, match="bin"):
        AgreementConfig(bin="soon")


def test_verdict_needs_the_action_coded_in_enough_participants():
    """A model kappa far below the coders' whose difference interval still reaches 0 (one or two
    participants ever show the action) is "not enough coded data", not "within the coder range"; with
    enough engaged participants the same numbers give the interval's verdict."""
    from analysis.agreement.verdicts import VERDICTS, verdict

    args = dict(n_coders=3, n_participants=12, min_participants=3, model_kappas=[0.2, 0.2, 0.2],
                coder_kappas=[0.66, 0.66, 0.66], notes=[], diff_high=0.2)
    v, why = verdict(**args, engaged=2, min_engaged=3)
    assert v == VERDICTS[2] and "only 2 participant(s)" in why and "at least 3" in why
    assert verdict(**args, engaged=3, min_engaged=3)[0] == VERDICTS[0]
    assert verdict(**{**args, "diff_high": -0.1}, engaged=3, min_engaged=3)[0] == VERDICTS[1]
    assert verdict(**args)[0] == VERDICTS[0]  # not counted: the interval alone decides
    assert AgreementConfig().min_engaged == 3
