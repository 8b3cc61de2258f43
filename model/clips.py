"""Prepared clip folders and the training / evaluation datasets over them (torch + numpy only).

A *prepared folder* is written once by ``python -m recipes.prepare_clips`` (which decodes the videos
and reads the keypoints) and then read every epoch by :mod:`recipes.train` and :mod:`recipes.evaluate`,
so training never decodes full-size MP4s::

    PREPARED/
      manifest.json                {"format": "prepared-clips/1", "classes": ClassList.to_dict(),
                                    "preprocessing": Preprocessing.to_dict(), "storage": "jpeg",
                                    "clips": [{"id", "file", "label", "num_frames", "height", "width",
                                               "video", "has_keypoints"}, ...]}
      clips/<id>.npz               one clip (numpy .npz, not compressed; :func:`encode_prepared_clip`):
        jpeg      uint8 [bytes]    the F frames as consecutive JPEG files (RGB, short side resized)
        offsets   int64 [F + 1]    frame f is jpeg[offsets[f]:offsets[f+1]]
        keypoints float32 [F, J, 3] (x, y) in pixels of the stored frames, confidence; J = 33
        frame_indices int64 [F]    source frame index of each stored frame
        label     int64 []         class index into the manifest's class list (the datasets read the
                                   label of the manifest record, which is the same for folders written by
                                   recipes.prepare_clips; a folder may relabel clips in its manifest, or
                                   store -1 in class-list-independent clips, recipes.coded_windows)
        meta      str []           JSON: source video, keypoints source, original size, settings

Sampling (TSN, the MA-52 practice; paper IV-B's "temporal jitter"): the F stored frames are cut
into T equal segments; training takes a uniformly random frame in each segment (this random offset
is the temporal jitter), evaluation the centre frame of each. With F < T frames repeat.

Augmentation (training, paper IV-B): random ``size`` x ``size`` crop of the (short side
``resize_short``) frames, then horizontal flip with p = 0.5 that mirrors the keypoints and swaps
left/right joints (:func:`model.transforms.hflip_clip`; entities follow from the joints).
Evaluation: centre crop. Multi-view testing (:meth:`ClipDataset.views`): ``clips`` temporal offsets
x ``crops`` (1: centre; 3: start / centre / end of the long side), scores averaged by the caller.

JPEG coding is Pillow's (libjpeg-turbo; about 1 ms per 256 x 307 frame on one core). The datasets
return uint8 frames; :func:`normalize_frames` turns a batch into the model's
ImageNet-normalised float input on the device (a quarter of float32's host-to-device traffic).
Randomness: every random choice of clip ``i`` in epoch ``e`` comes from a generator seeded with
(seed, e, i), so results do not depend on worker count, process count (DDP) or resumption.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from model.preprocessing import ClassList, Preprocessing
from model.transforms import center_crop_clip, crop_clip, hflip_clip, hflip_keypoints

__all__ = [
    "PREPARED_FORMAT", "MANIFEST", "PreparedClip", "PreparedClips", "ClipDataset", "segment_frame_indices",
    "encode_prepared_clip", "read_prepared_clip", "normalize_frames", "collate_clips", "clip_generator",
]

PREPARED_FORMAT = "prepared-clips/1"
MANIFEST = "manifest.json"


# --------------------------------------------------------------------------------------------------
# One clip file
# --------------------------------------------------------------------------------------------------


@dataclass
class PreparedClip:
    """One prepared clip, frames still JPEG-encoded (decoded on demand by :meth:`frames`)."""

    jpeg: np.ndarray
    offsets: np.ndarray
    keypoints: np.ndarray
    frame_indices: np.ndarray
    label: int
    meta: dict[str, Any]

    @property
    def num_frames(self) -> int:
        return len(self.offsets) - 1

    def frames(self, frame_indices: np.ndarray | list[int] | None = None) -> torch.Tensor:
        """uint8 RGB [T, 3, H, W] of the stored frames ``frame_indices`` (positions 0..F-1; None: all)."""
        idx = range(self.num_frames) if frame_indices is None else [int(i) for i in frame_indices]
        by_pos = {}  # decode each distinct frame once (short clips repeat frames)
        for i in sorted(set(idx)):
            data = self.jpeg[int(self.offsets[i]):int(self.offsets[i + 1])].tobytes()
            with Image.open(io.BytesIO(data)) as im:
                by_pos[i] = np.asarray(im.convert("RGB"))
        return torch.from_numpy(np.stack([by_pos[i] for i in idx])).permute(0, 3, 1, 2)


def encode_prepared_clip(frames_rgb: list[np.ndarray] | np.ndarray, keypoints: np.ndarray, frame_indices: np.ndarray,
                         label: int, meta: dict[str, Any], *, quality: int = 90) -> bytes:
    """The bytes of a ``clips/<id>.npz`` file (see module docstring).

    frames_rgb: F arrays [H, W, 3] uint8 RGB (all the same size); keypoints [F, J, 3] in their pixels.
    """
    if len(frames_rgb) == 0:
        raise ValueError("a prepared clip needs at least one frame")
    if len(keypoints) != len(frames_rgb) or len(frame_indices) != len(frames_rgb):
        raise ValueError(f"{len(frames_rgb)} frames but {len(keypoints)} keypoint rows and {len(frame_indices)} indices")
    encoded = []
    for f in frames_rgb:
        out = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(f, dtype=np.uint8)).save(out, format="JPEG", quality=quality)
        encoded.append(np.frombuffer(out.getvalue(), dtype=np.uint8))
    sizes = [0] + [len(e) for e in encoded]
    buf = io.BytesIO()
    np.savez(buf, jpeg=np.concatenate(encoded), offsets=np.cumsum(sizes).astype(np.int64),
             keypoints=np.asarray(keypoints, np.float32), frame_indices=np.asarray(frame_indices, np.int64),
             label=np.int64(label), meta=np.array(json.dumps(meta, sort_keys=True)))
    return buf.getvalue()


def read_prepared_clip(path: str | os.PathLike) -> PreparedClip:
    """Read a ``clips/<id>.npz`` file (JPEG bytes stay encoded)."""
    with np.load(Path(path), allow_pickle=False) as z:
        return PreparedClip(jpeg=z["jpeg"], offsets=z["offsets"], keypoints=z["keypoints"],
                            frame_indices=z["frame_indices"], label=int(z["label"]), meta=json.loads(str(z["meta"])))


# --------------------------------------------------------------------------------------------------
# A prepared folder
# --------------------------------------------------------------------------------------------------


class PreparedClips:
    """The manifest of a prepared folder: class list, preprocessing and the clip records.

    Raises FileNotFoundError (no manifest) or ValueError (not a prepared folder, naming the file).
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        path = self.root / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: prepare the clips first (python -m recipes.prepare_clips)")
        try:
            manifest = json.loads(path.read_text())
        except ValueError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from None
        if manifest.get("format") != PREPARED_FORMAT:
            raise ValueError(f"{path}: not a prepared-clips manifest (format {manifest.get('format')!r}, "
                             f"expected {PREPARED_FORMAT!r})")
        self.manifest = manifest
        self.classes = ClassList.from_dict(manifest["classes"])
        self.preprocessing = Preprocessing.from_dict(manifest["preprocessing"])
        self.records: list[dict[str, Any]] = list(manifest["clips"])

    def __len__(self) -> int:
        return len(self.records)

    @property
    def labels(self) -> np.ndarray:
        return np.array([r["label"] for r in self.records], dtype=np.int64)

    @property
    def ids(self) -> list[str]:
        return [r["id"] for r in self.records]

    def clip(self, i: int) -> PreparedClip:
        return read_prepared_clip(self.root / self.records[i]["file"])


