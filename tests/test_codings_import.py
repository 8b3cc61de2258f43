"""Codings import: every format parsed to the exact expected events; every error exits 2 and writes nothing.

Fixtures are written here from the formats' documentation (BORIS project JSON and its aggregated /
tabular exports, ELAN EAF 3.0, Observer XT event logs, the plain CSV); videos are three real 4 s
clips at 25 fps (tests/codings_fixtures.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipeline.codings.__main__ import main
from pipeline.codings.contract import CODING_EVENTS, CODING_SESSIONS, session_frames
from pipeline.codings.importer import import_codings
from pipeline.codings.mapping import MappingError, read_mapping
from pipeline.codings.matching import media_key
from pipeline.contracts import conform
from tests.codings_fixtures import FPS, FRAMES, MAPPING_CSV, snapshot, write_cohort


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cohort")
    write_cohort(root)
    (root / "map.csv").write_text(MAPPING_CSV)
    return root


def run(args: list[str]) -> int:
    try:
        return main(args)
    except SystemExit as exc:
        return int(exc.code)


def do_import(cohort: Path, out: Path, fmt: str, *files, mapping=None, **kw):
    return import_codings([str(f) for f in files], format=fmt, mapping=mapping or cohort / "map.csv",
                          manifest=cohort / "manifest.csv", out=out, **kw)


def rows(df: pd.DataFrame, cols=("video_id", "coder", "action", "kind", "start_s", "stop_s")) -> list[tuple]:
    out = []
    for r in df.sort_values(["video_id", "coder", "start_s", "action"]).itertuples(index=False):
        d = r._asdict()
        out.append(tuple(round(d[c], 6) if isinstance(d[c], float) else d[c] for c in cols))
    return out


def check_outputs(out: Path, result) -> None:
    """The written tables obey their contracts and every frames file equals session_frames of the events."""
    ev = pd.read_parquet(out / "events.parquet")
    ses = pd.read_parquet(out / "sessions.parquet")
    conform(ev, CODING_EVENTS)
    conform(ses, CODING_SESSIONS)
    for _, s in ses.iterrows():
        got = pd.read_parquet(out / "frames" / s["coder"] / f"{s['video_id']}.parquet")
        want = session_frames(ev, s)
        assert got.columns.tolist() == want.columns.tolist()
        assert len(got) == len(want)
        for c in got.columns:
            g, w = got[c].tolist(), want[c].tolist()
            assert [None if x is None or x != x else x for x in g] == [None if x is None or x != x else x for x in w], c
    assert len(ev) == len(result.events)
    assert (out / "qc.parquet").exists() and (out / "qc.csv").exists()


# --------------------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------------------
def test_csv_events_points_coders_bom_crlf(cohort, tmp_path):
    src = tmp_path / "c.csv"
    text = ("video,coder,action,start_s,stop_s,modifiers\r\n"
            "C:\\lab\\videos\\P01_A.MP4,anna,NOD,1.0,2.0,left|fast\r\n"
            "P01_a,anna,tap,2.5,,\r\n"
            "p01_a.mp4,Björn,nod,1.1,1.9,\r\n"
            "P02,anna,look,0,1,\r\n")
    src.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    out = tmp_path / "out"
    res = do_import(cohort, out, "csv", src)
    assert rows(res.events) == [
        ("P01_a", "Björn", "nodding", "state", 1.1, 1.9),
        ("P01_a", "anna", "nodding", "state", 1.0, 2.0),
        ("P01_a", "anna", "touching nose", "point", 2.5, 2.5),
    ]
    ev = res.events.set_index("source_ref")
    assert ev.loc["line 2", "modifiers"] == "left|fast"
    assert (ev.loc["line 2", "start_frame"], ev.loc["line 2", "stop_frame"]) == (25, 50)
    assert (ev.loc["line 3", "start_frame"], ev.loc["line 3", "stop_frame"]) == (62, 63)
    # P02 was coded by anna (only an ignored code): a session without events; P01_b: uncoded
    assert set(zip(res.sessions["video_id"], res.sessions["coder"])) == {("P01_a", "anna"), ("P01_a", "Björn"),
                                                                         ("P02", "anna")}
    assert res.ignored == {"look": 1}
    assert res.qc[res.qc["kind"] == "uncoded_video"]["video_id"].tolist() == ["P01_b"]
    s = res.sessions.iloc[0]
    assert (s["fps"], s["num_frames"], s["coded_stop_s"]) == (FPS, FRAMES, FRAMES / FPS)
    check_outputs(out, res)
    det = pd.read_csv(out / "detections" / "anna.csv")
    assert det.to_dict("records") == [
        {"video_id": "P01_a", "t_start": 1.0, "t_end": 2.0, "class": "nodding"},
        {"video_id": "P01_a", "t_start": 2.48, "t_end": 2.52, "class": "touching nose"}]
    frames = pd.read_parquet(out / "frames" / "anna" / "P02.parquet")
    assert len(frames) == FRAMES and (frames["action_id"] == -1).all()


def test_csv_xlsx(cohort, tmp_path):
    src = tmp_path / "c.xlsx"
    pd.DataFrame({"Video": ["P02.mp4", "P02.mp4"], "Coder": ["anna", "anna"], "Action": ["HS", "tap"],
                  "start_s": [0.5, 3.0], "stop_s": [1.25, None]}).to_excel(src, index=False)
    res = do_import(cohort, tmp_path / "out", "csv", src)
    assert rows(res.events) == [("P02", "anna", "shaking head", "state", 0.5, 1.25),
                                ("P02", "anna", "touching nose", "point", 3.0, 3.0)]
    assert res.events["source_ref"].tolist() == ["sheet Sheet1 row 2", "sheet Sheet1 row 3"]


def test_repairs_clip_merge_close(cohort, tmp_path):
    src = tmp_path / "c.csv"
    src.write_text("video,coder,action,start_s,stop_s\n"
                   "P02,anna,NOD,0.5,1.5\nP02,anna,NOD,1.0,2.0\n"    # overlap: merged to 0.5-2.0
                   "P02,anna,HS,3.5,9.0\n"                            # beyond the end (4 s): cut
                   "P02,anna,tap,5.0,\n")                             # starts after the end: dropped
    res = do_import(cohort, tmp_path / "out", "csv", src)
    assert rows(res.events) == [("P02", "anna", "nodding", "state", 0.5, 2.0),
                                ("P02", "anna", "shaking head", "state", 3.5, 4.0)]
    qc = res.qc.set_index("kind")
    assert qc.loc["merged_overlap", "count"] == 1
    assert qc.loc["clipped", "count"] == 2
    assert res.events["source_ref"].tolist()[0] == "line 2 + line 3"


# --------------------------------------------------------------------------------------------------
# BORIS
# --------------------------------------------------------------------------------------------------
def boris_project(media_info=True) -> dict:
    """Two observations: obs 'P01_anna' plays P01_a then P01_b (4 s each) with a 10 s time offset;
    'P02_ben' plays P02 and records its fps as 30."""
    info1 = {"length": {"videos/P01_a.mp4": 4.0, "videos/P01_b.mp4": 4.0},
             "fps": {"videos/P01_a.mp4": 25.0, "videos/P01_b.mp4": 25.0}} if media_info else {}
    return {
        "project_name": "t", "project_format_version": "7.0", "time_format": "s",
        "behaviors_conf": {"0": {"key": "n", "code": "NOD", "type": "State event"},
                           "1": {"key": "t", "code": "tap", "type": "Point event"},
                           "2": {"key": "h", "code": "HS", "type": "State event"}},
        "subjects_conf": {"0": {"key": "1", "name": "Kind ü"}},
        "observations": {
            "P01_anna": {"type": "MEDIA", "time offset": 10.0, "file": {"1": ["videos/P01_a.mp4", "videos/P01_b.mp4"],
                                                                          "2": []},
                         "media_info": info1, "description": "", "date": "2024-01-01T10:00:00",
                         "events": [[11.0, "Kind ü", "NOD", "left", "", 25],
                                    [12.0, "Kind ü", "NOD", "left", "", 50],
                                    [12.5, "", "tap", "", "", 62],
                                    [15.0, "", "HS", "a|b", ""],
                                    [16.0, "", "HS", "a|b", ""]]},
            "P02_ben": {"type": "MEDIA", "time offset": 0, "file": {"1": ["P02.mp4"]},
                        "media_info": {"length": {"P02.mp4": 4.0}, "fps": {"P02.mp4": 30.0}},
                        "events": [[0.2, "", "tap", "", ""]]},
        }}


def test_boris_project_several_files_offset_modifiers(cohort, tmp_path):
    (tmp_path / "m.yaml").write_text(
        "codes: {NOD: nodding, tap: touching nose, HS: shaking head}\n"
        "boris: {coder: observation, pattern: '_(?P<coder>[^_]+)$'}\n")
    src = tmp_path / "p.boris"
    src.write_text(json.dumps(boris_project()), encoding="utf-8")
    out = tmp_path / "out"
    res = do_import(cohort, out, "boris", src, mapping=tmp_path / "m.yaml")
    # observation time - offset 10 s; 15 s -> 5 s on the timeline -> 1 s into P01_b (after P01_a's 4 s)
    assert rows(res.events) == [
        ("P01_a", "anna", "nodding", "state", 1.0, 2.0),
        ("P01_a", "anna", "touching nose", "point", 2.5, 2.5),
        ("P01_b", "anna", "shaking head", "state", 1.0, 2.0),
        ("P02", "ben", "touching nose", "point", 0.2, 0.2),
    ]
    ev = res.events.set_index("code")
    assert ev.loc["NOD", "modifiers"] == "left" and ev.loc["HS", "modifiers"] == "a|b"
    assert ev.loc["NOD", "source_ref"] == "observation P01_anna event 1 - observation P01_anna event 2"
    qc = res.qc
    assert set(qc[qc["kind"] == "media_offset"]["video_id"]) == {"P01_a", "P01_b"}
    assert qc[qc["kind"] == "fps_mismatch"]["video_id"].tolist() == ["P02"]
    assert "30.000 fps" in qc[qc["kind"] == "fps_mismatch"]["detail"].iloc[0]
    check_outputs(out, res)


def test_boris_project_durations_from_the_videos(cohort, tmp_path):
    """Without media_info the earlier file's duration is the manifest video's own (4 s)."""
    src = tmp_path / "p.boris"
    src.write_text(json.dumps(boris_project(media_info=False)), encoding="utf-8")
    res = do_import(cohort, tmp_path / "out", "boris", src, coder="cat")
    assert rows(res.events)[2] == ("P01_b", "cat", "shaking head", "state", 1.0, 2.0)


def test_boris_subject_as_coder(cohort, tmp_path):
    (tmp_path / "m.yaml").write_text("codes: {NOD: nodding, tap: touching nose, HS: shaking head}\n"
                                     "boris: {coder: subject}\n")
    doc = boris_project()
    for ev in doc["observations"]["P01_anna"]["events"] + doc["observations"]["P02_ben"]["events"]:
        ev[1] = "Zoë"
    src = tmp_path / "p.boris"
    src.write_text(json.dumps(doc), encoding="utf-8")
    res = do_import(cohort, tmp_path / "out", "boris", src, mapping=tmp_path / "m.yaml")
    assert set(res.events["coder"]) == {"Zoë"}


AGG_HEADER = ("Observation id\tObservation date\tDescription\tObservation type\tSource\tTime offset (s)\t"
              "Coding duration\tMedia duration (s)\tFPS\tSubject\tObservation duration by subject by observation\t"
              "Behavior\tBehavioral category\tModifiers\tBehavior type\tStart (s)\tStop (s)\tDuration (s)\t"
              "Media file name\tImage index start\tImage index stop\tImage file path start\tImage file path stop\t"
              "Comment start\tComment stop")


def agg_row(obs, subject, code, mods, btype, start, stop, media):
    dur = "NA" if btype == "POINT" else f"{stop - start:.3f}"
    stop_s = "NA" if btype == "POINT" else f"{stop:.3f}"
    return "\t".join([obs, "2024-01-01 10:00:00", "", "Media file", "player #1:P01_a.mp4;P01_b.mp4", "10.0", "7.0",
                      "4.000;4.000", "25.000;25.000", subject, "3", code, "", mods, btype, f"{start:.3f}", stop_s, dur,
                      media, "NA", "NA", "NA", "NA", "", ""])


def test_boris_aggregated_tsv_crlf_bom(cohort, tmp_path):
    lines = [AGG_HEADER,
             agg_row("obs1", "", "NOD", "left", "STATE", 11.0, 12.0, "P01_a.mp4"),
             agg_row("obs1", "", "tap", "", "POINT", 12.5, 12.5, "P01_a.mp4"),
             agg_row("obs1", "", "HS", "", "STATE", 15.0, 16.0, "P01_b.mp4")]
    src = tmp_path / "agg.tsv"
    src.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode("utf-8") + b"\r\n")
    res = do_import(cohort, tmp_path / "out", "boris", src, coder="anna")
    assert rows(res.events) == [("P01_a", "anna", "nodding", "state", 1.0, 2.0),
                                ("P01_a", "anna", "touching nose", "point", 2.5, 2.5),
                                ("P01_b", "anna", "shaking head", "state", 1.0, 2.0)]
    assert res.events.set_index("code").loc["NOD", "modifiers"] == "left"
    assert res.events.set_index("code").loc["NOD", "source_ref"] == "observation obs1 line 2"


def test_boris_aggregated_xlsx_older_columns(cohort, tmp_path):
    """Older exports: 'Media file' and 'Total length', one sheet per observation."""
    src = tmp_path / "agg.xlsx"
    cols = ["Observation id", "Observation date", "Description", "Media file", "Total length", "FPS", "Subject",
            "Behavior", "Behavioral category", "Modifiers", "Behavior type", "Start (s)", "Stop (s)", "Duration (s)",
            "Comment start", "Comment stop"]
    a = pd.DataFrame([["o1", "", "", "P02.mp4", 4.0, 25.0, "", "NOD", "", "", "STATE", 0.25, 1.5, 1.25, "", ""]],
                     columns=cols)
    b = pd.DataFrame([["o2", "", "", "P01_b.mp4", 4.0, 25.0, "", "tap", "", "", "POINT", 3.0, "NA", "NA", "", ""]],
                     columns=cols)
    with pd.ExcelWriter(src) as w:
        a.to_excel(w, sheet_name="o1", index=False)
        b.to_excel(w, sheet_name="o2", index=False)
    res = do_import(cohort, tmp_path / "out", "boris", src, coder="anna")
    assert rows(res.events) == [("P01_b", "anna", "touching nose", "point", 3.0, 3.0),
                                ("P02", "anna", "nodding", "state", 0.25, 1.5)]


TABULAR_BLOCK = ("Observation id\tobs7\n"
                 "Observation date\t2024-01-01 10:00:00\n"
                 "Description\t\n"
                 "Time offset (s)\t1.5\n"
                 "\n"
                 "Media file(s)\n"
                 "Player #1\tP02.mp4\n"
                 "\n"
                 "Time\tMedia file path\tTotal length\tFPS\tSubject\tBehavior\tBehavioral category\tModifiers\t"
                 "Behavior type\tComment\n")


def test_boris_tabular_header_block(cohort, tmp_path):
    body = ("2.000\tP02.mp4\t4.0\t25\t\tNOD\t\tfast\tSTART\t\n"
            "2.500\tP02.mp4\t4.0\t25\t\ttap\t\t\tPOINT\t\n"
            "3.000\tP02.mp4\t4.0\t25\t\tNOD\t\tfast\tSTOP\t\n")
    src = tmp_path / "tab.tsv"
    src.write_text(TABULAR_BLOCK + body, encoding="utf-8")
    res = do_import(cohort, tmp_path / "out", "boris", src, coder="anna")
    assert rows(res.events) == [("P02", "anna", "nodding", "state", 0.5, 1.5),
                                ("P02", "anna", "touching nose", "point", 1.0, 1.0)]
    assert res.events.set_index("code").loc["NOD", "modifiers"] == "fast"
    assert res.qc.set_index("kind").loc["media_offset", "detail"].startswith("media offset of 1.500 s")


# --------------------------------------------------------------------------------------------------
# ELAN
# --------------------------------------------------------------------------------------------------
def eaf(tiers: str, slots: str, media="file:///data/P01_a.mp4", origin="") -> str:
    o = f' TIME_ORIGIN="{origin}"' if origin else ""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<ANNOTATION_DOCUMENT AUTHOR="" DATE="2024-01-01T00:00:00+00:00" FORMAT="3.0" VERSION="3.0"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:noNamespaceSchemaLocation="http://www.mpi.nl/tools/elan/EAFv3.0.xsd">
<HEADER MEDIA_FILE="" TIME_UNITS="milliseconds">
<MEDIA_DESCRIPTOR MEDIA_URL="{media}" MIME_TYPE="video/mp4" RELATIVE_MEDIA_URL="../videos/P01_a.mp4"{o}/>
</HEADER>
<TIME_ORDER>{slots}</TIME_ORDER>
{tiers}
<LINGUISTIC_TYPE LINGUISTIC_TYPE_ID="default-lt" TIME_ALIGNABLE="true" GRAPHIC_REFERENCES="false"/>
<LINGUISTIC_TYPE LINGUISTIC_TYPE_ID="assoc" TIME_ALIGNABLE="false" CONSTRAINTS="Symbolic_Association"/>
<CONSTRAINT STEREOTYPE="Symbolic_Association" DESCRIPTION="1-1"/>
</ANNOTATION_DOCUMENT>
"""


