"""One writer per run folder (pipeline/run_lock.py): refusal naming the holder, stale takeover, CLIs.

Holders are real processes (``python -c`` taking the lock); a stale lock is one whose holder was
SIGKILLed, as a crashed run leaves it.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.run_lock import LOCK_NAME, RunLocked, read_holder, run_lock, run_root_of

ROOT = Path(__file__).resolve().parents[1]

_HOLD = ("import sys, time\n"
         "from pipeline.run_lock import run_lock\n"
         "with run_lock(sys.argv[1], run_id='run-42', command='holder test'):\n"
         "    print('held', flush=True)\n"
         "    time.sleep(600)\n")


@pytest.fixture
def holder(tmp_path):
    """A live process holding ``tmp_path/run``."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path / "run")], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == "held"
    yield proc, tmp_path / "run"
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_a_second_writer_is_refused_with_the_holder_named(holder):
    proc, run = holder
    with pytest.raises(RunLocked) as err:
        with run_lock(run):
            pass
    text = str(err.value)
    assert text.startswith(f"{run.resolve()} is in use by another run (")
    assert f"host {platform.node()}" in text and f"pid {proc.pid}" in text and "run id run-42" in text
    assert "started 20" in text and " UTC" in text and "cancel" in text
    assert proc.poll() is None  # the holder is untouched


def test_a_stale_lock_is_taken_over_and_reported(holder, caplog):
    proc, run = holder
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert read_holder(run).pid == proc.pid  # the killed holder could not clear its record
    with caplog.at_level(logging.WARNING, logger="pipeline.run_lock"), run_lock(run, run_id="run-43") as lock:
        assert lock.took_over is not None and lock.took_over.pid == proc.pid and lock.took_over.run_id == "run-42"
        assert read_holder(run).pid == os.getpid() and read_holder(run).run_id == "run-43"
    assert f"pid {proc.pid}" in caplog.text and "took over" in caplog.text
    assert (run / LOCK_NAME).read_text() == ""  # released: nobody holds it


def test_the_lock_is_reentrant_in_a_process_and_free_after(tmp_path):
    with run_lock(tmp_path / "run") as outer:
        with run_lock(tmp_path / "run") as inner:
            assert inner is outer
        assert json.loads((tmp_path / "run" / LOCK_NAME).read_text())["pid"] == os.getpid()
    with run_lock(tmp_path / "run") as again:
        assert again.took_over is None


def test_a_stage_folder_belongs_to_its_run_folder(tmp_path):
    run = tmp_path / "run"
    (run / "pose").mkdir(parents=True)
    assert run_root_of(run / "pose") is None  # no manifest copy, no lock: not a run folder
    (run / "manifest.csv").write_text("participant_id\n")
    assert run_root_of(run / "pose") == run.resolve() == run_root_of(run)
    assert run_root_of(tmp_path / "elsewhere") is None


def test_a_stage_cli_writing_into_a_held_run_is_refused_with_exit_2(holder):
    proc, run = holder
    (run / "manifest.csv").write_text("participant_id,group,video\n")
    r = subprocess.run([sys.executable, "-m", "reports.build", "--run", str(run), "--out", str(run / "report")],
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and f"pid {proc.pid}" in r.stderr and "run id run-42" in r.stderr
    assert not (run / "report").exists()


@pytest.mark.slow
def test_the_direct_flow_run_is_refused_before_its_server_starts(holder, tmp_path):
    from flow_fixtures import small_cohort

    proc, run = holder
    cohort = small_cohort(tmp_path / "cohort", seconds=1)
    r = subprocess.run([sys.executable, "-m", "flows.cohort_analysis", "--manifest", str(cohort["manifest"]),
                        "--out", str(run), "--weights", str(cohort["weights"]), "--groups", "ASD", "TDC"],
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "is in use by another run" in r.stderr and f"pid {proc.pid}" in r.stderr
    assert not (run / "pose").exists() and not (run / "manifest.csv").exists()
