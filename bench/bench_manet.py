"""MANet speed: the full model vs the same TSM ResNet without the SE gates ("w/o SE") and vs the
paper's TSM baseline (no SE, no embedding head), on the same frames, in one run.

Prints clips per second, parameters and GFLOPs per clip of each and the ratios to the baseline.
Timings alternate between the variants round by round and report the best round
(:func:`bench.bench_model._time_rounds`), so a machine-wide slowdown hits all alike.

    python bench/bench_manet.py                                   # tiny preset, CPU-friendly
    python bench/bench_manet.py --preset ma52 --threads 1 --iters 3
    python bench/bench_manet.py --preset ma52 --device cuda --batch 64 --iters 20   # bf16 autocast
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

import torch  # noqa: E402

from bench.bench_model import _time_rounds  # noqa: E402
from model.inference import autocast_for, clip_gflops, count_parameters, prepare_for_inference  # noqa: E402
from model.manet import MANet, MANetConfig  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=("tiny", "ma52"), default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    base = MANetConfig.ma52() if args.preset == "ma52" else MANetConfig.tiny()
    variants = {"MANet": base, "w/o SE": base.replace(use_se=False),
                "TSM baseline": base.replace(use_se=False, embedding_weight=0.0)}
    g = torch.Generator().manual_seed(0)
    frames = torch.randn(args.batch, base.num_frames, 3, *base.image_size, generator=g)
    models, flops = {}, {}
    for name, cfg in variants.items():
        torch.manual_seed(0)
        model = MANet(cfg)
        flops[name] = clip_gflops(model.eval(), frames[:1])[0]
        models[name] = prepare_for_inference(model, device=device, channels_last=True)
    frames = frames.to(device)

    def run(model):
        def call():
            with torch.inference_mode(), autocast_for(device):
                model(frames)
        return call

    best = _time_rounds({n: run(m) for n, m in models.items()}, iters=args.iters, warmup=1, device=device)
    ref = best["TSM baseline"]
    print(f"preset {args.preset}, batch {args.batch}, T={base.num_frames}, {base.image_size[0]}x{base.image_size[1]}, "
          f"device {device}, threads {torch.get_num_threads()}")
    print(f"{'model':<14}{'params':>14}{'GFLOPs/clip':>13}{'clips/s':>10}{'time / baseline':>17}")
    for name in variants:
        print(f"{name:<14}{count_parameters(models[name]):>14,}{flops[name]:>13.3f}{args.batch / best[name]:>10.2f}"
              f"{best[name] / ref:>17.3f}")


if __name__ == "__main__":
    main()
