"""Regions of interest: where in the frame the participant sits, as ``(x, y, w, h)`` pixels.

Given on the command line (``--roi x,y,w,h``, one for every video) or in a CSV file
(``--roi-file``, columns ``video_id,x,y,w,h``, one per video, overriding ``--roi``). Coordinates
are pixels of the *displayed* frame (after rotation metadata), origin top-left. Before use a ROI is
clipped to the frame (:func:`clip_roi`); one that leaves less than 16x16 pixels is an error of that
video alone.
"""

from __future__ import annotations

import csv
from pathlib import Path

from pipeline.cli import BadInput
from pipeline.video import VideoError

__all__ = ["Roi", "parse_roi", "clip_roi", "read_roi_file", "MIN_ROI_SIDE"]

Roi = tuple[int, int, int, int]
MIN_ROI_SIDE = 16


def parse_roi(text: str) -> Roi:
    """``"x,y,w,h"`` (pixels, integers) -> tuple; raises BadInput on anything else."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        vals = tuple(int(round(float(p))) for p in parts)
    except ValueError:
        vals = ()
    if len(vals) != 4 or vals[2] <= 0 or vals[3] <= 0 or vals[0] < 0 or vals[1] < 0:
        raise BadInput(f"--roi must be x,y,w,h with x,y >= 0 and w,h > 0 (pixels), got {text!r}")
    return vals  # type: ignore[return-value]


def clip_roi(roi: Roi | None, size: tuple[int, int], source: str) -> Roi:
    """The ROI clipped to a frame of ``size`` (width, height); the whole frame when None.

    Raises VideoError (naming ``source``) when less than 16x16 pixels are left.
    """
    w, h = size
    if roi is None:
        return (0, 0, w, h)
    x1, y1 = max(0, roi[0]), max(0, roi[1])
    x2, y2 = min(w, roi[0] + roi[2]), min(h, roi[1] + roi[3])
    if x2 - x1 < MIN_ROI_SIDE or y2 - y1 < MIN_ROI_SIDE:
        raise VideoError(source, f"ROI {roi} leaves less than {MIN_ROI_SIDE}x{MIN_ROI_SIDE} pixels of the {w}x{h} frame")
    return (x1, y1, x2 - x1, y2 - y1)


def read_roi_file(path: str | Path) -> dict[str, Roi]:
    """A CSV with columns ``video_id,x,y,w,h`` -> {video_id: roi}; BadInput names the file and row."""
    path = Path(path)
    if not path.exists():
        raise BadInput(f"--roi-file {path} not found")
    out: dict[str, Roi] = {}
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        need = {"video_id", "x", "y", "w", "h"}
        if not reader.fieldnames or not need <= set(reader.fieldnames):
            raise BadInput(f"--roi-file {path} needs the columns video_id,x,y,w,h")
        for line, row in enumerate(reader, start=2):
            try:
                out[row["video_id"]] = parse_roi(",".join(row[k] or "" for k in ("x", "y", "w", "h")))
            except BadInput as exc:
                raise BadInput(f"--roi-file {path} line {line}: {exc}") from None
    return out
