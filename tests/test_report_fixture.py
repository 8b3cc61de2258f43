"""A small, realistic run folder for the report tests, built with the real stages where they exist.

:func:`make_run` writes what a cohort run leaves behind:

- ``manifest.csv`` (participant_id, group, video, age, sex), video file names containing a made-up
  real name (the report must not show them);
- ``pose/qc.parquet`` through :func:`pipeline.qc.write_qc`, and keypoint sidecars recording the real
  :class:`pipeline.pose.PoseConfig` (one video's pose failed);
- ``windows/<video_id>.parquet`` in the WINDOWS contract, with the sidecar keys the read-out reads
  (``video.fps``, ``video.frame_count``, ``classes``, ``checkpoint_sha256``) plus the checkpoint's
  window plan and provenance (trained on simulated data). Probabilities are made from planned
  micro-action bouts (a simulated hurdle cohort decides who shows what for how long); a no-pose
  stretch gives windows with null probabilities;
- ``readout/`` by the real read-out (:func:`pipeline.aggregate.aggregate` and ``write_outputs``);
- ``hurdle/`` by the real analysis (:func:`analysis.hurdle.hurdle_analysis`, :func:`analysis.outputs.write_outputs`).

One participant has the ID ``<script>alert(1)</script>`` (escaping), one has two videos.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.config import HurdleConfig, OutputConfig
from analysis.hurdle import hurdle_analysis
from analysis.outputs import write_outputs as write_hurdle
from analysis.simulate import SimConfig, simulate_cohort
from model.preprocessing import BACKGROUND, ClassList
from model.taxonomy import MA52
from model.windows import MA52_PLAN
from pipeline.aggregate import aggregate, write_outputs as write_readout
from pipeline.artifacts import read_artifact, write_artifact
from pipeline.manifest import read_manifest
from model.preprocessing import Preprocessing
from pipeline.pose import POSE_STAGE, PoseConfig, VideoJob
from pipeline.qc import QCConfig, failed_row
from pipeline.stage import full_config, write_qc_table
from pipeline.readout import ReadoutConfig

EVIL_ID = "<script>alert(1)</script>"
REAL_NAME = "Smith_Anna"  # appears in one video's file name only
FPS = 30.0
DURATION_S = 40.0
CHECKPOINT_SHA = "c0ffee" + "0" * 58
ACTIONS = ("retracting feet", "shaking legs", "turning head", "head up", "nodding", "touching nose")


def _bouts_plan(rng: np.random.Generator, percents: dict[str, float], valid: list[tuple[float, float]]) -> list[tuple[str, float, float]]:
    """Non-overlapping (action, start_s, end_s) bouts in the valid time, each action's total = its percent."""
    total_valid = sum(b - a for a, b in valid)
    want = {a: p / 100 * total_valid for a, p in percents.items() if p > 0}
    scale = min(1.0, 0.7 * total_valid / max(sum(want.values()), 1e-9))
    pieces = []
    for a, sec in want.items():
        sec = max(2.5, sec * scale)
        n = 1 if sec < 6 else 2
        pieces += [(a, sec / n)] * n
    rng.shuffle(pieces)
    gaps = len(pieces) + 1
    slack = max(0.0, total_valid - sum(d for _, d in pieces))
    out, t = [], 0.0

    def to_time(v: float) -> float:  # valid-time offset -> video time
        for a, b in valid:
            if v <= b - a:
                return a + v
            v -= b - a
        return valid[-1][1]

    for a, d in pieces:
        t += slack / gaps
        s = to_time(t)
        span_end = next(b for a0, b in valid if a0 <= s <= b)
        out.append((a, s, min(s + d, span_end)))  # a bout never crosses the no-pose stretch
        t += d
    return out


def _window_probs(bouts, classes: ClassList, starts_s, ends_s, rng) -> np.ndarray:
    C = len(classes)
    bg = classes.names.index(BACKGROUND)
    probs = np.full((len(starts_s), C), 0.02, dtype=np.float64)
    for w, (ws, we) in enumerate(zip(starts_s, ends_s)):
        best, cover = bg, 0.0
        for a, s, e in bouts:
            ov = min(we, e) - max(ws, s)
            if ov > cover and ov >= 0.35 * (we - ws):
                best, cover = classes.names.index(a), ov
        probs[w, best] = 0.8 + 0.15 * rng.random()
    return (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)


