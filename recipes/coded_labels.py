"""Labels of recognition windows from human codings (the per-frame truth of the codings contract).

The *label source* is one coder (default: the coder with the most coded sessions, the lab's primary
coder; the others are then the human ceiling the model is compared with) or ``consensus`` (a frame
shows an action when at least ``consensus_share`` of the coders observing it code it; only frames
every coder observed count). Its per-frame tracks are :func:`analysis.agreement.raters.coder_ratings`'
(from ``events.parquet`` / ``sessions.parquet`` by :func:`pipeline.codings.contract.session_frames`,
the function that writes ``frames/<coder>/<video_id>.parquet``), so training, calibration and the
agreement tables read one and the same truth::

    seen[f]      the source observed frame f (inside the coded span)
    on[f, a]     frame f shows action a (co-occurring actions: several a)

A window ``[s, e)`` gets (``rule``)::

    centre       the action of its centre frame c = (s + e - 1) // 2 (the frame the "interpolate"
                 read-out gives the window's probability to, pipeline.frame_scores); several
                 co-occurring actions there: the one covering most of the window (then MA-52 order);
                 none: "background"; c not observed: no label (uncoded)
    majority     the class (an action or "background") covering most observed frames of the span;
                 purity = its share; fewer than half the span observed: no label
    multilabel   every action of the centre frame, one training example each (a softmax model then
                 shares its probability between co-occurring actions); none: "background"

"background" is observed time the coder coded as no micro-action. Windows without a clip (too little
pose, :mod:`recipes.coded_windows`) keep their row with ``clip`` null and are counted, never trained on.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.agreement.raters import Ratings, add_consensus, coder_ratings, read_codings
from model.preprocessing import BACKGROUND
from pipeline.cli import BadInput
from pipeline.manifest import Manifest

__all__ = ["LABEL_RULES", "CONSENSUS", "LabelSource", "read_coded_sessions", "label_source", "window_labels",
           "count_events", "truth_frames"]

LABEL_RULES = ("centre", "majority", "multilabel")
CONSENSUS = "consensus"
LABEL_COLUMNS = ("video_id", "participant_id", "group", "window", "start_frame", "end_frame", "valid_fraction",
                 "clip", "action", "purity")


@dataclass
class LabelSource:
    """The label source's tracks and what the codings hold (module docstring)."""

    name: str
    coders: tuple[str, ...]
    ratings: Ratings
    events: pd.DataFrame
    sessions: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    @property
    def tracks(self):
        return self.ratings.tracks[self.name]

    @property
    def actions(self) -> tuple[str, ...]:
        return self.ratings.actions

    @property
    def videos(self) -> list[str]:
        return list(self.tracks)


