"""python -m pipeline.codings export: a run's read-out segments as ELAN (.eaf) and BORIS (.boris) files.

Each export is read back independently of the writers (pympi for ELAN, plain JSON and BORIS's own
START/STOP pairing rule for BORIS) and must give the run's segments to the frame, with their scores;
the EAF passes the EAF 3.0 structure checks (which are themselves checked on broken documents) and
the BORIS project has every key BORIS reads. Round trips through the importer are in
tests/test_codings_roundtrip.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pympi import Elan

from model.taxonomy import MA52
from pipeline.artifacts import write_artifact
from pipeline.codings.__main__ import main
from pipeline.codings.boris_write import BEHAVIOR_KEYS, MEDIA_INFO_KEYS, OBSERVATION_KEYS, PLAYERS, PROJECT_KEYS
from pipeline.codings.elan_write import EAF_VERSION, eaf_problems, score_tier_name
from pipeline.codings.export import export_run, run_detections
from pipeline.contracts import SEGMENTS

REPO = Path(__file__).resolve().parents[1]
FPS = 30.0
# video -> (frame count, [(action, start frame, end frame, score)]); v1 has overlapping actions
SEGMENTS_BY_VIDEO = {
    "v1": (300, [("nodding", 0, 31, 0.91), ("shaking legs", 15, 60, 0.7), ("nodding", 90, 120, 0.55),
                 ("touching nose", 100, 101, 0.62), ("shaking legs", 200, 300, 0.8)]),
    "v2": (150, []),
    "v3 é": (240, [("crossing arms", 7, 233, 0.99)]),
}


def make_run(root: Path, *, model_id: str = "abc123", segments=SEGMENTS_BY_VIDEO, fps: float = FPS) -> Path:
    """A run folder as the flow leaves it, reduced to what the export reads: manifest.csv, the read-out's
    segments (SEGMENTS contract + sidecar with fps and model_id) and the recognition sidecars' frame count."""
    run = root / "run"
    (root / "videos").mkdir(parents=True, exist_ok=True)
    rows = ["participant_id,group,video,video_id"]
    for i, (vid, (n, segs)) in enumerate(segments.items()):
        video = root / "videos" / f"{vid}.mp4"
        rows.append(f"p{i},ASD,{video},{vid}")
        df = pd.DataFrame([{"video_id": vid, "action_id": MA52.index(a), "action": a, "start_s": s / fps,
                            "end_s": e / fps, "score": sc} for a, s, e, sc in segs],
                          columns=["video_id", "action_id", "action", "start_s", "end_s", "score"])
        df = df.astype({"video_id": str, "action": str, "action_id": "int16", "start_s": float, "end_s": float,
                        "score": "float32"})
        write_artifact(df, run / "readout" / "segments" / f"{vid}.parquet", contract=SEGMENTS, stage="aggregate",
                       extra={"fps": fps, "model_id": model_id, "video_id": vid})
        side = run / "recognize" / "windows" / f"{vid}.parquet.json"
        side.parent.mkdir(parents=True, exist_ok=True)
        side.write_text(json.dumps({"video": {"fps": fps, "frame_count": n}}))
    run.mkdir(parents=True, exist_ok=True)
    (run / "manifest.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return run


def expected(vid: str) -> list[tuple[str, int, int, float]]:
    return sorted((a, s, e, round(sc, 3)) for a, s, e, sc in SEGMENTS_BY_VIDEO[vid][1])


def call(argv, capsys):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def read_eaf_segments(path: Path, fps: float = FPS) -> list[tuple[str, int, int, float]]:
    """(value, start frame, end frame, score) of every annotation on the time-aligned tiers, via pympi."""
    eaf = Elan.Eaf(str(path))
    out = []
    for tier in eaf.get_tier_names():
        if eaf.tiers[tier][2].get("PARENT_REF"):
            continue
        scores = {(b, e): float(v) for b, e, v, _ in eaf.get_ref_annotation_data_for_tier(score_tier_name(tier))} \
            if score_tier_name(tier) in eaf.tiers else {}
        for b, e, v in eaf.get_annotation_data_for_tier(tier):  # per-action: empty value, the tier is the code
            out.append((v or tier, round(b / 1000 * fps), round(e / 1000 * fps), scores.get((b, e))))
    return sorted(out)


def boris_pairs(obs: dict, ethogram: dict) -> list[tuple[str, int, int, str]]:
    """BORIS's rule, restated: per subject, code and modifier, rows of a state code alternate START, STOP
    in time order; a point code is one row. Returns (code, start frame, stop frame, start comment)."""
    fps = next(iter(obs["media_info"]["fps"].values()))
    state = {b["code"] for b in ethogram.values() if b["type"] == "State event"}
    open_, out = {}, []
    for t, subject, code, modifier, comment, *_ in sorted(obs["events"], key=lambda r: r[0]):
        key = (subject, code, modifier)
        if code not in state:
            out.append((code, round(t * fps), round(t * fps) + 1, comment))
        elif key in open_:
            t0, c0 = open_.pop(key)
            out.append((code, round(t0 * fps), round(t * fps), c0))
        else:
            open_[key] = (t, comment)
    assert not open_, f"unpaired state events {open_}"
    return sorted(out)


def test_elan_export_gives_the_segments_back_with_scores_and_valid_structure(tmp_path, capsys):
    run = make_run(tmp_path)
    out = tmp_path / "review"
    code, stdout, err = call(["-q", "export", "--format", "elan", "--run", run, "--out", out], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.glob("*.eaf")) == ["v1.eaf", "v2.eaf", "v3 é.eaf"]
    assert stdout.count("wrote ") == 3
    for vid in SEGMENTS_BY_VIDEO:
        path = out / f"{vid}.eaf"
        text = path.read_text(encoding="utf-8")
        assert eaf_problems(text) == []
        assert read_eaf_segments(path) == expected(vid)
        eaf = Elan.Eaf(str(path))
        assert eaf.adocument["VERSION"] == EAF_VERSION
        (media,) = eaf.get_linked_files()
        assert (out / media["RELATIVE_MEDIA_URL"]).resolve() == (tmp_path / "videos" / f"{vid}.mp4").resolve()
        assert media["MEDIA_URL"] == (tmp_path / "videos" / f"{vid}.mp4").absolute().as_uri()
        assert media["MIME_TYPE"] == "video/mp4"
        tiers = [t for t in eaf.get_tier_names() if not eaf.tiers[t][2].get("PARENT_REF")]
        assert tiers == list(MA52.actions)  # per-action layout: one tier per code, empty ones to code into
        assert {eaf.tiers[t][2]["ANNOTATOR"] for t in tiers} == {"model:abc123"}


def test_elan_single_tier_puts_overlaps_on_further_tiers(tmp_path):
    run = make_run(tmp_path)
    export_run(run, tmp_path / "out", fmt="elan", layout="single-tier")
    path = tmp_path / "out" / "v1.eaf"
    assert eaf_problems(path.read_text(encoding="utf-8")) == []
    eaf = Elan.Eaf(str(path))
    main_tiers = [t for t in eaf.get_tier_names() if not eaf.tiers[t][2].get("PARENT_REF")]
    assert main_tiers[0] == "model" and len(main_tiers) == 2  # nodding/shaking legs overlap once at a time
    for t in main_tiers:  # no overlap within a tier (ELAN refuses that)
        spans = sorted((b, e) for b, e, _ in eaf.get_annotation_data_for_tier(t))
        assert all(e0 <= b1 for (_, e0), (b1, _) in zip(spans, spans[1:]))
    assert read_eaf_segments(path) == expected("v1")
    assert [v for _, _, v in eaf.get_annotation_data_for_tier("model")][:1] == ["nodding"]


def test_boris_export_has_every_key_and_gives_the_segments_back(tmp_path, capsys):
    run = make_run(tmp_path)
    out = tmp_path / "review"
    code, stdout, err = call(["export", "--format", "boris", "--run", run, "--out", out], capsys)
    assert code == 0, err
    project = json.loads((out / "model.boris").read_text(encoding="utf-8"))
    assert set(PROJECT_KEYS) <= set(project)
    assert project["project_format_version"] == "7.0"
    for b in project["behaviors_conf"].values():
        assert set(BEHAVIOR_KEYS) <= set(b) and b["type"] in ("State event", "Point event")
        assert b["modifiers"] == {}
    codes = [b["code"] for b in project["behaviors_conf"].values()]
    assert codes == list(MA52.actions)
    keys = [b["key"] for b in project["behaviors_conf"].values() if b["key"]]
    assert len(keys) == len(set(keys)) == 36
    assert list(project["observations"]) == list(SEGMENTS_BY_VIDEO)
    for vid, obs in project["observations"].items():
        assert set(OBSERVATION_KEYS) <= set(obs)
        assert obs["type"] == "MEDIA" and set(obs["file"]) == set(PLAYERS)
        (media,) = obs["file"]["1"]
        assert all(obs["file"][p] == [] for p in PLAYERS[1:])
        assert (out / media).resolve() == (tmp_path / "videos" / f"{vid}.mp4").resolve()
        assert set(MEDIA_INFO_KEYS) <= set(obs["media_info"])
        assert obs["media_info"]["length"] == {media: SEGMENTS_BY_VIDEO[vid][0] / FPS}
        assert obs["media_info"]["fps"] == {media: FPS}
        assert obs["independent_variables"]["coder"] == "model:abc123"
        assert all(len(r) == 6 and isinstance(r[5], int) for r in obs["events"])
        got = [(c, a, b, float(cm.split("=")[1])) for c, a, b, cm in boris_pairs(obs, project["behaviors_conf"])]
        assert got == expected(vid)
        assert [r[0] for r in obs["events"]] == sorted(r[0] for r in obs["events"])
        assert {r[2] for r in obs["events"]} <= set(codes)


def test_mapping_codes_are_written_and_unmapped_actions_keep_their_names(tmp_path, capsys):
    run = make_run(tmp_path)
    mapping = tmp_path / "ethogram.csv"
    mapping.write_text("code,action\nNOD,nodding\nNOD2,nodding\nLEG,shaking legs\nxx,ignore\nARMS,crossing arms\n",
                       encoding="utf-8")
    code, _, err = call(["export", "--format", "boris", "--run", run, "--out", tmp_path / "b", "--mapping", mapping], capsys)
    assert code == 0, err
    assert "'touching nose'" in err  # detected but not in the lab's ethogram: its MA-52 name is used
    project = json.loads((tmp_path / "b" / "model.boris").read_text(encoding="utf-8"))
    assert [b["code"] for b in project["behaviors_conf"].values()] == ["NOD", "LEG", "ARMS", "touching nose"]
    assert [b["description"] for b in project["behaviors_conf"].values()][:1] == ["nodding"]
    code, _, err = call(["export", "--format", "elan", "--run", run, "--out", tmp_path / "e", "--mapping", mapping], capsys)
    assert code == 0, err
    got = read_eaf_segments(tmp_path / "e" / "v1.eaf")
    names = {"NOD": "nodding", "LEG": "shaking legs", "touching nose": "touching nose"}
    assert sorted((names[v], a, b, s) for v, a, b, s in got) == expected("v1")


@pytest.mark.parametrize("mapping, expect", [
    ("code,action\nNOD,nodingg\n", "line 2: action 'nodingg' is not an MA-52 name"),
    ("label,action\nNOD,nodding\n", "no column 'code'"),
])
def test_bad_mapping_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, mapping, expect):
    run = make_run(tmp_path)
    (tmp_path / "m.csv").write_text(mapping)
    code, out, err = call(["export", "--format", "elan", "--run", run, "--out", tmp_path / "o", "--mapping",
                           tmp_path / "m.csv"], capsys)
    assert code == 2 and expect in err and len(err.strip().splitlines()) == 1
    assert not list((tmp_path / "o").glob("*.eaf"))


