"""The ``cohort-analysis`` flow's one typed parameter object (validated by Prefect at submission).

Prefect turns :class:`CohortAnalysisParams` into the deployment's JSON schema, so the server refuses a
run with a bad value before anything starts (``prefect deployment run ... --param 'params={...}'``
answers e.g. "Validation failed for field 'params.readout.threshold'"); checks the schema cannot express
(the manifest file exists) run first thing in the flow and name the field too. Every default is the
stage's own default (its CLI ``--help`` explains it); only ``manifest`` and ``out`` are required.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from analysis.agreement.config import AgreementConfig
from analysis.config import HurdleConfig
from pipeline.pose_config import PoseSettings as PoseSettingsFields
from pipeline.readout import ReadoutConfig
from pipeline.recognize.options import RecognitionSettings as RecognitionSettingsFields
from pipeline.settings import settings_model
from reports.settings import ReportSettings as ReportSettingsFields

__all__ = ["PoseSettings", "RecognitionSettings", "ReadoutSettings", "StatisticsSettings", "ReportSettings",
           "ValidationSettings", "CodingFormat", "CohortAnalysisParams"]

CodingFormat = Literal["boris", "elan", "observer", "csv"]  # pipeline.codings.importer.FORMATS


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)  # a misspelt option is an error, not ignored


PoseSettings = settings_model(
    PoseSettingsFields, name="PoseSettings", module=__name__,
    doc="Pose stage (``python -m pipeline.pose``): the fields of :class:`pipeline.pose_config.PoseSettings`; "
        "``frames='auto'`` poses only the frames the checkpoint's windows sample.")


RecognitionSettings = settings_model(
    RecognitionSettingsFields, name="RecognitionSettings", module=__name__,
    doc="Recognition stage (``python -m pipeline.recognize``): the fields of "
        ":class:`pipeline.recognize.RecognitionSettings`; cuda tasks ask Dask for a GPU.")


# The read-out's parameters are ReadoutConfig's fields, bounds, help and defaults (pipeline.settings):
# nothing is restated here. Fields the user leaves out take the checkpoint's calibrated read-out when it
# has one (model_fields_set tells them apart), else these defaults.
ReadoutSettings = settings_model(
    ReadoutConfig, name="ReadoutSettings", module=__name__,
    doc="Read-out from window probabilities to percent time (``python -m pipeline.aggregate``): the fields of "
        ":class:`pipeline.readout.ReadoutConfig`; unset fields default to the checkpoint's calibrated read-out.")


StatisticsSettings = settings_model(
    HurdleConfig, name="StatisticsSettings", module=__name__,
    doc="Hurdle statistics (``python -m analysis.hurdle``): the fields of :class:`analysis.config.HurdleConfig` "
        "(docs/hurdle.md). By default the flow drops participants of groups it does not compare instead of refusing "
        "the cohort (ignore_other_groups).")


ValidationSettings = settings_model(
    AgreementConfig, name="ValidationSettings", module=__name__,
    doc="Validation against human coding (``python -m analysis.agreement``), run when the run has codings: the fields "
        "of :class:`analysis.agreement.config.AgreementConfig` (docs/validation.md).")


ReportSettings = settings_model(
    ReportSettingsFields, name="ReportSettings", module=__name__,
    doc="HTML report (``python -m reports.build``): the fields of :class:`reports.settings.ReportSettings`.")


class CohortAnalysisParams(_Settings):
    """Everything one ``cohort-analysis`` run needs."""

    manifest: Path = Field(description="cohort manifest (CSV or Parquet): participant_id, group, video, covariates")
    out: Path = Field(description="output folder (shared by all workers); a rerun into it redoes only what changed")
    weights: Path | None = Field(None, description=(
        "Micro-DualNet checkpoint file (required): one trained on MA-52 (python -m recipes.train, docs/training.md) "
        "or on the lab's coded sessions; 'demo' names the built-in demo model, trained on simulated mannequins only "
        "(not for real videos)"))
    max_failed_share: float = Field(0.25, ge=0, le=1, description="fail the run when more than this share of videos fail")
    max_concurrent_videos: int = Field(4, ge=1, le=256, description=(
        "at most this many videos in pose (and in recognition) at once: each holds a decoded video and a MediaPipe "
        "graph; progress is counted as they finish"))
    codings: Path | None = Field(None, description=(
        "human codings to import into RUN/codings before recognition: a folder (or one file) of coding files in "
        "codings_format; or leave it out and name a coding file per video in the manifest's 'coding' column "
        "(docs/codings.md, 'In the flow')"))
    codings_format: CodingFormat | None = Field(None, description=(
        "format of the codings: required with codings; for the manifest's coding files the default when a row has "
        "no coding_format cell (else the extension: .boris, .eaf)"))
    codings_mapping: Path | None = Field(None, description=(
        "ethogram mapping of the codings (CSV code,action[,tier] or YAML; required with codings)"))
    codings_coder: str | None = Field(None, description="the coder of every coding (overrides what the files say)")
    codings_allow_unmapped: bool = Field(False, description=(
        "drop codes the mapping does not list (reported in codings/qc.parquet) instead of refusing the run"))
    codings_close_open_states: bool = Field(False, description=(
        "close a state that was started and never stopped at the video's end instead of refusing the run"))
    codings_fps: float | None = Field(None, gt=0, description=(
        "frame rate of coded videos that cannot be opened (their codings are imported with it and the coding's "
        "length; such videos still fail in pose); default: such a video refuses the run"))
    pose: PoseSettings = PoseSettings()
    recognition: RecognitionSettings = RecognitionSettings()
    readout: ReadoutSettings = ReadoutSettings()
    statistics: StatisticsSettings = StatisticsSettings()
    validation: ValidationSettings = ValidationSettings()
    report: ReportSettings = ReportSettings()

    @field_validator("manifest")
    @classmethod
    def _manifest_is_a_table(cls, value: Path) -> Path:
        if value.suffix.lower() not in (".csv", ".parquet"):
            raise ValueError(f"manifest must be a .csv or .parquet file, got {value.name!r}")
        return value
