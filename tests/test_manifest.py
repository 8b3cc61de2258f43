"""Cohort manifest reader: verbatim identifiers, covariates, relative paths, errors naming the row; the groups check."""

import pandas as pd
import pytest

from pipeline.cli import BadInput
from pipeline.manifest import ManifestError, check_manifest_groups, read_manifest


def write(tmp_path, text, name="manifest.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.fixture
def videos(tmp_path):
    d = tmp_path / "videos"
    d.mkdir()
    for n in ("p007_a", "p007_b", "p012", "p013"):
        (d / f"{n}.mp4").write_bytes(b"")
    return d


def test_reads_ids_verbatim_covariates_and_relative_paths(tmp_path, videos):
    p = write(tmp_path, (
        "participant_id,group,video,roi,age,sex,site\n"
        "007,ASD,videos/p007_a.mp4,,9,F,NA\n"
        "007,ASD,videos/p007_b.mp4,\"10,20,300,400\",9,F,NA\n"
        f"0012,TDC,{videos / 'p012.mp4'},,11.5,M,B\n"
    ))
    m = read_manifest(p)
    assert m.videos["participant_id"].tolist() == ["007", "007", "0012"]
    assert m.videos["video_id"].tolist() == ["p007_a", "p007_b", "p012"]
    assert m.videos["video"].tolist()[0] == str((videos / "p007_a.mp4").resolve())
    assert m.videos["roi"].tolist() == [None, (10, 20, 300, 400), None]
    assert m.covariates == ("age", "sex", "site")
    assert m.participants["participant_id"].tolist() == ["007", "0012"]
    assert m.participants["age"].tolist() == [9.0, 11.5] and pd.api.types.is_float_dtype(m.participants["age"])
    assert m.participants["site"].tolist() == ["NA", "B"]  # the text NA stays text, not missing
    assert m.participants["sex"].tolist() == ["F", "M"]


def test_integer_covariate_stays_integer_and_empty_cell_is_missing(tmp_path, videos):
    p = write(tmp_path, "participant_id,group,video,age,iq\n1,ASD,videos/p012.mp4,9,\n2,TDC,videos/p013.mp4,10,98\n")
    m = read_manifest(p)
    assert m.participants["age"].dtype.kind == "i"
    assert pd.isna(m.participants["iq"].iloc[0]) and m.participants["iq"].iloc[1] == 98


def test_parquet_manifest_and_numeric_participant_id_rejected(tmp_path, videos):
    df = pd.DataFrame({"participant_id": ["007"], "group": ["ASD"], "video": ["videos/p012.mp4"], "age": [9]})
    df.to_parquet(tmp_path / "m.parquet")
    m = read_manifest(tmp_path / "m.parquet")
    assert m.participants["participant_id"].tolist() == ["007"] and m.participants["age"].tolist() == [9]
    df.assign(participant_id=[7]).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(ManifestError, match="must be text"):
        read_manifest(tmp_path / "bad.parquet")


@pytest.mark.parametrize(
    "rows,message",
    [
        ("1,ASD,videos/p012.mp4\n2,TDC,videos/missing.mp4\n", r"row 2 \(line 3\): video 'videos/missing.mp4' not found"),
        ("1,ASD,videos/p012.mp4\n2,TDC,videos/p012.mp4\n", r"row 2 \(line 3\): video 'videos/p012.mp4' is listed twice \(also .*row 1"),
        ("1,ASD,videos/p012.mp4\n1,TDC,videos/p013.mp4\n", r"row 2 \(line 3\): participant '1' is in group 'TDC' here but in 'ASD'"),
        ("1,ASD,videos/p012.mp4\n,TDC,videos/p013.mp4\n", r"row 2 \(line 3\): empty 'participant_id'"),
        ("1,ASD,\n", r"row 1 \(line 2\): empty 'video'"),
    ],
    ids=["missing-video", "video-twice", "two-groups", "empty-id", "empty-video"],
)
def test_bad_manifest_errors_name_the_row(tmp_path, videos, rows, message):
    p = write(tmp_path, "participant_id,group,video\n" + rows)
    with pytest.raises(ManifestError, match=message):
        read_manifest(p)


def test_conflicting_covariates_and_bad_roi_and_missing_column(tmp_path, videos):
    p = write(tmp_path, "participant_id,group,video,age\n1,ASD,videos/p007_a.mp4,9\n1,ASD,videos/p007_b.mp4,10\n")
    with pytest.raises(ManifestError, match=r"row 2 \(line 3\): participant '1' has conflicting 'age' values"):
        read_manifest(p)
    p = write(tmp_path, "participant_id,group,video,roi\n1,ASD,videos/p012.mp4,\"1,2,3\"\n")
    with pytest.raises(ManifestError, match=r"row 1 \(line 2\): roi must be x,y,w,h"):
        read_manifest(p)
    p = write(tmp_path, "participant,group,video\n1,ASD,videos/p012.mp4\n")
    with pytest.raises(ManifestError, match="missing column 'participant_id'"):
        read_manifest(p)


def test_same_video_id_from_two_folders_rejected(tmp_path, videos):
    other = tmp_path / "other"
    other.mkdir()
    (other / "p012.mp4").write_bytes(b"")
    p = write(tmp_path, "participant_id,group,video\n1,ASD,videos/p012.mp4\n2,TDC,other/p012.mp4\n")
    with pytest.raises(ManifestError, match="same video id 'p012'"):
        read_manifest(p)


def test_videos_need_not_exist_for_the_aggregation_stage(tmp_path):
    p = write(tmp_path, "participant_id,group,video\n1,ASD,gone/p1.mp4\n")
    assert read_manifest(p, check_videos=False).videos["video_id"].tolist() == ["p1"]


def test_manifest_error_is_bad_input_and_missing_file_is_file_not_found(tmp_path):
    assert issubclass(ManifestError, BadInput)
    with pytest.raises(FileNotFoundError):
        read_manifest(tmp_path / "nope.csv")


def test_white_space_around_ids_is_stripped_with_a_warning_naming_column_and_rows(tmp_path, videos, caplog):
    # "007 " and a video path with a trailing space: without the strip, a second participant 007 and a
    # missing file; with it, one participant with two videos and a warning per column naming the rows.
    p = write(tmp_path, ("participant_id,group,video,age\n"
                         "007,ASD,videos/p007_a.mp4,9\n"
                         "007 ,ASD ,videos/p007_b.mp4 ,9\n"
                         "\t012,TDC,videos/p012.mp4,11\n"))
    with caplog.at_level("WARNING", logger="pipeline.manifest"):
        m = read_manifest(p)
    assert m.participants["participant_id"].tolist() == ["007", "012"]
    assert m.videos["participant_id"].tolist() == ["007", "007", "012"]
    assert m.videos["group"].tolist() == ["ASD", "ASD", "TDC"]
    assert m.videos["video"].tolist()[1] == str((videos / "p007_b.mp4").resolve())
    by_column = {r.args[1]: r.getMessage() for r in caplog.records}
    assert set(by_column) == {"participant_id", "group", "video"}
    assert "2 cells" in by_column["participant_id"] and "row 2 (line 3)" in by_column["participant_id"]
    assert "row 3 (line 4)" in by_column["participant_id"]
    assert "1 cell:" in by_column["video"] and "row 2 (line 3)" in by_column["video"]


def test_clean_manifest_warns_nothing(tmp_path, videos, caplog):
    p = write(tmp_path, "participant_id,group,video\n1,ASD,videos/p012.mp4\n2,TDC,videos/p013.mp4\n")
    with caplog.at_level("WARNING", logger="pipeline.manifest"):
        read_manifest(p)
    assert caplog.records == []


def test_check_manifest_groups_names_the_field_and_every_missing_group(tmp_path, videos):
    m = read_manifest(write(tmp_path, "participant_id,group,video\n1,ASD,videos/p012.mp4\n2,TDC,videos/p013.mp4\n"))
    check_manifest_groups(m, ["ASD", "TDC"])  # present: no error
    check_manifest_groups(m, ["TDC"])
    with pytest.raises(ValueError) as err:
        check_manifest_groups(m, ["ASD", "PSY", "TDC", "OTH"])
    text = str(err.value)
    assert text.startswith("statistics.groups:") and "'PSY', 'OTH'" in text and "groups 'PSY'" in text
    assert "its groups: 'ASD', 'TDC'" in text and str(m.path) in text
    assert isinstance(err.value, BadInput)  # exit 2 in a CLI
    with pytest.raises(ValueError, match=r"group 'asd' not in"):  # group names are matched exactly
        check_manifest_groups(m, ["asd", "TDC"])


def test_the_run_copy_video_id_column_is_not_a_covariate(tmp_path):
    """The flow's RUN/manifest.csv carries video_id: one participant's two videos differ in it, so as a
    covariate it was refused or shown as a demographic; it must match the video's own id."""
    (tmp_path / "m.csv").write_text("participant_id,group,video,video_id,age\n"
                                    "P1,ASD,a.mp4,a,9\nP1,ASD,b.mp4,b,9\nP2,TDC,c.mp4,c,10\n")
    m = read_manifest(tmp_path / "m.csv", check_videos=False)
    assert m.covariates == ("age",) and list(m.videos["video_id"]) == ["a", "b", "c"]
    (tmp_path / "bad.csv").write_text("participant_id,group,video,video_id\nP1,ASD,a.mp4,zzz\n")
    with pytest.raises(ManifestError, match=r"row 1 .*video_id 'zzz' is not the id of video 'a.mp4' \('a'"):
        read_manifest(tmp_path / "bad.csv", check_videos=False)
