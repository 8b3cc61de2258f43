"""The pose stage end to end: real MA-52 clips (acceptance), odd inputs, batch behaviour and the CLI.

Pose on the four real clips is computed once per session (``real_run``); tests that need other
videos build them in ``tmp_path`` from a few frames of a real clip or synthesise them.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from model.taxonomy import BODY25_JOINTS, MA52_ENTITIES
from pipeline import pose_mediapipe
from pipeline.artifacts import read_sidecar, sha256_file
from pipeline.keypoints import read_keypoints
from pipeline.pose import PoseConfig, VideoJob, keypoints_path, main, make_jobs, process_video, run_pose
from pipeline.pose import process_video as _real_process_video
from pipeline.qc import entity_column
from pipeline.video import iter_frames
from model.windows import MA52_PLAN

J = {n: i for i, n in enumerate(BODY25_JOINTS)}
real = [pytest.mark.slow, pytest.mark.shared_data]


def write_video(path: Path, frames, fps: float = 30.0) -> Path:
    frames = list(frames)
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def clip_frames(clip: Path, n: int) -> list[np.ndarray]:
    return [img for _, _, img in iter_frames(clip, range(n))]


def blank_wall(n: int = 20, size=(320, 240)) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    base = np.full((size[1], size[0], 3), 170, np.uint8)
    return [np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8) for _ in range(n)]


@pytest.fixture(scope="session")
def real_run(ma52_clips, tmp_path_factory):
    """All four clips through the stage once (2 spawned workers, contact sheets on)."""
    out = tmp_path_factory.mktemp("pose_real")
    jobs = make_jobs(list(ma52_clips), out, PoseConfig(), overlay="sheet")
    results = run_pose(jobs, workers=2)
    return out, {r.item_id: r for r in results}, {Path(c).stem: Path(c) for c in ma52_clips}


# --------------------------------------------------------------------------------------------------
# Acceptance on the real clips
# --------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.shared_data
def test_real_clips_acceptance(real_run):
    out, results, clips = real_run
    assert set(results) == set(clips)
    for vid, r in results.items():
        assert r.status == "ok", r.error
        kp = read_keypoints(keypoints_path(out, vid))
        assert kp.size == (1080, 1296) and kp.fps == pytest.approx(30.0)
        assert len(kp) == r.qc["frames_total"]  # every frame posed
        # a person in at least 95% of frames
        assert kp.valid.mean() >= 0.95, vid
        b = kp.body25
        present = np.all(b[:, [J["Nose"], J["Neck"], J["MidHip"], J["RShoulder"], J["LShoulder"]], 2] > 0, axis=1)
        order = (
            present
            & (b[:, J["Nose"], 1] < b[:, J["Neck"], 1])
            & (b[:, J["Neck"], 1] < b[:, J["MidHip"], 1])
            # frontal: the person's right shoulder is on the image's left
            & (b[:, J["RShoulder"], 0] < b[:, J["LShoulder"], 0])
        )
        assert order.mean() >= 0.95, vid
        # all six entities get boxes of their own
        for name in MA52_ENTITIES.names:
            assert r.qc[entity_column(name)] >= 0.95, (vid, name)
        assert r.qc["flags"] == ""
        # coordinates in source pixels, confidences in [0, 1], missing joints exactly zero
        valid = b[kp.valid]
        assert valid[..., 0].max() < 1080 and valid[..., 1].max() < 1296 and valid.min() >= 0
        assert np.all(valid[:, [J["LSmallToe"], J["RSmallToe"]]] == 0)
        assert np.all(kp.extra[kp.valid][..., 2] <= 1)
        side = read_sidecar(keypoints_path(out, vid))
        assert side["stage"] == "pose" and side["input_hash"] == sha256_file(clips[vid])
        assert side["config"]["settings"]["smooth_landmarks"] is False
        assert (out / "overlays" / f"{vid}.png").stat().st_size > 1000


@pytest.mark.slow
@pytest.mark.shared_data
def test_rerun_skips_up_to_date(real_run):
    out, results, clips = real_run
    vid = sorted(clips)[0]
    path = keypoints_path(out, vid)
    before = path.stat().st_mtime_ns
    r = process_video(VideoJob(str(clips[vid]), vid, str(out), PoseConfig()))
    assert r.status == "skipped" and r.written == []
    assert path.stat().st_mtime_ns == before
    assert r.qc["valid_fraction"] == pytest.approx(results[vid].qc["valid_fraction"])


@pytest.mark.slow
@pytest.mark.shared_data
def test_parallel_workers_write_the_same_bytes_as_one_process(real_run, tmp_path):
    """real_run used 2 spawned workers; one process posing the shortest clip must write identical keypoints.

    (The sidecars differ only in their creation time.)
    """
    out, _, clips = real_run
    vid = min(clips, key=lambda v: len(read_keypoints(keypoints_path(out, v))))
    [r] = run_pose(make_jobs([clips[vid]], tmp_path, PoseConfig()), workers=1)
    assert r.status == "ok"
    assert keypoints_path(tmp_path, vid).read_bytes() == keypoints_path(out, vid).read_bytes()
    a, b = read_sidecar(keypoints_path(tmp_path, vid)), read_sidecar(keypoints_path(out, vid))
    assert {k for k in a if a[k] != b[k]} <= {"created"}


@pytest.mark.slow
@pytest.mark.shared_data
def test_sampled_frames_match_full_tracking(real_run, tmp_path):
    out, _, clips = real_run
    vid = max(clips, key=lambda v: read_keypoints(keypoints_path(out, v)).frames.size)
    full = read_keypoints(keypoints_path(out, vid))
    r = process_video(VideoJob(str(clips[vid]), vid, str(tmp_path), PoseConfig(frames="sampled")))
    assert r.status == "ok"
    kp = read_keypoints(keypoints_path(tmp_path, vid))
    expected = MA52_PLAN.sampled_frames(len(full), 30.0)
    assert kp.frames.tolist() == expected.tolist()
    assert r.qc["frames_posed"] == len(expected) < len(full)
    # each stored frame carries its own stream time, the same as in the every-frame run
    np.testing.assert_allclose(full.time_s, full.frames / 30.0, atol=1e-6)
    np.testing.assert_array_equal(kp.time_s, full.time_s[expected])
    assert kp.meta["frames_requested"] == len(expected) and kp.meta["frames_missing"] == 0
    # tracking across the gaps gives (nearly) the same skeleton as tracking every frame
    both = kp.valid & full.valid[expected]
    a, b = kp.body25[both], full.body25[expected][both]
    on = (a[..., 2] > 0.5) & (b[..., 2] > 0.5)
    assert np.abs(a[..., :2] - b[..., :2])[on].mean() < 10.0


# --------------------------------------------------------------------------------------------------
# Odd inputs built from a real clip
# --------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.shared_data
def test_head_and_shoulders_framing(real_run, tmp_path):
    out, _, clips = real_run
    vid = sorted(clips)[2]
    full = read_keypoints(keypoints_path(out, vid))
    b0 = full.body25[0]
    sw = b0[J["LShoulder"], 0] - b0[J["RShoulder"], 0]
    sh_y = b0[J["Neck"], 1]
    x1, x2 = int(b0[J["RShoulder"], 0] - 0.7 * sw), int(b0[J["LShoulder"], 0] + 0.7 * sw)
    y1, y2 = int(b0[J["Nose"], 1] - 1.2 * sw), int(sh_y + 0.3 * sw)
    w, h = (x2 - x1) // 2 * 2, (y2 - y1) // 2 * 2
    frames = [cv2.resize(f[y1 : y1 + h, x1 : x1 + w], (2 * w, 2 * h)) for f in clip_frames(clips[vid], 20)]
    path = write_video(tmp_path / "hs.mp4", frames)
    r = process_video(VideoJob(str(path), "hs", str(tmp_path / "out"), PoseConfig()))
    assert r.status == "ok", r.error
    kp = read_keypoints(keypoints_path(tmp_path / "out", "hs"))
    kept = kp.valid
    assert kp.detected.mean() >= 0.9
    # Documented behaviour: the upper body is kept, hips and below are outside the image and therefore
    # missing (never extrapolated positions); implausible frames are rejected and zeroed.
    assert np.all(kp.body25[kept][:, [J["Nose"], J["RShoulder"], J["LShoulder"]], 2] > 0.5)
    assert np.all(kp.body25[kept][:, [J["RHip"], J["LHip"], J["MidHip"], J["RKnee"], J["LAnkle"]]] == 0)
    assert np.all(kp.body25[kp.rejected] == 0)
    assert "low_lower_body" in r.qc["flags"]
    assert r.qc[entity_column("head")] >= 0.9 and r.qc[entity_column("face")] >= 0.9


@pytest.mark.slow
@pytest.mark.shared_data
def test_rotated_video(real_run, tmp_path):
    out, _, clips = real_run
    vid = sorted(clips)[2]
    full = read_keypoints(keypoints_path(out, vid))
    stored = [cv2.rotate(f, cv2.ROTATE_90_COUNTERCLOCKWISE) for f in clip_frames(clips[vid], 12)]
    path = write_video(tmp_path / "rot.mp4", stored)
    data = bytearray(path.read_bytes())  # rotation metadata: display 90 degrees clockwise (upright again)
    i = data.find(b"tkhd")
    m = i + 4 + 4 + 4 * 5 + 8 + 8
    one = 1 << 16
    data[m : m + 36] = struct.pack(">9i", 0, one, 0, -one, 0, 0, 0, 0, 1 << 30)
    path.write_bytes(bytes(data))
    r = process_video(VideoJob(str(path), "rot", str(tmp_path / "out"), PoseConfig()))
    assert r.status == "ok", r.error
    kp = read_keypoints(keypoints_path(tmp_path / "out", "rot"))
    assert kp.size == (1080, 1296) and kp.meta["rotation"] == 90
    assert kp.valid.all()
    a, b = kp.body25, full.body25[:12]
    on = (a[..., 2] > 0.5) & (b[..., 2] > 0.5)
    assert np.abs(a[..., :2] - b[..., :2])[on].mean() < 10.0


@pytest.mark.slow
@pytest.mark.shared_data
def test_roi_ignores_a_second_person(real_run, tmp_path):
    out, _, clips = real_run
    left_id, right_id = sorted(clips)[0], sorted(clips)[2]
    n = 8
    halves = [
        [cv2.resize(f, (540, 648)) for f in clip_frames(clips[v], n)] for v in (left_id, right_id)
    ]
    path = write_video(tmp_path / "two.mp4", [np.hstack([a, b]) for a, b in zip(*halves)])
    r = process_video(VideoJob(str(path), "two", str(tmp_path / "out"), PoseConfig(), roi=(540, 0, 540, 648)))
    assert r.status == "ok", r.error
    kp = read_keypoints(keypoints_path(tmp_path / "out", "two"))
    assert kp.valid.all()
    ref = read_keypoints(keypoints_path(out, right_id)).body25[:n]
    # full-frame coordinates: the right person's keypoints, halved and shifted by the ROI's x
    on = (kp.body25[..., 2] > 0.5) & (ref[..., 2] > 0.5)
    expect = ref[..., :2] * 0.5 + np.array([540, 0])
    assert np.abs(kp.body25[..., :2] - expect)[on].mean() < 8.0
    assert kp.body25[kp.body25[..., 2] > 0][:, 0].min() >= 540
    assert kp.meta["roi"] == [540, 0, 540, 648]


@pytest.mark.slow
@pytest.mark.shared_data
def test_frames_without_a_person(real_run, tmp_path):
    _, _, clips = real_run
    vid = sorted(clips)[2]
    real_frames = clip_frames(clips[vid], 12)
    wall = blank_wall(8, size=(1080, 1296))
    path = write_video(tmp_path / "enter.mp4", wall + real_frames)
    r = process_video(VideoJob(str(path), "enter", str(tmp_path / "out"), PoseConfig()))
    kp = read_keypoints(keypoints_path(tmp_path / "out", "enter"))
    assert not kp.detected[:8].any() and np.all(kp.body25[:8] == 0)
    assert kp.valid[8:].mean() >= 0.9  # the tracker picks the person up once they appear
    assert r.qc["detected_fraction"] == pytest.approx(kp.detected.mean())


# --------------------------------------------------------------------------------------------------
# Synthetic inputs (no shared data needed)
# --------------------------------------------------------------------------------------------------
def test_blank_wall_and_broken_files_in_one_batch(tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "wall.mp4", blank_wall(15))
    (videos / "zero.mp4").write_bytes(b"")
    (videos / "corrupt.mp4").write_bytes(np.random.default_rng(1).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    good = write_video(tmp_path / "tmp.mp4", blank_wall(30))
    (videos / "truncated.mp4").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (videos / "notes.txt").write_text("not a video, ignored")
    out = tmp_path / "out"
    rc = main([str(videos), "--out", str(out), "--overlay", "both", "-q"])
    assert rc == 1  # some inputs failed; the others were processed
    captured = capsys.readouterr()
    assert f"wrote {out / 'keypoints' / 'wall.parquet'}" in captured.out
    assert f"wrote {out / 'qc.csv'}" in captured.out
    qc = pd.read_parquet(out / "qc.parquet").set_index("video_id")
    assert sorted(qc.index) == ["corrupt", "truncated", "wall", "zero"]
    assert qc.loc["wall", "status"] == "ok"
    assert qc.loc["wall", "detected_fraction"] == 0 and "low_detection" in qc.loc["wall", "flags"]
    for vid, why in (("zero", "empty file"), ("corrupt", "cannot be opened"), ("truncated", "cannot be opened")):
        assert qc.loc[vid, "status"] == "failed"
        assert f"{vid}.mp4" in qc.loc[vid, "error"] and why in qc.loc[vid, "error"], qc.loc[vid, "error"]
    kp = read_keypoints(out / "keypoints" / "wall.parquet")
    assert len(kp) == 15 and not kp.detected.any() and np.all(kp.body25 == 0)
    assert (out / "overlays" / "wall.png").exists()
    cap = cv2.VideoCapture(str(out / "overlays" / "wall.mp4"))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 15
    cap.release()
    assert "3 failed" in captured.err


def test_only_good_inputs_exit_zero_and_roi_file(tmp_path, capsys):
    path = write_video(tmp_path / "wall.mp4", blank_wall(5))
    rois = tmp_path / "rois.csv"
    rois.write_text("video_id,x,y,w,h\nwall,10,10,200,150\nwal1,0,0,50,50\n")
    rc = main([str(path), "--out", str(tmp_path / "out"), "--roi-file", str(rois), "--frames", "sampled", "-q"])
    assert rc == 0
    assert "--roi-file names video(s) not among the inputs: wal1" in capsys.readouterr().err
    kp = read_keypoints(tmp_path / "out" / "keypoints" / "wall.parquet")
    assert kp.meta["roi"] == [10, 10, 200, 150] and kp.frames.tolist() == [0, 4]


def test_implausible_frames_are_rejected_and_counted(tmp_path, monkeypatch):
    """A collapsed skeleton (seen with head-and-shoulders framing) on every other frame."""
    calls = {"n": 0}

    def fake_landmarks(self, rgb):
        h, w = rgb.shape[:2]
        calls["n"] += 1
        lm = np.zeros((33, 3), np.float32)
        lm[:, 2] = 0.99
        if calls["n"] % 2:
            lm[:, :2] = (w / 2, h / 2)  # everything on one spot
            lm[:, :2] += np.random.default_rng(calls["n"]).normal(0, 1, (33, 2))
        else:  # plausible: shoulders above hips
            lm[:, 0] = w / 2
            lm[:, 1] = h / 3
            lm[[11, 23], 0] = w / 2 + 40
            lm[[12, 24], 0] = w / 2 - 40
            lm[[23, 24], 1] = h / 3 + 120
        return lm

    monkeypatch.setattr(pose_mediapipe.MediaPipePose, "landmarks", fake_landmarks)
    path = write_video(tmp_path / "v.mp4", blank_wall(10, size=(320, 480)))
    r = process_video(VideoJob(str(path), "v", str(tmp_path / "out"), PoseConfig()))
    kp = read_keypoints(keypoints_path(tmp_path / "out", "v"))
    assert kp.detected.all()
    assert kp.rejected.tolist() == [True, False] * 5
    assert np.all(kp.body25[kp.rejected] == 0) and np.all(kp.extra[kp.rejected] == 0)
    assert r.qc["rejected_frames"] == 5 and "many_rejected" in r.qc["flags"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model-complexity", "2"], "model_complexity=2 is not available offline"),
        (["--roi", "1,2,3"], "--roi must be x,y,w,h"),
        (["--workers", "0"], "--workers must be >= 1"),
        (["--hop", "0"], "hop_s must be > 0"),
    ],
)
def test_bad_arguments_exit_2(tmp_path, capsys, args, message):
    path = write_video(tmp_path / "wall.mp4", blank_wall(3))
    with pytest.raises(SystemExit) as exc:
        main([str(path), "--out", str(tmp_path / "out"), *args])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_input_and_empty_folder_exit_2(tmp_path, capsys):
    for inputs in ([str(tmp_path / "nope.txt")], [str(tmp_path)]):
        with pytest.raises(SystemExit) as exc:
            main([*inputs, "--out", str(tmp_path / "out")])
        assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "no such file or folder" in err and "no inputs found" in err


def crash_on_boom(job):
    """Fault injection for the worker-crash test: the worker posing ``boom`` dies without a word."""
    if job.video_id == "boom":
        os._exit(7)
    return _real_process_video(job)


def test_workers_process_videos_in_parallel_and_survive_a_crashed_worker(tmp_path, capsys, monkeypatch):
    videos = tmp_path / "videos"
    videos.mkdir()
    for k, name in enumerate(("a", "b", "boom", "c", "e")):
        write_video(videos / f"{name}.mp4", blank_wall(4 + k))
    (videos / "d.mp4").write_bytes(b"")
    # Spawned workers unpickle crash_on_boom from this module, so they get the real process_video.
    monkeypatch.setattr("pipeline.pose.process_video", crash_on_boom)
    rc = main([str(videos), "--out", str(tmp_path / "out"), "--workers", "2", "-q"])
    assert rc == 1
    qc = pd.read_parquet(tmp_path / "out" / "qc.parquet").set_index("video_id")
    assert qc["status"].to_dict() == {"a": "ok", "b": "ok", "boom": "failed", "c": "ok", "d": "failed", "e": "ok"}
    assert "boom.mp4: the worker process died" in qc.loc["boom", "error"]
    assert "empty file" in qc.loc["d", "error"]
    err = capsys.readouterr().err
    assert "4 posed" in err and "2 failed" in err
    # the same keypoints, byte for byte, as one process posing them in order
    monkeypatch.undo()
    serial = run_pose(make_jobs([videos / f"{v}.mp4" for v in "abce"], tmp_path / "serial", PoseConfig()), workers=1)
    assert [r.status for r in serial] == ["ok"] * 4
    for v in "abce":
        name = Path("keypoints") / f"{v}.parquet"
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "serial" / name).read_bytes(), v


def die_after_posing_b(job):
    """Fault injection: the worker posing ``b`` dies after b's outputs are written, before its result is sent."""
    result = _real_process_video(job)
    if job.video_id == "b" and result.status == "ok":
        os._exit(7)
    return result


