"""Prepare labelled clips for training: decode once, resize, store frames + keypoints + label.

::

    python -m recipes.prepare_clips --list train_list_videos.txt --data-root MA52/train \\
        --openpose MA52/pose/train --out prepared/train

Input
-----
- ``--list``: the MA-52 form (``<video> <label>`` per line, paths relative to ``--data-root``) or a
  CSV with the columns ``video,label`` (``.csv``). A label is an MA-52 action index (0-51), an action
  name, or ``background``; it must be in the class list (``--classes``, default all 52 actions).
- Keypoints (optional; without them only the ``rgb`` modality can use the folder):
  ``--keypoints DIR``: the project's keypoints artifacts ``DIR/<video stem>.parquet`` or
  ``DIR/keypoints/<video stem>.parquet`` (``python -m pipeline.pose --frames all``), or
  ``--openpose DIR``: OpenPose JSON folders ``DIR/<video stem>/*_keypoints.json`` as released for MA-52
  (target person chosen per frame by :func:`pipeline.pose_openpose.select_people`). Coordinates are
  stored as the pose stage stores them, so training sees what inference will see.

Output (the layout :mod:`model.clips` reads): ``OUT/clips/<id>.npz`` per clip (frames resized to
short side ``--short-side`` as JPEG, keypoints moved with the pixels, label, source facts) and
``OUT/manifest.json`` (class list, preprocessing, clip records in list order). Every file is written
atomically. A rerun skips clips whose stored source hashes and settings still match (resume after
a crash or an extended list). Missing videos or keypoints stop the run before any work with one
line naming the first few and the count (exit 2); a clip that fails to decode fails alone (exit 1,
the manifest lists the others; an earlier run's file of that clip is removed).

Each clip is an item of the stage runner (:mod:`pipeline.stage`, :class:`PrepareStage`): input hash,
settings, up-to-date check, failures isolated, spawned worker processes that die with the parent
(``--workers``), ownership of the files (``OUT/.prepare_clips.outputs.json``; a user's file under a
clip's name or ``manifest.json`` stops the run, exit 2). Two things are the stage's own, on purpose:

- *up to date* is read from the clip file itself (``is_current``): the ``.npz`` carries its source
  hash, settings and label in its ``meta`` record, as :mod:`model.clips` defines the format, so it
  has no sidecar and prepared folders of earlier versions resume without preparing anything again;
- ``manifest.json`` is written once after all clips, by :func:`prepare_clips`, not per item: it
  lists the clips that succeeded *in list order*, which no single item knows. No QC table is written
  (the folder's format is fixed by :mod:`model.clips`); the summary goes to the log.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from model.clips import MANIFEST, PREPARED_FORMAT, encode_prepared_clip
from model.preprocessing import BACKGROUND, ClassList, Preprocessing
from model.taxonomy import MA52, NUM_BODY25, NUM_KEYPOINTS
from model.transforms import resize_keypoints
from pipeline.artifacts import atomic_write_bytes, atomic_write_text, sha256_file, sha256_files
from pipeline.cli import (EXIT_OK, EXIT_PARTIAL, BadInput, check_output_dir, handle_errors, make_parser,
                          report_written, setup_logging)
from pipeline.keypoints import read_keypoints
from pipeline.ownership import check_free, update_manifest
from pipeline.pose_openpose import OpenPoseConfig, list_frames, load_people, select_people
from pipeline.stage import ItemContext, ItemResult, Job, check_outputs_free, run_item, run_items
from pipeline.video import VideoError, iter_frames, probe

__all__ = ["ClipItem", "PrepareConfig", "PrepareResult", "ClipJob", "PrepareStage", "PREPARE_STAGE", "read_clip_list",
           "parse_classes", "find_clip_inputs", "prepare_one", "prepare_clips", "main"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipItem:
    """One row of the list, resolved: clip id, video path, class index, keypoints source (or None)."""

    clip_id: str
    video: str
    label: int
    keypoints: str | None = None
    keypoints_kind: str | None = None  # "artifact" | "openpose"


@dataclass(frozen=True)
class PrepareConfig:
    """Settings recorded in every clip (a change re-prepares it)."""

    short_side: int = 256
    """Short side of the stored frames (MA-52 practice: resize 256, then crop 224)."""
    crop_size: int = 224
    """The model's crop (stored in the manifest's preprocessing; must be <= short_side)."""
    jpeg_quality: int = 90
    openpose: OpenPoseConfig = field(default_factory=OpenPoseConfig)


@dataclass
class PrepareResult:
    item: ClipItem
    status: str  # "ok" | "skipped" | "failed"
    record: dict | None = None
    error: str | None = None
    frames: int = 0
    seconds: float = 0.0


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------


def read_clip_list(path: str | os.PathLike) -> list[tuple[str, str]]:
    """``[(video, label)]`` from an MA-52 list (``<video> <label>``) or a CSV (``video,label``).

    Raises BadInput naming the file and line for a malformed row.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"--list {path}: file not found")
    rows: list[tuple[str, str]] = []
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"video", "label"} <= set(reader.fieldnames):
                raise BadInput(f"--list {path}: a CSV list needs the columns video,label")
            for n, row in enumerate(reader, start=2):
                if not (row["video"] or "").strip() or not (row["label"] or "").strip():
                    raise BadInput(f"--list {path} line {n}: empty video or label")
                rows.append((row["video"].strip(), row["label"].strip()))
    else:
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            video, sep, label = line.strip().rpartition(" ")
            if not sep or not video.strip():
                raise BadInput(f"--list {path} line {n}: expected '<video> <label>', got {line.strip()!r}")
            rows.append((video.strip(), label.strip()))
    if not rows:
        raise BadInput(f"--list {path}: no clips listed")
    return rows


