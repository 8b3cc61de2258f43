"""The ``cohort-analysis`` flow against a real Prefect server, a served deployment and a local Dask cluster.

Slow: a real ``prefect server start`` on a free localhost port, ``python -m flows.serve`` in a second
process, runs started with the real ``prefect deployment run ... --watch``. Inputs: a small simulated
cohort (simulator: real MP4s that MediaPipe poses) and a small Micro-DualNet checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from flow_fixtures import stop_group

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).with_name("prefect"))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """4 simulated participants in 2 groups (6 s each) + a small checkpoint whose window plan fits them."""
    from flow_fixtures import small_cohort

    return small_cohort(tmp_path_factory.mktemp("cohort"), seconds=6)


def _params(cohort, out: Path, **extra) -> str:
    params = {"manifest": str(cohort["manifest"]), "out": str(out), "weights": str(cohort["weights"]),
              "statistics": {"groups": ["ASD", "TDC"], "top_actions": 0}, **extra}
    return json.dumps(params)


def _deployment_run(env, name: str, params: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([PREFECT, "deployment", "run", f"cohort-analysis/{name}", "--param", f"params={params}",
                           "--watch"], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def served(prefect_env):
    """``python -m flows.serve --name test`` serving the deployment (thread task runner)."""
    log = open(Path(prefect_env["PREFECT_HOME"]) / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "flows.serve", "--name", "test"], cwd=ROOT, env=prefect_env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # registered when `prefect deployment inspect` finds it
            r = subprocess.run([PREFECT, "deployment", "inspect", "cohort-analysis/test"], env=prefect_env,
                               capture_output=True, text=True)
            if r.returncode == 0:
                break
            assert proc.poll() is None, (Path(prefect_env["PREFECT_HOME"]) / "serve.log").read_text()[-3000:]
            time.sleep(2)
        else:
            pytest.fail("the deployment was not registered within 120 s")
        yield proc
    finally:
        stop_group(proc)
        log.close()


def _serve_log(env) -> str:
    return (Path(env["PREFECT_HOME"]) / "serve.log").read_text()[-6000:]


def _flow_run(env, watch_output: str) -> dict:
    """The flow run whose UUID `prefect deployment run` printed, from the server's REST API."""
    run_id = re.search(r"UUID: ([0-9a-f-]{36})", watch_output).group(1)
    with urllib.request.urlopen(f"{env['PREFECT_API_URL']}/flow_runs/{run_id}", timeout=10) as r:
        return json.load(r)


