"""Native start-up noise is filtered without switching fd 2 from threads (pipeline.native_stderr).

The pose test runs in a subprocess whose stderr is a file, as a served flow run's is: four pose tasks in
threads (real MediaPipe on simulated MP4s) while another thread writes numbered lines to stderr; every
line must reach the file, and so must a line written after the tasks. With fd 2 pointed at /dev/null
while each graph started, the lines written meanwhile were lost (and an unbalanced restore lost the
rest of the run's console).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipeline.native_stderr import is_noise

ROOT = Path(__file__).resolve().parents[1]

NATIVE_LINES = [  # as mediapipe 0.10.14 prints them (docs: pipeline/native_stderr.py)
    b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    b"W0000 00:00:1796235869.610382    7623 inference_feedback_manager.cc:114] Feedback manager requires a model "
    b"with a single signature inference. Disabling support for feedback tensors.",
]


def test_only_the_native_info_and_warning_lines_are_noise():
    assert all(is_noise(line) for line in NATIVE_LINES)
    for kept in (b"E0000 00:00:1796235869.610382 7623 calculator_graph.cc:887] INVALID_ARGUMENT: bad",
                 b"F0000 00:00:1.0 1 x.cc:1] Check failed", b"ERROR pipeline.pose: v1: not decodable",
                 b"Traceback (most recent call last):", b"WARNING flows.cohort_analysis: 1 of 4 videos failed",
                 b"W: a user's line", b""):
        assert not is_noise(kept), kept


_SCRIPT = textwrap.dedent("""
    import sys, threading, time
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path
    import pandas as pd
    from pipeline.pose import PoseConfig, VideoJob, process_video

    sim, out = Path(sys.argv[1]), sys.argv[2]
    manifest = pd.read_csv(sim / "manifest.csv")
    jobs = [VideoJob(str(sim / v), Path(v).stem, out, PoseConfig()) for v in manifest["video"]]
    assert len(jobs) == 4
    done, ticks = threading.Event(), []

    def ticker():
        i = 0
        while not done.is_set() or i < 20:
            print(f"tick {i}", file=sys.stderr, flush=True)
            ticks.append(i)
            i += 1
            time.sleep(0.005)

    t = threading.Thread(target=ticker)
    t.start()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(process_video, jobs))
    done.set()
    t.join()
    assert [r.status for r in results] == ["ok"] * 4, [r.error for r in results]
    print(f"ticks written: {len(ticks)}", flush=True)
    print("after the pose tasks", file=sys.stderr, flush=True)
    import os
    os.write(2, b"raw fd 2 after the pose tasks\\n")
""")


@pytest.mark.slow
def test_stderr_reaches_its_file_during_and_after_four_concurrent_pose_tasks(tmp_path):
    from simulator.__main__ import main as simulate

    sim = tmp_path / "sim"
    assert simulate(["-q", "cohort", "--out", str(sim), "--groups", "ASD=2,TDC=2", "--seconds", "1",
                     "--size", "240x288", "--seed", "5"]) == 0
    err_path = tmp_path / "stderr.log"
    with open(err_path, "w") as err:
        r = subprocess.run([sys.executable, "-c", _SCRIPT, str(sim), str(tmp_path / "pose")], cwd=ROOT,
                           env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=err,
                           text=True, timeout=600)
    log = err_path.read_text()
    assert r.returncode == 0, r.stdout[-2000:] + log[-3000:]
    n = int(r.stdout.split("ticks written: ")[1].split()[0])
    lines = log.splitlines()
    missing = [i for i in range(n) if f"tick {i}" not in lines]
    assert not missing, f"{len(missing)} of {n} stderr lines written during pose were lost: {missing[:10]}"
    assert "after the pose tasks" in lines and "raw fd 2 after the pose tasks" in lines
    assert not any(is_noise(line.encode()) for line in lines), [ln for ln in lines if is_noise(ln.encode())][:3]


@pytest.mark.slow
def test_a_direct_flow_run_with_four_concurrent_pose_tasks_keeps_its_stderr(tmp_path):
    """The real flow (python -m flows.cohort_analysis, 4 pose tasks at once in threads), stderr to a
    file as under a service manager: the warning written after pose (a cut-off video left out) and the
    end of the run reach the file, and MediaPipe's start-up lines do not."""
    import pandas as pd

    from flow_fixtures import small_cohort

    cohort = small_cohort(tmp_path / "cohort", seconds=2)
    bad = cohort["manifest"].parent / "videos" / "TDC-002.mp4"
    bad.write_bytes(bad.read_bytes()[:2000])
    err_path = tmp_path / "stderr.log"
    with open(err_path, "w") as err:
        r = subprocess.run([sys.executable, "-m", "flows.cohort_analysis", "--manifest", str(cohort["manifest"]),
                            "--out", str(tmp_path / "run"), "--weights", str(cohort["weights"]), "--groups", "ASD",
                            "TDC", "--max-failed-share", "0.5"], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                           stdout=subprocess.PIPE, stderr=err, text=True, timeout=900)
    log = err_path.read_text()
    assert r.returncode == 1, r.stdout + log[-3000:]  # one video failed: exit 1, the run completed
    assert "1 of 4 videos failed and are left out: TDC-002" in log
    assert "progress: videos finished: pose 4/4, recognition 3/4" in log
    assert not any(is_noise(line.encode()) for line in log.splitlines())
    assert "wrote report:" in r.stdout and len(pd.read_parquet(tmp_path / "run" / "pose" / "qc.parquet")) == 4