SLOTS = ('<TIME_SLOT TIME_SLOT_ID="ts1" TIME_VALUE="1000"/><TIME_SLOT TIME_SLOT_ID="ts2" TIME_VALUE="2000"/>'
         '<TIME_SLOT TIME_SLOT_ID="ts3" TIME_VALUE="1100"/><TIME_SLOT TIME_SLOT_ID="ts4" TIME_VALUE="1900"/>'
         '<TIME_SLOT TIME_SLOT_ID="ts5" TIME_VALUE="2500"/><TIME_SLOT TIME_SLOT_ID="ts6" TIME_VALUE="2500"/>')
TIERS = """<TIER TIER_ID="anna" LINGUISTIC_TYPE_REF="default-lt" ANNOTATOR="A. N.">
<ANNOTATION><ALIGNABLE_ANNOTATION ANNOTATION_ID="a1" TIME_SLOT_REF1="ts1" TIME_SLOT_REF2="ts2"><ANNOTATION_VALUE>NOD</ANNOTATION_VALUE></ALIGNABLE_ANNOTATION></ANNOTATION>
<ANNOTATION><ALIGNABLE_ANNOTATION ANNOTATION_ID="a3" TIME_SLOT_REF1="ts5" TIME_SLOT_REF2="ts6"><ANNOTATION_VALUE>tap</ANNOTATION_VALUE></ALIGNABLE_ANNOTATION></ANNOTATION>
</TIER>
<TIER TIER_ID="anna-mod" LINGUISTIC_TYPE_REF="assoc" PARENT_REF="anna">
<ANNOTATION><REF_ANNOTATION ANNOTATION_ID="a4" ANNOTATION_REF="a1"><ANNOTATION_VALUE>left</ANNOTATION_VALUE></REF_ANNOTATION></ANNOTATION>
</TIER>
<TIER TIER_ID="Björn" LINGUISTIC_TYPE_REF="default-lt">
<ANNOTATION><ALIGNABLE_ANNOTATION ANNOTATION_ID="a2" TIME_SLOT_REF1="ts3" TIME_SLOT_REF2="ts4"><ANNOTATION_VALUE> nod </ANNOTATION_VALUE></ALIGNABLE_ANNOTATION></ANNOTATION>
</TIER>
<TIER TIER_ID="default" LINGUISTIC_TYPE_REF="default-lt"/>"""