def test_a_video_posed_before_its_worker_died_counts_as_posed(tmp_path, capsys, monkeypatch):
    """The race behind a once-flaky CI run of the test above: a job finished its outputs, but its result
    was lost with the broken pool. Its re-run finds them up to date; it was posed in this run, so it is
    reported posed (``ok``), not ``skipped``."""
    videos = tmp_path / "videos"
    videos.mkdir()
    for k, name in enumerate("abc"):
        write_video(videos / f"{name}.mp4", blank_wall(4 + k))
    monkeypatch.setattr("pipeline.pose.process_video", die_after_posing_b)
    assert main([str(videos), "--out", str(tmp_path / "out"), "--workers", "2", "-q"]) == 0
    qc = pd.read_parquet(tmp_path / "out" / "qc.parquet").set_index("video_id")
    assert qc["status"].to_dict() == {"a": "ok", "b": "ok", "c": "ok"}
    assert "3 posed" in capsys.readouterr().err
    # a second run: every video up to date, and so reported
    monkeypatch.undo()
    assert main([str(videos), "--out", str(tmp_path / "out"), "--workers", "2", "-q"]) == 0
    assert set(pd.read_parquet(tmp_path / "out" / "qc.parquet")["status"]) == {"skipped"}


def test_overlay_flag_takes_a_value_and_up_to_date_videos_are_not_redrawn(tmp_path, capsys):
    path = write_video(tmp_path / "wall.mp4", blank_wall(6))
    out = tmp_path / "out"
    sheet, movie = out / "overlays" / "wall.png", out / "overlays" / "wall.mp4"
    # the value is required, so the flag may come before the inputs
    assert main(["--overlay", "sheet", str(path), "--out", str(out), "-q"]) == 0
    assert sheet.exists() and not movie.exists()
    before = sheet.stat().st_mtime_ns
    capsys.readouterr()
    assert main(["--overlay", "sheet", str(path), "--out", str(out), "-q"]) == 0
    assert sheet.stat().st_mtime_ns == before  # up to date: nothing decoded or drawn again
    assert "wrote" not in capsys.readouterr().out.replace(f"wrote {out / 'qc'}", "")
    assert main(["--overlay", "both", str(path), "--out", str(out), "-q"]) == 0
    assert movie.exists() and sheet.stat().st_mtime_ns == before  # only the missing MP4 is drawn
    sheet.unlink()
    assert main([str(path), "--out", str(out), "--overlay", "sheet", "-q"]) == 0
    assert sheet.exists()
    with pytest.raises(SystemExit) as exc:  # a bare --overlay is an error, not a silent default
        main([str(path), "--out", str(out), "--overlay"])
    assert exc.value.code == 2


