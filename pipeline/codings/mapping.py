"""The ethogram mapping: each lab code -> an MA-52 action name or ``ignore``, plus per-format options.

CSV (``code,action[,tier]``; UTF-8, a BOM and CRLF are fine)::

    code,action,tier
    NOD,nodding,
    HS,shaking head,Head|Face
    look away,ignore,

YAML (the same rows, and the options)::

    codes:
      NOD: nodding                       # short form
      HS: {action: shaking head, tier: Head|Face}
      look away: ignore
    # or a list:  codes: [{code: NOD, action: nodding}, ...]
    modifiers: keep                      # keep | drop (default keep)
    boris:    {coder: observation, pattern: '^(?P<video>.+)_(?P<coder>[^_]+)$'}
    elan:     {tiers: coder, coder: tier, unaligned: refuse, dependent: modifiers}
    observer: {coder: subject}

Matching of codes is case-, white-space- and Unicode-normalisation-insensitive (``" Nod "`` is
``nod``; NFC). ``tier`` (ELAN only) restricts a row to the tiers named (``|``-separated, same
matching); a code may have several rows with different tiers, and a row without ``tier`` applies
on every tier no other row names. A name that is not an MA-52 action is refused with the closest
names (:func:`difflib.get_close_matches`).

Which field names the coder (``coder``; ``--coder`` on the command line overrides it):

=========  ==============================================  ==========================================
format     ``coder`` values                                default
=========  ==============================================  ==========================================
boris      ``subject``, ``observation``, ``none``          ``none`` (``--coder`` is then required)
elan       ``tier``, ``annotator``, ``participant``,       ``tier`` with ``tiers: coder``,
           ``none``                                        ``annotator`` with ``tiers: behaviour``
observer   ``subject``, ``observation``, ``event_log``,    ``none``
           ``none``
csv        (the ``coder`` column)
=========  ==============================================  ==========================================

``pattern`` (optional) is a regular expression searched in that field; its named group ``coder``
gives the coder's name (the whole field without it). For BORIS and Observer observations a named
group ``video`` gives the media name the observation is matched by when the source names no media
file (Observer event logs name only the observation).
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
from pydantic import Field, TypeAdapter, ValidationError

from model.taxonomy import MA52
from pipeline.cli import BadInput

__all__ = ["IGNORE", "MappingError", "CodeRow", "BorisOptions", "ElanOptions", "ObserverOptions", "EthogramMapping",
           "read_mapping", "normalize_code", "closest_actions", "coder_of", "video_of"]

IGNORE = "ignore"


class MappingError(BadInput):
    """The ethogram mapping file cannot be used (exit 2; the message names file and row)."""


def normalize_code(text: object) -> str:
    """The matching key of a code or tier name: NFC, white space collapsed, case folded."""
    return " ".join(unicodedata.normalize("NFC", str(text)).split()).casefold()


def closest_actions(name: str, n: int = 3) -> list[str]:
    """The MA-52 action names closest to ``name`` (difflib ratio >= 0.5)."""
    return difflib.get_close_matches(normalize_code(name), MA52.actions, n=n, cutoff=0.5)


Pattern = Annotated[str | None, Field(description="regular expression; named group 'coder' (and 'video')")]


@dataclass(frozen=True)
class BorisOptions:
    """BORIS: which field names the coder."""

    coder: Annotated[Literal["subject", "observation", "none"], Field(
        description="field that names the coder: the event's subject, the observation id, or none (--coder)")] = "none"
    pattern: Pattern = None


@dataclass(frozen=True)
class ElanOptions:
    """ELAN: what tiers mean, which attribute names the coder, unaligned time slots, dependent tiers."""

    tiers: Annotated[Literal["coder", "behaviour"], Field(
        description="coder: one tier per coder, annotation values are codes; behaviour: one tier per code "
                    "(the tier name is the code, a non-empty annotation value is a modifier)")] = "coder"
    coder: Annotated[Literal["tier", "annotator", "participant", "none"] | None, Field(
        description="what names the coder: the tier id, its ANNOTATOR or PARTICIPANT attribute, or none "
                    "(--coder); default tier for tiers: coder, annotator for tiers: behaviour")] = None
    pattern: Pattern = None
    tier_pattern: Annotated[str | None, Field(
        description="read only tiers whose id matches this regular expression (default: all)")] = None
    unaligned: Annotated[Literal["refuse", "interpolate"], Field(
        description="a time slot without a value: refuse the file, or interpolate linearly between the "
                    "neighbouring aligned slots of the time order")] = "refuse"
    dependent: Annotated[Literal["modifiers", "events"], Field(
        description="annotations on a dependent (reference) tier: modifiers of their parent annotation's "
                    "event, or events of their own with the parent's times")] = "modifiers"

    @property
    def coder_field(self) -> str:
        if self.coder is not None:
            return self.coder
        return "tier" if self.tiers == "coder" else "annotator"


@dataclass(frozen=True)
class ObserverOptions:
    """The Observer XT: which field names the coder."""

    coder: Annotated[Literal["subject", "observation", "event_log", "none"], Field(
        description="field that names the coder")] = "none"
    pattern: Pattern = None


@dataclass(frozen=True)
class CodeRow:
    """One mapping row: ``code`` (as written), its ``action`` (MA-52 name or None for ignore), the tiers
    it is restricted to (normalised names; empty: all), and its place in the file (``row 3``)."""

    code: str
    action: str | None
    tiers: frozenset[str] = frozenset()
    where: str = ""


@dataclass(frozen=True)
class EthogramMapping:
    """A read ethogram mapping (see the module docstring)."""

    path: str
    rows: tuple[CodeRow, ...]
    modifiers: Literal["keep", "drop"] = "keep"
    boris: BorisOptions = field(default_factory=BorisOptions)
    elan: ElanOptions = field(default_factory=ElanOptions)
    observer: ObserverOptions = field(default_factory=ObserverOptions)

    def lookup(self, code: str, tier: str | None = None) -> CodeRow | None:
        """The row for ``code`` on ``tier`` (a tier-restricted row first, then an unrestricted one); None
        when the code is unmapped."""
        key = normalize_code(code)
        t = normalize_code(tier) if tier is not None else None
        fallback = None
        for row in self._by_code().get(key, ()):
            if row.tiers:
                if t is not None and t in row.tiers:
                    return row
            else:
                fallback = row
        return fallback

    def _by_code(self) -> dict[str, list[CodeRow]]:
        cache = self.__dict__.get("_index")
        if cache is None:
            cache = {}
            for row in self.rows:
                cache.setdefault(normalize_code(row.code), []).append(row)
            object.__setattr__(self, "_index", cache)
        return cache

    @property
    def codes(self) -> list[str]:
        """The mapped codes as written, in file order (the BORIS ethogram of an export)."""
        return list(dict.fromkeys(r.code for r in self.rows))

    def describe_options(self) -> dict:
        from dataclasses import asdict

        return {"modifiers": self.modifiers, "boris": asdict(self.boris), "elan": asdict(self.elan),
                "observer": asdict(self.observer)}


def coder_of(value: str, pattern: str | None) -> str | None:
    """The coder's name from a field: the ``coder`` group of ``pattern`` or the whole (stripped) field."""
    value = value.strip()
    if not value:
        return None
    if pattern and "coder" in re.compile(pattern).groupindex:
        m = re.search(pattern, value)
        return m.group("coder") if m is not None and m.group("coder") else None
    return value


