"""Sensitivity to the read-out (analysis.sensitivity): the labels, the threshold grid, and
``python -m analysis.hurdle --sensitivity`` on a run folder written by pipeline.aggregate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.hurdle import main as hurdle_main
from analysis.sensitivity import classify, scaled_readout
from pipeline.aggregate import main as aggregate_main
from pipeline.readout import ReadoutConfig

from windows_fixtures import write_windows  # noqa: E402  (tests/ helper)

KEYS = ["action", "contrast", "part"]


def _grid(rows):
    return pd.DataFrame([dict(zip(["action", "contrast", "part", "scale", "estimate", "p_adj"], r)) for r in rows])


def test_labels():
    base = pd.DataFrame({"action": ["a", "b", "c", "d"], "contrast": "X vs Y", "part": "intensity"})
    grid = _grid([
        *[("a", "X vs Y", "intensity", s, 0.5, 0.01) for s in (0.8, 1.0, 1.25)],        # same sign, all significant
        ("b", "X vs Y", "intensity", 0.8, 0.5, 0.01), ("b", "X vs Y", "intensity", 1.0, 0.4, 0.2),
        ("b", "X vs Y", "intensity", 1.25, 0.3, 0.3),                                    # loses significance
        ("c", "X vs Y", "intensity", 0.8, 0.5, 0.01), ("c", "X vs Y", "intensity", 1.0, 0.1, 0.5),
        ("c", "X vs Y", "intensity", 1.25, -0.6, 0.02),                                  # significant both ways
        ("d", "X vs Y", "intensity", 0.8, 0.1, 0.5), ("d", "X vs Y", "intensity", 1.0, 0.1, 0.6),
        ("d", "X vs Y", "intensity", 1.25, np.nan, np.nan),                              # not estimable at one point
    ])  # fmt: skip
    assert classify(base, grid).tolist() == ["stable", "fragile", "reversed", "fragile"]


def test_scaled_readout_keeps_thresholds_in_range():
    r = ReadoutConfig(rule="per-class", threshold=0.9, thresholds={"nodding": 0.3, "shaking legs": 0.95})
    s = scaled_readout(r, 1.25)
    assert s.threshold == 1.0 and s.thresholds == pytest.approx({"nodding": 0.375, "shaking legs": 1.0})
    assert scaled_readout(r, 0.8).thresholds["nodding"] == pytest.approx(0.24)


def test_hurdle_sensitivity_on_a_run_folder(tmp_path, capsys):
    run = tmp_path / "run"
    wdir = run / "recognize" / "windows"
    rng = np.random.default_rng(0)
    lines = ["participant_id,group,video"]
    for i in range(36):
        group = ("ASD", "PSY", "TDC")[i % 3]
        vid = f"v{i:02d}"
        lines.append(f"P{i:02d},{group},videos/{vid}.mp4")
        starts = np.arange(0, 400, 10)
        on = rng.random(len(starts)) < (0.35 if group == "PSY" else 0.15)
        p_nod = np.where(on, rng.uniform(0.45, 0.95, len(starts)), rng.uniform(0.0, 0.3, len(starts)))
        p_legs = np.where(rng.random(len(starts)) < 0.2, 0.6, 0.1) * (1 - p_nod)
        probs = np.column_stack([p_nod, p_legs, np.clip(1 - p_nod - p_legs, 0, 1)])
        write_windows(wdir, vid, starts, starts + 10, probs)
    (run / "manifest.csv").write_text("\n".join(lines) + "\n")
    assert aggregate_main(["--windows", str(wdir), "--manifest", str(run / "manifest.csv"), "--out", str(run / "readout"), "-q"]) == 0
    out = run / "hurdle"
    rc = hurdle_main(["--cohort", str(run / "readout" / "cohort.parquet"), "--sensitivity", "--all-actions",
                      "--intensity-se", "hc2-t", "--min-engaged-test", "3", "--out", str(out), "-q"])  # fmt: skip
    assert rc == 0
    res = pd.read_parquet(out / "results.parquet")
    assert set(res["sensitivity"]) <= {"stable", "fragile", "reversed"}
    grid = pd.read_csv(out / "sensitivity.csv")
    assert sorted(grid["scale"].unique()) == [0.8, 0.9, 1.0, 1.1, 1.25]
    # the grid point at factor 1 is the analysis itself
    one = grid[grid["scale"] == 1.0].set_index(KEYS)["estimate"]
    np.testing.assert_allclose(one.loc[res.set_index(KEYS).index].to_numpy(), res["estimate"].to_numpy(), rtol=1e-12)
    # a higher threshold leaves less nodding time
    nod = grid[(grid["action"] == "nodding") & (grid["part"] == "intensity")].groupby("scale")["mean_a"].first()
    assert nod.loc[0.8] > nod.loc[1.25]
    assert (out / "sensitivity.png").is_file()
    # without windows: one line, exit 2
    with pytest.raises(SystemExit) as exc:
        hurdle_main(["--cohort", str(run / "readout" / "cohort.parquet"), "--sensitivity", "--windows", str(tmp_path / "none"),
                     "--out", str(tmp_path / "o2"), "-q"])  # fmt: skip
    assert exc.value.code == 2
