"""The report's settings (:class:`ReportSettings`): one source of truth for ``python -m reports.build``'s
flags and the flow's ``report`` parameters (:mod:`pipeline.settings`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import Field

__all__ = ["ReportSettings"]


@dataclass(frozen=True)
class ReportSettings:
    """What a user chooses about the HTML report.

    Attributes
    ----------
    reference_group : group the participant pages' percentiles compare with; None: TDC when the cohort
        has it, else the whole cohort (:func:`reports.summaries.reference_group`)
    show_paths : show video file names and paths (off: they can contain names)
    """

    reference_group: Annotated[str | None, Field(description=(
        "group the participant percentiles compare with (default: TDC if present, else the whole cohort)"),
        json_schema_extra={"metavar": "GROUP"})] = None
    show_paths: Annotated[bool, Field(description=(
        "show video file names and paths (hidden by default: they can contain names)"))] = False