def segment_frame_indices(num_frames: int, num_segments: int, *, generator: torch.Generator | None = None,
                          offset: float = 0.5) -> np.ndarray:
    """TSN sampling: one position in each of ``num_segments`` equal segments of ``num_frames`` frames.

    With ``generator`` a uniformly random frame of each segment (training; the temporal jitter),
    otherwise the frame at fraction ``offset`` of each segment (0.5: the centre; evaluation).
    Returns int64 [num_segments] positions in 0..num_frames-1, non-decreasing.
    """
    if num_frames < 1 or num_segments < 1:
        raise ValueError(f"need at least one frame and one segment, got {num_frames} and {num_segments}")
    seg = num_frames / num_segments
    if generator is not None:
        u = torch.rand(num_segments, generator=generator, dtype=torch.float64).numpy()
    else:
        u = np.full(num_segments, offset)
    pos = np.floor((np.arange(num_segments) + u) * seg).astype(np.int64)
    return np.clip(pos, 0, num_frames - 1)


def clip_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The generator of clip ``index``'s random choices in ``epoch`` (independent of workers/ranks)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 1_000_033 + index)


class ClipDataset(Dataset):
    """Training or evaluation samples from a prepared folder.

    ``dataset[i]`` -> dict with
    ``frames`` uint8 [T, 3, S, S], ``keypoints`` float32 [T, J, 3] (x, y in pixels of ``frames``),
    ``label`` int64 [], ``index`` int64 [] (position in the manifest);
    with ``views`` (evaluation only) ``frames`` [V, T, 3, S, S] and ``keypoints`` [V, T, J, 3].

    Parameters
    ----------
    prepared : PreparedClips or folder
    num_frames : int
        T (MA-52: 8).
    train : bool
        Random segment frames, random crop, flip; otherwise centre frames and centre crop.
    preprocessing : Preprocessing, optional
        Crop size (``size``); default the folder's.
    flip_p : float
        Horizontal-flip probability in training (paper: 0.5).
    seed : int
        Base seed of the per-clip generators (:func:`clip_generator`); :meth:`set_epoch` per epoch.
    views : (clips, crops), optional
        Multi-view evaluation: ``clips`` temporal offsets x ``crops`` (1 or 3) spatial crops.
    pixels : bool
        False for a model that reads keypoints only (Micro-DualNet's pose modality, MMN): the JPEG
        frames are not decoded and ``frames`` is an empty uint8 [T, 3, 0, 0]; the keypoints, label and
        every random draw (segment frames, crop offsets from the stored frame size, flip) are those
        of ``pixels=True``, so training and evaluation results do not change, only their cost.
    """

    def __init__(self, prepared: PreparedClips | str | os.PathLike, num_frames: int, *, train: bool,
                 preprocessing: Preprocessing | None = None, flip_p: float = 0.5, seed: int = 0,
                 views: tuple[int, int] | None = None, pixels: bool = True) -> None:
        self.prepared = prepared if isinstance(prepared, PreparedClips) else PreparedClips(prepared)
        self.pixels = pixels
        self.num_frames, self.train, self.flip_p, self.seed = num_frames, train, flip_p, seed
        self.preprocessing = preprocessing or self.prepared.preprocessing
        if views is not None and (train or views[1] not in (1, 3) or views[0] < 1):
            raise ValueError(f"views must be (clips >= 1, crops in {{1, 3}}) and evaluation only, got {views}")
        self.views = views
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.prepared)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        clip = self.prepared.clip(i)
        size = self.preprocessing.size
        label = torch.tensor(int(self.prepared.records[i]["label"]), dtype=torch.int64)  # the manifest's label
        index = torch.tensor(i, dtype=torch.int64)
        if self.train:
            g = clip_generator(self.seed, self.epoch, i)
            pos = segment_frame_indices(clip.num_frames, self.num_frames, generator=g)
            frames, kp = self._frames(clip, i, pos), torch.from_numpy(clip.keypoints[pos])
            h, w = frames.shape[-2:]
            self._check_size(h, w, size, i)
            top = int(torch.randint(0, h - size + 1, (), generator=g))
            left = int(torch.randint(0, w - size + 1, (), generator=g))
            frames, kp = crop_clip(frames, kp, top, left, size, size)
            if torch.rand((), generator=g).item() < self.flip_p:
                frames, kp = hflip_clip(frames, kp) if self.pixels else (frames, hflip_keypoints(kp, size))
            return {"frames": self._out(frames), "keypoints": kp, "label": label, "index": index}
        if self.views is None:
            pos = segment_frame_indices(clip.num_frames, self.num_frames)
            frames, kp = self._frames(clip, i, pos), torch.from_numpy(clip.keypoints[pos])
            self._check_size(*frames.shape[-2:], size, i)
            frames, kp = center_crop_clip(frames, kp, size)
            return {"frames": self._out(frames), "keypoints": kp, "label": label, "index": index}
        n_clips, n_crops = self.views
        all_frames, all_kp = [], []
        for c in range(n_clips):
            pos = segment_frame_indices(clip.num_frames, self.num_frames, offset=(c + 0.5) / n_clips)
            frames, kp = self._frames(clip, i, pos), torch.from_numpy(clip.keypoints[pos])
            h, w = frames.shape[-2:]
            self._check_size(h, w, size, i)
            for top, left in self._crop_offsets(h, w, size, n_crops):
                f, k = crop_clip(frames, kp, top, left, size, size)
                all_frames.append(self._out(f))
                all_kp.append(k)
        return {"frames": torch.stack(all_frames), "keypoints": torch.stack(all_kp), "label": label, "index": index}

    def _frames(self, clip: PreparedClip, i: int, pos: np.ndarray) -> torch.Tensor:
        """The clip's frames at ``pos``: decoded, or (``pixels=False``) a zero-stride stand-in of the stored
        size, so crops and offsets are computed exactly as for decoded frames without decoding."""
        if self.pixels:
            return clip.frames(pos)
        rec = self.prepared.records[i]
        return torch.zeros((), dtype=torch.uint8).expand(len(pos), 3, int(rec["height"]), int(rec["width"]))

    def _out(self, frames: torch.Tensor) -> torch.Tensor:
        return frames.contiguous() if self.pixels else frames.new_zeros((frames.shape[0], 3, 0, 0))

    def _check_size(self, h: int, w: int, size: int, i: int) -> None:
        if h < size or w < size:
            raise ValueError(f"clip {self.prepared.records[i]['id']}: stored frames {h}x{w} are smaller than the "
                             f"{size}x{size} crop; prepare with a larger --short-side")

    @staticmethod
    def _crop_offsets(h: int, w: int, size: int, n: int) -> list[tuple[int, int]]:
        centre = (int(round((h - size) / 2.0)), int(round((w - size) / 2.0)))
        if n == 1:
            return [centre]
        if w >= h:  # three crops along the long side
            return [(centre[0], 0), centre, (centre[0], w - size)]
        return [(0, centre[1]), centre, (h - size, centre[1])]


def collate_clips(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack samples into a batch: frames [B, (V,) T, 3, S, S] uint8, keypoints, label [B], index [B]."""
    return {k: torch.stack([s[k] for s in samples]) for k in samples[0]}


def normalize_frames(frames: torch.Tensor, preprocessing: Preprocessing, *,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 RGB [..., 3, H, W] -> ImageNet-normalised float: (x / 255 - mean) / std."""
    mean = torch.tensor(preprocessing.mean, device=frames.device, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(preprocessing.std, device=frames.device, dtype=torch.float32).view(3, 1, 1)
    out = ((frames.float() / 255.0) - mean) / std
    return out.to(dtype)

