"""The stage runner (pipeline.stage) with a toy stage: text files of numbers -> Parquet of their squares.

Covers the life cycle (compute, skip, redo on change), the QC table that persists across runs
(audit 6), stale outputs of an item that now fails (audit 6), worker processes that die with their
parent (audit 1, by really killing the parent) and a crashed worker failing only its own item.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from pipeline.artifacts import read_sidecar, sha256_file, write_artifact
from pipeline.ownership import ForeignOutput, manifest_path, read_manifest
from pipeline.stage import (Job, ItemContext, check_outputs_free, exit_code, remove_item_outputs, run_item, run_items,
                            summary, write_qc_table)

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class NumbersJob(Job):
    power: int = 2
    sleep_s: float = 0.0


class NumbersStage:
    """Toy stage: each line of the input is a number; output: their ``power``-th powers."""

    name = "numbers"
    version = 1
    id_column = "item"
    qc_file = "qc"
    done_word = "computed"

    def input_hash(self, job):
        return sha256_file(job.source)

    def artifact_config(self, job):
        return {"power": job.power}

    def outputs(self, job):
        return [Path(job.out_dir) / "numbers" / f"{job.item_id}.parquet"]

    def derived_outputs(self, job):
        return [Path(job.out_dir) / "plots" / f"{job.item_id}.txt"]

    def compute(self, job, ctx: ItemContext):
        if job.sleep_s:
            Path(job.out_dir, f"pid-{job.item_id}").write_text(str(os.getpid()))
            time.sleep(job.sleep_s)
        if "crash" in Path(job.source).read_text():
            os._exit(3)  # a worker dying without a word (segfault, OOM killer)
        values = [float(v) for v in Path(job.source).read_text().split()]  # ValueError on a bad line
        if not values:
            raise ValueError("no numbers")
        table = pa.table({"value": [v ** job.power for v in values]})
        ctx.write_artifact(table, self.outputs(job)[0], contract=None, extra={"item": job.item_id})
        plot = self.derived_outputs(job)[0]
        plot.parent.mkdir(parents=True, exist_ok=True)
        plot.write_text("plot")
        ctx.wrote(plot)
        return {"n": len(values), "flags": "" if len(values) > 1 else "short"}

    def qc_for_existing(self, job):
        return {"n": pd.read_parquet(self.outputs(job)[0]).shape[0], "flags": ""}

    def failed_qc(self, job, error):
        return {"n": 0, "flags": "failed"}


STAGE = NumbersStage()


def run_stage_item(job):
    """Module-level (picklable) worker for spawned pools."""
    return run_item(STAGE, job)


def inputs(folder: Path, **contents: str) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, text in contents.items():
        (folder / f"{name}.txt").write_text(text)
        out[name] = folder / f"{name}.txt"
    return out


def jobs_for(files: dict[str, Path], out: Path, **kw) -> list[NumbersJob]:
    return [NumbersJob(name, str(path), str(out), **kw) for name, path in files.items()]


def test_life_cycle_compute_skip_redo(tmp_path):
    files = inputs(tmp_path / "in", a="1\n2\n3", b="4\n5")
    out = tmp_path / "out"
    [ra, rb] = run_items(STAGE, jobs_for(files, out))
    assert (ra.status, rb.status) == ("ok", "ok")
    a_out = out / "numbers" / "a.parquet"
    assert pd.read_parquet(a_out)["value"].tolist() == [1, 4, 9]
    side = read_sidecar(a_out)
    assert side["stage"] == "numbers" and side["input_hash"] == sha256_file(files["a"])
    assert side["config"] == {"stage_version": 1, "power": 2}
    assert ra.written == [str(a_out), str(out / "plots" / "a.txt")]
    assert ra.qc["item"] == "a" and ra.qc["status"] == "ok" and ra.qc["n"] == 3 and ra.qc["error"] is None
    # rerun: up to date, nothing written, QC from the stored output
    before = a_out.stat().st_mtime_ns
    r = run_item(STAGE, jobs_for(files, out)[0])
    assert r.status == "skipped" and r.written == [] and r.qc["n"] == 3 and a_out.stat().st_mtime_ns == before
    # another config, another input content, or --force: computed again
    assert run_item(STAGE, NumbersJob("a", str(files["a"]), str(out), power=3)).status == "ok"
    assert pd.read_parquet(a_out)["value"].tolist() == [1, 8, 27]
    files["a"].write_text("2\n3")
    assert run_item(STAGE, NumbersJob("a", str(files["a"]), str(out), power=3)).status == "ok"
    assert run_item(STAGE, NumbersJob("a", str(files["a"]), str(out), power=3, force=True)).status == "ok"
    # a damaged output under a matching sidecar is computed again, not reported failed
    a_out.write_bytes(b"PAR1 garbage")
    r = run_item(STAGE, NumbersJob("a", str(files["a"]), str(out), power=3))
    assert r.status == "ok" and pd.read_parquet(a_out)["value"].tolist() == [8, 27]
    # temp files of writes that a killed worker left behind are cleared when the item is computed
    leftovers = [out / "numbers" / ".a.parquet.k1ll3d.tmp", out / "numbers" / ".a.parquet.json.x7.tmp"]
    for f in leftovers:
        f.write_bytes(b"half")
    (out / "numbers" / ".b.parquet.zz.tmp").write_bytes(b"another item's")
    assert run_item(STAGE, NumbersJob("a", str(files["a"]), str(out), power=4)).status == "ok"
    assert not any(f.exists() for f in leftovers) and (out / "numbers" / ".b.parquet.zz.tmp").exists()


def test_qc_table_persists_across_runs_on_subsets(tmp_path):
    """Audit 6: a run on one item used to drop every other item's QC row, failures included."""
    files = inputs(tmp_path / "in", a="1\n2", b="oops", c="3\n4")
    out = tmp_path / "out"
    results = run_items(STAGE, jobs_for(files, out))
    assert [r.status for r in results] == ["ok", "failed", "ok"]
    write_qc_table(STAGE, [r.qc for r in results], out)
    first = pd.read_parquet(out / "qc.parquet").set_index("item")
    # second run: only c, whose content changed
    files["c"].write_text("5\n6\n7")
    [rc] = run_items(STAGE, jobs_for({"c": files["c"]}, out))
    write_qc_table(STAGE, [rc.qc], out)
    qc = pd.read_parquet(out / "qc.parquet").set_index("item")
    assert list(qc.index) == ["a", "b", "c"]
    assert qc.loc["b", "status"] == "failed" and "could not convert" in qc.loc["b", "error"]
    assert qc.loc["a"].equals(first.loc["a"])  # untouched rows kept exactly, with their run time
    assert qc.loc["c", "n"] == 3 and qc.loc["c", "status"] == "ok"
    csv = pd.read_csv(out / "qc.csv")
    assert csv["item"].tolist() == ["a", "b", "c"] and csv["status"].tolist() == ["ok", "failed", "ok"]
    # the failed item now succeeds: its row is replaced
    files["b"].write_text("9")
    [rb] = run_items(STAGE, jobs_for({"b": files["b"]}, out))
    write_qc_table(STAGE, [rb.qc], out)
    qc = pd.read_parquet(out / "qc.parquet").set_index("item")
    assert qc["status"].tolist() == ["ok", "ok", "ok"] and pd.isna(qc.loc["b", "error"])
    assert qc.loc["b", "flags"] == "short"
    assert "1 flagged" in summary(STAGE, [rb]) and exit_code([rb]) == 0