def test_elan_tiers_per_coder_reference_annotations(cohort, tmp_path):
    src = tmp_path / "P01_a.eaf"
    src.write_text(eaf(TIERS, SLOTS), encoding="utf-8")
    out = tmp_path / "out"
    res = do_import(cohort, out, "elan", src)
    assert rows(res.events) == [("P01_a", "Björn", "nodding", "state", 1.1, 1.9),
                                ("P01_a", "anna", "nodding", "state", 1.0, 2.0),
                                ("P01_a", "anna", "touching nose", "point", 2.5, 2.5)]
    ev = res.events.set_index("source_ref")
    assert ev.loc["tier anna annotation a1", "modifiers"] == "left"
    check_outputs(out, res)


def test_elan_dependent_events_and_media_offset(cohort, tmp_path):
    (tmp_path / "m.yaml").write_text("codes: {NOD: nodding, tap: touching nose, left: ignore}\n"
                                     "elan: {dependent: events, coder: annotator}\n")
    src = tmp_path / "x.eaf"
    src.write_text(eaf(TIERS.replace('TIER_ID="Björn"', 'TIER_ID="Björn" ANNOTATOR="A. N."'), SLOTS, origin="500"),
                   encoding="utf-8")
    res = do_import(cohort, tmp_path / "out", "elan", src, mapping=tmp_path / "m.yaml", allow_unmapped=True)
    # TIME_ORIGIN 500 ms: media time = annotation time + 0.5 s; Björn's and anna's nodding overlap -> merged
    assert rows(res.events) == [("P01_a", "A. N.", "nodding", "state", 1.5, 2.5),
                                ("P01_a", "A. N.", "touching nose", "point", 3.0, 3.0)]
    assert res.ignored == {"left": 1}
    assert res.qc.set_index("kind").loc["media_offset", "video_id"] == "P01_a"


