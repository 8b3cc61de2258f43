"""In-memory keypoints of one video and their Parquet form (the KEYPOINTS contract).

Later stages read keypoints only through :func:`read_keypoints`, which returns arrays, never the
table's list columns::

    kp = read_keypoints("keypoints/clip.parquet")
    kp.frames      # [F] int64 frame indices (sorted; with --frames sampled not contiguous)
    kp.body25      # [F, 25, 3] float32 (x, y in source pixels, confidence); missing joint = 0, 0, 0
    kp.extra       # [F, 8, 3]  float32, model.taxonomy.EXTRA_POINTS; zeros for OpenPose input
    kp.combined    # [F, 33, 3] body25 then extra, the layout model.entities expects
    kp.fps, kp.size  # from the sidecar (None when the file has none)

Rejected frames (failed plausibility QC) and frames without a person have all-zero keypoints, so a
consumer that thresholds confidence never sees them; ``detected`` / ``rejected`` say which is which.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from model.taxonomy import NUM_BODY25, NUM_EXTRA
from pipeline.artifacts import read_artifact, read_sidecar
from pipeline.contracts import KEYPOINTS

__all__ = ["Keypoints", "read_keypoints", "empty_keypoints"]


@dataclass
class Keypoints:
    """Keypoints of the target person in the posed frames of one video.

    Attributes
    ----------
    frames : numpy.ndarray of int64, [F]
    time_s : numpy.ndarray of float64, [F]
    body25 : numpy.ndarray of float32, [F, 25, 3]
    extra : numpy.ndarray of float32, [F, 8, 3]
    detected : numpy.ndarray of bool, [F]
        A person was found.
    rejected : numpy.ndarray of bool, [F]
        A person was found but failed the plausibility check; keypoints zeroed.
    fps : float or None
    size : (width, height) or None
    meta : dict
        The sidecar's ``video`` record (rotation, frame count, ROI, ...) when read from disk.
    """

    frames: np.ndarray
    time_s: np.ndarray
    body25: np.ndarray
    extra: np.ndarray
    detected: np.ndarray
    rejected: np.ndarray
    fps: float | None = None
    size: tuple[int, int] | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        f = len(self.frames)
        shapes = {
            "time_s": (self.time_s.shape, (f,)),
            "body25": (self.body25.shape, (f, NUM_BODY25, 3)),
            "extra": (self.extra.shape, (f, NUM_EXTRA, 3)),
            "detected": (self.detected.shape, (f,)),
            "rejected": (self.rejected.shape, (f,)),
        }
        for name, (got, want) in shapes.items():
            if tuple(got) != want:
                raise ValueError(f"Keypoints.{name} has shape {tuple(got)}, expected {want}")

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def combined(self) -> np.ndarray:
        """[F, 33, 3]: BODY_25 then the extra points (for :func:`model.entities.entity_boxes`)."""
        return np.concatenate([self.body25, self.extra], axis=1)

    @property
    def valid(self) -> np.ndarray:
        """[F] bool: a person was found and kept (detected and not rejected)."""
        return self.detected & ~self.rejected

    def to_table(self) -> pa.Table:
        """The KEYPOINTS-contract table (types exactly as the contract states)."""
        f = len(self.frames)
        body = np.ascontiguousarray(self.body25, dtype=np.float32).reshape(-1)
        extra = np.ascontiguousarray(self.extra, dtype=np.float32).reshape(-1)
        return pa.table(
            {
                "frame": pa.array(self.frames.astype(np.int32), pa.int32()),
                "time_s": pa.array(self.time_s.astype(np.float64), pa.float64()),
                "body25": pa.FixedSizeListArray.from_arrays(pa.array(body, pa.float32()), NUM_BODY25 * 3)
                if f else pa.array([], pa.list_(pa.float32(), NUM_BODY25 * 3)),
                "extra": pa.FixedSizeListArray.from_arrays(pa.array(extra, pa.float32()), NUM_EXTRA * 3)
                if f else pa.array([], pa.list_(pa.float32(), NUM_EXTRA * 3)),
                "detected": pa.array(self.detected.astype(bool), pa.bool_()),
                "rejected": pa.array(self.rejected.astype(bool), pa.bool_()),
            },
            schema=KEYPOINTS.schema,
        )


def empty_keypoints(n: int = 0) -> Keypoints:
    """``n`` frames with no person (all zeros, detected False)."""
    return Keypoints(
        frames=np.arange(n, dtype=np.int64),
        time_s=np.zeros(n),
        body25=np.zeros((n, NUM_BODY25, 3), np.float32),
        extra=np.zeros((n, NUM_EXTRA, 3), np.float32),
        detected=np.zeros(n, bool),
        rejected=np.zeros(n, bool),
    )


def _list_column(table: pa.Table, name: str, width: int) -> np.ndarray:
    col = table.column(name).combine_chunks()
    flat = col.flatten().to_numpy(zero_copy_only=False) if len(col) else np.zeros(0, np.float32)
    return np.asarray(flat, dtype=np.float32).reshape(len(col), width, 3)


def read_keypoints(path: str | os.PathLike) -> Keypoints:
    """Read ``keypoints/<video_id>.parquet`` (validated against the contract) into arrays.

    Rows are returned sorted by frame. ``fps``, ``size`` and ``meta`` come from the sidecar's
    ``video`` record when there is one.

    Raises
    ------
    FileNotFoundError
        No such file.
    pipeline.contracts.ContractError
        The file does not satisfy the KEYPOINTS contract (message names the file).
    """
    path = Path(path)
    table = read_artifact(path, KEYPOINTS)
    frames = table.column("frame").to_numpy().astype(np.int64)
    order = np.argsort(frames, kind="stable")
    body = _list_column(table, "body25", NUM_BODY25)[order]
    extra = _list_column(table, "extra", NUM_EXTRA)[order]
    meta = (read_sidecar(path) or {}).get("video") or {}
    fps = meta.get("fps")
    size = (int(meta["width"]), int(meta["height"])) if "width" in meta and "height" in meta else None
    return Keypoints(
        frames=frames[order],
        time_s=table.column("time_s").to_numpy().astype(np.float64)[order],
        body25=body,
        extra=extra,
        detected=table.column("detected").to_numpy(zero_copy_only=False).astype(bool)[order],
        rejected=table.column("rejected").to_numpy(zero_copy_only=False).astype(bool)[order],
        fps=float(fps) if fps else None,
        size=size,
        meta=dict(meta),
    )
