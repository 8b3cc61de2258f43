"""GPU figures in one run: clips/s of every model family at fp32 and bf16 autocast, side by side.

For each family (Micro-DualNet preset ``ma52``: TSM ResNet-101, T=8, 224x224; MMN at the
:class:`model.mmn.MMNConfig` defaults: T=64, 25 joints, D=96; MANet preset ``ma52``: TSM ResNet-50 + SE)
and each batch size, on synthetic inputs of the right shapes already on the device:

- **inference** clips/s (``inference_mode``, eval, channels_last), fp32 and bf16 autocast, and the
  ratio bf16 / fp32 measured in this run;
- **training** clips/s (forward + loss + backward + grad clipping + SGD step, as
  ``bench/bench_train.py``'s bare step) for Micro-DualNet and MMN, fp32 and bf16 autocast;
- peak memory of each configuration (``torch.cuda.max_memory_allocated``; the model and optimizer
  state included), GFLOPs per clip and the achieved TFLOP/s;
- whether an NVDEC (GPU video decoding) path exists in the installed packages (torchcodec,
  torchaudio's StreamReader, PyAV's hwaccel) and, where one works, its frames/s against CPU decoding.

Timing: ``warmup`` untimed calls, then up to ``iters`` calls each timed alone (CUDA events on CUDA,
``perf_counter`` on CPU, synchronised), stopped early after ``--max-config-s``; clips/s uses the median
call. "fp32" is PyTorch's default on CUDA (cuDNN convolutions may use TF32; the JSON records the
flags). An out-of-memory error in one configuration is reported as ``oom`` and the run goes on. After
``--budget-s`` seconds the remaining configurations are skipped and listed, not run.

Writes ``gpu_bench.json`` and ``gpu_bench.md`` to ``--out`` (default ``$OUT`` if set, else
``./gpu-bench-out``) and prints both.

    python -m bench.bench_gpu --device cpu --quick          # tiny sizes, a minute on a laptop CPU
    python -m bench.bench_gpu --device cuda --out "$OUT"     # the real figures (scripts/gpu-bench)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

import torch  # noqa: E402

from model.inference import clip_gflops, count_parameters, example_inputs, prepare_for_inference  # noqa: E402
from pipeline.artifacts import atomic_write_text  # noqa: E402

FORMAT = "gpu-bench/1"
FAMILIES = ("micro_dualnet", "mmn", "manet")
PRECISIONS = ("fp32", "bf16")
TRAINED = ("micro_dualnet", "mmn")  # MANet: inference only (its training figures are not asked for here)


@dataclass(frozen=True)
class Case:
    """One measured configuration."""

    family: str
    batch: int
    mode: str  # "infer" | "train"
    precision: str  # "fp32" | "bf16"

    @property
    def key(self) -> str:
        return f"{self.family}/b{self.batch}/{self.mode}/{self.precision}"


@dataclass
class Built:
    """A family's model on the device and a factory of its synthetic batch."""

    model: torch.nn.Module
    inputs: Callable[[int], tuple]  # batch -> positional args of forward
    loss: Callable[[torch.nn.Module, tuple, torch.Tensor], torch.Tensor]
    num_classes: int
    shape: str


# --- families --------------------------------------------------------------------------------------

