"""What a recognition run is asked to do: its settings (:class:`RecognizeOptions`), its unit of work
(:class:`RecognizeJob`), and the start-up checks of those settings against the checkpoint
(:func:`check_checkpoint`) and the machine (:func:`check_device`).

Everything here is checked before the first video: a failure is :class:`pipeline.cli.BadInput` (the
CLI's exit 2 with one line), never a per-video failure.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from pydantic import Field

from model.checkpoint import Checkpoint
from model.preprocessing import ClassList
from model.windows import WindowPlan
from pipeline.cli import BadInput
from pipeline.stage import Job
from pipeline.window_feed import FEED_KINDS

__all__ = ["RecognitionSettings", "RecognizeOptions", "RecognizeJob", "check_checkpoint", "check_device", "parse_device",
           "DECODERS", "DEVICE_TYPES", "MAX_BATCH_SIZE"]

DECODERS = ("cpu", "nvdec")
DEVICE_TYPES = ("cpu", "cuda")  # what the engine handles (pinned host buffers, bf16 autocast on CUDA)
MAX_BATCH_SIZE = 4096
"""The flow's bound (``flows.params.RecognitionSettings.batch_size``). The batch buffer is allocated
once at start, ``batch_size x T x 3 x S x S`` bytes: 4096 windows of the MA-52 preset (T = 8, S = 224)
are 4.9 GB, while 10^9 would be 1.2 PB; so the bound is checked when the options are made."""


@dataclass(frozen=True)
class RecognitionSettings:
    """What a user chooses about recognition wherever it runs: the one source of truth for
    ``python -m pipeline.recognize``'s flags and the flow's ``recognition`` parameters
    (:mod:`pipeline.settings`). Per-process choices (decode workers, torch threads, explicit plan or
    class-list expectations, ``--force``) stay CLI options; :meth:`options` adds them.

    Attributes: see :class:`RecognizeOptions` (same names, same meaning).
    """

    device: Annotated[str, Field(pattern=r"^(cpu|cuda(:[0-9]+)?)$", description=(
        "cpu, cuda or cuda:N (the CLI checks it at start: exit 2 if unusable here; the flow sends cuda "
        "tasks to GPU workers)"))] = "cpu"
    batch_size: Annotated[int, Field(ge=1, le=MAX_BATCH_SIZE, description="windows per forward pass (across videos)",
                                     json_schema_extra={"metavar": "N"})] = 32
    amp: Annotated[bool, Field(description="bf16 autocast on CUDA (ignored on CPU, which runs fp32)")] = True
    compile: Annotated[bool, Field(description="torch.compile the model (CUDA, long runs)")] = False
    channels_last: Annotated[bool, Field(description="NHWC convolutions (tensor cores on CUDA; neutral on CPU)")] = True
    min_valid: Annotated[float, Field(ge=0, le=1, description=(
        "least share of a window's sampled frames with a usable pose; windows below get null probabilities"),
        json_schema_extra={"metavar": "SHARE"})] = 0.5
    decoder: Annotated[Literal[DECODERS], Field(description="nvdec: GPU decoding via torchcodec (CPU fallback)")] = "cpu"

    def options(self, **run: object) -> "RecognizeOptions":
        """The run's :class:`RecognizeOptions`: these settings plus per-run ones (``workers``, ``plan``, ...)."""
        return RecognizeOptions(**dataclasses.asdict(self), **run)


