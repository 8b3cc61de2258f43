"""Synthetic prepared clip folders for the training tests (written in the model.clips format)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from model.clips import MANIFEST, PREPARED_FORMAT, encode_prepared_clip
from model.preprocessing import ClassList, Preprocessing

# Three classes told apart by appearance and motion: a bright square moving right (0), moving down (1),
# or a dark square standing still (2); noise background. The keypoints follow the square (confidence 1).
SYNTHETIC_CLASSES = ClassList.from_actions(["nodding", "shaking head", "touching nose"])


def _clip(label: int, rng: np.random.Generator, num_frames: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    frames = rng.integers(0, 60, size=(num_frames, size, size, 3), dtype=np.uint8)
    kp = np.zeros((num_frames, 33, 3), np.float32)
    s = size // 4
    y0, x0 = rng.integers(s, size - 2 * s, size=2)
    for f in range(num_frames):
        step = int(round(f * s / max(num_frames - 1, 1)))
        y, x = (y0, x0 + step) if label == 0 else (y0 + step, x0) if label == 1 else (y0, x0)
        y, x = min(y, size - s), min(x, size - s)
        colour = (230, 200, 40) if label != 2 else (20, 140, 230)
        frames[f, y:y + s, x:x + s] = colour
        base = np.array([x + s / 2, y + s / 2], np.float32)
        offsets = rng.normal(0, s / 4, size=(25, 2)).astype(np.float32)
        kp[f, :25, :2] = base + offsets
        kp[f, :25, 2] = 1.0
    return frames, kp


def write_synthetic_prepared(root: Path, *, clips_per_class: int = 8, num_frames: int = 8, size: int = 72,
                             crop: int = 64, seed: int = 0, classes: ClassList = SYNTHETIC_CLASSES) -> Path:
    """A prepared folder of ``clips_per_class`` x 3 synthetic clips ([num_frames, size, size] frames)."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    (root / "clips").mkdir(parents=True, exist_ok=True)
    records = []
    for label in range(3):
        for i in range(clips_per_class):
            frames, kp = _clip(label, rng, num_frames, size)
            cid = f"c{label}_{i:03d}"
            meta = {"video": f"{cid}.mp4", "num_frames": num_frames, "height": size, "width": size}
            data = encode_prepared_clip(list(frames), kp, np.arange(num_frames), label, meta, quality=95)
            (root / "clips" / f"{cid}.npz").write_bytes(data)
            records.append({"id": cid, "file": f"clips/{cid}.npz", "label": label, "num_frames": num_frames,
                            "height": size, "width": size, "video": f"{cid}.mp4", "has_keypoints": True})
    manifest = {"format": PREPARED_FORMAT, "classes": classes.to_dict(),
                "preprocessing": Preprocessing(resize_short=size, size=crop).to_dict(), "storage": "jpeg",
                "clips": records}
    (root / MANIFEST).write_text(json.dumps(manifest))
    return root
