"""Read-out functions: per-frame scores, rules, segments, percent time -- against independent loops and invariants."""

import numpy as np
import pytest

from model.preprocessing import ClassList
from pipeline.frame_labels import SINGLE_LABEL_RULES, label_frames
from pipeline.frame_scores import frame_scores
from pipeline.readout import ReadoutConfig, WindowArrays, class_thresholds, pooled_percent_time, read_out_video
from pipeline.segments import duration_frames, label_segments, merge_and_drop, runs

CLASSES = ClassList.from_actions(["nodding", "shaking legs", "touching nose", "shrugging"])
WITH_BG = ClassList.from_actions(["nodding", "shaking legs", "touching nose", "shrugging"], background=True)


def random_windows(rng, *, num_frames=200, num_classes=4, span=16, hop=5, p_null=0.15, concentration=0.5):
    starts = np.arange(0, num_frames - span + 1, hop)
    ends = starts + span
    probs = rng.dirichlet(np.full(num_classes, concentration), starts.size)
    probs[rng.random(starts.size) < p_null] = np.nan
    return WindowArrays(starts, ends, probs, ~np.isnan(probs).any(axis=1))


def naive_frame_scores(start, end, probs, classified, num_frames):
    """Frame-by-frame loop over windows: the definition, written plainly."""
    C = probs.shape[1]
    scores = np.zeros((num_frames, C))
    valid = np.zeros(num_frames, bool)
    for f in range(num_frames):
        cover = [w for w in range(len(start)) if classified[w] and start[w] <= f < end[w]]
        if cover:
            valid[f] = True
            scores[f] = np.mean([probs[w] for w in cover], axis=0)
    return scores, valid


def naive_merge_and_drop(labels, min_frames, merge_frames):
    """Reference: explicit scanning, first filling gaps, then dropping short runs."""
    lab = list(labels)
    n = len(lab)
    i = 0
    while i < n:
        if lab[i] == -1:
            j = i
            while j < n and lab[j] == -1:
                j += 1
            if i > 0 and j < n and lab[i - 1] == lab[j] and lab[j] >= 0 and j - i <= merge_frames:
                for k in range(i, j):
                    lab[k] = lab[j]
            i = j
        else:
            i += 1
    out = list(lab)
    i = 0
    while i < n:
        j = i
        while j < n and lab[j] == lab[i]:
            j += 1
        if lab[i] >= 0 and j - i < min_frames:
            for k in range(i, j):
                out[k] = -1
        i = j
    return np.array(out)


# ------------------------------------------------------------------ per-frame scores
@pytest.mark.parametrize("seed", range(5))
def test_frame_scores_match_the_frame_by_frame_definition(seed):
    rng = np.random.default_rng(seed)
    n = 150
    starts = np.sort(rng.integers(0, n - 5, 30))
    ends = np.minimum(starts + rng.integers(1, 40, 30), n + 10)  # some spans past the end: clipped
    probs = rng.dirichlet(np.ones(5), 30)
    classified = rng.random(30) > 0.2
    fs = frame_scores(starts, ends, probs, classified, num_frames=n)
    ref_scores, ref_valid = naive_frame_scores(starts, np.minimum(ends, n), probs, classified, n)
    np.testing.assert_array_equal(fs.valid, ref_valid)
    np.testing.assert_allclose(fs.scores, ref_scores, atol=1e-11)


def test_frame_scores_exact_at_threshold_and_zero_outside():
    fs = frame_scores([0, 3], [6, 9], np.array([[0.7, 0.3], [0.3, 0.7]]), num_frames=12)
    assert fs.scores[3:6, 0].tolist() == [0.5, 0.5, 0.5]  # mean of 0.7 and 0.3, exactly
    assert fs.valid.tolist() == [True] * 9 + [False] * 3
    assert fs.coverage.tolist() == [1, 1, 1, 2, 2, 2, 1, 1, 1, 0, 0, 0]
    assert (fs.scores[9:] == 0).all()


def test_frame_scores_of_no_classified_window_are_all_invalid():
    fs = frame_scores([0, 4], [8, 12], np.full((2, 3), np.nan), num_frames=12)
    assert not fs.valid.any() and fs.scores.shape == (12, 3)


def naive_interpolated_scores(start, end, probs, classified, num_frames):
    """Definition of method "interpolate", frame by frame: the two classified window centres around f."""
    keep = [w for w in range(len(start)) if classified[w] and min(end[w], num_frames) > start[w]]
    centres = {}
    for w in keep:
        centres.setdefault((start[w] + min(end[w], num_frames) - 1) / 2, []).append(probs[w])
    c = sorted(centres)
    p = [np.mean(centres[x], axis=0) for x in c]
    _, valid = naive_frame_scores(start, np.minimum(end, num_frames), probs, classified, num_frames)
    scores = np.zeros((num_frames, probs.shape[1]))
    for f in range(num_frames):
        if not valid[f]:
            continue
        if f <= c[0]:
            scores[f] = p[0]
        elif f >= c[-1]:
            scores[f] = p[-1]
        else:
            k = next(i for i in range(len(c) - 1) if c[i] <= f <= c[i + 1])
            w = (f - c[k]) / (c[k + 1] - c[k])
            scores[f] = (1 - w) * p[k] + w * p[k + 1]
    return scores, valid


