"""bench/bench_gpu.py on the CPU (--device cpu --quick): the report has every family, finite rates,
fp32/bf16 ratios that equal the rows' own quotient, the budget skip list, and the markdown table."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.bench_gpu import FAMILIES, TRAINED, Case, plan_cases

ROOT = Path(__file__).resolve().parents[1]


def _run(out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("OUT", None)
    return subprocess.run([sys.executable, "-m", "bench.bench_gpu", "--device", "cpu", "--quick", "--batches", "2",
                           "--iters", "1", "--warmup", "0", "--threads", "1", "--out", str(out), *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory) -> tuple[dict, str, str]:
    out = tmp_path_factory.mktemp("gpu_bench")
    proc = _run(out)
    assert proc.returncode == 0, proc.stderr
    return json.loads((out / "gpu_bench.json").read_text()), (out / "gpu_bench.md").read_text(), proc.stdout


def test_every_family_and_mode_measured(quick_report):
    report, _, _ = quick_report
    assert report["format"] == "gpu-bench/1" and report["partial"] is False and report["skipped"] == []
    got = {(r["family"], r["mode"], r["precision"]) for r in report["results"]}
    want = {(f, m, p) for f in FAMILIES for m in ("infer", "train") for p in ("fp32", "bf16")
            if m == "infer" or f in TRAINED}
    assert got == want
    for r in report["results"]:
        assert r["status"] == "ok", r
        assert math.isfinite(r["clips_per_s"]) and r["clips_per_s"] > 0
        assert r["clips_per_s"] == pytest.approx(r["batch"] / (r["ms_per_batch"] / 1000))
    for f in FAMILIES:
        assert report["families"][f]["params"] > 0 and report["families"][f]["gflops_per_clip"] > 0


def test_ratio_columns_are_the_rows_quotient(quick_report):
    report, md, stdout = quick_report
    by = {(r["family"], r["mode"], r["precision"]): r["clips_per_s"] for r in report["results"]}
    assert len(report["ratios"]) == len(report["results"]) // 2
    for ra in report["ratios"]:
        key = (ra["family"], ra["mode"])
        assert ra["bf16_over_fp32"] == pytest.approx(by[(*key, "bf16")] / by[(*key, "fp32")])
        assert f"| {ra['family']} | 2 | {ra['mode']} | " in md
    assert "bf16/fp32" in md and md in stdout and "wrote " in stdout
    assert report["nvdec"]["available"] is False and report["nvdec"]["paths"]  # CPU: probed, not used


def test_zero_budget_skips_and_lists_everything(tmp_path):
    proc = _run(tmp_path, "--budget-s", "0", "--families", "mmn,manet")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "gpu_bench.json").read_text())
    assert report["results"] == []
    keys = [s["key"] for s in report["skipped"]]
    assert keys == [c.key for c in plan_cases(["mmn", "manet"], [2], train=True)] + ["nvdec"]
    assert all(s["reason"] == "budget" for s in report["skipped"])
    assert "Skipped after the 0 s budget: mmn/b2/infer/bf16" in (tmp_path / "gpu_bench.md").read_text()


def test_bad_arguments_exit_2(tmp_path):
    proc = _run(tmp_path, "--families", "mmn,resnet")
    assert proc.returncode == 2 and "resnet" in proc.stderr
    assert not (tmp_path / "gpu_bench.json").exists()


def test_plan_order_bf16_first_and_no_manet_training():
    cases = plan_cases(list(FAMILIES), [64, 256], train=True)
    assert cases[0] == Case("micro_dualnet", 64, "infer", "bf16")
    assert not any(c.family == "manet" and c.mode == "train" for c in cases)
    assert [c.batch for c in cases] == sorted(c.batch for c in cases)
    assert len(cases) == 2 * (4 + 4 + 2)
