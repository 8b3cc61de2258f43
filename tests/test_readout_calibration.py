"""Per-class threshold calibration: an over-read action gets a higher threshold, an under-read one a lower,
an exact one keeps its start; the chosen thresholds reproduce their measured error through the real
read-out CLI; bad input is one line and exit 2."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from model.preprocessing import ClassList
from pipeline.agreement import read_frame_truth
from pipeline.cli import BadInput
from pipeline.aggregate import main as aggregate_main
from pipeline.manifest import read_manifest
from pipeline.readout import ReadoutConfig
from recipes.readout_calibration import calibrate_thresholds, main
from windows_fixtures import write_windows

CLASSES = ClassList.from_actions(["nodding", "shaking legs", "touching nose"], background=True)
FPS, FRAMES, SPAN, HOP = 30.0, 300, 48, 8
EVENTS = {"nodding": (100, 160), "shaking legs": (32, 72), "touching nose": (200, 240)}


def centre_probs(centre: np.ndarray, engaged_nose: bool, blip: bool = False) -> np.ndarray:
    """Window probabilities [W, 4] read at the window centres:

    - nodding: 1 inside its event and 0.6 for centres up to 16 frames outside it (spills over: over-read
      at tau 0.5, exact from tau 0.65);
    - shaking legs: exactly 1 inside its event (any tau reads it exactly);
    - touching nose (engaged participants only): 0.45 inside its event (never read at tau 0.5);
    - with ``blip`` (participants without touching nose): touching nose at 1 in the one window centred
      at frame 263.5 (a spurious detection about 0.1 s long that no threshold of the grid removes);
    - the rest of the mass on background.
    """
    p = np.zeros((centre.size, 4))
    a, b = EVENTS["nodding"]
    p[(centre >= a - 16) & (centre < b + 16), 0] = 0.6
    p[(centre >= a) & (centre < b), 0] = 1.0
    a, b = EVENTS["shaking legs"]
    p[(centre >= a) & (centre < b), 1] = 1.0
    if blip:
        p[centre == 263.5, 2] = 1.0
    if engaged_nose:
        a, b = EVENTS["touching nose"]
        p[(centre >= a) & (centre < b), 2] = 0.45
    p[:, 3] = 1.0 - p[:, :3].sum(axis=1)
    return p


def make_recordings(tmp_path, *, blips: bool = False):
    """Six one-video participants; touching nose in three of them (with ``blips``: a spurious 0.1 s of
    it in the other three)."""
    starts = np.arange(0, FRAMES - SPAN + 1, HOP)
    ends = starts + SPAN
    centre = (starts + ends - 1) / 2
    rows, lines = [], ["participant_id,group,video"]
    for i in range(6):
        vid = f"p{i}"
        engaged = i % 2 == 0
        write_windows(tmp_path / "windows", vid, starts, ends, centre_probs(centre, engaged, blips and not engaged),
                      classes=CLASSES, fps=FPS, frame_count=FRAMES)
        lines.append(f"{vid},G{i % 2},videos/{vid}.mp4")
        rows += [(vid, 0, "")]
        for action, (a, b) in EVENTS.items():
            if action != "touching nose" or engaged:
                rows += [(vid, f, action) for f in range(a, b)]
    (tmp_path / "manifest.csv").write_text("\n".join(lines) + "\n")
    pd.DataFrame(rows, columns=["video_id", "frame", "action"]).to_csv(tmp_path / "truth.csv", index=False)
    return tmp_path


@pytest.fixture
def recordings(tmp_path):
    return make_recordings(tmp_path)


def test_thresholds_move_towards_the_truth(recordings):
    manifest = read_manifest(recordings / "manifest.csv", check_videos=False)
    truth = read_frame_truth(recordings / "truth.csv")
    cal = calibrate_thresholds(manifest, recordings / "windows", truth, base=ReadoutConfig(scores="interpolate"))
    t = cal.table.set_index("action")
    assert cal.participants == 6 and cal.config.rule == "per-class" and cal.config.scores == "interpolate"
    # over-read: spills 16 frames each side at 0.5 (0.6 between the spill and the event's centres)
    assert t.loc["nodding", "threshold"] > 0.6
    assert t.loc["nodding", "bias_pp_before"] > 5 and abs(t.loc["nodding", "bias_pp"]) < 1.5
    # under-read: every engaged participant missed at 0.5 (3 of 6 disagree), found below 0.45
    assert t.loc["touching nose", "disagree_before"] == 0.5 and t.loc["touching nose", "disagree"] == 0.0
    assert t.loc["touching nose", "threshold"] <= 0.45 and t.loc["touching nose", "mae_pp"] < 1.5
    # exact at every threshold: the cost is flat, the start value is kept
    assert t.loc["shaking legs", "threshold"] == 0.5 and t.loc["shaking legs", "mae_pp"] < 1.5
    assert (t["mae_pp"] <= t["mae_pp_before"] + 1e-9).all()


def test_a_minimum_duration_is_chosen_when_brief_detections_misread_engagement(tmp_path):
    rec = make_recordings(tmp_path, blips=True)
    manifest = read_manifest(rec / "manifest.csv", check_videos=False)
    truth = read_frame_truth(rec / "truth.csv")
    base = ReadoutConfig(scores="interpolate")
    fixed = calibrate_thresholds(manifest, rec / "windows", truth, base=base).table.set_index("action")
    # no threshold of the grid removes a blip at 1.0: three of six participants read as engaged
    assert fixed.loc["touching nose", "disagree"] == 0.5
    cal = calibrate_thresholds(manifest, rec / "windows", truth, base=base, min_durations=(0.0, 0.5, 2.0))
    t = cal.table.set_index("action")
    assert cal.config.min_duration_s == 0.5  # drops the 0.1 s blips; 2 s would drop the 1.3 s events too
    assert t.loc["touching nose", "disagree"] == 0.0 and t.loc["touching nose", "mae_pp"] < 1.5
    with pytest.raises(BadInput, match="minimum durations"):
        calibrate_thresholds(manifest, rec / "windows", truth, base=base, min_durations=(0.0, -1.0))


def test_cli_thresholds_reproduce_their_error_through_the_read_out(recordings, capsys):
    out = recordings / "cal"
    code = main(["--windows", str(recordings / "windows"), "--manifest", str(recordings / "manifest.csv"),
                 "--gt-frames", str(recordings / "truth.csv"), "--out", str(out), "-q"])
    stdout, stderr = capsys.readouterr()
    assert code == 0 and f"wrote {out / 'thresholds.json'}" in stdout and "--rule per-class" in stderr
    thresholds = json.loads((out / "thresholds.json").read_text())
    assert set(thresholds) == {"nodding", "shaking legs", "touching nose"}
    code = aggregate_main(["--windows", str(recordings / "windows"), "--manifest", str(recordings / "manifest.csv"),
                           "--out", str(recordings / "readout"), "--scores", "interpolate", "--rule", "per-class",
                           "--thresholds", str(out / "thresholds.json"), "--gt-frames", str(recordings / "truth.csv"),
                           "-q"])
    capsys.readouterr()
    assert code == 0
    measured = pd.read_csv(recordings / "readout" / "agreement.csv").set_index("action")
    table = pd.read_csv(out / "calibration.csv").set_index("action")
    np.testing.assert_allclose(measured.loc[table.index, "mae_pp"], table["mae_pp"], atol=1e-3)
    np.testing.assert_allclose(measured.loc[table.index, "engagement_disagree"], table["disagree"], atol=1e-3)


@pytest.mark.parametrize("extra, expect", [
    (["--grid", "0.4,1.5"], "threshold grid"),
    (["--grid", "0.4,x"], "--grid must be comma-separated"),
    (["--engagement-weight", "-1"], "engagement_weight"),
    (["--start", "0"], "threshold"),
])
def test_bad_input_is_one_line_exit_2(recordings, capsys, extra, expect):
    code = None
    try:
        code = main(["--windows", str(recordings / "windows"), "--manifest", str(recordings / "manifest.csv"),
                     "--gt-frames", str(recordings / "truth.csv"), "--out", str(recordings / "cal"), *extra])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and expect in err and len(err.splitlines()) == 1
    assert not (recordings / "cal" / "thresholds.json").exists()


def test_missing_windows_is_one_line_exit_2(recordings, capsys):
    (recordings / "windows" / "p3.parquet").unlink()
    with pytest.raises(SystemExit) as exc:
        main(["--windows", str(recordings / "windows"), "--manifest", str(recordings / "manifest.csv"),
              "--gt-frames", str(recordings / "truth.csv"), "--out", str(recordings / "cal")])
    code = exc.value.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and "p3.parquet" in err and len(err.splitlines()) == 1