@pytest.mark.parametrize("seed", range(5))
def test_interpolated_frame_scores_match_the_frame_by_frame_definition(seed):
    rng = np.random.default_rng(100 + seed)
    n = 150
    starts = np.sort(rng.integers(0, n - 5, 30))
    ends = np.minimum(starts + rng.integers(1, 40, 30), n + 10)
    starts[3] = starts[4]; ends[3] = ends[4]  # noqa: E702  two windows sharing a centre are averaged
    probs = rng.dirichlet(np.ones(5), 30)
    classified = rng.random(30) > 0.2
    classified[[3, 4]] = True
    fs = frame_scores(starts, ends, probs, classified, num_frames=n, method="interpolate")
    ref_scores, ref_valid = naive_interpolated_scores(starts, ends, probs, classified, n)
    np.testing.assert_array_equal(fs.valid, ref_valid)
    np.testing.assert_allclose(fs.scores, ref_scores, atol=1e-11)
    np.testing.assert_allclose(fs.scores[fs.valid].sum(axis=1), 1.0)  # convex combinations of softmax rows
    mean = frame_scores(starts, ends, probs, classified, num_frames=n)
    np.testing.assert_array_equal(mean.coverage, fs.coverage)


def test_interpolation_finds_a_short_event_that_the_window_mean_flattens():
    """Windows of span 48, hop 8 over an event of frames [100, 130) (1 s at 30 fps), each window's
    probability = 1 when its centre lies inside the event (what a model trained on centre-labelled
    windows should output). Interpolation between centres keeps the event's full height and puts both
    boundaries within 2 frames; the mean over the 6 covering windows peaks at 4/6, so a class threshold
    of 0.7 loses the event altogether, and at 0.5 it is spread by 4-6 frames at each end."""
    starts = np.arange(0, 240 - 48 + 1, 8)
    ends = starts + 48
    centre = (starts + ends - 1) / 2
    on = (centre >= 100) & (centre < 130)
    probs = np.stack([on, ~on], axis=1).astype(float)
    interp = frame_scores(starts, ends, probs, num_frames=240, method="interpolate")
    mean = frame_scores(starts, ends, probs, num_frames=240)
    above = np.flatnonzero(interp.scores[:, 0] >= 0.5)
    assert abs(above[0] - 100) <= 2 and abs(above[-1] + 1 - 130) <= 2
    assert interp.scores[:, 0].max() == 1.0 and (interp.scores[:, 0] >= 0.7).sum() >= 20
    assert mean.scores[:, 0].max() == pytest.approx(4 / 6) and not (mean.scores[:, 0] >= 0.7).any()
    spread = np.flatnonzero(mean.scores[:, 0] >= 0.5)
    assert 100 - spread[0] >= 4 and spread[-1] + 1 - 130 >= 4


def test_readout_config_round_trips_through_its_dict():
    cfg = ReadoutConfig(rule="per-class", thresholds={"nodding": 0.7, "shaking legs": 0.35}, min_duration_s=0.2,
                        merge_gap_s=0.1, scores="interpolate")
    assert ReadoutConfig.from_dict(cfg.to_dict()) == cfg
    assert ReadoutConfig.from_dict({"rule": "threshold"}).scores == "mean"  # records from before the option
    with pytest.raises(ValueError, match="unknown read-out setting"):
        ReadoutConfig.from_dict({**cfg.to_dict(), "smoothing": 3})


def test_unknown_frame_score_method_is_refused():
    with pytest.raises(ValueError, match="frame-score method"):
        frame_scores([0], [8], np.ones((1, 2)) / 2, method="median")
    with pytest.raises(ValueError, match="frame-score method"):
        ReadoutConfig(scores="median")


# ------------------------------------------------------------------ rules
def test_rules_on_hand_made_scores():
    s = np.array([[0.45, 0.35, 0.20, 0.0], [0.6, 0.2, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25]])
    valid = np.array([True, True, False])
    first = lambda a: [np.flatnonzero(r).tolist() for r in a]  # noqa: E731
    assert first(label_frames(s, valid, rule="threshold")) == [[], [0], []]
    assert first(label_frames(s, valid, rule="top1")) == [[0], [0], []]
    assert first(label_frames(s, valid, rule="per-class", thresholds=np.array([0.5, 0.3, 0.5, 0.5]))) == [[1], [0], []]
    assert first(label_frames(s, valid, rule="multi-label", thresholds=0.3)) == [[0, 1], [0], []]
    bg = label_frames(s, valid, rule="background", background_index=0)  # column 0 as background
    assert first(bg) == [[], [], []]
    with pytest.raises(ValueError, match="background"):
        label_frames(s, valid, rule="background")


