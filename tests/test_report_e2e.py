"""The report on a run made by the real stages, each through its own command line, on the real MA-52 clips.

pose (MediaPipe, sampled frames) -> recognize (a tiny randomly initialised checkpoint that says it
was trained on simulated data) -> aggregate -> hurdle -> reports.build. This catches any drift
between the sidecar keys and folder names the stages write and those the report reads. The numbers
mean nothing (random weights); the test checks that every part the report needs was found.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]


def test_report_from_the_real_stages(ma52_clips: list[Path], tmp_path: Path, capsys) -> None:
    import torch

    from analysis.hurdle import main as hurdle_main
    from model.checkpoint import save_checkpoint
    from model.micro_dualnet import micro_dualnet_tiny
    from model.preprocessing import BACKGROUND, ClassList, Preprocessing
    from model.taxonomy import MA52
    from model.windows import MA52_PLAN
    from pipeline.aggregate import main as aggregate_main
    from pipeline.pose import main as pose_main
    from pipeline.recognize import main as recognize_main
    from reports.build import main as report_main, page_name

    run = tmp_path / "run"
    run.mkdir()
    torch.manual_seed(0)
    names = ("shaking body", "sitting straightly", "nodding", "turning head")
    classes = ClassList(names=(*names, BACKGROUND), taxonomy_ids=(*(MA52.index(a) for a in names), None))
    ckpt = save_checkpoint(tmp_path / "tiny.pt", micro_dualnet_tiny(num_classes=len(classes)), classes=classes,
                           preprocessing=Preprocessing(size=112, resize_short=128), plan=MA52_PLAN,
                           provenance={"training_data": "random initialisation", "trained_on": "simulated"})  # fmt: skip
    groups = ("ASD", "ASD", "TDC", "TDC")
    lines = ["participant_id,group,video,age"] + [f"S{k:02d},{g},{clip},{9 + k}" for k, (g, clip) in enumerate(zip(groups, ma52_clips))]
    (run / "manifest.csv").write_text("\n".join(lines) + "\n")
    clips = [str(c) for c in ma52_clips[:4]]

    assert pose_main([*clips, "--out", str(run / "pose"), "--frames", "sampled", "-q"]) == 0
    assert recognize_main([*clips, "--keypoints", str(run / "pose"), "--weights", str(ckpt), "--out", str(run / "recognize"),
                           "--workers", "0", "-q"]) == 0  # fmt: skip
    assert aggregate_main(["--run", str(run), "--rule", "top1", "-q"]) == 0  # RunFolder layout
    assert hurdle_main(["--cohort", str(run / "readout" / "cohort.parquet"), "--out", str(run / "hurdle"),
                        "--groups", "ASD,TDC", "--min-engaged", "2", "-q"]) == 0  # fmt: skip
    capsys.readouterr()
    assert report_main(["--run", str(run), "--out", str(tmp_path / "report"), "-q"]) == 0
    assert capsys.readouterr().out.count("wrote ") == 1 + len(ma52_clips[:4])

    index = (tmp_path / "report" / "index.html").read_text(encoding="utf-8")
    assert "Notes on this run" not in index  # every part of the run was found
    assert "Demonstration only" in index and "trained on simulated data" in index
    sha = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert f"checkpoint {sha[:12]}" in index
    assert "MediaPipe BlazePose" in index and "Labelling rule &#39;top1&#39;" in index
    assert "seeing 8 frames spread evenly over each (one frame in 8)" in index
    for clip in ma52_clips[:4]:  # no file name, stem or folder of a video anywhere
        assert clip.stem not in index and str(clip.parent) not in index
    page = (tmp_path / "report" / "participants" / page_name("S00")).read_text(encoding="utf-8")
    assert re.search(r'<img src="data:image/png;base64,[^"]+" width="\d+" height="\d+" alt="Ethogram of participant S00: video 1, \d+ s, [1-9]', page)
    assert ma52_clips[0].stem not in page
