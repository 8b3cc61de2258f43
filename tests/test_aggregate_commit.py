"""The read-out's outputs are committed together (issue 19, item 8): a fault or a kill mid-set never
leaves a mix that looks valid, no staging or temp files accumulate, write errors name the file, and a
user's file under an output name is refused."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from pipeline import aggregate
from pipeline.artifacts import read_sidecar

from windows_fixtures import write_windows  # noqa: E402  (tests/ helper)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _run(argv, capsys):
    try:
        code = aggregate.main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def run_args(tmp_path):
    w = tmp_path / "windows"
    write_windows(w, "a", [0, 5], [5, 10], [[.9, .05, .05], [.2, .7, .1]])
    write_windows(w, "b", [0], [10], [[.05, .9, .05]])
    (tmp_path / "m.csv").write_text("participant_id,group,video\n1,ASD,a.mp4\n2,TDC,b.mp4\n")
    return ["--windows", w, "--manifest", tmp_path / "m.csv", "--out", tmp_path / "out", "-q"]


def _hidden_leftovers(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                  if p.name.startswith(".staging") or p.name.endswith(".tmp"))


def test_a_write_fault_mid_set_keeps_the_previous_set_and_names_the_file(run_args, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    assert _run(run_args, capsys)[0] == 0
    before = _snapshot(out)
    real = aggregate.write_artifact

    def full_after_first(data, path, **kw):
        if Path(path).name == "bouts.parquet":  # segments and cohort.parquet are staged by now
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(data, path, **kw)

    monkeypatch.setattr(aggregate, "write_artifact", full_after_first)
    code, stdout, stderr = _run(run_args + ["--threshold", "0.3"], capsys)  # another read-out: every file changes
    assert code == 2 and stdout == ""
    assert stderr == f"pipeline.aggregate: error: cannot write {out / 'bouts.parquet'}: No space left on device\n"
    assert _snapshot(out) == before  # the previous complete set, byte for byte
    assert _hidden_leftovers(out) == []


def test_a_kill_mid_commit_leaves_no_valid_looking_mix_and_the_rerun_recovers(run_args, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    assert _run(run_args, capsys)[0] == 0
    old = {n: read_sidecar(out / n)["readout"]["threshold"] for n in ("cohort.parquet", "bouts.parquet")}
    real, moved = os.replace, []

    def killed_after_one(src, dst):
        if ".staging-" in str(src) and ".staging-" not in str(dst):  # moving the staged set in
            if any(Path(d).name == "cohort.parquet" for d in moved):
                raise KeyboardInterrupt  # SIGINT / a kill between two renames
            moved.append(dst)
        return real(src, dst)

    monkeypatch.setattr(os, "replace", killed_after_one)
    with pytest.raises(KeyboardInterrupt):
        aggregate.main([str(a) for a in run_args + ["--threshold", "0.3"]])
    monkeypatch.setattr(os, "replace", real)
    assert old == {"cohort.parquet": 0.5, "bouts.parquet": 0.5}
    # the new cohort.parquet is in; no table of either run carries a sidecar that vouches for a mix
    for name in ("cohort.parquet", "bouts.parquet", "exclusions.parquet"):
        assert read_sidecar(out / name) is None, name
    assert _hidden_leftovers(out) == []  # the staging folder went with the interrupted run
    code, _, _ = _run(run_args + ["--threshold", "0.3"], capsys)
    assert code == 0
    assert {read_sidecar(out / n)["readout"]["threshold"] for n in ("cohort.parquet", "bouts.parquet",
                                                                    "exclusions.parquet")} == {0.3}
    manifest = json.loads((out / ".aggregate.outputs.json").read_text())
    assert manifest["pending"] == {} and set(manifest["files"]) == set(_snapshot(out)) - {".aggregate.outputs.json"}


def test_stale_staging_of_a_killed_run_is_removed(run_args, tmp_path, capsys):
    import platform
    import re
    import subprocess
    import sys

    out = tmp_path / "out"
    host = re.sub(r"[^A-Za-z0-9]", "_", platform.node() or "host")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    left = out / f".staging-aggregate-{host}-{dead}-x1y2z3"
    (left / "segments").mkdir(parents=True)
    (left / "cohort.parquet").write_bytes(b"half")
    assert _run(run_args, capsys)[0] == 0
    assert _hidden_leftovers(out) == []


@pytest.mark.parametrize("name", ["cohort.parquet", "detections.csv", "segments/a.parquet"])
def test_a_user_file_under_an_output_name_is_refused(run_args, tmp_path, capsys, name):
    out = tmp_path / "out"
    (out / name).parent.mkdir(parents=True, exist_ok=True)
    (out / name).write_bytes(b"the user's own")
    (out / "notes.txt").write_text("mine")
    before = _snapshot(out)
    code, stdout, stderr = _run(run_args, capsys)
    assert code == 2 and stdout == "" and stderr.count("\n") == 1
    assert stderr.startswith(f"pipeline.aggregate: error: {out / name}") and "is in the way" in stderr
    assert _snapshot(out) == before and _hidden_leftovers(out) == []


def test_an_old_folder_without_manifest_is_migrated(run_args, tmp_path, capsys):
    """Folders from before output manifests: our sidecars prove our files; a stale segment of a video that
    left the manifest is retired, a user's file in segments/ stays."""
    out = tmp_path / "out"
    assert _run(run_args, capsys)[0] == 0
    (out / ".aggregate.outputs.json").unlink()
    (out / "segments" / "notes.txt").write_text("mine")
    (tmp_path / "m.csv").write_text("participant_id,group,video\n1,ASD,a.mp4\n")
    assert _run(run_args, capsys)[0] == 0
    assert sorted(p.name for p in (out / "segments").iterdir()) == ["a.parquet", "a.parquet.json", "notes.txt"]
    recorded = set(json.loads((out / ".aggregate.outputs.json").read_text())["files"])
    assert "segments/a.parquet" in recorded and "segments/notes.txt" not in recorded
