"""Evaluate a checkpoint on a prepared clip folder: ``python -m recipes.evaluate``.

::

    python -m recipes.evaluate --weights runs/ma52/best.pt --prepared prepared/val --out eval/val
    python -m recipes.evaluate --weights runs/ma52/best.pt --prepared prepared/test --out eval/test --submission
    python -m recipes.evaluate ... --views 2x3          # multi-view testing: 2 clips x 3 crops

Writes into ``--out``:

- ``metrics.json``: the MA-52 metrics (:func:`model.metrics.classification_metrics`, fractions),
  clip count, views, checkpoint sha256;
- ``per_class.csv``: per class: name, body part, support, correct, accuracy (recall), precision, F1;
- ``confusion.csv`` (rows: true class, columns: predicted) and ``confusion.png``;
- ``classwise_accuracy.png``: per-class accuracy bars (as the paper's Fig. 4);
- ``tsne.png``: t-SNE of the fused entity features f_entity (Eq. 19; the paper's Fig. 5), coloured
  by body part; needs scikit-learn (not a runtime dependency: without it the plot is skipped and
  ``metrics.json`` says so);
- ``routing.csv`` / ``routing.png``: mean ST routing weight (alpha_ST of Eq. 15, over frames and
  clips) per true class and entity - the paper's interpretability read-out (> 0.5: the class leans
  on spatial-then-temporal reasoning for that entity);
- ``predictions.csv``: per clip its id, label and top-5 classes with probabilities;
- ``prediction.csv`` with ``--submission``: the MA-52 challenge file ``vid, action_pred_1..5,
  body_pred_1..5`` (vid: the video file name; body_pred_k is the body part of action_pred_k, so
  body parts may repeat; the hidden test labels are not used).

Scores are softmax probabilities, averaged over views with ``--views CxS`` (C temporal clips x S = 1
or 3 spatial crops, :class:`model.clips.ClipDataset`). All outputs are written atomically.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from model.checkpoint import CheckpointError, load_checkpoint
from model.clips import ClipDataset, PreparedClips, collate_clips, normalize_frames
from model.metrics import class_to_body, classification_metrics, top_k_predictions
from model.families import ModelFamily, family_of
from model.preprocessing import ClassList, Preprocessing
from model.taxonomy import MA52
from pipeline.artifacts import atomic_write_bytes

__all__ = ["Predictions", "predict_clips", "evaluate", "write_submission", "main"]


@dataclass
class Predictions:
    """Per-clip results of :func:`predict_clips` (N clips, C classes, D features, K entities)."""

    scores: np.ndarray  # [N, C] float32 softmax probabilities (mean over views)
    labels: np.ndarray  # [N] int64
    features: np.ndarray  # [N, D] the family's clip feature (Micro-DualNet: f_entity, Eq. 19; MMN: pooled MCL output)
    routing_st: np.ndarray  # [N, K] mean ST weight over frames (and views)
    indices: np.ndarray  # [N] positions in the prepared folder


@torch.inference_mode()
def predict_clips(model: torch.nn.Module, dataset: ClipDataset, *, batch_size: int = 12,
                  device: str | torch.device = "cpu", amp: bool = True, workers: int = 0,
                  preprocessing: Preprocessing | None = None, family: ModelFamily | None = None) -> Predictions:
    """Run ``model`` (any family's, :mod:`model.families`; eval mode, restored afterwards) over an evaluation dataset."""
    device = torch.device(device)
    family = family or family_of(model)
    pixels = getattr(model, "uses_rgb", family.uses_pixels(model.cfg))
    preprocessing = preprocessing or dataset.preprocessing
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate_clips,
                        pin_memory=device.type == "cuda")
    scores, labels, feats, routing, indices = [], [], [], [], []
    try:
        for batch in loader:
            frames = batch["frames"].to(device, non_blocking=True)
            kp = batch["keypoints"].to(device, non_blocking=True)
            multi = frames.ndim == 6  # [B, V, T, 3, H, W]
            b = frames.shape[0]
            if multi:
                v = frames.shape[1]
                frames, kp = frames.flatten(0, 1), kp.flatten(0, 1)
            else:
                v = 1
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
                out = family.forward(model, normalize_frames(frames, preprocessing) if pixels else None, kp)
            prob = out.logits.float().softmax(-1).view(b, v, -1).mean(1)
            scores.append(prob.cpu())
            if out.features is not None:  # the TSM baseline has no entity features (no t-SNE then)
                feats.append(out.features.float().view(b, v, -1).mean(1).cpu())
            if out.routing is not None:  # ablations without routing (concat fusion, pooling, TSM baseline)
                routing.append(out.routing[..., 0].float().mean(dim=1).view(b, v, -1).mean(1).cpu())
            labels.append(batch["label"])
            indices.append(batch["index"])
    finally:
        model.train(was_training)

    def cat(xs):
        return torch.cat(xs).numpy() if xs else np.zeros((0,))

    return Predictions(scores=cat(scores).astype(np.float32), labels=cat(labels).astype(np.int64),
                       features=cat(feats).astype(np.float32), routing_st=cat(routing).astype(np.float32),
                       indices=cat(indices).astype(np.int64))


