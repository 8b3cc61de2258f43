"""Benchmark: the read-out of a cohort of 300 participants x 3 minutes of windows (MA-52 geometry, 30 fps).

Writes synthetic windows files (52 classes, a window of 64 frames every 16 frames, about 8 % of windows
unclassified, probabilities drawn so that some actions dominate stretches of time) and a manifest into
a temporary folder, then times

1. the whole stage, ``python -m pipeline.aggregate`` run in-process (read 300 windows files and sidecars,
   read out, pool, write 300 segments files, detections.csv, cohort/bouts/exclusions): wall time and
   windows rows / s;
2. the per-video read-out core (:func:`pipeline.readout.read_out_video`) side by side with a bare
   frame-by-frame loop (for each frame, average the probabilities of the windows covering it, then
   threshold) on the same few videos: the speed-up ratio.

Not a test: nothing is asserted.

    .venv/bin/python bench/bench_aggregate.py [--participants 300] [--minutes 3] [--naive-videos 3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.preprocessing import ClassList  # noqa: E402
from model.windows import MA52_PLAN  # noqa: E402
from pipeline.aggregate import main as aggregate_main  # noqa: E402
from pipeline.artifacts import write_artifact  # noqa: E402
from pipeline.readout import ReadoutConfig, read_out_video  # noqa: E402

FPS = 30.0


def synthetic_probs(rng: np.random.Generator, n_windows: int, n_classes: int) -> np.ndarray:
    """Dirichlet noise plus a dominant action that changes every few windows."""
    probs = rng.dirichlet(np.full(n_classes, 0.2), n_windows)
    dominant = np.repeat(rng.integers(0, n_classes, n_windows // 4 + 1), 4)[:n_windows]
    boost = rng.random(n_windows) < 0.6
    probs[boost] *= 0.3
    probs[boost, dominant[boost]] += 0.7
    return probs.astype(np.float32)


def write_cohort(root: Path, participants: int, minutes: float, seed: int = 0) -> tuple[Path, int]:
    rng = np.random.default_rng(seed)
    classes = ClassList.ma52()
    frames = int(minutes * 60 * FPS)
    wins = MA52_PLAN.windows(frames, FPS)
    start = np.array([w.start_frame for w in wins])
    end = np.array([w.end_frame for w in wins])
    rows = []
    for p in range(participants):
        vid = f"p{p:04d}"
        probs = synthetic_probs(rng, len(wins), len(classes))
        null = rng.random(len(wins)) < 0.08
        df = pd.DataFrame({
            "video_id": vid, "window": np.arange(len(wins)), "start_frame": start, "end_frame": end,
            "start_s": start / FPS, "end_s": end / FPS, "valid_fraction": np.where(null, 0.2, 1.0),
            "probs": [None if n else p_ for n, p_ in zip(null, probs)], "model_id": "bench", "config_id": "c",
        })
        write_artifact(df, root / "windows" / f"{vid}.parquet", contract="windows", stage="recognize",
                       extra={"video": {"fps": FPS, "frame_count": frames}, "classes": classes.to_dict()})
        rows.append({"participant_id": f"{p:04d}", "group": ("ASD", "PSY", "TDC")[p % 3], "video": f"{vid}.mp4",
                     "age": int(rng.integers(5, 53)), "sex": "FM"[p % 2]})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root / "manifest.csv", len(wins)


def naive_readout(start, end, probs, classified, frames, tau):
    """Bare baseline: per frame, the mean over the covering windows, then the threshold rule."""
    labels = np.full(frames, -1)
    for f in range(frames):
        cover = [w for w in range(len(start)) if classified[w] and start[w] <= f < end[w]]
        if cover:
            score = probs[cover].mean(axis=0)
            k = int(np.argmax(score))
            if score[k] >= tau:
                labels[f] = k
    return labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--participants", type=int, default=300)
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--naive-videos", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        manifest, per_video = write_cohort(root, args.participants, args.minutes)
        n_rows = per_video * args.participants
        print(f"cohort: {args.participants} participants x {args.minutes:g} min at {FPS:g} fps = {n_rows:,} windows "
              f"x 52 classes (written in {time.perf_counter() - t0:.1f} s)")

        out = io.StringIO()
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            code = aggregate_main(["--windows", str(root / "windows"), "--manifest", str(manifest),
                                   "--out", str(root / "out"), "-q"])
        wall = time.perf_counter() - t0
        cohort = pd.read_parquet(root / "out" / "cohort.parquet")
        print(f"python -m pipeline.aggregate (exit {code}): {wall:.2f} s wall, {n_rows / wall:,.0f} windows rows/s, "
              f"{args.participants / wall:.1f} participants/s; cohort {len(cohort):,} rows")

        # Where the time goes: reading + read-out vs writing (a second run into a fresh folder).
        from pipeline.aggregate import aggregate, windows_dir_of, write_outputs
        from pipeline.artifacts import package_versions
        from pipeline.manifest import read_manifest

        t0 = time.perf_counter()
        result = aggregate(read_manifest(manifest, check_videos=False), windows_dir_of(root / "windows"), ReadoutConfig())
        t_read = time.perf_counter() - t0
        t0 = time.perf_counter()
        n_written = len(write_outputs(result, root / "out2"))
        t_write = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(20):
            package_versions()
        t_versions = (time.perf_counter() - t0) / 20
        print(f"  read windows + read out + pool: {t_read:.2f} s; write {n_written} artifacts: {t_write:.2f} s "
              f"(of which sidecar package_versions() about {t_versions * 1e3:.0f} ms per artifact, "
              f"{t_versions * n_written:.1f} s in all)")

        # The read-out core vs a bare frame loop, same videos, side by side.
        import pyarrow.parquet as pq

        from pipeline.readout import window_arrays

        classes = ClassList.ma52()
        config = ReadoutConfig()
        frames = int(args.minutes * 60 * FPS)
        vids = sorted((root / "windows").glob("*.parquet"))[: args.naive_videos]
        arrays = [window_arrays(pq.read_table(v), len(classes)) for v in vids]
        t0 = time.perf_counter()
        for _ in range(5):
            ours = [read_out_video(a, video_id="v", fps=FPS, classes=classes, config=config, num_frames=frames)
                    for a in arrays]
        t_ours = (time.perf_counter() - t0) / 5
        t0 = time.perf_counter()
        naive = [naive_readout(a.start_frame, a.end_frame, np.nan_to_num(a.probs), a.classified, frames, config.threshold)
                 for a in arrays]
        t_naive = time.perf_counter() - t0
        same = all(np.array_equal(np.where(r.active.any(1), np.argmax(r.active, 1), -1), n) for r, n in zip(ours, naive))
        print(f"read-out core on {len(vids)} videos: ours {t_ours * 1e3:.1f} ms, frame-by-frame loop "
              f"{t_naive * 1e3:.0f} ms -> {t_naive / t_ours:.0f}x faster; labels identical: {same}")


if __name__ == "__main__":
    main()
