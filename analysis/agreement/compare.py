"""The comparison itself: every pair of raters, per action and over all actions -> the validation tables.

Pairs: the model vs each coder (and vs the consensus when that is the reference), and every coder vs
every other coder (the human ceiling). Only frames both raters observed count (:mod:`.raters`);
``excluded_share`` says how much of the frames either observed that leaves out. Statistics:
:mod:`.kappa` (time-unit kappa, percent agreement, AC1, prevalence), :mod:`.percent` (ICC, Bland-
Altman, MAE, engagement), :mod:`.events` (event P/R/F1), :mod:`.verdicts` (bootstrap, verdicts).

The ``all`` row: the frame statistics of "any micro-action" (a frame is on when any compared action
is), and the event statistics summed over the actions (micro-average).

Column orders of the tables are fixed here (``*_COLUMNS``) and documented in docs/contracts.md
("validation/") and docs/validation.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from analysis.agreement.config import CONSENSUS, MODEL, AgreementConfig
from analysis.agreement.events import event_counts, prf
from analysis.agreement.kappa import binned, kappa_with_reason, pair_counts, with_any
from analysis.agreement.percent import BA_COLUMNS, ENGAGEMENT_COLUMNS, ICC_COLUMNS, bland_altman, engagement, icc
from analysis.agreement.raters import Ratings
from analysis.agreement.verdicts import VERDICTS, draws, interval, kappa_draws, verdict
from pipeline.contracts import Contract

__all__ = ["ALL", "PAIRS_LEADING", "PAIRS_COLUMNS", "PARTICIPANTS_COLUMNS", "COVERAGE_COLUMNS", "CONFUSION",
           "SCORES", "AgreementResult", "compare", "resolve_reference", "summary_markdown"]

ALL = "all"
PAIRS_LEADING = ("action", "rater_a", "rater_b", "n_participants", "kappa", "percent_agreement", "ac1", "icc2_1",
                 "icc3_1", "bias_pp", "loa_low_pp", "loa_high_pp", "mae_pp", "event_precision", "event_recall",
                 "event_f1")
PAIRS_COLUMNS = PAIRS_LEADING + (
    "kappa_low", "kappa_high", "icc2_1_low", "icc2_1_high", "icc3_1_low", "icc3_1_high",
    "kappa_diff", "kappa_diff_low", "kappa_diff_high", "verdict", "verdict_reason",
    "pair", "bins", "bin", "prevalence", "kappa_note", "icc_note", "loa_note", "event_note",
    "engagement_kappa", "engaged_both", "engaged_a_only", "engaged_b_only", "engaged_neither", "engagement_note",
    "events_matched", "events_a", "events_b", "frames_shared", "excluded_share",
)
PARTICIPANTS_COLUMNS = ("participant_id", "group", "action", "rater_a", "rater_b", "frames", "pct_a", "pct_b", "diff_pp")
COVERAGE_COLUMNS = ("participant_id", "group", "rater_a", "rater_b", "frames_a", "frames_b", "frames_shared",
                    "frames_either", "excluded_share")

CONFUSION = Contract(
    name="validation_confusion",
    version=1,
    schema=pa.schema([
        pa.field("participant_id", pa.string(), nullable=False),
        pa.field("group", pa.string(), nullable=False),
        pa.field("action", pa.string(), nullable=False),
        pa.field("reference", pa.string(), nullable=False),
        pa.field("tp", pa.int64(), nullable=False),
        pa.field("fp", pa.int64(), nullable=False),
        pa.field("fn", pa.int64(), nullable=False),
        pa.field("tn", pa.int64(), nullable=False),
        pa.field("frames", pa.int64(), nullable=False),
        pa.field("model_pct", pa.float64(), nullable=False),
        pa.field("coder_pct", pa.float64(), nullable=False),
    ]),
    unique=("participant_id", "action", "reference"),
)

# The model's per-frame scores summed over the reference's positive and negative frames, over the same
# frames as the confusion counts (pos_frames = tp + fn, neg_frames = fp + tn of the confusion row):
# the validation data of the probabilistic correction (analysis.misclassification, pacc).
SCORES = Contract(
    name="validation_scores",
    version=1,
    schema=pa.schema([
        pa.field("participant_id", pa.string(), nullable=False),
        pa.field("group", pa.string(), nullable=False),
        pa.field("action", pa.string(), nullable=False),
        pa.field("reference", pa.string(), nullable=False),
        pa.field("pos_score_sum", pa.float64(), nullable=False),
        pa.field("neg_score_sum", pa.float64(), nullable=False),
        pa.field("pos_frames", pa.int64(), nullable=False),
        pa.field("neg_frames", pa.int64(), nullable=False),
    ]),
    unique=("participant_id", "action", "reference"),
)


@dataclass
class _PairData:
    bins: np.ndarray      # [P, A + 1, 4] 2x2 counts over shared bins
    frames: np.ndarray    # [P, A + 1, 4] 2x2 counts over shared frames
    events: np.ndarray    # [P, A, 3] (matches, events a, events b)
    cover: np.ndarray     # [P, 4] frames seen by a, by b, by both, by either (videos both have)
    scores: np.ndarray | None = None  # [P, A, 2] a's scores summed over shared frames b marks / leaves (a: the model)


@dataclass
class AgreementResult:
    """The validation tables and what they were computed from."""

    pairs: pd.DataFrame
    participants: pd.DataFrame
    coverage: pd.DataFrame
    confusion: pd.DataFrame | None
    reference: str | None
    coders: tuple[str, ...]
    actions: tuple[str, ...]
    config: AgreementConfig
    notes: list[str] = field(default_factory=list)
    model: dict = field(default_factory=dict)
    scores: pd.DataFrame | None = None

    def summary(self) -> dict:
        """A JSON-able summary (the flow's Prefect artifact; ``summary.json``)."""
        model_rows = self.pairs[(self.pairs["rater_a"] == MODEL) & (self.pairs["action"] != ALL)
                                & self.pairs["rater_b"].isin(self.coders)]
        per_action = model_rows.drop_duplicates("action").set_index("action")
        verdicts = {v: sorted(per_action.index[per_action["verdict"] == v]) for v in VERDICTS} if len(per_action) else {}
        cov = self.coverage
        shared, either = float(cov["frames_shared"].sum()), float(cov["frames_either"].sum())
        coder_rows = self.pairs[(self.pairs["pair"] == "coder-coder") & (self.pairs["action"] == ALL)]
        model_all = self.pairs[(self.pairs["rater_a"] == MODEL) & (self.pairs["action"] == ALL)]
        return {
            "coders": list(self.coders),
            "reference": self.reference,
            "model": bool(self.model),
            "participants": int(self.participants["participant_id"].nunique()) if len(self.participants) else 0,
            "actions": len(self.actions),
            "bin": self.config.describe_bin(),
            "tolerance_s": self.config.tolerance_s,
            "excluded_share": (1 - shared / either) if either else None,
            "verdicts": {k: len(v) for k, v in verdicts.items()},
            "below_coder_range": verdicts.get(VERDICTS[1], []),
            "within_coder_range": verdicts.get(VERDICTS[0], []),
            "coder_kappa_all": _finite_list(coder_rows["kappa"]),
            "model_kappa_all": _finite_list(model_all["kappa"]),
            "notes": list(self.notes),
        }

    def markdown(self) -> str:
        """The summary as Markdown (for a Prefect markdown artifact): :func:`summary_markdown`."""
        return summary_markdown(self.summary(), self.pairs)


def summary_markdown(s: dict, pairs: pd.DataFrame) -> str:
    """Markdown of a summary (:meth:`AgreementResult.summary`, or ``summary.json`` read back) and its pairs table."""
    lines = [f"**Validation against human coding**: coders {', '.join(s['coders'])}; reference {s['reference']}; "
             f"{s['participants']} participants; bin {s['bin']}; onset tolerance {s['tolerance_s']:g} s.", ""]
    if s["excluded_share"] is not None:
        lines.append(f"Frames excluded (not observed by both sides): {100 * s['excluded_share']:.1f} %.")
    if s["model"]:
        lines.append("")
        lines.append("| verdict | actions |")
        lines.append("|---|---|")
        for v in VERDICTS:
            names = [a for a in pairs.loc[(pairs["verdict"] == v) & (pairs["action"] != ALL), "action"].unique()]
            lines.append(f"| {v} | {len(names)}{': ' + ', '.join(names[:12]) if names else ''}{' ...' if len(names) > 12 else ''} |")
    for n in s["notes"]:
        lines.append(f"- {n}")
    return "\n".join(lines)


def _finite_list(s: pd.Series) -> list[float]:
    return [float(v) for v in s if np.isfinite(v)]


def resolve_reference(config: AgreementConfig, coders: tuple[str, ...]) -> str:
    """The reference coder: the configured one, else consensus (>= 2 coders) or the only coder."""
    ref = config.reference
    if ref is None:
        return CONSENSUS if len(coders) >= 2 else coders[0]
    if ref != CONSENSUS and ref not in coders:
        from pipeline.cli import BadInput

        raise BadInput(f"--reference {ref!r} is not a compared coder ({', '.join(coders)}) nor {CONSENSUS!r}")
    if ref == CONSENSUS and len(coders) < 2:
        from pipeline.cli import BadInput

        raise BadInput(f"--reference consensus needs two or more coders (have {', '.join(coders)})")
    return ref


def _pair_data(r: Ratings, a: str, b: str, pids: dict[str, int], cfg: AgreementConfig) -> _PairData:
    A1 = len(r.actions) + 1
    P = len(pids)
    out = _PairData(np.zeros((P, A1, 4), np.int64), np.zeros((P, A1, 4), np.int64),
                    np.zeros((P, A1 - 1, 3), np.int64), np.zeros((P, 4), np.int64))
    bin_s = cfg.bin_seconds
    videos = sorted(set(r.tracks[a]) & set(r.tracks[b]))
    if videos and all(r.tracks[a][v].scores is not None for v in videos):
        out.scores = np.zeros((P, A1 - 1, 2))
    for vid in videos:
        p = pids[r.participant[vid]]
        fps = r.fps[vid]
        n = max(r.tracks[a][vid].num_frames, r.tracks[b][vid].num_frames)
        ta, tb = r.tracks[a][vid].padded(n), r.tracks[b][vid].padded(n)
        shared = ta.seen & tb.seen
        out.frames[p] += pair_counts(with_any(ta.on), with_any(tb.on), shared)
        ba, sa = binned(ta, fps, bin_s, n)
        bb, sb = binned(tb, fps, bin_s, n)
        out.bins[p] += pair_counts(with_any(ba), with_any(bb), sa & sb)
        out.events[p] += event_counts(ta.on, tb.on, shared, fps=fps, tolerance_s=cfg.tolerance_s,
                                      min_overlap=cfg.min_overlap)
        out.cover[p] += (ta.seen.sum(), tb.seen.sum(), shared.sum(), (ta.seen | tb.seen).sum())
        if out.scores is not None:
            w = ta.scores * shared[:, None]
            out.scores[p, :, 0] += (w * tb.on).sum(0)
            out.scores[p, :, 1] += (w * ~tb.on).sum(0)
    return out


def compare(r: Ratings, cfg: AgreementConfig) -> AgreementResult:
    """Compare every pair of raters of ``r`` (coders, and the model when ``r`` has one)."""
    coders = r.coders
    has_model = MODEL in r.tracks
    reference = resolve_reference(cfg, coders) if has_model else None
    if has_model and reference == CONSENSUS and CONSENSUS not in r.tracks:
        from analysis.agreement.raters import add_consensus

        add_consensus(r, share=cfg.consensus_share, name=CONSENSUS)
    pairs: list[tuple[str, str, str]] = []
    if has_model:
        pairs += [(MODEL, c, "model-coder") for c in coders]
        if reference == CONSENSUS:
            pairs.append((MODEL, CONSENSUS, "model-consensus"))
    pairs += [(coders[i], coders[j], "coder-coder") for i in range(len(coders)) for j in range(i + 1, len(coders))]
    pid_list = list(dict.fromkeys(r.participant[v] for rater in r.tracks.values() for v in rater))
    pids = {p: i for i, p in enumerate(pid_list)}
    actions = list(r.actions) + [ALL]
    A1 = len(actions)
    data = {(a, b): _pair_data(r, a, b, pids, cfg) for a, b, _ in pairs}
    W = draws(len(pid_list), cfg.bootstrap, cfg.seed)
    kd = {k: kappa_draws(d.bins, W) for k, d in data.items()}   # [B, A1]

    rows, part_rows, cov_rows = [], [], []
    for a, b, kind in pairs:
        d = data[(a, b)]
        present = d.cover[:, 2] > 0
        lo, hi = interval(kd[(a, b)])
        for j, action in enumerate(actions):
            c = d.bins[present, j].sum(0)
            k, po, ac1, prev, knote = kappa_with_reason(c, cfg.min_prevalence)
            fr = d.frames[present, j]
            tot = fr.sum(1).astype(float)
            pa = 100 * (fr[:, 0] + fr[:, 1]) / np.maximum(tot, 1)
            pb = 100 * (fr[:, 0] + fr[:, 2]) / np.maximum(tot, 1)
            ev = d.events[present, j].sum(0) if j < A1 - 1 else d.events[present].sum((0, 1))
            ep, er, ef, enote = prf(*ev)
            row = {"action": action, "rater_a": a, "rater_b": b, "n_participants": int(present.sum()),
                   "kappa": k, "percent_agreement": po, "ac1": ac1,
                   **icc(pa, pb, min_participants=cfg.min_participants), **bland_altman(pa, pb),
                   "event_precision": ep, "event_recall": er, "event_f1": ef,
                   "kappa_low": lo[j] if np.isfinite(k) else np.nan, "kappa_high": hi[j] if np.isfinite(k) else np.nan,
                   "pair": kind, "bins": int(c.sum()), "bin": cfg.bin,
                   "prevalence": prev, "kappa_note": knote, "event_note": enote, **engagement(pa, pb),
                   "events_matched": int(ev[0]), "events_a": int(ev[1]), "events_b": int(ev[2]),
                   "frames_shared": int(d.cover[:, 2].sum()),
                   "excluded_share": (1 - d.cover[:, 2].sum() / d.cover[:, 3].sum()) if d.cover[:, 3].sum() else np.nan}
            if cfg.bootstrap == 0 and np.isfinite(k):
                row["kappa_note"] = "no interval: --bootstrap 0"
            rows.append(row)
            for p in np.flatnonzero(present):
                pid = pid_list[p]
                x, y = (d.frames[p, j, 0] + d.frames[p, j, 1]), (d.frames[p, j, 0] + d.frames[p, j, 2])
                n = d.frames[p, j].sum()
                part_rows.append({"participant_id": pid, "group": r.group.get(pid), "action": action, "rater_a": a,
                                  "rater_b": b, "frames": int(n), "pct_a": 100 * x / n if n else np.nan,
                                  "pct_b": 100 * y / n if n else np.nan,
                                  "diff_pp": 100 * (x - y) / n if n else np.nan})
        for p in np.flatnonzero(d.cover[:, 3] > 0):
            fa, fb, fs, fe = (int(v) for v in d.cover[p])
            cov_rows.append({"participant_id": pid_list[p], "group": r.group.get(pid_list[p]), "rater_a": a,
                             "rater_b": b, "frames_a": fa, "frames_b": fb, "frames_shared": fs, "frames_either": fe,
                             "excluded_share": 1 - fs / fe})

    table = pd.DataFrame(rows)
    _add_verdicts(table, data, kd, pairs, actions, coders, cfg, has_model)
    table = table.reindex(columns=list(PAIRS_COLUMNS))
    participants = pd.DataFrame(part_rows, columns=list(PARTICIPANTS_COLUMNS))
    coverage = pd.DataFrame(cov_rows, columns=list(COVERAGE_COLUMNS))
    confusion = _confusion(r, data[(MODEL, reference)], pid_list, reference) if has_model else None
    scores = _scores(r, data[(MODEL, reference)], pid_list, reference) if has_model else None
    return AgreementResult(pairs=table, participants=participants, coverage=coverage, confusion=confusion,
                           reference=reference, coders=coders, actions=tuple(r.actions), config=cfg,
                           notes=list(r.notes), model=dict(r.model), scores=scores)


def _add_verdicts(table: pd.DataFrame, data, kd, pairs, actions, coders, cfg: AgreementConfig, has_model: bool) -> None:
    table["kappa_diff"] = np.nan
    table["kappa_diff_low"] = np.nan
    table["kappa_diff_high"] = np.nan
    table["verdict"] = None
    table["verdict_reason"] = None
    coder_pairs = [(a, b) for a, b, k in pairs if k == "coder-coder"]
    model_pairs = [(a, b) for a, b, k in pairs if k == "model-coder"]
    is_coder = table["pair"] == "coder-coder"
    table.loc[is_coder, "verdict_reason"] = ("coder-vs-coder pair: the human ceiling the model is compared with"
                                             if has_model else "no model compared (--run not given)")
    table.loc[table["pair"] == "model-consensus", "verdict_reason"] = (
        "model vs the consensus reference; the verdict compares the model with each coder")
    if not has_model:
        return
    for j, action in enumerate(actions):
        sel = (table["action"] == action)
        mrows = table[sel & (table["pair"] == "model-coder")]
        crows = table[sel & is_coder]
        mk, ck = mrows["kappa"].tolist(), crows["kappa"].tolist()
        notes = [n for n in mrows["kappa_note"].tolist() + crows["kappa_note"].tolist()
                 if n and not str(n).startswith("no interval")]
        if len(crows) and not crows["n_participants"].gt(0).all():
            notes.insert(0, "a coder pair shares no coded participant")
        n_part = int(mrows["n_participants"].min()) if len(mrows) else 0
        if len(crows):
            n_part = min(n_part, int(crows["n_participants"].min()))
        diff = diff_lo = diff_hi = np.nan
        if coder_pairs and model_pairs and all(np.isfinite(mk + ck)):
            diff = float(np.mean(mk) - np.mean(ck))
            dd = (np.mean([kd[p][:, j] for p in model_pairs], axis=0)
                  - np.mean([kd[p][:, j] for p in coder_pairs], axis=0))
            lo, hi = interval(dd[:, None])
            diff_lo, diff_hi = float(lo[0]), float(hi[0])
        engaged = int(crows["engaged_both"].min()) if len(crows) and crows["engaged_both"].notna().all() else None
        v, why = verdict(n_coders=len(coders), n_participants=n_part, min_participants=cfg.min_participants,
                         model_kappas=mk, coder_kappas=ck, notes=notes, diff_high=diff_hi,
                         engaged=engaged, min_engaged=cfg.min_engaged)
        m = sel & (table["pair"] == "model-coder")
        table.loc[m, "kappa_diff"] = diff
        table.loc[m, "kappa_diff_low"] = diff_lo
        table.loc[m, "kappa_diff_high"] = diff_hi
        table.loc[m, "verdict"] = v
        table.loc[m, "verdict_reason"] = why


def _confusion(r: Ratings, d: _PairData, pid_list: list[str], reference: str) -> pd.DataFrame:
    rows = []
    for p in np.flatnonzero(d.cover[:, 2] > 0):
        pid = pid_list[p]
        for j, action in enumerate(r.actions):
            tp, fp, fn, tn = (int(v) for v in d.frames[p, j])
            n = tp + fp + fn + tn
            rows.append({"participant_id": pid, "group": r.group.get(pid, ""), "action": action, "reference": reference,
                         "tp": tp, "fp": fp, "fn": fn, "tn": tn, "frames": n,
                         "model_pct": 100 * (tp + fp) / n, "coder_pct": 100 * (tp + fn) / n})
    return pd.DataFrame(rows, columns=CONFUSION.schema.names)


def _scores(r: Ratings, d: _PairData, pid_list: list[str], reference: str) -> pd.DataFrame | None:
    """The SCORES rows beside :func:`_confusion`'s (same participants, actions and frames); None when
    the model's tracks carry no per-frame scores."""
    if d.scores is None:
        return None
    rows = []
    for p in np.flatnonzero(d.cover[:, 2] > 0):
        pid = pid_list[p]
        for j, action in enumerate(r.actions):
            tp, fp, fn, tn = (int(v) for v in d.frames[p, j])
            rows.append({"participant_id": pid, "group": r.group.get(pid, ""), "action": action, "reference": reference,
                         "pos_score_sum": float(d.scores[p, j, 0]), "neg_score_sum": float(d.scores[p, j, 1]),
                         "pos_frames": tp + fn, "neg_frames": fp + tn})
    return pd.DataFrame(rows, columns=SCORES.schema.names)