def parse_classes(text: str | None) -> ClassList:
    """``None``/``"ma52"``: all 52 actions; otherwise comma-separated MA-52 names or indices, and
    ``background`` (always placed last)."""
    if text is None or text.strip().lower() == "ma52":
        return ClassList.ma52()
    parts = [p.strip() for p in text.split(",") if p.strip()]
    background = BACKGROUND in parts
    actions: list[int | str] = []
    for p in parts:
        if p == BACKGROUND:
            continue
        try:
            actions.append(int(p) if p.isdigit() else MA52.index(p))
        except (KeyError, IndexError):
            raise BadInput(f"--classes: unknown MA-52 action {p!r}") from None
    try:
        return ClassList.from_actions(actions, background=background)
    except (ValueError, IndexError) as exc:
        raise BadInput(f"--classes: {exc}") from None


def _label_index(label: str, classes: ClassList) -> int:
    """Class index of a list label: MA-52 action index, action name, or ``background``."""
    if label.strip().lower() == BACKGROUND:
        bg = classes.background_index
        if bg is None:
            raise ValueError("label 'background' but the class list has no background class")
        return bg
    try:
        action = int(label) if label.lstrip("-").isdigit() else MA52.index(label)
    except KeyError:
        raise ValueError(f"unknown label {label!r}") from None
    if action not in classes.taxonomy_ids:
        raise ValueError(f"label {label!r} (MA-52 action {action}) is not in the class list")
    return classes.taxonomy_ids.index(action)


def _clip_id(video: str) -> str:
    p = Path(video)
    return str(p.with_suffix("")).replace("\\", "/").replace("/", "__")


def find_clip_inputs(rows: list[tuple[str, str]], data_root: str | os.PathLike, classes: ClassList, *,
                     keypoints_dir: str | os.PathLike | None = None,
                     openpose_dir: str | os.PathLike | None = None, list_name: str = "--list") -> list[ClipItem]:
    """Resolve every row; raise BadInput listing the first few missing videos / keypoints / bad labels."""
    root = Path(data_root)
    items: list[ClipItem] = []
    missing_video, missing_kp, bad_label = [], [], []
    ids: dict[str, str] = {}
    for video, label in rows:
        vpath = root / video
        if not vpath.is_file():
            missing_video.append(video)
        try:
            idx = _label_index(label, classes)
        except ValueError as exc:
            bad_label.append(f"{video}: {exc}")
            idx = -1
        stem = Path(video).stem
        kp, kind = None, None
        if keypoints_dir is not None:
            kind = "artifact"
            for cand in (Path(keypoints_dir) / f"{stem}.parquet", Path(keypoints_dir) / "keypoints" / f"{stem}.parquet"):
                if cand.is_file():
                    kp = str(cand)
                    break
            else:
                missing_kp.append(f"{stem}.parquet")
        elif openpose_dir is not None:
            kind = "openpose"
            cand = Path(openpose_dir) / stem
            if cand.is_dir() and any(cand.glob("*_keypoints.json")):
                kp = str(cand)
            else:
                missing_kp.append(f"{stem}/")
        cid = _clip_id(video)
        if cid in ids:
            bad_label.append(f"{video}: listed twice (same clip id as {ids[cid]})")
        ids[cid] = video
        items.append(ClipItem(cid, str(vpath), idx, kp, kind))

    def few(xs: list[str]) -> str:
        return ", ".join(xs[:5]) + (", ..." if len(xs) > 5 else "")

    if missing_video:
        raise BadInput(f"{len(missing_video)} of {len(rows)} videos of {list_name} not found under {root}: "
                       f"{few(missing_video)}")
    if missing_kp:
        where = keypoints_dir if keypoints_dir is not None else openpose_dir
        raise BadInput(f"keypoints missing for {len(missing_kp)} of {len(rows)} clips in {where}: {few(missing_kp)}")
    if bad_label:
        raise BadInput(f"{len(bad_label)} bad rows in {list_name}: {few(bad_label)}")
    return items