def video_of(value: str, pattern: str | None) -> str:
    if pattern:
        m = re.search(pattern, value)
        if m is not None and m.groupdict().get("video"):
            return m.group("video")
    return value


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------
def _action(path: Path, where: str, code: str, value: object) -> str | None:
    name = normalize_code(value) if value is not None else ""
    if not name:
        raise MappingError(f"{path} {where}: code {code!r} has no action (an MA-52 action name or 'ignore')")
    if name == IGNORE:
        return None
    if name not in MA52.actions:
        close = closest_actions(name)
        hint = f"; closest MA-52 names: {', '.join(repr(c) for c in close)}" if close else \
            " (see model.taxonomy.MA52.actions)"
        raise MappingError(f"{path} {where}: {str(value).strip()!r} (code {code!r}) is not an MA-52 action{hint}")
    return name


def _tiers(value: object) -> frozenset[str]:
    if value is None:
        return frozenset()
    return frozenset(t for t in (normalize_code(p) for p in str(value).split("|")) if t)


def _check_rows(path: Path, rows: list[CodeRow]) -> tuple[CodeRow, ...]:
    seen: dict[tuple[str, frozenset[str]], CodeRow] = {}
    tiers_of: dict[str, list[CodeRow]] = {}
    for r in rows:
        key = (normalize_code(r.code), r.tiers)
        if key in seen:
            raise MappingError(f"{path} {r.where}: code {r.code!r} is mapped twice (also {seen[key].where})")
        for other in tiers_of.get(key[0], []):
            common = other.tiers & r.tiers
            if common:
                raise MappingError(f"{path} {r.where}: code {r.code!r} on tier {sorted(common)[0]!r} is mapped "
                                   f"twice (also {other.where})")
        seen[key] = r
        tiers_of.setdefault(key[0], []).append(r)
    if not rows:
        raise MappingError(f"{path}: the mapping has no codes")
    return tuple(rows)