def test_resume_redoes_changed_videos_and_configs_and_never_leaves_a_partial_file(tmp_path, monkeypatch):
    path = write_video(tmp_path / "v.mp4", blank_wall(6))
    out = tmp_path / "out"
    kp_file = keypoints_path(out, "v")

    def run(**kw):
        return process_video(VideoJob(str(path), "v", str(out), kw.pop("config", PoseConfig()), **kw))

    assert run().status == "ok"
    assert run().status == "skipped"
    assert run(roi=(0, 0, 200, 200)).status == "ok"  # another ROI is another config
    assert run(config=PoseConfig(frames="sampled")).status == "ok"
    assert run(config=PoseConfig(frames="sampled")).status == "skipped"
    # other bytes under the same name: posed again
    write_video(path, blank_wall(7))
    assert run(config=PoseConfig(frames="sampled")).status == "ok"
    # a damaged keypoints file under a matching sidecar is posed again, not reported as failed
    kp_file.write_bytes(b"PAR1 garbage")
    r = run(config=PoseConfig(frames="sampled"))
    assert r.status == "ok" and len(read_keypoints(kp_file)) == r.qc["frames_posed"]
    # a crash in the middle of a video: the old file stays, but its sidecar no longer matches the input
    write_video(path, blank_wall(9))
    calls = {"n": 0}

    def dies_on_frame_4(self, rgb):
        calls["n"] += 1
        if calls["n"] == 4:
            raise MemoryError("simulated crash")
        return None

    monkeypatch.setattr(pose_mediapipe.MediaPipePose, "landmarks", dies_on_frame_4)
    r = run()
    assert r.status == "failed" and "MemoryError" in r.error and r.written == []
    # the earlier run's keypoints of this video are gone with it (audit 6), and no temp file is left
    assert list(kp_file.parent.iterdir()) == [] and sorted(Path(p).name for p in r.removed) == ["v.parquet", "v.parquet.json"]
    monkeypatch.undo()
    assert run().status == "ok" and len(read_keypoints(kp_file)) == 9


