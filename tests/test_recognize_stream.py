"""The crop rule (pipeline.person_crop) and the decode-once window stream (pipeline.clip_stream), on
synthetic frames and videos: box geometry, keypoints that stay on their pixels, each sampled frame
decoded once, a cache bounded by the window plan, and stream clips equal to a per-window reference.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from model.preprocessing import Preprocessing
from model.windows import WindowPlan
from pipeline.clip_stream import StreamStats, VideoPlan, iter_window_clips
from pipeline.person_crop import (CropBox, crop_window, decode_scale, normalize, person_box, scale_frame,
                                  scaled_size, window_boxes)
from pipeline.video import iter_frames, probe
from pipeline.window_feed import WindowFeed


def kp_points(points, t: int = 1, j: int = 25) -> np.ndarray:
    """[T, J, 3] with the given (x, y) joints visible (conf 0.9) and the rest missing."""
    kp = np.zeros((t, j, 3), np.float32)
    for i, (x, y) in enumerate(points):
        kp[:, i] = (x, y, 0.9)
    return kp


# --------------------------------------------------------------------------------------------------
# person_box
# --------------------------------------------------------------------------------------------------
def test_person_box_is_the_padded_square_around_the_union_of_the_window():
    # joints move over the window: the union spans x 100..200, y 50..130 (longer side 100)
    kp = np.concatenate([kp_points([(100, 50), (150, 100)]), kp_points([(200, 130), (120, 60)])])
    box = person_box(kp, np.ones(2, bool), (640, 480), padding=0.15)
    assert box.side == 130  # 100 * (1 + 2 * 0.15)
    assert (box.left, box.top) == (150 - 65, 90 - 65)  # centred on the union's centre (150, 90)


def test_person_box_ignores_low_confidence_joints_and_unusable_frames():
    kp = kp_points([(100, 100), (140, 140)], t=2)
    kp[:, 2] = (500, 400, 0.2)  # below theta: ignored
    kp[1, 0] = (10, 10, 0.9)  # on an unusable (rejected) frame: ignored
    box = person_box(kp, np.array([True, False]), (640, 480), padding=0.0)
    assert box == CropBox(100, 100, 40)


def test_person_box_is_shifted_inside_the_frame_where_it_fits():
    box = person_box(kp_points([(5, 300), (85, 380)]), np.ones(1, bool), (640, 480), padding=0.25)
    assert box.side == 120 and box.left == 0 and box.top == 340 - 60
    box = person_box(kp_points([(600, 440), (639, 479)]), np.ones(1, bool), (640, 480), padding=0.5)
    assert box.left + box.side == 640 and box.top + box.side == 480


def test_person_box_larger_than_the_frame_is_centred_and_padded():
    box = person_box(kp_points([(100, 10), (500, 470)]), np.ones(1, bool), (640, 480), padding=0.1)
    assert box.side == 552  # > 480: black bands above and below
    assert box.top == (480 - 552) // 2 and 0 <= box.left <= 640 - 552


def test_person_box_without_usable_keypoints_is_the_whole_frame_as_a_square():
    box = person_box(np.zeros((3, 25, 3), np.float32), np.ones(3, bool), (640, 480), padding=0.1)
    assert box == CropBox(0, -80, 640)


def test_window_boxes_index_the_window_rows():
    kp = np.concatenate([kp_points([(100, 100), (140, 140)]), kp_points([(300, 300), (360, 360)])])
    boxes = window_boxes(kp, np.ones(2, bool), np.array([[0, 0], [1, 1], [0, 1]]), (640, 480), padding=0.0)
    assert [b.side for b in boxes] == [40, 60, 260]


# --------------------------------------------------------------------------------------------------
# crop_window: pixels and keypoints together
# --------------------------------------------------------------------------------------------------
def dot_frames(size, dots, t: int = 2) -> torch.Tensor:
    """[T, 3, H, W] uint8 black frames with 6x6 white squares centred on ``dots`` (continuous coords)."""
    w, h = size
    img = np.zeros((h, w, 3), np.uint8)
    for x, y in dots:
        img[int(y) - 3:int(y) + 3, int(x) - 3:int(x) + 3] = 255
    return torch.from_numpy(img).permute(2, 0, 1).unsqueeze(0).repeat(t, 1, 1, 1).contiguous()


def centroid(frame: torch.Tensor, near: tuple[float, float], r: int = 12) -> tuple[float, float]:
    """Intensity centroid (continuous coordinates) of the frame's pixels within r of ``near``."""
    img = frame.float().mean(0).numpy()
    x0, y0 = int(near[0]), int(near[1])
    ys, xs = np.mgrid[max(0, y0 - r):y0 + r, max(0, x0 - r):x0 + r]
    wts = img[ys, xs]
    return float((wts * (xs + 0.5)).sum() / wts.sum()), float((wts * (ys + 0.5)).sum() / wts.sum())


