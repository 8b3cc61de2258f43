"""Train, calibrate and cross-validate a recogniser on a lab's own coded videos: ``python -m recipes.train_coded``.

::

    python -m recipes.train_coded --manifest cohort.csv --keypoints RUN/pose --codings RUN/codings \\
        --out runs/coded [--folds 3] [--init ma52.pt [--freeze-backbone]] [--epochs 12] ...

Steps (each its own module; docs/training.md, "Training on your coded videos"):

1. windows   every recognition window of every coded video as a training clip, with the plan, crop
             and keypoints inference uses; prepared once, resumable (:mod:`recipes.coded_windows`)
2. labels    per window from the label source's per-frame truth (:mod:`recipes.coded_labels`); the
             class list from the coded event counts (:mod:`recipes.coded_classes`)
3. splits    by participant only, stratified by group: a hold-out validation set or ``--folds K``
             (:mod:`recipes.coded_splits`)
4. training  :func:`recipes.train.train` per part (any family; ``--init CKPT`` keeps all but the
             classifier, :mod:`model.transfer`), per-epoch validation agreement, resumable
5. after training: the read-out calibrated on the part's validation participants and their agreement
             with the coders, both stored in the part's checkpoint (:mod:`recipes.coded_validation`)
6. the cross-validation report: per fold and pooled agreement of the model with the coders on
             participants it never saw, beside the coders' agreement (:mod:`recipes.coded_report`)

Everything that can be refused is refused before anything is written (exit 2, one line): codings of
videos not in the manifest, a requested class with too few events, more folds than a group has
participants, coded videos without keypoints or posed with another plan, an output folder of
another tool. A rerun with the same command resumes (prepared windows, finished parts, the
interrupted part's last completed epoch); a changed setting that alters results is refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from analysis.agreement.config import AgreementConfig
from analysis.agreement.outputs import write_validation
from model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from model.clips import MANIFEST, PREPARED_FORMAT
from model.families import get_family
from model.preprocessing import Preprocessing
from model.windows import WindowPlan
from pipeline.artifacts import atomic_write_bytes, atomic_write_text, write_artifact
from pipeline.cli import EXIT_OK, BadInput, handle_errors, make_parser, report_written, setup_logging
from pipeline.manifest import read_manifest
from pipeline.readout import ReadoutConfig
from pipeline.settings import SettingsError, add_arguments, from_args
from recipes.coded_classes import choose_classes
from recipes.coded_config import RESULT_FREE, CodedConfig
from recipes.coded_labels import count_events, label_source, read_coded_sessions, truth_frames, window_labels
from recipes.coded_report import write_cv_report
from recipes.coded_splits import holdout_split, kfold_splits, part_names, participants_table
from recipes.coded_validation import (agreement, calibrate, epoch_agreement, model_rows, predict_part, read_out,
                                      subset_manifest, write_windows)
from recipes.coded_windows import WindowSettings, check_window_inputs, prepare_windows
from recipes.demo_model import DEMO_PLAN, DEMO_PREPROCESSING, MODEL_OVERRIDES
from recipes.train import LATEST, STATE, TrainConfig, model_config, train

__all__ = ["RECORD", "default_train_config", "CodedRun", "plan_run", "run", "build_parser", "main"]

RECORD = "train_coded.json"
FORMAT = "microaction-cohort.train-coded/1"


def default_train_config(**changes: Any) -> TrainConfig:
    """The CPU default: the demo model's pose-modality Micro-DualNet and recipe (docs/simulator.md),
    12 epochs (small coded cohorts; the schedule is per epoch), clips loaded in the training process
    (a keypoint-only model decodes no JPEG: a loader process would cost more than it saves)."""
    base = dict(preset="tiny", model_overrides=dict(MODEL_OVERRIDES), num_frames=DEMO_PLAN.clip_len,
                frame_stride=DEMO_PLAN.stride, hop_s=DEMO_PLAN.hop_s, epochs=12, batch_size=32, lr=0.02,
                lr_reference_batch=16, warmup_epochs=1, weight_decay=5e-5, workers=0, device="cpu", seed=0,
                plot_every=1000)
    return TrainConfig.from_dict({**TrainConfig().to_dict(), **base, **changes})


@dataclasses.dataclass
class CodedRun:
    """Everything checked and decided before anything is written (:func:`plan_run`)."""

    out: Path
    manifest: Any
    coded: CodedConfig
    train: TrainConfig
    settings: WindowSettings
    source: Any
    videos: dict[str, str]
    keypoints: dict[str, Path]
    choice: Any
    splits: pd.DataFrame
    parts: list[str]
    trained_on: str
    record: dict
    windows: Path = Path()
    """Where the prepared windows are: ``OUT/windows``, or ``--windows ROOT/<settings hash>`` (shared)."""


def _plan_and_preprocessing(train_cfg: TrainConfig, plan: WindowPlan | None) -> tuple[WindowPlan, Preprocessing, float]:
    """Window plan, crop and keypoint threshold: the --init checkpoint's (its weights expect them), else the
    given plan with the demo model's person crop."""
    if train_cfg.init_checkpoint:
        ck = load_checkpoint(train_cfg.init_checkpoint)
        return ck.plan, ck.preprocessing, ck.keypoint_threshold
    family = get_family(train_cfg.family)
    mcfg = model_config(train_cfg, 2)
    state = family.state(family.build(mcfg)) if train_cfg.family == "micro_dualnet" else {}
    size = mcfg.image_size[0] if hasattr(mcfg, "image_size") else DEMO_PREPROCESSING.size
    prep = dataclasses.replace(DEMO_PREPROCESSING, resize_short=size, size=size)
    return plan or DEMO_PLAN, prep, family.keypoint_threshold(mcfg, state)