def test_decoding_more_frames_than_probed_updates_the_count(tmp_path, monkeypatch):
    # Belt and braces for containers whose count is an estimate (MPEG-PS said 16 for these 20 frames).
    from pipeline import pose_backends
    from pipeline.video import probe

    path = write_video(tmp_path / "v.avi", blank_wall(20), fps=25.0)
    real_probe = probe
    monkeypatch.setattr(pose_backends, "probe", lambda p: dataclasses.replace(real_probe(p), frame_count=16))
    r = process_video(VideoJob(str(path), "v", str(tmp_path / "out"), PoseConfig()))
    kp = read_keypoints(keypoints_path(tmp_path / "out", "v"))
    assert len(kp) == 20 and kp.meta["frame_count"] == 20 and kp.meta["frames_missing"] == 0
    assert r.qc["frames_total"] == 20


# --------------------------------------------------------------------------------------------------
# Coordinates: ROI offsets and the person's own left/right (lossless video so pixels are identical)
# --------------------------------------------------------------------------------------------------
_PAIRS = [(J[n], J["L" + n[1:]]) for n in BODY25_JOINTS if n.startswith("R") and n[1:2].isupper()]


def _ffv1(path: Path, frames) -> Path:
    """A lossless (FFV1) AVI: decoded pixels equal the written ones."""
    frames = list(frames)
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 30.0, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()
    return path