# --------------------------------------------------------------------------------------------------
# One clip
# --------------------------------------------------------------------------------------------------


def _source_hash(item: ClipItem) -> str:
    parts = [sha256_file(item.video)]
    if item.keypoints_kind == "artifact":
        parts.append(sha256_file(item.keypoints))
    elif item.keypoints_kind == "openpose":
        parts.append(sha256_files(f for _, f in list_frames(item.keypoints)))
    return ":".join(parts)


def _keypoints_for(item: ClipItem, frame_indices: np.ndarray, size: tuple[int, int], cfg: PrepareConfig) -> np.ndarray:
    """[F, 33, 3] keypoints of the decoded frames (zeros where a frame has none), source pixels."""
    out = np.zeros((len(frame_indices), NUM_KEYPOINTS, 3), np.float32)
    if item.keypoints_kind is None:
        return out
    if item.keypoints_kind == "artifact":
        kp = read_keypoints(item.keypoints)
        if kp.size is not None and tuple(kp.size) != tuple(size):
            raise ValueError(f"{item.keypoints}: keypoints are for a {kp.size[0]}x{kp.size[1]} video, "
                             f"{item.video} is {size[0]}x{size[1]}")
        rows = {int(f): k for k, f in enumerate(kp.frames)}
        combined = kp.combined
        for k, f in enumerate(frame_indices):
            if int(f) in rows:
                out[k] = combined[rows[int(f)]]
        return out
    pairs = list_frames(item.keypoints)
    people = [load_people(f) for _, f in pairs]
    choice = select_people(people, cfg.openpose, image_size=size)
    by_frame = {i: people[k][c] for k, ((i, _), c) in enumerate(zip(pairs, choice)) if c is not None}
    for k, f in enumerate(frame_indices):
        if int(f) in by_frame:
            out[k, :NUM_BODY25] = by_frame[int(f)]
    return out


def _short_side_size(width: int, height: int, short: int) -> tuple[int, int]:
    """(height, width) with the short side ``short`` (rounded like model.transforms.resize_clip)."""
    if height <= width:
        return short, max(1, round(width * short / height))
    return max(1, round(height * short / width)), short


def _settings(cfg: PrepareConfig) -> dict:
    return {"short_side": cfg.short_side, "jpeg_quality": cfg.jpeg_quality, "openpose": asdict(cfg.openpose)}


def _stored_meta(path: Path) -> dict | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return json.loads(str(z["meta"]))
    except Exception:  # unreadable / partial file: prepare again
        return None


def _record(item: ClipItem, meta: dict) -> dict:
    return {"id": item.clip_id, "file": f"clips/{item.clip_id}.npz", "label": item.label,
            "num_frames": meta["num_frames"], "height": meta["height"], "width": meta["width"],
            "video": meta["video"], "has_keypoints": item.keypoints_kind is not None}


def clip_path(out_dir: str | os.PathLike, clip_id: str) -> Path:
    return Path(out_dir) / "clips" / f"{clip_id}.npz"


@dataclass(frozen=True)
class ClipJob(Job):
    """One clip for the stage runner (``item_id`` the clip id, ``source`` the video)."""

    item: ClipItem | None = None
    config: PrepareConfig = field(default_factory=PrepareConfig)


