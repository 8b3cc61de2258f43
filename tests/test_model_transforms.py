"""Horizontal flip: frames, keypoints, and the entity boxes that follow from them."""

from __future__ import annotations

import torch

from model.taxonomy import IMIGUE_ENTITIES, KEYPOINT_NAMES, MA52_ENTITIES
from model.transforms import RandomHorizontalFlip, flip_entities, hflip_boxes, hflip_clip, hflip_keypoints
from pipeline.entities import entity_boxes


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
