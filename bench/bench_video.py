"""Benchmark video decoding (one run, ratios measured in this run; not a test).

Writes synthetic H.264 videos at 720p and 1080p (moving gradient + noise, so the encoder has real
work; written with PyAV's libx264), then decodes each one completely with

- ``opencv read``: a bare ``cv2.VideoCapture.read()`` loop (BGR),
- ``iter_frames``: :func:`pipeline.video.iter_frames` (BGR; includes the probe and the truncation
  check), and with ``prefetch=4``, ``color="rgb"``, and ``size=`` half resolution,
- ``pyav``: ``container.decode`` with ``thread_type="AUTO"`` and ``to_ndarray(format="bgr24")``,
  and the same scaled to half resolution inside ``to_ndarray`` (swscale),

and prints frames per second and each one's ratio to the bare OpenCV loop. PyAV is optional: when
``import av`` fails (it is not a project dependency), its rows and the H.264 files are replaced by
MPEG-4 Part 2 files that OpenCV writes itself. Every method runs once per round, in a rotated
order, ``--repeats`` rounds; a method's ratio is the median over rounds of (bare time / its time) in
the same round, so load from other processes on a shared machine hits both alike.

Usage::

    python bench/bench_video.py [--seconds 8] [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from pipeline.video import iter_frames, probe  # noqa: E402

try:
    import av  # noqa: E402
except ImportError:  # optional: only for the comparison
    av = None

SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}


def synthetic_frames(size: tuple[int, int], n: int, fps: float):
    w, h = size
    rng = np.random.default_rng(0)
    x = np.linspace(0, 4 * np.pi, w, dtype=np.float32)[None, :]
    y = np.linspace(0, 3 * np.pi, h, dtype=np.float32)[:, None]
    noise = rng.integers(0, 24, (h, w, 1), dtype=np.uint8)
    for i in range(n):
        t = i / fps
        base = (127 + 100 * np.sin(x + 2 * t) * np.cos(y - t)).astype(np.uint8)[..., None]
        frame = np.concatenate([base, np.roll(base, i, axis=1), 255 - base], axis=2)
        frame[h // 3 : h // 3 + h // 4, (i * 9) % w : (i * 9) % w + w // 8] = (30, 200, 90)  # a moving block
        yield frame + np.roll(noise, i, axis=0)


def write_h264(path: Path, size: tuple[int, int], n: int, fps: int) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23"}
        for frame in synthetic_frames(size, n, fps):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def write_mp4v(path: Path, size: tuple[int, int], n: int, fps: int) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for frame in synthetic_frames(size, n, fps):
        writer.write(frame)
    writer.release()
    return path


def opencv_read(path: Path) -> int:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    n = 0
    while True:
        ok, _ = cap.read()
        if not ok:
            break
        n += 1
    cap.release()
    return n


def pyav_decode(path: Path, size: tuple[int, int] | None = None) -> int:
    n = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            if size is None:
                frame.to_ndarray(format="bgr24")
            else:
                frame.to_ndarray(format="bgr24", width=size[0], height=size[1])
            n += 1
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=8.0, help="length of each synthetic video (30 fps)")
    ap.add_argument("--repeats", type=int, default=5, help="rounds (every method once per round)")
    args = ap.parse_args()
    fps = 30
    n = int(args.seconds * fps)
    print(f"cv2 {cv2.__version__}, threads {cv2.getNumThreads()}; "
          + (f"PyAV {av.__version__} (FFmpeg {av.ffmpeg_version_info})" if av and hasattr(av, "ffmpeg_version_info")
             else f"PyAV {av.__version__}" if av else "PyAV not installed"))
    with tempfile.TemporaryDirectory() as tmp:
        for label, size in SIZES.items():
            half = (size[0] // 2, size[1] // 2)
            path = Path(tmp) / f"{label}.mp4"
            t0 = time.perf_counter()
            (write_h264 if av else write_mp4v)(path, size, n, fps)
            codec = "H.264" if av else "MPEG-4 Part 2"
            info = probe(path)
            assert info.frame_count == n and info.size == size, info
            methods = {
                "opencv read (bare, BGR)": lambda: opencv_read(path),
                "iter_frames BGR": lambda: sum(1 for _ in iter_frames(path, info=info)),
                "iter_frames BGR prefetch=4": lambda: sum(1 for _ in iter_frames(path, info=info, prefetch=4)),
                "iter_frames RGB prefetch=4": lambda: sum(1 for _ in iter_frames(path, info=info, prefetch=4, color="rgb")),
                f"iter_frames size={half[0]}x{half[1]}": lambda: sum(1 for _ in iter_frames(path, info=info, size=half)),
            }
            if av:
                methods["pyav AUTO threads, BGR"] = lambda: pyav_decode(path)
                methods[f"pyav scaled in swscale {half[0]}x{half[1]}"] = lambda: pyav_decode(path, half)
            names = list(methods)
            times: dict[str, list[float]] = {k: [] for k in names}
            for r in range(args.repeats):
                order = names[r % len(names):] + names[: r % len(names)]  # rotate: no method always first
                for name in order:
                    t = time.perf_counter()
                    got = methods[name]()
                    times[name].append(time.perf_counter() - t)
                    assert got == n, (name, got)
            print(f"{label} {codec} {size[0]}x{size[1]}, {n} frames, {args.repeats} rounds "
                  f"(written and decoded in {time.perf_counter() - t0:.0f} s):")
            bare = times["opencv read (bare, BGR)"]
            for name in names:
                ratios = [b / t for b, t in zip(bare, times[name])]  # same round: same load
                print(f"  {name:36s} {n / float(np.median(times[name])):7.1f} frames/s (median)   "
                      f"ratio to bare {float(np.median(ratios)):5.2f} (median over rounds)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
