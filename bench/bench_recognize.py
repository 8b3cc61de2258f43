"""Benchmark the recognition stage (one run, ratios measured side by side; not a test).

1. Throughput, per model preset (``tiny``: the toy-size model at 64 px; ``ma52``: TSM ResNet-101 at
   224 px, random weights): windows per second of

   - the whole stage (:func:`pipeline.recognize.recognize_videos`: hashing, probing, planning, decode
     workers, crop, batching, forward, Parquet + sidecar, QC row), wall clock of the call;
   - the bare model forward on pre-decoded batches (uint8 clips already cropped, normalised on the
     device; the stage's :class:`pipeline.recognize.WindowClassifier`);
   - bare sequential decoding of the same video (:func:`pipeline.video.iter_frames` over the sampled
     frames, nothing else), counted as windows: windows of the video / seconds to decode it;

   and the ratio stage / min(bare model, bare decode): the goal is >= 0.8 (decode and compute overlap).
   The video is synthetic (a moving figure on a textured background, MPEG-4 part 2 as OpenCV writes
   it; ``--size``, default 1280x720) with synthetic keypoints on the frames the plan samples.
2. Streaming memory: peak RSS of the stage (main process and decode worker, each measured in a fresh
   process) on a 3-minute and a 30-minute synthetic video at 160x120: the difference must be < 30 %.
   The growth of the main process's RSS during the run (peak minus the RSS before it) is printed too:
   it is what a longer video could make grow.

Usage::

    python bench/bench_recognize.py [--presets tiny,ma52] [--seconds 60] [--ma52-seconds 5]
        [--batch 16] [--ma52-batch 4] [--workers 1] [--threads 1] [--minutes 3,30] [--skip-memory] [--device cpu]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from model.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from model.micro_dualnet import micro_dualnet_ma52, micro_dualnet_tiny  # noqa: E402
from model.preprocessing import ClassList, Preprocessing  # noqa: E402
from model.taxonomy import NUM_BODY25, NUM_EXTRA  # noqa: E402
from model.windows import MA52_PLAN, WindowPlan  # noqa: E402
from pipeline.artifacts import sha256_file, write_artifact  # noqa: E402
from pipeline.contracts import KEYPOINTS  # noqa: E402
from pipeline.keypoints import Keypoints  # noqa: E402
from pipeline.recognize import RecognizeJob, RecognizeOptions, WindowClassifier, recognize_videos  # noqa: E402
from pipeline.video import iter_frames, probe  # noqa: E402

PRESETS = {
    "tiny": (micro_dualnet_tiny, Preprocessing(region="person", resize_short=72, size=64)),
    "ma52": (micro_dualnet_ma52, Preprocessing(region="person")),
}


# --------------------------------------------------------------------------------------------------
# Synthetic inputs
# --------------------------------------------------------------------------------------------------
def figure_at(i: int, size: tuple[int, int]) -> np.ndarray:
    """[25, 2] joint positions of a figure swaying left and right (pixels)."""
    w, h = size
    cx = w * (0.5 + 0.15 * np.sin(i / 40.0))
    cy = h * 0.5
    s = h * 0.35
    rng = np.random.default_rng(7)
    offsets = rng.uniform(-1, 1, (NUM_BODY25, 2)) * np.array([0.35, 0.9])
    return np.stack([cx + offsets[:, 0] * s, cy + offsets[:, 1] * s], axis=1)


def make_video(path: Path, seconds: float, size: tuple[int, int], fps: float = 30.0) -> Path:
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path}")
    rng = np.random.default_rng(0)
    background = cv2.resize(rng.integers(0, 255, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8), (w, h),
                            interpolation=cv2.INTER_LINEAR)
    for i in range(int(round(seconds * fps))):
        img = background.copy()
        pts = figure_at(i, size).astype(int)
        x0, y0 = pts.min(axis=0)
        x1, y1 = pts.max(axis=0)
        cv2.rectangle(img, (int(x0), int(y0)), (int(x1), int(y1)), (40, 160, 220), -1)
        for x, y in pts:
            cv2.circle(img, (int(x), int(y)), max(2, h // 80), (250, 250, 250), -1)
        writer.write(img)
    writer.release()
    return path


def make_keypoints(video: Path, out: Path, plan: WindowPlan) -> Path:
    """Keypoints on the frames ``plan`` samples, with the sidecar facts the stage checks."""
    info = probe(video)
    frames = plan.sampled_frames(info.frame_count, info.fps)
    body = np.zeros((len(frames), NUM_BODY25, 3), np.float32)
    for k, f in enumerate(frames):
        body[k, :, :2] = figure_at(int(f), info.size)
        body[k, :, 2] = 0.9
    kp = Keypoints(frames=frames, time_s=frames / info.fps, body25=body,
                   extra=np.zeros((len(frames), NUM_EXTRA, 3), np.float32), detected=np.ones(len(frames), bool),
                   rejected=np.zeros(len(frames), bool), fps=info.fps, size=info.size)
    return write_artifact(kp.to_table(), out, contract=KEYPOINTS, stage="pose", input_hash=sha256_file(video),
                          config={"synthetic": True}, extra={"video": info.to_dict()})


def make_checkpoint(preset: str, path: Path, plan: WindowPlan = MA52_PLAN) -> Path:
    build, prep = PRESETS[preset]
    torch.manual_seed(0)
    return save_checkpoint(path, build(), classes=ClassList.ma52(), preprocessing=prep, plan=plan)


# --------------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------------
def bare_decode(video: Path, plan: WindowPlan) -> tuple[float, int]:
    """(windows/s, windows) of decoding the sampled frames of ``video`` in one sequential pass."""
    info = probe(video)
    n_windows = len(plan.windows(info.frame_count, info.fps))
    wanted = plan.sampled_frames(info.frame_count, info.fps)
    t0 = time.perf_counter()
    for _ in iter_frames(video, wanted, fps=info.fps):
        pass
    return n_windows / (time.perf_counter() - t0), n_windows


def bare_model(ckpt_path: Path, options: RecognizeOptions, n_windows: int) -> float:
    """windows/s of the forward alone on pre-decoded uint8 batches (after one warm-up batch)."""
    ckpt = load_checkpoint(ckpt_path)
    clf = WindowClassifier(ckpt, options)
    t, s, b = ckpt.plan.clip_len, ckpt.preprocessing.size, options.batch_size
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (b, t, 3, s, s), dtype=torch.uint8, generator=g)
    kp = torch.rand(b, t, 25, 3, generator=g) * torch.tensor([s, s, 1.0])
    clf(frames, kp)  # warm-up (oneDNN primitives, CUDA kernels, compile)
    if clf.device.type == "cuda":
        torch.cuda.synchronize()
    done = 0
    t0 = time.perf_counter()
    while done < n_windows:
        clf(frames, kp)
        done += b
    return done / (time.perf_counter() - t0)


def stage_run(video: Path, kp: Path, ckpt_path: Path, options: RecognizeOptions, out: Path) -> tuple[float, int]:
    """(windows/s, windows) of the whole stage on one video (checkpoint loading excluded, as in a cohort run)."""
    ckpt = load_checkpoint(ckpt_path)
    job = RecognizeJob(item_id=video.stem, source=str(video), out_dir=str(out), force=True, keypoints=str(kp))
    t0 = time.perf_counter()
    results, stats = recognize_videos([job], ckpt, options)
    wall = time.perf_counter() - t0
    if results[0].status != "ok":
        raise RuntimeError(results[0].error)
    return stats.windows / wall, stats.windows


def throughput(preset: str, seconds: float, args, work: Path) -> dict:
    size = tuple(int(v) for v in args.size.lower().split("x"))
    video = make_video(work / f"{preset}_{size[0]}x{size[1]}.mp4", seconds, size)
    kp = make_keypoints(video, work / "kp" / f"{video.stem}.parquet", MA52_PLAN)
    ckpt = make_checkpoint(preset, work / f"{preset}.pt")
    batch = args.ma52_batch if preset == "ma52" else args.batch
    opts = RecognizeOptions(device=args.device, batch_size=batch, workers=args.workers, worker_kind="process",
                            compile=args.compile)
    dec, n = bare_decode(video, MA52_PLAN)
    model = bare_model(ckpt, opts, max(n, batch))
    stage_p, n_stage = stage_run(video, kp, ckpt, opts, work / f"out_{preset}")
    stage_t, _ = stage_run(video, kp, ckpt, dataclasses.replace(opts, worker_kind="thread"), work / f"out_{preset}")
    bare = min(model, dec)
    return {"preset": preset, "video": f"{size[0]}x{size[1]} {seconds:g} s", "windows": n_stage, "batch": batch,
            "stage_p": stage_p, "stage_t": stage_t, "bare_model": model, "bare_decode": dec,
            "ratio_p": stage_p / bare, "ratio_t": stage_t / bare}


def memory_child(video: str, kp: str, ckpt: str, kind: str) -> None:
    """In a fresh process: run the stage once, sampling the RSS of this process and its children.

    RSS is sampled every 50 ms by a thread (psutil) rather than read from ``ru_maxrss``: a process
    started by fork + exec keeps the ``ru_maxrss`` of its parent at the fork, which would report the
    parent's size, not the stage's.
    """
    import threading

    import psutil

    torch.set_num_threads(1)
    ck = load_checkpoint(ckpt)
    opts = RecognizeOptions(batch_size=16, workers=1, worker_kind=kind)
    me = psutil.Process()
    before = me.memory_info().rss / 2**20
    peak = {"main": 0.0, "worker": 0.0}
    running = threading.Event()
    running.set()

    def sample() -> None:
        while running.is_set():
            peak["main"] = max(peak["main"], me.memory_info().rss / 2**20)
            for child in me.children(recursive=True):
                try:
                    peak["worker"] = max(peak["worker"], child.memory_info().rss / 2**20)
                except psutil.Error:
                    pass
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    job = RecognizeJob(item_id=Path(video).stem, source=video, out_dir=str(Path(video).parent / "out"), force=True,
                       keypoints=kp)
    results, stats = recognize_videos([job], ck, opts)
    running.clear()
    sampler.join()
    assert results[0].status == "ok", results[0].error
    print(json.dumps({"main_peak": peak["main"], "main_before": before, "worker_peak": peak["worker"],
                      "windows": stats.windows, "seconds": stats.wall_seconds}))


def memory(minutes: list[float], work: Path, kind: str) -> list[dict]:
    plan = MA52_PLAN
    ckpt = make_checkpoint("tiny", work / "mem_tiny.pt", plan)
    rows = []
    for m in minutes:
        t0 = time.perf_counter()
        video = make_video(work / f"mem_{m:g}min.mp4", m * 60, (160, 120))
        kp = make_keypoints(video, work / "kp" / f"{video.stem}.parquet", plan)
        made = time.perf_counter() - t0
        out = subprocess.run([sys.executable, __file__, "--memory-child", str(video), str(kp), str(ckpt), kind],
                             capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-2000:])
        row = json.loads(out.stdout.strip().splitlines()[-1])
        row.update(minutes=m, generated_s=made)
        rows.append(row)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default="tiny,ma52")
    p.add_argument("--seconds", type=float, default=60.0, help="video length for the tiny preset")
    p.add_argument("--ma52-seconds", type=float, default=5.0, help="video length for the ma52 preset (slow on CPU)")
    p.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT of the throughput video")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--ma52-batch", type=int, default=4, help="batch size for the ma52 preset (CPU: keep it small)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads of the main process (model), for the bare model and the stage alike")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--minutes", default="3,30", help="synthetic video lengths for the memory check")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--memory-kind", default="thread", choices=["thread", "process"],
                   help="decode worker kind for the memory check (one worker)")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--memory-child", nargs=4, metavar=("VIDEO", "KP", "CKPT", "KIND"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.memory_child:
        memory_child(*args.memory_child)
        return
    torch.set_num_threads(args.threads)
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, {args.workers} decode worker(s); "
          f"plan {MA52_PLAN}")
    with tempfile.TemporaryDirectory(prefix="bench_recognize_") as tmp:
        work = Path(tmp)
        if not args.skip_throughput:
            print("windows/s; stage with decode workers as processes (proc) or threads (thr); ratio = stage / "
                  "min(bare model, bare decode)")
            print(f"{'preset':<6} {'video':<16} {'windows':>7} {'batch':>5} {'stage proc':>10} {'stage thr':>10} "
                  f"{'bare model':>10} {'bare decode':>11} {'ratio proc':>10} {'ratio thr':>9}")
        for preset in [s for s in args.presets.split(",") if s and not args.skip_throughput]:
            seconds = args.ma52_seconds if preset == "ma52" else args.seconds
            r = throughput(preset, seconds, args, work)
            print(f"{r['preset']:<6} {r['video']:<16} {r['windows']:>7} {r['batch']:>5} {r['stage_p']:>10.2f} "
                  f"{r['stage_t']:>10.2f} {r['bare_model']:>10.2f} {r['bare_decode']:>11.2f} {r['ratio_p']:>10.2f} "
                  f"{r['ratio_t']:>9.2f}", flush=True)
        if not args.skip_memory:
            rows = memory([float(m) for m in args.minutes.split(",")], work, args.memory_kind)
            print(f"memory (tiny preset, 160x120 synthetic video, one {args.memory_kind} decode worker; "
                  "peak RSS in MiB, sampled every 50 ms):")
            for r in rows:
                worker = f", decode worker process peak {r['worker_peak']:.0f}" if r["worker_peak"] else ""
                print(f"  {r['minutes']:>4g} min: {r['windows']:>5} windows in {r['seconds']:.1f} s; main peak "
                      f"{r['main_peak']:.0f} (before the run {r['main_before']:.0f}, growth "
                      f"{r['main_peak'] - r['main_before']:.0f}){worker}")
            if len(rows) >= 2:
                a, b = rows[0], rows[-1]
                for key, name in (("main_peak", "main process"), ("worker_peak", "decode worker process")):
                    if a[key] > 0:
                        print(f"  {name}: {b['minutes']:g} min vs {a['minutes']:g} min peak RSS "
                              f"{100 * (b[key] / a[key] - 1):+.1f} %  (goal: < 30 %)")
                growth_a, growth_b = a["main_peak"] - a["main_before"], b["main_peak"] - b["main_before"]
                print(f"  growth during the run: {growth_a:.0f} MiB ({a['minutes']:g} min) vs {growth_b:.0f} MiB "
                      f"({b['minutes']:g} min)")


if __name__ == "__main__":
    main()
