"""Video access (pipeline.video): probe, frame selection, rotation, odd sizes and broken files."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

import tracemalloc

from pipeline.video import TruncatedVideo, VideoError, fit_size, iter_frames, probe


def write_video(path: Path, frames: list[np.ndarray], fps: float = 30.0, fourcc: str = "mp4v") -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def numbered_frames(n: int, w: int = 160, h: int = 120) -> list[np.ndarray]:
    """Frames whose mean brightness encodes their index (robust to lossy coding)."""
    return [np.full((h, w, 3), 10 + (12 * i) % 240, np.uint8) for i in range(n)]


def set_rotation(path: Path, degrees: int) -> Path:
    """Patch the MP4 track header's display matrix so players rotate the video by ``degrees`` clockwise."""
    data = bytearray(path.read_bytes())
    i = data.find(b"tkhd")
    assert i > 0 and data[i + 4] == 0, "expects a version-0 tkhd box"
    m = i + 4 + 4 + 4 * 5 + 8 + 8  # ver/flags, 5 x 32-bit fields, reserved, layer/group/volume/reserved
    one = 1 << 16
    cos, sin = {0: (1, 0), 90: (0, 1), 180: (-1, 0), 270: (0, -1)}[degrees]
    data[m : m + 36] = struct.pack(">9i", cos * one, sin * one, 0, -sin * one, cos * one, 0, 0, 0, 1 << 30)
    path.write_bytes(bytes(data))
    return path


def test_probe_synthetic(tmp_path):
    p = write_video(tmp_path / "a.mp4", numbered_frames(20), fps=25.0)
    info = probe(p)
    assert (info.width, info.height) == (160, 120)
    assert info.fps == pytest.approx(25.0)
    assert info.frame_count == 20
    assert info.duration_s == pytest.approx(20 / 25)
    assert info.rotation == 0
    assert info.size == (160, 120)
    assert info.to_dict()["frame_count"] == 20


def test_iter_all_and_selected_frames(tmp_path):
    p = write_video(tmp_path / "a.mp4", numbered_frames(20), fps=25.0)
    allf = list(iter_frames(p))
    assert [i for i, _, _ in allf] == list(range(20))
    times = np.array([t for _, t, _ in allf])
    np.testing.assert_allclose(times, np.arange(20) / 25.0, atol=1e-3)
    sel = list(iter_frames(p, [15, 3, 3, 7, 100]))  # unordered, duplicate, past the end
    assert [i for i, _, _ in sel] == [3, 7, 15]
    for i, t, img in sel:
        assert img.shape == (120, 160, 3)
        assert abs(float(img.mean()) - (10 + (12 * i) % 240)) < 6  # the frame really is frame i
        assert t == pytest.approx(i / 25.0, abs=1e-3)
    assert list(iter_frames(p, [])) == []


def test_odd_size(tmp_path):
    # Not a multiple of 16 (macroblocks) nor of 4; the decoded size is what counts.
    p = write_video(tmp_path / "odd.avi", numbered_frames(5, w=202, h=98), fourcc="MJPG")
    info = probe(p)
    img = next(iter_frames(p))[2]
    assert (info.width, info.height) == (img.shape[1], img.shape[0])
    assert info.frame_count == 5


def test_rotation_metadata_is_applied(tmp_path):
    frame = np.zeros((120, 160, 3), np.uint8)
    frame[:30, :40] = 255  # a white block in the stored top-left corner
    p = set_rotation(write_video(tmp_path / "r.mp4", [frame] * 5), 90)
    info = probe(p)
    assert info.rotation == 90
    assert (info.width, info.height) == (120, 160)  # displayed (portrait) size
    img = next(iter_frames(p))[2]
    assert img.shape == (160, 120, 3)
    ys, xs = np.nonzero(img[..., 0] > 128)
    # 90 degrees clockwise: the stored top-left block is displayed top-right
    assert ys.max() < 50 and xs.min() > 120 - 50


def test_zero_length_file(tmp_path):
    p = tmp_path / "empty.mp4"
    p.write_bytes(b"")
    with pytest.raises(VideoError, match="empty.mp4: empty file"):
        probe(p)


def test_missing_and_folder(tmp_path):
    with pytest.raises(VideoError, match="nope.mp4: file not found"):
        probe(tmp_path / "nope.mp4")
    with pytest.raises(VideoError, match="is a folder"):
        probe(tmp_path)


def test_corrupt_file(tmp_path):
    p = tmp_path / "garbage.mp4"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    with pytest.raises(VideoError, match="garbage.mp4"):
        probe(p)


def test_truncated_mp4(tmp_path):
    good = write_video(tmp_path / "good.mp4", numbered_frames(30))
    bad = tmp_path / "truncated.mp4"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # loses the index at the end
    with pytest.raises(VideoError, match="truncated.mp4"):
        probe(bad)
    with pytest.raises(VideoError, match="truncated.mp4"):
        list(iter_frames(bad))


