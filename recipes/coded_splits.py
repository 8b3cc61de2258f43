"""Splits of a coded cohort by participant: a hold-out validation set, or K folds.

Windows of one participant are strongly correlated (same person, room, camera, coder), so a model is
judged only on participants it never saw: every split here assigns *participants*, never windows or
videos, and a participant's videos all go where the participant goes. Both splits are stratified by
diagnostic group, so the model is not validated on one group only, and delegate to scikit-learn:

    holdout   sklearn.model_selection.train_test_split(participants, test_size=share, stratify=group,
              random_state=seed): about ``share`` of every group validates, the rest trains
    K folds   sklearn.model_selection.StratifiedKFold(K, shuffle=True, random_state=seed) over the
              participants with their group as the class: fold k validates on its participants and
              trains on all others; every participant validates exactly once

A group with fewer participants than folds could not be in every fold's validation part: that (and a
hold-out that would leave a group without a validation or a training participant) is bad input,
one line naming the group, before anything is written.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.cli import BadInput

__all__ = ["participants_table", "holdout_split", "kfold_splits", "part_names"]


def participants_table(manifest_videos: pd.DataFrame, video_ids) -> pd.DataFrame:
    """participant_id, group of the participants owning ``video_ids`` (manifest order)."""
    v = manifest_videos[manifest_videos["video_id"].astype(str).isin(set(video_ids))]
    t = v[["participant_id", "group"]].astype(str).drop_duplicates("participant_id").reset_index(drop=True)
    return t


def holdout_split(participants: pd.DataFrame, *, share: float = 0.25, seed: int = 0) -> pd.DataFrame:
    """participant_id, group, part (``train`` / ``validation``): one stratified hold-out split."""
    from sklearn.model_selection import train_test_split

    if not 0.0 < share < 1.0:
        raise BadInput(f"--val-share must be in (0, 1), got {share}")
    sizes = participants.groupby("group").size()
    for g, n in sizes.items():
        if n < 2:
            raise BadInput(f"group {g!r} has {n} participant(s): a stratified hold-out needs at least one training "
                           f"and one validation participant per group (raise --val-share or code more participants)")
    try:
        _, val = train_test_split(participants["participant_id"].to_numpy(), test_size=share,
                                  stratify=participants["group"].to_numpy(), random_state=seed)
    except ValueError as exc:
        raise BadInput(f"hold-out split: {exc}") from None
    out = participants.copy()
    out["part"] = np.where(out["participant_id"].isin(set(val)), "validation", "train")
    missing = [g for g, d in out.groupby("group") if (d["part"] == "validation").sum() == 0 or (d["part"] == "train").sum() == 0]
    if missing:
        raise BadInput(f"group {missing[0]!r}: --val-share {share} leaves it without a training or a validation "
                       "participant")
    return out


def kfold_splits(participants: pd.DataFrame, folds: int, *, seed: int = 0) -> pd.DataFrame:
    """participant_id, group, fold (1..K): the fold in which the participant validates."""
    from sklearn.model_selection import StratifiedKFold

    if folds < 2:
        raise BadInput(f"--folds must be >= 2, got {folds}")
    sizes = participants.groupby("group").size()
    small = sizes[sizes < folds]
    if len(small):
        g, n = small.index[0], int(small.iloc[0])
        raise BadInput(f"--folds {folds} is larger than group {g!r} ({n} participants): every fold must validate on "
                       f"every group; use --folds {int(sizes.min())} or fewer")
    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    fold = np.zeros(len(participants), np.int64)
    for k, (_, val) in enumerate(skf.split(np.zeros(len(participants)), participants["group"].to_numpy()), start=1):
        fold[val] = k
    out = participants.copy()
    out["fold"] = fold
    return out


def part_names(folds: int | None) -> list[str]:
    """Names of the parts trained: ``holdout``, or ``fold-1`` ... ``fold-K``."""
    return ["holdout"] if not folds else [f"fold-{k}" for k in range(1, folds + 1)]
