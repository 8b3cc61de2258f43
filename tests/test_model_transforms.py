"""Horizontal flip: frames, keypoints, and the entity boxes that follow from them."""

from __future__ import annotations

import torch

from model.taxonomy import IMIGUE_ENTITIES, KEYPOINT_NAMES, MA52_ENTITIES
from model.transforms import (RandomHorizontalFlip, center_crop_clip, crop_clip, flip_entities, hflip_boxes, hflip_clip,
                              hflip_keypoints, resize_clip)
from model.entities import entity_boxes


def _clip(j: int, seed: int = 0, t: int = 5, h: int = 48, w: int = 80):
    g = torch.Generator().manual_seed(seed)
    frames = torch.rand(t, 3, h, w, generator=g)
    kp = torch.rand(t, j, 3, generator=g) * torch.tensor([w, h, 1.0])
    kp[..., 2] = torch.where(kp[..., 2] < 0.2, torch.zeros(()), kp[..., 2])  # some undetected joints
    return frames, kp


def test_frames_are_mirrored_and_flip_is_an_involution():
    frames, kp = _clip(33)
    f2, k2 = hflip_clip(frames, kp)
    assert torch.equal(f2[..., 0], frames[..., -1])
    f3, k3 = hflip_clip(f2, k2)
    assert torch.equal(f3, frames) and torch.allclose(k3, kp)


def test_keypoints_swap_sides_and_mirror_x():
    _, kp = _clip(33)
    w = 80
    out = hflip_keypoints(kp, w)
    lw, rw = KEYPOINT_NAMES.index("LWrist"), KEYPOINT_NAMES.index("RWrist")
    ml, mr = KEYPOINT_NAMES.index("MouthL"), KEYPOINT_NAMES.index("MouthR")
    nose = KEYPOINT_NAMES.index("Nose")
    for a, b in ((lw, rw), (rw, lw), (ml, mr), (nose, nose)):
        src = kp[:, b]
        expect_x = torch.where(src[:, 2] > 0, w - src[:, 0], src[:, 0])
        assert torch.allclose(out[:, a, 0], expect_x)
        assert torch.equal(out[:, a, 1:], src[:, 1:])
    px = hflip_keypoints(kp, w, pixel_centers=True)
    vis = kp[:, nose, 2] > 0
    assert torch.allclose(px[:, nose, 0][vis], (w - 1 - kp[:, nose, 0])[vis])


def test_entity_boxes_of_flipped_clip_are_mirrored_boxes_with_hands_swapped():
    for j in (25, 33):
        for layout in (MA52_ENTITIES, IMIGUE_ENTITIES):
            frames, kp = _clip(j, seed=j)
            w, h = frames.shape[-1], frames.shape[-2]
            orig = entity_boxes(kp, (w, h), layout=layout)
            _, kp_f = hflip_clip(frames, kp)
            flipped = entity_boxes(kp_f, (w, h), layout=layout)
            expect = flip_entities(hflip_boxes(orig.boxes, w), layout, dim=-2)
            assert torch.allclose(flipped.boxes, expect, atol=1e-4)
            assert torch.allclose(flipped.confidence, flip_entities(orig.confidence, layout, dim=-1))
            assert torch.equal(flipped.own, flip_entities(orig.own, layout, dim=-1))
            li, ri = layout.names.index("left hand"), layout.names.index("right hand")
            assert torch.allclose(flipped.boxes[:, li], hflip_boxes(orig.boxes[:, ri], w), atol=1e-4)


def test_random_flip_is_per_clip_and_respects_p():
    frames, kp = _clip(25)
    never, always = RandomHorizontalFlip(0.0), RandomHorizontalFlip(1.0)
    assert torch.equal(never(frames, kp)[0], frames)
    assert torch.equal(always(frames, kp)[0], frames.flip(-1))
    g = torch.Generator().manual_seed(0)
    half = RandomHorizontalFlip(0.5, generator=g)
    flips = sum(bool(torch.equal(half(frames, kp)[0], frames.flip(-1))) for _ in range(200))
    assert 70 < flips < 130


# --- resize / crop: keypoints stay on the pixels they marked ---------------------------------------


