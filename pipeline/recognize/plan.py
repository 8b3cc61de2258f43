"""Planning one video (main process): check its inputs, lay the checkpoint's windows over it, and
build the :class:`pipeline.clip_stream.VideoPlan` the decode workers stream.

The frames the windows sample are looked up in the frames the pose artifact records
(:class:`PosedFrames`: the keypoints table's ``frame`` column, with the sidecar's frame-selection
facts), not planned a second time: pose and recognition do not have to agree on a recomputation,
only on the windows, and a window frame the artifact does not hold is an error naming the keypoints
file and what differs (the plan it was posed with against the checkpoint's).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.checkpoint import Checkpoint
from model.windows import WindowPlan
from pipeline.artifacts import read_sidecar, sha256_file, sidecar_path
from pipeline.clip_stream import VideoPlan
from pipeline.keypoints import Keypoints, read_keypoints
from pipeline.person_crop import decode_scale, scaled_size, window_boxes
from pipeline.recognize.options import RecognizeOptions
from pipeline.video import probe

__all__ = ["InputError", "PlannedVideo", "PosedFrames", "posed_frames", "window_rows", "plan_video"]


class InputError(ValueError):
    """A video's inputs cannot be used together (message: one line, starting with the video's path)."""


@dataclass
class PlannedVideo:
    """A video's window table before inference, and the plan the decode workers stream."""

    stream: VideoPlan
    frame_count: int
    fps: float
    size: tuple[int, int]
    starts: np.ndarray  # [W] start frame of every window
    ends: np.ndarray  # [W] exclusive end frame
    valid_fraction: np.ndarray  # [W]
    todo: np.ndarray  # [W] bool: classified (valid_fraction >= min_valid)
    posed: "PosedFrames | None" = None  # the frames the pose artifact holds (what the windows were looked up in)


@dataclass(frozen=True)
class PosedFrames:
    """What a keypoints artifact records about the frames that were posed.

    Attributes
    ----------
    frames : [F] int64, sorted: the table's ``frame`` column (the set itself)
    mode : the pose config's ``frames`` ("all" or "sampled"); None when the sidecar has no pose config
    plan : the window plan ``--frames sampled`` posed with (None for "all")
    frame_count : the sidecar's ``video.frame_count`` (None when absent)
    missing : the sidecar's ``video.frames_missing``: requested frames the decoder did not deliver
    """

    frames: np.ndarray
    mode: str | None
    plan: WindowPlan | None
    frame_count: int | None
    missing: int = 0


def posed_frames(kp: Keypoints, meta: dict) -> PosedFrames:
    """The frame-selection record of a keypoints artifact (``meta``: its sidecar)."""
    config = meta.get("config") or {}
    plan = config.get("plan")
    video = meta.get("video") or {}
    count = video.get("frame_count")
    try:
        plan = WindowPlan.from_dict(plan) if isinstance(plan, dict) else None
    except (TypeError, ValueError):
        plan = None  # an unreadable record: the frame set alone decides
    return PosedFrames(frames=kp.frames, mode=config.get("frames"), plan=plan,
                       frame_count=int(count) if count is not None else None,
                       missing=int(video.get("frames_missing") or 0))


def _plan_difference(posed: WindowPlan, ckpt: WindowPlan) -> str:
    """``clip_len 8 where the checkpoint has 4, hop_s 0.5 where the checkpoint has 0.1``: the fields that differ."""
    a, b = dataclasses.asdict(posed), dataclasses.asdict(ckpt)
    return ", ".join(f"{k} {a[k]} where the checkpoint has {b[k]}" for k in a if a[k] != b[k])


def window_rows(posed: PosedFrames, window_frames: np.ndarray, plan: WindowPlan, *, video: Path,
                keypoints_path: Path) -> np.ndarray:
    """Rows of the keypoints table holding each window frame: [W, T] int64 into ``posed.frames``.

    Raises InputError (one line naming the keypoints file and what differs) when a window frame is not
    in the recorded set: posed with another plan (``--frames sampled`` with other geometry), frames the
    decoder lost, or a table cut short.
    """
    frames = posed.frames
    rows = np.searchsorted(frames, window_frames)
    present = (rows < len(frames)) & (frames[np.minimum(rows, max(len(frames) - 1, 0))] == window_frames) \
        if len(frames) else np.zeros(window_frames.shape, bool)
    if present.all():
        return rows
    needed = np.unique(window_frames)
    lacking = np.unique(window_frames[~present])
    if posed.mode == "sampled" and posed.plan is not None and posed.plan != plan:
        why = f"was posed on the frames of another window plan ({_plan_difference(posed.plan, plan)}): it "
    elif posed.missing:
        why = f"records {posed.missing} frames the decoder did not deliver: it "
    else:
        why = ""
    raise InputError(
        f"{video}: {keypoints_path} {why}lacks {len(lacking)} of the {len(needed)} frames the checkpoint's window "
        f"plan samples (first: {int(lacking[0])}); pose with --frames sampled --clip-len {plan.clip_len} "
        f"--stride {plan.stride} --hop {plan.hop_s}, or --frames all")