class PrepareStage:
    """The clip-specific parts of the stage (see :class:`pipeline.stage.Stage` and the module docstring)."""

    name = "prepare_clips"
    version = 1
    id_column = "clip_id"
    qc_file = "qc_prepare"  # not written (see the module docstring); the runner needs a name
    done_word = "prepared"
    sidecars = False  # provenance lives inside the .npz

    def input_hash(self, job: ClipJob) -> str:
        return _source_hash(job.item)

    def artifact_config(self, job: ClipJob) -> dict:
        return {"settings": _settings(job.config), "label": job.item.label}

    def outputs(self, job: ClipJob) -> list[Path]:
        return [clip_path(job.out_dir, job.item_id)]

    def is_current(self, job: ClipJob, input_hash: str, config: dict) -> bool:
        old = _stored_meta(clip_path(job.out_dir, job.item_id))
        return bool(old) and old.get("source_hash") == input_hash and old.get("settings") == config["settings"] \
            and old.get("label") == job.item.label

    def adopts(self, job: ClipJob, path: Path) -> bool:
        """A clip file of an earlier run (before output manifests): readable, with our meta record."""
        old = _stored_meta(path)
        return bool(old) and {"source_hash", "settings", "label"} <= set(old)

    def compute(self, job: ClipJob, ctx: ItemContext) -> dict:
        item, cfg = job.item, job.config
        path = clip_path(job.out_dir, job.item_id)
        info = probe(item.video)
        h1, w1 = _short_side_size(info.width, info.height, cfg.short_side)
        frames, indices = [], []
        for index, _, bgr in iter_frames(item.video, fps=info.fps):
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            frames.append(cv2.resize(rgb, (w1, h1), interpolation=cv2.INTER_AREA))
            indices.append(index)
        if not frames:
            raise VideoError(item.video, "no decodable frame")
        frame_indices = np.asarray(indices, np.int64)
        kp = _keypoints_for(item, frame_indices, (info.width, info.height), cfg)
        kp = resize_keypoints(torch.from_numpy(kp), (info.height, info.width), (h1, w1)).numpy()
        meta = {"video": item.video, "keypoints": item.keypoints, "keypoints_kind": item.keypoints_kind,
                "source_hash": ctx.input_hash, "settings": _settings(cfg), "label": item.label,
                "source_size": [info.width, info.height], "fps": info.fps, "num_frames": len(frames),
                "height": h1, "width": w1}
        atomic_write_bytes(path, encode_prepared_clip(frames, kp, frame_indices, item.label, meta,
                                                      quality=cfg.jpeg_quality))
        ctx.wrote(path)
        return {"frames": len(frames), "record": _record(item, meta)}

    def qc_for_existing(self, job: ClipJob) -> dict:
        old = _stored_meta(clip_path(job.out_dir, job.item_id))
        if not old:
            raise ValueError("unreadable clip file")
        return {"frames": old["num_frames"], "record": _record(job.item, old)}

    def failed_qc(self, job: ClipJob, error: str) -> dict:
        return {"frames": 0, "record": None}


PREPARE_STAGE = PrepareStage()


def _prepare_worker(job: ClipJob) -> ItemResult:
    """Module-level (picklable by name) per-clip worker for the runner's spawned pool."""
    return run_item(PREPARE_STAGE, job)


def _result(job: ClipJob, r: ItemResult) -> PrepareResult:
    return PrepareResult(job.item, r.status, record=r.qc.get("record"), error=r.error,
                         frames=int(r.qc.get("frames", 0)), seconds=float(r.qc.get("seconds", 0.0)))


def prepare_one(item: ClipItem, out_dir: str | os.PathLike, cfg: PrepareConfig, *, force: bool = False) -> PrepareResult:
    """Decode, resize and store one clip (skipped when up to date). Never raises for a bad clip."""
    job = ClipJob(item.clip_id, item.video, str(out_dir), force, item, cfg)
    return _result(job, run_item(PREPARE_STAGE, job))


def _manifest_is_ours(out_dir: Path):
    def adopt(rel: str) -> bool:  # a manifest.json of an earlier run: our format key
        try:
            return json.loads((out_dir / MANIFEST).read_text(encoding="utf-8")).get("format") == PREPARED_FORMAT
        except (OSError, ValueError, AttributeError):
            return False

    return adopt


