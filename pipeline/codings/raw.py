"""What every reader returns: raw coded events and coded sessions, in *media* time, before mapping.

A reader (:mod:`~pipeline.codings.boris`, :mod:`~pipeline.codings.elan`,
:mod:`~pipeline.codings.observer`, :mod:`~pipeline.codings.table_csv`) turns one source file into a
:class:`Reading`: the :class:`RawEvent` rows it holds (the lab's codes, not yet mapped to MA-52) and
the :class:`RawSession` units it declares (a media file a coder watched, even when it holds no event:
an observation without events is a video coded as "no micro-action" throughout).

Times are seconds in the media file (``media``) the event belongs to: the reader has already
removed the tool's time offset and, for BORIS observations that play several files one after the
other, the earlier files' durations. ``stop_s`` is None for a state that was started and never
stopped (see :func:`pipeline.codings.checks.close_open_states`).

Every problem is a :class:`CodingError`: one line naming the file, the observation / tier / line
and the time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.cli import BadInput

__all__ = ["CodingError", "RawEvent", "RawSession", "Reading", "where"]


class CodingError(BadInput):
    """A coding file cannot be imported as it is; the message names file, place and time (exit 2)."""


def where(source_file: str, ref: str = "", time_s: float | None = None) -> str:
    """``file: ref at 12.345 s`` (the prefix of every reader's error message)."""
    text = str(source_file)
    if ref:
        text += f": {ref}"
    if time_s is not None:
        text += f" at {time_s:.3f} s"
    return text


@dataclass(frozen=True)
class RawEvent:
    """One coded event as the source holds it (code not yet mapped).

    Attributes
    ----------
    media : the media file (or observation name, for formats without one) the event belongs to, as
        written in the source; matched to a manifest video by :mod:`pipeline.codings.matching`.
    coder : who coded; None when the source does not say (``--coder`` then names them).
    code : the lab's behaviour code, verbatim.
    kind : ``"state"`` or ``"point"``.
    start_s, stop_s : media time in seconds; ``stop_s = start_s`` for a point, None for an open state.
    modifiers : the event's modifiers, in source order (empty: none).
    source_file, source_ref : where it came from (``"observation obs1 event 4"``, ``"line 17"``, an
        ELAN annotation id).
    unit : the coding unit inside the file (BORIS observation id, ELAN file, Observer observation,
        CSV file): a video coded in two units by one coder is an error.
    tier : the ELAN tier (the mapping's ``tier`` column restricts codes to tiers); None elsewhere.
    """

    media: str
    coder: str | None
    code: str
    kind: str
    start_s: float
    stop_s: float | None
    modifiers: tuple[str, ...] = ()
    source_file: str = ""
    source_ref: str = ""
    unit: str = ""
    tier: str | None = None


@dataclass(frozen=True)
class RawSession:
    """A media file one coder watched in one unit of a source (declared even without events).

    ``tool_fps`` is the frame rate the coding tool recorded for the media (None: not stated) and
    ``offset_s`` the media offset the reader removed (0: none); both are reported in ``qc.parquet``.
    ``media_length_s`` is the tool's media duration, used only when the video itself cannot be opened.
    """

    media: str
    coder: str | None
    source_file: str
    unit: str
    tool_fps: float | None = None
    offset_s: float = 0.0
    media_length_s: float | None = None


@dataclass
class Reading:
    """A reader's result for one source file."""

    format: str
    source_file: str
    events: list[RawEvent] = field(default_factory=list)
    sessions: list[RawSession] = field(default_factory=list)
