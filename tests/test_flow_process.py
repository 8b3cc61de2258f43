"""The direct flow run as a process: its temporary Prefect server dies with it, its console, its weights.

Slow tests run the real CLI (``python -m flows.cohort_analysis``) as a subprocess on a small simulated
cohort (real MP4s that MediaPipe poses) with a small Micro-DualNet checkpoint, against the temporary
server it starts itself (``PREFECT_API_URL`` unset, ``PREFECT_HOME`` in a temporary folder). The others
use real logging records, a real server process and the real parameter model.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import psutil
import pytest
from prefect.settings import PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW, temporary_settings

from flows.cohort_analysis import resolve_weights
from flows.console import FlowConsoleHandler, flow_errors, one_line
from flows.params import CohortAnalysisParams

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------------
# --weights: no default
# --------------------------------------------------------------------------------------------------
def test_a_run_without_weights_is_refused_with_where_a_model_comes_from():
    with pytest.raises(FileNotFoundError) as err:
        resolve_weights(None)
    text = str(err.value)
    assert text.startswith("params.weights:") and "python -m recipes.train" in text and "docs/training.md" in text
    assert "MA-52" in text and "coded sessions" in text and "--weights demo" in text
    with pytest.raises(FileNotFoundError, match="checkpoint not found: .*nope.pt.*recipes.train"):
        resolve_weights(Path("nope.pt"))


def _direct_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cohort_analysis", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})


def _manifest(path: Path, columns=("participant_id", "group", "video")) -> Path:
    rows = {"participant_id": ["A1", "T1"], "group": ["ASD", "TDC"], "video": ["a1.mp4", "t1.mp4"]}
    pd.DataFrame({c: rows[c] for c in columns}).to_csv(path, index=False)
    return path


def test_the_direct_run_names_a_missing_manifest_column_and_exits_2_writing_nothing(tmp_path):
    manifest = _manifest(tmp_path / "m.csv", columns=("participant_id", "video"))
    r = _direct_run("--manifest", str(manifest), "--out", str(tmp_path / "out"), "--weights", "demo")
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]  # one line
    assert "params.manifest:" in r.stderr and "missing column 'group'" in r.stderr
    assert not (tmp_path / "out").exists()


def test_the_direct_run_names_a_corrupt_checkpoint_before_writing_anything(tmp_path):
    from recipes.demo_model import demo_checkpoint_path

    manifest = _manifest(tmp_path / "m.csv")
    corrupt = tmp_path / "model.pt"
    corrupt.write_bytes(demo_checkpoint_path().read_bytes()[:4096])  # cut off, as by a failed copy
    r = _direct_run("--manifest", str(manifest), "--out", str(tmp_path / "out"), "--weights", str(corrupt),
                    "--groups", "ASD", "TDC")
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("flows.cohort_analysis: error: params.weights:") and str(corrupt) in r.stderr
    assert not (tmp_path / "out").exists()


def test_demo_names_the_demo_model_and_a_file_is_itself(tmp_path):
    from recipes.demo_model import demo_checkpoint_path

    assert resolve_weights("demo") == resolve_weights(Path("demo")) == demo_checkpoint_path()
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"x")
    assert resolve_weights(ckpt) == ckpt


def test_the_weights_field_says_it_is_required_and_what_demo_means():
    field = CohortAnalysisParams.model_json_schema()["properties"]["weights"]
    assert "required" in field["description"] and "'demo'" in field["description"]
    assert "simulated" in field["description"] and "recipes.train" in field["description"]
    assert "default: the built-in demo model" not in field["description"]


# --------------------------------------------------------------------------------------------------
# The console: real records through real loggers
# --------------------------------------------------------------------------------------------------
@pytest.fixture
def console():
    """A FlowConsoleHandler on the root logger (INFO), writing to a buffer; the logging setup is restored."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    buf = io.StringIO()
    handler = FlowConsoleHandler(buf)
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.handlers, root.level = [handler], logging.INFO
    prefect_level = logging.getLogger("prefect").level
    logging.getLogger("prefect").setLevel(logging.INFO)  # as Prefect's logging.yml does
    try:
        # records outside a flow run: Prefect's API handler (which sees them first) would warn
        with temporary_settings(updates={PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW: "ignore"}):
            yield buf
    finally:
        root.handlers, root.level = saved
        logging.getLogger("prefect").setLevel(prefect_level)