def _keypoints(batch: int, t: int, device: torch.device, size: float = 224.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    kp = torch.rand(batch, t, 25, 3, generator=g) * torch.tensor([size, size, 1.0])
    kp[..., 2] = 0.9
    return kp.to(device)


def build_family(family: str, *, quick: bool, device: torch.device) -> Built:
    """The family at its paper size (``quick``: its ``tiny`` preset), eval, channels_last where it has convs."""
    torch.manual_seed(0)
    if family == "micro_dualnet":
        from model.config import MicroDualNetConfig
        from model.micro_dualnet import MicroDualNet

        cfg = MicroDualNetConfig.tiny() if quick else MicroDualNetConfig.ma52()
        model = prepare_for_inference(MicroDualNet(cfg), device=device, channels_last=True)

        def inputs(b: int) -> tuple:
            return example_inputs(model, batch=b, device=device)

        def loss(m, args, labels):
            return m.loss(m(*args), labels).total

        shape = f"frames [B, {cfg.num_frames}, 3, {cfg.image_size[0]}, {cfg.image_size[1]}] + keypoints [B, {cfg.num_frames}, 25, 3]"
        return Built(model, inputs, loss, cfg.num_classes, shape)
    if family == "mmn":
        from model.mmn import MMN, MMNConfig

        cfg = MMNConfig.tiny() if quick else MMNConfig()
        model = prepare_for_inference(MMN(cfg), device=device, channels_last=False)

        def inputs(b: int) -> tuple:
            return (_keypoints(b, cfg.num_frames, device),)

        def loss(m, args, labels):
            return m.loss(m(*args, return_output=True), labels).total

        return Built(model, inputs, loss, cfg.num_classes, f"keypoints [B, {cfg.num_frames}, 25, 3]")
    if family == "manet":
        from model.manet import MANet, MANetConfig  # needs pydantic (scripts/gpu-bench carries it if missing)

        cfg = MANetConfig.tiny() if quick else MANetConfig.ma52()
        model = prepare_for_inference(MANet(cfg), device=device, channels_last=True)

        def inputs(b: int) -> tuple:
            g = torch.Generator().manual_seed(0)
            return (torch.randn(b, cfg.num_frames, 3, *cfg.image_size, generator=g).to(device),)

        def loss(m, args, labels):
            return m.loss(m(*args), labels).total

        return Built(model, inputs, loss, cfg.num_classes, f"frames [B, {cfg.num_frames}, 3, {cfg.image_size[0]}, {cfg.image_size[1]}]")
    raise ValueError(f"unknown family {family!r}")


def family_gflops(built: Built) -> float:
    """GFLOPs per clip of one forward (``model.inference.clip_gflops``, batch 1)."""
    args = built.inputs(1)
    if len(args) == 1:
        return clip_gflops(lambda f, k: built.model(f), args[0], None)[0]
    return clip_gflops(built.model, *args)[0]


# --- timing ----------------------------------------------------------------------------------------

def time_calls(fn: Callable[[], object], device: torch.device, *, warmup: int, iters: int,
               max_s: float) -> list[float]:
    """Seconds of each of up to ``iters`` timed calls after ``warmup`` untimed ones (at least one timed call).

    CUDA: a pair of events around each call, synchronised; CPU: ``perf_counter``. Stops early once
    the timed calls have taken ``max_s``.
    """
    cuda = device.type == "cuda"
    for _ in range(warmup):
        fn()
    if cuda:
        torch.cuda.synchronize()
    out: list[float] = []
    start = time.perf_counter()
    while len(out) < max(iters, 1):
        if cuda:
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            out.append(a.elapsed_time(b) / 1000.0)
        else:
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
        if time.perf_counter() - start > max_s:
            break
    return out


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def run_case(case: Case, built: Built, device: torch.device, *, warmup: int, iters: int, max_s: float,
             gflops: float | None) -> dict:
    """Measure one configuration; an OOM (or any error) becomes the row's status instead of an exception."""
    cuda = device.type == "cuda"
    row: dict = {"family": case.family, "batch": case.batch, "mode": case.mode, "precision": case.precision}
    model, opt = built.model, None
    amp = case.precision == "bf16"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    try:
        args = built.inputs(case.batch)
        if case.mode == "infer":
            model.eval()

            def fn():
                with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    model(*args)
        else:
            model.train()
            labels = torch.randint(built.num_classes, (case.batch,), generator=torch.Generator().manual_seed(0)).to(device)
            opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=5e-4)

            def fn():
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    loss = built.loss(model, args, labels)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 20.0)
                opt.step()

        times = time_calls(fn, device, warmup=warmup, iters=iters, max_s=max_s)
        med = statistics.median(times)
        row.update(status="ok", iters=len(times), ms_per_batch=1000 * med, ms_min=1000 * min(times),
                   clips_per_s=case.batch / med)
        if gflops is not None:
            factor = 1.0 if case.mode == "infer" else 3.0  # backward ~ 2x forward
            row["tflops_achieved"] = factor * gflops * case.batch / med / 1000.0
    except Exception as exc:  # noqa: BLE001 - one configuration's failure must not end the run
        row.update(status="oom" if _is_oom(exc) else "error",
                   error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}")
        if row["status"] == "error":
            row["traceback"] = traceback.format_exc(limit=4)
    finally:
        if opt is not None:
            model.zero_grad(set_to_none=True)
        del opt
        args = fn = None  # noqa: F841 - free the batch before the next configuration
        if cuda:
            torch.cuda.synchronize()
            row["peak_mem_mib"] = torch.cuda.max_memory_allocated() / 2**20
            torch.cuda.empty_cache()
    row["wall_s"] = time.perf_counter() - t0
    return row