def test_elan_unaligned_slots(cohort, tmp_path):
    slots = SLOTS.replace('TIME_SLOT_ID="ts2" TIME_VALUE="2000"', 'TIME_SLOT_ID="ts2"')
    src = tmp_path / "P01_a.eaf"
    src.write_text(eaf(TIERS, slots), encoding="utf-8")
    out = tmp_path / "out"
    assert run(["import", "--format", "elan", str(src), "--mapping", str(cohort / "map.csv"),
                "--manifest", str(cohort / "manifest.csv"), "--out", str(out)]) == 2
    assert not out.exists()
    (tmp_path / "m.yaml").write_text("codes: {NOD: nodding, tap: touching nose}\nelan: {unaligned: interpolate}\n")
    res = do_import(cohort, out, "elan", src, mapping=tmp_path / "m.yaml")
    # ts2 lies between ts1 (1000 ms) and ts3 (1100 ms) in the time order: 1050 ms
    assert rows(res.events)[1] == ("P01_a", "anna", "nodding", "state", 1.0, 1.05)


def test_elan_tiers_per_behaviour(cohort, tmp_path):
    tiers = """<TIER TIER_ID="NOD" LINGUISTIC_TYPE_REF="default-lt" ANNOTATOR="anna">
<ANNOTATION><ALIGNABLE_ANNOTATION ANNOTATION_ID="a1" TIME_SLOT_REF1="ts1" TIME_SLOT_REF2="ts2"><ANNOTATION_VALUE>strong</ANNOTATION_VALUE></ALIGNABLE_ANNOTATION></ANNOTATION>
</TIER>
<TIER TIER_ID="tap" LINGUISTIC_TYPE_REF="default-lt" ANNOTATOR="anna">
<ANNOTATION><ALIGNABLE_ANNOTATION ANNOTATION_ID="a2" TIME_SLOT_REF1="ts5" TIME_SLOT_REF2="ts6"><ANNOTATION_VALUE></ANNOTATION_VALUE></ALIGNABLE_ANNOTATION></ANNOTATION>
</TIER>"""
    (tmp_path / "m.yaml").write_text("codes: {NOD: nodding, tap: touching nose}\nelan: {tiers: behaviour}\n")
    src = tmp_path / "b.eaf"
    src.write_text(eaf(tiers, SLOTS), encoding="utf-8")
    res = do_import(cohort, tmp_path / "out", "elan", src, mapping=tmp_path / "m.yaml")
    assert rows(res.events) == [("P01_a", "anna", "nodding", "state", 1.0, 2.0),
                                ("P01_a", "anna", "touching nose", "point", 2.5, 2.5)]
    assert res.events["modifiers"].tolist()[0] == "strong"