def _blob_clip(h=60, w=80, t=2, top=20, left=40, size=4):
    """Frames with one bright size x size square; a keypoint at its centre (continuous coords)."""
    frames = torch.zeros(t, 3, h, w)
    frames[..., top:top + size, left:left + size] = 1.0
    kp = torch.zeros(t, 25, 3)
    kp[:, 0] = torch.tensor([left + size / 2, top + size / 2, 0.9])
    kp[:, 1] = torch.tensor([5.0, 7.0, 0.0])  # undetected placeholder
    return frames, kp


def _centroid(frames):
    """Intensity centroid (x, y) of channel 0 of frame 0, in continuous coordinates (centre i + 0.5)."""
    img = frames[0, 0].float()
    ys = torch.arange(img.shape[0], dtype=torch.float32) + 0.5
    xs = torch.arange(img.shape[1], dtype=torch.float32) + 0.5
    return torch.stack([(img.sum(0) * xs).sum() / img.sum(), (img.sum(1) * ys).sum() / img.sum()])


def test_resize_moves_keypoints_with_the_pixels():
    frames, kp = _blob_clip()
    for size in ((30, 40), (120, 160), (45, 100), 30):
        out, kp2 = resize_clip(frames, kp, size)
        h, w = out.shape[-2:]
        assert (h, w) == ((30, 40) if size == 30 else size)
        assert torch.allclose(kp2[0, 0, :2], _centroid(out), atol=0.05), size
        assert torch.allclose(kp2[:, 0, :2], kp[:, 0, :2] * torch.tensor([w / 80, h / 60]))
        assert torch.equal(kp2[..., 2], kp[..., 2]) and torch.equal(kp2[:, 1], kp[:, 1])  # placeholder kept
    # Pixel-centre coordinates: the same point, expressed the other way.
    pc = kp.clone()
    pc[:, 0, :2] -= 0.5
    _, pc2 = resize_clip(frames, pc, (30, 40), pixel_centers=True)
    _, kp2 = resize_clip(frames, kp, (30, 40))
    assert torch.allclose(pc2[:, 0, :2] + 0.5, kp2[:, 0, :2])


def test_resize_keeps_dtype_and_leading_dims():
    frames = (torch.rand(2, 3, 3, 20, 30) * 255).to(torch.uint8)
    kp = torch.rand(2, 3, 33, 3) * torch.tensor([30.0, 20.0, 1.0])
    out, kp2 = resize_clip(frames, kp, (10, 15))
    assert out.dtype == torch.uint8 and out.shape == (2, 3, 3, 10, 15) and kp2.shape == kp.shape
    assert resize_clip(frames, None, (20, 30)) == (frames, None)


def test_crop_moves_keypoints_and_optionally_drops_those_outside():
    frames, kp = _blob_clip()
    out, kp2 = crop_clip(frames, kp, top=10, left=30, height=30, width=40)
    assert out.shape[-2:] == (30, 40)
    assert torch.allclose(kp2[0, 0, :2], _centroid(out)) and torch.allclose(kp2[0, 0, :2], torch.tensor([12.0, 12.0]))
    assert torch.equal(kp2[:, 1], kp[:, 1])
    _, kept = crop_clip(frames, kp, top=0, left=0, height=20, width=30)  # the blob's joint is outside
    _, dropped = crop_clip(frames, kp, top=0, left=0, height=20, width=30, outside="drop")
    assert (kept[:, 0, 2] == 0.9).all() and (dropped[:, 0, 2] == 0).all()
    assert torch.equal(dropped[:, 0, :2], kept[:, 0, :2])
    out, kp3 = center_crop_clip(frames, kp, 40)  # 60x80 -> rows 10..50, cols 20..60
    assert out.shape[-2:] == (40, 40) and torch.equal(out, frames[..., 10:50, 20:60])
    assert torch.allclose(kp3[0, 0, :2], _centroid(out))


def test_entity_boxes_follow_a_resize():
    """Eq. 1 boxes of the resized clip are the original boxes scaled (what the model's ROIAlign sees)."""
    frames, kp = _clip(33, seed=3, h=48, w=80)
    kp[..., 2] = 0.5 + 0.5 * kp[..., 2]  # all visible: no degenerate one-pixel boxes
    out, kp2 = resize_clip(frames, kp, (96, 120))
    for layout in (MA52_ENTITIES, IMIGUE_ENTITIES):
        before = entity_boxes(kp, (80, 48), layout=layout).boxes
        after = entity_boxes(kp2, (120, 96), layout=layout).boxes
        assert torch.allclose(after, before * torch.tensor([1.5, 2.0, 1.5, 2.0]), atol=1e-4)
