"""python -m simulator coders: the planted jitter and miss rate are what the coders' files show, and the
perfect coder's files give back the simulator's per-frame truth exactly.

The cohort's truth is made without rendering video (``frame_truth`` of sampled participants, as
``write_cohort`` writes it): the coders read only ``manifest.csv``, ``config.json`` and
``truth/frames``. Measurements come from the written files (events.parquet, the BORIS project parsed
here, the ELAN files read by pympi), matched to the truth events independently of ``planted.parquet``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from pympi import Elan
from scipy import stats

from pipeline.artifacts import read_artifact
from pipeline.codings.contract import CODING_EVENTS, CODING_SESSIONS
from simulator.__main__ import main
from simulator.coders import PERFECT, CoderConfig, read_cohort_truth, simulated_coders
from simulator.recording import CohortConfig, cohort_specs, frame_truth

from test_codings_export import boris_pairs  # noqa: E402  (tests/ helper: BORIS's pairing rule)

SIGMA, MISS = 0.2, 0.1


def fake_cohort(root: Path, *, groups=None, seconds=180.0, seed=5) -> Path:
    """A simulated cohort's truth files (manifest.csv, config.json, truth/frames/) without its videos."""
    cfg = CohortConfig(groups=groups or {"ASD": 3, "TDC": 3}, seconds=seconds, seed=seed)
    (root / "truth" / "frames").mkdir(parents=True, exist_ok=True)
    lines = ["participant_id,group,age,sex,video"]
    for s in cohort_specs(cfg):
        pq.write_table(frame_truth(s, cfg.fps), root / "truth" / "frames" / f"{s.participant_id}.parquet")
        lines.append(f"{s.participant_id},{s.group},{s.age:.1f},{s.sex},videos/{s.participant_id}.mp4")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    (root / "config.json").write_text(json.dumps(cfg.to_dict()))
    return root


@pytest.fixture(scope="module")
def coded(tmp_path_factory):
    root = tmp_path_factory.mktemp("coders")
    sim = fake_cohort(root / "sim")
    out = root / "codings"
    assert main(["-q", "coders", "--cohort", str(sim), "--out", str(out), "--coders", "2", "--jitter-s", str(SIGMA),
                 "--miss", str(MISS), "--seed", "11"]) == 0
    return sim, out


def truth_runs(sim: Path) -> pd.DataFrame:
    """Truth events (video_id, action, start, stop frames) straight from the per-frame files."""
    rows = []
    for f in sorted((sim / "truth" / "frames").glob("*.parquet")):
        t = pd.read_parquet(f)
        a = t["action"].fillna("").to_numpy(object)
        change = np.flatnonzero(np.r_[True, a[1:] != a[:-1]])
        for s, e in zip(change, np.r_[change[1:], len(a)]):
            if a[s]:
                rows.append((f.stem, a[s], int(s), int(e)))
    return pd.DataFrame(rows, columns=["video_id", "action", "start", "stop"])


