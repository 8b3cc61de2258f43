"""Start-up checks of ``python -m pipeline.recognize`` through the real command line (issue 19, item 8).

Each bad input is exit 2 with one line on stderr, before any video is looked at and without creating
``--out``: an unusable checkpoint (missing, empty, truncated, random bytes, a bare state dict) with
:class:`model.checkpoint.CheckpointError`'s own message, a ``--batch-size`` outside 1..4096 (checked
before the checkpoint is even read, so nothing is allocated), and a ``--device`` this machine cannot
use. None of these needs a video, so the inputs are names that do not exist: reaching them would be a
different error.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from model.micro_dualnet import micro_dualnet_tiny
from model.preprocessing import ClassList, Preprocessing
from model.windows import WindowPlan
from pipeline.cli import BadInput
from pipeline.recognize import MAX_BATCH_SIZE, RecognizeJob, RecognizeOptions, main, recognize_videos

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", micro_dualnet_tiny(), classes=ClassList.ma52(),
                           preprocessing=Preprocessing(resize_short=72, size=64),
                           plan=WindowPlan(clip_len=4, stride=4, hop_s=0.1))


def bad_checkpoint(kind: str, good: Path, tmp: Path) -> Path:
    path = tmp / f"{kind}.pt"
    if kind == "truncated":
        data = good.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "random":
        path.write_bytes(os.urandom(4096))
    elif kind == "state_dict":
        torch.save(micro_dualnet_tiny().state_dict(), path)
    elif kind == "empty":
        path.write_bytes(b"")
    # "missing": not written
    return path


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    """main(argv) as the shell runs it: the exit status (SystemExit or return) and stderr."""
    try:
        code = main(args)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def args_for(tmp: Path, weights: Path, *extra: str) -> list[str]:
    return [str(tmp / "no_such_video.mp4"), "--keypoints", str(tmp / "pose"), "--weights", str(weights),
            "--out", str(tmp / "out"), "-q", *extra]


@pytest.mark.parametrize("kind", ["truncated", "random", "state_dict", "empty", "missing"])
def test_a_bad_checkpoint_is_exit_2_with_its_one_line(kind, good_checkpoint, tmp_path, capsys):
    path = bad_checkpoint(kind, good_checkpoint, tmp_path)
    with pytest.raises(CheckpointError) as exc:  # what the loader itself says, independently
        load_checkpoint(path)
    code, err = run_cli(args_for(tmp_path, path), capsys)
    assert code == 2
    assert err.strip() == f"pipeline.recognize: error: {exc.value}"
    assert str(path) in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_python_m_pipeline_recognize_exits_2_on_a_bad_checkpoint(tmp_path):
    """The module entry point (``__main__``) itself: exit status and stderr of a real process."""
    path = bad_checkpoint("truncated", Path(__file__), tmp_path)  # half of a text file: not a checkpoint
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "pipeline.recognize", *args_for(tmp_path, path)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"pipeline.recognize: error: {path}: ")
    assert proc.stdout == ""


@pytest.mark.parametrize("value", ["0", "-3", str(MAX_BATCH_SIZE + 1), "1000000000"])
def test_batch_size_outside_the_bound_is_exit_2_before_the_checkpoint_is_read(value, tmp_path, capsys):
    # the weights do not exist: the batch size is judged first, so no buffer and no checkpoint is touched
    code, err = run_cli(args_for(tmp_path, tmp_path / "missing.pt", "--batch-size", value), capsys)
    assert code == 2
    assert err.strip().startswith("pipeline.recognize: error: recognition.batch_size: Input should be") and f"(got {value})" in err
    assert not (tmp_path / "out").exists()


def test_batch_size_bound_holds_for_python_callers_too():
    assert RecognizeOptions(batch_size=MAX_BATCH_SIZE).batch_size == MAX_BATCH_SIZE
    with pytest.raises(ValueError, match=r"batch size must be in 1\.\.4096, got 1000000000"):
        RecognizeOptions(batch_size=1_000_000_000)


def unusable_devices() -> list[tuple[str, str]]:
    cases = [("tpu", "not a device torch knows"), ("cuda:x", "not a device torch knows"),
             ("mps", "recognition runs on cpu or cuda (cuda:N), not mps"),
             ("meta", "recognition runs on cpu or cuda (cuda:N), not meta")]
    if torch.cuda.is_available():
        cases.append((f"cuda:{torch.cuda.device_count()}", "CUDA device(s)"))
    else:
        cases += [("cuda", "CUDA is not available on this machine"), ("cuda:0", "CUDA is not available")]
    return cases


@pytest.mark.parametrize("device,message", unusable_devices())
def test_an_unusable_device_is_exit_2_at_start_up(device, message, good_checkpoint, tmp_path, capsys):
    code, err = run_cli(args_for(tmp_path, good_checkpoint, "--device", device), capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"pipeline.recognize: error: --device {device}: ")
    assert message in lines[0]
    assert not (tmp_path / "out").exists()


def test_recognize_videos_refuses_an_unusable_device_before_any_video(good_checkpoint, tmp_path):
    """The Python entry point raises once (BadInput) instead of failing every video on the device."""
    job = RecognizeJob(item_id="v", source=str(tmp_path / "v.mp4"), out_dir=str(tmp_path / "out"),
                       keypoints=str(tmp_path / "v.parquet"))
    with pytest.raises(BadInput, match=r"^--device tpu: not a device torch knows"):
        recognize_videos([job], good_checkpoint, RecognizeOptions(device="tpu"))
    assert not (tmp_path / "out").exists()
