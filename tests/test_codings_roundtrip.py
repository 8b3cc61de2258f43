"""Round trips through the importer (``python -m pipeline.codings import``, branch codings-import):

- export(run) -> import -> the run's segments, to the frame (ELAN both layouts, BORIS);
- simulator truth -> BORIS / ELAN (the perfect coder) -> import -> exactly the simulator's per-frame truth;
- a jittered simulated coder -> BORIS -> import -> exactly that coder's own per-frame table.

Written against the importer's documented interface (issue 20 item 1, pipeline/codings/mapping.py's
ELAN and BORIS options); skipped while the importer is not in this checkout.
"""

from __future__ import annotations

import importlib.util

import pandas as pd
import pytest

from model.taxonomy import MA52

pytestmark = pytest.mark.skipif(importlib.util.find_spec("pipeline.codings.importer") is None,
                                reason="the importer (pipeline.codings.importer, branch codings-import) is not here yet")

from test_codings_export import FPS, SEGMENTS_BY_VIDEO, call, make_run  # noqa: E402
from test_simulated_coders import fake_cohort  # noqa: E402


def identity_mapping(path, elan: str = "") -> str:
    """Every MA-52 name mapped to itself, plus ELAN options (YAML)."""
    lines = ["codes:"] + [f"  {a!r}: {a!r}" for a in MA52.actions]
    if elan:
        lines.append(f"elan: {elan}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def imported(capsys, fmt, files, mapping, manifest, out, *extra):
    code, _, err = call(["import", "--format", fmt, *files, "--mapping", mapping, "--manifest", manifest,
                         "--out", out, *extra], capsys)
    assert code == 0, err
    return pd.read_parquet(out / "events.parquet"), pd.read_parquet(out / "sessions.parquet")


def spans(events, coder=None):
    ev = events if coder is None else events[events["coder"] == coder]
    return sorted(zip(ev["video_id"], ev["action"], ev["start_frame"].astype(int), ev["stop_frame"].astype(int)))


def run_spans():
    return sorted((v, a, s, e) for v, (_, segs) in SEGMENTS_BY_VIDEO.items() for a, s, e, _ in segs)


@pytest.mark.parametrize("layout, elan", [("per-action", "{tiers: behaviour}"),
                                          ("single-tier", "{tiers: coder, coder: annotator}")])
def test_elan_export_import_gives_the_segments_back(tmp_path, capsys, layout, elan):
    run = make_run(tmp_path)
    assert call(["export", "--format", "elan", "--run", run, "--out", tmp_path / "x", "--layout", layout], capsys)[0] == 0
    mapping = identity_mapping(tmp_path / "m.yaml", elan)
    events, sessions = imported(capsys, "elan", [tmp_path / "x"], mapping, run / "manifest.csv", tmp_path / "codings",
                                "--fps", str(FPS))
    assert set(events["coder"]) == {"model:abc123"}
    assert spans(events) == run_spans()


def test_boris_export_import_gives_the_segments_back(tmp_path, capsys):
    run = make_run(tmp_path)
    assert call(["export", "--format", "boris", "--run", run, "--out", tmp_path / "x"], capsys)[0] == 0
    events, sessions = imported(capsys, "boris", [tmp_path / "x" / "model.boris"], identity_mapping(tmp_path / "m.yaml"),
                                run / "manifest.csv", tmp_path / "codings", "--coder", "model:abc123", "--fps", str(FPS))
    assert spans(events) == run_spans()
    assert sorted(sessions["video_id"]) == sorted(SEGMENTS_BY_VIDEO)  # v2: coded, no micro-action


@pytest.mark.parametrize("fmt", ["boris", "elan"])
def test_simulator_truth_through_a_coding_tool_is_the_per_frame_truth(tmp_path, capsys, fmt):
    from simulator.__main__ import main as simulate
    sim = fake_cohort(tmp_path / "sim", groups={"ASD": 2, "TDC": 1}, seconds=90)
    assert simulate(["-q", "coders", "--cohort", str(sim), "--out", str(tmp_path / "c"), "--format", fmt]) == 0
    if fmt == "boris":
        files, extra = [tmp_path / "c" / "boris" / "sim-perfect.boris"], ["--coder", "sim-perfect"]
        mapping = identity_mapping(tmp_path / "m.yaml")
    else:
        files, extra = [tmp_path / "c" / "elan" / "sim-perfect"], []
        mapping = identity_mapping(tmp_path / "m.yaml", "{tiers: behaviour}")
    imported(capsys, fmt, files, mapping, sim / "manifest.csv", tmp_path / "codings", "--fps", "30", *extra)
    # The fake cohort has no video files: a BORIS project carries each media file's length, an EAF file
    # does not, so an ELAN session's coded span ends at its last annotation (docs/codings.md). Frames up
    # to there must be the truth exactly; with the real video the span is the whole video.
    for f in sorted((sim / "truth" / "frames").glob("*.parquet")):
        got = pd.read_parquet(tmp_path / "codings" / "frames" / "sim-perfect" / f.name).reset_index(drop=True)
        want = pd.read_parquet(f)
        if fmt == "elan":
            assert len(got) <= len(want)
            want = want[want["frame"] < len(got)]
        else:
            assert len(got) == len(want)
        pd.testing.assert_frame_equal(got, want.reset_index(drop=True), check_dtype=False)


def test_a_jittered_coder_imports_to_its_own_frames(tmp_path, capsys):
    from simulator.__main__ import main as simulate
    sim = fake_cohort(tmp_path / "sim", groups={"ASD": 2}, seconds=90)
    assert simulate(["-q", "coders", "--cohort", str(sim), "--out", str(tmp_path / "c"), "--format", "boris",
                     "--seed", "4"]) == 0
    events, _ = imported(capsys, "boris", [tmp_path / "c" / "boris" / "sim-coder-1.boris"],
                         identity_mapping(tmp_path / "m.yaml"), sim / "manifest.csv", tmp_path / "codings",
                         "--fps", "30", "--coder", "sim-coder-1")
    planted = pd.read_parquet(tmp_path / "c" / "events.parquet")
    assert spans(events) == spans(planted, "sim-coder-1")
    for f in sorted((tmp_path / "c" / "frames" / "sim-coder-1").glob("*.parquet")):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "codings" / "frames" / "sim-coder-1" / f.name),
                                      pd.read_parquet(f), check_dtype=False)