@dataclass(frozen=True)
class RecognizeOptions:
    """Settings of a recognition run.

    Only ``min_valid``, the precision (``amp`` on CUDA) and the checkpoint enter the outputs' config
    hash: batch size, workers, compile and channels_last do not change results.

    Attributes
    ----------
    device : "cpu", "cuda" or "cuda:N"
    batch_size : windows per forward pass (across videos), 1 to :data:`MAX_BATCH_SIZE`
    workers : decode workers; 0 decodes in the main thread (no overlap with the model)
    worker_kind : "thread" (default: no process start, measured faster on 2 cores) or "process" (a decoder
        crash fails only its video; no GIL contention on many cores); docs/recognize.md, Tuning
    amp : bf16 autocast on CUDA (ignored on CPU, which runs fp32)
    compile : ``torch.compile`` the model (CUDA; worth it for long runs only)
    channels_last : NHWC convolutions (tensor cores on CUDA; neutral on CPU)
    min_valid : windows whose share of sampled frames with a usable pose is below this get null probs
    decoder : "cpu" (OpenCV/FFmpeg) or "nvdec" (torchcodec on the GPU; falls back to "cpu" with a
        warning when torchcodec or CUDA is missing)
    plan, classes : explicit expectations; a checkpoint that disagrees is refused (exit 2)
    max_pending : windows buffered between the decode workers and the model
    """

    device: str = "cpu"
    batch_size: int = 32
    workers: int = 1
    worker_kind: str = "thread"
    amp: bool = True
    compile: bool = False
    channels_last: bool = True
    min_valid: float = 0.5
    decoder: str = "cpu"
    plan: WindowPlan | None = None
    classes: ClassList | None = None
    max_pending: int = 0  # 0: twice the batch size

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch size must be in 1..{MAX_BATCH_SIZE}, got {self.batch_size}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.worker_kind not in FEED_KINDS:
            raise ValueError(f"worker kind must be one of {', '.join(FEED_KINDS)}, got {self.worker_kind!r}")
        if not 0.0 <= self.min_valid <= 1.0:
            raise ValueError(f"min-valid must be in [0, 1], got {self.min_valid}")
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {self.decoder!r}")

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    @property
    def precision(self) -> str:
        return "bf16" if self.amp and self.torch_device.type == "cuda" else "fp32"


@dataclass(frozen=True)
class RecognizeJob(Job):
    """One video: ``source`` is the video, ``keypoints`` its keypoints Parquet file."""

    keypoints: str = ""


def parse_device(device: str) -> torch.device:
    """The torch device ``device`` names if the engine handles its type (no availability check: the
    flow's tasks may run on other machines); else BadInput (one line)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):  # torch's text lists twenty device types: not useful here
        raise BadInput(f"--device {device}: not a device torch knows (use cpu, cuda or cuda:N)") from None
    if dev.type not in DEVICE_TYPES:
        raise BadInput(f"--device {device}: recognition runs on {' or '.join(DEVICE_TYPES)} (cuda:N), not {dev.type}")
    return dev


def check_device(device: str) -> torch.device:
    """The torch device ``device`` names, if this machine can run the model on it; else BadInput (one line).

    Refused: a name torch does not parse (``tpu``), a type the engine does not handle (``mps``, ``meta``:
    only :data:`DEVICE_TYPES`), CUDA where torch sees no CUDA device, ``cuda:N`` beyond the devices
    present. Checked once at start-up, so a bad ``--device`` is exit 2 rather than every video failing.
    """
    dev = parse_device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BadInput(f"--device {device}: CUDA is not available on this machine")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise BadInput(f"--device {device}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
    return dev


def check_checkpoint(ckpt: Checkpoint, options: RecognizeOptions) -> None:
    """Refuse a checkpoint whose plan or class list conflicts with an explicit option (BadInput, one line)."""
    if options.plan is not None and options.plan != ckpt.plan:
        raise BadInput(f"{ckpt.path}: the checkpoint's window plan {dataclasses.asdict(ckpt.plan)} conflicts with the "
                       f"requested {dataclasses.asdict(options.plan)} (drop --clip-len/--stride/--hop to use the "
                       "checkpoint's)")
    if options.classes is not None and options.classes != ckpt.classes:
        diff = next((i for i, (a, b) in enumerate(zip(ckpt.classes.names, options.classes.names)) if a != b),
                    min(len(ckpt.classes), len(options.classes)))
        raise BadInput(f"{ckpt.path}: the checkpoint's class list ({len(ckpt.classes)} classes) differs from "
                       f"--classes ({len(options.classes)} classes) at position {diff}")
