"""Checkpoints: everything inference needs in one file, and the training state in another.

A model checkpoint (``save_checkpoint`` / ``load_checkpoint``) is a ``torch.save`` of plain data
only (dicts, lists, str, numbers, bool, None, tensors), so ``torch.load(weights_only=True)`` reads
it without running or importing any of this project's code::

    {"format": "microaction-model/3",
     "family": "micro_dualnet" | "mmn" | "manet",       # model.families.FAMILIES
     "config": <family config>.to_dict(),             # architecture + loss + ablation switches
     "state_dict": {name: tensor},                     # unwrapped (no _orig_mod. / module. prefixes)
     "classes": ClassList.to_dict(),                   # output i -> name, MA-52 id (None: background)
     "preprocessing": Preprocessing.to_dict(),         # region, resize_short, size, mean, std
     "window_plan": WindowPlan.to_dict(),              # clip_len, stride, hop_s, ...
     "entities": EntityDefinition.to_dict(),           # Micro-DualNet only: Eq. 1 joints, keypoint format, theta
     "provenance": {"training_data", "trained_on", "metrics", "date", "code_version", "torch", ...}}

One format for every family: the family's own plain data (``ModelFamily.state``: Micro-DualNet's
entity definition) is stored at the top level beside the common entries. Files of the previous
format ``micro-dualnet/2`` (no "family" entry) are read as Micro-DualNet checkpoints.

The training state (``save_training_state``) is a separate file of the same kind: optimizer,
scheduler and grad-scaler state dicts, epoch, step, and the RNG states of Python, NumPy and torch
(CPU and every CUDA device), so a resumed run draws the same random numbers as an uninterrupted one.

Writes are atomic: the bytes go to a temporary file in the destination folder (created with mode
0o666, so the process umask applies as for any new file, not 0600), are flushed and fsynced, then
renamed over the destination. A crash or error mid-write leaves the old file untouched and no
temporary file behind. (Written here rather than with ``pipeline.artifacts``: ``model/`` is the
bottom layer and may not import ``pipeline/``; and ``torch.save`` streams into the open file, so
the checkpoint is never held twice in memory.)

Reading errors are :class:`CheckpointError` (a ``ValueError``) with one line that names the file:
missing file, truncated or corrupt bytes, a file that is not a checkpoint of this format, or one
that pickles Python objects (refused: a checkpoint never needs code to load).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import os
import pickle
import random
import re
import secrets
import subprocess
import zipfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from model.entities import EntityDefinition
from model.families import FamilyUnavailable, ModelFamily, family_of, get_family
from model.preprocessing import ClassList, Preprocessing
from model.windows import WindowPlan

__all__ = [
    "CHECKPOINT_FORMAT", "READABLE_FORMATS", "TRAINING_STATE_FORMAT", "Checkpoint", "CheckpointError", "save_checkpoint",
    "load_checkpoint", "save_training_state", "load_training_state", "restore_training_state", "unwrap_model",
    "code_version",
]

CHECKPOINT_FORMAT = "microaction-model/3"
READABLE_FORMATS = (CHECKPOINT_FORMAT, "micro-dualnet/2")
"""Formats :func:`load_checkpoint` reads; ``micro-dualnet/2`` is a Micro-DualNet file of the previous format."""
TRAINING_STATE_FORMAT = "micro-dualnet-training/1"
_PACKAGE = "microaction-cohort"


class CheckpointError(ValueError):
    """A checkpoint or training-state file that cannot be used; the message is one line naming the file."""


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns: a ready model and everything needed to feed it.

    Attributes
    ----------
    model : nn.Module
        Rebuilt from the config and weights, in eval mode, on ``map_location``.
    config : the family's config (``MicroDualNetConfig``, ``MMNConfig``, ...)
    classes : ClassList
        What output ``i`` of the logits means.
    preprocessing : Preprocessing
        Pixel preprocessing used in training (crop region, resize, size, normalisation).
    plan : WindowPlan
        Window plan the model was trained for (frames per clip, stride, hop).
    entities : EntityDefinition or None
        Micro-DualNet: the entity boxes (Eq. 1) it was trained with; None for other families.
    provenance : dict
        Training data, ``trained_on``, metrics, date, code version, torch version, user fields.
    sha256 : str
        Hex sha256 of the file's bytes (for sidecars / config hashes of downstream artifacts).
    path : Path
    family : ModelFamily
        What the model is (:mod:`model.families`): its inputs per window, forward, loss.
    state : dict
        The family's own plain data from the file (``ModelFamily.state``).
    """

    model: nn.Module
    config: Any
    classes: ClassList
    preprocessing: Preprocessing
    plan: WindowPlan
    entities: EntityDefinition | None
    provenance: dict[str, Any]
    sha256: str
    path: Path = field(default_factory=Path)
    family: ModelFamily = field(default_factory=lambda: get_family("micro_dualnet"))
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def inputs(self) -> frozenset[str]:
        """What the model reads per window: a subset of {"pixels", "keypoints"}."""
        return self.family.inputs(self.config)

    @property
    def uses_pixels(self) -> bool:
        """False: the model runs from keypoints alone (the recognition stage never decodes the video)."""
        return self.family.uses_pixels(self.config)

    @property
    def keypoint_joints(self) -> int:
        return self.family.keypoint_joints(self.config, self.state)

    @property
    def keypoint_threshold(self) -> float:
        return self.family.keypoint_threshold(self.config, self.state)

    @property
    def part_names(self) -> list[str]:
        """Entity names of the routing column (empty for families without routing)."""
        return self.family.part_names(self.config, self.state)

    def forward(self, frames: torch.Tensor | None, keypoints: torch.Tensor | None):
        """The family's forward on this model -> :class:`model.families.FamilyOutput`."""
        return self.family.forward(self.model, frames, keypoints)


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain model inside ``torch.compile`` / DataParallel / DDP wrappers.

    Their ``state_dict`` prefixes every key (``_orig_mod.``, ``module.``), which a freshly built
    model would not load; checkpoints always store the unwrapped names.
    """
    while True:
        inner = getattr(model, "_orig_mod", None)
        if inner is None and isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            inner = model.module
        if inner is None:
            return model
        model = inner


def code_version() -> str:
    """``git describe --always --dirty --tags`` of this source tree, else ``<package> <version>``."""
    root = Path(__file__).resolve().parents[1]
    try:
        res = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"], cwd=root, capture_output=True,
                             text=True, timeout=10)
        if res.returncode == 0 and res.stdout.strip():
            return f"git {res.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        return f"{_PACKAGE} {metadata.version(_PACKAGE)}"
    except metadata.PackageNotFoundError:
        return "unknown"


def _check_plain(value: Any, where: str) -> None:
    """Raise TypeError unless ``value`` is data ``torch.load(weights_only=True)`` can read back."""
    # Exact types: a str subclass (e.g. torch.__version__, an Enum) pickles as its class.
    if value is None or type(value) in (bool, int, float, str) or isinstance(value, torch.Tensor):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: key {k!r} is a {type(k).__name__}; use str keys")
            _check_plain(v, f"{where}[{k!r}]")
        return
    if isinstance(value, np.generic):
        raise TypeError(f"{where} is a NumPy scalar ({type(value).__name__}); convert it with .item()")
    raise TypeError(f"{where} is a {type(value).__name__}; checkpoints hold plain data only "
                    "(str, numbers, bool, None, lists, dicts, tensors)")


def _atomic_torch_save(obj: Any, path: Path) -> Path:
    """``torch.save`` to a temporary file in ``path``'s folder, fsync, rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # os.open with 0o666: the umask applies as for any new file (mkstemp would force 0600).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _read(path: Path, what: str) -> tuple[Any, str]:
    """``torch.load(weights_only=True)`` of ``path`` -> (object, sha256), every failure a CheckpointError."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: {what} file not found") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a folder, not a {what} file") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read {what} file ({_one_line(exc.strerror or exc)})") from None
    sha = hashlib.sha256(data).hexdigest()
    if not data:
        raise CheckpointError(f"{path}: empty file, not a {what}")
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        if "weights_only" in msg or "Unsupported global" in msg or "GLOBAL" in msg:
            found = re.search(r"GLOBAL ([\w.]+)", msg)
            name = f" ({found.group(1)})" if found else ""
            raise CheckpointError(
                f"{path}: refused to load: the file pickles Python objects{name}; a {what} holds plain data "
                f"only, so this file was not written by this project and may run code when unpickled") from None
        raise CheckpointError(f"{path}: truncated or corrupt {what} file ({_one_line(msg)})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, KeyError, IndexError, OSError) as exc:
        raise CheckpointError(f"{path}: truncated or corrupt {what} file "
                              f"({type(exc).__name__}: {_one_line(exc)})") from None
    return obj, sha


# --------------------------------------------------------------------------------------------------
# Model checkpoints
# --------------------------------------------------------------------------------------------------


def save_checkpoint(path: Path | str, model: nn.Module, *, classes: ClassList, preprocessing: Preprocessing,
                    plan: WindowPlan, provenance: dict[str, Any] | None = None) -> Path:
    """Write a model checkpoint atomically (module docstring has the layout); returns ``path``.

    Parameters
    ----------
    model : a registered family's model (:mod:`model.families`)
        Possibly wrapped by ``torch.compile`` / DataParallel / DDP (unwrapped first).
    classes : ClassList
        Must have ``config.num_classes`` entries.
    preprocessing : Preprocessing
    plan : WindowPlan
        Its ``clip_len`` is the T the model was trained with (it need not equal ``config.num_frames``,
        which is informative; the model accepts any T).
    provenance : dict, optional
        Plain data. Conventional keys: ``training_data`` (str), ``trained_on`` (e.g. "MA-52",
        "simulated": say so when the data were not real), ``metrics`` (dict). ``date`` (UTC, ISO
        8601), ``code_version`` and ``torch`` are filled in unless given.
    """
    model = unwrap_model(model)
    family = family_of(model)  # TypeError for a model of no registered family
    cfg = model.cfg
    if not isinstance(classes, ClassList):
        raise TypeError(f"classes must be a model.preprocessing.ClassList, got {type(classes).__name__}")
    if not isinstance(preprocessing, Preprocessing):
        raise TypeError(f"preprocessing must be a model.preprocessing.Preprocessing, got {type(preprocessing).__name__}")
    if not isinstance(plan, WindowPlan):
        raise TypeError(f"plan must be a model.windows.WindowPlan, got {type(plan).__name__}")
    if len(classes) != cfg.num_classes:
        raise ValueError(f"the class list has {len(classes)} classes but the model outputs {cfg.num_classes}")
    prov: dict[str, Any] = {
        "training_data": None, "trained_on": None, "metrics": {},
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "code_version": code_version(), "torch": str(torch.__version__),
        **(provenance or {}),
    }
    _check_plain(prov, "provenance")
    state = family.state(model)
    common = {"format", "family", "config", "state_dict", "classes", "preprocessing", "window_plan", "provenance"}
    if set(state) & common:
        raise ValueError(f"family {family.name} state uses reserved keys {sorted(set(state) & common)}")
    obj = {
        "format": CHECKPOINT_FORMAT,
        "family": family.name,
        "config": cfg.to_dict(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "classes": classes.to_dict(),
        "preprocessing": preprocessing.to_dict(),
        "window_plan": plan.to_dict(),
        **state,
        "provenance": prov,
    }
    _check_plain(state, "family state")
    _check_plain(obj["config"], "config")
    return _atomic_torch_save(obj, Path(path))


def load_checkpoint(path: Path | str, *, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint of :func:`save_checkpoint` with ``weights_only=True`` and rebuild its model.

    The model is in eval mode on ``map_location`` and uses the stored entity definition. Raises
    :class:`CheckpointError` (one line naming the file) for a missing, truncated, corrupt, unsafe or
    foreign file, or one whose weights do not fit its own config.
    """
    path = Path(path)
    obj, sha = _read(path, "checkpoint")
    if not isinstance(obj, dict) or "format" not in obj:
        raise CheckpointError(f"{path}: not a model checkpoint of this project (Micro-DualNet, MMN, ...: no 'format' "
                              "entry; a bare state dict or another program's file?)")
    if obj["format"] not in READABLE_FORMATS:
        raise CheckpointError(f"{path}: checkpoint format {obj['format']!r}, this code reads "
                              f"{' or '.join(map(repr, READABLE_FORMATS))}"
                              + (" (format 1 stored no class list, preprocessing or window plan; retrain or re-save)"
                                 if obj["format"] == "micro-dualnet/1" else ""))
    family_name = obj.get("family", "micro_dualnet") if obj["format"] == CHECKPOINT_FORMAT else "micro_dualnet"
    required = ("config", "state_dict", "classes", "preprocessing", "window_plan", "provenance")
    if family_name == "micro_dualnet":
        required += ("entities",)
    missing = [k for k in required if k not in obj]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    try:
        family = get_family(family_name)
        config = family.config_class.from_dict(obj["config"])
        classes = ClassList.from_dict(obj["classes"])
        preprocessing = Preprocessing.from_dict(obj["preprocessing"])
        plan = WindowPlan.from_dict(obj["window_plan"])
        common = set(required) | {"format", "family"}
        state = {k: v for k, v in obj.items() if k not in common or k == "entities"}
        entities = EntityDefinition.from_dict(obj["entities"]) if "entities" in obj else None
    except FamilyUnavailable as exc:
        raise CheckpointError(f"{path}: {_one_line(exc)}") from None
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        raise CheckpointError(f"{path}: invalid checkpoint contents ({_one_line(exc)})") from None
    if len(classes) != config.num_classes:
        raise CheckpointError(f"{path}: {len(classes)} class names for {config.num_classes} model outputs")
    try:
        model = family.build(config, state)
    except ValueError as exc:
        raise CheckpointError(f"{path}: cannot rebuild the model ({_one_line(exc)})") from None
    state = obj["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: 'state_dict' is a {type(state).__name__}, not a dict of tensors")
    result = model.load_state_dict(state, strict=False)
    own = model.state_dict()
    mis_shaped = [k for k, v in state.items() if k in own and isinstance(v, torch.Tensor) and v.shape != own[k].shape]
    if result.missing_keys or result.unexpected_keys or mis_shaped:
        parts = []
        for title, keys in (("missing", result.missing_keys), ("unexpected", result.unexpected_keys),
                            ("mis-shaped", mis_shaped)):
            if keys:
                parts.append(f"{len(keys)} {title} (e.g. {keys[0]})")
        raise CheckpointError(f"{path}: weights do not fit the stored config: {'; '.join(parts)}")
    model.to(map_location).eval()
    prov = obj["provenance"] if isinstance(obj["provenance"], dict) else {}
    return Checkpoint(model=model, config=config, classes=classes, preprocessing=preprocessing, plan=plan,
                      entities=entities, provenance=prov, sha256=sha, path=path, family=family, state=state)


