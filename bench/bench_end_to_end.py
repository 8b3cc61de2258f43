"""Benchmark: where the end-to-end time of one simulated recording goes (one run; not a test).

One participant's recording of ``--seconds`` (default 180: a 3-minute conversation) at the
simulator's default size goes through every stage by its Python entry point, as
tests/test_end_to_end.py runs them, with the shipped demo checkpoint:

- render: drawing + MP4 encoding (:func:`simulator.recording.write_participant`); also the
  bare drawing alone (:func:`simulator.recording.render_participant`, the same frames, no encoding)
  for rendering frames/s with and without the encoder;
- pose: MediaPipe on the frames the checkpoint's window plan samples (``--frames sampled``), and, side
  by side, on every frame (``--frames all``, what a plan-agnostic pose run would cost);
- recognition: :func:`pipeline.recognize.recognize_videos` (decode, crop, model, write);
- read-out: :func:`pipeline.aggregate.aggregate` + :func:`~pipeline.aggregate.write_outputs` with
  :func:`recipes.demo_model.demo_readout`.

Printed: per stage wall and CPU seconds (this process and its children), share of the total, and
times real time; then the ratios measured in this run. Single process, torch on ``--threads``
threads (1 by default: on a shared 2-core machine more threads spin instead of working).

Usage::

    python bench/bench_end_to_end.py [--seconds 180] [--size 360x432] [--threads 1] [--skip-all-frames]
        [--ethogram docs/img/simulator_ethogram.png --ethogram-seconds 60]
"""

from __future__ import annotations

import argparse
import io
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from model.checkpoint import load_checkpoint  # noqa: E402
from model.taxonomy import MA52  # noqa: E402
from pipeline.aggregate import aggregate, write_outputs  # noqa: E402
from pipeline.manifest import read_manifest  # noqa: E402
from pipeline.pose import PoseConfig, keypoints_path, make_jobs, run_pose  # noqa: E402
from pipeline.recognize import RecognizeJob, RecognizeOptions, recognize_videos  # noqa: E402
from recipes.demo_model import demo_checkpoint_path, demo_readout  # noqa: E402
from simulator.recording import CohortConfig, cohort_specs, render_participant, write_cohort  # noqa: E402


def cpu_seconds() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class Clock:
    def __init__(self) -> None:
        self.rows: dict[str, tuple[float, float]] = {}

    def __call__(self, name, fn, *args, **kwargs):
        w, c = time.perf_counter(), cpu_seconds()
        out = fn(*args, **kwargs)
        self.rows[name] = (time.perf_counter() - w, cpu_seconds() - c)
        return out


def bare_render(config: CohortConfig) -> int:
    """Draw every frame of the participant (as write_participant does) without encoding; frame count."""
    return sum(1 for _ in render_participant(config, cohort_specs(config)[0]))


