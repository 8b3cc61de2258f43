"""The recognition stage end to end on the real MA-52 clips with a small random checkpoint.

Acceptance (issue 9): one row per planned window, probs sum to 1, the windows sample exactly the frames
``pipeline.pose --frames sampled`` posed, identical results for batch sizes 1, 7, 32 and for 1 and 2
workers, rerun skips, a corrupt video (or bad keypoints) among good ones fails alone with a one-line
error naming the file, checkpoint conflicts exit 2.

Issue 19: the windows' frames are looked up in the frames the pose artifact records (a superset
artifact gives the same windows; a checkpoint whose plan samples frames the artifact lacks fails that
video with a line naming the keypoints file and the plan fields that differ), and keypoints without
their sidecar are refused (the video-hash check cannot be made). The start-up checks (checkpoint,
batch size, device) are in tests/test_recognize_cli.py.

The checkpoint's plan (4 frames at stride 4, a window every 4 frames) gives 9-16 windows per 1.5-2.5 s
clip, so batches of 7 and 32 really mix windows of several videos.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from model.checkpoint import load_checkpoint, save_checkpoint
from model.micro_dualnet import micro_dualnet_tiny
from model.preprocessing import ClassList, Preprocessing
from model.windows import WindowPlan
from pipeline import pose
from pipeline.artifacts import read_sidecar, sha256_file, write_artifact
from pipeline.contracts import KEYPOINTS
from pipeline.keypoints import read_keypoints
from pipeline.recognize import (RecognizeJob, RecognizeOptions, main, plan_video, posed_frames, recognize_video,
                                recognize_videos)
from pipeline.video import probe

PLAN = WindowPlan(clip_len=4, stride=4, hop_s=0.1)
pytestmark = [pytest.mark.shared_data]


def make_checkpoint(path: Path, region: str = "person", plan: WindowPlan = PLAN) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(path, micro_dualnet_tiny(), classes=ClassList.ma52(),
                           preprocessing=Preprocessing(region=region, resize_short=72, size=64), plan=plan)


@pytest.fixture(scope="module")
def setup(ma52_clips, tmp_path_factory):
    """Keypoints of the real clips posed on the checkpoint's sampled frames, and a tiny checkpoint."""
    root = tmp_path_factory.mktemp("recognize")
    code = pose.main([*map(str, ma52_clips), "--out", str(root / "pose"), "--frames", "sampled", "--clip-len", "4",
                      "--stride", "4", "--hop", "0.1", "-q"])
    assert code == 0
    ckpt = make_checkpoint(root / "tiny.pt")
    return root, list(ma52_clips), ckpt


def jobs_for(clips, out: Path, kp_dir: Path, **kw) -> list[RecognizeJob]:
    return [RecognizeJob(item_id=c.stem, source=str(c), out_dir=str(out), keypoints=str(kp_dir / f"{c.stem}.parquet"),
                         **kw) for c in clips]


def read_probs(out: Path, clips) -> dict[str, np.ndarray]:
    return {c.stem: np.stack(pd.read_parquet(out / "windows" / f"{c.stem}.parquet")["probs"].to_numpy())
            for c in clips}


@pytest.fixture(scope="module")
def base_run(setup):
    root, clips, ckpt = setup
    out = root / "base"
    results, stats = recognize_videos(jobs_for(clips, out, root / "pose" / "keypoints"), ckpt,
                                      RecognizeOptions(batch_size=7, workers=0))
    return out, results, stats


def test_one_row_per_planned_window_and_probs_sum_to_one(setup, base_run):
    root, clips, ckpt_path = setup
    out, results, stats = base_run
    ckpt = load_checkpoint(ckpt_path)
    assert [r.status for r in results] == ["ok"] * len(clips)
    total = 0
    for clip in clips:
        info = probe(clip)
        planned = PLAN.windows(info.frame_count, info.fps)
        df = pd.read_parquet(out / "windows" / f"{clip.stem}.parquet")
        assert len(df) == len(planned) > 1
        assert df["window"].tolist() == list(range(len(planned)))
        assert df["start_frame"].tolist() == [w.start_frame for w in planned]
        assert df["end_frame"].tolist() == [w.end_frame for w in planned]
        np.testing.assert_allclose(df["start_s"], df["start_frame"] / info.fps)
        probs = np.stack(df["probs"].to_numpy())
        assert probs.shape == (len(planned), 52)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
        routing = np.stack(df["routing_st"].to_numpy())
        assert routing.shape == (len(planned), 6) and ((routing > 0) & (routing < 1)).all()
        assert (df["model_id"] == ckpt.sha256).all() and df["config_id"].nunique() == 1
        meta = read_sidecar(out / "windows" / f"{clip.stem}.parquet")
        assert meta["model"]["sha256"] == ckpt.sha256
        assert meta["classes"] == ClassList.ma52().to_dict()
        assert meta["video"]["fps"] == info.fps and meta["video"]["frame_count"] == info.frame_count
        assert meta["entities"] == [name for name, _ in ckpt.entities.entities]
        total += len(planned)
    assert stats.windows == total