@pytest.fixture(scope="module")
def small_clip(ma52_clips, tmp_path_factory):
    """8 frames of a real clip at half size (540x648), stored losslessly, and their plain pose."""
    tmp = tmp_path_factory.mktemp("coords")
    frames = [cv2.resize(f, (540, 648), interpolation=cv2.INTER_AREA) for f in clip_frames(sorted(ma52_clips)[2], 8)]
    path = _ffv1(tmp / "small.avi", frames)
    r = process_video(VideoJob(str(path), "small", str(tmp / "out"), PoseConfig()))
    assert r.status == "ok", r.error
    return tmp, frames, read_keypoints(keypoints_path(tmp / "out", "small"))


@pytest.mark.slow
@pytest.mark.shared_data
def test_roi_pose_equals_pose_of_the_same_pixels_in_a_larger_canvas(small_clip):
    tmp, frames, ref = small_clip
    assert ref.valid.all()
    ox, oy = 251, 137  # odd offsets: a swapped or halved offset would show
    rng = np.random.default_rng(0)
    canvas = []
    for f in frames:
        c = rng.integers(0, 256, (900, 1000, 3), dtype=np.uint8)  # busy background outside the ROI
        c[oy : oy + 648, ox : ox + 540] = f
        canvas.append(c)
    path = _ffv1(tmp / "canvas.avi", canvas)
    r = process_video(VideoJob(str(path), "canvas", str(tmp / "out"), PoseConfig(), roi=(ox, oy, 540, 648)))
    assert r.status == "ok", r.error
    kp = read_keypoints(keypoints_path(tmp / "out", "canvas"))
    assert kp.size == (1000, 900) and kp.meta["roi"] == [ox, oy, 540, 648]
    np.testing.assert_array_equal(kp.detected, ref.detected)
    for got, want in ((kp.body25, ref.body25), (kp.extra, ref.extra)):
        on = want[..., 2] > 0
        np.testing.assert_array_equal(got[..., 2] > 0, on)  # same joints present (outside = outside the ROI)
        np.testing.assert_allclose(got[..., 2], want[..., 2], atol=1e-6)
        np.testing.assert_allclose(got[on][:, :2], want[on][:, :2] + np.array([ox, oy]), atol=0.01)