def test_a_qc_table_of_someone_else_is_refused_not_replaced(tmp_path):
    out = tmp_path / "out"
    write_artifact(pd.DataFrame({"item": ["zz"], "x": [1]}), out / "qc.parquet", contract=None, stage="other-qc")
    before = sha256_file(out / "qc.parquet")
    files = inputs(tmp_path / "in", a="1")
    with pytest.raises(ForeignOutput, match="qc.parquet"):
        check_outputs_free(STAGE, jobs_for(files, out), out)
    with pytest.raises(ForeignOutput, match="qc.parquet"):
        write_qc_table(STAGE, [r.qc for r in run_items(STAGE, jobs_for(files, out))], out)
    assert sha256_file(out / "qc.parquet") == before and not (out / "qc.csv").exists()
    # a user's qc.csv beside no table of ours is refused as well
    (out / "qc.parquet").unlink()
    (out / "qc.parquet.json").unlink()
    (out / "qc.csv").write_text("mine\n")
    with pytest.raises(ForeignOutput, match="qc.csv"):
        write_qc_table(STAGE, [], out)
    assert (out / "qc.csv").read_text() == "mine\n"


def test_user_files_under_output_names_are_refused_before_any_work(tmp_path):
    """Issue 19: the stages overwrote a user's file that bore an output's name."""
    files = inputs(tmp_path / "in", a="1\n2", b="3")
    out = tmp_path / "out"
    (out / "numbers").mkdir(parents=True)
    mine = out / "numbers" / "b.parquet"
    mine.write_bytes(b"the user's own table")
    with pytest.raises(ForeignOutput) as exc:
        check_outputs_free(STAGE, jobs_for(files, out), out)
    assert str(exc.value).startswith(f"{mine} is in the way") and "\n" not in str(exc.value)
    # the runner itself refuses too (e.g. called from the flow): b fails, a is computed, b is untouched
    ra, rb = run_items(STAGE, jobs_for(files, out))
    assert ra.status == "ok" and rb.status == "failed" and "in the way" in rb.error
    assert mine.read_bytes() == b"the user's own table" and not (out / "plots" / "b.txt").exists()
    # what the runner wrote is recorded in the stage's manifest, with fingerprints
    m = read_manifest(out, "numbers")
    assert set(m.files) == {"numbers/a.parquet", "numbers/a.parquet.json", "plots/a.txt"}
    assert m.files["numbers/a.parquet"].sha256 == sha256_file(out / "numbers" / "a.parquet")


