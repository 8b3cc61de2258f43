"""Settings of training on a lab's own coded videos (:class:`CodedConfig`), one source for the CLI flags
(:mod:`pipeline.settings` derives them), the run record and the checkpoints' provenance.

Open choices are fields with the default this project takes; docs/training.md ("Training on your coded
videos") says why. Training hyper-parameters (epochs, batch, lr, ...) are :class:`recipes.train.TrainConfig`'s.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field

from pipeline.frame_scores import SCORE_METHODS

__all__ = ["CodedConfig", "RESULT_FREE"]

RESULT_FREE = ("agreement_every",)
"""Fields that do not change a trained model or its tables (a resumed run may change them)."""


@dataclass(frozen=True)
class CodedConfig:
    """What a user chooses about turning coded sessions into a model and its cross-validated agreement.

    Attributes
    ----------
    label_coder : the coder whose codings label the windows; ``consensus``; default (None) the coder
        with the most coded sessions (the lab's primary coder; the others are the human ceiling)
    label_rule : ``centre`` (the centre frame's action, default: what the interpolated read-out reads
        back), ``majority`` (the class covering most of the window), ``multilabel`` (one example per
        action of the centre frame)
    consensus_share : share of the coders that must code an action for the consensus to
    min_events, min_participants : an action is a class with at least this many coded events across at
        least this many participants (defaults 10 and 3)
    classes : the classes to train (MA-52 names); default (empty) every action with enough events
    unused : ``fold`` coded actions that are not classes into background (default) or ``drop`` their windows
    min_valid : windows with a smaller share of usable-pose sampled frames are left out (and counted),
        as the recognition stage does not classify them (its ``--min-valid``)
    background_keep : share of the training background windows kept (the demo model's 0.25: most of a
        session is "no micro-action"); the read-out calibration corrects the prior shift this makes
    window_step : train on every this-many-th window of the plan (windows overlap by span - hop frames,
        six-fold for the demo plan, so 2 halves an epoch's cost and loses little; 1: all); validation
        and the read-out always use every window
    balance : ``none`` (default) or ``sampling``: repeat the training windows of each action so that
        every action has about as many as the most frequent one (at most ``max_repeat`` copies)
    folds : K-fold cross-validation by participant (0: one hold-out validation set of ``val_share``)
    val_share : share of each group's participants that validate in the hold-out split
    split_seed : seed of the splits and of the background subsampling
    readout_scores, engagement_weight, min_durations : the read-out calibration on the validation
        participants (:func:`recipes.readout_calibration.calibrate_thresholds`; the demo model's values)
    bootstrap : bootstrap draws of the agreement intervals (final tables)
    agreement_every : compute the validation agreement (default read-out) every this many epochs (0: never)
    """

    label_coder: Annotated[str | None, Field(description=(
        "coder whose codings label the windows, or 'consensus' (none: the coder with the most sessions)"),
        json_schema_extra={"metavar": "CODER|consensus"})] = None
    label_rule: Annotated[Literal["centre", "majority", "multilabel"], Field(description=(
        "window label: the centre frame's action, the class covering most of the window, or one example "
        "per action of the centre frame"))] = "centre"
    consensus_share: Annotated[float, Field(gt=0, le=1, description=(
        "with --label-coder consensus: share of the coders that must code an action"))] = 0.5
    min_events: Annotated[int, Field(ge=1, description="a class needs at least this many coded events")] = 10
    min_participants: Annotated[int, Field(ge=1, description=(
        "... across at least this many participants"))] = 3
    classes: Annotated[tuple[str, ...], Field(description=(
        "classes to train, MA-52 names A,B,... (none: every action with enough events)"),
        json_schema_extra={"metavar": "A,B"})] = ()
    unused: Annotated[Literal["fold", "drop"], Field(description=(
        "coded actions that are not classes: fold their windows into background, or drop them"))] = "fold"
    min_valid: Annotated[float, Field(ge=0, le=1, description=(
        "windows with a smaller share of usable-pose frames are left out (recognition's --min-valid)"))] = 0.5
    background_keep: Annotated[float, Field(gt=0, le=1, description=(
        "share of the training background windows kept"))] = 0.25
    window_step: Annotated[int, Field(ge=1, description=(
        "train on every this-many-th window (neighbours overlap); validation uses all"))] = 1
    balance: Annotated[Literal["none", "sampling"], Field(description=(
        "class-balanced sampling: repeat each action's training windows up to the most frequent action's count"))] = "none"
    max_repeat: Annotated[int, Field(ge=1, description="most copies of a window with --balance sampling")] = 4
    folds: Annotated[int, Field(ge=0, description=(
        "K-fold cross-validation by participant (0: one stratified hold-out validation set)"))] = 0
    val_share: Annotated[float, Field(gt=0, lt=1, description=(
        "hold-out: share of each group's participants that validate"))] = 0.25
    split_seed: Annotated[int, Field(ge=0, description="seed of the splits and the background subsampling")] = 0
    readout_scores: Annotated[Literal[SCORE_METHODS], Field(description=(  # type: ignore[valid-type]
        "per-frame scores the read-out is calibrated for"))] = "interpolate"
    engagement_weight: Annotated[float, Field(ge=0, description=(
        "calibration cost of a unit share of participants whose 'any engagement' is misread, in pp"))] = 5.0
    min_durations: Annotated[tuple[float, ...], Field(description=(
        "candidate minimum segment durations of the calibration, seconds"), json_schema_extra={"metavar": "S,S"})] = (
        0.0, 0.2, 0.35, 0.5)
    bootstrap: Annotated[int, Field(ge=0, le=100000, description="bootstrap draws of the agreement intervals")] = 1000
    agreement_every: Annotated[int, Field(ge=0, description=(
        "validation agreement every this many epochs (0: only after training)"))] = 1

    def __post_init__(self) -> None:
        if any(d < 0 for d in self.min_durations) or not self.min_durations:
            raise ValueError(f"min_durations: need one or more durations >= 0, got {list(self.min_durations)}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["classes"] = list(self.classes)
        d["min_durations"] = list(self.min_durations)
        return d
