"""Issue 19: pose (and through the same runner, recognition) overwrote a user's file bearing an output's
name when --out was a folder the user keeps other files in. Now: exit 2, one line naming the file,
before any video is posed; files of ours (in the stage's manifest, or with our sidecar) are fine."""

from __future__ import annotations

import pytest

from pipeline import pose_mediapipe
from pipeline.pose import keypoints_path, main

from test_pose_stage import blank_wall, write_video  # noqa: E402  (tests/ helper)


def _snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("name", ["qc.csv", "qc.parquet", "keypoints/wall.parquet", "overlays/wall.png"])
def test_pose_refuses_a_user_file_under_an_output_name(tmp_path, capsys, monkeypatch, name):
    path = write_video(tmp_path / "wall.mp4", blank_wall(3))
    out = tmp_path / "home"
    (out / name).parent.mkdir(parents=True, exist_ok=True)
    (out / name).write_bytes(b"the user's own")
    (out / "index.html").write_text("unrelated")
    before = _snapshot(out)
    posed = []
    monkeypatch.setattr(pose_mediapipe.MediaPipePose, "landmarks", lambda self, rgb: posed.append(1))
    with pytest.raises(SystemExit) as exc:
        main([str(path), "--out", str(out), "-q"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and posed == [] and err.count("\n") == 1
    assert err.startswith(f"pipeline.pose: error: {out / name} is in the way")
    assert _snapshot(out) == before


def test_pose_reruns_into_its_own_folder_and_an_old_folder_without_manifest(tmp_path, capsys):
    path = write_video(tmp_path / "wall.mp4", blank_wall(3))
    out = tmp_path / "out"
    assert main([str(path), "--out", str(out), "-q"]) == 0
    assert main([str(path), "--out", str(out), "-q", "--force"]) == 0  # ours: replaced
    (out / ".pose.outputs.json").unlink()  # a folder from before output manifests: our sidecars vouch
    assert main([str(path), "--out", str(out), "-q", "--force"]) == 0
    assert keypoints_path(out, "wall").exists()
    capsys.readouterr()


@pytest.mark.parametrize("name", ["qc_recognize.csv", "windows/v.parquet"])
def test_recognition_refuses_a_user_file_under_an_output_name(tmp_path, capsys, name):
    from pathlib import Path

    from pipeline import recognize

    weights = Path(__file__).resolve().parents[1] / "recipes" / "demo_model.pt"
    if not weights.exists():
        pytest.skip(f"no demo checkpoint at {weights}")
    video = write_video(tmp_path / "v.mp4", blank_wall(3))
    out = tmp_path / "home"
    (out / name).parent.mkdir(parents=True, exist_ok=True)
    (out / name).write_bytes(b"the user's own")
    before = _snapshot(out)
    with pytest.raises(SystemExit) as exc:
        recognize.main([str(video), "--keypoints", str(tmp_path / "pose"), "--weights", str(weights),
                        "--out", str(out), "-q"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1
    assert err.startswith(f"pipeline.recognize: error: {out / name} is in the way")
    assert _snapshot(out) == before
