"""A tiny simulated coded cohort, made the way a lab's is (tests of recipes.train_coded).

simulate (``python -m simulator cohort``) -> pose (``python -m pipeline.pose --frames sampled`` with the
demo plan) -> two simulated coders exported as BORIS projects (``python -m simulator coders --format
boris --no-perfect``) -> ``python -m pipeline.codings import`` of each project (one codings folder per
coder: BORIS projects name no coder, ``--coder`` names it).
"""

from __future__ import annotations

import json
from pathlib import Path

from model.taxonomy import MA52
from recipes.demo_model import DEMO_PLAN

ACTIONS = ("nodding", "shaking legs", "crossing arms", "touching nose")
CODERS = ("sim-coder-1", "sim-coder-2")


def identity_mapping(path: Path) -> Path:
    path.write_text("codes:\n" + "".join(f"  {a!r}: {a!r}\n" for a in MA52.actions), encoding="utf-8")
    return path


def coded_cohort(root: Path, *, groups: dict[str, int], seconds: float, seed: int = 3, actions=ACTIONS,
                 p_engaged: float = 0.9, mean_share: float = 0.12, size: str = "288x336", workers: int = 2) -> dict:
    """Render, pose, code and import a cohort under ``root``; returns the paths train_coded needs."""
    from pipeline.codings.__main__ import main as codings_cli
    from pipeline.pose import main as pose
    from simulator.__main__ import main as simulate

    root.mkdir(parents=True, exist_ok=True)
    cfg = root / "cohort.json"
    cfg.write_text(json.dumps({"groups": groups, "seconds": seconds, "seed": seed,
                               "rates": [{"action": a, "p_engaged": p_engaged, "mean_share": mean_share}
                                         for a in actions]}))
    sim = root / "sim"
    assert simulate(["-q", "cohort", "--config", str(cfg), "--out", str(sim), "--size", size,
                     "--workers", str(workers)]) == 0
    assert pose(["-q", str(sim / "videos"), "--frames", "sampled", "--clip-len", str(DEMO_PLAN.clip_len),
                 "--stride", str(DEMO_PLAN.stride), "--hop", repr(DEMO_PLAN.hop_s), "--out", str(root / "pose"),
                 "--workers", str(workers)]) in (0, 1)
    assert simulate(["-q", "coders", "--cohort", str(sim), "--out", str(root / "simcoders"), "--coders", "2",
                     "--no-perfect", "--format", "boris", "--seed", str(seed)]) == 0
    mapping = identity_mapping(root / "ethogram.yaml")
    codings = []
    for c in CODERS:
        out = root / "codings" / c
        assert codings_main(codings_cli, ["import", "--format", "boris", str(root / "simcoders" / "boris" / f"{c}.boris"),
                                      "--mapping", str(mapping), "--manifest", str(sim / "manifest.csv"),
                                      "--out", str(out), "--coder", c]) == 0
        codings.append(out)
    return {"manifest": sim / "manifest.csv", "keypoints": root / "pose", "codings": codings, "sim": sim}


def codings_main(fn, argv) -> int:
    try:
        return fn(argv) or 0
    except SystemExit as exc:
        return int(exc.code or 0)