def _read_csv(path: Path) -> EthogramMapping:
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8-sig",
                         skipinitialspace=True)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise MappingError(f"{path}: cannot read the mapping ({type(exc).__name__}: {exc})") from None
    df.columns = [normalize_code(c) for c in df.columns]
    for c in ("code", "action"):
        if c not in df.columns:
            raise MappingError(f"{path}: missing column {c!r} (columns: code,action[,tier]); found: "
                               f"{', '.join(df.columns) or 'none'}")
    extra = [c for c in df.columns if c not in ("code", "action", "tier")]
    if extra:
        raise MappingError(f"{path}: unknown column {extra[0]!r} (columns: code,action[,tier]; per-format "
                           f"options need the YAML form)")
    rows = []
    for i, rec in enumerate(df.to_dict("records")):
        where = f"row {i + 1} (line {i + 2})"
        code = str(rec["code"]).strip()
        if not code:
            raise MappingError(f"{path} {where}: empty code")
        rows.append(CodeRow(code, _action(path, where, code, rec["action"]), _tiers(rec.get("tier") or None), where))
    return EthogramMapping(str(path), _check_rows(path, rows))


_OPTION_TYPES = {"boris": BorisOptions, "elan": ElanOptions, "observer": ObserverOptions}


def _options(path: Path, key: str, value: object):
    cls = _OPTION_TYPES[key]
    if value is None:
        return cls()
    if not isinstance(value, MappingABC):
        raise MappingError(f"{path}: {key!r} must be a mapping of options, got {type(value).__name__}")
    known = set(cls.__dataclass_fields__)
    unknown = [k for k in value if k not in known]
    if unknown:
        raise MappingError(f"{path}: {key}.{unknown[0]} is not an option (options: {', '.join(sorted(known))})")
    try:
        opts = TypeAdapter(cls).validate_python(dict(value))
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise MappingError(f"{path}: {key}.{loc}: {err['msg']}") from None
    for name in ("pattern", "tier_pattern"):
        pat = getattr(opts, name, None)
        if pat is not None:
            try:
                re.compile(pat)
            except re.error as exc:
                raise MappingError(f"{path}: {key}.{name} {pat!r} is not a regular expression ({exc})") from None
    return opts


def _read_yaml(path: Path) -> EthogramMapping:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise MappingError(f"{path}: cannot read the mapping ({first})") from None
    if not isinstance(doc, MappingABC) or "codes" not in doc:
        raise MappingError(f"{path}: a YAML mapping needs a 'codes' key (code -> action, or a list of "
                           f"{{code, action, tier}})")
    known = {"codes", "modifiers", *_OPTION_TYPES}
    unknown = [k for k in doc if k not in known]
    if unknown:
        raise MappingError(f"{path}: unknown key {unknown[0]!r} (keys: {', '.join(sorted(known))})")
    codes = doc["codes"]
    items: list[tuple[str, object, object, str]] = []
    if isinstance(codes, MappingABC):
        for k, v in codes.items():
            where = f"codes.{k}"
            if isinstance(v, MappingABC):
                items.append((str(k), v.get("action"), v.get("tier"), where))
            else:
                items.append((str(k), v, None, where))
    elif isinstance(codes, list):
        for i, v in enumerate(codes):
            where = f"codes[{i}]"
            if not isinstance(v, MappingABC) or "code" not in v:
                raise MappingError(f"{path} {where}: each item needs 'code' and 'action'")
            items.append((str(v["code"]), v.get("action"), v.get("tier"), where))
    else:
        raise MappingError(f"{path}: 'codes' must be a mapping or a list")
    rows = []
    for code, action, tier, where in items:
        code = code.strip()
        if not code:
            raise MappingError(f"{path} {where}: empty code")
        rows.append(CodeRow(code, _action(path, where, code, action), _tiers(tier), where))
    modifiers = doc.get("modifiers", "keep")
    if modifiers not in ("keep", "drop"):
        raise MappingError(f"{path}: modifiers must be 'keep' or 'drop', got {modifiers!r}")
    return EthogramMapping(str(path), _check_rows(path, rows), modifiers,
                           **{k: _options(path, k, doc.get(k)) for k in _OPTION_TYPES})


def read_mapping(path: str | Path) -> EthogramMapping:
    """Read an ethogram mapping (``.csv``, or ``.yaml`` / ``.yml``); :class:`MappingError` on the first problem."""
    path = Path(path)
    if not path.is_file():
        raise MappingError(f"mapping file not found: {path}")
    if path.suffix.lower() in (".yaml", ".yml"):
        return _read_yaml(path)
    return _read_csv(path)