@pytest.mark.parametrize("region,box", [("person", CropBox(180, 100, 200)), ("person", CropBox(-60, -40, 500)),
                                        ("frame", None)])
def test_keypoints_stay_on_their_pixels(region, box):
    size, dots = (480, 360), [(250.0, 180.0), (300.0, 240.0)]
    frames = dot_frames(size, dots)
    kp = torch.from_numpy(kp_points(dots, t=2))
    prep = Preprocessing(region=region, resize_short=160, size=128, person_padding=0.1)
    out, kp_out = crop_window(frames, kp, prep, source_size=size, box=box)
    assert out.shape == (2, 3, 128, 128) and out.dtype == torch.uint8
    for j in range(2):
        x, y = kp_out[0, j, :2].tolist()
        cx, cy = centroid(out[0], (x, y))
        assert abs(cx - x) < 0.75 and abs(cy - y) < 0.75


def test_crop_padding_is_black_and_undetected_joints_keep_their_placeholder():
    size = (200, 100)
    frames = torch.full((1, 3, 100, 200), 200, dtype=torch.uint8)
    kp = torch.zeros(1, 25, 3)
    kp[0, 0] = torch.tensor([100.0, 50.0, 0.9])
    prep = Preprocessing(region="person", resize_short=100, size=100)
    out, kp_out = crop_window(frames, kp, prep, source_size=size, box=CropBox(0, -50, 200))
    assert out[0, :, :20].max() == 0 and out[0, :, -20:].max() == 0  # bands above and below the frame
    assert out[0, :, 40:60].min() == 200
    assert kp_out[0, 1].tolist() == [0.0, 0.0, 0.0]
    assert kp_out[0, 0, :2].tolist() == pytest.approx([50.0, 50.0])


def test_decode_scale_depends_on_the_frame_size_and_the_windows_own_box_only():
    prep = Preprocessing(region="frame", resize_short=256, size=224)
    for size in [(1080, 1296), (1920, 1080), (640, 480)]:
        assert min(scaled_size(size, decode_scale(prep, size))) == 256
    person = Preprocessing(region="person", resize_short=256, size=224)
    assert decode_scale(person, (1920, 1080), CropBox(0, 0, 100)) == 1.0  # small crop: full resolution
    assert decode_scale(person, (1920, 1080), CropBox(0, 0, 511)) == 1.0
    assert decode_scale(person, (1920, 1080), CropBox(0, 0, 512)) == 0.5
    assert decode_scale(person, (1920, 1080), CropBox(0, 0, 1100)) == 0.25  # crop still >= 256 px after decode


def test_normalize_matches_the_definition():
    prep = Preprocessing()
    frames = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    got = normalize(frames, prep)
    want = (frames.float() / 255 - torch.tensor(prep.mean).view(3, 1, 1)) / torch.tensor(prep.std).view(3, 1, 1)
    torch.testing.assert_close(got, want)


# --------------------------------------------------------------------------------------------------
# The stream over a synthetic video
# --------------------------------------------------------------------------------------------------
def write_video(path: Path, n: int, size=(96, 72), fps: float = 30.0) -> Path:
    """Frames with a moving bright square and the frame index encoded in the top-left grey level."""
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for i in range(n):
        img = np.full((h, w, 3), 40, np.uint8)
        x = 10 + (i % 50)
        img[30:46, x:x + 16] = (0, 200, 255)
        img[:8, :8] = (i * 3) % 256
        writer.write(img)
    writer.release()
    return path


def make_plan(video: Path, plan: WindowPlan, prep: Preprocessing, *, rng=None) -> VideoPlan:
    info = probe(video)
    wins = plan.windows(info.frame_count, info.fps)
    frames = np.asarray([w.frames for w in wins])
    rng = rng or np.random.default_rng(0)
    kp = np.zeros((*frames.shape, 25, 3), np.float32)
    spread = rng.uniform(5, 45, (len(wins), 1, 1))  # person size varies from window to window
    kp[..., :4, 0] = 25 + spread * rng.uniform(0, 1, (*frames.shape, 4))
    kp[..., :4, 1] = 15 + spread * rng.uniform(0, 1, (*frames.shape, 4))
    kp[..., :4, 2] = 0.9
    boxes = None
    if prep.region == "person":
        boxes = [person_box(k, np.ones(len(k), bool), info.size, padding=prep.person_padding) for k in kp]
    sizes = [scaled_size(info.size, decode_scale(prep, info.size, b)) for b in (boxes or [None] * len(wins))]
    levels = sorted(set(sizes))
    return VideoPlan("v", str(video), info.size, info.fps, levels, np.asarray([levels.index(z) for z in sizes]),
                     np.arange(len(wins)), frames, kp, boxes, prep)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("stream") / "synthetic.mp4", 150)