@pytest.mark.slow
@pytest.mark.shared_data
def test_mirrored_video_swaps_the_persons_left_and_right(small_clip):
    """Left/right are the person's own: in the mirror image the person's right is the original's left."""
    tmp, frames, ref = small_clip
    path = _ffv1(tmp / "mirror.avi", [cv2.flip(f, 1) for f in frames])
    assert process_video(VideoJob(str(path), "mirror", str(tmp / "out"), PoseConfig())).status == "ok"
    kp = read_keypoints(keypoints_path(tmp / "out", "mirror"))
    assert kp.valid.all()
    b, m = ref.body25, kp.body25
    # still frontal: the person's right shoulder is on the image's left
    assert np.all(m[:, J["RShoulder"], 0] < m[:, J["LShoulder"], 0])
    expect = b.copy()
    for r_, l_ in _PAIRS:
        expect[:, [r_, l_]] = b[:, [l_, r_]]
    expect[..., 0] = 540 - expect[..., 0]  # x -> W - x in continuous pixel coordinates
    upper = [J[n] for n in ("Nose", "Neck", "RShoulder", "LShoulder", "RElbow", "LElbow", "REye", "LEye", "REar", "LEar")]
    on = (m[:, upper, 2] > 0.5) & (expect[:, upper, 2] > 0.5)
    err = np.abs(m[:, upper, :2] - expect[:, upper, :2])[on]
    assert err.mean() < 4.0, err.mean()
    # and not the unswapped reading (which would put each shoulder a shoulder width away)
    sw = np.abs(b[:, J["LShoulder"], 0] - b[:, J["RShoulder"], 0]).mean()
    assert sw > 10 * err.mean()