def test_mapping_tier_restriction(cohort, tmp_path):
    (tmp_path / "m.csv").write_text("code,action,tier\nNOD,nodding,anna\nNOD,shaking head,Björn|other\n"
                                    "tap,touching nose,\n")
    src = tmp_path / "P01_a.eaf"
    src.write_text(eaf(TIERS, SLOTS), encoding="utf-8")
    res = do_import(cohort, tmp_path / "out", "elan", src, mapping=tmp_path / "m.csv")
    assert dict(zip(res.events["coder"] + ":" + res.events["code"], res.events["action"])) == {
        "anna:NOD": "nodding", "Björn:nod": "shaking head", "anna:tap": "touching nose"}


# --------------------------------------------------------------------------------------------------
# The Observer XT
# --------------------------------------------------------------------------------------------------
OBS_HEADER = ("Date_Time_Absolute_dmy_hmsf,Date_dmy,Time_Absolute_hms,Time_Absolute_f,Time_Relative_hmsf,"
              "Time_Relative_hms,Time_Relative_f,Time_Relative_sf,Duration_sf,Observation,Event_Log,Subject,"
              "Behavior,Modifier_1,Modifier_2,Event_Type,Comment")


def obs_row(t, obs, log, subject, code, m1, m2, etype):
    return f"01-01-2024 10:00:00.000,01-01-2024,10:00:00,0,00:00:00.000,00:00:00,0,{t},0,{obs},{log},{subject}," \
           f"{code},{m1},{m2},{etype},"


