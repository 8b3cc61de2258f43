"""Untrimmed participant recordings with planted group effects, and a whole simulated cohort.

Generating model (per participant i in group g and simulated action a; the hurdle model the analysis
fits, :mod:`analysis.hurdle`, so planted effects are what it estimates)::

    engaged_ia ~ Bernoulli(expit(logit(p_a) + b_prob[a, g]))
    share_ia   ~ Beta(mu phi, (1 - mu) phi),   mu = expit(logit(m_a) + b_int[a, g])
    target_ia  = max(share_ia * N, shortest event)  seconds of action a, if engaged

``p_a`` (:attr:`ActionRates.p_engaged`) and ``m_a`` (:attr:`ActionRates.mean_share`) are the reference
group's rates; ``b`` are the planted log odds ratios (:attr:`ActionRates.prob_effects`,
:attr:`ActionRates.intensity_effects`, absent = 0 = a null action). The target time is cut into events
of 1-3 s (the last one shorter, never below the shortest duration); all events of a participant are
shuffled and laid out on the timeline with random gaps of at least ``min_gap_s`` (one action at a
time). If they do not fit in ``busy_max`` of the recording, random events are dropped. The *true*
percent time is counted from the frames actually labelled, so it is exact whatever was dropped.

Outputs of :func:`write_cohort` (folder ``OUT``; all tables are written atomically):

- ``manifest.csv``: ``participant_id,group,age,sex,video`` (video relative to ``OUT``)
- ``videos/<participant_id>.mp4``: 30 fps MP4 (``mp4v``)
- ``truth/frames/<participant_id>.parquet``: ``video_id, frame, time_s, action_id, action`` per frame
  (``action`` null / ``action_id`` -1 = no micro-action), sidecar with the participant's spec
- ``truth/detections.csv``: ``video_id,t_start,t_end,class`` (MMA-52 ground-truth form; ``class`` is the
  MA-52 action *name*; ``t_end`` is the end of the event's last frame, ``stop / fps``)
- ``truth/percent_time.parquet`` (contract ``cohort``) and ``.csv``: ``participant_id, group,
  action_id, action, percent_time, observed_s, age, sex``, one row per participant x simulated action
- ``truth/effects.csv``: the planted effects (``action, group, part, log_or, reference``)
- ``config.json``: the cohort configuration
"""

from __future__ import annotations

import csv
import io
import json
import logging
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy import special

from model.taxonomy import MA52
from pipeline.artifacts import atomic_write_text, is_up_to_date, write_artifact
from simulator.appearance import LookRanges, sample_look
from simulator.motions import DURATION_S, PROGRAMS, idle_controls
from simulator.render import Renderer, write_mp4
from simulator.skeleton import skeleton_at

__all__ = ["ActionRates", "CohortConfig", "Event", "ParticipantSpec", "DEFAULT_RATES", "sample_participant",
           "participant_controls", "render_participant", "frame_truth", "detections", "percent_time",
           "write_participant", "write_cohort", "cohort_specs", "planted_effects", "FRAME_TRUTH_SCHEMA", "STAGE",
           "RENDERER_VERSION"]

log = logging.getLogger(__name__)
STAGE = "synthetic"

FRAME_TRUTH_SCHEMA = pa.schema([
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("frame", pa.int32(), nullable=False),
    pa.field("time_s", pa.float64(), nullable=False),
    pa.field("action_id", pa.int16(), nullable=False),  # -1 = no micro-action
    pa.field("action", pa.string(), nullable=True),  # MA-52 name, null = no micro-action
])


@dataclass(frozen=True)
class ActionRates:
    """Reference-group rates of one action and the planted group effects (log odds ratios).

    ``prob_effects`` shift the logit of the probability of any engagement, ``intensity_effects`` the
    logit of the mean share of time among engagers, for the named groups (others: 0).
    """

    action: str
    p_engaged: float = 0.5
    mean_share: float = 0.04
    prob_effects: dict[str, float] = field(default_factory=dict)
    intensity_effects: dict[str, float] = field(default_factory=dict)


def _default_rates() -> tuple[ActionRates, ...]:
    planted = {
        "shaking legs": ActionRates("shaking legs", prob_effects={"ASD": 2.2}),
        "nodding": ActionRates("nodding", p_engaged=0.7, prob_effects={"ASD": -2.2}),
        "crossing arms": ActionRates("crossing arms", p_engaged=0.3, prob_effects={"PSY": 2.2}),
        "touching nose": ActionRates("touching nose", p_engaged=0.8, mean_share=0.03, intensity_effects={"PSY": 1.3}),
        "patting legs": ActionRates("patting legs", p_engaged=0.8, mean_share=0.03, intensity_effects={"ASD": 1.3}),
    }
    return tuple(planted.get(a, ActionRates(a)) for a in PROGRAMS)