def test_variable_frame_rate_video_keeps_stream_times_in_keypoints(tmp_path):
    from test_video import make_variable_rate

    path = write_video(tmp_path / "vfr.mp4", blank_wall(80))
    data = path.read_bytes()
    i = data.find(b"stts")
    _, delta = struct.unpack(">II", data[i + 12 : i + 20])
    make_variable_rate(path, [(40, delta), (40, 2 * delta)])  # 40 frames at 30 fps, then 40 at 15 fps
    expected = np.r_[np.arange(40) / 30, 40 / 30 + np.arange(40) * 2 / 30]
    for mode in ("all", "sampled"):
        r = process_video(VideoJob(str(path), f"vfr_{mode}", str(tmp_path / "out"), PoseConfig(frames=mode)))
        assert r.status == "ok", r.error
        kp = read_keypoints(keypoints_path(tmp_path / "out", f"vfr_{mode}"))
        assert kp.meta["frame_count"] == 80 and kp.fps == pytest.approx(20.0, rel=0.05)  # 80 frames in 4 s
        np.testing.assert_allclose(kp.time_s, expected[kp.frames], atol=2e-3)
    # sampled: exactly the planned frames (planned in frame indices at the average rate)
    assert kp.frames.tolist() == MA52_PLAN.sampled_frames(80, kp.fps).tolist()