def make_run(root: Path, *, seed: int = 3, threshold: float = 0.5, min_duration_s: float = 0.5,
             merge_gap_s: float = 0.5, hurdle: bool = True, simulated_model: bool = True,
             windows_from: Path | None = None) -> Path:  # fmt: skip
    """Write a run folder under ``root`` (see module docstring); returns ``root``.

    ``windows_from``: reuse the manifest, pose/ and windows/ of an earlier run (only the read-out and
    the analysis are redone), as a user rerunning the read-out with other parameters would.
    """
    root.mkdir(parents=True, exist_ok=True)
    if windows_from is not None:
        import shutil

        for name in ("manifest.csv", "pose", "recognize"):
            src = windows_from / name
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, root / name)
    else:
        _write_upstream(root, seed=seed, simulated_model=simulated_model)
    manifest = read_manifest(root / "manifest.csv", check_videos=False)
    cfg = ReadoutConfig(rule="threshold", threshold=threshold, min_duration_s=min_duration_s, merge_gap_s=merge_gap_s)
    result = aggregate(manifest, root / "recognize" / "windows", cfg)
    write_readout(result, root / "readout")
    if hurdle:
        cohort = read_artifact(root / "readout" / "cohort.parquet", "cohort").to_pandas()
        hcfg = HurdleConfig(covariates=("age",), top_actions=None, min_engaged=2)
        results = hurdle_analysis(cohort, hcfg)
        write_hurdle(results, cohort, hcfg, OutputConfig(plots=False), root / "hurdle",
                     source=root / "readout" / "cohort.parquet")  # fmt: skip
    return root