def read_coded_sessions(folders: list[str | Path], manifest: Manifest, *, manifest_name: str = "the manifest"
                        ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Events and sessions of one or more imported codings folders (e.g. one import per coder).

    Raises BadInput (one line) for a folder that is not a codings folder, a (video, coder) pair in two
    folders, or a coded video that is not in the manifest.
    """
    events, sessions = [], []
    where: dict[tuple[str, str], Path] = {}
    for folder in folders:
        e, s = read_codings(folder)
        for vid, coder in zip(s["video_id"], s["coder"]):
            if (vid, coder) in where:
                raise BadInput(f"{Path(folder) / 'sessions.parquet'}: video {vid!r} coded by {coder!r} is also in "
                               f"{where[(vid, coder)] / 'sessions.parquet'}")
            where[(vid, coder)] = Path(folder)
        events.append(e)
        sessions.append(s)
    events = pd.concat(events, ignore_index=True)
    sessions = pd.concat(sessions, ignore_index=True)
    known = set(manifest.videos["video_id"].astype(str))
    unknown = sessions[~sessions["video_id"].isin(known)]
    if len(unknown):
        vid, coder = unknown["video_id"].iloc[0], unknown["coder"].iloc[0]
        raise BadInput(f"{where[(vid, coder)] / 'sessions.parquet'}: coded video {vid!r} is not in {manifest_name} "
                       f"({unknown['video_id'].nunique()} coded video(s) are not)")
    pid = dict(zip(manifest.videos["video_id"].astype(str), manifest.videos["participant_id"].astype(str)))
    bad = sessions[sessions["video_id"].map(pid) != sessions["participant_id"]]
    if len(bad):
        r = bad.iloc[0]
        raise BadInput(f"{where[(r['video_id'], r['coder'])] / 'sessions.parquet'}: video {r['video_id']!r} belongs to "
                       f"participant {r['participant_id']!r} there but to {pid[r['video_id']]!r} in {manifest_name}")
    return events, sessions


def label_source(events: pd.DataFrame, sessions: pd.DataFrame, *, coder: str | None = None,
                 consensus_share: float = 0.5) -> LabelSource:
    """The label source (module docstring): ``coder`` a coder's name, ``"consensus"``, or None (the coder
    with the most sessions; ties: the first in the sessions table)."""
    coders = tuple(dict.fromkeys(sessions["coder"]))
    if not coders:
        raise BadInput("the codings hold no coded session")
    if coder is None:
        counts = Counter(sessions["coder"])
        coder = max(coders, key=lambda c: (counts[c], -coders.index(c)))
    if coder != CONSENSUS and coder not in coders:
        raise BadInput(f"--label-coder {coder!r} is not a coder of the codings ({', '.join(coders)})")
    if coder == CONSENSUS and len(coders) < 2:
        raise BadInput(f"--label-coder consensus needs two or more coders (the codings have {', '.join(coders)})")
    ratings = coder_ratings(events, sessions)
    if coder == CONSENSUS:
        add_consensus(ratings, share=consensus_share, name=CONSENSUS)
    return LabelSource(coder, coders, ratings, events, sessions)


def _centre_actions(on: np.ndarray, s: int, e: int) -> list[int]:
    c = (s + e - 1) // 2
    acts = list(np.flatnonzero(on[c]))
    if len(acts) > 1:
        cover = on[s:e].sum(axis=0)
        acts.sort(key=lambda a: (-cover[a], a))
    return acts


def window_labels(source: LabelSource, tables: dict, manifest: Manifest, *, rule: str = "centre") -> pd.DataFrame:
    """One row per window and label (:data:`LABEL_COLUMNS`): ``action`` an MA-52 name, ``"background"``, or
    None (the source did not observe the window: no label); multilabel: one row per action shown.

    ``tables``: video_id -> :class:`recipes.coded_windows.VideoTable` of the videos the source coded.
    """
    if rule not in LABEL_RULES:
        raise BadInput(f"--label-rule must be one of {', '.join(LABEL_RULES)}, got {rule!r}")
    actions = source.actions
    pid = dict(zip(manifest.videos["video_id"].astype(str), manifest.videos["participant_id"].astype(str)))
    group = dict(zip(manifest.videos["participant_id"].astype(str), manifest.videos["group"].astype(str)))
    out = []
    for vid, vt in tables.items():
        track = source.tracks.get(vid)
        if track is None:
            continue
        n = max(track.num_frames, int(vt.frame_count))
        track = track.padded(n)
        on, seen = track.on, track.seen
        for row in vt.table.itertuples(index=False):
            s, e = int(row.start_frame), int(row.end_frame)
            base = (vid, pid[vid], group[pid[vid]], int(row.window), s, e, float(row.valid_fraction), row.clip)
            if rule == "majority":
                obs = seen[s:e]
                if obs.sum() * 2 < (e - s):
                    out.append(base + (None, math.nan))
                    continue
                counts = np.append(on[s:e][obs].sum(axis=0), (~on[s:e][obs].any(axis=1)).sum())
                k = int(np.argmax(counts))
                label = BACKGROUND if k == len(actions) else actions[k]
                out.append(base + (label, float(counts[k] / obs.sum())))
                continue
            c = (s + e - 1) // 2
            if not seen[c]:
                out.append(base + (None, math.nan))
                continue
            acts = _centre_actions(on, s, e)
            if not acts:
                out.append(base + (BACKGROUND, 1.0))
            elif rule == "centre":
                out.append(base + (actions[acts[0]], 1.0))
            else:
                out += [base + (actions[a], 1.0 / len(acts)) for a in acts]
    df = pd.DataFrame(out, columns=list(LABEL_COLUMNS))
    df["window"] = df["window"].astype(np.int32)
    return df


def count_events(source: LabelSource) -> pd.DataFrame:
    """Per coded action of the label source: events (runs of frames), participants with one, coded frames."""
    rows = {a: [0, set(), 0] for a in source.actions}
    for vid, t in source.tracks.items():
        p = source.ratings.participant[vid]
        for j, a in enumerate(source.actions):
            x = t.on[:, j]
            starts = int(np.count_nonzero(x[1:] & ~x[:-1]) + (1 if x.size and x[0] else 0))
            if starts:
                rows[a][0] += starts
                rows[a][1].add(p)
                rows[a][2] += int(x.sum())
    return pd.DataFrame({"action": list(rows), "events": [v[0] for v in rows.values()],
                         "participants": [len(v[1]) for v in rows.values()],
                         "frames": [v[2] for v in rows.values()]})


def truth_frames(source: LabelSource, videos) -> pd.DataFrame:
    """The source's per-frame truth of ``videos`` as :func:`pipeline.agreement.read_frame_truth` returns it
    (video_id, frame, action; one row per observed frame without action, one per frame and action shown)."""
    parts = []
    for vid in videos:
        t = source.tracks.get(vid)
        if t is None:
            continue
        f, a = np.nonzero(t.on)
        none = np.flatnonzero(t.seen & ~t.on.any(axis=1))
        frames = np.concatenate([f, none])
        names = np.array(list(source.actions) + [None], dtype=object)
        acts = names[np.concatenate([a, np.full(none.size, len(source.actions))])]
        parts.append(pd.DataFrame({"video_id": vid, "frame": frames.astype(np.int64), "action": acts}))
    if not parts:
        return pd.DataFrame({"video_id": pd.Series(dtype=object), "frame": pd.Series(dtype=np.int64),
                             "action": pd.Series(dtype=object)})
    return pd.concat(parts, ignore_index=True).sort_values(["video_id", "frame"], kind="stable").reset_index(drop=True)