def test_windows_sample_exactly_the_frames_pose_posed(setup):
    """The identity between ``pose --frames sampled`` and the frames the recognition windows sample."""
    root, clips, ckpt_path = setup
    ckpt = load_checkpoint(ckpt_path)
    for clip in clips:
        kp = read_keypoints(root / "pose" / "keypoints" / f"{clip.stem}.parquet")
        info = probe(clip)
        np.testing.assert_array_equal(kp.frames, ckpt.plan.sampled_frames(info.frame_count, info.fps))
        planned = plan_video(clip, root / "pose" / "keypoints" / f"{clip.stem}.parquet", ckpt,
                             RecognizeOptions(min_valid=0.0))
        np.testing.assert_array_equal(np.unique(planned.stream.window_frames), kp.frames)
        # what the plan was looked up in is the artifact's record, as pose wrote it
        posed = planned.posed
        np.testing.assert_array_equal(posed.frames, kp.frames)
        assert (posed.mode, posed.plan, posed.frame_count) == ("sampled", PLAN, info.frame_count)


@pytest.mark.slow
def test_results_do_not_depend_on_batch_size_or_workers(setup, base_run):
    root, clips, ckpt = setup
    base = read_probs(base_run[0], clips)
    for name, opts in {"b1": RecognizeOptions(batch_size=1, workers=0),
                       "b32_w1": RecognizeOptions(batch_size=32, workers=1, worker_kind="process"),
                       "b7_w2": RecognizeOptions(batch_size=7, workers=2, worker_kind="process"),
                       "b32_w2_threads": RecognizeOptions(batch_size=32, workers=2, worker_kind="thread")}.items():
        out = root / name
        results, _ = recognize_videos(jobs_for(clips, out, root / "pose" / "keypoints"), ckpt, opts)
        assert all(r.status == "ok" for r in results), name
        got = read_probs(out, clips)
        for vid in base:
            np.testing.assert_allclose(got[vid], base[vid], atol=1e-5, rtol=0, err_msg=f"{name} {vid}")


def test_rerun_skips_and_recognize_video_for_one(setup, capsys):
    root, clips, ckpt = setup
    out = root / "rerun"
    args = [str(clips[0]), str(clips[1]), "--keypoints", str(root / "pose"), "--weights", str(ckpt), "--out", str(out),
            "--workers", "0", "-q"]
    assert main(args) == 0
    first = capsys.readouterr()
    assert first.out.count("wrote ") == 4 and "2 recognised" in first.err
    target = out / "windows" / f"{clips[0].stem}.parquet"
    mtime = target.stat().st_mtime_ns
    assert main(args) == 0
    second = capsys.readouterr()
    assert "2 up to date" in second.err and "windows/" not in second.out
    assert target.stat().st_mtime_ns == mtime
    qc = pd.read_csv(out / "qc_recognize.csv")
    assert qc["status"].tolist() == ["skipped", "skipped"]
    # the function the flow calls: up to date too, and a forced redo gives the same numbers
    r = recognize_video(clips[0], root / "pose" / "keypoints" / f"{clips[0].stem}.parquet", ckpt, out,
                        options=RecognizeOptions(workers=0))
    assert r.status == "skipped"
    before = pd.read_parquet(target)["probs"]
    r = recognize_video(clips[0], root / "pose" / "keypoints" / f"{clips[0].stem}.parquet", ckpt, out,
                        options=RecognizeOptions(workers=0), force=True)
    assert r.status == "ok" and r.written == [str(target)]
    np.testing.assert_allclose(np.stack(pd.read_parquet(target)["probs"]), np.stack(before), atol=1e-6)