PLAN = WindowPlan(clip_len=4, stride=4, hop_s=0.1)  # span 16, hop 4: each sampled frame in 4 windows


@pytest.mark.parametrize("region", ["frame", "person"])
def test_each_sampled_frame_is_decoded_once_and_the_cache_stays_small(video, region):
    prep = Preprocessing(region=region, resize_short=40, size=32)
    plan = make_plan(video, PLAN, prep)
    stats = StreamStats()
    clips = list(iter_window_clips(plan, stats))
    assert [c.window for c in clips] == list(range(len(plan)))
    assert stats.frames_decoded == len(np.unique(plan.window_frames))  # overlapping windows share decodes
    # the open windows' frames only: clip_len in steady state, plus the off-lattice tail window's
    assert stats.max_cached <= 2 * PLAN.clip_len
    assert stats.undecodable == []
    assert all(c.frames.shape == (4, 3, 32, 32) and c.keypoints.shape == (4, 25, 3) for c in clips)


@pytest.mark.parametrize("region", ["frame", "person"])
def test_stream_clips_equal_the_per_window_reference(video, region):
    """Reference: decode the window's frames on their own at the same scale, then the crop rule."""
    prep = Preprocessing(region=region, resize_short=20, size=16, person_padding=0.2)
    plan = make_plan(video, PLAN, prep)
    if region == "person":
        assert len(plan.decode_sizes) > 1  # windows of one video at different decode scales
    clips = {c.window: c for c in iter_window_clips(plan)}
    for i in (0, 7, len(plan) - 1):
        raw = {f: img for f, _, img in iter_frames(video, plan.window_frames[i])}
        size = plan.decode_sizes[plan.window_size[i]]
        frames = torch.stack([scale_frame(raw[int(f)], size) for f in plan.window_frames[i]])
        box = plan.boxes[i] if plan.boxes else None
        want, want_kp = crop_window(frames, torch.from_numpy(plan.keypoints[i]), prep, source_size=plan.source_size,
                                    box=box)
        assert torch.equal(clips[i].frames, want)
        torch.testing.assert_close(clips[i].keypoints, want_kp)


def test_truncated_stream_lists_the_windows_it_could_not_build(video):
    prep = Preprocessing(region="frame", resize_short=40, size=32)
    plan = make_plan(video, PLAN, prep)
    plan.window_frames = plan.window_frames.copy()
    plan.window_frames[-1] = [200, 204, 208, 212]  # past the end of the 150-frame file
    stats = StreamStats()
    got = [c.window for c in iter_window_clips(plan, stats)]
    assert stats.undecodable == [len(plan) - 1] and len(got) == len(plan) - 1


@pytest.mark.parametrize("workers,kind", [(0, "process"), (2, "thread"), (2, "process")])
def test_feed_delivers_every_window_and_reports_a_broken_video(video, tmp_path, workers, kind):
    prep = Preprocessing(region="frame", resize_short=40, size=32)
    good = make_plan(video, PLAN, prep)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)
    bad = make_plan(video, PLAN, prep)
    bad.video_id, bad.path = "bad", str(broken)
    with WindowFeed([bad, good], workers=workers, kind=kind, max_pending=4) as feed:
        msgs = list(feed)
    clips = [m[1] for m in msgs if m[0] == "clip"]
    assert sorted(c.window for c in clips) == list(range(len(good)))
    reference = {c.window: c for c in iter_window_clips(good)}
    assert all(torch.equal(c.frames, reference[c.window].frames) for c in clips)
    ends = {m[1]: m for m in msgs if m[0] in ("done", "failed")}
    assert ends["v"][0] == "done"
    assert ends["bad"][0] == "failed" and ends["bad"][2].startswith(str(broken))


class CrashingPlan(VideoPlan):
    """Fault injection: the decode worker process dies (as in a segfault) when it starts this video."""

    def __len__(self) -> int:
        import os

        os._exit(3)


@pytest.mark.slow
def test_a_dying_decode_worker_fails_only_its_video(video):
    prep = Preprocessing(region="frame", resize_short=40, size=32)
    good = make_plan(video, PLAN, prep)
    other = make_plan(video, PLAN, prep)
    other.video_id = "w"
    crash = CrashingPlan(**{f: getattr(good, f) for f in good.__dataclass_fields__})
    crash.video_id = "crash"
    with WindowFeed([crash, good, other], workers=2, kind="process", max_pending=8) as feed:
        msgs = list(feed)
    ends = {m[1]: m for m in msgs if m[0] in ("done", "failed")}
    assert ends["crash"][0] == "failed" and "decode worker died" in ends["crash"][2]
    assert ends["crash"][2].startswith(str(video))
    assert ends["v"][0] == "done" and ends["w"][0] == "done"
    for vid in ("v", "w"):
        assert sorted(m[1].window for m in msgs if m[0] == "clip" and m[1].video_id == vid) == list(range(len(good)))
