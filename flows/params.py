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

__all__ = ["PoseSettings", "RecognitionSettings", "ReadoutSettings", "StatisticsSettings", "ReportSettings",
           "CohortAnalysisParams"]


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)  # a misspelt option is an error, not ignored


class PoseSettings(_Settings):
    """Pose stage (``python -m pipeline.pose``)."""

    frames: Literal["all", "sampled"] = Field(
        "sampled", description="pose every frame, or only the frames the model's windows sample (8x less work)")
    workers: int = Field(1, ge=1, le=64, description="pose worker processes per video task")


class RecognitionSettings(_Settings):
    """Recognition stage (``python -m pipeline.recognize``)."""

    device: Literal["cpu", "cuda"] = Field("cpu", description="where Micro-DualNet runs; cuda tasks ask Dask for a GPU")
    batch_size: int = Field(32, ge=1, le=4096, description="windows per forward pass")
    amp: bool = Field(True, description="bf16 autocast on CUDA (ignored on CPU)")
    compile: bool = Field(False, description="torch.compile the model (pays off on long cohorts on GPU)")
    min_valid: float = Field(0.5, ge=0, le=1, description="least share of a window's sampled frames with a usable pose")


class ReadoutSettings(_Settings):
    """Read-out from window probabilities to percent time (``python -m pipeline.aggregate``)."""

    scores: Literal["mean", "interpolate"] = Field(
        "mean", description="per-frame scores: mean over covering windows, or interpolation between window centres")
    rule: Literal["threshold", "top1", "per-class", "multi-label", "background"] = Field(
        "threshold", description="how a frame gets its label (docs/readout.md)")
    threshold: float = Field(0.5, ge=0, le=1, description="score a frame's top class needs (rule 'threshold')")
    thresholds: dict[str, float] = Field({}, description="per-class thresholds by class name (rules 'per-class', 'multi-label')")
    thresholds_file: Path | None = Field(None, description="JSON file of per-class thresholds (instead of 'thresholds')")
    min_duration: float = Field(0.0, ge=0, description="segments shorter than this (seconds) are dropped")
    merge_gap: float = Field(0.0, ge=0, description="gaps up to this (seconds) between two segments of one action are merged")


class StatisticsSettings(_Settings):
    """Hurdle statistics (``python -m analysis.hurdle``)."""

    groups: list[str] = Field(["ASD", "PSY", "TDC"], min_length=2, description="groups, in contrast order")
    top_actions: int = Field(10, ge=0, description="analyse the N actions with most engagers (0: all)")
    actions: list[str] | None = Field(None, description="analyse exactly these actions (overrides top_actions)")
    covariates: list[str] = Field([], description="manifest columns adjusted for in both parts (e.g. age, sex)")
    correction: Literal["fdr_bh", "holm", "bonferroni", "fdr_by", "none"] = "fdr_bh"
    family: Literal["part", "all", "action", "contrast"] = Field("part", description="tests corrected together")


class ReportSettings(_Settings):
    """HTML report (``python -m reports.build``)."""

    reference_group: str | None = Field(None, description="percentiles on participant pages against this group (default: TDC or all)")
    show_paths: bool = Field(False, description="show video paths in the report (file names can contain names)")


class CohortAnalysisParams(_Settings):
    """Everything one ``cohort-analysis`` run needs."""

    manifest: Path = Field(description="cohort manifest (CSV or Parquet): participant_id, group, video, covariates")
    out: Path = Field(description="output folder (shared by all workers); a rerun into it redoes only what changed")
    weights: Path | None = Field(None, description=(
        "Micro-DualNet checkpoint file (required): one trained on MA-52 (python -m recipes.train, docs/training.md) "
        "or on the lab's coded sessions; 'demo' names the built-in demo model, trained on simulated mannequins only "
        "(not for real videos)"))
    max_failed_share: float = Field(0.25, ge=0, le=1, description="fail the run when more than this share of videos fail")
    pose: PoseSettings = PoseSettings()
    recognition: RecognitionSettings = RecognitionSettings()
    readout: ReadoutSettings = ReadoutSettings()
    statistics: StatisticsSettings = StatisticsSettings()
    report: ReportSettings = ReportSettings()

    @field_validator("manifest")
    @classmethod
    def _manifest_is_a_table(cls, value: Path) -> Path:
        if value.suffix.lower() not in (".csv", ".parquet"):
            raise ValueError(f"manifest must be a .csv or .parquet file, got {value.name!r}")
        return value
