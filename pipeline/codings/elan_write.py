"""Codings out as ELAN ``.eaf`` files (EAF 3.0), one per video, written with ``pympi-ling``.

Input: one coder's :data:`~pipeline.codings.contract.CODING_EVENTS` rows on one video, its session, the
media file, an ethogram (``action -> code``) and optionally a score per event. Output: an EAF document::

    ANNOTATION_DOCUMENT  VERSION="3.0" FORMAT="3.0" xsi:noNamespaceSchemaLocation=".../EAFv3.0.xsd"
      HEADER TIME_UNITS="milliseconds"
        MEDIA_DESCRIPTOR MEDIA_URL="file:///abs/video.mp4" RELATIVE_MEDIA_URL="./../videos/video.mp4"
        PROPERTY lastUsedAnnotation
      TIME_ORDER / TIME_SLOT (ms = round(1000 * frame / fps))
      TIER TIER_ID=<code> | <single tier name>  PARTICIPANT=<participant> ANNOTATOR=<coder>
           LINGUISTIC_TYPE_REF="micro-action"   ALIGNABLE_ANNOTATION value = "" | the event's code
      TIER TIER_ID="<tier> score" PARENT_REF=<tier> LINGUISTIC_TYPE_REF="score"
           REF_ANNOTATION (Symbolic_Association) value = "0.873"        (only when scores are given)
      LINGUISTIC_TYPE micro-action (time-alignable; single-tier: controlled vocabulary "ethogram"), score
      LANGUAGE und,  CONSTRAINT ...,  CONTROLLED_VOCABULARY ethogram (one entry per code)

Layouts (:data:`LAYOUTS`), as the importer reads them (``pipeline.codings.mapping`` ELAN options):
``per-action`` gives one tier per code (tier id = code, empty values: a value would be a modifier;
import with ``elan: {tiers: behaviour}``, the coder is the tiers' ``ANNOTATOR``); ``single-tier`` one
tier (default name ``model``) whose values are the codes (import with ``elan: {tiers: coder, coder:
annotator}``). Every tier's ``ANNOTATOR`` is the coder, ``PARTICIPANT`` the participant. ELAN does not allow overlapping
annotations on one tier, so in the single-tier layout events that overlap an earlier one go to a
further tier ``<name> 2``, ``<name> 3``, ... (first that is free); in the per-action layout two
overlapping events of one code are refused (they are merged on import anyway). A point event gets
one frame (``stop_frame = start_frame + 1``), as the codings contract counts it.

Times in ms round-trip to the frame: ``round(round(1000 f / fps) / 1000 * fps) = f`` for fps < 1000.

Validity. The EAF 3.0 XSD is not shipped (pympi does not ship it, the schema file carries no licence
statement that allows redistribution, and nothing is downloaded at run time); :func:`eaf_problems`
checks the parts of the schema an export can break (element order, required attributes, ID
uniqueness and every reference resolving, one value per annotation, time slots ascending within an
annotation) and pympi must read the file back; ``docs/codings.md, "Exporting for review"`` lists the checks.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from pympi import Elan

from pipeline.cli import BadInput

__all__ = ["LAYOUTS", "EAF_VERSION", "EAF_SCHEMA", "MIME_TYPES", "eaf_document", "eaf_text", "eaf_problems",
           "media_urls", "score_tier_name"]

LAYOUTS: tuple[str, ...] = ("per-action", "single-tier")
EAF_VERSION = "3.0"
EAF_SCHEMA = "http://www.mpi.nl/tools/elan/EAFv3.0.xsd"
ACTION_TYPE = "micro-action"
SCORE_TYPE = "score"
CV_ID = "ethogram"
LANG = "und"
MIME_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".avi": "video/x-msvideo",
              ".mpg": "video/mpeg", ".mpeg": "video/mpeg", ".mkv": "video/x-matroska", ".webm": "video/webm",
              ".wmv": "video/x-ms-wmv", ".wav": "audio/x-wav"}
_ORDER = ("LICENSE", "HEADER", "TIME_ORDER", "TIER", "LINGUISTIC_TYPE", "LOCALE", "LANGUAGE", "CONSTRAINT",
          "CONTROLLED_VOCABULARY", "LEXICON_REF", "REF_LINK_SET", "EXTERNAL_REF")
_NCNAME = re.compile(r"^[A-Za-z_][\w.\-]*$")


def score_tier_name(tier: str) -> str:
    """Name of the dependent tier holding the scores of ``tier``."""
    return f"{tier} score"


def media_urls(video: str | Path, eaf_folder: str | Path) -> tuple[str, str]:
    """``(MEDIA_URL, RELATIVE_MEDIA_URL)`` of a video for an EAF file in ``eaf_folder``: the absolute
    ``file://`` URI and the path relative to the EAF's folder (``./`` + POSIX path), which ELAN tries
    first when the folder was moved."""
    video = Path(video).absolute()
    try:
        rel = Path(os.path.relpath(video, Path(eaf_folder).absolute())).as_posix()
    except ValueError:  # another drive (Windows)
        rel = video.as_posix()
    return video.as_uri(), rel if rel.startswith(("/", "../")) else "./" + rel


def _ms(frame: int, fps: float) -> int:
    return int(round(1000.0 * frame / fps))


def eaf_document(events: pd.DataFrame, session: Mapping, *, media_url: str, relative_media_url: str,
                 ethogram: Mapping[str, str], layout: str = "per-action", tier_name: str = "model",
                 scores: pd.Series | None = None, author: str = "microaction-cohort") -> Elan.Eaf:
    """The EAF document of one session (module docstring).

    ``events``: CODING_EVENTS rows of this session only; ``session``: its CODING_SESSIONS row;
    ``ethogram``: action -> code (its codes form the controlled vocabulary, in order); ``scores``:
    optional, index aligned with ``events``.
    """
    if layout not in LAYOUTS:
        raise BadInput(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    fps = float(session["fps"])
    coder = str(session["coder"])
    participant = str(session["participant_id"])
    codes = dict(ethogram)
    missing = sorted(set(events["action"]) - set(codes))
    if missing:
        raise BadInput(f"ethogram has no code for action(s) {', '.join(map(repr, missing))}")

    eaf = Elan.Eaf(author=author)
    eaf.adocument.update({"VERSION": EAF_VERSION, "FORMAT": EAF_VERSION, "xsi:noNamespaceSchemaLocation": EAF_SCHEMA})
    eaf.remove_tier("default")
    eaf.remove_linguistic_type("default-lt")
    eaf.header = {"TIME_UNITS": "milliseconds"}
    eaf.properties = []
    suffix = Path(relative_media_url).suffix.lower()
    eaf.add_linked_file(media_url, relpath=relative_media_url, mimetype=MIME_TYPES.get(suffix, "video/*"))
    eaf.add_language(LANG, lang_label="undetermined (und)")
    eaf.add_controlled_vocabulary(CV_ID)
    eaf.add_cv_description(CV_ID, LANG, "the lab's ethogram codes")
    for i, (action, code) in enumerate(codes.items()):
        eaf.add_cv_entry(CV_ID, f"cveid{i}", [(code, LANG, action)])
    eaf.linguistic_types[ACTION_TYPE] = {"LINGUISTIC_TYPE_ID": ACTION_TYPE, "TIME_ALIGNABLE": "true",
                                         "GRAPHIC_REFERENCES": "false"}
    if layout == "single-tier":  # the values are codes: ELAN offers them from the vocabulary
        eaf.linguistic_types[ACTION_TYPE]["CONTROLLED_VOCABULARY_REF"] = CV_ID
    if scores is not None:
        eaf.add_linguistic_type(SCORE_TYPE, constraints="Symbolic_Association", timealignable=False)

    ev = events.sort_values(["start_frame", "stop_frame", "action"])
    busy: dict[str, int] = {}  # tier -> stop frame of its last annotation
    placed: list[tuple[str, int, int, str, float | None]] = []
    for i, e in zip(ev.index, ev.itertuples(index=False)):
        code = codes[e.action]
        a = int(e.start_frame)
        b = a + 1 if e.kind == "point" else max(int(e.stop_frame), a + 1)
        if layout == "per-action":
            tier = code
            if a < busy.get(tier, -1):
                raise BadInput(f"video {session['video_id']}, coder {coder}: events of code {code!r} overlap at "
                               f"{a / fps:.3f} s; one ELAN tier cannot hold overlapping annotations (merge them first)")
        else:
            k = 1
            while a < busy.get(tier := tier_name if k == 1 else f"{tier_name} {k}", -1):
                k += 1
        busy[tier] = b
        placed.append((tier, a, b, code, None if scores is None else float(scores.loc[i])))

    if layout == "per-action":
        tiers = list(dict.fromkeys(codes.values()))
    else:
        tiers = [tier_name] + sorted((t for t in busy if t != tier_name), key=lambda t: (len(t), t))
    for tier in tiers:
        eaf.add_tier(tier, ling=ACTION_TYPE, part=participant, ann=coder)
    for tier, a, b, code, _ in placed:  # per-action: the tier is the code, the value is left for a modifier
        eaf.add_annotation(tier, _ms(a, fps), _ms(b, fps), value=code if layout == "single-tier" else "")
    if scores is not None:
        for tier in [t for t in tiers if t in {p[0] for p in placed}]:  # tiers with detections
            eaf.add_tier(score_tier_name(tier), ling=SCORE_TYPE, parent=tier, part=participant, ann=coder)
        for tier, a, b, _, score in placed:
            # the midpoint lies inside this annotation only (annotations of one tier do not overlap)
            eaf.add_ref_annotation(score_tier_name(tier), tier, (_ms(a, fps) + _ms(b, fps)) / 2, value=f"{score:.3f}")
    eaf.properties = [("lastUsedAnnotation", eaf.maxaid if eaf.annotations else 0)]
    return eaf


def eaf_text(eaf: Elan.Eaf) -> str:
    """The document as UTF-8 XML text with its declaration (pympi's serialiser; pympi's own file writer
    renames an existing file to ``.bak``, so the caller writes this text atomically instead)."""
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + Elan.to_string(eaf) + "\n"


def eaf_problems(text: str) -> list[str]:
    """What in an EAF document breaks the EAF 3.0 schema's rules that an export can break (empty = none).

    Checked: root element and its required ``DATE``, ``AUTHOR``, ``VERSION``; the order of the root's
    children; one ``HEADER`` with ``TIME_UNITS`` milliseconds and ``MEDIA_DESCRIPTOR``\\ s with
    ``MEDIA_URL`` and ``MIME_TYPE``; one ``TIME_ORDER`` whose slots have unique IDs and integer
    non-negative values; every ``TIER`` with ``TIER_ID`` (unique) and a ``LINGUISTIC_TYPE_REF`` that exists,
    a ``PARENT_REF`` that exists; each ``ANNOTATION`` holding exactly one alignable or reference
    annotation with an ``ANNOTATION_VALUE``; annotation IDs unique among all IDs and NCNames; alignable
    annotations referring to existing slots with start before end; reference annotations referring
    to an annotation of the parent tier; linguistic types' constraint and vocabulary references
    resolving; vocabulary entries' language references resolving.
    """
    out: list[str] = []
    try:
        root = ET.fromstring(text.encode("utf-8") if isinstance(text, str) else text)
    except ET.ParseError as exc:
        return [f"not well-formed XML: {exc}"]
    if root.tag != "ANNOTATION_DOCUMENT":
        return [f"root element is {root.tag}, not ANNOTATION_DOCUMENT"]
    for att in ("DATE", "AUTHOR", "VERSION"):
        if att not in root.attrib:
            out.append(f"ANNOTATION_DOCUMENT lacks {att}")
    tags = [c.tag for c in root]
    unknown = [t for t in tags if t not in _ORDER]
    if unknown:
        out.append(f"unexpected elements {sorted(set(unknown))}")
    ranks = [_ORDER.index(t) for t in tags if t in _ORDER]
    if ranks != sorted(ranks):
        out.append(f"children out of schema order: {tags}")
    for single in ("HEADER", "TIME_ORDER"):
        if tags.count(single) != 1:
            out.append(f"{tags.count(single)} {single} elements (1 required)")
    header = root.find("HEADER")
    if header is not None:
        if header.get("TIME_UNITS", "milliseconds") != "milliseconds":
            out.append(f"TIME_UNITS is {header.get('TIME_UNITS')}")
        for md in header.findall("MEDIA_DESCRIPTOR"):
            for att in ("MEDIA_URL", "MIME_TYPE"):
                if not md.get(att):
                    out.append(f"MEDIA_DESCRIPTOR lacks {att}")
    ids: set[str] = set()

    def new_id(value: str | None, what: str) -> None:
        if not value or not _NCNAME.match(value):
            out.append(f"{what} id {value!r} is not an XML name")
        elif value in ids:
            out.append(f"{what} id {value!r} is not unique")
        ids.add(value or "")

    slots: dict[str, int | None] = {}
    for ts in root.iterfind("TIME_ORDER/TIME_SLOT"):
        new_id(ts.get("TIME_SLOT_ID"), "TIME_SLOT")
        v = ts.get("TIME_VALUE")
        if v is not None and not (v.isdigit()):
            out.append(f"TIME_SLOT {ts.get('TIME_SLOT_ID')} value {v!r} is not a non-negative integer")
        slots[ts.get("TIME_SLOT_ID") or ""] = int(v) if v is not None and v.isdigit() else None
    ltypes = {lt.get("LINGUISTIC_TYPE_ID"): lt for lt in root.iterfind("LINGUISTIC_TYPE")}
    constraints = {c.get("STEREOTYPE") for c in root.iterfind("CONSTRAINT")}
    cvs = {cv.get("CV_ID") for cv in root.iterfind("CONTROLLED_VOCABULARY")}
    langs = {lang.get("LANG_ID") for lang in root.iterfind("LANGUAGE")}
    for name, lt in ltypes.items():
        if lt.get("CONSTRAINTS") and lt.get("CONSTRAINTS") not in constraints:
            out.append(f"LINGUISTIC_TYPE {name} refers to missing CONSTRAINT {lt.get('CONSTRAINTS')}")
        if lt.get("CONTROLLED_VOCABULARY_REF") and lt.get("CONTROLLED_VOCABULARY_REF") not in cvs:
            out.append(f"LINGUISTIC_TYPE {name} refers to missing vocabulary {lt.get('CONTROLLED_VOCABULARY_REF')}")
    for cv in root.iterfind("CONTROLLED_VOCABULARY"):
        for el in list(cv.iterfind("DESCRIPTION")) + list(cv.iterfind("CV_ENTRY_ML/CVE_VALUE")):
            if el.get("LANG_REF") not in langs:
                out.append(f"CONTROLLED_VOCABULARY {cv.get('CV_ID')}: language {el.get('LANG_REF')!r} not defined")
        for entry in cv.iterfind("CV_ENTRY_ML"):
            if not entry.get("CVE_ID"):
                out.append(f"CONTROLLED_VOCABULARY {cv.get('CV_ID')}: entry without CVE_ID")
    tiers = {}
    for tier in root.iterfind("TIER"):
        tid = tier.get("TIER_ID")
        if not tid:
            out.append("TIER without TIER_ID")
        elif tid in tiers:
            out.append(f"TIER_ID {tid!r} is not unique")
        tiers[tid] = tier
        if tier.get("LINGUISTIC_TYPE_REF") not in ltypes:
            out.append(f"TIER {tid!r} refers to missing LINGUISTIC_TYPE {tier.get('LINGUISTIC_TYPE_REF')!r}")
    tier_of: dict[str, str] = {}
    refs: list[tuple[str, str, str]] = []
    for tid, tier in tiers.items():
        if tier.get("PARENT_REF") and tier.get("PARENT_REF") not in tiers:
            out.append(f"TIER {tid!r} refers to missing parent {tier.get('PARENT_REF')!r}")
        for ann in tier.iterfind("ANNOTATION"):
            kids = list(ann)
            if len(kids) != 1 or kids[0].tag not in ("ALIGNABLE_ANNOTATION", "REF_ANNOTATION"):
                out.append(f"TIER {tid!r}: ANNOTATION must hold one alignable or reference annotation")
                continue
            a = kids[0]
            aid = a.get("ANNOTATION_ID") or ""
            new_id(aid, "ANNOTATION")
            tier_of[aid] = tid
            if a.find("ANNOTATION_VALUE") is None or len(a) != 1:
                out.append(f"annotation {aid}: needs exactly one ANNOTATION_VALUE")
            if a.tag == "ALIGNABLE_ANNOTATION":
                t1, t2 = a.get("TIME_SLOT_REF1"), a.get("TIME_SLOT_REF2")
                if t1 not in slots or t2 not in slots:
                    out.append(f"annotation {aid}: time slot reference {t1!r}/{t2!r} does not exist")
                elif slots[t1] is not None and slots[t2] is not None and not slots[t1] < slots[t2]:
                    out.append(f"annotation {aid}: ends ({slots[t2]} ms) before it starts ({slots[t1]} ms)")
            else:
                refs.append((aid, a.get("ANNOTATION_REF") or "", tid))
    for aid, ref, tid in refs:
        if ref not in tier_of:
            out.append(f"annotation {aid}: refers to missing annotation {ref!r}")
        elif tier_of[ref] != tiers[tid].get("PARENT_REF"):
            out.append(f"annotation {aid}: refers to {ref} on tier {tier_of[ref]!r}, not the parent tier")
    return out
