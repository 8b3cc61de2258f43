"""Who coded what, frame by frame: the raters' tracks for the agreement (coders, the model, a consensus).

A *track* is one rater on one video::

    on     bool [F, A]   frame f shows action a (A = the compared actions, in ``Ratings.actions``)
    seen   bool [F]      the rater observed frame f (coder: inside the coded span; model: a valid frame,
                         i.e. covered by a window with probabilities; no-pose stretches are not seen)
    points bool [F, A]   frames of point events (coders only; None when there are none), for the
                         time-unit bins (a point codes every bin within half a bin of it)
    scores float [F, A]  the model's per-frame scores of the actions (the model only, on coded videos;
                         0 at frames it did not see), for the score sums of ``validation/scores.parquet``

Coders' tracks come from the codings contract (``RUN/codings/events.parquet`` and
``sessions.parquet``, turned into per-frame truth by :func:`pipeline.codings.contract.session_frames`,
the same function that writes ``frames/<coder>/<video_id>.parquet``). The model's come from the run's
read-out redone from its windows with the read-out settings recorded in ``readout/cohort.parquet``'s
sidecar (:func:`pipeline.aggregate.aggregate`), so its frames are exactly those behind percent time:
``on`` = frames inside final segments, ``seen`` = valid frames, ``scores`` = the per-frame scores
the read-out thresholds (the same ones behind the cohort table's ``mean_score``).

The consensus of several coders sees the frames every one of them observed and codes an action on a
frame when at least ``consensus_share`` of them do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from model.taxonomy import MA52
from pipeline.aggregate import aggregate
from pipeline.artifacts import read_artifact, read_sidecar
from pipeline.cli import BadInput
from pipeline.codings.contract import CODING_EVENTS, CODING_SESSIONS, session_frames
from pipeline.contracts import ContractError
from pipeline.manifest import read_manifest
from pipeline.readout import ReadoutConfig
from pipeline.run_folder import RunFolder

__all__ = ["Track", "Ratings", "read_codings", "coder_ratings", "add_model", "add_model_readouts", "add_consensus"]


@dataclass
class Track:
    """One rater on one video (see the module docstring)."""

    on: np.ndarray
    seen: np.ndarray
    points: np.ndarray | None = None
    scores: np.ndarray | None = None

    @property
    def num_frames(self) -> int:
        return int(self.seen.size)

    def padded(self, n: int) -> "Track":
        """The track over ``n >= num_frames`` frames (frames past its end: not seen)."""
        extra = n - self.num_frames
        if extra <= 0:
            return self
        A = self.on.shape[1]
        pad = np.zeros((extra, A), bool)
        return Track(np.vstack([self.on, pad]), np.concatenate([self.seen, np.zeros(extra, bool)]),
                     None if self.points is None else np.vstack([self.points, pad]),
                     None if self.scores is None else np.vstack([self.scores, np.zeros((extra, A))]))


@dataclass
class Ratings:
    """Every rater's tracks on a common action list.

    Attributes
    ----------
    actions : compared actions (MA-52 names), the columns of every track's ``on``
    coders : the compared coders, in order
    tracks : rater -> video_id -> Track (raters: the coders, ``model``, ``consensus``)
    fps : video_id -> the video's frame rate
    participant : video_id -> participant_id
    group : participant_id -> diagnostic group (from the run's manifest; empty without one)
    notes : what was left out and why (printed in the summary)
    model : facts about the model's read-out (model_id, readout text), empty without a model
    """

    actions: tuple[str, ...]
    coders: tuple[str, ...]
    tracks: dict[str, dict[str, Track]] = field(default_factory=dict)
    fps: dict[str, float] = field(default_factory=dict)
    participant: dict[str, str] = field(default_factory=dict)
    group: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    model: dict = field(default_factory=dict)

    @property
    def raters(self) -> list[str]:
        return list(self.tracks)


def read_codings(folder: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``events.parquet`` and ``sessions.parquet`` of a codings folder, checked against their contracts."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInput(f"--codings {folder}: no such folder (import codings with python -m pipeline.codings import)")
    out = []
    for name, contract in (("events.parquet", CODING_EVENTS), ("sessions.parquet", CODING_SESSIONS)):
        path = folder / name
        if not path.exists():
            raise BadInput(f"{path}: missing (a codings folder holds events.parquet and sessions.parquet)")
        try:
            out.append(read_artifact(path, contract).to_pandas())
        except ContractError:
            raise
        except Exception as exc:  # unreadable Parquet
            raise BadInput(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None
    events, sessions = out
    for df in (events, sessions):
        df["video_id"] = df["video_id"].astype(str)
        df["coder"] = df["coder"].astype(str)
    sessions["participant_id"] = sessions["participant_id"].astype(str)
    return events, sessions


def _coder_track(events: pd.DataFrame, session: pd.Series, col: dict[str, int], A: int) -> Track:
    n = int(session["num_frames"])
    frames = session_frames(events, session)
    seen = np.zeros(n, bool)
    on = np.zeros((n, A), bool)
    f = frames["frame"].to_numpy(np.int64)
    seen[f[f < n]] = True
    c = frames["action"].map(col).fillna(-1).to_numpy(np.int64)
    keep = (c >= 0) & (f < n)
    on[f[keep], c[keep]] = True
    pts = events[(events["video_id"] == session["video_id"]) & (events["coder"] == session["coder"])
                 & (events["kind"] == "point")]
    points = None
    if len(pts):
        points = np.zeros((n, A), bool)
        pf = pts["start_frame"].to_numpy(np.int64)
        pc = pts["action"].map(col).fillna(-1).to_numpy(np.int64)
        ok = (pc >= 0) & (pf < n)
        ok[ok] &= seen[pf[ok]]
        points[pf[ok], pc[ok]] = True
    return Track(on & seen[:, None], seen, points)


def coder_ratings(events: pd.DataFrame, sessions: pd.DataFrame, *, coders: tuple[str, ...] = (),
                  actions: tuple[str, ...] | None = None) -> Ratings:
    """The coders' tracks. ``actions`` default: every action any compared coder coded (MA-52 order).

    Raises BadInput naming a requested coder the codings do not have, or a video whose sessions give
    different frame rates or participants.
    """
    present = list(dict.fromkeys(sessions["coder"]))
    missing = [c for c in coders if c not in present]
    if missing:
        raise BadInput(f"--coders: {', '.join(map(repr, missing))} not in the codings (coders: {', '.join(present) or 'none'})")
    chosen = tuple(coders) or tuple(present)
    if not chosen:
        raise BadInput("the codings hold no session: nothing to compare")
    sessions = sessions[sessions["coder"].isin(chosen)]
    events = events[events["coder"].isin(chosen)]
    if actions is None:
        coded = set(events["action"])
        actions = tuple(a for a in MA52.actions if a in coded)
    r = Ratings(actions=tuple(actions), coders=chosen)
    col = {a: i for i, a in enumerate(r.actions)}
    for row in sessions.itertuples(index=False):
        vid = row.video_id
        for what, mapping, value in (("fps", r.fps, float(row.fps)), ("participant", r.participant, str(row.participant_id))):
            if vid in mapping and (mapping[vid] != value if what == "participant" else not math.isclose(mapping[vid], value)):
                raise BadInput(f"sessions.parquet: video {vid!r} has {what} {mapping[vid]!r} in one session and "
                               f"{value!r} in another")
            mapping[vid] = value
    for _, s in sessions.iterrows():
        r.tracks.setdefault(str(s["coder"]), {})[str(s["video_id"])] = _coder_track(events, s, col, len(r.actions))
    for c in chosen:
        r.tracks.setdefault(c, {})
    return r


def _readout_config(run: RunFolder, notes: list[str]) -> ReadoutConfig:
    meta = read_sidecar(run.cohort) or {}
    if isinstance(meta.get("readout"), dict):
        try:
            return ReadoutConfig.from_dict(meta["readout"])
        except (TypeError, ValueError) as exc:
            raise BadInput(f"{run.cohort}: the recorded read-out is not valid: {exc}") from None
    notes.append(f"{run.cohort} records no read-out settings: the model's frames use the default read-out")
    return ReadoutConfig()


def _check_coded_videos(ratings: Ratings, manifest, where: str) -> None:
    known = set(manifest.videos["video_id"].astype(str))
    unknown = sorted(set(ratings.participant) - known)
    if unknown:
        raise BadInput(f"codings: video {unknown[0]!r} is not in {where} ({len(unknown)} coded video(s) are not)")


def add_model(ratings: Ratings, run_dir: str | Path, *, name: str = "model") -> Ratings:
    """Add the model's tracks from a run folder and narrow the actions to the model's classes.

    Coded actions the model does not have are left out (named in ``notes``). Videos of the manifest
    that no coder coded are read out too (they carry no pair) so that the model's tracks are the
    cohort's. Raises BadInput when the run has no manifest or windows, or a coded video is not in
    the manifest.
    """
    run = RunFolder(run_dir)
    if not run.manifest.exists():
        raise BadInput(f"--run {run.root}: no manifest.csv (is it a cohort run folder?)")
    if not run.windows.is_dir():
        raise BadInput(f"--run {run.root}: no recognize/windows/ (the model's windows are needed)")
    manifest = read_manifest(run.manifest, check_videos=False)
    _check_coded_videos(ratings, manifest, str(run.manifest))
    config = _readout_config(run, ratings.notes)
    result = aggregate(manifest, run.windows, config, keep_scores=set(ratings.participant))  # the coded videos
    if result.classes is None:
        raise BadInput(f"--run {run.root}: no windows file could be read ({len(result.failures)} failed)")
    return add_model_readouts(ratings, manifest, [result], name=name, where=str(run.manifest))


def add_model_readouts(ratings: Ratings, manifest, results, *, name: str = "model", where: str = "the manifest"
                       ) -> Ratings:
    """Add the model's tracks from read-outs already made (:func:`pipeline.aggregate.aggregate` results).

    Several results (e.g. one per cross-validation fold, each read out with its own model and
    thresholds) are merged video by video; they must share one class list, and a video may come from
    one result only. The rest is :func:`add_model`'s (narrowing the actions, notes, groups); ``model``
    records every result's model id and read-out.
    """
    results = list(results)
    classes = results[0].classes
    if any(r.classes != classes for r in results):
        raise BadInput("model read-outs with different class lists cannot be compared as one model")
    _check_coded_videos(ratings, manifest, where)
    readouts, failures = {}, {}
    for r in results:
        twice = sorted(set(readouts) & set(r.readouts))
        if twice:
            raise BadInput(f"model read-outs: video {twice[0]!r} is read out twice")
        readouts.update(r.readouts)
        failures.update(r.failures)
    cols = [i for i, t in enumerate(classes.taxonomy_ids) if t is not None]
    model_actions = [classes.names[i] for i in cols]
    dropped = [a for a in ratings.actions if a not in set(model_actions)]
    if dropped:
        ratings.notes.append(f"coded action(s) not in the model's class list, left out: {', '.join(dropped)}")
    keep = [ratings.actions.index(a) if a in ratings.actions else -1 for a in model_actions]
    for rater, videos in ratings.tracks.items():
        for vid, t in videos.items():
            on = np.zeros((t.num_frames, len(model_actions)), bool)
            pts = None if t.points is None else np.zeros_like(on)
            for j, k in enumerate(keep):
                if k >= 0:
                    on[:, j] = t.on[:, k]
                    if pts is not None:
                        pts[:, j] = t.points[:, k]
            videos[vid] = Track(on, t.seen, pts)
    ratings.actions = tuple(model_actions)
    tracks = {}
    for vid, ro in readouts.items():
        tracks[vid] = Track(ro.active[:, cols] & ro.valid[:, None], ro.valid.copy(),
                            scores=None if ro.scores is None else ro.scores[:, cols])
        ratings.fps.setdefault(vid, ro.fps)
    for vid, why in failures.items():
        if vid in ratings.participant:
            ratings.notes.append(f"model: coded video {vid!r} could not be read out ({why}); it counts for coder pairs only")
    ratings.tracks[name] = tracks
    videos = manifest.videos
    for row in videos.itertuples(index=False):
        ratings.participant.setdefault(str(row.video_id), str(row.participant_id))
        ratings.group[str(row.participant_id)] = str(row.group)
    if len(results) == 1:
        config = results[0].config
        ratings.model = {"model_id": results[0].model_id, "readout": config.to_dict(), "readout_text": config.describe(),
                         "classes": len(model_actions)}
    else:
        ratings.model = {"model_id": ",".join(r.model_id for r in results),
                         "readout": [r.config.to_dict() for r in results],
                         "readout_text": "; ".join(r.config.describe() for r in results), "classes": len(model_actions)}
    return ratings


def add_consensus(ratings: Ratings, *, share: float = 0.5, name: str = "consensus") -> Ratings:
    """Add the consensus of the coders (see the module docstring); videos not coded by every coder are left out."""
    coders = ratings.coders
    videos = set.intersection(*(set(ratings.tracks[c]) for c in coders)) if coders else set()
    need = max(1, math.ceil(share * len(coders) - 1e-9))
    tracks = {}
    for vid in sorted(videos):
        n = max(ratings.tracks[c][vid].num_frames for c in coders)
        ts = [ratings.tracks[c][vid].padded(n) for c in coders]
        seen = np.logical_and.reduce([t.seen for t in ts])
        votes = np.sum([t.on for t in ts], axis=0)
        pts = [t.points for t in ts if t.points is not None]
        points = (np.sum(pts, axis=0) >= need) if pts else None
        tracks[vid] = Track((votes >= need) & seen[:, None], seen, points)
    ratings.tracks[name] = tracks
    return ratings
