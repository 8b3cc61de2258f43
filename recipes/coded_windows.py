"""Training clips from coded sessions: every recognition window of every coded video, prepared once.

Training on a lab's own coded videos uses the windows inference will lay on them, cut and cropped by
the recognition stage's own code (:mod:`recipes.window_clips`), so what the model learns is what it
will see. This module writes those windows; *which* of them train the model and with which label is
decided afterwards from the codings (:mod:`recipes.coded_labels`, :mod:`recipes.coded_classes`), so
the clips do not depend on the label rule, the label coder, the class list or the split and are
prepared once for all of them::

    per coded video v (manifest video, pose artifact with the plan's frames):
        W windows = plan.windows(frame_count, fps)
        valid_fraction[w]  share of the window's sampled frames with a usable pose
        clip of w          written when valid_fraction >= min_valid (the recognition stage classifies
                           exactly those windows; the others are left out and counted)

    OUT/clips/<video_id>-w<window>.npz    model.clips format, label -1 (labels live in the manifests)
    OUT/tables/<video_id>.parquet (+ sidecar)   one row per window: video_id, window, start_frame,
                                          end_frame, valid_fraction, clip (id, or null: too little pose);
                                          sidecar: input hash (video + keypoints), settings, video facts

Resume: a video whose table's sidecar records the same input hash (sha256 of the video and of its
keypoints artifact) and settings is skipped; the table is written after the video's clips, so an
interrupted video is redone. Bad input is found before any work (:func:`check_window_inputs`): a
coded video without a keypoints artifact, or one posed on the frames of another window plan.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from model.preprocessing import Preprocessing
from model.windows import WindowPlan
from pipeline.artifacts import is_up_to_date, read_sidecar, sha256_file, write_artifact
from pipeline.cli import BadInput, progress
from pipeline.keypoints import read_keypoints
from pipeline.recognize.cli import keypoints_for
from pipeline.recognize.plan import InputError
from pipeline.video import probe
from recipes.window_clips import ChosenWindow, video_windows, write_window_clips

__all__ = ["STAGE", "STAGE_VERSION", "WindowSettings", "VideoTable", "check_window_inputs", "prepare_windows",
           "table_path", "clip_file"]

STAGE = "coded_windows"
STAGE_VERSION = 1
TABLE_SCHEMA = pa.schema([
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("window", pa.int32(), nullable=False),
    pa.field("start_frame", pa.int32(), nullable=False),
    pa.field("end_frame", pa.int32(), nullable=False),
    pa.field("valid_fraction", pa.float32(), nullable=False),
    pa.field("clip", pa.string(), nullable=True),
])


@dataclass(frozen=True)
class WindowSettings:
    """What a prepared window depends on: the model's window plan and crop, and the pose rule.

    Attributes
    ----------
    plan : the window plan inference uses (stored in the trained checkpoint)
    preprocessing : the crop and size inference uses (stored in the trained checkpoint)
    min_valid : windows with a smaller share of usable-pose sampled frames get no clip (the recognition
        stage's ``--min-valid``: it does not classify them either)
    threshold : keypoint confidence for the person crop box (the model family's keypoint threshold)
    """

    plan: WindowPlan
    preprocessing: Preprocessing
    min_valid: float = 0.5
    threshold: float = 0.3

    def to_dict(self) -> dict[str, Any]:
        return {"plan": self.plan.to_dict(), "preprocessing": self.preprocessing.to_dict(),
                "min_valid": self.min_valid, "threshold": self.threshold}


@dataclass
class VideoTable:
    """One video's windows (the table above) and its facts."""

    video_id: str
    table: pd.DataFrame
    fps: float
    frame_count: int
    status: str = "ok"  # ok (prepared now) | skipped (up to date)
    extra: dict = field(default_factory=dict)


def table_path(out: Path, video_id: str) -> Path:
    return Path(out) / "tables" / f"{video_id}.parquet"


def clip_file(out: Path, clip_id: str) -> Path:
    return Path(out) / "clips" / f"{clip_id}.npz"


def check_window_inputs(videos: dict[str, str], keypoints_dir: str | Path, plan: WindowPlan) -> dict[str, Path]:
    """Keypoints artifact of every video (``video_id -> path``); BadInput (one line) before any work when
    some have none, or were posed with ``--frames sampled`` on another window plan."""
    found, missing, other = {}, [], []
    for vid in videos:
        path = keypoints_for(keypoints_dir, vid)
        if not path.is_file():
            missing.append(str(path))
            continue
        meta = read_sidecar(path) or {}
        cfg = meta.get("config") or {}
        posed_plan = cfg.get("plan")
        if cfg.get("frames") == "sampled" and isinstance(posed_plan, dict):
            try:
                same = WindowPlan.from_dict(posed_plan) == plan
            except (TypeError, ValueError):
                same = False
            if not same:
                other.append((str(path), posed_plan))
        found[vid] = path
    if missing:
        raise BadInput(f"no keypoints for {len(missing)} coded video(s), e.g. {', '.join(missing[:3])}; pose them "
                       f"first (python -m pipeline.pose --frames sampled --clip-len {plan.clip_len} --stride "
                       f"{plan.stride} --hop {plan.hop_s})")
    if other:
        path, posed = other[0]
        raise BadInput(f"{path}: posed on the frames of another window plan ({posed}) than the model's "
                       f"({plan.to_dict()}); {len(other)} video(s) are; pose again with --frames sampled --clip-len "
                       f"{plan.clip_len} --stride {plan.stride} --hop {plan.hop_s}, or --frames all")
    return found


def _input_hash(video: str, keypoints: Path) -> str:
    h = hashlib.sha256()
    h.update(sha256_file(video).encode())
    h.update(sha256_file(keypoints).encode())
    return h.hexdigest()


def _one(video_id: str, video: str, keypoints: Path, out: Path, settings: WindowSettings) -> VideoTable:
    config = {"stage_version": STAGE_VERSION, **settings.to_dict()}
    path = table_path(out, video_id)
    input_hash = _input_hash(video, keypoints)
    if is_up_to_date(path, input_hash=input_hash, config=config):
        meta = read_sidecar(path) or {}
        facts = meta.get("video") or {}
        return VideoTable(video_id, pd.read_parquet(path), float(facts["fps"]), int(facts["frame_count"]), "skipped")
    info = probe(video)
    kp = read_keypoints(keypoints)
    try:
        laid = video_windows(settings.plan, info.frame_count, info.fps, kp, video=Path(video), keypoints_path=keypoints,
                             meta=read_sidecar(keypoints))
    except InputError as exc:
        raise BadInput(str(exc)) from None
    keep = laid.valid >= settings.min_valid
    ids = [f"{video_id}-w{w.index:05d}" for w in laid.windows]
    chosen = [ChosenWindow(w, rows, -1, cid, {"video_id": video_id, "valid_fraction": float(v)})
              for w, rows, v, cid, k in zip(laid.windows, laid.rows, laid.valid, ids, keep) if k]
    write_window_clips(Path(video), info, kp, chosen, out, preprocessing=settings.preprocessing,
                       threshold=settings.threshold)
    table = pd.DataFrame({
        "video_id": [video_id] * len(laid.windows),
        "window": np.array([w.index for w in laid.windows], np.int32),
        "start_frame": np.array([w.start_frame for w in laid.windows], np.int32),
        "end_frame": np.array([w.end_frame for w in laid.windows], np.int32),
        "valid_fraction": laid.valid.astype(np.float32),
        "clip": [c if k else None for c, k in zip(ids, keep)],
    })
    facts = {"fps": info.fps, "frame_count": info.frame_count, "width": info.size[0], "height": info.size[1]}
    write_artifact(pa.Table.from_pandas(table, schema=TABLE_SCHEMA, preserve_index=False), path, contract=None,
                   stage=STAGE, input_hash=input_hash, config=config,
                   extra={"video": facts, "source": {"video": str(video), "keypoints": str(keypoints)}})
    return VideoTable(video_id, table, float(info.fps), int(info.frame_count), "ok")


def prepare_windows(videos: dict[str, str], keypoints: dict[str, Path], out: str | Path, settings: WindowSettings, *,
                    show_progress: bool = False) -> dict[str, VideoTable]:
    """Prepare (or find up to date) every video's windows and clips; ``videos``: video_id -> video path.

    Returns video_id -> :class:`VideoTable` in ``videos``' order. Raises BadInput when a video's keypoints
    lack frames the plan samples.
    """
    out = Path(out)
    items = list(videos.items())
    it = progress(items, desc="prepare windows", unit="video") if show_progress else items
    return {vid: _one(vid, video, keypoints[vid], out, settings) for vid, video in it}