# --- NVDEC -----------------------------------------------------------------------------------------

def _test_video(root: Path, frames: int, size: tuple[int, int]) -> tuple[Path, str]:
    """A synthetic video: H.264 through PyAV when it can encode, else MPEG-4 part 2 through OpenCV."""
    w, h = size
    try:
        import av
        import numpy as np

        path = root / "nvdec.mp4"
        with av.open(str(path), "w") as out:
            s = out.add_stream("libx264", rate=30)
            s.width, s.height, s.pix_fmt = w, h, "yuv420p"
            for i in range(frames):
                img = np.full((h, w, 3), i % 255, np.uint8)
                img[:, (i * 4) % w] = 255
                for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(p)
            for p in s.encode():
                out.mux(p)
        return path, "h264 (PyAV libx264)"
    except Exception:  # noqa: BLE001 - fall back to OpenCV
        import cv2
        import numpy as np

        path = root / "nvdec.mp4"
        wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (w, h))
        for i in range(frames):
            img = np.full((h, w, 3), i % 255, np.uint8)
            img[:, (i * 4) % w] = 255
            wr.write(img)
        wr.release()
        return path, "mpeg4 (OpenCV mp4v)"


def _cpu_decode(path: Path) -> int:
    import cv2

    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def _gpu_decoders(device: torch.device) -> dict[str, Callable[[Path], int]]:
    """Each NVDEC path the installed packages offer: name -> decode(path) -> frames, or a reason string."""
    found: dict = {}
    try:
        from torchcodec.decoders import VideoDecoder

        def tc(path: Path) -> int:
            dec = VideoDecoder(str(path), device="cuda")
            n = 0
            for i in range(len(dec)):
                dec[i]
                n += 1
            torch.cuda.synchronize()
            return n
        found["torchcodec VideoDecoder(device='cuda')"] = tc
    except Exception as exc:  # noqa: BLE001
        found["torchcodec"] = f"not usable: {type(exc).__name__}: {exc}"
    try:
        from torchaudio.io import StreamReader

        def ta(path: Path) -> int:
            r = StreamReader(str(path))
            r.add_video_stream(32, decoder="h264_cuvid", hw_accel="cuda:0")
            n = 0
            for (chunk,) in r.stream():
                n += chunk.shape[0]
            torch.cuda.synchronize()
            return n
        found["torchaudio StreamReader(decoder='h264_cuvid', hw_accel='cuda')"] = ta
    except Exception as exc:  # noqa: BLE001
        found["torchaudio.io"] = f"not usable: {type(exc).__name__}: {exc}"
    try:
        import av
        from av.codec.hwaccel import HWAccel

        def pa(path: Path) -> int:
            with av.open(str(path), hwaccel=HWAccel(device_type="cuda", allow_software_fallback=False)) as c:
                return sum(1 for _ in c.decode(video=0))
        found["PyAV hwaccel cuda"] = pa
    except Exception as exc:  # noqa: BLE001
        found["PyAV hwaccel"] = f"not usable: {type(exc).__name__}: {exc}"
    return found


