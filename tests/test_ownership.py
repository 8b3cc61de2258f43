"""Output ownership (pipeline.ownership): the manifest that is provably ours, the one removal function,
the check before writing, and staged sets that are committed together (issue 19, item 5 and 8)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pipeline.artifacts import sha256_file
from pipeline.cli import BadInput
from pipeline.ownership import (
    FORMAT,
    VERSION,
    ForeignOutput,
    StagedSet,
    check_free,
    manifest_path,
    read_manifest,
    remove_owned,
    stale_staging_dirs,
    status,
    update_manifest,
)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_manifest_round_trip_records_fingerprints_and_confines_paths(tmp_path):
    _write(tmp_path / "a.csv", "1,2\n")
    _write(tmp_path / "sub" / "b.png", "png")
    m = update_manifest(tmp_path, "tool", add=["a.csv", tmp_path / "sub" / "b.png"])
    doc = json.loads(manifest_path(tmp_path, "tool").read_text())
    assert (doc["format"], doc["version"], doc["stage"]) == (FORMAT, VERSION, "tool")
    assert doc["files"]["sub/b.png"]["sha256"] == sha256_file(tmp_path / "sub" / "b.png")
    assert read_manifest(tmp_path, "tool").files == m.files
    with pytest.raises(ValueError):
        update_manifest(tmp_path, "tool", add=[tmp_path.parent / "elsewhere.csv"])
    # another stage's manifest in the same folder is its own
    assert read_manifest(tmp_path, "other").files == {}
    # entries that leave the folder, a wrong format key or version, or another stage's name: nothing
    doc["files"]["../../etc/passwd"] = doc["files"]["a.csv"]
    doc["files"]["/abs"] = doc["files"]["a.csv"]
    manifest_path(tmp_path, "tool").write_text(json.dumps(doc))
    assert set(read_manifest(tmp_path, "tool").files) == {"a.csv", "sub/b.png"}
    for key, value in (("format", 1), ("version", VERSION + 1), ("stage", "other")):
        manifest_path(tmp_path, "tool").write_text(json.dumps({**doc, key: value}))
        assert read_manifest(tmp_path, "tool").files == {}
    manifest_path(tmp_path, "tool").write_text("{not json")
    assert read_manifest(tmp_path, "tool").files == {}


def test_remove_owned_removes_only_unchanged_recorded_files_inside_the_folder(tmp_path):
    out = tmp_path / "out"
    ours = _write(out / "plots" / "a.png", "ours")
    edited = _write(out / "plots" / "b.png", "ours too")
    user = _write(out / "plots" / "mine.png", "the user's")
    outside = _write(tmp_path / "outside.txt", "keep")
    update_manifest(out, "t", add=["plots/a.png", "plots/b.png"])
    edited.write_text("edited by the user")  # same name, other content: theirs now
    # a forged entry pointing outside, hand-written into a manifest of the right format
    doc = json.loads(manifest_path(out, "t").read_text())
    doc["files"]["../outside.txt"] = {"size": 4, "mtime_ns": outside.stat().st_mtime_ns,
                                      "sha256": sha256_file(outside)}
    manifest_path(out, "t").write_text(json.dumps(doc))
    r = remove_owned(out, "t")
    assert r.removed == [ours] and r.kept == [edited]
    assert edited.read_text() == "edited by the user" and user.exists() and outside.read_text() == "keep"
    assert read_manifest(out, "t").files == {}  # the edited file is no longer recorded as ours
    # a folder emptied by a removal goes; the output folder itself stays
    user.unlink()
    edited.unlink()
    _write(out / "deep" / "x" / "c.txt", "c")
    update_manifest(out, "t", add=["deep/x/c.txt"])
    assert remove_owned(out, "t", ["deep/x/c.txt", "not/recorded.txt"]).removed == [out / "deep" / "x" / "c.txt"]
    assert not (out / "deep").exists() and out.is_dir()


def test_a_symlink_never_leads_a_removal_out_of_the_folder(tmp_path):
    out = tmp_path / "out"
    target = _write(tmp_path / "elsewhere" / "a.png", "user data outside")
    (out).mkdir()
    _write(out / "plots" / "a.png", "ours")
    update_manifest(out, "t", add=["plots/a.png"])
    (out / "plots" / "a.png").unlink()
    (out / "plots").rmdir()
    (out / "plots").symlink_to(tmp_path / "elsewhere")  # now plots/a.png resolves to the user's file
    assert remove_owned(out, "t").removed == []
    assert target.read_text() == "user data outside"
    assert status(read_manifest(out, "t"), "plots/a.png") == "blocked"


def test_check_free_refuses_user_files_and_adopts_only_what_the_caller_vouches_for(tmp_path):
    out = tmp_path / "out"
    _write(out / "ours.csv", "x")
    update_manifest(out, "t", add=["ours.csv"])
    _write(out / "index.html", "the user's page")
    _write(out / "report", "a file where a folder would go")
    names = ["ours.csv", "new.csv", "index.html", "report/x.html"]
    with pytest.raises(ForeignOutput) as exc:
        check_free(out, "t", names)
    assert isinstance(exc.value, BadInput) and "\n" not in str(exc.value)
    assert str(exc.value).startswith(f"{out / 'index.html'} (and 1 more) is in the way")
    with pytest.raises(ForeignOutput) as exc:  # a file where a folder must go is never adoptable
        check_free(out, "t", names, adopt=lambda rel: True)
    assert str(exc.value).startswith(f"{out / 'report'} is in the way")
    (out / "report").unlink()
    assert check_free(out, "t", names, adopt=lambda rel: rel == "index.html") == ["index.html"]
    # a recorded file the user changed counts as theirs
    (out / "ours.csv").write_text("changed")
    with pytest.raises(ForeignOutput, match="ours.csv"):
        check_free(out, "t", ["ours.csv"])


def _staged(st: StagedSet, rel: str, text: str) -> None:
    with st.writing(rel) as path:
        path.write_text(text)


def test_a_staged_set_is_moved_in_whole_and_the_old_set_leaves(tmp_path):
    out = tmp_path / "out"
    _write(out / "notes.txt", "the user's")
    with StagedSet(out, "t") as st:
        for rel in ("a.parquet", "a.parquet.json", "segments/v1.parquet", "old_only.csv"):
            _staged(st, rel, f"1:{rel}")
        st.commit()
    with StagedSet(out, "t") as st:
        for rel in ("a.parquet", "a.parquet.json", "segments/v2.parquet"):
            _staged(st, rel, f"2:{rel}")
        final = st.commit(keep=["segments/v1.parquet"])
    # data files first, sidecars last
    assert [p.name for p in final] == ["a.parquet", "v2.parquet", "a.parquet.json"]
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert files == {"notes.txt", ".t.outputs.json", "a.parquet", "a.parquet.json", "segments/v1.parquet",
                     "segments/v2.parquet"}
    assert (out / "a.parquet").read_text() == "2:a.parquet" and (out / "notes.txt").read_text() == "the user's"
    m = read_manifest(out, "t")
    assert set(m.files) == files - {"notes.txt", ".t.outputs.json"} and m.pending == {}


def test_a_fault_mid_set_leaves_the_previous_set_and_no_staging(tmp_path):
    out = tmp_path / "out"
    with StagedSet(out, "t") as st:
        _staged(st, "cohort.parquet", "old cohort")
        _staged(st, "bouts.parquet", "old bouts")
        st.commit()
    before = {p.name: p.read_text() for p in out.iterdir() if p.is_file()}
    with pytest.raises(OSError) as exc:
        with StagedSet(out, "t") as st:
            _staged(st, "cohort.parquet", "new cohort")
            with st.writing("bouts.parquet"):
                raise OSError(28, "No space left on device")
    assert exc.value.filename == str(out / "bouts.parquet") and exc.value.strerror == "No space left on device"
    assert {p.name: p.read_text() for p in out.iterdir() if p.is_file()} == before
    assert [p.name for p in out.iterdir() if p.is_dir()] == []


def test_a_commit_killed_halfway_leaves_only_files_the_manifest_vouches_for(tmp_path, monkeypatch):
    out = tmp_path / "out"
    with StagedSet(out, "t") as st:
        for rel in ("cohort.parquet", "bouts.parquet", "agreement.csv"):
            _staged(st, rel, f"old {rel}")
        st.commit()
    real_replace = os.replace
    moved = []

    def dies_after_one(src, dst):
        if ".staging-" in str(src) and ".staging-" not in str(dst):  # the set's renames into the folder
            if moved:
                raise KeyboardInterrupt  # the run is killed between two renames
            moved.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", dies_after_one)
    with pytest.raises(KeyboardInterrupt):
        with StagedSet(out, "t") as st:
            _staged(st, "cohort.parquet", "new cohort")
            _staged(st, "bouts.parquet", "new bouts")
            st.commit()
    monkeypatch.setattr(os, "replace", real_replace)
    assert (out / "cohort.parquet").read_text() == "new cohort"
    assert (out / "bouts.parquet").read_text() == "old bouts.parquet"
    m = read_manifest(out, "t")
    assert all(m.owns(n) for n in ("cohort.parquet", "bouts.parquet", "agreement.csv"))
    # the next run proceeds (nothing is foreign) and ends with a clean record of its set
    with StagedSet(out, "t") as st:
        _staged(st, "cohort.parquet", "third")
        st.commit()
    assert {p.name for p in out.iterdir()} == {"cohort.parquet", ".t.outputs.json"}
    assert set(read_manifest(out, "t").files) == {"cohort.parquet"}


def test_a_staged_set_refuses_a_user_file_and_changes_nothing(tmp_path):
    out = tmp_path / "out"
    _write(out / "cohort.parquet", "the user's")
    with pytest.raises(ForeignOutput, match="cohort.parquet"):
        with StagedSet(out, "t") as st:
            _staged(st, "cohort.parquet", "ours")
            st.commit()
    assert (out / "cohort.parquet").read_text() == "the user's"
    assert {p.name for p in out.iterdir()} == {"cohort.parquet"}


def test_stale_staging_folders_of_killed_runs_are_cleaned(tmp_path):
    import platform
    import re
    import subprocess
    import sys

    host = re.sub(r"[^A-Za-z0-9]", "_", platform.node() or "host")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    out = tmp_path / "out"
    killed = out / f".staging-t-{host}-{dead}-abc123"
    live = out / f".staging-t-{host}-{os.getpid()}-def456"
    other_stage = out / f".staging-u-{host}-{dead}-abc123"
    legacy = tmp_path / ".out.staging-k3j_x9q2"  # beside the folder, from before staging moved inside
    for d in (killed, live, other_stage, legacy):
        d.mkdir(parents=True)
    assert set(stale_staging_dirs(out, "t")) == {killed, legacy}
    with StagedSet(out, "t") as st:
        assert st.path.parent == out and st.path.name.startswith(".staging-t-")
    assert not killed.exists() and not legacy.exists() and live.exists() and other_stage.exists()
    assert [p for p in out.iterdir() if p.name.startswith(".staging-t-")] == [live]


def test_names_are_relative_and_paths_must_lie_inside(tmp_path, monkeypatch):
    """A str is a name inside the folder (even one that starts like the folder); a Path must lie inside it."""
    monkeypatch.chdir(tmp_path)
    folder = Path("out")
    _write(folder / "out" / "x.csv", "nested")
    _write(folder / "outdoor.csv", "beside")
    m = update_manifest(folder, "t", add=["out/x.csv", "outdoor.csv", folder / "outdoor.csv",
                                          (tmp_path / "out" / "out" / "x.csv")])
    assert set(m.files) == {"out/x.csv", "outdoor.csv"}
    for bad in ("../x.csv", "/etc/passwd", Path("elsewhere.csv")):
        with pytest.raises(ValueError):
            update_manifest(folder, "t", add=[bad])