# --------------------------------------------------------------------------------------------------
# Training state (resume)
# --------------------------------------------------------------------------------------------------


def _rng_state() -> dict[str, Any]:
    """RNG states as plain data: Python (tuple of ints), NumPy legacy global (list form), torch (uint8 tensors)."""
    np_state = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"bit_generator": np_state[0], "key": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["bit_generator"], n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available():
        if len(cuda) != torch.cuda.device_count():
            # Another machine: restore what fits (device i keeps its own stream either way).
            cuda = cuda[: torch.cuda.device_count()]
        for i, s in enumerate(cuda):
            torch.cuda.set_rng_state(s.cpu(), i)


def save_training_state(path: Path | str, *, optimizer: torch.optim.Optimizer, scheduler: Any = None,
                        scaler: Any = None, epoch: int, step: int = 0, extra: dict[str, Any] | None = None) -> Path:
    """Write optimizer / scheduler / scaler state, epoch, step and all RNG states, atomically.

    ``epoch`` is the number of epochs completed (resume starts there); ``extra`` is plain data (e.g.
    best metric so far). Read back with :func:`load_training_state`, apply with
    :func:`restore_training_state`.
    """
    obj = {
        "format": TRAINING_STATE_FORMAT,
        "epoch": int(epoch),
        "step": int(step),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": _rng_state(),
        "extra": extra or {},
    }
    _check_plain(obj["extra"], "extra")
    _check_plain(obj["scheduler"], "scheduler state")
    return _atomic_torch_save(obj, Path(path))