DEFAULT_RATES: tuple[ActionRates, ...] = _default_rates()
"""Every simulated action at p = 0.5 and 4 % of time by default; planted (reference TDC): shaking legs
and crossing arms more often engaged in ASD / PSY, nodding less often in ASD (odds ratios e^2.2 = 9),
touching nose / patting legs more time among engagers in PSY / ASD (odds ratio e^1.3 = 3.7). The other
ten actions are nulls."""


@dataclass(frozen=True)
class CohortConfig:
    """A simulated cohort: groups and sizes, recording length and format, rates, timing, seed.

    Attributes
    ----------
    groups : group name -> number of participants (the first group with no effects is the reference;
        effects naming a group absent from ``groups`` are not used)
    seconds : recording length N
    fps : frame rate
    size : (width, height) of the videos
    rates : per-action rates and planted effects (actions from :data:`simulator.motions.PROGRAMS`)
    precision : Beta precision ``phi`` of the share of time among engagers
    duration_s : event durations (uniform, seconds)
    min_gap_s : shortest pause between two events
    busy_max : largest share of a recording that events may fill
    age : participant ages (uniform, years)
    seed : master seed (participant ``i`` uses the stream ``(seed, i)``)
    look : ranges of the per-participant look
    """

    groups: dict[str, int] = field(default_factory=lambda: {"ASD": 4, "PSY": 4, "TDC": 4})
    seconds: float = 60.0
    fps: float = 30.0
    size: tuple[int, int] = (360, 432)
    rates: tuple[ActionRates, ...] = DEFAULT_RATES
    precision: float = 20.0
    duration_s: tuple[float, float] = DURATION_S
    min_gap_s: float = 0.6
    busy_max: float = 0.7
    age: tuple[float, float] = (5.0, 52.0)
    seed: int = 0
    look: LookRanges = LookRanges()

    def __post_init__(self) -> None:
        for r in self.rates:
            if r.action not in PROGRAMS:
                raise ValueError(f"no motion program for action {r.action!r}; simulated: {', '.join(PROGRAMS)}")
            if not (0.0 < r.p_engaged < 1.0 and 0.0 < r.mean_share < 1.0):
                raise ValueError(f"{r.action}: p_engaged and mean_share must be in (0, 1)")
        if self.seconds <= 0 or self.fps <= 0:
            raise ValueError("seconds and fps must be positive")
        if not (self.size[0] >= 64 and self.size[1] >= 64):
            raise ValueError(f"size must be at least 64x64, got {self.size[0]}x{self.size[1]}")
        lo, hi = self.duration_s
        if not 0 < lo <= hi:
            raise ValueError(f"duration_s must satisfy 0 < low <= high, got {self.duration_s}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["size"] = list(self.size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CohortConfig":
        d = dict(d)
        if "rates" in d:
            d["rates"] = tuple(ActionRates(**r) for r in d["rates"])
        if "look" in d:
            d["look"] = LookRanges(**{k: tuple(v) for k, v in d["look"].items()})
        for k in ("size", "duration_s", "age"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


@dataclass(frozen=True)
class Event:
    """One planted micro-action: frames ``[start, stop)``."""

    action: str
    start: int
    stop: int


@dataclass(frozen=True)
class ParticipantSpec:
    """Everything needed to render one participant (deterministic given the cohort config)."""

    participant_id: str
    group: str
    index: int
    age: float
    sex: str
    num_frames: int
    events: tuple[Event, ...]
    engaged: tuple[str, ...]


def _rng(config: CohortConfig, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, index, stream])


def sample_participant(config: CohortConfig, group: str, index: int, participant_id: str) -> ParticipantSpec:
    """Draw a participant's demographics, engagement and event timeline (module docstring)."""
    rng = _rng(config, index, 0)
    fps = config.fps
    n = int(round(config.seconds * fps))
    age = float(rng.uniform(*config.age))
    sex = "F" if rng.random() < 0.5 else "M"
    lo, hi = config.duration_s
    durations: list[tuple[str, float]] = []
    engaged = []
    for r in config.rates:
        p = special.expit(special.logit(r.p_engaged) + r.prob_effects.get(group, 0.0))
        if rng.random() >= p:
            continue
        engaged.append(r.action)
        mu = special.expit(special.logit(r.mean_share) + r.intensity_effects.get(group, 0.0))
        share = rng.beta(mu * config.precision, (1 - mu) * config.precision)
        remaining = max(share * config.seconds, lo)
        while remaining > 1e-9:
            d = rng.uniform(lo, hi)
            if remaining < d:
                d = max(remaining, lo)
            durations.append((r.action, d))
            remaining -= d
    order = rng.permutation(len(durations))
    durations = [durations[i] for i in order]
    # drop events that do not fit (random ones: the order is already shuffled)
    budget = config.busy_max * config.seconds
    while durations and (sum(d for _, d in durations) > budget
                         or sum(d for _, d in durations) + config.min_gap_s * (len(durations) + 1) > config.seconds):
        durations.pop()
    events: list[Event] = []
    if durations:
        total = sum(d for _, d in durations)
        free = config.seconds - total - config.min_gap_s * (len(durations) + 1)
        gaps = config.min_gap_s + free * rng.dirichlet(np.ones(len(durations) + 1))
        t = 0.0
        for (action, d), gap in zip(durations, gaps):
            t += gap
            start = int(round(t * fps))
            stop = min(int(round((t + d) * fps)), n)
            if stop - start >= 2:
                events.append(Event(action, start, stop))
            t += d
    return ParticipantSpec(participant_id, group, index, age, sex, n, tuple(events),
                           tuple(a for a in engaged if any(e.action == a for e in events)))


def participant_controls(config: CohortConfig, spec: ParticipantSpec) -> tuple[dict[str, np.ndarray], list[dict]]:
    """Idle controls with every event planted; also the drawn parameters of each event."""
    rng = _rng(config, spec.index, 1)
    c = idle_controls(spec.num_frames, config.fps, rng)
    params = []
    for e in spec.events:
        p = PROGRAMS[e.action].plant(c, e.start, e.stop, config.fps, rng)
        params.append({k: v for k, v in p.items() if k != "signal"})
    return c, params


def render_participant(config: CohortConfig, spec: ParticipantSpec):
    """Yield the participant's BGR frames [H, W, 3] uint8 (lazily, one at a time)."""
    look = sample_look(_rng(config, spec.index, 2), config.size, age=spec.age, ranges=config.look)
    renderer = Renderer(look, seed=int(_rng(config, spec.index, 3).integers(2**31)))
    controls, _ = participant_controls(config, spec)
    for i in range(spec.num_frames):
        yield renderer.render(skeleton_at(look.body, controls, i), i / config.fps)


def frame_truth(spec: ParticipantSpec, fps: float) -> pa.Table:
    """Per-frame ground truth (:data:`FRAME_TRUTH_SCHEMA`)."""
    labels = np.full(spec.num_frames, None, dtype=object)
    ids = np.full(spec.num_frames, -1, dtype=np.int16)
    for e in spec.events:
        labels[e.start:e.stop] = e.action
        ids[e.start:e.stop] = MA52.index(e.action)
    frames = np.arange(spec.num_frames, dtype=np.int32)
    return pa.table({
        "video_id": pa.array([spec.participant_id] * spec.num_frames, pa.string()),
        "frame": frames, "time_s": frames / fps, "action_id": ids, "action": pa.array(list(labels), pa.string()),
    }, schema=FRAME_TRUTH_SCHEMA)


def detections(spec: ParticipantSpec, fps: float) -> list[dict]:
    """Ground-truth rows ``video_id, t_start, t_end, class`` (class = MA-52 action name)."""
    return [{"video_id": spec.participant_id, "t_start": round(e.start / fps, 4), "t_end": round(e.stop / fps, 4),
             "class": e.action} for e in sorted(spec.events, key=lambda e: e.start)]


def percent_time(spec: ParticipantSpec, config: CohortConfig) -> list[dict]:
    """True percent time per simulated action (100 x labelled frames / all frames)."""
    counts = {r.action: 0 for r in config.rates}
    for e in spec.events:
        counts[e.action] += e.stop - e.start
    return [{"participant_id": spec.participant_id, "group": spec.group, "action_id": MA52.index(a), "action": a,
             "percent_time": 100.0 * k / spec.num_frames, "observed_s": spec.num_frames / config.fps,
             "age": spec.age, "sex": spec.sex} for a, k in counts.items()]


def _spec_record(config: CohortConfig, spec: ParticipantSpec) -> dict:
    return {"cohort": config.to_dict(), "participant": asdict(spec), "renderer_version": RENDERER_VERSION}


RENDERER_VERSION = 1  # bump when drawing or motion programs change what a seed renders


def write_participant(config: CohortConfig, spec: ParticipantSpec, out: Path, *, force: bool = False) -> tuple[bool, list[Path]]:
    """Render one participant's video and per-frame truth unless up to date; (rendered?, files)."""
    video = out / "videos" / f"{spec.participant_id}.mp4"
    truth = out / "truth" / "frames" / f"{spec.participant_id}.parquet"
    record = _spec_record(config, spec)
    if not force and video.is_file() and is_up_to_date(truth, input_hash="", config=record):
        return False, [video, truth]
    write_mp4(video, render_participant(config, spec), fps=config.fps, size=config.size)
    write_artifact(frame_truth(spec, config.fps), truth, contract=None, stage=STAGE, config=record,
                   extra={"video": f"videos/{spec.participant_id}.mp4"})
    return True, [video, truth]


def _write_participant_job(args):
    config_dict, spec, out, force = args
    return write_participant(CohortConfig.from_dict(config_dict), spec, Path(out), force=force)


def cohort_specs(config: CohortConfig) -> list[ParticipantSpec]:
    """All participants' specs, ids ``<group>-<nnn>`` numbered within the group, in group order."""
    specs = []
    index = 0
    for group, count in config.groups.items():
        for j in range(count):
            specs.append(sample_participant(config, group, index, f"{group}-{j + 1:03d}"))
            index += 1
    return specs


def _csv_text(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def write_cohort(config: CohortConfig, out: str | Path, *, workers: int = 1, force: bool = False,
                 on_done=None) -> dict[str, list[Path]]:
    """Render a cohort into ``out`` (module docstring); return ``{"written": [...], "skipped": [...]}``.

    Tables are written after all videos, so a manifest always lists complete videos. ``on_done`` is
    called once per participant (progress reporting by the CLI).
    """
    out = Path(out)
    specs = cohort_specs(config)
    written, skipped = [], []
    jobs = [(config.to_dict(), s, str(out), force) for s in specs]
    if workers > 1:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            results = pool.map(_write_participant_job, jobs)
            for rendered, files in results:
                (written if rendered else skipped).extend(files)
                if on_done:
                    on_done()
    else:
        for job in jobs:
            rendered, files = _write_participant_job(job)
            (written if rendered else skipped).extend(files)
            if on_done:
                on_done()
    manifest = [{"participant_id": s.participant_id, "group": s.group, "age": round(s.age, 1), "sex": s.sex,
                 "video": f"videos/{s.participant_id}.mp4"} for s in specs]
    tables = {
        out / "manifest.csv": _csv_text(manifest, ["participant_id", "group", "age", "sex", "video"]),
        out / "truth" / "detections.csv": _csv_text([d for s in specs for d in detections(s, config.fps)],
                                                    ["video_id", "t_start", "t_end", "class"]),
        out / "truth" / "effects.csv": _csv_text(planted_effects(config), ["action", "group", "part", "log_or", "reference"]),
        out / "config.json": json.dumps(config.to_dict(), indent=2) + "\n",
    }
    for path, text in tables.items():
        atomic_write_text(path, text)
        written.append(path)
    pt = pd.DataFrame([row for s in specs for row in percent_time(s, config)])
    pt_path = write_artifact(pt, out / "truth" / "percent_time.parquet", contract="cohort", stage=STAGE,
                             config=config.to_dict())
    atomic_write_text(out / "truth" / "percent_time.csv", pt.to_csv(index=False))
    written += [pt_path, out / "truth" / "percent_time.csv"]
    return {"written": written, "skipped": skipped}


def planted_effects(config: CohortConfig) -> list[dict]:
    """The planted effects, one row per action x group x part (nulls: no row). The reference group is
    the first group that no effect names."""
    named = {g for r in config.rates for g in (*r.prob_effects, *r.intensity_effects) if g in config.groups}
    reference = next((g for g in config.groups if g not in named), "")
    rows = []
    for r in config.rates:
        for part, eff in (("probability", r.prob_effects), ("intensity", r.intensity_effects)):
            for g, v in eff.items():
                if g not in config.groups:  # effects for groups absent from this cohort are unused
                    continue
                rows.append({"action": r.action, "group": g, "part": part, "log_or": v, "reference": reference})
    return rows
