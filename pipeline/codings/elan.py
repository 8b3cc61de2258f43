"""ELAN annotation files (``.eaf``, EAF 2.7-3.0), read with ``pympi-ling`` (:class:`pympi.Elan.Eaf`).

- **Media**: the first ``MEDIA_DESCRIPTOR`` whose ``MIME_TYPE`` is ``video/*`` (else the first one;
  else the ``.eaf`` file's own name), by ``MEDIA_URL`` (``RELATIVE_MEDIA_URL`` when that is absent).
  Its ``TIME_ORIGIN`` (ms) is the media offset: media time = annotation time + origin (reported).
- **Times**: ``TIME_SLOT`` values in milliseconds, divided by 1000. A slot without a value
  (unaligned) is refused (default) or, with ``elan.unaligned: interpolate``, placed linearly between
  the nearest aligned slots before and after it in the ``TIME_ORDER``; either way it is said which.
- **Tiers** (mapping ``elan.tiers``): ``coder`` (default): one tier per coder, each annotation value
  is a code; ``behaviour``: one tier per code, the tier id is the code (or the ``code`` group of
  ``elan.pattern``) and a non-empty annotation value is a modifier. ``elan.tier_pattern`` keeps
  only the tiers whose id it matches.
- **Coder** (``elan.coder``): the tier id (``tier``, with ``elan.pattern``'s ``coder`` group if given),
  the tier's ``ANNOTATOR`` or ``PARTICIPANT`` attribute, or ``none`` (``--coder``).
- **Annotations**: ``ALIGNABLE_ANNOTATION`` has its own two slots; an annotation whose two times are
  equal is a point. ``REF_ANNOTATION`` (dependent tiers) takes the times of the annotation it refers
  to (followed to the aligned one); by default (``elan.dependent: modifiers``) its value is a modifier
  of that annotation's event, with ``dependent: events`` it is an event of its own tier.
- An empty annotation value on a code tier is an error (it names no behaviour).

Each file is one coding unit (the same video coded by one coder in two files is an error).
"""

from __future__ import annotations

import re
from urllib.parse import unquote
import warnings
from pathlib import Path, PureWindowsPath

from pipeline.codings.mapping import ElanOptions, coder_of
from pipeline.codings.raw import CodingError, RawEvent, RawSession, Reading, where

__all__ = ["read_elan", "SUFFIX"]

SUFFIX = ".eaf"


def _media(eaf, path: Path) -> str:
    descs = list(getattr(eaf, "media_descriptors", []) or [])
    video = [d for d in descs if str(d.get("MIME_TYPE", "")).startswith("video")]
    for d in video + descs:
        url = d.get("MEDIA_URL") or d.get("RELATIVE_MEDIA_URL")
        if url:
            url = str(url)
            if url.lower().startswith("file:"):  # a URI: percent-encoded (ELAN writes "v3%20%C3%A9.mp4")
                url = unquote(re.sub(r"^file:/*", "/", url))
            return PureWindowsPath(url).name if "\\" in url else Path(url).name
    return path.name


def _origin_s(eaf) -> float:
    descs = list(getattr(eaf, "media_descriptors", []) or [])
    video = [d for d in descs if str(d.get("MIME_TYPE", "")).startswith("video")] or descs
    if video and video[0].get("TIME_ORIGIN") not in (None, ""):
        try:
            return float(video[0]["TIME_ORIGIN"]) / 1000.0
        except (TypeError, ValueError):
            return 0.0
    return 0.0


def _slot_times(eaf, src: str, options: ElanOptions) -> dict[str, float | None]:
    """Slot id -> seconds; unaligned slots interpolated (option) or left None (refused when used)."""
    ids = list(eaf.timeslots)
    vals = [None if eaf.timeslots[i] is None else eaf.timeslots[i] / 1000.0 for i in ids]
    if options.unaligned == "interpolate":
        known = [k for k, v in enumerate(vals) if v is not None]
        for k, v in enumerate(vals):
            if v is not None:
                continue
            before = [j for j in known if j < k]
            after = [j for j in known if j > k]
            if not before or not after:
                raise CodingError(f"{src}: time slot {ids[k]} has no time value and no aligned slot "
                                  f"{'before' if not before else 'after'} it to interpolate from")
            a, b = before[-1], after[0]
            vals[k] = vals[a] + (vals[b] - vals[a]) * (k - a) / (b - a)
    return dict(zip(ids, vals))