def rewrite_keypoints(src: Path, dst: Path, *, keep=None, undetected=None, input_hash: str | None = None) -> Path:
    """A copy of a keypoints artifact with frames dropped or marked undetected (sidecar facts kept)."""
    kp = read_keypoints(src)
    meta = read_sidecar(src)
    if undetected is not None:
        kp.detected = kp.detected.copy()
        kp.detected[undetected] = False
        kp.body25 = kp.body25.copy()
        kp.body25[undetected] = 0
    if keep is not None:
        kp = dataclasses.replace(kp, frames=kp.frames[keep], time_s=kp.time_s[keep], body25=kp.body25[keep],
                                 extra=kp.extra[keep], detected=kp.detected[keep], rejected=kp.rejected[keep])
    return write_artifact(kp.to_table(), dst, contract=KEYPOINTS, stage="pose",
                          input_hash=input_hash or meta["input_hash"], config=meta["config"],
                          extra={"video": meta["video"]})


def test_bad_inputs_fail_alone_with_one_line_naming_the_file(setup, tmp_path, capsys):
    root, clips, ckpt = setup
    kp_dir = tmp_path / "kp"
    kp_dir.mkdir()
    src = root / "pose" / "keypoints"
    good, other, fewer, missing = clips[0], clips[1], clips[2], clips[3]
    shutil.copy(src / f"{good.stem}.parquet", kp_dir)
    shutil.copy(src / f"{good.stem}.parquet.json", kp_dir)
    # keypoints of another video under this video's name
    shutil.copy(src / f"{good.stem}.parquet", kp_dir / f"{other.stem}.parquet")
    shutil.copy(src / f"{good.stem}.parquet.json", kp_dir / f"{other.stem}.parquet.json")
    # posed on a different frame selection (every other sampled frame)
    n = len(read_keypoints(src / f"{fewer.stem}.parquet"))
    rewrite_keypoints(src / f"{fewer.stem}.parquet", kp_dir / f"{fewer.stem}.parquet", keep=np.arange(0, n, 2))
    # a corrupt video with (somebody's) keypoints next to it
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    shutil.copy(src / f"{good.stem}.parquet", kp_dir / "corrupt.parquet")
    out = tmp_path / "out"
    code = main([str(good), str(other), str(fewer), str(missing), str(corrupt), "--keypoints", str(kp_dir),
                 "--weights", str(ckpt), "--out", str(out), "--workers", "1", "--worker-kind", "process", "-q"])
    err = capsys.readouterr().err
    assert code == 1
    assert (out / "windows" / f"{good.stem}.parquet").exists()
    assert sorted(p.name for p in (out / "windows").glob("*.parquet")) == [f"{good.stem}.parquet"]
    qc = pd.read_csv(out / "qc_recognize.csv").set_index("video_id")
    assert qc.loc[good.stem, "status"] == "ok"
    errors = {vid: qc.loc[vid, "error"] for vid in (other.stem, fewer.stem, missing.stem, "corrupt")}
    assert all(qc.loc[vid, "status"] == "failed" for vid in errors)
    assert "was made from another video" in errors[other.stem] and str(kp_dir / f"{other.stem}.parquet") in errors[other.stem]
    assert "lacks" in errors[fewer.stem] and "--frames sampled --clip-len 4 --stride 4" in errors[fewer.stem]
    assert "no keypoints file" in errors[missing.stem] and f"{missing.stem}.parquet" in errors[missing.stem]
    assert errors["corrupt"].startswith(str(corrupt))
    for vid, text in errors.items():
        assert "\n" not in text and f"failed  {text}" in err