def nvdec_check(device: torch.device, *, quick: bool) -> dict:
    """Which NVDEC paths the installed packages have, and frames/s of each working one vs CPU decoding."""
    result: dict = {"paths": {}, "available": False}
    if device.type != "cuda":
        result["note"] = "not a CUDA device: NVDEC not tried"
    decoders = _gpu_decoders(device)
    frames, size = (30, (160, 128)) if quick else (300, (1280, 720))
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        video = None
        for name, dec in decoders.items():
            if isinstance(dec, str):
                result["paths"][name] = {"status": "missing", "reason": dec[:300]}
                continue
            if device.type != "cuda":
                result["paths"][name] = {"status": "installed", "reason": "needs a CUDA device"}
                continue
            try:
                if video is None:
                    video, codec = _test_video(Path(tmp), frames, size)
                    t0 = time.perf_counter()
                    n_cpu = _cpu_decode(video)
                    cpu_fps = n_cpu / (time.perf_counter() - t0)
                    result.update(video=f"{frames} frames {size[0]}x{size[1]} {codec}", cpu_frames_per_s=cpu_fps)
                dec(video)  # warm-up (decoder start)
                t0 = time.perf_counter()
                n = dec(video)
                fps = n / (time.perf_counter() - t0)
                result["paths"][name] = {"status": "ok", "frames": n, "frames_per_s": fps,
                                         "over_cpu": fps / result["cpu_frames_per_s"]}
                result["available"] = True
            except Exception as exc:  # noqa: BLE001
                result["paths"][name] = {"status": "failed", "reason": f"{type(exc).__name__}: {str(exc)[:300]}"}
    if not result["available"]:
        result["summary"] = "no NVDEC path works with the installed packages; GPU video decoding not measured"
    return result


# --- report ----------------------------------------------------------------------------------------

def ratios(rows: list[dict]) -> list[dict]:
    """bf16 / fp32 clips/s for each (family, batch, mode) where both ran."""
    by = {(r["family"], r["batch"], r["mode"], r["precision"]): r for r in rows}
    out = []
    for (f, b, m, p), r in by.items():
        if p != "fp32":
            continue
        other = by.get((f, b, m, "bf16"))
        ok = r.get("status") == "ok" and other is not None and other.get("status") == "ok"
        out.append({"family": f, "batch": b, "mode": m,
                    "bf16_over_fp32": other["clips_per_s"] / r["clips_per_s"] if ok else None})
    return out


