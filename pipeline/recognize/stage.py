"""The recognition stage on the stage runner (:class:`RecognizeStage`, the :class:`pipeline.stage.Stage`
protocol): input and config hashes, outputs, up-to-date check, writing one video's windows table
(the WINDOWS contract) from the engine's results, and its QC row.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from model.checkpoint import Checkpoint
from pipeline.artifacts import config_hash, is_up_to_date, read_artifact, read_sidecar, sha256_file
from pipeline.contracts import WINDOWS
from pipeline.recognize.engine import Engine
from pipeline.recognize.options import RecognizeJob, RecognizeOptions
from pipeline.recognize.plan import InputError
from pipeline.stage import full_config
from pipeline.video import VideoError

__all__ = ["RecognizeStage", "STAGE_VERSION", "windows_path"]

STAGE_VERSION = 1


def windows_path(out_dir: str | Path, video_id: str) -> Path:
    return Path(out_dir) / "windows" / f"{video_id}.parquet"


def _qc_row(*, frames_total: int, windows: int, classified: int, low_valid: int, undecodable: int,
            valid_fraction: float) -> dict:
    flags = []
    if windows and classified < windows / 2:
        flags.append("few_classified")
    if undecodable:
        flags.append("undecodable_windows")
    return {"frames_total": int(frames_total), "windows": int(windows), "windows_classified": int(classified),
            "windows_low_valid": int(low_valid), "windows_undecodable": int(undecodable),
            "valid_fraction": float(valid_fraction), "flags": ";".join(flags)}


class RecognizeStage:
    """:class:`pipeline.stage.Stage` of the recognition stage; ``compute`` takes its results from the engine."""

    name = "recognize"
    version = STAGE_VERSION
    id_column = "video_id"
    qc_file = "qc_recognize"
    done_word = "recognised"

    def __init__(self, ckpt: Checkpoint, options: RecognizeOptions) -> None:
        self.ckpt = ckpt
        self.options = options
        self.engine: Engine | None = None  # set by recognize_videos for its run
        self._hashes: dict[tuple, str] = {}
        self.entity_names = ckpt.part_names  # routing column's entities (none for families without routing)
        self.pixels = ckpt.uses_pixels

    # hashing (memoised: the up-to-date check and run_item both ask)
    def _sha(self, path: Path) -> str:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in self._hashes:
            self._hashes[key] = sha256_file(path)
        return self._hashes[key]

    def video_sha256(self, job: RecognizeJob) -> str | None:
        """The video's sha256; None for a keypoint-only model, which never reads the video."""
        if not self.pixels:
            return None
        src = Path(job.source)
        if not src.is_file():
            raise VideoError(src, "file not found" if not src.exists() else "is not a file")
        return self._sha(src)

    def input_hash(self, job: RecognizeJob) -> str:
        kp = Path(job.keypoints)
        video = self.video_sha256(job)
        if not kp.exists():
            raise InputError(f"{job.source}: no keypoints file {kp} (run python -m pipeline.pose first)")
        if video is None:  # keypoint-only: the pose artifact is the whole input
            return hashlib.sha256(f"keypoints:{self._sha(kp)}".encode()).hexdigest()
        return hashlib.sha256(f"video:{video};keypoints:{self._sha(kp)}".encode()).hexdigest()

    def artifact_config(self, job: RecognizeJob) -> dict:
        return {"model_sha256": self.ckpt.sha256, "plan": self.ckpt.plan, "preprocessing": self.ckpt.preprocessing,
                "min_valid": self.options.min_valid, "precision": self.options.precision}

    def outputs(self, job: RecognizeJob) -> list[Path]:
        return [windows_path(job.out_dir, job.item_id)]

    def up_to_date(self, job: RecognizeJob) -> bool:
        """What :func:`pipeline.stage.run_item` will find: outputs current and readable (then it skips)."""
        try:
            if job.force or not is_up_to_date(self.outputs(job)[0], input_hash=self.input_hash(job),
                                              config=full_config(self, job)):
                return False
            self.qc_for_existing(job)
            return True
        except Exception:
            return False  # run_item reports the problem, or computes the item again

    def compute(self, job: RecognizeJob, ctx) -> dict:
        if self.engine is None or job.item_id not in self.engine.states:
            raise RuntimeError(f"{job.source}: not planned (internal error)")
        st = self.engine.result(job.item_id)
        if st.plan_error is not None:
            raise st.plan_error
        if st.error is not None:
            raise InputError(st.error)
        if st.planned is None:
            raise RuntimeError(f"{job.source}: judged up to date, then not (changed during the run?)")
        p = st.planned
        n = len(p.starts)
        probs: list[Any] = [None] * n
        routing: list[Any] = [None] * n
        for w in st.probs:
            probs[w] = st.probs[w].astype(np.float32)
            if st.routing.get(w) is not None:
                routing[w] = st.routing[w].astype(np.float32)
        fps = p.fps
        cfg_id = config_hash(ctx.config)
        table = pa.table({
            "video_id": pa.array([job.item_id] * n, pa.string()),
            "window": pa.array(np.arange(n, dtype=np.int32)),
            "start_frame": pa.array(p.starts.astype(np.int32)),
            "end_frame": pa.array(p.ends.astype(np.int32)),
            "start_s": pa.array(p.starts / fps),
            "end_s": pa.array(p.ends / fps),
            "valid_fraction": pa.array(p.valid_fraction.astype(np.float32)),
            "probs": pa.array(probs, pa.list_(pa.float32())),
            "model_id": pa.array([self.ckpt.sha256] * n, pa.string()),
            "config_id": pa.array([cfg_id] * n, pa.string()),
            "routing_st": pa.array(routing, pa.list_(pa.float32())),
        })
        classified = len(st.probs)
        counts = {"total": n, "classified": classified, "low_valid": int((~p.todo).sum()),
                  "undecodable": len(st.undecodable or [])}
        extra = {
            "video_id": job.item_id, "source": job.source,
            "model": {"sha256": self.ckpt.sha256, "path": str(self.ckpt.path),
                      "family": self.ckpt.family.name, "family_title": self.ckpt.family.title,
                      "inputs": sorted(self.ckpt.inputs),
                      "trained_on": self.ckpt.provenance.get("trained_on"),
                      # the read-out the checkpoint was calibrated for: pipeline.aggregate's default
                      "readout": self.ckpt.provenance.get("readout")},
            "classes": self.ckpt.classes.to_dict(),
            "video": {"fps": fps, "frame_count": p.frame_count, "width": p.size[0], "height": p.size[1]},
            "entities": self.entity_names,
            "keypoints": {"path": job.keypoints, "sha256": self._sha(Path(job.keypoints))},
            "windows": counts,
        }
        ctx.write_artifact(table, self.outputs(job)[0], contract=WINDOWS, extra=extra)
        return _qc_row(frames_total=p.frame_count, windows=n, classified=classified, low_valid=counts["low_valid"],
                       undecodable=counts["undecodable"], valid_fraction=float(p.valid_fraction.mean()))

    def qc_for_existing(self, job: RecognizeJob) -> dict:
        path = self.outputs(job)[0]
        table = read_artifact(path, WINDOWS)
        meta = read_sidecar(path) or {}
        counts = meta["windows"]
        vf = table.column("valid_fraction").to_numpy()
        return _qc_row(frames_total=meta["video"]["frame_count"], windows=table.num_rows,
                       classified=counts["classified"], low_valid=counts["low_valid"],
                       undecodable=counts["undecodable"], valid_fraction=float(vf.mean()) if len(vf) else 0.0)

    def failed_qc(self, job: RecognizeJob, error: str) -> dict:
        return {"frames_total": 0, "windows": 0, "windows_classified": 0, "windows_low_valid": 0,
                "windows_undecodable": 0, "valid_fraction": float("nan"), "flags": "failed"}

