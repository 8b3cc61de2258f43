"""A trained model on validation participants: window probabilities, read-out calibration, agreement.

The validation participants' windows are the prepared clips of :mod:`recipes.coded_windows`, which
hold exactly the model input the recognition stage builds for them; predicting them and writing the
result in the WINDOWS contract (``windows/<video_id>.parquet`` + sidecar: ``video.fps``,
``video.frame_count``, ``classes``, ``model.sha256``) gives the files ``python -m pipeline.recognize``
would write for the same checkpoint, without decoding the videos again: a window without a clip
(too little pose) has null ``probs``, as there. From those files everything is the project's own
read-out and agreement code:

    read-out       pipeline.aggregate.aggregate(manifest of the validation videos, windows, config)
    calibration    recipes.readout_calibration.calibrate_thresholds against the label source's
                   per-frame truth (per-class thresholds and a minimum duration; percent-time error
                   plus "any engagement" disagreement)
    agreement      analysis.agreement.compare: the model vs every coder and coder vs coder, on the
                   frames both observed (raters.add_model_readouts: one read-out per part, so the
                   pooled cross-validation table reads each participant with the model that never saw it)

The read-out is calibrated on the same validation participants the agreement is then measured on
(the issue's choice: no further participants are held back); its thresholds are 1 + A numbers chosen
on a grid, so the agreement is slightly optimistic against entirely new participants, and the
per-epoch agreement (:func:`epoch_agreement`) uses the default read-out for that reason and speed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from analysis.agreement.compare import ALL, AgreementResult, compare
from analysis.agreement.config import MODEL, AgreementConfig
from analysis.agreement.raters import add_model_readouts, coder_ratings
from model.checkpoint import Checkpoint
from model.clips import ClipDataset, PreparedClips
from model.preprocessing import ClassList
from pipeline.aggregate import AggregateResult, aggregate
from pipeline.artifacts import write_artifact
from pipeline.contracts import WINDOWS
from pipeline.manifest import Manifest
from pipeline.readout import ReadoutConfig
from recipes.evaluate import predict_clips
from recipes.readout_calibration import Calibration, calibrate_thresholds

__all__ = ["predict_part", "write_windows", "read_out", "calibrate", "agreement", "model_rows", "epoch_agreement",
           "subset_manifest"]

STAGE = "coded_validation"


def predict_part(model: torch.nn.Module, prepared: str | Path, *, batch_size: int = 64, device: str = "cpu",
                 workers: int = 0) -> dict[str, np.ndarray]:
    """Softmax probabilities of every clip of a prepared folder: clip id -> probs [C] (float32)."""
    folder = PreparedClips(prepared)
    if not len(folder):
        return {}
    rgb = bool(getattr(model, "uses_rgb", True))
    from model.families import family_of

    fam = family_of(model)
    pixels = rgb and fam.uses_pixels(model.cfg)
    ds = ClipDataset(folder, int(folder.records[0]["num_frames"]), train=False, pixels=pixels)
    pred = predict_clips(model, ds, batch_size=batch_size, device=device, amp=False, workers=workers, family=fam)
    ids = folder.ids
    return {ids[int(i)]: pred.scores[k] for k, i in enumerate(pred.indices)}


def write_windows(out_dir: str | Path, tables: dict, probs: dict[str, np.ndarray], *, classes: ClassList,
                  model_id: str, plan_config: dict) -> list[Path]:
    """One WINDOWS-contract file per video of ``tables`` (video_id -> VideoTable) from clip probabilities."""
    out_dir = Path(out_dir)
    config_id = hashlib.sha256(repr(sorted(plan_config.items())).encode()).hexdigest()[:16]
    written = []
    for vid, vt in tables.items():
        t = vt.table
        fps = float(vt.fps)
        rows = [probs.get(c) if isinstance(c, str) else None for c in t["clip"]]
        table = pa.table({
            "video_id": pa.array([vid] * len(t), pa.string()),
            "window": pa.array(t["window"].to_numpy(np.int32), pa.int32()),
            "start_frame": pa.array(t["start_frame"].to_numpy(np.int32), pa.int32()),
            "end_frame": pa.array(t["end_frame"].to_numpy(np.int32), pa.int32()),
            "start_s": pa.array(t["start_frame"].to_numpy(np.float64) / fps, pa.float64()),
            "end_s": pa.array(t["end_frame"].to_numpy(np.float64) / fps, pa.float64()),
            "valid_fraction": pa.array(t["valid_fraction"].to_numpy(np.float32), pa.float32()),
            "probs": pa.array([None if r is None else [float(x) for x in r] for r in rows], pa.list_(pa.float32())),
            "model_id": pa.array([model_id] * len(t), pa.string()),
            "config_id": pa.array([config_id] * len(t), pa.string()),
        })
        written.append(write_artifact(table, out_dir / f"{vid}.parquet", contract=WINDOWS, stage=STAGE,
                                      config=plan_config,
                                      extra={"video": {"fps": fps, "frame_count": int(vt.frame_count)},
                                             "classes": classes.to_dict(), "model": {"sha256": model_id}}))
    return written


def subset_manifest(manifest: Manifest, video_ids) -> Manifest:
    """The manifest restricted to ``video_ids`` (same columns and participants' rows)."""
    videos = manifest.videos[manifest.videos["video_id"].astype(str).isin(set(video_ids))].reset_index(drop=True)
    people = manifest.participants[manifest.participants["participant_id"].isin(set(videos["participant_id"]))]
    return Manifest(manifest.path, videos, people.reset_index(drop=True), manifest.covariates)


def read_out(manifest: Manifest, windows_dir: str | Path, config: ReadoutConfig) -> AggregateResult:
    return aggregate(manifest, Path(windows_dir), config)


def calibrate(manifest: Manifest, windows_dir: str | Path, truth: pd.DataFrame, *, base: ReadoutConfig,
              engagement_weight: float, min_durations: tuple[float, ...]) -> Calibration:
    return calibrate_thresholds(manifest, Path(windows_dir), truth, base=base, engagement_weight=engagement_weight,
                                min_durations=min_durations)


def agreement(events: pd.DataFrame, sessions: pd.DataFrame, manifest: Manifest, results: list[AggregateResult],
              settings: AgreementConfig) -> AgreementResult:
    """Model vs coders and coder vs coder on the videos the ``results`` read out (their participants)."""
    videos = set().union(*(r.readouts for r in results)) | set().union(*(r.failures for r in results))
    s = sessions[sessions["video_id"].isin(videos)]
    e = events[events["video_id"].isin(videos)]
    ratings = coder_ratings(e, s, coders=settings.coders)
    add_model_readouts(ratings, subset_manifest(manifest, videos), results, name=MODEL)
    return compare(ratings, settings)


def model_rows(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per action (and ``all``): the model-vs-coder kappa and ICC(2,1) (mean over coders) beside the
    coder-vs-coder ones (mean over coder pairs); columns action, model_kappa, coder_kappa, model_icc,
    coder_icc, model_mae_pp, n_participants; ``pairs``: an agreement table (:data:`PAIRS_COLUMNS`)."""
    p = pairs
    out = []
    for action, d in p.groupby("action", sort=False):
        m, c = d[d["pair"] == "model-coder"], d[d["pair"] == "coder-coder"]
        out.append({"action": action, "model_kappa": m["kappa"].mean(), "coder_kappa": c["kappa"].mean(),
                    "model_icc": m["icc2_1"].mean(), "coder_icc": c["icc2_1"].mean(),
                    "model_mae_pp": m["mae_pp"].mean(), "n_participants": int(m["n_participants"].max())
                    if len(m) else 0})
    return pd.DataFrame(out)


def epoch_agreement(ckpt: Checkpoint, val_dir: Path, tables: dict, classes: ClassList, events, sessions,
                    manifest: Manifest, work: Path, *, batch_size: int = 64) -> dict[str, float]:
    """The per-epoch validation agreement with the default read-out (interpolated scores, tau 0.5):
    kappa of the model vs the coders over all actions (``all`` row) and the mean per-action kappa and
    ICC(2,1); no bootstrap."""
    probs = predict_part(ckpt.model, val_dir, batch_size=batch_size)
    write_windows(work, tables, probs, classes=classes, model_id=ckpt.sha256, plan_config=ckpt.plan.to_dict())
    result = read_out(subset_manifest(manifest, tables), work, ReadoutConfig(scores="interpolate"))
    ag = agreement(events, sessions, manifest, [result], AgreementConfig(bootstrap=0))
    rows = model_rows(ag.pairs)
    per = rows[rows["action"] != ALL]
    allrow = rows[rows["action"] == ALL]
    return {"val_kappa_all": float(allrow["model_kappa"].iloc[0]) if len(allrow) else float("nan"),
            "val_kappa_mean": float(per["model_kappa"].mean()), "val_icc_mean": float(per["model_icc"].mean())}