def test_outputs_of_an_earlier_version_without_manifest_are_adopted(tmp_path):
    """Folders from before output manifests: files whose sidecar names the stage are ours (recorded once)."""
    files = inputs(tmp_path / "in", a="1\n2")
    out = tmp_path / "out"
    run_items(STAGE, jobs_for(files, out))
    manifest_path(out, "numbers").unlink()
    check_outputs_free(STAGE, jobs_for(files, out), out)  # no complaint
    [r] = run_items(STAGE, jobs_for(files, out))
    assert r.status == "skipped"
    assert set(read_manifest(out, "numbers").files) == {"numbers/a.parquet", "numbers/a.parquet.json", "plots/a.txt"}


def test_an_item_that_now_fails_loses_its_stale_outputs_but_not_foreign_files(tmp_path):
    """Audit 6: an input replaced by a corrupt file kept its old outputs beside a failed QC row."""
    files = inputs(tmp_path / "in", a="1\n2", b="3\n4")
    out = tmp_path / "out"
    assert [r.status for r in run_items(STAGE, jobs_for(files, out))] == ["ok", "ok"]
    files["a"].write_text("corrupt \x00 bytes")
    # b's output is replaced by a user's own file that merely has the same name (no sidecar of ours)
    user_file = out / "numbers" / "b.parquet"
    user_file.with_name("b.parquet.json").unlink()
    user_file.write_bytes(b"user data")
    files["b"].write_text("also corrupt")
    ra, rb = run_items(STAGE, jobs_for(files, out))
    assert ra.status == rb.status == "failed"
    assert not (out / "numbers" / "a.parquet").exists() and not (out / "numbers" / "a.parquet.json").exists()
    assert not (out / "plots" / "a.txt").exists()  # derived from the removed output
    assert sorted(Path(p).name for p in ra.removed) == ["a.parquet", "a.parquet.json", "a.txt"]
    assert user_file.read_bytes() == b"user data" and rb.removed == [] and "in the way" in rb.error
    assert (out / "plots" / "b.txt").exists()  # nothing of an item whose output is not ours is removed
    # a missing input fails too, and nothing is left to remove
    r = run_item(STAGE, NumbersJob("a", str(tmp_path / "gone.txt"), str(out)))
    assert r.status == "failed" and "gone.txt" in r.error and r.removed == []
    # asked to remove b's outputs, the runner removes only what is still as it wrote it: the plot,
    # not the user's table under the output's name
    assert remove_item_outputs(STAGE, NumbersJob("b", str(files["b"]), str(out))) == [str(out / "plots" / "b.txt")]
    assert user_file.read_bytes() == b"user data"
    # a derived file the user edited after we wrote it is kept and dropped from the record
    files["c"] = inputs(tmp_path / "in", c="5")["c"]
    run_item(STAGE, NumbersJob("c", str(files["c"]), str(out)))
    (out / "plots" / "c.txt").write_text("my notes on c")
    removed = remove_item_outputs(STAGE, NumbersJob("c", str(files["c"]), str(out)))
    assert sorted(Path(p).name for p in removed) == ["c.parquet", "c.parquet.json"]
    assert (out / "plots" / "c.txt").read_text() == "my notes on c"
    assert "plots/c.txt" not in read_manifest(out, "numbers").files


