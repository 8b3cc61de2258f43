"""Settings of the agreement with human coders (:class:`AgreementConfig`): one source of truth for
``python -m analysis.agreement``'s flags, :func:`analysis.agreement.hook.run_validation` and the
``validation/`` sidecars (:mod:`pipeline.settings` derives the flags from the annotations).

Open choices are fields with the default this project takes, each documented in docs/validation.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

from pydantic import Field

__all__ = ["AgreementConfig", "CONSENSUS", "MODEL", "FRAME_BIN"]

MODEL = "model"          # the model's rater name in every table
CONSENSUS = "consensus"  # the consensus reference's rater name
FRAME_BIN = "1frame"     # --bin value: one bin per video frame


@dataclass(frozen=True)
class AgreementConfig:
    """What a user chooses about the comparison of raters.

    Attributes
    ----------
    coders : coders to compare (default: every coder in ``codings/sessions.parquet``)
    reference : the coder the model's confusion counts are taken against, or ``"consensus"``; default
        ``None``: ``consensus`` with two or more coders, else the only coder
    bin : ``"1frame"`` (every frame is one unit, the default) or a bin width in seconds (BORIS's
        time-unit kappa: the bin starting at ``t_k = k * bin`` takes the labels of the frame that holds
        ``t_k``; a point event codes every bin whose ``t_k`` lies within ``bin / 2`` of it)
    tolerance_s : onset tolerance of the event match (default 0.5 s; sed_eval's onset collar is 0.2 s
        for sound events, micro-actions last 1-3 s)
    min_overlap : an event match also needs the two events to overlap by at least this share of the
        shorter one (default 0.5); every event is matched at most once (maximum bipartite matching)
    bootstrap : bootstrap draws over participants for the intervals (0: no intervals)
    seed : seed of the draws (``numpy.random.default_rng``)
    min_prevalence : kappa is reported as undefined ("unstable") when the action covers less than this
        share of the pair's bins (mean of the two raters), where kappa's chance correction breaks down
        (the kappa paradox); AC1 and the prevalence are given instead
    min_participants : fewest participants a pair must share for ICC, limits of agreement and a
        verdict (default 3)
    min_engaged : fewest participants in whom both coders of every coder pair coded the action at least
        once; below it the verdict is "not enough coded data" (default 3). A kappa difference over
        participants of whom one or two ever show the action has a bootstrap interval so wide that
        "within the coder range" would only mean "not shown to be worse" (seen on the simulator: an
        action coded in 2 of 12 participants, model kappa 0.20 vs coders' 0.66, interval of the
        difference -0.87 to +0.20)
    consensus_share : the consensus codes a frame with an action when at least this share of the coders
        who observed it do (0.5: with two coders, either one; with three, two of them)
    """

    coders: Annotated[tuple[str, ...], Field(
        description="coders to compare, A,B,... (none: every coder of the codings)",
        json_schema_extra={"metavar": "A,B"})] = ()
    reference: Annotated[str | None, Field(description=(
        "reference for the model's confusion counts: a coder or 'consensus' (none: consensus with two or more "
        "coders, else the only coder)"), json_schema_extra={"metavar": "CODER|consensus"})] = None
    bin: Annotated[str, Field(description=(
        "time unit of the kappa: 1frame, or a bin width in seconds (BORIS's time-unit kappa)"),
        json_schema_extra={"metavar": "1frame|SECONDS"})] = FRAME_BIN
    tolerance_s: Annotated[float, Field(
        ge=0, allow_inf_nan=False, description="onset tolerance of the event match, seconds",
        json_schema_extra={"flag": "--tolerance", "metavar": "S"})] = 0.5
    min_overlap: Annotated[float, Field(ge=0, le=1, description=(
        "matched events must overlap by at least this share of the shorter one"))] = 0.5
    bootstrap: Annotated[int, Field(
        ge=0, le=100000, description="bootstrap draws over participants (0: no intervals)",
        json_schema_extra={"metavar": "N"})] = 2000
    seed: Annotated[int, Field(ge=0, description="seed of the bootstrap draws")] = 0
    min_prevalence: Annotated[float, Field(ge=0, lt=0.5, description=(
        "kappa is undefined (unstable) below this share of bins coded with the action; AC1 is given instead"))] = 0.005
    min_participants: Annotated[int, Field(ge=2, description=(
        "fewest shared participants for ICC, limits of agreement and a verdict"))] = 3
    min_engaged: Annotated[int, Field(ge=0, description=(
        "fewest participants in whom both coders of every coder pair coded the action, for a verdict"))] = 3
    consensus_share: Annotated[float, Field(gt=0, le=1, description=(
        "the consensus codes a frame when at least this share of the coders observing it do"))] = 0.5

    def __post_init__(self) -> None:
        self.bin_seconds  # raises ValueError on a bad value
        if len(set(self.coders)) != len(self.coders):
            raise ValueError(f"coders: a coder is listed twice ({', '.join(self.coders)})")

    @property
    def bin_seconds(self) -> float | None:
        """The bin width in seconds, or None for one-frame bins."""
        if self.bin == FRAME_BIN:
            return None
        try:
            v = float(self.bin)
        except (TypeError, ValueError):
            raise ValueError(f"bin: expected {FRAME_BIN!r} or a number of seconds, got {self.bin!r}") from None
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"bin: a bin width must be a positive number of seconds, got {self.bin!r}")
        return v

    def describe_bin(self) -> str:
        return "one video frame" if self.bin_seconds is None else f"{self.bin_seconds:g} s (BORIS time-unit sampling)"
