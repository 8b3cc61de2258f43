"""The read-out on windows the recognition stage really wrote (real MA-52 clips, a tiny random checkpoint).

Checks the hand-over between the two stages: the sidecar keys the aggregation reads (``video.fps``,
``video.frame_count``, ``classes``, ``model.sha256``) are those pipeline.recognize writes, and the
cohort built from them is consistent with the windows (observed seconds = covered frames / fps,
single-label percent times summing to at most 100, segments inside the video).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from model.checkpoint import save_checkpoint
from model.micro_dualnet import micro_dualnet_tiny
from model.preprocessing import ClassList, Preprocessing
from model.windows import WindowPlan
from pipeline import pose
from pipeline.aggregate import main as aggregate_main
from pipeline.artifacts import read_sidecar
from pipeline.frame_scores import frame_scores
from pipeline.readout import window_arrays
from pipeline.recognize import RecognizeJob, RecognizeOptions, recognize_videos

PLAN = WindowPlan(clip_len=4, stride=4, hop_s=0.1)
pytestmark = [pytest.mark.shared_data, pytest.mark.slow]  # pose + recognition of 4 clips: about 30 s


@pytest.fixture(scope="module")
def recognized(ma52_clips, tmp_path_factory):
    root = tmp_path_factory.mktemp("aggregate_recognized")
    code = pose.main([*map(str, ma52_clips), "--out", str(root / "pose"), "--frames", "sampled", "--clip-len", "4",
                      "--stride", "4", "--hop", "0.1", "-q"])
    assert code == 0
    torch.manual_seed(0)
    ckpt = save_checkpoint(root / "tiny.pt", micro_dualnet_tiny(), classes=ClassList.ma52(),
                           preprocessing=Preprocessing(region="person", resize_short=72, size=64), plan=PLAN)
    jobs = [RecognizeJob(item_id=c.stem, source=str(c), out_dir=str(root / "rec"),
                         keypoints=str(root / "pose" / "keypoints" / f"{c.stem}.parquet")) for c in ma52_clips]
    recognize_videos(jobs, ckpt, RecognizeOptions(batch_size=16, workers=0))
    rows = ["participant_id,group,video,age"]
    for i, c in enumerate(ma52_clips):
        rows.append(f"00{i},{'ASD' if i % 2 else 'TDC'},{c},{20 + i}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root, list(ma52_clips)


@pytest.mark.parametrize("rule", ["top1", "threshold"])
def test_cohort_from_recognized_windows(recognized, capsys, rule):
    root, clips = recognized
    out = root / f"agg_{rule}"
    code = aggregate_main(["--windows", str(root / "rec"), "--manifest", str(root / "manifest.csv"),
                           "--out", str(out), "--rule", rule, "--threshold", "0.05", "-q"])
    capsys.readouterr()
    assert code == 0
    cohort = pd.read_parquet(out / "cohort.parquet")
    assert cohort["participant_id"].unique().tolist() == [f"00{i}" for i in range(len(clips))]
    assert len(cohort) == 52 * len(clips)
    for i, c in enumerate(clips):
        path = root / "rec" / "windows" / f"{c.stem}.parquet"
        meta = read_sidecar(path)
        fps, n = meta["video"]["fps"], meta["video"]["frame_count"]
        w = window_arrays(pq.read_table(path), 52)
        valid = frame_scores(w.start_frame, w.end_frame, w.probs, w.classified, num_frames=n).valid.sum()
        mine = cohort[cohort.participant_id == f"00{i}"]
        assert mine["observed_s"].iloc[0] == pytest.approx(valid / fps)
        total = mine["percent_time"].sum()
        assert total <= 100 + 1e-9
        if rule == "top1":
            assert total == pytest.approx(100.0)
        seg = pd.read_parquet(out / "segments" / f"{c.stem}.parquet")
        assert (seg["start_s"] >= 0).all() and (seg["end_s"] <= n / fps + 1e-9).all()
    side = read_sidecar(out / "cohort.parquet")
    assert side["classes"] == ClassList.ma52().to_dict() and side["readout"]["rule"] == rule
    assert side["model_id"] == read_sidecar(root / "rec" / "windows" / f"{clips[0].stem}.parquet")["model"]["sha256"]
    det = pd.read_csv(out / "detections.csv")
    assert np.isin(det["class"], np.arange(52)).all()