def test_bad_runs_are_one_line_exit_2_and_nothing_written(tmp_path, capsys):
    code, _, err = call(["export", "--format", "elan", "--run", tmp_path / "nothing", "--out", tmp_path / "o"], capsys)
    assert code == 2 and "no manifest.csv" in err and len(err.strip().splitlines()) == 1
    run = make_run(tmp_path / "a")
    # a second model's read-out in one run
    seg = run / "readout" / "segments" / "v2.parquet"
    side = json.loads(seg.with_name(seg.name + ".json").read_text())
    side["model_id"] = "other"
    seg.with_name(seg.name + ".json").write_text(json.dumps(side))
    code, _, err = call(["export", "--format", "boris", "--run", run, "--out", tmp_path / "o"], capsys)
    assert code == 2 and "model_id 'other' differs from 'abc123'" in err
    assert not (tmp_path / "o" / "model.boris").exists()
    (tmp_path / "file").write_text("x")
    code, _, err = call(["export", "--format", "boris", "--run", run, "--out", tmp_path / "file"], capsys)
    assert code == 2 and "is an existing file" in err


def test_elan_and_boris_exports_share_a_folder_and_a_rerun_replaces_only_its_own(tmp_path):
    run = make_run(tmp_path)
    out = tmp_path / "out"
    export_run(run, out, fmt="elan")
    export_run(run, out, fmt="boris")
    mine = out / "notes.txt"
    mine.write_text("the coder's own file")
    export_run(run, out, fmt="elan", layout="single-tier")
    assert {p.name for p in out.iterdir() if not p.name.startswith(".")} == \
        {"v1.eaf", "v2.eaf", "v3 é.eaf", "model.boris", "notes.txt"}
    assert Elan.Eaf(str(out / "v1.eaf")).get_tier_names()  # replaced by the single-tier export
    assert "model" in Elan.Eaf(str(out / "v1.eaf")).get_tier_names()
    (out / "v2.eaf").write_text("edited by the coder")
    with pytest.raises(Exception, match="v2.eaf"):  # an edited file is the coder's: never overwritten
        export_run(run, out, fmt="elan")
    assert (out / "v2.eaf").read_text() == "edited by the coder"