def read_elan(path: str | Path, options: ElanOptions) -> Reading:
    import pympi

    path = Path(path)
    src = str(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            eaf = pympi.Elan.Eaf(str(path))
    except Exception as exc:  # pympi raises a bare Exception (and KeyErrors) for files it cannot parse
        raise CodingError(f"{src}: not a readable ELAN .eaf file ({type(exc).__name__}: {exc})") from None
    media = _media(eaf, path)
    origin = _origin_s(eaf)
    slots = _slot_times(eaf, src, options)
    unit = f"file {path.name}"
    keep = re.compile(options.tier_pattern) if options.tier_pattern else None
    tiers = {t: v for t, v in eaf.tiers.items() if keep is None or keep.search(t)}
    field = options.coder_field

    def coder_for(tier: str) -> str | None:
        """The tier's coder; a dependent tier that names none has its parent tier's."""
        attrs = eaf.tiers[tier][2]
        if field == "tier":
            who = coder_of(tier, options.pattern)
        elif field == "annotator":
            who = coder_of(str(attrs.get("ANNOTATOR", "") or ""), None)
        elif field == "participant":
            who = coder_of(str(attrs.get("PARTICIPANT", "") or ""), None)
        else:
            return None
        parent = attrs.get("PARENT_REF")
        if parent in eaf.tiers and (who is None or (field == "tier" and options.dependent == "events")):
            return coder_for(parent)
        return who

    def code_for(tier: str) -> str:
        if options.pattern:
            m = re.search(options.pattern, tier)
            if m is not None and m.groupdict().get("code"):
                return m.group("code")
        return tier

    def time_of(slot: str, tier: str, aid: str) -> float:
        t = slots.get(slot)
        if t is None:
            if slot not in slots:
                raise CodingError(f"{src}: tier {tier} annotation {aid}: time slot {slot} does not exist")
            raise CodingError(f"{src}: tier {tier} annotation {aid}: time slot {slot} has no time value (unaligned); "
                              f"set 'elan: {{unaligned: interpolate}}' in the mapping to interpolate it")
        return t

    aligned_of: dict[str, tuple[str, str, str]] = {}  # annotation id -> (tier, slot1, slot2)
    for tier, (align, _ref, _attrs, _n) in eaf.tiers.items():
        for aid, (s1, s2, _v, _svg) in align.items():
            aligned_of[aid] = (tier, s1, s2)
    refs_of: dict[str, str] = {aid: r[0] for _t, (_a, ref, _x, _n) in eaf.tiers.items() for aid, r in ref.items()}

    def root(aid: str, tier: str) -> str:
        seen = set()
        while aid not in aligned_of:
            if aid in seen or aid not in refs_of:
                raise CodingError(f"{src}: tier {tier}: annotation {aid} refers to no aligned annotation")
            seen.add(aid)
            aid = refs_of[aid]
        return aid

    out = Reading("elan", src)
    made: dict[str, int] = {}  # aligned annotation id -> index in out.events

    def event(tier: str, coder, aid: str, a: float, b: float, value: str) -> RawEvent:
        """One annotation as an event: on a coder tier the value is the code; on a behaviour tier the
        tier is the code and a value is a modifier. Equal times make a point."""
        if options.tiers == "coder":
            if not value:
                raise CodingError(f"{where(src, f'tier {tier} annotation {aid}', a)}: empty annotation value "
                                  f"(it names no behaviour code)")
            code, mods = value, ()
        else:
            code, mods = code_for(tier), ((value,) if value else ())
        return RawEvent(media, coder, code, "point" if a == b else "state", a, b, mods, src,
                        f"tier {tier} annotation {aid}", unit, tier)

    pending_mods: list[tuple[str, str]] = []
    for tier, (align, ref, _attrs, _n) in tiers.items():
        coder = coder_for(tier)
        for aid, (s1, s2, value, _svg) in align.items():
            value = (value or "").strip()
            a, b = time_of(s1, tier, aid) + origin, time_of(s2, tier, aid) + origin
            made[aid] = len(out.events)
            out.events.append(event(tier, coder, aid, a, b, value))
        for aid, (ref_id, value, _prev, _svg) in ref.items():
            value = (value or "").strip()
            if options.dependent == "modifiers":
                if value:
                    pending_mods.append((root(aid, tier), value))
                continue
            r = root(aid, tier)
            rtier, s1, s2 = aligned_of[r]
            a, b = time_of(s1, rtier, r) + origin, time_of(s2, rtier, r) + origin
            out.events.append(event(tier, coder, aid, a, b, value))
    for parent, value in pending_mods:
        k = made.get(parent)
        if k is not None:
            e = out.events[k]
            out.events[k] = RawEvent(e.media, e.coder, e.code, e.kind, e.start_s, e.stop_s, e.modifiers + (value,),
                                     e.source_file, e.source_ref, e.unit, e.tier)
    # the coders are those with an annotation in the file (an empty tier, such as ELAN's 'default',
    # names nobody); a file without annotations is a session of --coder's coder
    coders = {e.coder for e in out.events} or {None}
    for coder in sorted(coders, key=str):
        out.sessions.append(RawSession(media, coder, src, unit, None, origin, None))
    return out
