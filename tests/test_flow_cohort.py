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
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from flow_fixtures import prefect_server, stop_group

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).with_name("prefect"))


@pytest.fixture(scope="module")
def prefect_env(tmp_path_factory):
    """A real Prefect server on a free loopback port; yields the environment that points at it."""
    with prefect_server(tmp_path_factory.mktemp("prefect-home"), {**os.environ, "PYTHONPATH": str(ROOT)}) as env:
        yield env


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
    qc_rows = json.loads(arts["cohort-qc"]["data"])
    assert len(qc_rows) == 4 and {r["pose"] for r in qc_rows} == {"ok"}
    assert "significant at adjusted p" in arts["cohort-results"]["data"] or "No tests" in arts["cohort-results"]["data"]
    assert index.as_uri() in arts["cohort-report"]["data"]

    # A second run redoes nothing: every video is up to date in both per-video stages.
    second = _deployment_run(prefect_env, "test", _params(cohort, out))
    assert second.returncode == 0, second.stdout[-2000:] + _serve_log(prefect_env)
    assert set(pd.read_parquet(out / "pose" / "qc.parquet")["status"]) == {"skipped"}
    assert set(pd.read_parquet(out / "recognize" / "qc_recognize.parquet")["status"]) == {"skipped"}
    assert pd.read_parquet(out / "readout" / "cohort.parquet").equals(cohort_table)


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