def _task_logger(task: str) -> logging.LoggerAdapter:
    """What Prefect's task_run_logger gives a task: its logger with the run's names as record attributes."""
    return logging.LoggerAdapter(logging.getLogger("prefect.task_runs"),
                                 {"task_name": task, "task_run_name": f"{task}-0", "flow_run_name": "f"})


def test_console_drops_http_requests_and_prefect_info_and_counts_finished_tasks(console):
    logging.getLogger("httpx").info('HTTP Request: POST http://127.0.0.1:1/api/task_runs/ "HTTP/1.1 201 Created"')
    logging.getLogger("prefect.flow_runs").info("Beginning flow run 'x' for flow 'cohort-analysis'")
    for task in ("pose", "pose", "recognize"):
        _task_logger(task).info("Finished in state Completed()")
    logging.getLogger("pipeline.manifest").warning("white space removed")
    logging.getLogger("flows.cohort_analysis").info("our own progress")
    lines = console.getvalue().splitlines()
    assert lines == ["INFO progress: tasks finished: pose 1", "INFO progress: tasks finished: pose 2",
                     "INFO progress: tasks finished: pose 2, recognize 1",
                     "WARNING pipeline.manifest: white space removed", "INFO flows.cohort_analysis: our own progress"]


def test_a_failed_task_is_one_line_naming_it_once_without_traceback(console):
    try:
        raise ValueError("cohort.parquet: fewer than 2 groups\nsecond line")
    except ValueError:
        # Prefect logs one failure up to three times: the task, its final state, the flow
        _task_logger("hurdle").error("Task run failed with exception: ValueError(...)", exc_info=True)
        _task_logger("hurdle").error("Finished in state Failed('Task run encountered an exception ...')")
        logging.getLogger("prefect.flow_runs").exception("Encountered exception during execution: ValueError(...)")
        logging.getLogger("pipeline.stage").exception("a stage's own report")
    lines = console.getvalue().splitlines()
    assert lines == ["ERROR prefect.task_runs: task 'hurdle' failed: ValueError: cohort.parquet: fewer than 2 groups",
                     "ERROR pipeline.stage: a stage's own report (ValueError: cohort.parquet: fewer than 2 groups)"]
    assert "Traceback" not in console.getvalue()


def test_flow_errors_is_one_line_and_exit_1(capsys):
    with pytest.raises(SystemExit) as stop, flow_errors("flows.x"):
        raise RuntimeError("the read-out failed\n  details")
    assert stop.value.code == 1
    assert capsys.readouterr().err == "flows.x: error: RuntimeError: the read-out failed (-v shows the traceback)\n"
    with pytest.raises(RuntimeError), flow_errors("flows.x", verbose=True):  # -v: the real traceback
        raise RuntimeError("boom")
    assert one_line(KeyError()) == "KeyError"


def test_quiet_hides_info_of_loggers_with_their_own_level_and_tracebacks(capsys):
    from pipeline.cli import setup_logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    own = logging.getLogger("test_flow_process.own_level")
    own.setLevel(logging.INFO)  # as Prefect sets its 'prefect' logger
    try:
        setup_logging(quiet=True)
        own.info("an INFO line -q must hide")
        try:
            raise OSError("disk full")
        except OSError:
            own.exception("write failed")
    finally:
        root.handlers, root.level = saved
        own.setLevel(logging.NOTSET)
    err = capsys.readouterr().err
    assert err == "ERROR test_flow_process.own_level: write failed (OSError: disk full)\n"


