"""The class list of a model trained on coded videos: the lab's coded actions that have enough data.

An action becomes a class when the label source coded it in at least ``min_events`` events (runs of
frames, :func:`recipes.coded_labels.count_events`) across at least ``min_participants`` participants
of the cohort (defaults 10 and 3): with fewer, neither training nor the per-participant agreement
(ICC over participants) means anything. The other coded actions are reported and

    unused = "fold"    their windows train as "background" (default: the model learns not to fire on
                       them; percent time and agreement never compare them)
    unused = "drop"    their windows are left out of training altogether

Classes are in MA-52 order, then ``background`` (always last, :class:`model.preprocessing.ClassList`).
``requested`` (``--classes``) names the classes instead; one of them with too few events or
participants is bad input (one line, nothing written), as is a cohort where no action qualifies.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from model.preprocessing import BACKGROUND, ClassList
from model.taxonomy import MA52
from pipeline.cli import BadInput

__all__ = ["UNUSED_CHOICES", "ClassChoice", "choose_classes"]

UNUSED_CHOICES = ("fold", "drop")


@dataclass(frozen=True)
class ClassChoice:
    """The chosen class list and, per coded action, its counts and what became of it.

    ``table`` columns: action, events, participants, frames, status (``class``, ``folded into
    background``, ``dropped``), reason.
    """

    classes: ClassList
    table: pd.DataFrame
    unused: str

    def training_index(self, label: str | None) -> int | None:
        """Class index a window label trains as; None: not trained on (uncoded, or a dropped action)."""
        if not isinstance(label, str):  # None, or NaN once a table went through pandas
            return None
        names = self.classes.names
        if label == BACKGROUND:
            return self.classes.background_index
        if label in names:
            return names.index(label)
        return self.classes.background_index if self.unused == "fold" else None

    def summary(self) -> str:
        t = self.table
        other = t[t["status"] != "class"]
        text = f"{len(self.classes) - 1} classes + background: {', '.join(self.classes.names[:-1])}"
        if len(other):
            what = "folded into background" if self.unused == "fold" else "dropped"
            text += f"; {what}: " + ", ".join(f"{r.action} ({r.events} events, {r.participants} participants)"
                                               for r in other.itertuples())
        return text


def choose_classes(counts: pd.DataFrame, *, min_events: int = 10, min_participants: int = 3,
                   requested: tuple[str, ...] | None = None, unused: str = "fold") -> ClassChoice:
    """The class list from :func:`recipes.coded_labels.count_events`' table (module docstring)."""
    if unused not in UNUSED_CHOICES:
        raise BadInput(f"--unused must be one of {', '.join(UNUSED_CHOICES)}, got {unused!r}")
    if min_events < 1 or min_participants < 1:
        raise BadInput(f"--min-events and --min-participants must be >= 1, got {min_events}, {min_participants}")
    counts = counts.set_index("action")
    enough = (counts["events"] >= min_events) & (counts["participants"] >= min_participants)
    if requested:
        unknown = [a for a in requested if a not in MA52.actions]
        if unknown:
            raise BadInput(f"--classes: {unknown[0]!r} is not an MA-52 action name")
        for a in requested:
            ev = int(counts["events"].get(a, 0))
            pa = int(counts["participants"].get(a, 0))
            if ev < min_events or pa < min_participants:
                raise BadInput(f"--classes: {a!r} has {ev} coded event(s) across {pa} participant(s); a class needs "
                               f">= {min_events} events across >= {min_participants} participants (--min-events, "
                               "--min-participants)")
        chosen = [a for a in MA52.actions if a in set(requested)]
    else:
        chosen = [a for a in MA52.actions if a in counts.index and bool(enough[a])]
        if not chosen:
            best = counts.sort_values("events", ascending=False).head(3)
            raise BadInput(f"no coded action has >= {min_events} events across >= {min_participants} participants "
                           f"(most coded: {', '.join(f'{a} {int(r.events)} events / {int(r.participants)}' for a, r in best.iterrows()) or 'none'}); "
                           "lower --min-events / --min-participants or code more sessions")
    rows = []
    for a in [x for x in MA52.actions if x in counts.index]:
        r = counts.loc[a]
        if a in chosen:
            status, reason = "class", ""
        else:
            status = "folded into background" if unused == "fold" else "dropped"
            reason = ("not requested" if requested else
                      f"fewer than {min_events} events" if r["events"] < min_events
                      else f"fewer than {min_participants} participants")
        rows.append({"action": a, "events": int(r["events"]), "participants": int(r["participants"]),
                     "frames": int(r["frames"]), "status": status, "reason": reason})
    return ClassChoice(ClassList.from_actions(chosen, background=True), pd.DataFrame(rows), unused)
