"""A small simulated cohort and a tiny checkpoint whose window plan fits it: the input of the flow tests
(tests/test_flow_cohort.py, tests/test_flow_process.py, tests/test_flow_slurm.py) and bench/bench_slurm.py.

Real MP4s from the simulator (MediaPipe poses them) and an untrained tiny Micro-DualNet: the flow tests
check orchestration (resume, failures, runners), not recognition accuracy.
"""

from __future__ import annotations

from pathlib import Path

PARTICIPANTS = {"ASD-001", "ASD-002", "TDC-001", "TDC-002"}


def small_cohort(root: Path, *, seconds: float = 6, seed: int = 3) -> dict:
    """4 participants in 2 groups (ASD=2, TDC=2) of ``seconds`` each under ``root/sim`` and ``root/model.pt``."""
    from model.checkpoint import save_checkpoint
    from model.micro_dualnet import micro_dualnet_tiny
    from model.preprocessing import ClassList, Preprocessing
    from model.windows import WindowPlan
    from simulator.__main__ import main as simulate

    assert simulate(["-q", "cohort", "--out", str(root / "sim"), "--groups", "ASD=2,TDC=2", "--seconds", f"{seconds:g}",
                     "--size", "240x288", "--seed", str(seed)]) == 0
    classes = ClassList.from_actions(["nodding", "shaking legs", "crossing arms"], background=True)
    weights = save_checkpoint(root / "model.pt", micro_dualnet_tiny(num_classes=len(classes)), classes=classes,
                              preprocessing=Preprocessing(resize_short=72, size=64),
                              plan=WindowPlan(clip_len=4, stride=8),
                              provenance={"trained_on": "random initialisation (test)"})
    return {"manifest": root / "sim" / "manifest.csv", "weights": weights, "root": root, "videos": set(PARTICIPANTS)}