# --------------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------------


def write_file_atomic(path: Path, data: bytes | str) -> Path:
    """Atomic write of a result file (text as UTF-8): :func:`pipeline.artifacts.atomic_write_bytes`."""
    return atomic_write_bytes(path, data.encode("utf-8") if isinstance(data, str) else data)


def _csv_text(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def _figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save_fig(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return write_file_atomic(path, buf.getvalue())


def _body_names(classes: ClassList) -> list[str]:
    names = list(MA52.body_parts)
    if classes.background_index is not None:
        names.append("background")
    return names


def confusion_matrix(labels: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """[C, C] counts, rows true class, columns predicted class."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (labels, pred), 1)
    return cm


def write_submission(path: Path, ids: list[str], scores: np.ndarray, classes: ClassList) -> Path:
    """MA-52 challenge ``prediction.csv``: ``vid, action_pred_1..5, body_pred_1..5``.

    ``vid`` is the video file name (e.g. ``0003_01_0005.mp4``), predictions by decreasing score.
    Actions are MA-52 indices (the class list's taxonomy ids); body_pred_k is the body part of action_pred_k.
    """
    if classes.background_index is not None or len(classes) < 5:
        raise ValueError("the MA-52 submission needs a model over MA-52 actions (no background, >= 5 classes)")
    top = top_k_predictions(scores, 5)
    tax = np.array(classes.taxonomy_ids, dtype=np.int64)
    rows = []
    for vid, t in zip(ids, top):
        actions = tax[t]
        rows.append([vid, *actions.tolist(), *MA52.action_to_body[actions].tolist()])
    header = ["vid", *[f"action_pred_{k}" for k in range(1, 6)], *[f"body_pred_{k}" for k in range(1, 6)]]
    return write_file_atomic(path, _csv_text(header, rows))


def _tsne(features: np.ndarray, seed: int = 0) -> np.ndarray | None:
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        return None
    n = features.shape[0]
    if n < 5:
        return None
    return TSNE(n_components=2, perplexity=min(30.0, (n - 1) / 3), init="pca", random_state=seed).fit_transform(features)


def evaluate(weights: str | os.PathLike, prepared: str | os.PathLike, out_dir: str | os.PathLike, *,
             views: tuple[int, int] | None = None, batch_size: int = 12, device: str = "auto", workers: int = 2,
             submission: bool = False, amp: bool = True) -> list[Path]:
    """Evaluate a checkpoint on a prepared folder and write the outputs listed in the module docstring."""
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else torch.device(device)
    ckpt = load_checkpoint(weights, map_location=dev)
    data = PreparedClips(prepared)
    classes = ckpt.classes
    if data.classes != classes:
        raise ValueError(f"{prepared}: its class list differs from the checkpoint's ({len(data.classes)} vs "
                         f"{len(classes)} classes)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ds = ClipDataset(data, ckpt.plan.clip_len, train=False, preprocessing=ckpt.preprocessing, views=views)
    pred = predict_clips(ckpt.model, ds, batch_size=batch_size, device=dev, amp=amp, workers=workers,
                         preprocessing=ckpt.preprocessing, family=ckpt.family)
    written: list[Path] = []
    ids = [data.ids[i] for i in pred.indices]
    names = list(classes.names)
    c = len(classes)
    top1 = pred.scores.argmax(1) if len(pred.labels) else np.zeros(0, np.int64)

    metrics = classification_metrics(pred.labels, pred.scores, classes)
    tsne = _tsne(pred.features)
    report = {"metrics": metrics, "clips": int(len(pred.labels)), "views": list(views) if views else [1, 1],
              "checkpoint": str(weights), "checkpoint_sha256": ckpt.sha256, "prepared": str(prepared),
              "family": ckpt.family.name,
              "tsne": "written" if tsne is not None else "skipped (scikit-learn not installed, fewer than 5 clips, or a model without entity features)"}
    written.append(write_file_atomic(out / "metrics.json", json.dumps(report, indent=1) + "\n"))

    cm = confusion_matrix(pred.labels, top1, c)
    body = class_to_body(classes)
    body_names = _body_names(classes)
    rows = []
    for k in range(c):
        support, hits, predicted = int(cm[k].sum()), int(cm[k, k]), int(cm[:, k].sum())
        rec = hits / support if support else float("nan")
        prec = hits / predicted if predicted else float("nan")
        f1 = 2 * hits / (support + predicted) if support + predicted else float("nan")
        rows.append([k, names[k], body_names[body[k]], support, hits, f"{rec:.6g}", f"{prec:.6g}", f"{f1:.6g}"])
    written.append(write_file_atomic(out / "per_class.csv", _csv_text(
        ["class", "name", "body_part", "support", "correct", "accuracy", "precision", "f1"], rows)))
    written.append(write_file_atomic(out / "confusion.csv", _csv_text(["true\\pred", *names],
                                                                  [[names[k], *cm[k].tolist()] for k in range(c)])))
    written.append(write_file_atomic(out / "predictions.csv", _csv_text(
        ["id", "label", *[f"pred_{k}" for k in range(1, 6)], *[f"prob_{k}" for k in range(1, 6)]],
        [[i, int(lab), *top_k_predictions(s[None], min(5, c))[0].tolist(),
          *[f"{p:.5f}" for p in np.sort(s)[::-1][:5]]] for i, lab, s in zip(ids, pred.labels, pred.scores)])))

    # confusion matrix (row-normalised)
    fig = _figure((max(6, c * 0.18 + 2), max(5, c * 0.18 + 1.5)))
    ax = fig.subplots()
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set(xlabel="predicted class", ylabel="true class", title="Confusion (row-normalised)")
    fig.colorbar(im, ax=ax, shrink=0.8)
    written.append(_save_fig(fig, out / "confusion.png"))

    # class-wise accuracy (Fig. 4)
    fig = _figure((max(8, c * 0.22), 4))
    ax = fig.subplots()
    acc = np.array([cm[k, k] / cm[k].sum() if cm[k].sum() else 0.0 for k in range(c)])
    ax.bar(np.arange(c), acc * 100, color=[f"C{body[k] % 10}" for k in range(c)])
    ax.set_xticks(np.arange(c), names, rotation=90, fontsize=6)
    ax.set(ylabel="accuracy (%)", ylim=(0, 100), title="Class-wise accuracy (colour: body part)")
    written.append(_save_fig(fig, out / "classwise_accuracy.png"))

    # t-SNE (Fig. 5)
    if tsne is not None:
        fig = _figure((6, 5))
        ax = fig.subplots()
        lab_body = body[pred.labels]
        for b in np.unique(lab_body):
            sel = lab_body == b
            ax.scatter(tsne[sel, 0], tsne[sel, 1], s=6, label=body_names[b], color=f"C{b % 10}")
        ax.legend(fontsize=7, markerscale=2)
        ax.set(title="t-SNE of fused entity features (colour: true body part)", xticks=[], yticks=[])
        written.append(_save_fig(fig, out / "tsne.png"))

    # routing preference per class and entity (models without routing have none)
    if pred.routing_st.size:
        entities = list(ckpt.part_names)
        pref = np.full((c, len(entities)), np.nan)
        for k in range(c):
            sel = pred.labels == k
            if sel.any():
                pref[k] = pred.routing_st[sel].mean(0)
        written.append(write_file_atomic(out / "routing.csv", _csv_text(
            ["class", "name", "clips", *[f"st_{e.replace(' ', '_')}" for e in entities]],
            [[k, names[k], int((pred.labels == k).sum()), *[("" if np.isnan(x) else f"{x:.5f}") for x in pref[k]]]
             for k in range(c)])))
        fig = _figure((4 + len(entities) * 0.5, max(4, c * 0.2 + 1.5)))
        ax = fig.subplots()
        im = ax.imshow(np.ma.masked_invalid(pref), cmap="coolwarm", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(np.arange(len(entities)), entities, rotation=45, ha="right")
        ax.set_yticks(np.arange(c), names, fontsize=6)
        ax.set(title="Routing: mean ST weight (red: spatial-temporal, blue: temporal-spatial)")
        fig.colorbar(im, ax=ax, shrink=0.8)
        written.append(_save_fig(fig, out / "routing.png"))

    if submission:
        vids = [Path(data.records[i].get("video") or data.records[i]["id"]).name for i in pred.indices]
        written.append(write_submission(out / "prediction.csv", vids, pred.scores, classes))
    return written


def _parse_views(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    a, sep, b = text.lower().partition("x")
    if not sep or not a.isdigit() or not b.isdigit() or int(a) < 1 or int(b) not in (1, 3):
        raise ValueError(f"--views expects CLIPSxCROPS with CROPS 1 or 3 (e.g. 2x3), got {text!r}")
    return int(a), int(b)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m recipes.evaluate", description=(
        "Evaluate a checkpoint (any model family) on a prepared clip folder (metrics, per-class table, confusion, "
        "class-wise accuracy, t-SNE, routing preference; --submission: MA-52 prediction.csv). "
        "Exit status: 0 done, 2 bad input."), formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--weights", required=True, metavar="CKPT", help="checkpoint from python -m recipes.train")
    p.add_argument("--prepared", required=True, metavar="DIR", help="prepared folder (python -m recipes.prepare_clips)")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--views", metavar="CxS", help="multi-view testing: C temporal clips x S (1 or 3) crops")
    p.add_argument("--batch-size", type=int, default=12)
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--no-amp", action="store_true", help="no bf16 autocast on CUDA")
    p.add_argument("--submission", action="store_true", help="also write the MA-52 challenge prediction.csv")
    args = p.parse_args(argv)
    try:
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out} is an existing file, not a folder")
        written = evaluate(args.weights, args.prepared, out, views=_parse_views(args.views),
                           batch_size=args.batch_size, device=args.device, workers=args.workers,
                           submission=args.submission, amp=not args.no_amp)
    except (FileNotFoundError, ValueError, CheckpointError) as exc:
        print(f"recipes.evaluate: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    for w in written:
        print(f"wrote {w}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