def _write_upstream(root: Path, *, seed: int, simulated_model: bool) -> None:
    rng = np.random.default_rng(seed)
    sim = SimConfig(groups=(("ASD", 8), ("PSY", 7), ("TDC", 8)), actions=ACTIONS, covariates=True,
                    engage_range=(0.3, 0.8), intensity_range=(0.05, 0.15), seed=seed)  # fmt: skip
    cohort, _ = simulate_cohort(sim)
    people = cohort.drop_duplicates("participant_id")[["participant_id", "group", "age", "sex"]].reset_index(drop=True)
    people.loc[people.index[-1], "participant_id"] = EVIL_ID  # a TDC participant
    old_ids = cohort.drop_duplicates("participant_id")["participant_id"].tolist()
    cohort["participant_id"] = cohort["participant_id"].replace(old_ids[-1], EVIL_ID)

    classes = ClassList(names=(*ACTIONS, BACKGROUND), taxonomy_ids=(*(MA52.index(a) for a in ACTIONS), None))
    frame_count = int(DURATION_S * FPS)
    wins = MA52_PLAN.windows(frame_count, FPS)
    starts_f = np.array([w.start_frame for w in wins])
    ends_f = np.array([w.end_frame for w in wins])
    pose_cfg = PoseConfig(frames="sampled")
    rows, qc_rows = [], []
    for i, p in people.iterrows():
        pid = p["participant_id"]
        n_videos = 2 if i == 1 else 1
        for k in range(n_videos):
            name = f"rec{i:02d}_{k}" + (f"_{REAL_NAME}" if i == 0 else "")
            vid = name
            rows.append({"participant_id": pid, "group": p["group"], "video": f"videos/{name}.mp4", "age": p["age"], "sex": p["sex"]})
            if i == 2 and k == 0:  # pose failed: no keypoints, no windows
                qc_rows.append(failed_row(vid, f"videos/{name}.mp4", f"videos/{name}.mp4: cannot open (moov atom not found)"))
                continue
            gap = (14.0, 20.0) if i % 3 == 0 else None  # participant out of view: no usable pose
            valid = [(0.0, gap[0]), (gap[1], DURATION_S)] if gap else [(0.0, DURATION_S)]
            pct = cohort[cohort["participant_id"] == pid].set_index("action")["percent_time"].to_dict()
            bouts = _bouts_plan(rng, pct, valid)
            probs = _window_probs(bouts, classes, starts_f / FPS, ends_f / FPS, rng)
            vf = np.ones(len(wins), dtype=np.float32)
            if gap:
                inside = (starts_f / FPS < gap[1]) & (ends_f / FPS > gap[0])
                vf[inside] = 0.2
            plist = [None if v < 0.5 else pr.tolist() for v, pr in zip(vf, probs)]
            table = pd.DataFrame({
                "video_id": vid, "window": np.arange(len(wins), dtype=np.int32),
                "start_frame": starts_f.astype(np.int32), "end_frame": ends_f.astype(np.int32),
                "start_s": starts_f / FPS, "end_s": ends_f / FPS, "valid_fraction": vf,
                "probs": plist, "model_id": CHECKPOINT_SHA, "config_id": "cfg0",
            })  # fmt: skip
            trained_on = "simulated" if simulated_model else "MA-52"
            # sidecar keys as pipeline.recognize writes them
            write_artifact(table, root / "recognize" / "windows" / f"{vid}.parquet", contract="windows", stage="recognize",
                           input_hash=f"{i:064x}",
                           config={"stage_version": 1, "model_sha256": CHECKPOINT_SHA, "plan": MA52_PLAN,
                                   "preprocessing": Preprocessing(region="person"), "min_valid": 0.5, "precision": "fp32"},
                           extra={"video_id": vid, "source": f"videos/{name}.mp4",
                                  "model": {"sha256": CHECKPOINT_SHA, "path": "checkpoints/demo.pt", "trained_on": trained_on},
                                  "classes": classes.to_dict(), "video": {"fps": FPS, "frame_count": frame_count, "width": 640, "height": 480},
                                  "keypoints": {"path": f"pose/keypoints/{vid}.parquet", "sha256": f"{i:064x}"},
                                  "windows": {"total": len(wins), "classified": int(sum(x is not None for x in plist))}})  # fmt: skip
            # keypoints sidecar as the pose stage writes it (the data file is a tiny placeholder)
            sampled = MA52_PLAN.sampled_frames(frame_count, FPS)
            ok = np.ones(sampled.size, bool)
            if gap:
                ok &= ~((sampled / FPS >= gap[0]) & (sampled / FPS < gap[1]))
            kp = pd.DataFrame({"frame": sampled.astype(np.int32), "time_s": sampled / FPS,
                               "body25": [np.zeros(75, np.float32)] * sampled.size, "extra": [np.zeros(24, np.float32)] * sampled.size,
                               "detected": ok, "rejected": np.zeros(sampled.size, bool)})  # fmt: skip
            write_artifact(kp, root / "pose" / "keypoints" / f"{vid}.parquet", contract="keypoints", stage="pose",
                           input_hash=f"{i:064x}", config=full_config(POSE_STAGE, VideoJob(f"videos/{name}.mp4", vid, str(root / "pose"), pose_cfg)),
                           extra={"video": {"width": 640, "height": 480, "fps": FPS, "frame_count": frame_count,
                                            "duration_s": DURATION_S, "rotation": 0}, "video_id": vid})  # fmt: skip
            qc_rows.append({"video_id": vid, "source": f"videos/{name}.mp4", "status": "ok", "error": None,
                            "frames_total": frame_count, "frames_posed": int(sampled.size),
                            "detected_fraction": float(ok.mean()), "valid_fraction": float(ok.mean()),
                            "rejected_frames": 0, "rejected_fraction": 0.0,
                            "flags": "low_detection" if ok.mean() < 0.8 else "", "seconds": 1.0})  # fmt: skip
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    write_qc_table(POSE_STAGE, qc_rows, root / "pose", config={"qc": QCConfig(), "plausibility": pose_cfg.plausibility,
                                             "backend": pose_cfg.backend, "frames": pose_cfg.frames})  # fmt: skip


@pytest.fixture(scope="module")
def built_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("run"))


def test_fixture_run_is_a_complete_real_run(built_run: Path) -> None:
    """The fixture's artifacts satisfy their contracts and carry what the report reads."""
    cohort = read_artifact(built_run / "readout" / "cohort.parquet", "cohort").to_pandas()
    assert EVIL_ID in set(cohort["participant_id"])
    assert set(cohort["group"]) == {"ASD", "PSY", "TDC"}
    assert (cohort.groupby("action")["percent_time"].apply(lambda s: (s > 0).sum()) >= 2).all()
    excl = read_artifact(built_run / "readout" / "exclusions.parquet", "exclusions").to_pandas()
    assert (excl["scope"] == "video").sum() == 1
    res = read_artifact(built_run / "hurdle" / "results.parquet", "hurdle_results").to_pandas()
    assert len(res) == len(ACTIONS) * 3 * 2 and res["p"].notna().any()
    assert len(list((built_run / "readout" / "segments").glob("*.parquet"))) == len(list((built_run / "recognize" / "windows").glob("*.parquet")))
