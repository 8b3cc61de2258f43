"""Codings folders for the agreement tests, written through the codings contract.

:func:`write_codings` turns hand-made events into ``RUN/codings/`` (events table -> sessions table ->
:func:`pipeline.codings.contract.session_frames` per session), as an importer would.
:func:`simulated_coder` is a seeded simulated coder: it misses each true event with a known
probability and moves each kept event's onset and offset by independent uniform whole-frame shifts
in ``[-jitter, jitter]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from model.taxonomy import MA52
from pipeline.artifacts import write_artifact
from pipeline.codings.contract import CODING_EVENTS, CODING_SESSIONS, frame_span, frames_path, session_frames


def events_frame(rows: list[dict], fps: dict[str, float]) -> pd.DataFrame:
    """Rows ``video_id, coder, action, start_s, stop_s[, kind]`` -> the CODING_EVENTS table."""
    out = []
    for i, r in enumerate(rows):
        kind = r.get("kind", "state")
        stop = r["start_s"] if kind == "point" else r["stop_s"]
        a, b = frame_span(r["start_s"], stop, fps[r["video_id"]], point=kind == "point")
        out.append({"video_id": r["video_id"], "coder": r["coder"], "action": r["action"],
                    "action_id": MA52.index(r["action"]), "code": r["action"], "kind": kind,
                    "start_s": float(r["start_s"]), "stop_s": float(stop), "start_frame": a, "stop_frame": b,
                    "modifiers": None, "source_file": f"{r['coder']}.csv", "source_ref": f"line {i + 2}"})
    cols = CODING_EVENTS.schema.names
    return pd.DataFrame(out, columns=cols) if out else pd.DataFrame({c: pd.Series(dtype=object) for c in cols})


def write_codings(folder: Path, events: list[dict], sessions: list[dict]) -> Path:
    """Write ``events.parquet``, ``sessions.parquet`` and ``frames/`` under ``folder``; returns it.

    ``sessions``: ``video_id, coder, participant_id, fps, num_frames`` and optionally
    ``coded_start_s`` (default 0), ``coded_stop_s`` (default the whole video).
    """
    folder.mkdir(parents=True, exist_ok=True)
    ses = pd.DataFrame([{
        "video_id": s["video_id"], "coder": s["coder"], "participant_id": s["participant_id"], "fps": float(s["fps"]),
        "num_frames": int(s["num_frames"]), "coded_start_s": float(s.get("coded_start_s", 0.0)),
        "coded_stop_s": float(s.get("coded_stop_s", s["num_frames"] / s["fps"])), "format": "simulator",
        "source_file": f"{s['coder']}.csv"} for s in sessions])
    ev = events_frame(events, dict(zip(ses["video_id"], ses["fps"])))
    import pyarrow as pa

    ev_table = pa.Table.from_pandas(ev, schema=CODING_EVENTS.schema, preserve_index=False)
    write_artifact(ev_table, folder / "events.parquet", contract=CODING_EVENTS, stage="codings")
    write_artifact(ses, folder / "sessions.parquet", contract=CODING_SESSIONS, stage="codings")
    for _, s in ses.iterrows():
        path = folder / frames_path(s["coder"], s["video_id"])
        path.parent.mkdir(parents=True, exist_ok=True)
        session_frames(ev, s).to_parquet(path, index=False)
    return folder


def simulated_coder(truth: list[dict], coder: str, *, fps: float, jitter: int, miss: float,
                    rng: np.random.Generator) -> list[dict]:
    """One simulated coder's events from true events (``video_id, action, start_s, stop_s``)."""
    out = []
    for e in truth:
        if rng.random() < miss:
            continue
        ds, de = rng.integers(-jitter, jitter + 1, size=2) if jitter else (0, 0)
        a = round(e["start_s"] * fps) + int(ds)
        b = round(e["stop_s"] * fps) + int(de)
        out.append({**e, "coder": coder, "start_s": max(a, 0) / fps, "stop_s": max(b, a + 1) / fps})
    return out