def _artifacts(env) -> dict[str, dict]:
    """Latest artifact per key, read back from the server's REST API."""
    req = urllib.request.Request(env["PREFECT_API_URL"] + "/artifacts/latest/filter", data=b"{}",
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return {a["key"]: a for a in json.load(r)}


def test_served_deployment_runs_resumes_and_reports(served, prefect_env, cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    first = _deployment_run(prefect_env, "test", _params(cohort, out))
    assert first.returncode == 0, first.stdout[-2000:] + _serve_log(prefect_env)
    assert "Completed" in first.stdout

    # Outputs of every stage, and the report.
    cohort_table = pd.read_parquet(out / "readout" / "cohort.parquet")
    assert set(cohort_table["participant_id"]) == {"ASD-001", "ASD-002", "TDC-001", "TDC-002"}
    assert set(cohort_table["action"]) == {"nodding", "shaking legs", "crossing arms"}  # background is not an action
    assert (out / "hurdle" / "results.parquet").exists()
    index = out / "report" / "index.html"
    assert index.exists() and "ASD-001" in index.read_text()
    pose_qc = pd.read_parquet(out / "pose" / "qc.parquet")
    assert set(pose_qc["status"]) == {"ok"}

    # The UI's artifacts: progress at 100 %, the QC table, the results summary and the report link.
    arts = _artifacts(prefect_env)
    assert arts["cohort-progress"]["data"] == 100.0
    assert arts["cohort-progress"]["description"] == "videos finished: pose 4/4, recognition 4/4"
    qc_rows = json.loads(arts["cohort-qc"]["data"])
    assert len(qc_rows) == 4 and {r["pose"] for r in qc_rows} == {"ok"}
    assert "significant at adjusted p" in arts["cohort-results"]["data"] or "No tests" in arts["cohort-results"]["data"]
    report_note = arts["cohort-report"]["data"]
    assert str(index) in report_note and f"python -m reports.serve {out}" in report_note and "file://" not in report_note

    # A second run redoes nothing: every video is up to date in both per-video stages, and the statistics
    # and the report (same inputs and settings) are skipped too.
    stamps = {p: p.stat().st_mtime_ns for p in (out / "hurdle" / "results.parquet", index)}
    second = _deployment_run(prefect_env, "test", _params(cohort, out))
    assert second.returncode == 0, second.stdout[-2000:] + _serve_log(prefect_env)
    assert set(pd.read_parquet(out / "pose" / "qc.parquet")["status"]) == {"skipped"}
    assert set(pd.read_parquet(out / "recognize" / "qc_recognize.parquet")["status"]) == {"skipped"}
    assert pd.read_parquet(out / "readout" / "cohort.parquet").equals(cohort_table)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_one_corrupt_video_is_left_out_and_reported(served, prefect_env, cohort, tmp_path_factory):
    root = tmp_path_factory.mktemp("corrupt")
    sim = cohort["manifest"].parent
    shutil.copytree(sim / "videos", root / "videos")
    manifest = pd.read_csv(cohort["manifest"], dtype=str)
    bad = root / "videos" / "TDC-002.mp4"
    bad.write_bytes(bad.read_bytes()[:2000])  # cut off: not decodable
    manifest.to_csv(root / "manifest.csv", index=False)
    out = root / "out"
    params = _params({**cohort, "manifest": root / "manifest.csv"}, out, max_failed_share=0.5)
    run = _deployment_run(prefect_env, "test", params)
    assert run.returncode == 0, run.stdout[-2000:] + _serve_log(prefect_env)
    pose_qc = pd.read_parquet(out / "pose" / "qc.parquet").set_index("video_id")
    assert pose_qc.loc["TDC-002", "status"] == "failed" and pose_qc.loc["TDC-002", "error"]
    assert set(pose_qc.drop("TDC-002")["status"]) == {"ok"}
    assert "TDC-002" not in set(pd.read_parquet(out / "readout" / "cohort.parquet")["participant_id"])
    qc_rows = json.loads(_artifacts(prefect_env)["cohort-qc"]["data"])
    assert [r["video_id"] for r in qc_rows if r["pose"] == "failed"] == ["TDC-002"]

    # With a stricter limit the same manifest fails the run, naming the video.
    strict = _deployment_run(prefect_env, "test", _params({**cohort, "manifest": root / "manifest.csv"},
                                                           root / "out2", max_failed_share=0.1))
    assert strict.returncode != 0 and "Failed" in strict.stdout
    state = _flow_run(prefect_env, strict.stdout)["state"]
    assert "1 of 4 videos failed" in state["message"] and "TDC-002" in state["message"]


@pytest.mark.parametrize("params, field", [
    ({"out": "/tmp/x"}, "manifest"),
    ({"manifest": "m.csv", "out": "/tmp/x", "readout": {"threshold": 1.5}}, "threshold"),
    ({"manifest": "m.csv", "out": "/tmp/x", "recognition": {"device": "tpu"}}, "device"),
])
def test_bad_parameters_are_refused_at_submission(served, prefect_env, params, field):
    r = subprocess.run([PREFECT, "deployment", "run", "cohort-analysis/test", "--param", f"params={json.dumps(params)}"],
                       env=prefect_env, capture_output=True, text=True, timeout=120)
    text = r.stdout + r.stderr
    assert r.returncode != 0 and "Validation failed" in text and field in text, text[-2000:]


def test_local_dask_cluster_gives_the_same_cohort_table(prefect_env, cohort, tmp_path_factory):
    """Two Dask worker processes against the real server, then the thread runner: same cohort table."""
    outs = {}
    for runner in ("dask-local", "threads"):
        out = tmp_path_factory.mktemp(runner) / "out"
        r = subprocess.run([sys.executable, "-m", "flows.cohort_analysis", "--manifest", str(cohort["manifest"]),
                            "--out", str(out), "--weights", str(cohort["weights"]), "--task-runner", runner,
                            "--dask-workers", "2", "--groups", "ASD", "TDC", "-q"],
                           cwd=ROOT, env=prefect_env, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
        outs[runner] = pd.read_parquet(out / "readout" / "cohort.parquet")
    pd.testing.assert_frame_equal(outs["dask-local"], outs["threads"])


# --------------------------------------------------------------------------------------------------
# Operating it: the wrapper says why, the run lock, a killed serving process
# --------------------------------------------------------------------------------------------------
def _submit(env, name: str, params: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.submit", "--name", name, "--params", params], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)


def test_the_submit_wrapper_prints_the_reason_and_exits_2_for_bad_input(served, prefect_env, cohort, tmp_path):
    no_group = tmp_path / "no_group.csv"
    pd.read_csv(cohort["manifest"], dtype=str).drop(columns="group").to_csv(no_group, index=False)
    r = _submit(prefect_env, "test", _params({**cohort, "manifest": no_group}, tmp_path / "out1"))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "ended Failed: RunRefused: params.manifest:" in r.stderr and "missing column 'group'" in r.stderr
    assert not (tmp_path / "out1").exists()

    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(cohort["weights"].read_bytes()[:5000])
    r = _submit(prefect_env, "test", _params({**cohort, "weights": corrupt}, tmp_path / "out2"))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "ended Failed: RunRefused: params.weights:" in r.stderr and str(corrupt) in r.stderr
    assert not (tmp_path / "out2").exists()


def test_a_second_run_into_a_locked_folder_is_refused_naming_the_holder(served, prefect_env, cohort, tmp_path):
    out = tmp_path / "out"
    hold = ("import sys, time\nfrom pipeline.run_lock import run_lock\n"
            "with run_lock(sys.argv[1], run_id='the-first-run'):\n    print('held', flush=True)\n    time.sleep(600)\n")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(out)], cwd=ROOT, env=prefect_env, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        r = _submit(prefect_env, "test", _params(cohort, out))
        assert r.returncode == 2, r.stdout + r.stderr
        assert "RunLocked" in r.stderr and "is in use by another run" in r.stderr
        assert f"pid {holder.pid}" in r.stderr and "run id the-first-run" in r.stderr and "started " in r.stderr
        assert not (out / "pose").exists()  # nothing of the second run was written
    finally:
        holder.kill()
        holder.wait()


def _serve(env, name: str, log_path: Path) -> subprocess.Popen:
    log = open(log_path, "a")
    proc = subprocess.Popen([sys.executable, "-m", "flows.serve", "--name", name], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and "serving cohort-analysis/" not in log_path.read_text():
        assert proc.poll() is None, log_path.read_text()[-3000:]
        time.sleep(1)
    time.sleep(3)  # the runner registers the deployment and starts polling after the line
    return proc


def test_killing_the_serving_process_mid_pose_ends_the_run_and_a_resume_equals_a_clean_run(
        prefect_env, tmp_path_factory):
    import psutil

    from flow_fixtures import small_cohort

    root = tmp_path_factory.mktemp("crash")
    long = small_cohort(root / "cohort", seconds=20, seed=4)  # pose long enough to be killed in
    env = prefect_env  # its runner polls every 2 s (flow_fixtures.prefect_server)
    log_path = root / "serve-crash.log"
    serve = _serve(env, "crash", log_path)
    out = root / "out"
    submit = subprocess.Popen([sys.executable, "-m", "flows.submit", "--name", "crash", "--params",
                               _params(long, out, max_concurrent_videos=2)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not any((out / "pose").glob(".pose.outputs.json")) and time.monotonic() < deadline:
            assert submit.poll() is None, submit.communicate()
            time.sleep(0.5)
        time.sleep(2)  # pose is under way
        assert not (out / "pose" / "qc.parquet").exists(), "pose finished before the kill; lengthen the videos"
        children = psutil.Process(serve.pid).children(recursive=True)
        assert children, log_path.read_text()[-2000:]
        os.kill(serve.pid, signal.SIGKILL)
        serve.wait()
        gone, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, f"orphaned flow-run processes 10 s after the serving process died: {alive}"
        stdout, stderr = submit.communicate(timeout=120)  # --watch returns: the run is in a final state
        assert submit.returncode == 1, stdout + stderr
        assert "ended Crashed" in stderr and "serving process" in stderr, stdout + stderr
    finally:
        if submit.poll() is None:
            submit.kill()
        stop_group(serve)

    serve = _serve(env, "crash", log_path)  # restarted; the run is resubmitted into the same folder
    try:
        resumed = _submit(env, "crash", _params(long, out))
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr + log_path.read_text()[-3000:]
        assert "took over the lock" in log_path.read_text()  # the killed run's lock, reported
        clean = _submit(env, "crash", _params(long, root / "clean"))
        assert clean.returncode == 0, clean.stdout + clean.stderr
    finally:
        stop_group(serve)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "readout" / "cohort.parquet"),
                                  pd.read_parquet(root / "clean" / "readout" / "cohort.parquet"))
    assert len(pd.read_parquet(out / "pose" / "qc.parquet")) == 4
