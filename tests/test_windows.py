"""Window geometry (model.windows.WindowPlan): the single source of truth for sampled frames."""

from __future__ import annotations

import numpy as np
import pytest

from model.windows import IMIGUE_PLAN, MA52_16F_PLAN, MA52_PLAN, Window, WindowPlan, ma52_plan


def test_ma52_defaults_and_span():
    assert (MA52_PLAN.clip_len, MA52_PLAN.stride, MA52_PLAN.hop_s) == (8, 8, 0.5)
    assert MA52_PLAN.span == 64
    assert IMIGUE_PLAN.span == 64


def test_hop_alignment_at_30fps():
    assert MA52_PLAN.hop_frames(30.0) == 16  # 15 frames rounded to a multiple of 8
    assert WindowPlan(align_hop_to_stride=False).hop_frames(30.0) == 15
    assert MA52_PLAN.hop_frames(25.0) == 16  # 12.5 -> 16
    assert MA52_PLAN.hop_frames(5.0) == 8  # never below one stride
    with pytest.raises(ValueError):
        MA52_PLAN.hop_frames(0.0)


def test_windows_cover_video_and_sample_on_stride():
    n, fps = 300, 30.0
    wins = MA52_PLAN.windows(n, fps)
    assert [w.index for w in wins] == list(range(len(wins)))
    for w in wins:
        assert isinstance(w, Window)
        assert len(w.frames) == 8
        assert w.frames[0] == w.start_frame and w.frames[-1] == w.end_frame - 8  # last segment: 8 frames
        assert np.all(np.diff(w.frames) == 8)
        assert 0 <= w.start_frame and w.end_frame <= n
    starts = [w.start_frame for w in wins]
    assert starts[:3] == [0, 16, 32]
    # the tail window ends exactly on the last frame
    assert wins[-1].end_frame == n
    covered = np.zeros(n, bool)
    for w in wins:
        covered[w.start_frame : w.end_frame] = True
    assert covered.all()
    assert wins[1].start_s(fps) == pytest.approx(16 / 30)
    assert wins[0].end_s(fps) == pytest.approx(64 / 30)


def test_sampled_union_aligned_vs_unaligned():
    n, fps = 30 * 180, 30.0  # a 3-minute video
    aligned = MA52_PLAN.sampled_frames(n, fps)
    unaligned = WindowPlan(align_hop_to_stride=False).sampled_frames(n, fps)
    assert np.all(np.diff(aligned) > 0)
    # aligned: the stride lattice plus at most one extra tail window
    assert len(aligned) <= n // 8 + 8 + 1
    assert len(aligned) / n == pytest.approx(1 / 8, abs=0.01)
    assert len(unaligned) / n == pytest.approx(8 / 15, abs=0.02)
    # every window's frames are in the union
    union = set(aligned.tolist())
    assert all(set(w.frames) <= union for w in MA52_PLAN.windows(n, fps))


def test_short_video_gets_one_clamped_window():
    wins = MA52_PLAN.windows(47, 30.0)
    assert len(wins) == 1
    w = wins[0]
    assert (w.start_frame, w.end_frame) == (0, 47)
    assert w.frames == (0, 8, 16, 24, 32, 40, 46, 46)
    assert MA52_PLAN.sampled_frames(47, 30.0).tolist() == [0, 8, 16, 24, 32, 40, 46]


def test_exact_span_and_empty():
    assert len(MA52_PLAN.windows(64, 30.0)) == 1
    assert MA52_PLAN.windows(0, 30.0) == []
    assert MA52_PLAN.sampled_frames(0, 30.0).size == 0
    assert WindowPlan(cover_tail=False).windows(80, 30.0)[-1].start_frame == 16


def test_invalid_plans():
    with pytest.raises(ValueError):
        WindowPlan(clip_len=0)
    with pytest.raises(ValueError):
        WindowPlan(hop_s=0)


def test_ma52_16f_plan_and_plans_per_frame_count():
    """16 frames at stride 4 read the same 64 frames as 8 at stride 8; Table IV's counts likewise."""
    assert (MA52_16F_PLAN.clip_len, MA52_16F_PLAN.stride, MA52_16F_PLAN.span) == (16, 4, 64)
    assert ma52_plan(8) == MA52_PLAN and ma52_plan(16) == MA52_16F_PLAN
    for t, stride in ((4, 16), (32, 2)):
        assert (ma52_plan(t).stride, ma52_plan(t).span) == (stride, 64)
    # Same windows in time, twice the sampled frames per window.
    a, b = MA52_PLAN.windows(300, 30.0), MA52_16F_PLAN.windows(300, 30.0)
    assert [(w.start_frame, w.end_frame) for w in a] == [(w.start_frame, w.end_frame) for w in b][: len(a)]
    assert all(len(w.frames) == 16 for w in b)
    with pytest.raises(ValueError):
        ma52_plan(6)


def test_plan_dict_round_trip():
    for plan in (MA52_PLAN, MA52_16F_PLAN, WindowPlan(clip_len=5, stride=3, hop_s=0.25, cover_tail=False)):
        assert WindowPlan.from_dict(plan.to_dict()) == plan
    with pytest.raises(ValueError, match="unknown window plan field"):
        WindowPlan.from_dict({**MA52_PLAN.to_dict(), "fps": 30})
