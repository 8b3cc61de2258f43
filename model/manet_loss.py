"""MANet's joint-embedding loss (MA-52 paper, section IV-C, Eqs. 2-3) and the label vectors it needs.

Each class c has a label vector q_c (the paper: the GloVe vectors of the label's words, averaged,
300-d; the benchmark release ships them as a file). The model maps the clip's averaged visual
feature into the same space, z = X_z [B, 300] (:class:`model.manet.MANet`). With labels y::

    Eq. 2 (distance="euclidean", the paper):  L_emb = 1/B sum_b || q_{y_b} - z_b ||_2
          (distance="mse", the authors' code):  L_emb = 1/(B*D) sum_b || q_{y_b} - z_b ||_2^2
    Eq. 3:                                    L     = L_cls + alpha * L_emb,   alpha = 5 (V-B)

L_cls is the cross-entropy of the logits. The label vectors are constants (no gradient).

**Without a label-vector file the loss is off**: L = L_cls, ``emb`` is reported as 0 and the
embedding head gets no gradient (:meth:`model.manet.MANet.loss`). Nothing is downloaded: the user
supplies the file (:func:`read_label_vectors`).

The Euclidean norm's gradient ``(z - q) / ||z - q||`` is undefined at z = q; a clamp keeps it
finite (the norm is computed as ``sqrt(max(sum (z - q)^2, 1e-12))``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["LabelVectorsError", "read_label_vectors", "joint_embedding_loss", "manet_loss", "MANetLossTerms",
           "EMBEDDING_DISTANCES", "LABEL_VECTOR_SUFFIXES"]

EMBEDDING_DISTANCES = ("euclidean", "mse")
LABEL_VECTOR_SUFFIXES = (".npy", ".csv", ".txt")


class LabelVectorsError(ValueError):
    """A label-vector file that cannot be used; the message is one line naming the file."""


def _text_rows(path: Path) -> tuple[list[str] | None, np.ndarray]:
    """Rows of a .csv (commas) or .txt (commas or whitespace): numbers, optionally a class name first."""
    names: list[str] = []
    values: list[list[float]] = []
    comma = path.suffix.lower() == ".csv"
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        cells = [c.strip() for c in (line.split(",") if comma or "," in line else line.split())]
        try:
            float(cells[0])
        except ValueError:  # a leading class name (GloVe's own text layout: word v1 ... vD)
            names.append(cells[0])
            cells = cells[1:]
        try:
            values.append([float(c) for c in cells])
        except ValueError:
            bad = next(c for c in cells if not _is_number(c))
            raise LabelVectorsError(f"{path}: line {n}: {bad!r} is not a number") from None
        if values and len(values[-1]) != len(values[0]):
            raise LabelVectorsError(f"{path}: line {n} has {len(values[-1])} numbers, the first row {len(values[0])}")
    if names and len(names) != len(values):
        raise LabelVectorsError(f"{path}: {len(names)} of {len(values)} rows start with a class name; all or none may")
    return (names or None), np.asarray(values, dtype=np.float64).reshape(len(values), -1)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_label_vectors(path: Path | str, num_classes: int, *, dim: int = 300,
                       class_names: Sequence[str] | None = None) -> torch.Tensor:
    """The label vectors q [num_classes, dim] (float32), row c for the model's output c.

    Formats: ``.npy`` (a [num_classes, dim] array), ``.csv`` / ``.txt`` (one row per class of
    ``dim`` numbers, comma- or whitespace-separated; a row may start with the class name). Rows are
    in the model's class order; when the file names its classes and ``class_names`` is given, the
    names must match that order (a file in another order would silently train the wrong targets).

    Raises :class:`LabelVectorsError` (one line naming the file) for a missing file, an unknown
    suffix, a wrong shape, a non-number, a non-finite value, or class names out of order.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in LABEL_VECTOR_SUFFIXES:
        raise LabelVectorsError(f"{path}: label vectors must be a {', '.join(LABEL_VECTOR_SUFFIXES)} file")
    if not path.is_file():
        raise LabelVectorsError(f"{path}: label-vector file not found")
    names = None
    try:
        if suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        else:
            names, array = _text_rows(path)
    except LabelVectorsError:
        raise
    except (OSError, ValueError) as exc:
        raise LabelVectorsError(f"{path}: cannot read label vectors: {str(exc).splitlines()[0]}") from None
    if array.ndim != 2 or array.shape != (num_classes, dim):
        raise LabelVectorsError(f"{path}: expected {num_classes} rows (one per class) of {dim} numbers, "
                                f"got shape {tuple(array.shape)}")
    if not np.issubdtype(array.dtype, np.number) or not np.isfinite(array).all():
        raise LabelVectorsError(f"{path}: label vectors must be finite numbers")
    if names is not None and class_names is not None and list(names) != list(class_names):
        first = next(i for i, (a, b) in enumerate(zip(names, class_names)) if a != b)
        raise LabelVectorsError(f"{path}: row {first + 1} is {names[first]!r} but the model's class {first} is "
                                f"{class_names[first]!r} (rows must follow the model's class order)")
    return torch.as_tensor(array, dtype=torch.float32)


def joint_embedding_loss(embedding: torch.Tensor, labels: torch.Tensor, label_vectors: torch.Tensor, *,
                         distance: str = "euclidean") -> torch.Tensor:
    """L_emb of Eq. 2 (module docstring), a scalar.

    ::

        embedding     z [B, D]   (the model's X_z)
        labels        y [B]      (class indices)
        label_vectors q [C, D]   -> targets q[y] [B, D], no gradient
    """
    if distance not in EMBEDDING_DISTANCES:
        raise ValueError(f"distance must be one of {EMBEDDING_DISTANCES}, got {distance!r}")
    if embedding.ndim != 2 or label_vectors.ndim != 2 or embedding.shape[1] != label_vectors.shape[1]:
        raise ValueError(f"embedding [B, D] and label vectors [C, D] must share D, got {tuple(embedding.shape)} "
                         f"and {tuple(label_vectors.shape)}")
    target = label_vectors.detach().to(device=embedding.device, dtype=torch.float32)[labels]
    if distance == "mse":
        return F.mse_loss(embedding.float(), target)
    return (embedding.float() - target).pow(2).sum(dim=1).clamp(min=1e-12).sqrt().mean()


@dataclass
class MANetLossTerms:
    """total = ce + alpha * emb (emb is 0 when the joint-embedding loss is off)."""

    total: torch.Tensor
    ce: torch.Tensor
    emb: torch.Tensor


def manet_loss(output, labels: torch.Tensor, *, label_vectors: torch.Tensor | None, alpha: float = 5.0,
               distance: str = "euclidean", label_smoothing: float = 0.0) -> MANetLossTerms:
    """Eq. 3: cross-entropy + alpha * L_emb. ``output`` is a :class:`model.manet.MANetOutput`.

    The embedding term is skipped (0, and it adds nothing to ``total``) when ``label_vectors`` is
    None, ``alpha`` is 0 or the model has no embedding head (``output.embedding`` is None).
    """
    ce = F.cross_entropy(output.logits.float(), labels, label_smoothing=label_smoothing)
    if label_vectors is not None and alpha > 0 and output.embedding is not None:
        emb = joint_embedding_loss(output.embedding, labels, label_vectors, distance=distance)
        return MANetLossTerms(total=ce + alpha * emb, ce=ce, emb=emb)
    return MANetLossTerms(total=ce, ce=ce, emb=ce.new_zeros(()))