def match(coder_events: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Each truth event with the coder's event of the same action overlapping it most (NaN: missed)."""
    out = []
    for t in truth.itertuples(index=False):
        c = coder_events[(coder_events["video_id"] == t.video_id) & (coder_events["action"] == t.action)]
        ov = np.minimum(c["stop_frame"], t.stop) - np.maximum(c["start_frame"], t.start)
        if len(c) and ov.max() > 0:
            best = c.iloc[int(np.argmax(ov.to_numpy()))]
            out.append((best["start_frame"] - t.start, best["stop_frame"] - t.stop))
        else:
            out.append((np.nan, np.nan))
    return pd.DataFrame(out, columns=["d_on", "d_off"])


def test_outputs_are_a_valid_codings_folder(coded):
    sim, out = coded
    events = read_artifact(out / "events.parquet", CODING_EVENTS).to_pandas()
    sessions = read_artifact(out / "sessions.parquet", CODING_SESSIONS).to_pandas()
    coders = [PERFECT, "sim-coder-1", "sim-coder-2"]
    assert list(dict.fromkeys(sessions["coder"])) == coders and set(sessions["format"]) == {"simulator"}
    assert set(events["coder"]) == set(coders)
    for c in coders:
        assert (out / "boris" / f"{c}.boris").is_file()
        assert len(list((out / "elan" / c).glob("*.eaf"))) == 6
        assert len(list((out / "frames" / c).glob("*.parquet"))) == 6
        assert (out / "detections" / f"{c}.csv").is_file()
    assert len(pd.read_parquet(out / "qc.parquet")) == 0


def test_jitter_matches_the_planted_sigma_and_misses_the_planted_rate(coded):
    sim, out = coded
    truth = truth_runs(sim)
    events = pd.read_parquet(out / "events.parquet")
    fps = 30.0
    errors, missed, n = [], 0, 0
    for c in ("sim-coder-1", "sim-coder-2"):
        m = match(events[events["coder"] == c], truth)
        missed += int(m["d_on"].isna().sum())
        n += len(m)
        errors.append(m.dropna().to_numpy(float).ravel() / fps)
    err = np.concatenate(errors)
    # expected sd: sigma with frame rounding, less the 3-sd clipping (truncated normal)
    trunc = stats.truncnorm(-3, 3).std() * SIGMA
    expect = np.sqrt(trunc ** 2 + 1 / (12 * fps ** 2))
    se = expect / np.sqrt(2 * (err.size - 1))
    assert abs(err.std(ddof=1) - expect) < 4 * se, (err.std(ddof=1), expect, se)
    assert abs(err.mean()) < 4 * expect / np.sqrt(err.size)
    assert np.abs(err).max() <= 3 * SIGMA + 0.5 / fps + 1e-9
    assert stats.binomtest(missed, n, MISS).pvalue > 1e-3, (missed, n)
    assert n > 300  # enough events for the checks above to mean something


def test_planted_table_records_what_the_files_show(coded):
    sim, out = coded
    planted = pd.read_parquet(out / "planted.parquet")
    events = pd.read_parquet(out / "events.parquet")
    for c in ("sim-coder-1", "sim-coder-2"):
        p = planted[(planted["coder"] == c) & ~planted["missed"]].sort_values(["video_id", "start_frame"])
        e = events[events["coder"] == c].sort_values(["video_id", "start_frame"])
        assert p[["video_id", "action", "start_frame", "stop_frame"]].to_numpy().tolist() == \
            e[["video_id", "action", "start_frame", "stop_frame"]].to_numpy().tolist()
    p = planted[planted["coder"] == PERFECT]
    assert not p["missed"].any() and (p["onset_error_s"] == 0).all() and (p["offset_error_s"] == 0).all()


def test_perfect_coder_frames_boris_and_elan_equal_the_simulator_truth(coded):
    sim, out = coded
    project = json.loads((out / "boris" / f"{PERFECT}.boris").read_text(encoding="utf-8"))
    truth = truth_runs(sim)
    for f in sorted((sim / "truth" / "frames").glob("*.parquet")):
        vid = f.stem
        want = pd.read_parquet(f)
        got = pd.read_parquet(out / "frames" / PERFECT / f"{vid}.parquet")
        pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True), check_dtype=False)
        t = sorted((r.action, r.start, r.stop) for r in truth[truth["video_id"] == vid].itertuples())
        b = [(c, a, e) for c, a, e, _ in boris_pairs(project["observations"][vid], project["behaviors_conf"])]
        assert b == t
        eaf = Elan.Eaf(str(out / "elan" / PERFECT / f"{vid}.eaf"))
        e = sorted((v or tier, round(s / 1000 * 30), round(x / 1000 * 30)) for tier in eaf.get_tier_names()
                   for s, x, v in eaf.get_annotation_data_for_tier(tier))
        assert e == t


def test_coders_are_seeded_and_independent(tmp_path):
    sim = fake_cohort(tmp_path / "sim", groups={"ASD": 2}, seconds=120)
    truth, sessions, _, _ = read_cohort_truth(sim)
    a = simulated_coders(truth, sessions, CoderConfig(seed=1))[0]
    b = simulated_coders(truth, sessions, CoderConfig(seed=1))[0]
    c = simulated_coders(truth, sessions, CoderConfig(seed=2))[0]
    pd.testing.assert_frame_equal(a, b)
    cols = ["video_id", "action", "start_frame", "stop_frame"]
    one, two = (a[a["coder"] == k][cols].to_numpy().tolist() for k in ("sim-coder-1", "sim-coder-2"))
    assert one != two
    assert a[cols].to_numpy().tolist() != c[cols].to_numpy().tolist()
    # the perfect coder does not depend on the seed; more coders leave the first ones as they were
    assert a[a["coder"] == PERFECT][cols].equals(c[c["coder"] == PERFECT][cols])
    more = simulated_coders(truth, sessions, CoderConfig(seed=1, coders=3))[0]
    assert more[more["coder"] == "sim-coder-2"][cols].to_numpy().tolist() == two
    zero = simulated_coders(truth, sessions, CoderConfig(seed=1, jitter_s=0, miss=0))[0]
    assert zero[zero["coder"] == "sim-coder-1"][cols].to_numpy().tolist() == \
        zero[zero["coder"] == PERFECT][cols].to_numpy().tolist()


@pytest.mark.parametrize("args, expect", [
    (["--miss", "1.5"], "miss must be in [0, 1]"),
    (["--jitter-s", "-1"], "jitter_s must be >= 0"),
    (["--coders", "0", "--no-perfect"], "no coder to simulate"),
])
def test_bad_arguments_are_one_line_exit_2_and_nothing_written(tmp_path, capsys, args, expect):
    sim = fake_cohort(tmp_path / "sim", groups={"ASD": 1}, seconds=30)
    with pytest.raises(SystemExit) as exc:
        main(["coders", "--cohort", str(sim), "--out", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and expect in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_not_a_cohort_is_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["coders", "--cohort", str(tmp_path), "--out", str(tmp_path / "out")])
    assert exc.value.code == 2 and "not a simulated cohort" in capsys.readouterr().err
