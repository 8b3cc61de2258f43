"""Artifact store: permissions of atomically written files (audit 5), the output manifest (audit 4)
and stale staging folders (audit 8)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from pipeline.artifacts import (
    atomic_write_bytes,
    atomic_write_text,
    current_umask,
    sidecar_path,
    write_artifact,
)

REPO = Path(__file__).resolve().parents[1]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o022, 0o002, 0o077])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _segments() -> pd.DataFrame:
    return pd.DataFrame({"video_id": ["v"], "action_id": [3], "action": ["nodding"], "start_s": [0.0],
                         "end_s": [1.0], "score": [0.5]})  # fmt: skip


def test_atomic_writes_follow_the_umask(tmp_path, umask):
    """Audit 5: every atomically written file used to be 0600 whatever the umask."""
    expected = 0o666 & ~umask
    assert _mode(atomic_write_bytes(tmp_path / "a.bin", b"x")) == expected
    assert _mode(atomic_write_text(tmp_path / "b.txt", "x")) == expected
    p = write_artifact(_segments(), tmp_path / "s.parquet", contract="segments", stage="test")
    assert _mode(p) == expected and _mode(sidecar_path(p)) == expected
    # the same permissions a plain open() gives, so colleagues in the group can read shared results
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    assert _mode(plain) == expected


def test_reading_the_umask_leaves_it_unchanged(umask):
    assert current_umask() == umask
    assert os.umask(umask) == umask  # os.umask returns the previous value: still ours


def test_umask_in_a_fresh_process(tmp_path):
    """The CLI path: a process started under umask 002 writes group-writable artifacts."""
    code = (
        "import os, sys; os.umask(0o002); sys.path.insert(0, sys.argv[2]);"
        "from pipeline.artifacts import atomic_write_text; atomic_write_text(sys.argv[1], 'x')"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "f.txt"), str(REPO)], check=True)
    assert _mode(tmp_path / "f.txt") == 0o664


def test_output_manifest_round_trip_keeps_other_tools(tmp_path):
    from pipeline.artifacts import OUTPUT_MANIFEST, read_output_manifest, record_outputs, recorded_outputs

    record_outputs(tmp_path, "tool.a", ["x.csv", tmp_path / "sub" / "y.png"])
    record_outputs(tmp_path, "tool.b", ["z.txt"])
    record_outputs(tmp_path, "tool.a", ["x.csv"])  # replaces tool.a's entry only
    assert read_output_manifest(tmp_path) == {"tool.a": ["x.csv"], "tool.b": ["z.txt"]}
    assert recorded_outputs(tmp_path, "tool.c") == set()
    with pytest.raises(ValueError):
        record_outputs(tmp_path, "tool.a", [tmp_path.parent / "elsewhere.csv"])
    # a corrupt manifest, or one naming paths outside the folder, vouches for nothing outside it
    (tmp_path / OUTPUT_MANIFEST).write_text('{"tools": {"tool.a": {"files": ["../../etc/passwd", "/abs", "ok.csv"]}}}')
    assert recorded_outputs(tmp_path, "tool.a") == {"ok.csv"}
    (tmp_path / OUTPUT_MANIFEST).write_text("{not json")
    assert read_output_manifest(tmp_path) == {}


def test_foreign_files_and_removal_stay_inside_the_folder(tmp_path):
    from pipeline.artifacts import ForeignOutput, check_no_foreign_outputs, foreign_files, remove_outputs
    from pipeline.cli import BadInput

    out = tmp_path / "out"
    (out / "plots").mkdir(parents=True)
    (out / "plots" / "a.png").write_bytes(b"ours")
    (out / "plots" / "mine.png").write_bytes(b"user")
    (out / "report").write_text("a user's file where a folder would go")
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    names = ["plots/a.png", "plots/b.png", "report/x.html", "new.csv"]
    assert foreign_files(out, names, own={"plots/a.png"}) == ["report"]
    assert foreign_files(out, names, own=set()) == ["plots/a.png", "report"]
    with pytest.raises(ForeignOutput) as exc:
        check_no_foreign_outputs(out, names, set(), tool="t")
    assert isinstance(exc.value, BadInput) and str(out / "plots" / "a.png") in str(exc.value) and "1 more" in str(exc.value)
    removed = remove_outputs(out, ["plots/a.png", "../outside.txt", "missing.csv"])
    assert removed == [out / "plots" / "a.png"] and outside.read_text() == "keep"
    assert (out / "plots" / "mine.png").exists()  # a folder still holding a user's file stays
    assert remove_outputs(out, []) == []
    (out / "plots" / "mine.png").unlink()
    (out / "plots" / "b.png").write_bytes(b"ours")
    remove_outputs(out, ["plots/b.png"])
    assert not (out / "plots").exists() and out.is_dir()  # emptied subfolder removed, the folder itself kept


def test_staging_dir_is_removed_whatever_happens(tmp_path):
    from pipeline.artifacts import staging_dir

    with pytest.raises(RuntimeError):
        with staging_dir(tmp_path / "out") as stage:
            (stage / "f").write_text("x")
            assert stage.parent == tmp_path and stage.name.startswith(".out.staging-")
            raise RuntimeError
    assert list(tmp_path.iterdir()) == []