def test_windows_with_too_little_pose_get_null_probs(setup, base_run, tmp_path):
    root, clips, ckpt = setup
    clip = clips[0]
    kp_dir = tmp_path / "kp"
    src = root / "pose" / "keypoints" / f"{clip.stem}.parquet"
    n = len(read_keypoints(src))
    rewrite_keypoints(src, kp_dir / f"{clip.stem}.parquet", undetected=np.arange(n // 2, n))
    out = tmp_path / "out"
    r = recognize_video(clip, kp_dir / f"{clip.stem}.parquet", ckpt, out, options=RecognizeOptions(workers=0))
    df = pd.read_parquet(out / "windows" / f"{clip.stem}.parquet")
    low = df["valid_fraction"] < 0.5
    assert low.any() and (~low).any()
    assert df.loc[low, "probs"].isna().all() and df.loc[low, "routing_st"].isna().all()
    assert df.loc[~low, "probs"].notna().all()
    assert r.qc["windows_low_valid"] == int(low.sum()) and r.qc["windows_classified"] == int((~low).sum())
    # the classified windows' probabilities are those of the full run (each window is independent)
    full = pd.read_parquet(base_run[0] / "windows" / f"{clip.stem}.parquet")
    both = (~low) & (df["valid_fraction"] == full["valid_fraction"])
    assert both.any()
    np.testing.assert_allclose(np.stack(df.loc[both, "probs"]), np.stack(full.loc[both, "probs"]), atol=1e-5)


@pytest.mark.parametrize("extra,message", [
    (["--clip-len", "8"], "conflicts with the requested"),
    (["--classes", "CLASSES"], "differs from --classes"),
])
def test_checkpoint_conflicting_with_an_option_exits_2(setup, tmp_path, capsys, extra, message):
    root, clips, ckpt = setup
    classes = tmp_path / "classes.txt"
    classes.write_text("nodding\nturning head\n")
    extra = [str(classes) if e == "CLASSES" else e for e in extra]
    code = None
    with pytest.raises(SystemExit) as exc:
        main([str(clips[0]), "--keypoints", str(root / "pose"), "--weights", str(ckpt), "--out", str(tmp_path / "o"),
              *extra])
    code = exc.value.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and str(ckpt) in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o" / "windows").exists()


def test_frame_region_checkpoint(setup, tmp_path):
    root, clips, _ = setup
    ckpt = make_checkpoint(tmp_path / "frame.pt", region="frame")
    results, _ = recognize_videos(jobs_for(clips[:2], tmp_path / "out", root / "pose" / "keypoints"), ckpt,
                                  RecognizeOptions(batch_size=5, workers=0))
    assert [r.status for r in results] == ["ok", "ok"]
    for c in clips[:2]:
        probs = np.stack(pd.read_parquet(tmp_path / "out" / "windows" / f"{c.stem}.parquet")["probs"])
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert sha256_file(ckpt) == load_checkpoint(ckpt).sha256


def test_gpu_decoding_without_a_gpu_falls_back_to_the_cpu(setup, base_run, tmp_path, caplog):
    root, clips, ckpt = setup
    clip = clips[1]
    r = recognize_video(clip, root / "pose" / "keypoints" / f"{clip.stem}.parquet", ckpt, tmp_path,
                        options=RecognizeOptions(decoder="nvdec", workers=0, batch_size=3))
    assert r.status == "ok"
    assert any("decoding on the CPU" in rec.getMessage() for rec in caplog.records)
    got = np.stack(pd.read_parquet(tmp_path / "windows" / f"{clip.stem}.parquet")["probs"])
    np.testing.assert_allclose(got, read_probs(base_run[0], [clip])[clip.stem], atol=1e-5)


def test_concurrent_videos_sharing_one_loaded_checkpoint(setup, base_run, tmp_path):
    """The flow runs several recognize_video calls in threads with one Checkpoint object."""
    import threading

    root, clips, ckpt_path = setup
    ckpt = load_checkpoint(ckpt_path)
    results = {}

    def run(clip):
        results[clip.stem] = recognize_video(clip, root / "pose" / "keypoints" / f"{clip.stem}.parquet", ckpt,
                                             tmp_path, options=RecognizeOptions(workers=0, batch_size=4))

    threads = [threading.Thread(target=run, args=(c,)) for c in clips]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.status == "ok" for r in results.values())
    base = read_probs(base_run[0], clips)
    got = read_probs(tmp_path, clips)
    for vid in base:
        np.testing.assert_allclose(got[vid], base[vid], atol=1e-5)


def test_window_frames_are_looked_up_in_the_recorded_frames(setup, base_run, tmp_path):
    """An artifact holding every frame (as ``--frames all`` writes it) gives the windows of the sampled one.

    The extra frames sit between the sampled ones and have no person, so a lookup by row position
    instead of by the recorded frame index would change valid fractions and crops.
    """
    root, clips, ckpt = setup
    clip = clips[0]
    src = root / "pose" / "keypoints" / f"{clip.stem}.parquet"
    kp, meta = read_keypoints(src), read_sidecar(src)
    n = probe(clip).frame_count
    frames = np.arange(n)
    at = np.searchsorted(kp.frames, frames)
    hit = (at < len(kp.frames)) & (kp.frames[np.minimum(at, len(kp.frames) - 1)] == frames)
    rows = np.minimum(at, len(kp.frames) - 1)
    full = dataclasses.replace(
        kp, frames=frames, time_s=frames / kp.fps, body25=np.where(hit[:, None, None], kp.body25[rows], 0),
        extra=np.where(hit[:, None, None], kp.extra[rows], 0), detected=hit & kp.detected[rows],
        rejected=hit & kp.rejected[rows])
    dst = tmp_path / "kp" / f"{clip.stem}.parquet"
    write_artifact(full.to_table(), dst, contract=KEYPOINTS, stage="pose", input_hash=meta["input_hash"],
                   config={**meta["config"], "frames": "all", "plan": None},
                   extra={"video": {**meta["video"], "frames_mode": "all", "frames_requested": n}})
    planned = plan_video(clip, dst, load_checkpoint(ckpt), RecognizeOptions())
    assert planned.posed.mode == "all" and len(planned.posed.frames) == n > len(kp.frames)
    r = recognize_video(clip, dst, ckpt, tmp_path / "out", options=RecognizeOptions(workers=0, batch_size=7))
    assert r.status == "ok"
    got = pd.read_parquet(tmp_path / "out" / "windows" / f"{clip.stem}.parquet")
    want = pd.read_parquet(base_run[0] / "windows" / f"{clip.stem}.parquet")
    np.testing.assert_array_equal(got["valid_fraction"], want["valid_fraction"])
    np.testing.assert_allclose(np.stack(got["probs"]), np.stack(want["probs"]), atol=1e-5)


def test_keypoints_posed_with_another_plan_fail_that_video_naming_what_differs(setup, tmp_path, capsys):
    """A checkpoint sampling every 2nd frame on keypoints posed for every 4th: that video fails, one line."""
    root, clips, _ = setup
    ckpt = make_checkpoint(tmp_path / "stride2.pt", plan=WindowPlan(clip_len=4, stride=2, hop_s=0.1))
    kp_path = root / "pose" / "keypoints" / f"{clips[0].stem}.parquet"
    assert posed_frames(read_keypoints(kp_path), read_sidecar(kp_path)).plan == PLAN
    out = tmp_path / "out"
    code = main([str(clips[0]), "--keypoints", str(root / "pose"), "--weights", str(ckpt), "--out", str(out),
                 "--workers", "0", "-q"])
    err = capsys.readouterr().err
    assert code == 1
    error = pd.read_csv(out / "qc_recognize.csv").set_index("video_id").loc[clips[0].stem, "error"]
    assert error.startswith(f"{clips[0]}: {kp_path} was posed on the frames of another window plan "
                            "(stride 4 where the checkpoint has 2): it lacks ")
    assert "pose with --frames sampled --clip-len 4 --stride 2 --hop 0.1, or --frames all" in error
    assert "\n" not in error and f"failed  {error}" in err
    assert not (out / "windows" / f"{clips[0].stem}.parquet").exists()


def test_keypoints_without_their_sidecar_are_refused(setup, tmp_path, capsys):
    """Without the sidecar the keypoints cannot be tied to the video (sha256): that video fails, the other runs."""
    root, clips, ckpt = setup
    src = root / "pose" / "keypoints"
    kp_dir = tmp_path / "kp"
    kp_dir.mkdir()
    dropped, no_hash, good = clips[0], clips[1], clips[2]
    shutil.copy(src / f"{dropped.stem}.parquet", kp_dir)  # the sidecar left behind
    for c in (no_hash, good):
        shutil.copy(src / f"{c.stem}.parquet", kp_dir)
        shutil.copy(src / f"{c.stem}.parquet.json", kp_dir)
    meta = read_sidecar(kp_dir / f"{no_hash.stem}.parquet")
    del meta["input_hash"]
    (kp_dir / f"{no_hash.stem}.parquet.json").write_text(json.dumps(meta))
    out = tmp_path / "out"
    code = main([str(dropped), str(no_hash), str(good), "--keypoints", str(kp_dir), "--weights", str(ckpt),
                 "--out", str(out), "--workers", "0", "-q"])
    err = capsys.readouterr().err
    assert code == 1
    qc = pd.read_csv(out / "qc_recognize.csv").set_index("video_id")
    assert qc.loc[good.stem, "status"] == "ok"
    for clip, what in ((dropped, "has no readable sidecar"), (no_hash, "has a sidecar without input_hash")):
        error = qc.loc[clip.stem, "error"]
        assert qc.loc[clip.stem, "status"] == "failed"
        assert error.startswith(f"{clip}: {kp_dir / clip.stem}.parquet {what} ({clip.stem}.parquet.json), so it "
                                "cannot be checked against this video's sha256")
        assert f"failed  {error}" in err
    assert sorted(p.name for p in (out / "windows").glob("*.parquet")) == [f"{good.stem}.parquet"]