def _usable_joints(ckpt: Checkpoint, combined: np.ndarray) -> np.ndarray:
    """The keypoints the model takes (``ckpt.keypoint_joints``): BODY_25 only (25), or all 33."""
    return combined[..., : ckpt.keypoint_joints, :]


@dataclass(frozen=True)
class _PosedVideo:
    """The video facts a keypoint-only model needs, as the pose artifact records them (no probe)."""

    frame_count: int
    fps: float
    size: tuple[int, int]


def _recorded_video(keypoints_path: Path, kp: Keypoints, meta: dict) -> _PosedVideo:
    video = meta.get("video") or {}
    count = video.get("frame_count")
    if count is None:
        raise InputError(f"{keypoints_path}: its sidecar records no video.frame_count, which a keypoint-only model "
                         "needs to lay its windows without the video; pose the video again (python -m pipeline.pose)")
    fps = float(video.get("fps") or kp.fps)
    size = (int(video.get("width") or kp.size[0]), int(video.get("height") or kp.size[1]))
    return _PosedVideo(int(count), fps, size)


def plan_video(video: str | Path, keypoints_path: str | Path, ckpt: Checkpoint, options: RecognizeOptions, *,
               video_id: str | None = None, video_sha256: str | None = None) -> PlannedVideo:
    """Check a video's inputs and lay its windows; raises VideoError / InputError naming the file.

    Checks: the video decodes; the keypoints file exists and has its sidecar (without it the next
    check cannot be made, so the file is refused); it was made from this video (the sidecar's
    ``input_hash`` is the video's sha256); it is for the video's frame count; and it holds every frame
    the checkpoint's windows sample (:func:`window_rows`: posed with ``--frames sampled`` and the same
    plan, or ``--frames all``).

    A checkpoint that reads no pixels (``ckpt.uses_pixels`` False: MMN) never opens the video: frame
    count, fps and size come from the pose artifact's sidecar, the video may be absent, and the pose
    artifact is the only input (docs/recognize.md, "Keypoint-only recognition").
    """
    video, keypoints_path = Path(video), Path(keypoints_path)
    pixels = ckpt.uses_pixels
    info = probe(video) if pixels else None
    if not keypoints_path.exists():
        raise InputError(f"{video}: no keypoints file {keypoints_path} (run python -m pipeline.pose first)")
    meta = read_sidecar(keypoints_path)
    if meta is None or not meta.get("input_hash"):
        what = "has no readable sidecar" if meta is None else "has a sidecar without input_hash"
        raise InputError(f"{video}: {keypoints_path} {what} ({sidecar_path(keypoints_path).name}), so it cannot be "
                         "checked against this video's sha256; pose the video again (python -m pipeline.pose) "
                         "or restore the sidecar")
    kp_hash = meta["input_hash"]
    if pixels:
        if video_sha256 is None:
            video_sha256 = sha256_file(video)
        if kp_hash != video_sha256:
            raise InputError(f"{video}: {keypoints_path} was made from another video (sha256 {kp_hash[:12]}..., "
                             f"this video {video_sha256[:12]}...)")
    kp = read_keypoints(keypoints_path)
    posed = posed_frames(kp, meta)
    if info is None:
        info = _recorded_video(keypoints_path, kp, meta)
    if posed.frame_count is not None and posed.frame_count != info.frame_count:
        raise InputError(f"{video}: {keypoints_path} is for a video of {posed.frame_count} frames, this one has "
                         f"{info.frame_count}")
    plan = ckpt.plan
    windows = plan.windows(info.frame_count, info.fps)
    if not windows:
        raise InputError(f"{video}: no frames")
    win_frames = np.asarray([w.frames for w in windows], dtype=np.int64)  # [W, T]
    win_rows = window_rows(posed, win_frames, plan, video=video, keypoints_path=keypoints_path)  # [W, T]
    usable = kp.valid  # detected and not rejected
    valid_fraction = usable[win_rows].mean(axis=1).astype(np.float32)
    todo = valid_fraction >= options.min_valid
    combined = kp.combined
    prep = ckpt.preprocessing
    sel = win_rows[todo]
    boxes = None
    if prep.region == "person" and pixels:
        boxes = window_boxes(combined, usable, sel, info.size, padding=prep.person_padding,
                             threshold=ckpt.keypoint_threshold)
    sizes = ([scaled_size(info.size, decode_scale(prep, info.size, b)) for b in (boxes or [None] * len(sel))]
             if pixels else [info.size] * len(sel))
    decode_sizes = sorted(set(sizes))
    stream = VideoPlan(
        video_id=video_id or video.stem, path=str(video), source_size=info.size, fps=info.fps,
        decode_sizes=decode_sizes, window_size=np.asarray([decode_sizes.index(z) for z in sizes], np.int64),
        window_index=np.flatnonzero(todo),
        window_frames=win_frames[todo], keypoints=np.ascontiguousarray(_usable_joints(ckpt, combined)[sel]),
        boxes=boxes, prep=prep, pixels=pixels)
    return PlannedVideo(stream, info.frame_count, info.fps, info.size,
                        np.asarray([w.start_frame for w in windows], np.int64),
                        np.asarray([w.end_frame for w in windows], np.int64), valid_fraction, todo, posed)