def test_observer_csv(cohort, tmp_path):
    lines = [OBS_HEADER,
             obs_row("1.000", "P01_b", "Event Log anna", "Kind", "NOD", "left", "", "State start"),
             obs_row("1.500", "P01_b", "Event Log anna", "Kind", "tap", "", "", "State point"),
             obs_row("2.250", "P01_b", "Event Log anna", "Kind", "NOD", "left", "", "State stop"),
             obs_row("0.500", "P02", "Event Log ben", "Kind", "HS", "a", "b", "State start"),
             obs_row("0.750", "P02", "Event Log ben", "Kind", "HS", "a", "b", "State stop")]
    (tmp_path / "m.yaml").write_text("codes: {NOD: nodding, tap: touching nose, HS: shaking head}\n"
                                     "observer: {coder: event_log, pattern: 'Event Log (?P<coder>.+)'}\n")
    src = tmp_path / "log.csv"
    src.write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8"))
    out = tmp_path / "out"
    res = do_import(cohort, out, "observer", src, mapping=tmp_path / "m.yaml")
    assert rows(res.events) == [("P01_b", "anna", "nodding", "state", 1.0, 2.25),
                                ("P01_b", "anna", "touching nose", "point", 1.5, 1.5),
                                ("P02", "ben", "shaking head", "state", 0.5, 0.75)]
    assert res.events.set_index("code").loc["HS", "modifiers"] == "a|b"
    check_outputs(out, res)


