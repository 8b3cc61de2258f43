"""Trimmed, labelled training clips: one MP4 per clip, one action filling the clip.

Each clip has its own participant look (drawn from the clip's seed), idle behaviour, and one event of
its class over all its frames (MA-52 clips are trimmed to the action); a ``background`` clip has idle
behaviour only. Durations are uniform in ``duration_s`` (1-3 s). Clip ``j`` of class ``c`` uses the
random stream ``(seed, c, j)``, so clips from different seeds never share a look or a motion.

Outputs in ``OUT`` (what ``python -m recipes.prepare_clips --list OUT/clips.txt --data-root OUT``
reads; pass ``--classes "$(cat OUT/classes.txt)"``):

- ``clips/<class-slug>-<jjjj>.mp4``
- ``clips.txt``: MA-52 list form ``<video> <label>``, the label being the **MA-52 action index**
  (``background`` for background clips), the video relative to ``OUT``
- ``clips.csv``: ``video,label,class_index,action_id,duration_s``, label = action name,
  ``class_index`` = index into ``classes.json``
- ``classes.json``: ``{"names": [...], "taxonomy_ids": [...]}`` (:class:`model.preprocessing.ClassList`,
  the simulated actions in MA-52 order, then ``background`` with id null)
- ``classes.txt``: the same class list in ``--classes`` form (comma-separated names)
"""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd

from model.preprocessing import BACKGROUND, ClassList
from model.taxonomy import MA52
from pipeline.artifacts import atomic_write_text, read_sidecar, atomic_write_bytes, config_hash
from simulator.appearance import LookRanges, sample_look
from simulator.motions import ACTIONS, DURATION_S, PROGRAMS, idle_controls
from simulator.render import Renderer, write_mp4
from simulator.skeleton import skeleton_at

__all__ = ["ClipConfig", "class_list", "clip_frames", "write_clips", "slug"]


@dataclass(frozen=True)
class ClipConfig:
    """Attributes: ``per_class`` clips of each class; ``actions`` (default: all simulated);
    ``background`` adds the idle class last; ``size`` (width, height); ``fps``; ``duration_s``;
    ``seed``; ``look`` ranges."""

    per_class: int = 10
    actions: tuple[str, ...] = ACTIONS
    background: bool = True
    size: tuple[int, int] = (320, 384)
    fps: float = 30.0
    duration_s: tuple[float, float] = DURATION_S
    seed: int = 0
    look: LookRanges = field(default_factory=LookRanges)

    def __post_init__(self) -> None:
        for a in self.actions:
            if a not in PROGRAMS:
                raise ValueError(f"no motion program for action {a!r}; simulated: {', '.join(PROGRAMS)}")
        if self.per_class < 1:
            raise ValueError(f"per_class must be >= 1, got {self.per_class}")
        if not (self.size[0] >= 64 and self.size[1] >= 64):
            raise ValueError(f"size must be at least 64x64, got {self.size[0]}x{self.size[1]}")


def class_list(config: ClipConfig) -> ClassList:
    """The clips' classes: the actions in MA-52 order, then background if asked."""
    ordered = sorted(config.actions, key=MA52.index)
    return ClassList.from_actions(ordered, background=config.background)


def slug(name: str) -> str:
    return name.replace(" ", "_")


def clip_frames(name: str, class_index: int, j: int, config: ClipConfig):
    """Yield the BGR frames of clip ``j`` of class ``name`` (an action or ``background``); also usable
    without writing a file (tests, contact sheets)."""
    rng = np.random.default_rng([config.seed, class_index, j])
    n = max(2, int(round(rng.uniform(*config.duration_s) * config.fps)))
    look = sample_look(rng, config.size, ranges=config.look)
    renderer = Renderer(look, seed=int(rng.integers(2**31)))
    controls = idle_controls(n, config.fps, rng)
    if name != BACKGROUND:
        PROGRAMS[name].plant(controls, 0, n, config.fps, rng)
    for i in range(n):
        yield renderer.render(skeleton_at(look.body, controls, i), i / config.fps)


def _write_one(args) -> tuple[str, int, bool]:
    name, ci, j, config, path = args
    path = Path(path)
    stamp = path.with_name(path.name + ".json")
    record = {"class": name, "j": j, "config": asdict(config), "version": 1}
    done = read_sidecar(path) if path.is_file() else None
    if done and done.get("config_hash") == config_hash(record):
        return str(path), int(done["frames"]), False
    n = write_mp4(path, clip_frames(name, ci, j, config), fps=config.fps, size=config.size)
    atomic_write_bytes(stamp, json.dumps({"config_hash": config_hash(record), "frames": n}).encode())
    return str(path), n, True


def write_clips(config: ClipConfig, out: str | Path, *, workers: int = 1, on_done=None) -> dict[str, list[Path]]:
    """Render all clips and the lists into ``out`` (module docstring). Clips whose sidecar matches
    are kept (resume). Returns ``{"written": [...], "skipped": [...]}``."""
    out = Path(out)
    classes = class_list(config)
    jobs = []
    rows = []
    for ci, name in enumerate(classes.names):
        for j in range(config.per_class):
            rel = f"clips/{slug(name)}-{j:04d}.mp4"
            jobs.append((name, ci, j, config, str(out / rel)))
            tid = classes.taxonomy_ids[ci]
            rows.append({"video": rel, "label": name, "class_index": ci, "action_id": -1 if tid is None else tid,
                         "ma52_label": BACKGROUND if tid is None else str(tid)})
    written, skipped = [], []
    if workers > 1:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            results = []
            for r in pool.map(_write_one, jobs):
                results.append(r)
                if on_done:
                    on_done()
    else:
        results = []
        for job in jobs:
            results.append(_write_one(job))
            if on_done:
                on_done()
    for row, (path, n, rendered) in zip(rows, results):
        row["duration_s"] = round(n / config.fps, 4)
        (written if rendered else skipped).append(Path(path))
    lst = "".join(f"{r['video']} {r['ma52_label']}\n" for r in rows)
    table = pd.DataFrame(rows)[["video", "label", "class_index", "action_id", "duration_s"]]
    files = {
        out / "clips.txt": lst,
        out / "clips.csv": table.to_csv(index=False),
        out / "classes.json": json.dumps(classes.to_dict(), indent=2) + "\n",
        out / "classes.txt": ",".join(classes.names) + "\n",
    }
    for path, text in files.items():
        atomic_write_text(path, text)
        written.append(path)
    return {"written": written, "skipped": skipped}
