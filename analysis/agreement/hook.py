"""The flow's hook: run the validation of a cohort run after its read-out, when it has codings.

``flows/cohort_analysis.py`` calls :func:`run_validation` after the read-out and before the
statistics when :func:`has_codings` is true, and publishes the returned summary (its ``markdown``
entry) as a Prefect artifact.

Resume: the validation set records what it compared (``inputs`` in the sidecars: the sha256 of
``codings/events.parquet`` and ``codings/sessions.parquet``, and the read-out's ``cohort.parquet``
with its sidecar's input and config hashes, which cover the windows and the read-out settings).
A rerun with the same inputs and settings reads the summary back instead of comparing again, so the
statistics and the report after it see unchanged files.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd

from analysis.agreement.compare import compare, summary_markdown
from analysis.agreement.config import AgreementConfig
from analysis.agreement.outputs import write_validation
from analysis.agreement.raters import add_model, coder_ratings, read_codings
from pipeline.artifacts import config_hash, read_sidecar, sha256_file
from pipeline.run_folder import RunFolder

__all__ = ["has_codings", "run_validation", "validate", "validation_inputs", "validation_up_to_date"]

_TABLES = ("pairs.parquet", "participants.parquet", "coverage.parquet", "summary.json")


def has_codings(run_folder: str | Path | RunFolder) -> bool:
    """Whether the run folder holds imported codings (``RUN/codings/sessions.parquet``)."""
    run = run_folder if isinstance(run_folder, RunFolder) else RunFolder(run_folder)
    return (run.codings / "sessions.parquet").is_file()


def validate(codings: str | Path, settings: AgreementConfig, *, run: str | Path | None = None):
    """The comparison (no writing): coders from ``codings``, the model from ``run`` when given."""
    events, sessions = read_codings(codings)
    ratings = coder_ratings(events, sessions, coders=settings.coders)
    if run is not None:
        add_model(ratings, run)
    return compare(ratings, settings)


def validation_inputs(run: RunFolder) -> dict:
    """Digests of what a run's validation compares (module docstring)."""
    out = {name: sha256_file(run.codings / name) for name in ("events.parquet", "sessions.parquet")
           if (run.codings / name).is_file()}
    if run.cohort.is_file():
        meta = read_sidecar(run.cohort) or {}
        out["readout/cohort.parquet"] = sha256_file(run.cohort)
        out["readout"] = {"input_hash": meta.get("input_hash"), "config_hash": meta.get("config_hash")}
    return out


def validation_up_to_date(run: RunFolder, settings: AgreementConfig, inputs: dict | None = None) -> bool:
    """Whether ``RUN/validation`` holds the validation of these inputs with these settings."""
    if not all((run.validation / name).is_file() for name in _TABLES):
        return False
    meta = read_sidecar(run.validation / "pairs.parquet") or {}
    if meta.get("model") and not (run.validation / "confusion.parquet").is_file():
        return False
    inputs = validation_inputs(run) if inputs is None else inputs
    return (meta.get("inputs") == json.loads(json.dumps(inputs))
            and meta.get("config_hash") == config_hash(dataclasses.asdict(settings)))


def run_validation(run_folder: str | Path | RunFolder, settings: AgreementConfig | None = None, *,
                   resume: bool = True) -> dict:
    """Compare the run's model with its coders (``RUN/codings`` -> ``RUN/validation``); returns the summary.

    The summary (:meth:`AgreementResult.summary`) gains ``markdown`` (for a Prefect markdown artifact),
    ``written`` (the paths written) and ``skipped`` (True when the set was up to date and read back,
    ``resume``). Raises :class:`pipeline.cli.BadInput` on unusable codings.
    """
    run = run_folder if isinstance(run_folder, RunFolder) else RunFolder(run_folder)
    settings = settings or AgreementConfig()
    inputs = validation_inputs(run)
    if resume and validation_up_to_date(run, settings, inputs):
        summary = json.loads((run.validation / "summary.json").read_text(encoding="utf-8"))
        summary.pop("config", None)
        pairs = pd.read_parquet(run.validation / "pairs.parquet")
        return {**summary, "markdown": summary_markdown(summary, pairs), "written": [], "skipped": True}
    result = validate(run.codings, settings, run=run.root)
    written = write_validation(result, run.validation, inputs=inputs)
    return {**result.summary(), "markdown": result.markdown(), "written": [str(p) for p in written], "skipped": False}
