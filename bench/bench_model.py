"""Micro-DualNet speed: full model vs bare TSM backbone, dual path vs single path, in one run.

Prints clips per second, parameters and GFLOPs per clip for

- the bare TSM ResNet backbone (the paper's "Baseline (TSM)" trunk) on the same frames,
- the full model with both paths (paper), with the ST path only and with the TS path only,
- the path modules alone (entity features in, fused features out), where "dual vs single" is
  measured without the shared backbone cost that dominates the full model,

and the ratios between them (the paper puts the dual-path architecture at about 1.9x a single
path's cost). Timings alternate between the variants round by round and report the best round,
so a machine-wide slowdown hits all of them alike and is filtered out where it can be.

CPU (default here): small batch, few iterations. CUDA (when present): bf16 autocast and
channels_last, synchronised timing.

    python bench/bench_model.py                       # tiny preset, CPU-friendly
    python bench/bench_model.py --preset ma52         # ResNet-101, 224x224, T=8
    python bench/bench_model.py --preset ma52 --device cuda --batch 8 --iters 20
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

import torch  # noqa: E402

from model.config import MicroDualNetConfig  # noqa: E402
from model.inference import autocast_for, clip_gflops, count_parameters, example_inputs, prepare_for_inference  # noqa: E402
from model.micro_dualnet import MicroDualNet  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time_rounds(fns: dict[str, callable], *, iters: int, warmup: int, device: torch.device,
                 min_call_s: float = 0.05) -> dict[str, float]:
    """Best (minimum) seconds per call of each fn over ``iters`` rounds, interleaved round by round.

    The minimum rather than the median: on a shared machine the other load only ever adds time, so
    the fastest round is the closest estimate of the model's own cost.

    Fast functions (the path modules alone take about a millisecond) are repeated within a round
    until a round lasts ``min_call_s``, so timer resolution and scheduling jitter do not dominate.
    """
    reps: dict[str, int] = {}
    for name, fn in fns.items():
        for _ in range(max(warmup, 1)):
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
        reps[name] = max(1, int(min_call_s / max(time.perf_counter() - start, 1e-6)))
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(iters):
        for name, fn in fns.items():
            fn()  # untimed: re-warm caches and thread pool after the previous variant's (bigger) work
            _sync(device)
            start = time.perf_counter()
            for _ in range(reps[name]):
                fn()
            _sync(device)
            times[name].append((time.perf_counter() - start) / reps[name])
    return {name: min(ts) for name, ts in times.items()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", choices=("tiny", "ma52"), default="tiny")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--batch", type=int, default=None, help="clips per batch (default: 2 on CPU, 8 on CUDA)")
    ap.add_argument("--iters", type=int, default=None, help="timed rounds (default: 5 CPU tiny, 3 CPU ma52, 20 CUDA)")
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--size", type=int, default=None, help="frame height = width (default: the preset's)")
    ap.add_argument("--frames", type=int, default=None, help="T (default: the preset's)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args(argv)

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    cuda = device.type == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    base = MicroDualNetConfig.tiny() if args.preset == "tiny" else MicroDualNetConfig.ma52()
    size = args.size or base.image_size[0]
    t = args.frames or base.num_frames
    batch = args.batch or (8 if cuda else (2 if args.preset == "tiny" else 1))
    iters = args.iters or (20 if cuda else (5 if args.preset == "tiny" else 3))
    warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)

    torch.manual_seed(0)
    variants = {name: MicroDualNet(base.replace(paths=p)) for name, p in (("dual", "dual"), ("st", "st"), ("ts", "ts"))}
    # Share the trunk and SEM weights so the variants differ only in their paths.
    for name in ("st", "ts"):
        variants[name].load_state_dict(variants["dual"].state_dict(), strict=False)
    for m in variants.values():
        prepare_for_inference(m, device=device, channels_last=True)
    backbone = variants["dual"].backbone
    frames, kp = example_inputs(variants["dual"], batch=batch, num_frames=t, image_size=(size, size), device=device)
    with torch.no_grad():
        x_entities = variants["dual"].entity_features(frames, kp)[0]

    def run_full(m):
        return lambda: m(frames, kp)

    fns = {"backbone": lambda: backbone(frames)}
    fns.update({f"model_{n}": run_full(m) for n, m in variants.items()})
    fns.update({f"paths_{n}": (lambda m=m: m.dual_path(x_entities)) for n, m in variants.items()})

    print(f"device: {device} ({torch.cuda.get_device_name() if cuda else f'{torch.get_num_threads()} CPU threads'}), "
          f"preset {args.preset}, clips of T={t} at {size}x{size}, batch {batch}, "
          f"{'bf16 autocast, ' if cuda else 'fp32, '}channels_last, best of {iters} rounds"
          + (f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""))
    with torch.inference_mode(), autocast_for(device):
        sec = _time_rounds(fns, iters=iters, warmup=warmup, device=device)

    with torch.no_grad():
        flops = {"backbone": clip_gflops(lambda f, k: backbone(f), frames[:1], kp[:1])[0]}
        for n, m in variants.items():
            total, per_module = clip_gflops(m, frames[:1], kp[:1])
            flops[f"model_{n}"] = total
            flops[f"paths_{n}"] = per_module.get("dual_path", 0.0)
    params = {"backbone": count_parameters(backbone)}
    for n, m in variants.items():
        params[f"model_{n}"] = count_parameters(m)
        params[f"paths_{n}"] = count_parameters(m.dual_path)

    print(f"\n{'what':<16}{'clips/s':>12}{'ms/batch':>12}{'params':>14}{'GFLOPs/clip':>14}")
    for name, s in sec.items():
        print(f"{name:<16}{batch / s:>12.2f}{1000 * s:>12.2f}{params[name]:>14,}{flops[name]:>14.3f}")

    def ratio(a: str, b: str) -> str:
        return f"time x{sec[a] / sec[b]:.2f}, GFLOPs x{flops[a] / max(flops[b], 1e-12):.2f}"

    print("(GFLOPs by FlopCounterMode: 2 FLOPs per multiply-add; papers quoting TSM 'FLOPs' usually count MACs)")
    print("\nratios (measured in this run):")
    print(f"  full model (dual) / bare TSM backbone : {ratio('model_dual', 'backbone')}")
    print(f"  full model dual / ST-only             : {ratio('model_dual', 'model_st')}")
    print(f"  full model dual / TS-only             : {ratio('model_dual', 'model_ts')}")
    print(f"  paths dual / ST path alone            : {ratio('paths_dual', 'paths_st')}")
    print(f"  paths dual / TS path alone            : {ratio('paths_dual', 'paths_ts')}   (paper: ~1.9x a single path)")
    routing = count_parameters(variants["dual"].dual_path.fusion)
    print(f"  routing parameters: {routing:,} ({100 * routing / params['model_dual']:.2f}% of the model, "
          f"{100 * routing / (params['model_dual'] - params['backbone']):.1f}% of the non-backbone part)")


if __name__ == "__main__":
    main()
