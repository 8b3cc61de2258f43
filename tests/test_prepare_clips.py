"""recipes.prepare_clips on the real MA-52 sample clips, and the model.clips datasets over the result."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from model.clips import ClipDataset, PreparedClips, segment_frame_indices
from model.taxonomy import KEYPOINT_NAMES
from model.transforms import hflip_clip
from recipes.prepare_clips import main

LW, RW = KEYPOINT_NAMES.index("LWrist"), KEYPOINT_NAMES.index("RWrist")
SHORT = 96  # small stored frames keep the test fast; 1080x1296 -> 96x115


def _labels(ma52_dir: Path) -> dict[str, int]:
    with (ma52_dir / "clips" / "labels.csv").open() as f:
        return {r["file"]: int(r["action_id"]) for r in csv.DictReader(f)}


def _write_openpose(folder: Path, n: int, *, width: int = 1080, height: int = 1296) -> None:
    """Frames 0..n-1, one person; LWrist at x = 300 + f (left part of the image), RWrist at x = 800."""
    folder.mkdir(parents=True)
    for f in range(n):
        kp = np.zeros((25, 3))
        kp[:, :2] = [width / 2, height / 2]
        kp[:, 2] = 0.9
        kp[LW] = [300 + f, 700, 0.95]
        kp[RW] = [800, 700, 0.8]
        (folder / f"clip_{f:012d}_keypoints.json").write_text(
            json.dumps({"people": [{"pose_keypoints_2d": kp.reshape(-1).tolist()}]}))


@pytest.fixture(scope="module")
def prepared(ma52_dir, ma52_clips, tmp_path_factory):
    """Two real clips prepared with synthetic OpenPose JSON."""
    root = tmp_path_factory.mktemp("prep")
    labels = _labels(ma52_dir)
    chosen = sorted(labels)[2:4]  # the two shortest (B1, B3: 50 frames each)
    (root / "list.txt").write_text("".join(f"{v} {labels[v]}\n" for v in chosen))
    for v in chosen:
        _write_openpose(root / "pose" / Path(v).stem, 50)
    rc = main(["-q", "--list", str(root / "list.txt"), "--data-root", str(ma52_dir / "clips"),
               "--openpose", str(root / "pose"), "--out", str(root / "out"), "--short-side", str(SHORT),
               "--crop-size", "64"])
    assert rc == 0
    return root, chosen, labels


def test_prepared_real_clips_shapes_and_keypoints(prepared):
    root, chosen, labels = prepared
    data = PreparedClips(root / "out")
    assert len(data) == 2 and data.preprocessing.resize_short == SHORT and data.preprocessing.size == 64
    for i, v in enumerate(chosen):
        clip = data.clip(i)
        assert clip.label == labels[v] and data.records[i]["has_keypoints"]
        assert clip.num_frames >= 40 and clip.frame_indices.tolist() == list(range(clip.num_frames))
        frames = clip.frames([0, 10])
        assert frames.shape == (2, 3, round(1296 * SHORT / 1080), SHORT) and frames.dtype == torch.uint8
        # keypoints moved with the pixels: x * 96 / 1080, y * 115 / 1296
        sx, sy = SHORT / 1080, round(1296 * SHORT / 1080) / 1296
        np.testing.assert_allclose(clip.keypoints[10, LW], [(300 + 10) * sx, 700 * sy, 0.95], rtol=1e-5)
        assert clip.keypoints.shape == (clip.num_frames, 33, 3) and np.all(clip.keypoints[:, 25:] == 0)


def test_loader_shapes_on_real_clips(prepared):
    root, _, _ = prepared
    train = ClipDataset(root / "out", 8, train=True, seed=1)
    s = train[0]
    assert s["frames"].shape == (8, 3, 64, 64) and s["frames"].dtype == torch.uint8
    assert s["keypoints"].shape == (8, 33, 3) and s["label"].dtype == torch.int64
    ev = ClipDataset(root / "out", 8, train=False)
    a, b = ev[1], ev[1]
    assert torch.equal(a["frames"], b["frames"])  # evaluation is deterministic
    multi = ClipDataset(root / "out", 8, train=False, views=(2, 3))[1]
    assert multi["frames"].shape == (6, 8, 3, 64, 64) and multi["keypoints"].shape == (6, 8, 33, 3)
    assert torch.equal(multi["frames"][1], ClipDataset(root / "out", 8, train=False, views=(2, 1))[1]["frames"][0])


def test_flip_mirrors_keypoints_and_swaps_sides_on_a_real_frame(prepared):
    root, _, _ = prepared
    plain = ClipDataset(root / "out", 4, train=True, flip_p=0.0, seed=3)[0]
    flipped = ClipDataset(root / "out", 4, train=True, flip_p=1.0, seed=3)[0]
    # same frames and crop, then the flip: the dataset's flip is hflip_clip of the unflipped sample
    ref_frames, ref_kp = hflip_clip(plain["frames"], plain["keypoints"])
    assert torch.equal(flipped["frames"], ref_frames) and torch.equal(flipped["keypoints"], ref_kp)
    w = plain["frames"].shape[-1]
    # the person's left wrist becomes the right wrist at the mirrored x (continuous coordinates)
    np.testing.assert_allclose(flipped["keypoints"][:, RW, 0], w - plain["keypoints"][:, LW, 0], rtol=1e-6)
    np.testing.assert_allclose(flipped["keypoints"][:, LW, 0], w - plain["keypoints"][:, RW, 0], rtol=1e-6)
    assert torch.equal(flipped["keypoints"][:, RW, 2], plain["keypoints"][:, LW, 2])
    # the real image content under the joint moves with it
    x, y = plain["keypoints"][0, LW, :2].floor().long().tolist()
    if 0 <= x < w and 0 <= y < plain["frames"].shape[-2]:
        xf = int(flipped["keypoints"][0, RW, 0].floor())
        xf = min(xf, w - 1)  # x -> W - x lands on pixel W - 1 - floor(x)
        assert torch.equal(flipped["frames"][0, :, y, w - 1 - x], plain["frames"][0, :, y, x])


def test_rerun_skips_up_to_date_clips_and_redoes_changed_labels(prepared, ma52_dir, tmp_path):
    root, chosen, labels = prepared
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)
    files = sorted((out / "clips").glob("*.npz"))
    mtimes = [f.stat().st_mtime_ns for f in files]
    args = ["-q", "--list", str(root / "list.txt"), "--data-root", str(ma52_dir / "clips"), "--openpose",
            str(root / "pose"), "--out", str(out), "--short-side", str(SHORT), "--crop-size", "64"]
    assert main(args) == 0
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    (tmp_path / "list2.txt").write_text(f"{chosen[0]} 3\n{chosen[1]} {labels[chosen[1]]}\n")
    args[2] = str(tmp_path / "list2.txt")
    assert main(args) == 0
    assert files[0].stat().st_mtime_ns != mtimes[0] and files[1].stat().st_mtime_ns == mtimes[1]
    assert PreparedClips(out).clip(0).label == 3


def test_missing_videos_and_keypoints_are_listed_with_a_count(ma52_dir, tmp_path, capsys):
    lst = tmp_path / "list.txt"
    lst.write_text("".join(f"missing_{i}.mp4 1\n" for i in range(7)) + "B1_nodding__0019_02_0078.mp4 9\n")
    with pytest.raises(SystemExit) as e:
        main(["--list", str(lst), "--data-root", str(ma52_dir / "clips"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1
    assert "7 of 8 videos" in err and "missing_0.mp4" in err and "missing_4.mp4" in err and "missing_5" not in err
    lst.write_text("B1_nodding__0019_02_0078.mp4 9\n")
    with pytest.raises(SystemExit) as e:
        main(["--list", str(lst), "--data-root", str(ma52_dir / "clips"), "--keypoints", str(tmp_path),
              "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "keypoints missing for 1 of 1" in err and "B1_nodding__0019_02_0078.parquet" in err
    assert not (tmp_path / "o" / "manifest.json").exists()


def test_csv_list_class_subset_background_and_a_broken_video(ma52_dir, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(ma52_dir / "clips" / "B1_nodding__0019_02_0078.mp4", data / "a.mp4")
    (data / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    (tmp_path / "l.csv").write_text("video,label\na.mp4,nodding\nbroken.mp4,background\n")
    rc = main(["-q", "--list", str(tmp_path / "l.csv"), "--data-root", str(data), "--out", str(tmp_path / "o"),
               "--classes", "nodding,shaking head,background", "--short-side", "64", "--crop-size", "64"])
    assert rc == 1  # the broken video fails alone
    assert "broken.mp4" in capsys.readouterr().err
    prep = PreparedClips(tmp_path / "o")
    assert prep.classes.names == ("nodding", "shaking head", "background")
    assert prep.ids == ["a"] and prep.labels.tolist() == [0]
    assert not prep.records[0]["has_keypoints"] and np.all(prep.clip(0).keypoints == 0)


def test_segment_sampling():
    g = torch.Generator().manual_seed(0)
    for n, t in ((50, 8), (75, 8), (5, 8), (8, 8)):
        centre = segment_frame_indices(n, t)
        assert len(centre) == t and np.all(np.diff(centre) >= 0) and centre.max() < n
        for _ in range(20):
            pos = segment_frame_indices(n, t, generator=g)
            seg = n / t
            # each random frame lies in its own segment [k * n / t, (k + 1) * n / t)
            assert np.all(pos >= np.floor(np.arange(t) * seg)) and np.all(pos < np.ceil((np.arange(t) + 1) * seg))
    assert segment_frame_indices(80, 8).tolist() == [5, 15, 25, 35, 45, 55, 65, 75]


def test_keypoints_artifacts_sparse_frames_and_size_check(ma52_dir, tmp_path):
    """--keypoints: frames the artifact lacks get zeros; extra points are kept; a size mismatch fails the clip."""
    from pipeline.artifacts import write_artifact
    from pipeline.contracts import KEYPOINTS
    from pipeline.keypoints import Keypoints

    video = "B1_nodding__0019_02_0078.mp4"
    frames = np.array([0, 8, 16], np.int64)
    body = np.zeros((3, 25, 3), np.float32)
    body[:, LW] = [540, 648, 0.9]
    extra = np.zeros((3, 8, 3), np.float32)
    extra[:, 0] = [100, 200, 0.7]  # LPinky
    kp = Keypoints(frames=frames, time_s=frames / 30, body25=body, extra=extra, detected=np.ones(3, bool),
                   rejected=np.zeros(3, bool))
    for name, size in (("good", (1080, 1296)), ("bad", (720, 1296))):
        write_artifact(kp.to_table(), tmp_path / name / "keypoints" / "B1_nodding__0019_02_0078.parquet",
                       contract=KEYPOINTS, stage="pose", extra={"video": {"width": size[0], "height": size[1], "fps": 30}})
    (tmp_path / "l.txt").write_text(f"{video} 9\n")
    common = ["-q", "--list", str(tmp_path / "l.txt"), "--data-root", str(ma52_dir / "clips"), "--short-side", "108",
              "--crop-size", "64"]
    assert main([*common, "--keypoints", str(tmp_path / "good"), "--out", str(tmp_path / "o")]) == 0
    clip = PreparedClips(tmp_path / "o").clip(0)
    sx, sy = 108 / 1080, 130 / 1296  # 1296 * 0.1 = 129.6 rows, rounded to 130
    np.testing.assert_allclose(clip.keypoints[8, LW], [540 * sx, 648 * sy, 0.9], rtol=1e-5)
    np.testing.assert_allclose(clip.keypoints[16, 25], [100 * sx, 200 * sy, 0.7], rtol=1e-5)
    assert np.all(clip.keypoints[1] == 0) and np.all(clip.keypoints[9] == 0)  # not posed: zeros
    assert main([*common, "--keypoints", str(tmp_path / "bad"), "--out", str(tmp_path / "o2")]) == 1
    assert PreparedClips(tmp_path / "o2").records == []


def test_spawned_workers_on_the_stage_runner_write_the_same_clips(prepared, ma52_dir, tmp_path, monkeypatch):
    """--workers uses the stage runner's spawned pool (no fork pool of its own): same bytes as one process."""
    import multiprocessing

    import pipeline.stage as stage

    root, _, _ = prepared
    contexts = []
    real_round = stage._pool_round

    def recording_round(st, jobs, todo, workers, worker, results, done):
        contexts.append(stage._WorkerContext().get_start_method())
        return real_round(st, jobs, todo, workers, worker, results, done)

    monkeypatch.setattr(stage, "_pool_round", recording_round)
    monkeypatch.setattr(multiprocessing, "get_context", lambda *a: pytest.fail("a pool of its own"))
    out = tmp_path / "w2"
    args = ["-q", "--list", str(root / "list.txt"), "--data-root", str(ma52_dir / "clips"), "--openpose",
            str(root / "pose"), "--out", str(out), "--short-side", str(SHORT), "--crop-size", "64", "--workers", "2"]
    assert main(args) == 0
    assert contexts == ["spawn"]
    one = {p.name: p.read_bytes() for p in (root / "out" / "clips").glob("*.npz")}
    two = {p.name: p.read_bytes() for p in (out / "clips").glob("*.npz")}
    assert one == two and len(one) == 2
    assert json.loads((out / "manifest.json").read_text()) == json.loads((root / "out" / "manifest.json").read_text())


def test_a_user_file_under_a_clip_name_is_refused_and_old_folders_resume(prepared, ma52_dir, tmp_path, capsys):
    root, _, _ = prepared
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)
    args = ["-q", "--list", str(root / "list.txt"), "--data-root", str(ma52_dir / "clips"), "--openpose",
            str(root / "pose"), "--out", str(out), "--short-side", str(SHORT), "--crop-size", "64"]
    # a folder prepared before output manifests: every clip is recognised as ours and skipped
    (out / ".prepare_clips.outputs.json").unlink()
    files = sorted((out / "clips").glob("*.npz"))
    mtimes = [f.stat().st_mtime_ns for f in files]
    assert main(args) == 0 and [f.stat().st_mtime_ns for f in files] == mtimes
    # a file of the user's where a clip goes: exit 2 naming it, before any clip is touched
    files[0].write_bytes(b"my own archive")
    with pytest.raises(SystemExit) as exc:
        main(args)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and f"{files[0]} is in the way" in err
    assert files[0].read_bytes() == b"my own archive" and files[1].stat().st_mtime_ns == mtimes[1]