def ethogram_png(truth: pd.DataFrame, detected: pd.DataFrame, *, seconds: float) -> bytes:
    """PNG of an ethogram: one row per action, the true events (grey, upper half) above the detected
    segments (colour, lower half), over the first ``seconds`` of the recording."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    actions = sorted(set(truth["class"]) | set(detected["class"]), key=MA52.index)
    height = 0.3 * len(actions) + 0.7
    fig = Figure(figsize=(9, height), dpi=90)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.24, 0.5 / height, 0.74, 1 - 0.6 / height))
    for y, action in enumerate(actions):
        for table, y0, colour in ((truth, y - 0.4, "0.55"), (detected, y + 0.02, "tab:blue")):
            rows = table[(table["class"] == action) & (table["t_start"] < seconds)]
            ax.broken_barh([(a, min(b, seconds) - a) for a, b in zip(rows["t_start"], rows["t_end"])], (y0, 0.35),
                           facecolors=colour)
    ax.set_yticks(range(len(actions)), actions, fontsize=8)
    ax.set_ylim(-0.6, len(actions) - 0.4)
    ax.invert_yaxis()
    ax.set_xlim(0, seconds)
    ax.set_xlabel("time (s)   grey: planted truth, blue: detected (demo model, demo_readout())", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=180.0)
    p.add_argument("--size", default="360x432", help="WIDTHxHEIGHT")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--skip-all-frames", action="store_true", help="skip the --frames all pose comparison")
    p.add_argument("--ethogram", help="also write the recording's ethogram (truth vs detected) to this PNG")
    p.add_argument("--ethogram-seconds", type=float, help="length shown in the ethogram (default: all)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    w, h = (int(v) for v in args.size.lower().split("x"))
    config = CohortConfig(groups={"bench": 1}, seconds=args.seconds, size=(w, h), seed=11)
    ckpt = load_checkpoint(demo_checkpoint_path())
    clock = Clock()
    with tempfile.TemporaryDirectory(prefix="bench_e2e_") as tmp:
        root = Path(tmp)
        sim, out = root / "sim", root / "out"
        clock("render", write_cohort, config, sim)
        frames = clock("render (draw only)", bare_render, config)
        manifest = read_manifest(sim / "manifest.csv")
        video = sim / manifest.videos["video"].iloc[0]
        clock("pose", run_pose, make_jobs([video], out / "pose", PoseConfig(frames="sampled", plan=ckpt.plan)))
        if not args.skip_all_frames:
            clock("pose (every frame)", run_pose, make_jobs([video], out / "pose_all", PoseConfig(frames="all")))
        job = RecognizeJob(item_id=video.stem, source=str(video), out_dir=str(out / "recognize"),
                           keypoints=str(keypoints_path(out / "pose", video.stem)))
        clock("recognition", recognize_videos, [job], ckpt, RecognizeOptions(workers=1))

        def read_out():
            result = aggregate(manifest, out / "recognize" / "windows", demo_readout())
            write_outputs(result, out / "readout")
            return result

        result = clock("read-out", read_out)
        if args.ethogram:
            truth = pd.read_csv(sim / "truth" / "detections.csv")
            seg = result.segments.get(video.stem)
            detected = truth[:0] if seg is None else pd.DataFrame(
                {"class": [MA52.actions[int(a)] for a in seg["action_id"]], "t_start": seg["start_s"], "t_end": seg["end_s"]})
            png = ethogram_png(truth, detected, seconds=args.ethogram_seconds or args.seconds)
            Path(args.ethogram).write_bytes(png)
            print(f"wrote {args.ethogram}")

    stages = ["render", "pose", "recognition", "read-out"]
    total_wall = sum(clock.rows[s][0] for s in stages)
    total_cpu = sum(clock.rows[s][1] for s in stages)
    print(f"one simulated recording: {args.seconds:g} s, {w}x{h}, {frames} frames at {config.fps:g} fps; "
          f"demo checkpoint (T={ckpt.plan.clip_len}, stride {ckpt.plan.stride}); torch threads {args.threads}")
    print(f"{'stage':24s}{'wall s':>9s}{'CPU s':>9s}{'share':>8s}{'x real time':>13s}")
    for name, (wall, cpu) in clock.rows.items():
        share = f"{100 * wall / total_wall:7.1f}%" if name in stages else "        "
        print(f"{name:24s}{wall:9.2f}{cpu:9.2f}{share}{args.seconds / wall:13.1f}")
    print(f"{'end to end':24s}{total_wall:9.2f}{total_cpu:9.2f}{'100.0%':>8s}{args.seconds / total_wall:13.1f}")
    rw, _ = clock.rows["render"]
    dw, _ = clock.rows["render (draw only)"]
    print(f"rendering: {frames / rw:.0f} frames/s with MP4 encoding, {frames / dw:.0f} frames/s drawing only "
          f"(encoding = {100 * (rw - dw) / rw:.0f}% of render time)")
    if "pose (every frame)" in clock.rows:
        aw, _ = clock.rows["pose (every frame)"]
        sw, _ = clock.rows["pose"]
        print(f"pose on the sampled frames only: {aw / sw:.1f}x faster than on every frame ({sw:.1f} s vs {aw:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