def plan_run(*, manifest: str | Path, keypoints: str | Path, codings: list[str | Path], out: str | Path,
             coded: CodedConfig, train_cfg: TrainConfig, plan: WindowPlan | None = None,
             trained_on: str = "coded videos", windows_root: str | Path | None = None) -> CodedRun:
    """Read and check every input, decide classes and splits; write nothing. BadInput (one line) on bad input."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out} is an existing file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / RECORD).is_file():
        raise BadInput(f"--out {out} holds files but no {RECORD}: not a train_coded folder; choose another")
    man = read_manifest(manifest)
    events, sessions = read_coded_sessions(list(codings), man, manifest_name=str(manifest))
    source = label_source(events, sessions, coder=coded.label_coder, consensus_share=coded.consensus_share)
    choice = choose_classes(count_events(source), min_events=coded.min_events,
                            min_participants=coded.min_participants, requested=coded.classes or None,
                            unused=coded.unused)
    vids = [v for v in man.videos["video_id"].astype(str) if v in source.tracks]
    if not vids:
        raise BadInput(f"the label source {source.name!r} coded none of the manifest's videos")
    videos = dict(zip(man.videos["video_id"].astype(str), man.videos["video"].astype(str)))
    videos = {v: videos[v] for v in vids}
    people = participants_table(man.videos, vids)
    splits = kfold_splits(people, coded.folds, seed=coded.split_seed) if coded.folds else \
        holdout_split(people, share=coded.val_share, seed=coded.split_seed)
    wplan, prep, threshold = _plan_and_preprocessing(train_cfg, plan)
    settings = WindowSettings(plan=wplan, preprocessing=prep, min_valid=coded.min_valid, threshold=threshold)
    train_cfg = dataclasses.replace(train_cfg, num_frames=wplan.clip_len, frame_stride=wplan.stride, hop_s=wplan.hop_s)
    if train_cfg.init_checkpoint:
        train_cfg = dataclasses.replace(train_cfg, family=load_checkpoint(train_cfg.init_checkpoint).family.name)
    kp = check_window_inputs(videos, keypoints, wplan)
    record = {"format": FORMAT, "coded": coded.to_dict(), "train": train_cfg.to_dict(),
              "windows": settings.to_dict(), "label_source": source.name, "coders": list(source.coders),
              "classes": list(choice.classes.names), "splits": splits.to_dict("list"),
              "inputs": {"manifest": str(Path(manifest).absolute()), "keypoints": str(Path(keypoints).absolute()),
                         "codings": [str(Path(c).absolute()) for c in codings]}}
    if windows_root is None:
        windows = out / "windows"
    else:
        import hashlib

        key = hashlib.sha256(json.dumps(settings.to_dict(), sort_keys=True).encode()).hexdigest()[:12]
        windows = Path(windows_root) / key  # one folder per window settings: runs sharing it never clash
    record["windows_folder"] = str(windows.absolute())
    if (out / RECORD).is_file():
        old = json.loads((out / RECORD).read_text())
        diff = _differences(old, record)
        if diff:
            raise BadInput(f"{out / RECORD}: this folder holds a run with other settings ({', '.join(diff[:4])}); "
                           "use another --out")
    return CodedRun(out, man, coded, train_cfg, settings, source, videos, kp, choice, splits,
                    part_names(coded.folds), trained_on, record, windows)


def _differences(old: dict, new: dict) -> list[str]:
    """Result-relevant fields that differ between two run records (compared as JSON: tuples are lists)."""
    new = json.loads(json.dumps(new, default=str))
    free_train = {"workers", "device", "plot_every", "val_every", "eval_batch_size", "compile"}
    out = []
    for key in ("coded", "train", "windows", "label_source", "classes", "splits", "windows_folder"):
        a, b = old.get(key), new.get(key)
        if key == "windows_folder" and a is None:  # a record from before --windows: OUT/windows
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            free = RESULT_FREE if key == "coded" else free_train if key == "train" else ()
            out += [f"{key}.{k}" for k in sorted(set(a) | set(b)) if k not in free and a.get(k) != b.get(k)]
        elif a != b:
            out.append(key)
    return out


# --------------------------------------------------------------------------------------------------
# Parts (hold-out or folds)
# --------------------------------------------------------------------------------------------------


def _validation_participants(run: CodedRun, part: str) -> set[str]:
    s = run.splits
    if part == "holdout":
        return set(s.loc[s["part"] == "validation", "participant_id"])
    return set(s.loc[s["fold"] == int(part.split("-")[1]), "participant_id"])


def _records(labels: pd.DataFrame, choice, *, coded: CodedConfig, train: bool, rel: str) -> list[dict]:
    """Manifest records (:mod:`model.clips`) of a part: files relative to its prepared folder.

    Training: every ``window_step``-th window with a clip and a label that trains
    (:meth:`ClassChoice.training_index`), the
    background ones kept when their draw ``bg_u`` < ``background_keep``, with ``balance sampling`` each
    action's windows repeated up to the most frequent action's count (at most ``max_repeat`` copies).
    Validation: every window with a clip, once (label: its training class, else background; the
    agreement, not these labels, is what is reported).
    """
    bg = choice.classes.background_index
    idx = labels["action"].map(choice.training_index)
    repeat: dict[int, int] = {}
    if train:
        keep = idx.notna() & labels["clip"].notna() & (labels["window"] % coded.window_step == 0)
        keep &= (idx != bg) | (labels["bg_u"] < coded.background_keep)
        rows = labels[keep].assign(label=idx[keep].astype(int))
        if coded.balance == "sampling":
            counts = rows.loc[rows["label"] != bg, "label"].value_counts()
            if len(counts):
                top = int(counts.max())
                repeat = {int(c): int(min(coded.max_repeat, max(1, round(top / n)))) for c, n in counts.items()}
    else:
        first = labels["clip"].notna() & ~labels.duplicated("clip")
        rows = labels[first].assign(label=idx[first].fillna(bg).astype(int))
    out, seen = [], {}
    for r in rows.itertuples(index=False):
        n = seen.get(r.clip, 0)  # multilabel: one window, several labels
        seen[r.clip] = n + 1
        rid = r.clip if n == 0 else f"{r.clip}-l{n}"
        rec = {"id": rid, "file": f"{rel}/clips/{r.clip}.npz", "label": int(r.label), "num_frames": 0,
               "height": 0, "width": 0, "video": r.video_id, "has_keypoints": True}
        out.append(rec)
        out += [{**rec, "id": f"{rid}-r{k}"} for k in range(1, repeat.get(int(r.label), 1))]
    return out


def _write_prepared(folder: Path, records: list[dict], run: CodedRun, size: int, clip_len: int) -> Path:
    for r in records:
        r["num_frames"], r["height"], r["width"] = clip_len, size, size
    manifest = {"format": PREPARED_FORMAT, "classes": run.choice.classes.to_dict(),
                "preprocessing": run.settings.preprocessing.to_dict(), "storage": "jpeg",
                "settings": {"source": "recipes.train_coded", "plan": run.settings.plan.to_dict()}, "clips": records}
    folder.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(folder / MANIFEST, json.dumps(manifest) + "\n")


def _plot(part_dir: Path, history: list[dict], agreement_log: list[dict]) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from recipes.evaluate import write_file_atomic

    fig = Figure(figsize=(9, 3.4))
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.15, top=0.88, wspace=0.3)
    FigureCanvasAgg(fig)
    ax_loss, ax_val = fig.subplots(1, 2)
    ax_loss.plot([r["epoch"] for r in history], [r["train_loss"] for r in history], marker="o", label="total")
    ax_loss.plot([r["epoch"] for r in history], [r["train_ce"] for r in history], marker=".", label="CE")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="Loss")
    ax_loss.legend()
    if agreement_log:
        ep = [r["epoch"] for r in agreement_log]
        for key, name in (("val_kappa_all", "kappa, any action"), ("val_kappa_mean", "kappa, mean over actions"),
                          ("val_icc_mean", "ICC(2,1) of % time, mean")):
            ax_val.plot(ep, [r[key] for r in agreement_log], marker="o", label=name)
        ax_val.legend(fontsize=8)
    ax_val.set(xlabel="epoch", ylabel="model vs coders", ylim=(-0.1, 1), title="Validation agreement (default read-out)")
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return write_file_atomic(part_dir / "training.png", buf.getvalue())


def _write_log(part_dir: Path, history: list[dict], agreement_log: list[dict]) -> Path:
    by_epoch = {r["epoch"]: r for r in agreement_log}
    rows = [{**{k: h.get(k) for k in ("epoch", "lr", "train_loss", "train_ce", "train_mac", "train_top1",
                                      "clips_per_s", "data_wait_frac", "epoch_s")},
             **{k: by_epoch.get(h["epoch"], {}).get(k) for k in ("val_kappa_all", "val_kappa_mean", "val_icc_mean",
                                                                  "val_s")}} for h in history]
    return atomic_write_text(part_dir / "log.csv", pd.DataFrame(rows).to_csv(index=False))


def _train_part(run: CodedRun, part: str, tables, labels: pd.DataFrame, *, show_progress: bool, quiet: bool) -> dict:
    """Train one part (or find it done), calibrate its read-out, measure its agreement; returns its facts."""
    out, coded = run.out, run.coded
    part_dir = out / "parts" / part
    final = part_dir / "model.pt"
    val_people = _validation_participants(run, part)
    val_vids = [v for v in tables if run.source.ratings.participant[v] in val_people]
    val_tables = {v: tables[v] for v in val_vids}
    if final.is_file():
        try:
            ck = load_checkpoint(final)
            if ck.provenance.get("coded", {}).get("record") == _record_hash(run):
                return {"part": part, "model": final, "status": "skipped", "validation_videos": val_vids,
                        "provenance": ck.provenance}
        except CheckpointError:
            pass
    size, clip_len = run.settings.preprocessing.size, run.settings.plan.clip_len
    train_rows = labels[~labels["participant_id"].isin(val_people)]
    val_rows = labels[labels["participant_id"].isin(val_people)]
    rel = os.path.relpath(run.windows, part_dir / "train")
    train_dir = part_dir / "train"
    val_dir = part_dir / "val"
    train_recs = _records(train_rows, run.choice, coded=coded, train=True, rel=rel)
    val_recs = _records(val_rows, run.choice, coded=coded, train=False, rel=rel)
    if len(train_recs) < run.train.batch_size:
        raise BadInput(f"part {part}: {len(train_recs)} training windows, fewer than one batch of "
                       f"{run.train.batch_size}")
    _write_prepared(train_dir, train_recs, run, size, clip_len)
    _write_prepared(val_dir, val_recs, run, size, clip_len)
    run_dir = part_dir / "run"
    state = run_dir / STATE
    resume = state.is_file()
    log_path = part_dir / "agreement_log.json"
    alog: list[dict] = json.loads(log_path.read_text()) if resume and log_path.is_file() else []
    events, sessions = run.source.events, run.source.sessions
    history: list[dict] = []
    t_start = time.perf_counter()

    def on_epoch(row: dict) -> None:
        history.append(row)
        ep = int(row["epoch"])
        alog[:] = [r for r in alog if r["epoch"] < ep]
        if coded.agreement_every and (ep % coded.agreement_every == 0 or ep == run.train.epochs) and val_tables:
            t0 = time.perf_counter()
            ck = load_checkpoint(run_dir / LATEST)
            res = epoch_agreement(ck, val_dir, val_tables, run.choice.classes, events, sessions, run.manifest,
                                  part_dir / "epoch_windows")
            alog.append({"epoch": ep, **res, "val_s": round(time.perf_counter() - t0, 2)})
            atomic_write_text(log_path, json.dumps(alog) + "\n")
        done = ep - (history[0]["epoch"] - 1)
        left = run.train.epochs - ep
        eta = (time.perf_counter() - t_start) / max(done, 1) * left
        if not quiet:
            val = alog[-1] if alog and alog[-1]["epoch"] == ep else None
            print(f"{part} epoch {ep}/{run.train.epochs}: loss {row['train_loss']:.3f} top-1 {row['train_top1']:.3f}, "
                  f"{row['clips_per_s']:.0f} windows/s"
                  + (f", validation kappa {val['val_kappa_all']:.3f} (mean over actions {val['val_kappa_mean']:.3f})"
                     if val else "") + f", part ETA {eta / 60:.1f} min", file=sys.stderr)

    provenance = {"trained_on": run.trained_on}
    if not (resume and _epochs_done(state) >= run.train.epochs):
        train(run.train, train_dir, run_dir, resume=resume, provenance=provenance, on_epoch=on_epoch,
              show_progress=show_progress, unit="window")
    from model.checkpoint import load_training_state

    history = list(load_training_state(state)["extra"].get("history", []))
    _write_log(part_dir, history, alog)
    _plot(part_dir, history, alog)
    trained = load_checkpoint(run_dir / LATEST)
    return _finish_part(run, part, part_dir, trained, val_dir, val_tables, train_recs, val_recs)


def _epochs_done(state: Path) -> int:
    from model.checkpoint import load_training_state

    try:
        return int(load_training_state(state)["epoch"])
    except CheckpointError:
        return 0


def _record_hash(run: CodedRun) -> str:
    import hashlib

    keep = {k: v for k, v in run.record.items() if k not in ("inputs", "windows_folder")}
    keep["coded"] = {k: v for k, v in keep["coded"].items() if k not in RESULT_FREE}
    keep["train"] = {k: v for k, v in keep["train"].items() if k not in ("workers", "device", "plot_every")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()


def _finish_part(run: CodedRun, part: str, part_dir: Path, trained, val_dir: Path, val_tables: dict,
                 train_recs: list[dict], val_recs: list[dict]) -> dict:
    coded = run.coded
    classes = run.choice.classes
    windows_dir = part_dir / "validation_windows"
    if windows_dir.exists():
        shutil.rmtree(windows_dir)
    probs = predict_part(trained.model, val_dir)
    write_windows(windows_dir, val_tables, probs, classes=classes, model_id=trained.sha256,
                  plan_config=trained.plan.to_dict())
    man = subset_manifest(run.manifest, val_tables)
    atomic_write_text(part_dir / "validation_manifest.csv", man.videos[["participant_id", "group", "video"]]
                      .to_csv(index=False))
    truth = truth_frames(run.source, val_tables)
    cal = calibrate(man, windows_dir, truth, base=ReadoutConfig(scores=coded.readout_scores),
                    engagement_weight=coded.engagement_weight, min_durations=tuple(coded.min_durations))
    atomic_write_text(part_dir / "calibration.csv", cal.table.to_csv(index=False, float_format="%.4f"))
    result = read_out(man, windows_dir, cal.config)
    settings = AgreementConfig(bootstrap=coded.bootstrap, seed=coded.split_seed)
    ag = agreement(run.source.events, run.source.sessions, run.manifest, [result], settings)
    written = write_validation(ag, part_dir / "validation", figures=False)
    rows = model_rows(ag.pairs)
    t = cal.table
    counts = pd.Series([r["label"] for r in train_recs]).value_counts()
    provenance = {
        **trained.provenance,
        "trained_on": run.trained_on,
        "training_data": (f"{len(run.videos)} coded videos of {run.splits['participant_id'].nunique()} participants "
                          f"(label source {run.source.name}); part {part}: "
                          f"{len(run.splits) - len(_validation_participants(run, part))} training, "
                          f"{len(_validation_participants(run, part))} validation participants"),
        "readout": cal.config.to_dict(),
        "readout_calibration": {
            "method": "recipes.readout_calibration.calibrate_thresholds", "on": "validation participants",
            "participants": cal.participants, "engagement_weight": coded.engagement_weight,
            "min_durations_tried": list(coded.min_durations),
            "worst_mae_pp": {"before": round(float(t["mae_pp_before"].max()), 3), "after": round(float(t["mae_pp"].max()), 3)},
            "mean_mae_pp": {"before": round(float(t["mae_pp_before"].mean()), 3), "after": round(float(t["mae_pp"].mean()), 3)},
        },
        "validation": {
            "participants": sorted(_validation_participants(run, part)),
            "coders": list(ag.coders), "reference": ag.reference, "bootstrap": coded.bootstrap,
            "per_action": [{k: (None if isinstance(v, float) and not np.isfinite(v) else
                                round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
                           for r in rows.to_dict("records")],
            "verdicts": ag.summary()["verdicts"],
        },
        "coded": {"part": part, "label_source": run.source.name, "label_rule": coded.label_rule,
                  "classes": run.choice.table.to_dict("list"), "record": _record_hash(run),
                  "train_windows_per_class": {classes.names[int(k)]: int(v) for k, v in counts.items()},
                  "validation_windows": len(val_recs)},
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    save_checkpoint(part_dir / "model.pt", trained.model, classes=classes, preprocessing=trained.preprocessing,
                    plan=trained.plan, provenance=provenance)
    return {"part": part, "model": part_dir / "model.pt", "status": "ok", "validation_videos": list(val_tables),
            "provenance": provenance, "written": written}


def run(plan: CodedRun, *, show_progress: bool = False, quiet: bool = False) -> dict:
    """Do the run planned by :func:`plan_run` (module docstring); returns paths and the report's facts."""
    out = plan.out
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / RECORD, json.dumps(plan.record, indent=1, default=str) + "\n")
    t0 = time.perf_counter()
    tables = prepare_windows(plan.videos, plan.keypoints, plan.windows, plan.settings, show_progress=show_progress)
    t_windows = time.perf_counter() - t0
    labels = window_labels(plan.source, tables, plan.manifest, rule=plan.coded.label_rule)
    labels["bg_u"] = np.random.default_rng(plan.coded.split_seed).random(len(labels))
    write_artifact(labels, out / "labels.parquet", contract=None, stage="train_coded",
                   config={"label_source": plan.source.name, "rule": plan.coded.label_rule})
    atomic_write_text(out / "classes.csv", plan.choice.table.to_csv(index=False))
    atomic_write_text(out / "splits.csv", plan.splits.to_csv(index=False))
    counts = {"windows": int(sum(len(t.table) for t in tables.values())),
              "low_pose": int(sum(t.table["clip"].isna().sum() for t in tables.values())),
              "uncoded": int(labels.drop_duplicates(["video_id", "window"])["action"].isna().sum())}
    if not quiet:
        print(f"train_coded: {len(tables)} coded videos, {counts['windows']} windows ({counts['low_pose']} left out: "
              f"too little pose; {counts['uncoded']} not observed by {plan.source.name}); {plan.choice.summary()}",
              file=sys.stderr)
    parts = []
    try:  # a resumed run keeps the measured times of what it did not redo
        earlier = json.loads((out / "timings.json").read_text())
    except (OSError, ValueError):
        earlier = {}
    redone = any(t.status == "ok" for t in tables.values())
    timings = {"windows_s": round(t_windows, 1) if redone or "windows_s" not in earlier else earlier["windows_s"]}
    for part in plan.parts:
        t1 = time.perf_counter()
        parts.append(_train_part(plan, part, tables, labels, show_progress=show_progress, quiet=quiet))
        took = round(time.perf_counter() - t1, 1)
        timings[f"{part}_s"] = earlier.get(f"{part}_s", took) if parts[-1]["status"] == "skipped" else took
    written = [out / RECORD, out / "labels.parquet", out / "classes.csv", out / "splits.csv"]
    written += [p["model"] for p in parts]
    report = None
    if plan.coded.folds:
        report = write_cv_report(plan, parts, out / "cv", counts=counts, timings=timings)
        written += report["written"]
    else:
        final = atomic_write_bytes(out / "model.pt", Path(parts[0]["model"]).read_bytes())
        written.append(final)
    timings["total_s"] = round(time.perf_counter() - t0, 1)
    if earlier.get("total_s") and not redone and all(p["status"] == "skipped" for p in parts):
        timings["total_s"], timings["report_rerun_s"] = earlier["total_s"], timings["total_s"]
    atomic_write_text(out / "timings.json", json.dumps(timings, indent=1) + "\n")
    written.append(out / "timings.json")
    return {"parts": parts, "written": written, "counts": counts, "timings": timings, "report": report}


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    d = default_train_config()
    p = make_parser(
        "Train a recogniser on a lab's own coded videos (imported codings + the pose stage's keypoints), calibrate "
        "its read-out and measure its agreement with the coders on participants it never saw (hold-out, or "
        "--folds K cross-validation). Exit status: 0 done, 2 bad input (nothing written). docs/training.md.",
        prog="python -m recipes.train_coded")
    io_ = p.add_argument_group("inputs and output")
    io_.add_argument("--manifest", required=True, help="cohort manifest (CSV/Parquet) of the coded videos")
    io_.add_argument("--keypoints", required=True, metavar="DIR",
                     help="the pose stage's output (DIR/keypoints/<video_id>.parquet), posed with the model's plan")
    io_.add_argument("--codings", required=True, nargs="+", metavar="DIR",
                     help="imported codings folder(s) (python -m pipeline.codings import); several: one per coder")
    io_.add_argument("--out", required=True, metavar="DIR", help="run folder (windows, parts, models, report)")
    io_.add_argument("--windows", metavar="ROOT", default=None,
                     help="keep the prepared windows under ROOT/<settings hash>/ to share them between runs "
                          "(default: OUT/windows)")
    io_.add_argument("--trained-on", default="coded videos",
                     help="what the checkpoints' provenance says the model was trained on (e.g. 'simulated')")
    coded = p.add_argument_group("windows, labels, classes, splits, calibration (CodedConfig)")
    add_arguments(coded, CodedConfig)
    m = p.add_argument_group("model and training (recipes.train.TrainConfig; default: the demo model's "
                             "pose-modality Micro-DualNet)")
    m.add_argument("--init", metavar="CKPT", help="start from this checkpoint (any class list): backbone, entity "
                   "module and paths kept, classifier re-initialised; its window plan and crop are used")
    m.add_argument("--freeze-backbone", action="store_true", help="with --init: no gradient to the CNN backbone")
    m.add_argument("--freeze", choices=("none", "backbone", "features"), default=None,
                   help="parameters without gradient (features: all but the classifier)")
    m.add_argument("--family", default=None, help=f"model family (micro_dualnet, mmn, manet; default {d.family})")
    m.add_argument("--preset", default=None, help=f"the family's preset (default {d.preset})")
    m.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", dest="overrides",
                   help="model config override (repeatable), e.g. --set modality=rgb_pose")
    m.add_argument("--backbone-weights", metavar="FILE", help="local ImageNet/TSM backbone weights")
    m.add_argument("--clip-len", type=int, default=None, help=f"window plan T (default {DEMO_PLAN.clip_len})")
    m.add_argument("--stride", type=int, default=None, help=f"window plan stride (default {DEMO_PLAN.stride})")
    m.add_argument("--hop", type=float, default=None, help=f"window plan hop, seconds (default {DEMO_PLAN.hop_s:.4f})")
    for name in ("epochs", "batch_size", "workers", "seed"):
        m.add_argument("--" + name.replace("_", "-"), type=int, default=None, help=f"default {getattr(d, name)}")
    for name in ("lr", "weight_decay", "warmup_epochs"):
        m.add_argument("--" + name.replace("_", "-"), type=float, default=None, help=f"default {getattr(d, name)}")
    m.add_argument("--device", default=None, help=f"default {d.device}")
    m.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: the pose model is small)")
    p.epilog = "exit status: 0 done, 2 bad input (nothing written)"
    return p


