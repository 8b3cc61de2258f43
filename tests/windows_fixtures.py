"""WINDOWS-contract files with sidecars, as the recognition stage writes them, for read-out tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from model.preprocessing import ClassList
from pipeline.artifacts import write_artifact

CLASSES = ClassList.from_actions(["nodding", "shaking legs", "touching nose"])
FPS = 10.0


def write_windows(wdir, video_id, starts, ends, probs, *, classes=CLASSES, fps=FPS, model_id="m1", sidecar=True,
                  frame_count=None):
    starts, ends = np.asarray(starts), np.asarray(ends)
    df = pd.DataFrame({
        "video_id": video_id, "window": np.arange(len(starts)), "start_frame": starts, "end_frame": ends,
        "start_s": starts / fps, "end_s": ends / fps, "valid_fraction": [0.0 if p is None else 1.0 for p in probs],
        "probs": [None if p is None else np.asarray(p, np.float32) for p in probs],
        "model_id": model_id, "config_id": "c1",
    })
    extra = {"video": {"fps": fps, "frame_count": int(frame_count or ends.max())}, "classes": classes.to_dict(),
             "model": {"sha256": model_id}} if sidecar else {}
    path = write_artifact(df, Path(wdir) / f"{video_id}.parquet", contract="windows", stage="recognize", extra=extra)
    if not sidecar:
        (path.parent / (path.name + ".json")).unlink()
    return path
