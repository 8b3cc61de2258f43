"""MMN speed on the CPU, side by side in one run.

1. The recognition stage with an MMN checkpoint (keypoint-only: nothing decoded) on a posed synthetic
   video, windows/s, against the bare model forward on the same batches (the stage's overhead ratio).
2. The same stage and the same bare forward for Micro-DualNet's pose modality (the shipped demo
   model's configuration, which still decodes and crops the frames), same window plan.
3. Bare forward of MMN at the paper's size (T = 64, D = 96, 12 formers) per clip, joint and 2S.

Rounds alternate between the variants and the best round is reported.

    python bench/bench_mmn.py [--frames 600] [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from model.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from model.config import MicroDualNetConfig  # noqa: E402
from model.micro_dualnet import MicroDualNet  # noqa: E402
from model.mmn import MMN, MMNConfig  # noqa: E402
from model.preprocessing import ClassList, Preprocessing  # noqa: E402
from model.windows import WindowPlan  # noqa: E402
from pipeline.artifacts import sha256_file, write_artifact  # noqa: E402
from pipeline.contracts import KEYPOINTS  # noqa: E402
from pipeline.keypoints import Keypoints  # noqa: E402
from pipeline.recognize import RecognizeJob, RecognizeOptions, recognize_videos  # noqa: E402
from recipes.demo_model import DEMO_PLAN, DEMO_PREPROCESSING, MODEL_OVERRIDES  # noqa: E402


def posed_video(root: Path, n: int, size=(360, 432), fps: float = 30.0):
    video = root / "v.mp4"
    w, h = size
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for i in range(n):
        writer.write(np.full((h, w, 3), i % 255, np.uint8))
    writer.release()
    rng = np.random.default_rng(0)
    body = np.concatenate([rng.uniform(80, 300, (n, 25, 2)), np.full((n, 25, 1), 0.9)], -1).astype(np.float32)
    kp = Keypoints(frames=np.arange(n), time_s=np.arange(n) / fps, body25=body, extra=np.zeros((n, 8, 3), np.float32),
                   detected=np.ones(n, bool), rejected=np.zeros(n, bool), fps=fps, size=size)
    kpath = root / "pose" / "v.parquet"
    write_artifact(kp.to_table(), kpath, contract=KEYPOINTS, stage="pose", input_hash=sha256_file(video),
                   config={"frames": "all"}, extra={"video": {"fps": fps, "frame_count": n, "width": w, "height": h}})
    return video, kpath


def stage_rate(ckpt_path: Path, video: Path, kpath: Path, out: Path, batch: int) -> tuple[float, int]:
    jobs = [RecognizeJob(item_id="v", source=str(video), out_dir=str(out), keypoints=str(kpath), force=True)]
    t0 = time.perf_counter()
    results, stats = recognize_videos(jobs, ckpt_path, RecognizeOptions(batch_size=batch, workers=1))
    assert results[0].status == "ok", results[0].error
    return stats.windows / (time.perf_counter() - t0), stats.windows


def forward_rate(ckpt, windows: int, batch: int) -> float:
    """The bare forward on batches of the same shape the stage runs (random keypoints / frames)."""
    t, j = ckpt.plan.clip_len, ckpt.keypoint_joints
    kp = torch.rand(batch, t, j, 3) * torch.tensor([112.0, 112.0, 1.0])
    kp[..., 2] = 0.9
    s = ckpt.preprocessing.size
    frames = torch.randn(batch, t, 3, s, s) if ckpt.uses_pixels else None
    model = ckpt.model.eval()
    steps = max(1, windows // batch)
    with torch.inference_mode():
        ckpt.forward(frames, kp)
        t0 = time.perf_counter()
        for _ in range(steps):
            ckpt.forward(frames, kp)
    del model
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=600)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=32)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="bench_mmn_"))
    video, kpath = posed_video(root, args.frames)
    torch.manual_seed(0)
    classes = ClassList.ma52()
    plan = WindowPlan(clip_len=DEMO_PLAN.clip_len, stride=DEMO_PLAN.stride, hop_s=DEMO_PLAN.hop_s)
    mmn_path = save_checkpoint(root / "mmn.pt", MMN(MMNConfig.tiny(num_frames=plan.clip_len)), classes=classes,
                               preprocessing=Preprocessing(), plan=plan)
    mdn_cfg = MicroDualNetConfig.tiny(**MODEL_OVERRIDES, num_frames=plan.clip_len)
    mdn_path = save_checkpoint(root / "mdn.pt", MicroDualNet(mdn_cfg), classes=classes,
                               preprocessing=DEMO_PREPROCESSING, plan=plan)
    cks = {"MMN (tiny, keypoint-only)": load_checkpoint(mmn_path),
           "Micro-DualNet pose (demo config)": load_checkpoint(mdn_path)}
    paths = {"MMN (tiny, keypoint-only)": mmn_path, "Micro-DualNet pose (demo config)": mdn_path}
    best: dict[str, dict[str, float]] = {k: {"stage": 0.0, "forward": 0.0} for k in cks}
    for r in range(args.rounds):
        for name in cks:
            rate, n = stage_rate(paths[name], video, kpath, root / f"out{r}", args.batch)
            best[name]["stage"] = max(best[name]["stage"], rate)
            best[name]["forward"] = max(best[name]["forward"], forward_rate(cks[name], n, args.batch))
            best[name]["windows"] = n
    print(f"CPU, {args.threads} torch thread(s), {args.frames} frames at 30 fps, plan T={plan.clip_len} "
          f"stride {plan.stride}, batch {args.batch}, best of {args.rounds} rounds")
    print(f"{'model':<36}{'windows':>8}{'stage w/s':>12}{'forward w/s':>13}{'stage/forward':>15}")
    for name, b in best.items():
        print(f"{name:<36}{int(b['windows']):>8}{b['stage']:>12.1f}{b['forward']:>13.1f}{b['stage'] / b['forward']:>15.3f}")
    a, m = best["MMN (tiny, keypoint-only)"], best["Micro-DualNet pose (demo config)"]
    print(f"MMN / Micro-DualNet pose: stage x{a['stage'] / m['stage']:.2f}, forward x{a['forward'] / m['forward']:.2f}")
    for cfg_name, cfg in (("joint", MMNConfig()), ("2S", MMNConfig.ma52_2s())):
        model = MMN(cfg).eval()
        kp = torch.rand(1, 64, 25, 3) * 100
        kp[..., 2] = 0.9
        times = []
        with torch.inference_mode():
            model(kp)
            for _ in range(args.rounds * 2):
                t0 = time.perf_counter()
                model(kp)
                times.append(time.perf_counter() - t0)
        n = sum(q.numel() for q in model.parameters())
        print(f"MMN paper size ({cfg_name}): {n:,} parameters, {1000 * min(times):.1f} ms per clip (T=64, batch 1)")


if __name__ == "__main__":
    main()
