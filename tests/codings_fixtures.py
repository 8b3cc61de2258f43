"""Small real videos and a manifest for the codings import tests (three 4 s videos at 25 fps, 100 frames)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

FPS = 25.0
FRAMES = 100
VIDEOS = ("P01_a", "P01_b", "P02")


def write_cohort(root: Path) -> Path:
    """``root/videos/<id>.mp4`` x 3 and ``root/manifest.csv``; returns the manifest path."""
    (root / "videos").mkdir(parents=True, exist_ok=True)
    for name in VIDEOS:
        w = cv2.VideoWriter(str(root / "videos" / f"{name}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (32, 32))
        assert w.isOpened()
        for i in range(FRAMES):
            w.write(np.full((32, 32, 3), (i * 2) % 250, np.uint8))
        w.release()
    m = root / "manifest.csv"
    m.write_text("participant_id,group,video\nP01,ASD,videos/P01_a.mp4\nP01,ASD,videos/P01_b.mp4\n"
                 "P02,TDC,videos/P02.mp4\n")
    return m


MAPPING_CSV = "code,action,tier\nNOD,nodding,\ntap,touching nose,\nlook,ignore,\nHS,shaking head,\n"


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> content): a folder unchanged has the same snapshot."""
    if not folder.exists():
        return {}
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