# --------------------------------------------------------------------------------------------------
# The temporary server
# --------------------------------------------------------------------------------------------------
def _refused(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.slow
def test_temporary_server_answers_sets_the_api_url_and_is_gone_after(tmp_path, monkeypatch):
    from prefect.settings import PREFECT_API_URL

    from flows.server import temporary_server

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with temporary_server() as server:
        assert httpx.get(f"{server.api_url}/health", timeout=10).json() is True
        assert PREFECT_API_URL.value() == os.environ["PREFECT_API_URL"] == server.api_url
        assert psutil.Process(server.process.pid).ppid() == os.getpid()
    assert server.process.returncode is not None and "PREFECT_API_URL" not in os.environ
    assert _refused(server.port)


# --------------------------------------------------------------------------------------------------
# The CLI as a process
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """4 simulated participants in 2 groups (6 s each) + a small checkpoint whose window plan fits them."""
    from flow_fixtures import small_cohort

    return small_cohort(tmp_path_factory.mktemp("cohort"), seconds=6)


def _env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PYTHONPATH=str(ROOT))
    return env


def _cli(cohort, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "flows.cohort_analysis", "--manifest", str(cohort["manifest"]), "--out", str(out),
            "--weights", str(cohort["weights"]), *extra]


def _answering_server(proc: psutil.Process, seconds: float = 300) -> tuple[psutil.Process, int]:
    """The descendant of ``proc`` that listens on a loopback port and answers /api/health there."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE, "the run ended before its server answered"
        for child in proc.children(recursive=True):
            try:
                ports = [c.laddr.port for c in child.net_connections("tcp") if c.status == psutil.CONN_LISTEN]
            except psutil.Error:
                continue
            for port in ports:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                        return child, port
                except httpx.TransportError:
                    pass
        time.sleep(0.2)
    pytest.fail(f"no server of the run answered within {seconds} s")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killing_the_run_takes_its_temporary_server_with_it(cohort, tmp_path, sig):
    run = subprocess.Popen(_cli(cohort, tmp_path / "out", "--groups", "ASD", "TDC", "-q"), cwd=ROOT, env=_env(tmp_path),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        proc = psutil.Process(run.pid)
        server, port = _answering_server(proc)
        family = proc.children(recursive=True)  # everything the run started, the server among them
        assert server in family and run.poll() is None
        run.send_signal(sig)
        run.wait(timeout=30)
        _, alive = psutil.wait_procs(family, timeout=10)
        assert alive == [], f"left running after {sig.name}: {[p.cmdline() for p in alive]}"
        assert _refused(port)
        listening = [c for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN]
        assert port not in [c.laddr.port for c in listening]
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()


@pytest.mark.slow
def test_console_shows_progress_and_results_but_no_http_requests(cohort, tmp_path):
    r = subprocess.run(_cli(cohort, tmp_path / "out", "--groups", "ASD", "TDC"), cwd=ROOT, env=_env(tmp_path),
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "HTTP Request" not in r.stderr + r.stdout and "Traceback" not in r.stderr
    assert "tasks finished:" in r.stderr and "pose 4" in r.stderr and "recognize 4" in r.stderr
    assert "Beginning flow run" not in r.stderr and "Finished in state" not in r.stderr  # Prefect's own: the UI's
    assert f"wrote report: {tmp_path / 'out' / 'report' / 'index.html'}" in r.stdout


@pytest.mark.slow
def test_quiet_prints_no_info_and_a_failing_run_says_why_in_one_line(cohort, tmp_path):
    ok = subprocess.run(_cli(cohort, tmp_path / "out", "--groups", "ASD", "TDC", "-q"), cwd=ROOT, env=_env(tmp_path),
                        capture_output=True, text=True, timeout=900)
    assert ok.returncode == 0, ok.stderr[-4000:]
    assert ok.stderr == "" and "wrote cohort:" in ok.stdout
    # PSY is not in the manifest: the run fails (at submission once the flow checks groups there, else at the
    # statistics) and says so in one line, no traceback, non-zero exit.
    for quiet in ([], ["-q"]):
        bad = subprocess.run(_cli(cohort, tmp_path / "out", "--groups", "ASD", "PSY", *quiet), cwd=ROOT,
                             env=_env(tmp_path), capture_output=True, text=True, timeout=900)
        assert bad.returncode != 0
        assert "Traceback" not in bad.stderr and "HTTP Request" not in bad.stderr
        reasons = [line for line in bad.stderr.splitlines() if "error" in line.lower() and "PSY" in line]
        assert reasons, bad.stderr[-4000:]
        assert not [line for line in bad.stderr.splitlines() if line.startswith("INFO ")] or not quiet