def load_training_state(path: Path | str) -> dict[str, Any]:
    """Read a training-state file (``weights_only=True``); :class:`CheckpointError` when unusable."""
    path = Path(path)
    obj, _ = _read(path, "training state")
    if not isinstance(obj, dict) or obj.get("format") != TRAINING_STATE_FORMAT:
        found = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{path}: not a training-state file ({TRAINING_STATE_FORMAT}); found {found!r}")
    missing = [k for k in ("epoch", "step", "optimizer", "rng") if k not in obj]
    if missing:
        raise CheckpointError(f"{path}: training state lacks {', '.join(missing)}")
    return obj


def restore_training_state(state: dict[str, Any], *, optimizer: torch.optim.Optimizer, scheduler: Any = None,
                           scaler: Any = None) -> dict[str, Any]:
    """Load optimizer / scheduler / scaler states and the RNG states from :func:`load_training_state`.

    Returns ``state`` (``state["epoch"]``, ``state["step"]``, ``state["extra"]``). A scheduler or
    scaler passed here whose state the file lacks (or the reverse) is an error: resuming with a
    fresh schedule would silently restart the learning rate.
    """
    for name, obj in (("scheduler", scheduler), ("scaler", scaler)):
        if (obj is None) != (state.get(name) is None):
            have = "was saved without one" if state.get(name) is None else "has one but none was passed"
            raise ValueError(f"training state {name}: the file {have}")
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    if scaler is not None:
        scaler.load_state_dict(state["scaler"])
    _set_rng_state(state["rng"])
    return state
