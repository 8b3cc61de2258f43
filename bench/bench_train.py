"""Training throughput: the whole training loop vs bare forward+backward, and data preparation speed.

Prints, measured side by side in one run:

1. **Training loop / bare step** (goal >= 0.9 once clips are prepared): clips/s of
   :func:`recipes.train.train` over a prepared folder (DataLoader workers decoding JPEG, crop, flip,
   uint8 transfer, normalisation on the device, loss, backward, clipping, SGD, schedule) against
   forward + backward + SGD step on the same model with tensors already on the device. Rounds
   alternate (bare, loop, bare, loop, ...) and the best round of each counts.
2. **Data preparation**: ``recipes.prepare_clips`` clips/s and frames/s against decoding alone
   (``pipeline.video.iter_frames``) of the same videos.

    python bench/bench_train.py                                   # tiny preset, CPU, synthetic clips
    python bench/bench_train.py --preset ma52 --batch 12 --device cuda --steps 30 --workers 8
    python bench/bench_train.py --videos ../shared/data/ma52/clips   # preparation on real clips

Per-clip costs on CPU differ from a GPU's by orders of magnitude; the ratio is what carries over.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

import numpy as np  # noqa: E402
import torch  # noqa: E402

from model.clips import MANIFEST, PREPARED_FORMAT, ClipDataset, collate_clips, encode_prepared_clip, normalize_frames  # noqa: E402
from model.preprocessing import ClassList, Preprocessing  # noqa: E402
from recipes.train import TrainConfig, build_model, train  # noqa: E402


def synthetic_prepared(root: Path, n: int, *, frames: int, short: int, crop: int, classes: int) -> Path:
    """``n`` random clips (frames x short x short*1.2 pixels, random keypoints) in the prepared format."""
    rng = np.random.default_rng(0)
    (root / "clips").mkdir(parents=True)
    h, w = int(short * 1.2), short
    records = []
    for i in range(n):
        base = rng.integers(0, 255, size=(h // 8, w // 8, 3), dtype=np.uint8)
        pix = [np.kron(np.roll(base, f, axis=1), np.ones((8, 8, 1), np.uint8))[:h, :w] for f in range(frames)]
        kp = np.concatenate([rng.uniform(0, 1, (frames, 33, 2)) * [w, h], np.ones((frames, 33, 1))], -1)
        cid = f"clip{i:05d}"
        (root / "clips" / f"{cid}.npz").write_bytes(
            encode_prepared_clip(pix, kp.astype(np.float32), np.arange(frames), i % classes, {"video": cid}))
        records.append({"id": cid, "file": f"clips/{cid}.npz", "label": i % classes, "num_frames": frames,
                        "height": h, "width": w, "video": cid, "has_keypoints": True})
    cl = ClassList.from_actions(list(range(classes)))
    (root / MANIFEST).write_text(json.dumps({"format": PREPARED_FORMAT, "classes": cl.to_dict(), "clips": records,
                                             "preprocessing": Preprocessing(resize_short=short, size=crop).to_dict()}))
    return root


def bare_step_rate(cfg: TrainConfig, prepared: Path, device: torch.device, steps: int) -> float:
    """Clips/s of forward + backward + SGD step on pre-loaded device tensors (same model, batch, T, size)."""
    model = build_model(cfg, 5)
    model.to(device).train()
    if cfg.channels_last:
        from recipes.train import _channels_last

        _channels_last(model)
    ds = ClipDataset(prepared, cfg.num_frames or model.cfg.num_frames, train=True)
    batch = collate_clips([ds[i % len(ds)] for i in range(cfg.batch_size)])
    frames = normalize_frames(batch["frames"].to(device), ds.preprocessing)
    kp, labels = batch["keypoints"].to(device), batch["label"].to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    amp = cfg.amp and device.type == "cuda"

    def step():
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            loss = model.loss(model(frames, kp), labels).total
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 20.0)
        opt.step()

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * cfg.batch_size / (time.perf_counter() - t0)


def loop_rate(cfg: TrainConfig, prepared: Path, out: Path) -> tuple[float, float]:
    """(clips/s, fraction of the loop spent waiting for the DataLoader) of one short training run."""
    rows = []
    shutil.rmtree(out, ignore_errors=True)
    train(cfg, prepared, out, on_epoch=rows.append)
    return rows[-1]["clips_per_s"], rows[-1]["data_wait_frac"]


def prepare_rate(videos: list[Path], out: Path, short: int) -> tuple[float, float, float]:
    """(prepare clips/s, prepare frames/s, decode-only frames/s) over ``videos``."""
    from recipes.prepare_clips import ClipItem, PrepareConfig, prepare_clips
    from pipeline.video import iter_frames

    t0 = time.perf_counter()
    n_frames = sum(1 for v in videos for _ in iter_frames(v))
    decode_s = time.perf_counter() - t0
    items = [ClipItem(v.stem, str(v), 0) for v in videos]
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    prepare_clips(items, out, ClassList.from_actions([0]), config=PrepareConfig(short_side=short, crop_size=min(224, short)))
    prep_s = time.perf_counter() - t0
    return len(videos) / prep_s, n_frames / prep_s, n_frames / decode_s


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=8, help="training steps per measured round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch threads (CPU)")
    p.add_argument("--videos", type=Path, default=None, help="folder of videos for the preparation benchmark")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    paper = args.preset != "tiny"
    short, crop = (256, 224) if paper else (72, 64)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prepared = synthetic_prepared(tmp / "prep", max(args.batch * args.steps, 16), frames=40 if paper else 16,
                                      short=short, crop=crop, classes=5)
        cfg = TrainConfig(preset=args.preset, epochs=1, batch_size=args.batch, lr_reference_batch=args.batch,
                          workers=args.workers, max_steps_per_epoch=args.steps, device=args.device, warmup_epochs=0,
                          plot_every=10**6)
        bare, loop, wait = [], [], []
        for _ in range(args.rounds):
            bare.append(bare_step_rate(cfg, prepared, device, args.steps))
            rate, w = loop_rate(cfg, prepared, tmp / "run")
            loop.append(rate)
            wait.append(w)
        b, lo = max(bare), max(loop)
        print(f"device {device}, preset {args.preset}, batch {args.batch}, {args.steps} steps x {args.rounds} rounds, "
              f"{args.workers} loader workers, torch threads {torch.get_num_threads()}")
        print(f"bare forward+backward+step : {b:8.2f} clips/s   (rounds {', '.join(f'{x:.2f}' for x in bare)})")
        print(f"whole training loop        : {lo:8.2f} clips/s   (rounds {', '.join(f'{x:.2f}' for x in loop)}; "
              f"waiting for data {100 * min(wait):.0f}% of the loop)")
        print(f"loop / bare                : {lo / b:8.3f}   (goal >= 0.9)")
        if args.videos:
            videos = sorted(v for v in args.videos.iterdir() if v.suffix.lower() in (".mp4", ".avi", ".mov", ".mkv"))
            cps, fps, dec = prepare_rate(videos, tmp / "prep_real", 256)
            print(f"data preparation ({len(videos)} videos, short side 256): {cps:.2f} clips/s, {fps:.0f} frames/s; "
                  f"decoding alone {dec:.0f} frames/s (prepare / decode {fps / dec:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