# --------------------------------------------------------------------------------------------------
# Audit cases (each failed on wave 1's code)
# --------------------------------------------------------------------------------------------------
def test_a_video_that_decodes_only_partway_fails_flagged_truncated(tmp_path, capsys):
    """Audit 2: a cut-off MP4 with its index at the front was reported ok with about half its frames."""
    from test_video import move_index_to_front

    good = move_index_to_front(write_video(tmp_path / "good.mp4", blank_wall(30)))
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "cut.mp4").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    write_video(videos / "fine.mp4", blank_wall(5))
    out = tmp_path / "out"
    assert main([str(videos), "--out", str(out), "-q"]) == 1
    qc = pd.read_parquet(out / "qc.parquet").set_index("video_id")
    assert qc.loc["cut", "status"] == "failed" and qc.loc["cut", "flags"] == "failed;truncated"
    assert "cut.mp4: truncated: only" in qc.loc["cut", "error"] and "of the 30 frames" in qc.loc["cut", "error"]
    assert not keypoints_path(out, "cut").exists()
    assert qc.loc["fine", "status"] == "ok"
    assert "1 failed" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["file", "under_a_file"])
def test_unusable_out_is_reported_before_any_video_is_posed(tmp_path, capsys, monkeypatch, where):
    """Audit 3: an --out that is a file was discovered only after posing everything, as a traceback."""
    path = write_video(tmp_path / "wall.mp4", blank_wall(3))
    blocker = tmp_path / "taken"
    blocker.write_text("a user's file")
    out = blocker if where == "file" else blocker / "sub"
    posed = []
    monkeypatch.setattr(pose_mediapipe.MediaPipePose, "landmarks", lambda self, rgb: posed.append(1))
    with pytest.raises(SystemExit) as exc:
        main([str(path), "--out", str(out)])
    assert exc.value.code == 2 and posed == []
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pipeline.pose: error: --out") and str(out) in err[0], err
    assert blocker.read_text() == "a user's file"


def test_a_qc_table_that_cannot_be_written_is_one_line_exit_2_before_any_video(tmp_path, capsys):
    path = write_video(tmp_path / "wall.mp4", blank_wall(3))
    out = tmp_path / "out"
    (out / "qc.parquet").mkdir(parents=True)  # a folder where the table goes
    with pytest.raises(SystemExit) as exc:
        main([str(path), "--out", str(out), "-q"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"pipeline.pose: error: {out / 'qc.parquet'} is in the way") and err.count("\n") == 1
    assert not keypoints_path(out, "wall").exists()


def test_qc_rows_persist_and_a_replaced_corrupt_video_loses_its_old_keypoints(tmp_path, capsys):
    """Audit 6: a run on one file dropped the folder's other QC rows (failures included), and a video
    later replaced by a corrupt file kept its old keypoints beside a failed QC row."""
    videos = tmp_path / "videos"
    videos.mkdir()
    for name, n in (("a", 4), ("b", 5)):
        write_video(videos / f"{name}.mp4", blank_wall(n))
    (videos / "bad.mp4").write_bytes(b"")
    out = tmp_path / "out"
    assert main([str(videos), "--out", str(out), "--overlay", "sheet", "-q"]) == 1
    first = pd.read_parquet(out / "qc.parquet").set_index("video_id")
    assert first["status"].to_dict() == {"a": "ok", "b": "ok", "bad": "failed"}
    # one file alone, replaced by a corrupt one
    (videos / "a.mp4").write_bytes(np.random.default_rng(3).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    assert main([str(videos / "a.mp4"), "--out", str(out), "-q"]) == 1
    qc = pd.read_parquet(out / "qc.parquet").set_index("video_id")
    assert sorted(qc.index) == ["a", "b", "bad"]
    assert qc["status"].to_dict() == {"a": "failed", "b": "ok", "bad": "failed"}
    assert qc.loc["b"].equals(first.loc["b"]) and qc.loc["bad"].equals(first.loc["bad"])
    assert not keypoints_path(out, "a").exists() and not (out / "keypoints" / "a.parquet.json").exists()
    assert not (out / "overlays" / "a.png").exists() and (out / "overlays" / "b.png").exists()
    assert keypoints_path(out, "b").exists()
    assert sorted(pd.read_csv(out / "qc.csv")["video_id"]) == ["a", "b", "bad"]


def test_posing_leaves_no_process_wide_state_behind(tmp_path, monkeypatch):
    """Issue 8 item 6: no environment variables or warning filters left behind by the library."""
    import warnings

    for name in ("GLOG_minloglevel", "TF_CPP_MIN_LOG_LEVEL"):  # wave 1 set these for good
        monkeypatch.delenv(name, raising=False)
    env = dict(os.environ)
    filters = list(warnings.filters)
    path = write_video(tmp_path / "wall.mp4", blank_wall(6))
    assert process_video(VideoJob(str(path), "wall", str(tmp_path / "out"), PoseConfig(), force=True)).status == "ok"
    assert dict(os.environ) == env
    assert warnings.filters == filters
