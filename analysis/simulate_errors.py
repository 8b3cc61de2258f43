"""A read-out with known frame error rates, applied to a simulated cohort's true frames.

For the proofs of :mod:`analysis.misclassification` (tests, bench): :func:`analysis.simulate.simulate_cohort`
gives each participant's true percent time; with ``N = round(observed_s x frame_rate)`` frames, of which
``k = round(N percent_time / 100)`` show the action, the read-out marks::

    observed frames = Binomial(k, tpr[g, a]) + Binomial(N - k, fpr[g, a]) + Binomial(k, boundary[g])

(frames independent), ``tpr``/``fpr`` per group and action. The third term are boundary errors:
false-positive frames next to the action's own (segments read too long), so many per true frame; they
scale with the true share, which ACC's model (false positives spread over the negative frames) does
not describe and the ratio estimator does (:mod:`analysis.misclassification`). It is capped at the
negative frames left. The score sums do not see boundary frames (they are drawn from ``k`` positive and
``N - k`` negative frames), so PACC is not to be judged on a scenario with them. Coded (validation) participants are drawn
from the same cohort, ``coded_per_group`` per group, and their confusion counts (``tp`` = the first
binomial, ``fn = k - tp``, ``fp`` the second, ``tn = N - k - fp``) form a ``validation/confusion.parquet``
table of the contract (reference ``consensus``). Per-frame scores for PACC: a positive frame's score
has mean ``score_pos``, a negative one's ``score_neg`` (the participant's score sum is drawn as a normal
with the binomial-Beta variance of those means; enough for means over thousands of frames).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["ReadoutErrors", "misread_cohort"]


@dataclass(frozen=True)
class ReadoutErrors:
    """Frame error rates of a simulated read-out.

    Attributes
    ----------
    tpr, fpr : float
        Default rates of every group and action.
    group_tpr, group_fpr : dict of str -> float
        Per-group rates (override the default for every action of the group).
    action_tpr : dict of (str, str) -> float
        ``(action, group) -> tpr``: one action read differently in one group (differential miss).
    boundary, group_boundary : float, dict of str -> float
        Boundary false positives per true frame (default and per group; 0: none).
    score_pos, score_neg : float
        Mean per-frame score on positive and negative frames (PACC).
    frame_rate : float
    coded_per_group : int
        Coded participants drawn from each group.
    """

    tpr: float = 0.6
    fpr: float = 0.005
    group_tpr: dict[str, float] = field(default_factory=dict)
    group_fpr: dict[str, float] = field(default_factory=dict)
    action_tpr: dict[tuple[str, str], float] = field(default_factory=dict)
    boundary: float = 0.0
    group_boundary: dict[str, float] = field(default_factory=dict)
    score_pos: float = 0.7
    score_neg: float = 0.05
    frame_rate: float = 30.0
    coded_per_group: int = 12


def misread_cohort(cohort: pd.DataFrame, errors: ReadoutErrors = ReadoutErrors(), *, seed: int = 0
                   ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """The cohort as the erring read-out reports it, the coded participants' confusion counts and score sums.

    Returns
    -------
    observed : pandas.DataFrame
        ``cohort`` with ``percent_time`` as read out and ``mean_score`` (mean per-frame score).
    confusion : pandas.DataFrame
        The validation contract's columns for the coded participants (reference ``consensus``).
    scores : pandas.DataFrame
        ``participant_id, action, reference, pos_score_sum, neg_score_sum`` for the same rows.
    """
    rng = np.random.default_rng(seed)
    g = cohort["group"].astype(str).to_numpy()
    a = cohort["action"].astype(str).to_numpy()
    tpr = np.array([errors.group_tpr.get(x, errors.tpr) for x in g])
    for (act, grp), v in errors.action_tpr.items():
        tpr[(a == act) & (g == grp)] = v
    fpr = np.array([errors.group_fpr.get(x, errors.fpr) for x in g])
    n = np.maximum(np.round(cohort["observed_s"].to_numpy(dtype=np.float64) * errors.frame_rate), 1).astype(np.int64)
    k = np.round(n * cohort["percent_time"].to_numpy(dtype=np.float64) / 100.0).astype(np.int64)
    tp = rng.binomial(k, tpr)
    fp = rng.binomial(n - k, fpr)
    bnd = np.array([errors.group_boundary.get(x, errors.boundary) for x in g])
    if (bnd > 0).any():  # drawn only when asked for, so that the other scenarios keep their random streams
        fp = np.minimum(fp + rng.binomial(k, np.clip(bnd, 0.0, 1.0)), n - k)
    obs = 100.0 * (tp + fp) / n
    # score sums: frame scores with the given means and a Beta-like spread (sd 0.15) around them
    sd = 0.15
    pos_sum = np.maximum(rng.normal(k * errors.score_pos, sd * np.sqrt(np.maximum(k, 1))), 0.0) * (k > 0)
    neg_sum = np.maximum(rng.normal((n - k) * errors.score_neg, sd * np.sqrt(np.maximum(n - k, 1))), 0.0)
    observed = cohort.assign(percent_time=obs, mean_score=np.clip((pos_sum + neg_sum) / n, 0.0, 1.0))

    people = cohort.drop_duplicates("participant_id")[["participant_id", "group"]]
    coded = []
    for _, d in people.groupby("group", sort=True):
        ids = d["participant_id"].to_numpy()
        coded += list(rng.choice(ids, size=min(errors.coded_per_group, ids.size), replace=False))
    sel = cohort["participant_id"].isin(coded).to_numpy()
    confusion = pd.DataFrame({
        "participant_id": cohort["participant_id"].to_numpy()[sel], "group": g[sel], "action": a[sel],
        "reference": "consensus", "tp": tp[sel], "fp": fp[sel], "fn": (k - tp)[sel], "tn": (n - k - fp)[sel],
        "frames": n[sel], "model_pct": obs[sel], "coder_pct": (100.0 * k / n)[sel],
    })  # fmt: skip
    scores = pd.DataFrame({
        "participant_id": confusion["participant_id"], "action": confusion["action"], "reference": "consensus",
        "pos_score_sum": pos_sum[sel], "neg_score_sum": neg_sum[sel],
    })  # fmt: skip
    return observed.reset_index(drop=True), confusion.reset_index(drop=True), scores.reset_index(drop=True)