def test_observer_xlsx(cohort, tmp_path):
    src = tmp_path / "log.xlsx"
    pd.DataFrame({"Observation": ["P02", "P02"], "Subject": ["Zoë", "Zoë"], "Behavior": ["NOD", "NOD"],
                  "Event_Type": ["State start", "State stop"], "Time_Relative_sf": [0.25, 1.0]}).to_excel(src, index=False)
    (tmp_path / "m.yaml").write_text("codes: {NOD: nodding}\nobserver: {coder: subject}\n")
    res = do_import(cohort, tmp_path / "out", "observer", src, mapping=tmp_path / "m.yaml")
    assert rows(res.events) == [("P02", "Zoë", "nodding", "state", 0.25, 1.0)]


# --------------------------------------------------------------------------------------------------
# Matching, mapping, replacing an earlier import
# --------------------------------------------------------------------------------------------------
def test_media_key():
    assert media_key("C:\\Users\\lab\\P01_Visit1.MP4") == "p01_visit1"
    assert media_key("file:///data/x/P01_visit1.mov") == "p01_visit1"
    assert media_key("P01.1") == "p01.1"
    assert media_key("videos/P01.session.mp4") == "p01.session"


def test_unmatched_coding_is_reported(cohort, tmp_path):
    src = tmp_path / "c.csv"
    src.write_text("video,coder,action,start_s,stop_s\nP99.mp4,anna,NOD,1,2\nP02,anna,NOD,1,2\n")
    res = do_import(cohort, tmp_path / "out", "csv", src)
    un = res.qc[res.qc["kind"] == "unmatched_coding"]
    assert un["count"].tolist() == [1] and "P99.mp4" in un["detail"].iloc[0]
    assert len(res.events) == 1


def test_allow_unmapped_drops_and_reports(cohort, tmp_path):
    src = tmp_path / "c.csv"
    src.write_text("video,coder,action,start_s,stop_s\nP02,anna,XX,1,2\nP02,anna,XX,2,3\nP02,anna,NOD,1,2\n")
    res = do_import(cohort, tmp_path / "out", "csv", src, allow_unmapped=True)
    q = res.qc[res.qc["kind"] == "unmapped_code"]
    assert q["count"].tolist() == [2] and "'XX'" in q["detail"].iloc[0]


def test_mapping_refuses_unknown_action_with_suggestion(tmp_path):
    (tmp_path / "m.csv").write_text("code,action\nNOD,noding\n")
    with pytest.raises(MappingError, match="closest MA-52 names: 'nodding'"):
        read_mapping(tmp_path / "m.csv")


def test_mapping_case_and_space_robust(tmp_path):
    (tmp_path / "m.csv").write_bytes(b"\xef\xbb\xbfCode,Action\r\n  Head Nod ,  Nodding \r\n")
    m = read_mapping(tmp_path / "m.csv")
    assert m.lookup("head   nod").action == "nodding"
    assert m.lookup("HEAD NOD").action == "nodding"


def test_reimport_replaces_earlier_import(cohort, tmp_path):
    out = tmp_path / "out"
    a = tmp_path / "a.csv"
    a.write_text("video,coder,action,start_s,stop_s\nP02,anna,NOD,1,2\nP01_a,ben,NOD,1,2\n")
    do_import(cohort, out, "csv", a)
    assert (out / "frames" / "ben" / "P01_a.parquet").exists()
    (out / "notes.txt").write_text("mine")
    b = tmp_path / "b.csv"
    b.write_text("video,coder,action,start_s,stop_s\nP02,anna,HS,1,2\n")
    do_import(cohort, out, "csv", b)
    assert not (out / "frames" / "ben").exists() and not (out / "detections" / "ben.csv").exists()
    assert pd.read_parquet(out / "events.parquet")["action"].tolist() == ["shaking head"]
    assert (out / "notes.txt").read_text() == "mine"