def test_truncated_avi_yields_the_readable_part_then_raises(tmp_path):
    # AVI keeps its frames readable without the trailing index: the readable frames come out, then
    # the shortfall against the header's frame count is reported.
    good = write_video(tmp_path / "good.avi", numbered_frames(30), fourcc="MJPG")
    bad = tmp_path / "cut.avi"
    bad.write_bytes(good.read_bytes()[: int(good.stat().st_size * 0.6)])
    got = [i for i, _, _ in iter_frames(bad, check_complete=False)]
    assert 0 < len(got) < 30
    assert got == list(range(len(got)))
    seen = []
    with pytest.raises(TruncatedVideo, match=f"cut.avi: truncated: only {len(got)} of the 30 frames") as exc:
        for i, _, _ in iter_frames(bad):
            seen.append(i)
    assert seen == got and (exc.value.decoded, exc.value.expected) == (len(got), 30)


def move_index_to_front(path: Path) -> Path:
    """Rewrite an MP4 as 'fast start' (moov before mdat, as streaming encoders write it).

    Top-level boxes are reordered to ftyp, moov, the rest; the chunk offsets (stco) grow by moov's size.
    """
    data = path.read_bytes()
    boxes, pos = [], 0
    while pos < len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        boxes.append((kind, data[pos : pos + size]))
        pos += size
    moov = bytearray(next(b for k, b in boxes if k == b"moov"))
    i = moov.find(b"stco")
    assert i > 0 and moov.find(b"co64") < 0
    (count,) = struct.unpack(">I", moov[i + 8 : i + 12])
    for k in range(count):
        q = i + 12 + 4 * k
        (off,) = struct.unpack(">I", moov[q : q + 4])
        moov[q : q + 4] = struct.pack(">I", off + len(moov))
    front = [b for k, b in boxes if k == b"ftyp"]
    assert boxes[0][0] == b"ftyp"
    rest = [b for k, b in boxes if k not in (b"ftyp", b"moov")]
    path.write_bytes(b"".join(front + [bytes(moov)] + rest))
    return path


def test_cut_off_mp4_with_its_index_at_the_front_is_truncated(tmp_path):
    """Audit 2: such a file opens, states all its frames, and used to yield about half of them silently."""
    good = move_index_to_front(write_video(tmp_path / "fast.mp4", numbered_frames(30)))
    assert [i for i, _, _ in iter_frames(good)] == list(range(30))  # the rewrite itself is a valid MP4
    bad = tmp_path / "cut.mp4"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    info = probe(bad)
    assert info.frame_count == 30  # the container still states all of them
    readable = [i for i, _, _ in iter_frames(bad, check_complete=False)]
    assert 0 < len(readable) < 30
    with pytest.raises(TruncatedVideo, match="cut.mp4: truncated"):
        list(iter_frames(bad))
    # also when only early frames are wanted: the decoder reads on to the end to check the count
    with pytest.raises(TruncatedVideo):
        list(iter_frames(bad, [0, 1], info=info))
    with pytest.raises(TruncatedVideo):
        list(iter_frames(bad, prefetch=3))