def prepare_clips(items: list[ClipItem], out_dir: str | os.PathLike, classes: ClassList, *,
                  config: PrepareConfig | None = None, workers: int = 1, force: bool = False,
                  show_progress: bool = False) -> tuple[list[PrepareResult], Path]:
    """Prepare every clip (on the stage runner), then write ``manifest.json`` (clips that succeeded, in
    list order). Returns the per-clip results and the manifest's path.

    Raises
    ------
    pipeline.ownership.ForeignOutput
        A file of the user's holds a clip's name or ``manifest.json`` (before any clip is prepared).
    """
    cfg = config or PrepareConfig()
    preprocessing = Preprocessing(resize_short=cfg.short_side, size=cfg.crop_size)
    out_dir = Path(out_dir)
    jobs = [ClipJob(item.clip_id, item.video, str(out_dir), force, item, cfg) for item in items]
    check_outputs_free(PREPARE_STAGE, jobs)
    check_free(out_dir, PREPARE_STAGE.name, [MANIFEST], adopt=_manifest_is_ours(out_dir))
    done = run_items(PREPARE_STAGE, jobs, workers=workers, worker=_prepare_worker, desc="prepare", unit="clip")
    results = [_result(job, r) for job, r in zip(jobs, done)]
    manifest = {"format": PREPARED_FORMAT, "classes": classes.to_dict(), "preprocessing": preprocessing.to_dict(),
                "storage": "jpeg", "settings": _settings(cfg),
                "clips": [r.record for r in results if r.record is not None]}
    path = atomic_write_text(out_dir / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    update_manifest(out_dir, PREPARE_STAGE.name, add=[path])
    return results, path


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def build_parser():
    p = make_parser("Decode labelled clips once and store frames (short side resized) + keypoints + labels "
                    "for python -m recipes.train / recipes.evaluate.", prog="python -m recipes.prepare_clips")
    p.add_argument("--list", required=True, metavar="FILE", help="'<video> <label>' lines (MA-52) or a video,label CSV")
    p.add_argument("--data-root", required=True, metavar="DIR", help="folder the list's video paths are relative to")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--keypoints", metavar="DIR", help="keypoints artifacts (<stem>.parquet) from pipeline.pose --frames all")
    src.add_argument("--openpose", metavar="DIR", help="OpenPose JSON folders <stem>/*_keypoints.json (MA-52 release)")
    p.add_argument("--out", required=True, metavar="DIR", help="prepared folder to write")
    p.add_argument("--classes", default="ma52", help="'ma52' or comma-separated action names/indices (+ background)")
    p.add_argument("--short-side", type=int, default=256, help="short side of the stored frames")
    p.add_argument("--crop-size", type=int, default=224, help="model crop size recorded in the manifest")
    p.add_argument("--jpeg-quality", type=int, default=90)
    p.add_argument("--workers", type=int, default=1, help="processes decoding clips in parallel (spawned; they die with this one)")
    p.add_argument("--force", action="store_true", help="prepare every clip again")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(verbose=args.verbose, quiet=args.quiet)
    prog = "prepare_clips"
    with handle_errors(prog):
        out = check_output_dir(args.out)
        if args.crop_size > args.short_side:
            raise BadInput(f"--crop-size {args.crop_size} is larger than --short-side {args.short_side}")
        classes = parse_classes(args.classes)
        rows = read_clip_list(args.list)
        items = find_clip_inputs(rows, args.data_root, classes, keypoints_dir=args.keypoints,
                                 openpose_dir=args.openpose, list_name=f"--list {args.list}")
        cfg = PrepareConfig(short_side=args.short_side, crop_size=args.crop_size, jpeg_quality=args.jpeg_quality)
        t0 = time.perf_counter()
        results, manifest = prepare_clips(items, out, classes, config=cfg, workers=args.workers, force=args.force,
                                          show_progress=True)
        dt = time.perf_counter() - t0
        failed = [r for r in results if r.status == "failed"]
        done = [r for r in results if r.status == "ok"]
        for r in done:
            report_written(out / r.record["file"])
        report_written(manifest)
        n_frames = sum(r.frames for r in done)
        log.info("%d prepared, %d up to date, %d failed in %.1f s (%.1f clips/s, %.0f frames/s)", len(done),
                 len(results) - len(done) - len(failed), len(failed), dt, len(done) / dt if dt else 0.0,
                 n_frames / dt if dt else 0.0)
        for r in failed[:10]:
            print(f"{prog}: failed: {r.error}", file=sys.stderr)
        return EXIT_PARTIAL if failed else EXIT_OK
    return EXIT_OK  # pragma: no cover


if __name__ == "__main__":
    raise SystemExit(main())