# --------------------------------------------------------------------------------------------------
# Errors: exit 2, one line, nothing written
# --------------------------------------------------------------------------------------------------
ERRORS = {
    "unmapped": ("csv", "c.csv", "video,coder,action,start_s,stop_s\nP02,anna,XX,1,2\nP02,anna,XX,3,4\n",
                 "1 code(s) not in the mapping"),
    "reversed": ("csv", "c.csv", "video,coder,action,start_s,stop_s\nP02,anna,NOD,2,1\n", "reversed interval"),
    "negative": ("csv", "c.csv", "video,coder,action,start_s,stop_s\nP02,anna,NOD,-1,1\n", "negative time"),
    "no coder": ("csv", "c.csv", "video,action,start_s,stop_s\nP02,NOD,1,2\n", "names no coder"),
    "bad time": ("csv", "c.csv", "video,coder,action,start_s,stop_s\nP02,anna,NOD,one,2\n", "line 2: start_s 'one'"),
    "stop without start": ("observer", "log.csv",
                           "Observation,Behavior,Event_Type,Time_Relative_sf\nP02,NOD,State stop,1.0\n",
                           "STOP of 'NOD' without a START"),
    "start without stop": ("observer", "log.csv",
                           "Observation,Behavior,Event_Type,Time_Relative_sf\nP02,NOD,State start,1.0\n",
                           "START of 'NOD' without a STOP"),
    "bad event type": ("observer", "log.csv",
                       "Observation,Behavior,Event_Type,Time_Relative_sf\nP02,NOD,Begin,1.0\n", "Event_Type 'Begin'"),
    "not boris": ("boris", "p.boris", "{\"x\": 1}", "not a BORIS project"),
    "not eaf": ("elan", "x.eaf", "<nope", "not a readable ELAN .eaf"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_errors_exit_2_one_line_nothing_written(cohort, tmp_path, capsys, case):
    fmt, name, text, message = ERRORS[case]
    src = tmp_path / name
    src.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    before = snapshot(out)
    args = ["import", "--format", fmt, str(src), "--mapping", str(cohort / "map.csv"),
            "--manifest", str(cohort / "manifest.csv"), "--out", str(out)]
    if fmt == "observer" or fmt == "boris":
        args += ["--coder", "anna"]
    assert run(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert snapshot(out) == before


def test_close_open_states(cohort, tmp_path):
    src = tmp_path / "log.csv"
    src.write_text("Observation,Behavior,Event_Type,Time_Relative_sf\nP02,NOD,State start,1.0\n")
    res = do_import(cohort, tmp_path / "out", "observer", src, coder="anna", close_open_states=True)
    assert rows(res.events) == [("P02", "anna", "nodding", "state", 1.0, 4.0)]
    assert res.qc.set_index("kind").loc["closed_open_state", "count"] == 1


def test_coded_twice_is_an_error(cohort, tmp_path, capsys):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("video,coder,action,start_s,stop_s\nP02,anna,NOD,1,2\n")
    b.write_text("video,coder,action,start_s,stop_s\nP02.mp4,Anna,NOD,1,2\n".replace("Anna", "anna"))
    out = tmp_path / "out"
    assert run(["import", "--format", "csv", str(a), str(b), "--mapping", str(cohort / "map.csv"),
                "--manifest", str(cohort / "manifest.csv"), "--out", str(out)]) == 2
    assert "coded twice by coder 'anna'" in capsys.readouterr().err
    assert not out.exists()


def test_boris_unknown_code_and_unknown_duration(cohort, tmp_path, capsys):
    doc = boris_project()
    doc["observations"]["P01_anna"]["events"].append([17.0, "", "JUMP", "", ""])
    src = tmp_path / "p.boris"
    src.write_text(json.dumps(doc))
    out = tmp_path / "out"
    base = ["--mapping", str(cohort / "map.csv"), "--manifest", str(cohort / "manifest.csv"), "--out", str(out),
            "--coder", "anna"]
    assert run(["import", "--format", "boris", str(src), *base]) == 2
    assert "behaviour 'JUMP' is not in the project's ethogram" in capsys.readouterr().err
    # the first file matches no manifest video and the project states no duration: refused
    doc = boris_project(media_info=False)
    doc["observations"]["P01_anna"]["file"]["1"][0] = "elsewhere/unknown.mp4"
    src.write_text(json.dumps(doc))
    assert run(["import", "--format", "boris", str(src), *base]) == 2
    assert "the duration of 'elsewhere/unknown.mp4'" in capsys.readouterr().err
    assert not out.exists()


def test_cli_help():
    with pytest.raises(SystemExit) as exc:
        main(["import", "--help"])
    assert exc.value.code == 0