@pytest.mark.parametrize("seed", range(3))
def test_threshold_rules_match_a_per_frame_loop(seed):
    rng = np.random.default_rng(seed)
    s = rng.dirichlet(np.full(5, 0.4), 300)
    valid = rng.random(300) > 0.1
    for thr in (np.full(5, 0.35), rng.uniform(0.1, 0.6, 5)):
        for bg in (None, 4):
            got = label_frames(s, valid, rule="per-class", thresholds=thr, background_index=bg)
            for f in range(300):
                passing = [c for c in range(5) if s[f, c] >= thr[c] and c != bg]
                expect = [max(passing, key=lambda c: (s[f, c], -c))] if valid[f] and passing else []
                assert np.flatnonzero(got[f]).tolist() == expect


@pytest.mark.parametrize("seed", range(3))
def test_multi_label_at_tau_half_equals_threshold_rule(seed):
    rng = np.random.default_rng(seed)
    s = rng.dirichlet(np.full(6, 0.3), 400)
    valid = rng.random(400) > 0.1
    for tau in (0.5, 0.7):
        np.testing.assert_array_equal(
            label_frames(s, valid, rule="multi-label", thresholds=tau), label_frames(s, valid, rule="threshold", thresholds=tau)
        )


def test_per_class_thresholds_unknown_name_rejected():
    with pytest.raises(ValueError, match="'waving'"):
        class_thresholds(CLASSES, ReadoutConfig(rule="per-class", thresholds={"waving": 0.3}))
    with pytest.raises(ValueError, match="needs per-class thresholds"):
        ReadoutConfig(rule="per-class")
    with pytest.raises(ValueError, match="in \\(0, 1\\]"):
        ReadoutConfig(threshold=0.0)
    with pytest.raises(ValueError, match="unknown read-out rule"):
        ReadoutConfig(rule="argmax")


# ------------------------------------------------------------------ segments
@pytest.mark.parametrize("seed", range(8))
def test_merge_and_drop_matches_reference_scan(seed):
    rng = np.random.default_rng(seed)
    labels = rng.choice([-1, -1, 0, 1, 2], size=300, p=[0.3, 0.2, 0.2, 0.2, 0.1])
    labels = np.repeat(labels, rng.integers(1, 5, labels.size))  # runs of varied length
    for min_frames, merge_frames in [(0, 0), (3, 0), (0, 2), (4, 3), (6, 6)]:
        np.testing.assert_array_equal(
            merge_and_drop(labels, min_frames=min_frames, merge_frames=merge_frames),
            naive_merge_and_drop(labels, min_frames, merge_frames),
        )


def test_runs_and_duration_frames():
    val, start, end = runs(np.array([2, 2, -1, 2, 5, 5]))
    assert val.tolist() == [2, -1, 2, 5] and start.tolist() == [0, 2, 3, 4] and end.tolist() == [2, 3, 4, 6]
    assert duration_frames(0.3, 0.1, 10.0) == (3, 1)  # 0.3 * 10 = 3.0000000000000004 is still 3 frames
    assert duration_frames(0.5, 0.5, 30.0) == (15, 15)


def test_single_label_segments_never_overlap_and_gap_with_other_action_not_merged():
    active = np.zeros((10, 3), bool)
    active[[0, 1, 2, 5, 6], 0] = True
    active[[3], 1] = True  # another action inside the gap: no merge
    cls, st, en = label_segments(active, single_label=True, merge_frames=5)
    assert list(zip(cls.tolist(), st.tolist(), en.tolist())) == [(0, 0, 3), (1, 3, 4), (0, 5, 7)]


# ------------------------------------------------------------------ percent time properties
@pytest.mark.parametrize("rule", SINGLE_LABEL_RULES)
@pytest.mark.parametrize("seed", range(4))
def test_single_label_percent_sums_to_100_minus_no_action_share(rule, seed):
    rng = np.random.default_rng(seed)
    classes = WITH_BG if rule == "background" else CLASSES
    w = random_windows(rng, num_classes=len(classes))
    cfg = ReadoutConfig(rule=rule, threshold=0.4, thresholds={"nodding": 0.3} if rule == "per-class" else {},
                        min_duration_s=float(rng.choice([0, 0.2, 0.5])), merge_gap_s=float(rng.choice([0, 0.2, 0.4])))
    r = read_out_video(w, video_id="v", fps=10.0, classes=classes, config=cfg)
    pct = r.percent_time()
    in_segment = r.active.any(axis=1) & r.valid
    no_action_share = 100.0 * (r.valid & ~in_segment).sum() / r.valid.sum()
    assert pct.sum() <= 100.0 + 1e-9
    assert pct.sum() == pytest.approx(100.0 - no_action_share, abs=1e-9)
    assert (r.active.sum(axis=1) <= 1).all()  # final segments of different actions never overlap


