"""The crop rule: from decoded frames and keypoints to the model's input pixels (one window at a time).

A checkpoint's :class:`model.preprocessing.Preprocessing` says what its input looks like; this module
applies it to one window of ``T`` sampled frames, moving the keypoints with the pixels
(:mod:`model.transforms`), so the model's Eq. 1 entity boxes land on the same body parts.

``region="person"`` (clinical framing: the participant may be small, off-centre, with an examiner in
view), per window (docs/recognize.md has the picture)::

    union  = bbox of the window's usable keypoints: joints with confidence > threshold (Eq. 1's 0.3)
             on sampled frames with a usable pose (detected, not rejected), over all T frames
    L      = longer side of the union;  side = L * (1 + 2 * person_padding)   (padding on each side)
    square = side x side, centred on the union's centre
    borders: along an axis where the square fits in the frame, it is shifted inside (no padding);
             where it does not, it is centred on the frame and the overflow is filled with black
    no usable keypoint in the window: the whole frame, padded to a square (centred)

then, as for ``region="frame"`` (MA-52 clips, the person fills the frame): resize so that the short
side is ``resize_short``, centre crop ``size`` x ``size``. One crop per window, the same for its T
frames (a per-frame crop would fake motion).

Decode-time scale. Frames are scaled once when decoded (OpenCV ``INTER_AREA``) by
:func:`decode_scale`, so the per-frame cache holds small images and the per-window work is a crop
plus a small resize. The scale depends only on the video's size and the window's own box, never on
other windows, so a window's input (and result) is the same whichever other windows are run:

- ``"frame"``: ``s = resize_short / min(H, W)``: the decoded frame *is* the resized frame, the window
  only needs the centre crop (no per-window resize at all);
- ``"person"``: ``s = 2^-k``, the smallest power-of-two reduction that keeps the window's crop at
  least ``resize_short`` pixels (``k = floor(log2(side / resize_short))``, 0 for small crops); the
  crop (``resize_short`` to ``2 * resize_short`` pixels at that scale) is then resized to
  ``resize_short`` (antialiased bilinear, :func:`model.transforms.resize_clip`). A frame shared by
  windows of different ``k`` is converted once and scaled once per level.

Shapes::

    frames    [T, 3, h, w] uint8 RGB (decoded at scale s)  ->  [T, 3, size, size] uint8
    keypoints [T, J, 3] float32, x/y in source pixels      ->  [T, J, 3] in pixels of the output
    boxes     (left, top, side) integers in source pixels (may extend past the frame)

Normalisation (``mean``/``std``, pixels in [0, 1]) is left to the device (:func:`normalize`), so
workers ship uint8 (4x less memory and PCIe traffic than float32).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from model.preprocessing import Preprocessing
from model.transforms import center_crop_clip, crop_clip, resize_clip, resize_keypoints

__all__ = ["CropBox", "person_box", "window_boxes", "decode_scale", "scaled_size", "scale_frame",
           "crop_window", "normalize", "MIN_SIDE"]

MIN_SIDE = 32
"""Smallest person crop side in source pixels (a handful of joints close together)."""


@dataclass(frozen=True)
class CropBox:
    """A square crop in source pixels: columns [left, left+side), rows [top, top+side).

    ``left``/``top`` may be negative and ``left+side``/``top+side`` may pass the frame: that part is
    black padding.
    """

    left: int
    top: int
    side: int

    def as_tuple(self) -> tuple[int, int, int]:
        return (self.left, self.top, self.side)


def _place(start: float, side: int, extent: int) -> int:
    """Integer start of a ``side`` interval wanted at ``start``: inside [0, extent) if it fits, else centred."""
    if side <= extent:
        return int(min(max(round(start), 0), extent - side))
    return int(np.floor((extent - side) / 2))


def person_box(keypoints: np.ndarray, usable: np.ndarray, frame_size: tuple[int, int], *,
               padding: float, threshold: float = 0.3) -> CropBox:
    """The square person crop of one window (module docstring).

    Parameters
    ----------
    keypoints : [T, J, 3] source pixels and confidence
    usable : [T] bool, the frame has a usable pose (detected and not rejected)
    frame_size : (width, height) of the source frames
    padding : fraction of the union's longer side added on each side (``Preprocessing.person_padding``)
    threshold : a joint counts when its confidence is above this (Eq. 1's theta)
    """
    w, h = frame_size
    kp = np.asarray(keypoints, dtype=np.float64)[np.asarray(usable, dtype=bool)]
    pts = kp[..., :2][kp[..., 2] > threshold] if kp.size else np.zeros((0, 2))
    if len(pts) == 0:
        side = max(w, h)
        return CropBox(_place(0, side, w), _place(0, side, h), side)
    (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
    longer = max(x1 - x0, y1 - y0)
    side = max(MIN_SIDE, int(round(longer * (1.0 + 2.0 * padding))))
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    return CropBox(_place(cx - side / 2.0, side, w), _place(cy - side / 2.0, side, h), side)


def window_boxes(keypoints: np.ndarray, usable: np.ndarray, window_rows: np.ndarray, frame_size: tuple[int, int], *,
                 padding: float, threshold: float = 0.3) -> list[CropBox]:
    """:func:`person_box` of every window; ``window_rows`` [N, T] indexes the keypoint arrays."""
    return [person_box(keypoints[r], usable[r], frame_size, padding=padding, threshold=threshold) for r in window_rows]


def scaled_size(frame_size: tuple[int, int], scale: float) -> tuple[int, int]:
    """(width, height) of a frame decoded at ``scale`` (short side rounded first, as ``resize_clip``)."""
    w, h = frame_size
    if scale == 1.0:
        return w, h
    if w <= h:
        ws = max(1, int(round(w * scale)))
        return ws, max(1, int(round(h * ws / w)))
    hs = max(1, int(round(h * scale)))
    return max(1, int(round(w * hs / h))), hs


def decode_scale(prep: Preprocessing, frame_size: tuple[int, int], box: CropBox | None = None) -> float:
    """Scale at which to decode a window's frames (module docstring): exact for "frame", 2^-k for "person"."""
    w, h = frame_size
    if prep.region == "frame":
        return prep.resize_short / min(w, h)
    if box is None:
        raise ValueError("region 'person' needs the window's crop box")
    k = int(np.floor(np.log2(max(1.0, box.side / prep.resize_short))))
    return 2.0 ** -k


def scale_frame(bgr: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """A decoded BGR HxWx3 frame -> RGB [3, h, w] uint8 at ``size`` = (w, h) (INTER_AREA when shrinking)."""
    h0, w0 = bgr.shape[:2]
    if (w0, h0) != tuple(size):
        interp = cv2.INTER_AREA if size[0] < w0 else cv2.INTER_LINEAR
        bgr = cv2.resize(bgr, tuple(size), interpolation=interp)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()


def _shift(keypoints: torch.Tensor, dx: float, dy: float) -> torch.Tensor:
    """Move detected joints (confidence > 0) by (dx, dy); undetected ones keep their placeholder."""
    kp = keypoints.clone()
    det = kp[..., 2] > 0
    kp[..., 0] = torch.where(det, kp[..., 0] + dx, kp[..., 0])
    kp[..., 1] = torch.where(det, kp[..., 1] + dy, kp[..., 1])
    return kp


def crop_window(frames: torch.Tensor, keypoints: torch.Tensor, prep: Preprocessing, *,
                source_size: tuple[int, int], box: CropBox | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One window's model input from frames decoded at some scale (module docstring).

    Parameters
    ----------
    frames : [T, 3, h, w] uint8, the window's frames as decoded (at ``scaled_size(source_size, s)``)
    keypoints : [T, J, 3] float32 in source pixels
    prep : the checkpoint's preprocessing
    source_size : (width, height) of the source video
    box : the window's person crop in source pixels (``region="person"``); ignored for "frame"

    Returns
    -------
    frames [T, 3, size, size] uint8, keypoints [T, J, 3] in pixels of those frames
    """
    h, w = frames.shape[-2:]
    kp = resize_keypoints(keypoints.float(), (source_size[1], source_size[0]), (h, w))
    if prep.region == "person":
        if box is None:
            raise ValueError("region 'person' needs the window's crop box")
        sx, sy = w / source_size[0], h / source_size[1]
        left, top = int(round(box.left * sx)), int(round(box.top * sy))
        side = max(1, int(round(box.side * (sx + sy) / 2.0)))
        pad_l, pad_t = max(0, -left), max(0, -top)
        pad_r, pad_b = max(0, left + side - w), max(0, top + side - h)
        if pad_l or pad_t or pad_r or pad_b:
            frames = F.pad(frames, (pad_l, pad_r, pad_t, pad_b), value=0)
            kp = _shift(kp, pad_l, pad_t)
        frames, kp = crop_clip(frames, kp, top + pad_t, left + pad_l, side, side)
        frames, kp = resize_clip(frames, kp, (prep.resize_short, prep.resize_short))
    else:
        frames, kp = resize_clip(frames, kp, prep.resize_short)  # identity when decoded at the exact scale
    frames, kp = center_crop_clip(frames, kp, prep.size)
    return frames.contiguous(), kp.contiguous()


def normalize(frames: torch.Tensor, prep: Preprocessing, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 RGB [..., 3, H, W] -> ``(x / 255 - mean) / std`` in ``dtype`` on the frames' device."""
    mean = torch.tensor(prep.mean, dtype=dtype, device=frames.device).view(3, 1, 1)
    std = torch.tensor(prep.std, dtype=dtype, device=frames.device).view(3, 1, 1)
    return (frames.to(dtype) / 255.0 - mean) / std