def test_run_detections_are_codings_of_the_model(tmp_path):
    events, sessions, scores, videos, model_id = run_detections(make_run(tmp_path))
    assert model_id == "abc123" and set(events["coder"]) == {"model:abc123"}
    assert sessions["num_frames"].tolist() == [300, 150, 240]
    assert (sessions["coded_stop_s"] * FPS).round().tolist() == [300, 150, 240]
    v1 = events[events["video_id"] == "v1"]
    assert sorted(zip(v1["action"], v1["start_frame"], v1["stop_frame"])) == [e[:3] for e in expected("v1")]
    got = {(a, f): float(sc) for a, f, sc in zip(v1["action"], v1["start_frame"], scores[v1.index])}
    assert got == pytest.approx({(a, s): sc for a, s, _, sc in SEGMENTS_BY_VIDEO["v1"][1]}, abs=1e-6)


def test_eaf_checks_find_broken_documents(tmp_path):
    make_run(tmp_path)
    export_run(tmp_path / "run", tmp_path / "out", fmt="elan")
    good = (tmp_path / "out" / "v1.eaf").read_text(encoding="utf-8")
    assert eaf_problems(good) == []
    broken = {
        "missing slot": good.replace('TIME_SLOT_ID="ts2"', 'TIME_SLOT_ID="tsX"'),
        "duplicate id": good.replace('ANNOTATION_ID="a3"', 'ANNOTATION_ID="a2"'),
        "reversed": good.replace('<TIME_SLOT TIME_SLOT_ID="ts3" TIME_VALUE="1033"',
                                 '<TIME_SLOT TIME_SLOT_ID="ts3" TIME_VALUE="0"'),
        "no type": good.replace('LINGUISTIC_TYPE_ID="micro-action"', 'LINGUISTIC_TYPE_ID="other"'),
        "bad parent": good.replace('PARENT_REF="nodding"', 'PARENT_REF="nobody"'),
        "bad vocabulary": good.replace('<LINGUISTIC_TYPE LINGUISTIC_TYPE_ID="score"',
                                       '<LINGUISTIC_TYPE CONTROLLED_VOCABULARY_REF="none" LINGUISTIC_TYPE_ID="score"'),
        "order": good.replace("<HEADER", '<LINGUISTIC_TYPE LINGUISTIC_TYPE_ID="x" TIME_ALIGNABLE="true" /><HEADER', 1),
        "no value": good.replace("<ANNOTATION_VALUE />", "", 1),
        "no version": good.replace(' VERSION="3.0"', ""),
        "not xml": good[:-40],
    }
    for what, text in broken.items():
        assert eaf_problems(text), what


def test_python_dash_m_help():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "pipeline.codings", "export", "--help"], capture_output=True, text=True,
                       env=env, cwd=REPO)
    assert r.returncode == 0 and "--layout" in r.stdout and "--mapping" in r.stdout
