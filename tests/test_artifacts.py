"""Artifact store: permissions of atomically written files (audit 5) and write errors that name the file
(ownership of output folders: tests/test_ownership.py)."""

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


def test_a_write_error_names_the_output_not_a_temp_file(tmp_path, monkeypatch):
    """Issue 19: a full disk gave "cannot write: No space left on device" without the file's name."""
    import errno

    import pyarrow.parquet as pq

    from pipeline.artifacts import write_artifact

    def full_disk(*args, **kwargs):
        raise OSError("IOError: No space left on device")  # pyarrow's errors carry no errno or file name

    monkeypatch.setattr(pq, "write_table", full_disk)
    target = tmp_path / "out" / "cohort.parquet"
    with pytest.raises(OSError) as exc:
        write_artifact(pd.DataFrame({"x": [1]}), target, contract=None, stage="t")
    assert exc.value.filename == str(target) and "No space left on device" in exc.value.strerror
    assert not target.exists() and not list(target.parent.glob("*.tmp"))

    def enospc(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", enospc)
    with pytest.raises(OSError) as exc:
        atomic_write_text(tmp_path / "out" / "detections.csv", "a,b\n")
    assert exc.value.filename == str(tmp_path / "out" / "detections.csv") and exc.value.errno == errno.ENOSPC
    assert not list((tmp_path / "out").iterdir())
