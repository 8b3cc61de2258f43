"""Benchmark the simulator's rendering (ratios measured side by side in one run; not a test).

For each frame size, on the same 10-second participant recording (idle + planted events):

- ``blank``: encode N blank frames with the same writer (OpenCV ``mp4v``): the floor of writing a video;
- ``encode``: encode the N frames of the recording, pre-rendered and held in memory: the cost of
  encoding this content alone;
- ``render``: controls -> skeleton -> drawing -> lighting/noise, without encoding;
- ``full``: what ``python -m simulator cohort`` does per participant (render + encode).

Each variant runs ``--repeats`` times, alternating, and the fastest run counts (other processes on a
shared machine then slow all variants alike). Ratios: ``full / blank`` and ``full / encode`` throughput
(1.0 = rendering is free), and render-only frames/s.

Usage::

    python bench/bench_synthetic.py [--seconds 10] [--sizes 360x432,640x480,1280x720] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from simulator.recording import CohortConfig, cohort_specs, render_participant  # noqa: E402
from simulator.render import write_mp4  # noqa: E402


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_size(size: tuple[int, int], seconds: float, repeats: int, work: Path) -> dict:
    config = CohortConfig(groups={"ASD": 1}, seconds=seconds, size=size, seed=1)
    spec = cohort_specs(config)[0]
    frames = list(render_participant(config, spec))
    n = len(frames)
    blank = np.zeros((size[1], size[0], 3), np.uint8)
    variants = {
        "blank": lambda: write_mp4(work / "blank.mp4", (blank for _ in range(n)), fps=config.fps, size=size),
        "encode": lambda: write_mp4(work / "encode.mp4", iter(frames), fps=config.fps, size=size),
        "render": lambda: sum(1 for _ in render_participant(config, spec)),
        "full": lambda: write_mp4(work / "full.mp4", render_participant(config, spec), fps=config.fps, size=size),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(repeats):
        for k, fn in variants.items():
            times[k].append(_timed(fn))
    return {"frames": n, "events": len(spec.events), **{k: n / min(v) for k, v in times.items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="recording length per size")
    ap.add_argument("--sizes", default="360x432,640x480,1280x720", help="comma-separated WIDTHxHEIGHT")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    print(f"simulator rendering, {args.seconds:g} s recordings at 30 fps, fastest of {args.repeats} alternating runs")
    print(f"{'size':>10} {'frames':>6} {'blank':>8} {'encode':>8} {'render':>8} {'full':>8}   full/blank  full/encode  "
          f"(frames/s)")
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            r = bench_size(size, args.seconds, args.repeats, Path(tmp))
            print(f"{size[0]:>5}x{size[1]:<4} {r['frames']:>6} {r['blank']:8.0f} {r['encode']:8.0f} {r['render']:8.0f} "
                  f"{r['full']:8.0f}   {r['full'] / r['blank']:10.2f}  {r['full'] / r['encode']:11.2f}")
    print("full = render + encode as the cohort CLI does it; real time is 30 frames/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