def test_a_crashed_worker_fails_only_its_own_item(tmp_path):
    files = inputs(tmp_path / "in", a="1", b="2", crash="crash", d="3", e="4")
    out = tmp_path / "out"
    results = run_items(STAGE, jobs_for(files, out), workers=2, worker=run_stage_item)
    # The pool's break also kills the other worker: an item it had finished writing but not yet
    # reported is re-run and found up to date ("skipped"), which is right; none of them fails.
    assert [r.status for r in results][2] == "failed"
    assert all(r.status in ("ok", "skipped") for i, r in enumerate(results) if i != 2)
    assert "the worker process died" in results[2].error and "crash.txt" in results[2].error
    assert exit_code(results) == 1
    text = summary(STAGE, results)
    assert text.startswith("numbers: 5 input(s): ") and ", 1 failed" in text
    assert all(pd.read_parquet(out / "numbers" / f"{k}.parquet")["value"].tolist() == [float(v) ** 2]
               for k, v in (("a", 1), ("b", 2), ("d", 3), ("e", 4)))


ORPHAN_SCRIPT = textwrap.dedent("""
    import sys
    sys.path[:0] = [{repo!r}, {tests!r}]
    from pathlib import Path
    from test_stage_runner import NumbersJob, STAGE, run_stage_item
    from pipeline.stage import run_items
    out = Path({out!r})
    jobs = [NumbersJob(k, {src!r}, str(out), sleep_s=120) for k in ("a", "b")]
    run_items(STAGE, jobs, workers=2, worker=run_stage_item)
""")


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_workers_exit_when_the_parent_is_killed(tmp_path, sig):
    """Audit 1: killed parents (SIGKILL/SIGTERM, the OOM killer's signal is SIGKILL) left workers posing on."""
    src = tmp_path / "x.txt"
    src.write_text("1")
    out = tmp_path / "out"
    out.mkdir()
    script = ORPHAN_SCRIPT.format(repo=str(REPO), tests=str(REPO / "tests"), out=str(out), src=str(src))
    parent = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list(out.glob("pid-*"))) < 2:
            time.sleep(0.1)
        pids = [int(p.read_text()) for p in out.glob("pid-*")]
        assert len(pids) == 2, "the workers did not start"
        assert all(_alive(p) for p in pids)
        parent.send_signal(sig)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.1)
        left = [p for p in pids if _alive(p)]
        assert not left, f"workers {left} outlived their parent"
        assert not list((out / "numbers").glob("*.parquet")) if (out / "numbers").exists() else True
    finally:
        if parent.poll() is None:
            parent.kill()
        for p in out.glob("pid-*"):  # never leave a sleeper behind if the test fails
            try:
                os.kill(int(p.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass


SLOW_START_SCRIPT = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    if __name__ == "__mp_main__":
        # A spawned worker re-imports the parent's main module before it runs anything of the pool's;
        # for `python -m pipeline.pose` that pulls in torch, MediaPipe and OpenCV (15-30 s at load 10).
        Path({out!r}, f"starting-{{os.getpid()}}").write_text("")
        time.sleep(120)
    sys.path[:0] = [{repo!r}, {tests!r}]
    from test_stage_runner import NumbersJob, STAGE, run_stage_item
    from pipeline.stage import run_items
    if __name__ == "__main__":
        jobs = [NumbersJob(k, {src!r}, {out!r}) for k in ("a", "b")]
        run_items(STAGE, jobs, workers=2, worker=run_stage_item)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("when", ["as soon as a worker exists", "while the workers import the main module"])
def test_workers_die_with_a_parent_killed_while_they_start(tmp_path, when):
    """Issue 19: workers outlived a SIGKILLed parent by 15-30 s when it died while they were starting
    (the death hook ran only after the heavy imports). The hook now runs first in the spawned child."""
    psutil = pytest.importorskip("psutil")
    src = tmp_path / "x.txt"
    src.write_text("1")
    out = tmp_path / "out"
    out.mkdir()
    script = tmp_path / "parent.py"
    script.write_text(SLOW_START_SCRIPT.format(repo=str(REPO), tests=str(REPO / "tests"), out=str(out), src=str(src)))
    parent = subprocess.Popen([sys.executable, str(script)], stderr=subprocess.DEVNULL)
    workers: list = []
    try:
        proc = psutil.Process(parent.pid)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            workers = [c for c in proc.children(recursive=True) if "--multiprocessing-fork" in " ".join(c.cmdline())]
            started = list(out.glob("starting-*"))
            if (workers and when.startswith("as soon")) or len(started) == 2:
                break
            time.sleep(0.02)
        assert workers, "no worker process was started"
        parent.kill()
        parent.wait(timeout=10)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_alive(w.pid) for w in workers):
            time.sleep(0.05)
        left = [w.pid for w in workers if _alive(w.pid)]
        assert not left, f"workers {left} outlived their parent by more than 5 s"
    finally:
        if parent.poll() is None:
            parent.kill()
        for w in workers:  # never leave a sleeper behind if the test fails
            try:
                w.kill()
            except psutil.Error:
                pass