def test_size_crop_and_colour_at_decode_time(tmp_path):
    frames = [np.random.default_rng(i).integers(0, 256, (120, 160, 3), dtype=np.uint8) for i in range(4)]
    p = write_video(tmp_path / "lossless.avi", frames, fourcc="FFV1")
    full = [img for _, _, img in iter_frames(p)]
    np.testing.assert_array_equal(full[2], frames[2])
    got = list(iter_frames(p, [1, 3], size=(40, 30), color="rgb", crop=(20, 10, 80, 60)))
    assert [g.frame_index for g in got] == [1, 3]
    for g in got:
        crop = full[g.frame_index][10:70, 20:100]
        want = cv2.cvtColor(cv2.resize(crop, (40, 30), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
        assert g.pixels.shape == (30, 40, 3) and g.pixels.flags.c_contiguous
        np.testing.assert_array_equal(g.pixels, want)
    cropped = next(iter_frames(p, crop=(20, 10, 80, 60))).pixels
    assert cropped.flags.c_contiguous and cropped.shape == (60, 80, 3)
    assert fit_size((1920, 1080), short_side=256) == (455, 256)
    assert fit_size((1080, 1296), short_side=256) == (256, 307)
    with pytest.raises(ValueError, match="color"):
        iter_frames(p, color="yuv")


def test_prefetch_yields_the_same_frames_and_stops_its_thread(tmp_path):
    import threading

    p = write_video(tmp_path / "a.mp4", numbered_frames(25))
    plain = list(iter_frames(p, [0, 5, 6, 24]))
    ahead = list(iter_frames(p, [0, 5, 6, 24], prefetch=2))
    assert [(f.frame_index, f.time_s) for f in ahead] == [(f.frame_index, f.time_s) for f in plain]
    for a, b in zip(ahead, plain):
        np.testing.assert_array_equal(a.pixels, b.pixels)
    gen = iter_frames(p, prefetch=2)
    next(gen)
    gen.close()  # a consumer stopping early must not leave the decoding thread behind
    assert not [t for t in threading.enumerate() if t.name == "video-decode"]
    with iter_frames(p, prefetch=2):  # decoding starts at once; leaving the block without reading stops it
        pass
    assert not [t for t in threading.enumerate() if t.name == "video-decode"]


def test_peak_memory_does_not_grow_with_the_length_of_the_video(tmp_path):
    frame_bytes = 240 * 320 * 3
    peaks = {}
    for n in (20, 200):
        p = write_video(tmp_path / f"v{n}.mp4", numbered_frames(n, w=320, h=240))
        for prefetch in (0, 4):
            tracemalloc.start()
            try:
                count = sum(1 for _ in iter_frames(p, prefetch=prefetch))
                peaks[n, prefetch] = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            assert count == n
    for (n, prefetch), peak in peaks.items():
        # the frame in hand, the decoder's, the queued ones: a bound that does not depend on n
        assert peak < (prefetch + 4) * frame_bytes, (n, prefetch, peak / frame_bytes)


def make_variable_rate(path: Path, deltas: list[tuple[int, int]]) -> Path:
    """Rewrite the MP4 sample-timing table (stts) as ``[(sample_count, sample_delta), ...]``.

    The file written by OpenCV keeps its index (moov) after the media data, so growing the index only
    changes the sizes of the boxes that contain stts, not the media offsets.
    """
    data = bytearray(path.read_bytes())
    i = data.find(b"stts")
    start = i - 4
    old_size = struct.unpack(">I", data[start:i])[0]
    assert data.find(b"mdat") < start, "expects the index after the media data"
    body = struct.pack(">I", 0) + struct.pack(">I", len(deltas)) + b"".join(struct.pack(">II", c, d) for c, d in deltas)
    new = struct.pack(">I", 8 + len(body)) + b"stts" + body
    grow = len(new) - old_size
    for name in (b"moov", b"trak", b"mdia", b"minf", b"stbl"):
        p = data.rfind(name, 0, i) - 4
        size = struct.unpack(">I", data[p : p + 4])[0]
        data[p : p + 4] = struct.pack(">I", size + grow)
    data[start : start + old_size] = new
    # The track's, the movie's and the edit list's durations must match the new timing, or the end is cut off.
    total = sum(c * d for c, d in deltas)
    m = data.find(b"mdhd")
    old_total, timescale = struct.unpack(">I", data[m + 20 : m + 24])[0], struct.unpack(">I", data[m + 16 : m + 20])[0]
    data[m + 20 : m + 24] = struct.pack(">I", total)
    for name, offset in ((b"mvhd", 20), (b"tkhd", 24), (b"elst", 12)):  # elst: the edit list's segment
        q = data.find(name)
        if q < 0:
            continue
        q += offset
        old = struct.unpack(">I", data[q : q + 4])[0]
        data[q : q + 4] = struct.pack(">I", round(old * total / old_total))
    assert timescale > 0
    path.write_bytes(bytes(data))
    return path


def test_variable_frame_rate_uses_stream_timestamps(tmp_path):
    p = write_video(tmp_path / "vfr.mp4", numbered_frames(10), fps=30.0)
    data = p.read_bytes()
    i = data.find(b"stts")
    count, delta = struct.unpack(">II", data[i + 12 : i + 20])
    assert count == 10
    # first 5 frames at 30 fps, the last 5 at 15 fps
    make_variable_rate(p, [(5, delta), (5, 2 * delta)])
    info = probe(p)
    assert info.frame_count == 10
    assert info.fps == pytest.approx(20.0, rel=0.05)  # the average rate: 10 frames in 0.5 s
    got = list(iter_frames(p, fps=info.fps))
    assert [i for i, _, _ in got] == list(range(10))
    times = np.array([t for _, t, _ in got])
    expected = np.r_[np.arange(5) / 30, 5 / 30 + np.arange(5) * 2 / 30]
    np.testing.assert_allclose(times, expected, atol=2e-3)
    assert [i for i, _, _ in iter_frames(p, [2, 7])] == [2, 7]


@pytest.mark.parametrize(
    "name, fourcc",
    [
        ("ps.mpg", "mp4v"),  # MPEG-PS: OpenCV estimates 16 frames from duration x fps for these 20
        ("raw.mjpg", "MJPG"),  # raw MJPEG stream: OpenCV reports a huge negative count
        ("m.mkv", "MJPG"),  # Matroska: no frame count in the container
    ],
)
def test_container_without_exact_frame_count_is_counted_by_reading(tmp_path, name, fourcc):
    p = write_video(tmp_path / name, numbered_frames(20), fps=25.0, fourcc=fourcc)
    info = probe(p)
    assert info.counted and info.frame_count == 20
    assert info.fps == pytest.approx(25.0) and info.duration_s == pytest.approx(0.8)
    got = [i for i, _, _ in iter_frames(p)]
    assert got == list(range(info.frame_count))  # the count agrees with what decoding yields


def test_mp4_and_avi_counts_are_taken_from_the_container(tmp_path):
    for name, fourcc in (("a.mp4", "mp4v"), ("a.avi", "MJPG")):
        info = probe(write_video(tmp_path / name, numbered_frames(12), fourcc=fourcc))
        assert not info.counted and info.frame_count == 12, name
    forced = probe(tmp_path / "a.mp4", count_frames=True)
    assert forced.counted and forced.frame_count == 12
