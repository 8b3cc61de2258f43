"""The flow's hook: run the validation of a cohort run after its read-out, when it has codings.

``flows/cohort_analysis.py`` calls :func:`run_validation` after the read-out and before the
statistics when :func:`has_codings` is true, and publishes the returned summary (its ``markdown``
entry) as a Prefect artifact.
"""

from __future__ import annotations

from pathlib import Path

from analysis.agreement.compare import compare
from analysis.agreement.config import AgreementConfig
from analysis.agreement.outputs import write_validation
from analysis.agreement.raters import add_model, coder_ratings, read_codings
from pipeline.run_folder import RunFolder

__all__ = ["has_codings", "run_validation", "validate"]


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


def run_validation(run_folder: str | Path | RunFolder, settings: AgreementConfig | None = None) -> dict:
    """Compare the run's model with its coders (``RUN/codings`` -> ``RUN/validation``); returns the summary.

    The summary (:meth:`AgreementResult.summary`) gains ``markdown`` (for a Prefect markdown artifact)
    and ``written`` (the paths written). Raises :class:`pipeline.cli.BadInput` on unusable codings.
    """
    run = run_folder if isinstance(run_folder, RunFolder) else RunFolder(run_folder)
    result = validate(run.codings, settings or AgreementConfig(), run=run.root)
    written = write_validation(result, run.validation)
    return {**result.summary(), "markdown": result.markdown(), "written": [str(p) for p in written]}