@pytest.mark.parametrize("rule", ["threshold", "top1", "multi-label"])
@pytest.mark.parametrize("seed", range(3))
def test_doubling_the_video_leaves_percent_time_unchanged(rule, seed):
    rng = np.random.default_rng(seed)
    n = 200
    w = random_windows(rng, num_frames=n)
    twice = WindowArrays(
        np.concatenate([w.start_frame, w.start_frame + n]), np.concatenate([w.end_frame, w.end_frame + n]),
        np.concatenate([w.probs, w.probs]), np.concatenate([w.classified, w.classified]),
    )
    cfg = ReadoutConfig(rule=rule, threshold=0.4)
    once = read_out_video(w, video_id="v", fps=10.0, classes=CLASSES, config=cfg, num_frames=n)
    both = read_out_video(twice, video_id="v", fps=10.0, classes=CLASSES, config=cfg, num_frames=2 * n)
    np.testing.assert_allclose(both.percent_time(), once.percent_time(), atol=1e-12)
    assert both.valid_frames == 2 * once.valid_frames


def test_doubling_with_merge_and_min_duration_when_ends_are_unobserved():
    # Uncovered frames at both ends, longer than the merge gap, keep the two copies apart.
    rng = np.random.default_rng(11)
    n = 240
    w = random_windows(rng, num_frames=200)
    twice = WindowArrays(
        np.concatenate([w.start_frame + 20, w.start_frame + 20 + n]), np.concatenate([w.end_frame + 20, w.end_frame + 20 + n]),
        np.concatenate([w.probs, w.probs]), np.concatenate([w.classified, w.classified]),
    )
    single = WindowArrays(w.start_frame + 20, w.end_frame + 20, w.probs, w.classified)
    cfg = ReadoutConfig(rule="threshold", threshold=0.4, min_duration_s=0.5, merge_gap_s=0.8)
    a = read_out_video(single, video_id="v", fps=10.0, classes=CLASSES, config=cfg, num_frames=n)
    b = read_out_video(twice, video_id="v", fps=10.0, classes=CLASSES, config=cfg, num_frames=2 * n)
    np.testing.assert_allclose(b.percent_time(), a.percent_time(), atol=1e-12)
    assert b.seg_class.size == 2 * a.seg_class.size


def test_top1_with_one_dominant_class_gives_100_percent():
    rng = np.random.default_rng(3)
    w = random_windows(rng, p_null=0.3)
    probs = rng.dirichlet(np.ones(4), w.probs.shape[0]) * 0.3
    probs[:, 2] += 0.7  # touching nose always on top
    w = WindowArrays(w.start_frame, w.end_frame, np.where(w.classified[:, None], probs, np.nan), w.classified)
    r = read_out_video(w, video_id="v", fps=30.0, classes=CLASSES, config=ReadoutConfig(rule="top1"))
    assert r.percent_time().tolist() == [0.0, 0.0, 100.0, 0.0]


def test_segment_scores_are_mean_frame_scores_and_seconds_follow_fps():
    rng = np.random.default_rng(5)
    w = random_windows(rng)
    r = read_out_video(w, video_id="v", fps=25.0, classes=CLASSES, config=ReadoutConfig(rule="top1"))
    fs = frame_scores(w.start_frame, w.end_frame, w.probs, w.classified)
    for c, s, e, sc in zip(r.seg_class, r.seg_start, r.seg_end, r.seg_score):
        frames = np.arange(s, e)[fs.valid[s:e]]
        assert sc == pytest.approx(fs.scores[frames, c].mean(), abs=1e-9)
    seg = r.segments_frame(CLASSES)
    np.testing.assert_allclose(seg["start_s"], r.seg_start / 25.0)
    assert seg["action_id"].tolist() == [CLASSES.taxonomy_ids[c] for c in r.seg_class]


def test_pooling_weights_videos_by_valid_frames():
    cfg = ReadoutConfig(rule="top1")
    long = read_out_video(WindowArrays.from_lists([0], [90], [[1.0, 0, 0, 0]]), video_id="a", fps=30.0,
                          classes=CLASSES, config=cfg)
    short = read_out_video(WindowArrays.from_lists([0], [10], [[0, 1.0, 0, 0]]), video_id="b", fps=10.0,
                           classes=CLASSES, config=cfg)
    pct, observed = pooled_percent_time([long, short])
    assert pct.tolist() == [90.0, 10.0, 0.0, 0.0]
    assert observed == pytest.approx(3.0 + 1.0)