def _fmt(x, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def markdown(report: dict) -> str:
    rows = report["results"]
    by = {(r["family"], r["batch"], r["mode"], r["precision"]): r for r in rows}
    env = report["env"]
    lines = [f"# GPU figures ({env['device_name']}, torch {env['torch']}, CUDA {env['cuda']})", "",
             f"{'PARTIAL (written mid-run). ' if report.get('partial') else ''}"
             f"{'quick sizes (tiny presets), ' if report['args']['quick'] else ''}clips/s from the median timed call; "
             f"bf16 = bf16 autocast; fp32 = PyTorch default (cuDNN TF32 {env['cudnn_allow_tf32']}, "
             f"matmul TF32 {env['matmul_allow_tf32']})", "",
             "| family | batch | mode | fp32 clips/s | bf16 clips/s | bf16/fp32 | fp32 peak MiB | bf16 peak MiB | bf16 TFLOP/s |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for ra in report["ratios"]:
        f, b, m = ra["family"], ra["batch"], ra["mode"]
        a, c = by.get((f, b, m, "fp32"), {}), by.get((f, b, m, "bf16"), {})

        def rate(r):
            return _fmt(r.get("clips_per_s")) if r.get("status") == "ok" else r.get("status", "skipped")
        lines.append(f"| {f} | {b} | {m} | {rate(a)} | {rate(c)} | {_fmt(ra['bf16_over_fp32'], '.2f')} | "
                     f"{_fmt(a.get('peak_mem_mib'), '.0f')} | {_fmt(c.get('peak_mem_mib'), '.0f')} | "
                     f"{_fmt(c.get('tflops_achieved'), '.1f')} |")
    lines += ["", "| family | parameters | GFLOPs/clip | input |", "| --- | ---: | ---: | --- |"]
    for name, fam in report["families"].items():
        if "error" in fam:
            lines.append(f"| {name} | - | - | not built: {fam['error']} |")
        else:
            lines.append(f"| {name} | {fam['params']:,} | {_fmt(fam.get('gflops_per_clip'), '.2f')} | {fam['input']} |")
    errs = [r for r in rows if r.get("status") not in ("ok", None)]
    if errs:
        lines += ["", "Failed configurations:"] + [f"- {r['family']}/b{r['batch']}/{r['mode']}/{r['precision']}: "
                                                  f"{r['status']} ({r.get('error', '')})" for r in errs]
    if report["skipped"]:
        lines += ["", f"Skipped after the {report['args']['budget_s']:g} s budget: "
                  + ", ".join(s["key"] for s in report["skipped"])]
    nv = report["nvdec"]
    lines += ["", "NVDEC: " + (nv.get("summary") or "available")]
    for name, p in nv.get("paths", {}).items():
        extra = (f"{p['frames_per_s']:.0f} frames/s, x{p['over_cpu']:.2f} CPU decoding" if p["status"] == "ok"
                 else p.get("reason", ""))
        lines.append(f"- {name}: {p['status']} {extra}")
    return "\n".join(lines) + "\n"


def build_report(env: dict, args: argparse.Namespace, families: list[str], batches: list[int], iters: int,
                 warmup: int, fam_info: dict, results: list[dict], skipped: list[dict], nvdec: dict, t_start: float,
                 *, partial: bool = False) -> dict:
    """The JSON report (``FORMAT``); ``partial`` marks a file written mid-run."""
    return {"format": FORMAT, "partial": partial, "env": env,
            "args": {"quick": args.quick, "families": families, "batches": batches, "iters": iters, "warmup": warmup,
                     "budget_s": args.budget_s, "max_config_s": args.max_config_s, "train": not args.no_train},
            "families": fam_info, "results": results, "ratios": ratios(results), "skipped": skipped,
            "nvdec": nvdec, "wall_s": time.perf_counter() - t_start}


def write_report(out_dir: Path, report: dict) -> tuple[Path, Path]:
    """``gpu_bench.json`` (strict JSON: non-finite numbers become null) and ``gpu_bench.md``, atomically."""
    def finite(x):
        if isinstance(x, float):
            return x if math.isfinite(x) else None
        if isinstance(x, dict):
            return {k: finite(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [finite(v) for v in x]
        return x
    text = json.dumps(finite(report), indent=1, allow_nan=False, default=str)
    return (atomic_write_text(out_dir / "gpu_bench.json", text + "\n"),
            atomic_write_text(out_dir / "gpu_bench.md", markdown(report)))


def plan_cases(families: list[str], batches: list[int], *, train: bool) -> list[Case]:
    """Batch by batch (smallest first), family by family; bf16 before fp32, inference before training."""
    cases = []
    for b in batches:
        for f in families:
            for mode in ("infer", "train") if train else ("infer",):
                if mode == "train" and f not in TRAINED:
                    continue
                cases += [Case(f, b, mode, p) for p in ("bf16", "fp32")]
    return cases


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_gpu", description=__doc__.split("\n\n")[0],
                                 epilog="Families: micro_dualnet (preset ma52), mmn (MMNConfig defaults), manet (preset "
                                        "ma52; inference only). --quick uses each family's tiny preset.",
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda (the real run) or cpu (with --quick: a test run)")
    ap.add_argument("--quick", action="store_true", help="tiny presets, batches 2 and 4, 2 timed calls")
    ap.add_argument("--families", default=",".join(FAMILIES), help=f"comma list of {', '.join(FAMILIES)}")
    ap.add_argument("--batches", default=None, help="comma list (default 64,256; --quick 2,4)")
    ap.add_argument("--iters", type=int, default=None, help="timed calls per configuration (default 10; --quick 2)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed calls first (default 3; --quick 1)")
    ap.add_argument("--max-config-s", type=float, default=20.0, help="stop timing one configuration after this")
    ap.add_argument("--budget-s", type=float, default=480.0,
                    help="after this many seconds the remaining configurations are skipped and listed")
    ap.add_argument("--no-train", action="store_true", help="inference only")
    ap.add_argument("--no-nvdec", action="store_true", help="skip the NVDEC check")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--out", type=Path, default=None, help="folder for gpu_bench.json / .md (default $OUT or ./gpu-bench-out)")
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    bad = sorted(set(families) - set(FAMILIES))
    if bad:
        print(f"error: --families: unknown {bad}; choose from {', '.join(FAMILIES)}", file=sys.stderr)
        return 2
    try:
        batches = [int(b) for b in (args.batches or ("2,4" if args.quick else "64,256")).split(",")]
    except ValueError:
        print(f"error: --batches: {args.batches!r} is not a comma list of integers", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda: torch sees no CUDA device (use --device cpu --quick for a test run)", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    iters = args.iters or (2 if args.quick else 10)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    out_dir = args.out or Path(os.environ.get("OUT") or "gpu-bench-out")
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    env = {"torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
           "device": str(device),
           "device_name": torch.cuda.get_device_name(device) if cuda else f"CPU ({torch.get_num_threads()} threads)",
           "cudnn": torch.backends.cudnn.version() if cuda else None,
           "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32, "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
           "total_mem_mib": torch.cuda.get_device_properties(device).total_memory / 2**20 if cuda else None}
    print(f"bench_gpu: {env['device_name']}, torch {env['torch']} (CUDA {env['cuda']}), families {families}, "
          f"batches {batches}, {iters} timed calls after {warmup} warm-up, budget {args.budget_s:g} s", flush=True)

    cases = plan_cases(families, batches, train=not args.no_train)
    results: list[dict] = []
    skipped: list[dict] = []
    fam_info: dict[str, dict] = {}
    built: dict[str, Built | None] = {}
    for case in cases:
        left = args.budget_s - (time.perf_counter() - t_start)
        if left <= 0:
            skipped.append({"key": case.key, "family": case.family, "batch": case.batch, "mode": case.mode,
                            "precision": case.precision, "reason": "budget"})
            continue
        if case.family not in built:
            try:
                b = build_family(case.family, quick=args.quick, device=device)
                info = {"params": count_parameters(b.model), "input": b.shape}
                try:
                    info["gflops_per_clip"] = family_gflops(b)
                except Exception as exc:  # noqa: BLE001 - FLOPs are a bonus column
                    info["gflops_error"] = f"{type(exc).__name__}: {exc}"
                built[case.family], fam_info[case.family] = b, info
            except Exception as exc:  # noqa: BLE001 - e.g. a package missing on the device machine
                built[case.family] = None
                fam_info[case.family] = {"error": f"{type(exc).__name__}: {exc}"}
        b = built[case.family]
        if b is None:
            row = {"family": case.family, "batch": case.batch, "mode": case.mode, "precision": case.precision,
                   "status": "error", "error": "model not built: " + fam_info[case.family]["error"]}
        else:
            row = run_case(case, b, device, warmup=warmup, iters=iters, max_s=min(args.max_config_s, max(left, 0.1)),
                           gflops=fam_info[case.family].get("gflops_per_clip"))
        results.append(row)
        done = (f"{row['clips_per_s']:10.1f} clips/s  {row['ms_per_batch']:9.2f} ms/batch" if row["status"] == "ok"
                else f"{row['status']}: {row.get('error', '')}")
        mem = f"  peak {row['peak_mem_mib']:.0f} MiB" if "peak_mem_mib" in row else ""
        print(f"  {case.key:<32} {done}{mem}", flush=True)
        # Partial files after every configuration: a run stopped from outside still leaves its figures.
        write_report(out_dir, build_report(env, args, families, batches, iters, warmup, fam_info, results, skipped,
                                           {"paths": {}, "available": False, "summary": "not checked yet (partial file)"},
                                           t_start, partial=True))

    if args.no_nvdec:
        nvdec = {"paths": {}, "available": False, "summary": "not checked (--no-nvdec)"}
    elif args.budget_s - (time.perf_counter() - t_start) <= 0:
        nvdec = {"paths": {}, "available": False, "summary": "skipped: budget spent"}
        skipped.append({"key": "nvdec", "reason": "budget"})
    else:
        nvdec = nvdec_check(device, quick=args.quick)

    for fam in FAMILIES:
        if fam in families and fam not in fam_info:
            fam_info[fam] = {"error": "every configuration skipped"}
    report = build_report(env, args, families, batches, iters, warmup, fam_info, results, skipped, nvdec, t_start)
    print()
    print(markdown(report))
    for path in write_report(out_dir, report):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