def _train_config(args) -> TrainConfig:
    from recipes.train import _parse_override

    changes: dict[str, Any] = {}
    for name in ("family", "preset", "epochs", "batch_size", "workers", "seed", "lr", "weight_decay", "warmup_epochs",
                 "device"):
        v = getattr(args, name)
        if v is not None:
            changes[name] = v
    overrides = dict(MODEL_OVERRIDES) if args.family in (None, "micro_dualnet") and args.preset in (None, "tiny") else {}
    overrides.update(dict(_parse_override(o) for o in args.overrides))
    changes["model_overrides"] = overrides
    if args.backbone_weights:
        changes["backbone_weights"] = args.backbone_weights
    if args.init:
        changes["init_checkpoint"] = args.init
    if args.freeze_backbone:
        changes["freeze"] = "backbone"
    if args.freeze:
        changes["freeze"] = args.freeze
    cfg = default_train_config(**changes)
    if cfg.freeze != "none" and not cfg.init_checkpoint and not cfg.backbone_weights:
        raise BadInput("--freeze needs pretrained weights (--init CKPT or --backbone-weights FILE)")
    return cfg


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(verbose=args.verbose, quiet=args.quiet)
    with handle_errors("recipes.train_coded"):
        try:
            coded = from_args(CodedConfig, args, stage="train_coded").settings
        except (SettingsError, ValueError) as exc:
            raise BadInput(str(exc)) from None
        try:
            cfg = _train_config(args)
            model_config(cfg, 2)
        except (ValueError, CheckpointError) as exc:
            raise BadInput(" ".join(str(exc).split())) from None
        if args.threads < 1:
            raise BadInput("--threads must be >= 1")
        torch.set_num_threads(args.threads)
        plan = None
        if args.clip_len or args.stride or args.hop:
            if args.init:
                raise BadInput("--clip-len/--stride/--hop: with --init the checkpoint's window plan is used")
            plan = WindowPlan(clip_len=args.clip_len or DEMO_PLAN.clip_len, stride=args.stride or DEMO_PLAN.stride,
                              hop_s=args.hop or DEMO_PLAN.hop_s)
        try:
            planned = plan_run(manifest=args.manifest, keypoints=args.keypoints, codings=args.codings, out=args.out,
                               coded=coded, train_cfg=cfg, plan=plan, trained_on=args.trained_on,
                               windows_root=args.windows)
        except CheckpointError as exc:
            raise BadInput(str(exc)) from None
        result = run(planned, show_progress=not args.quiet, quiet=args.quiet)
    for path in result["written"]:
        report_written(path)
    if result["report"] is not None:
        print(result["report"]["markdown"], file=sys.stderr)
    else:
        rows = {r["action"]: r for r in result["parts"][0]["provenance"]["validation"]["per_action"]}
        a = rows.get("all", {})
        print(f"hold-out validation ({len(result['parts'][0]['provenance']['validation']['participants'])} participants): "
              f"kappa model-coder {a.get('model_kappa')}, coder-coder {a.get('coder_kappa')}; "
              f"ICC(2,1) of percent time model-coder {a.get('model_icc')}, coder-coder {a.get('coder_icc')} "
              "(any action; per action in the checkpoint's provenance and parts/holdout/validation/)", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
