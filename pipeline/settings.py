"""Stage settings: one typed dataclass per stage is the single source of truth for its options.

A stage's settings are a frozen :func:`dataclasses.dataclass` whose fields are annotated with
``Annotated[type, pydantic.Field(...)]``: the annotation carries the bounds (``gt``/``ge``/``le``/
``lt``), the help text (``description``) and, in ``json_schema_extra``, how the command line spells it
(``flag``, ``metavar``). Everything else is derived from that one declaration:

=====================  ===================================================================
command line           :func:`add_arguments` adds one flag per field (type, choices, default
                       and help from the annotation); :func:`from_args` builds the object and
                       says which fields the user set (:class:`Resolved`)
flow parameters        the flow's pydantic parameter model embeds the dataclass itself, so
                       Prefect's JSON schema and its validation at submission are the same
                       bounds (pydantic validates stdlib dataclasses from their annotations)
validation             :func:`validate_settings`: the same pydantic checks plus the class's
                       ``__post_init__`` (cross-field rules), as one :class:`SettingsError`
                       line naming ``<stage>.<field>``; called by the CLI, the flow at
                       submission and the stage
sidecar                the settings' fields under the stage's name (``to_dict()`` where a stage
                       records more, e.g. the read-out's merge order; else ``dataclasses.asdict``)
report                 Methods read those keys by field name (``reports/methods.py``)
=====================  ===================================================================

Why pydantic annotations on a stdlib dataclass rather than a pydantic model: the stages below
``flows/`` keep plain, picklable dataclasses (Dask ships them to workers, sidecars hash their
``asdict``), while the flow still gets real JSON-schema bounds. ``tests/test_settings.py`` walks every
field of every stage's settings through all of these places.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError

__all__ = ["SettingsError", "Resolved", "field_specs", "FieldSpec", "add_arguments", "args_values", "from_args",
           "validate_settings", "merge_settings", "settings_model"]


class SettingsError(ValueError):
    """A setting is out of bounds or inconsistent; the message names ``<stage>.<field>``."""


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """What one settings field looks like on the command line (derived from its annotation)."""

    name: str
    flag: str
    kind: str  # "choice", "bool", "int", "float", "str", "path", "optional-path", "mapping", "list"
    default: Any
    help: str
    choices: tuple | None = None
    metavar: str | None = None


def _unwrap(tp: Any) -> tuple[Any, list]:
    if typing.get_origin(tp) is typing.Annotated:
        base, *meta = typing.get_args(tp)
        return base, meta
    return tp, []


def _kind(tp: Any) -> tuple[str, tuple | None]:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "choice", typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and args[0] is Path:
            return "optional-path", None
        if len(args) == 1 and args[0] in (int, float, str):
            return args[0].__name__, None
        if len(args) == 1 and typing.get_origin(args[0]) in (tuple, list):
            return "list", None
        raise TypeError(f"unsupported optional settings type {tp!r}")
    if origin in (dict, Mapping):
        return "mapping", None
    if origin in (tuple, list):
        return "list", None
    if tp is bool:
        return "bool", None
    if tp in (int, float, str):
        return tp.__name__, None
    if tp is Path:
        return "path", None
    raise TypeError(f"unsupported settings type {tp!r}")


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    raise TypeError(f"settings field {f.name!r} has no default")


def field_specs(cls: type) -> list[FieldSpec]:
    """The command-line view of every field of a settings dataclass, in declaration order."""
    hints = typing.get_type_hints(cls, include_extras=True)
    out = []
    for f in dataclasses.fields(cls):
        base, meta = _unwrap(hints[f.name])
        info = next((m for m in meta if hasattr(m, "description")), None)
        extra = (getattr(info, "json_schema_extra", None) or {}) if info is not None else {}
        kind, choices = _kind(base)
        out.append(FieldSpec(
            name=f.name, flag=extra.get("flag", "--" + f.name.replace("_", "-")), kind=kind, default=_default(f),
            help=(getattr(info, "description", None) or "") if info is not None else "", choices=choices,
            metavar=extra.get("metavar")))
    return out


def _parse_mapping(text: str) -> dict[str, float]:
    """``CLASS=VALUE[,CLASS=VALUE...]`` (repeatable flag) -> dict."""
    out = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {part!r}")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{key.strip()}: not a number: {value!r}") from None
    return out


class _MergeMapping(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        current = dict(getattr(namespace, self.dest, None) or {})
        current.update(values)
        setattr(namespace, self.dest, current)


def _fmt_default(v: Any) -> str:
    if isinstance(v, Mapping):
        return "none" if not v else json.dumps(dict(v))
    if isinstance(v, (tuple, list)):
        return ",".join(map(str, v)) if v else "none"
    return "none" if v is None else str(v)


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, *,
                  exclude: Iterable[str] = ()) -> list[FieldSpec]:
    """Add one flag per field of ``cls`` (all defaults :data:`argparse.SUPPRESS`: see :func:`from_args`).

    Help strings end with the field's default, so ``--help`` documents the same defaults the flow
    schema shows. Returns the specs of the flags added.
    """
    added = []
    for spec in field_specs(cls):
        if spec.name in exclude:
            continue
        kw: dict[str, Any] = {"dest": spec.name, "default": argparse.SUPPRESS,
                              "help": f"{spec.help} (default: {_fmt_default(spec.default)})"}
        if spec.kind == "choice":
            kw["choices"] = spec.choices
        elif spec.kind == "bool":
            kw["action"] = argparse.BooleanOptionalAction
        elif spec.kind in ("int", "float", "str"):
            kw["type"] = {"int": int, "float": float, "str": str}[spec.kind]
        elif spec.kind in ("path", "optional-path"):
            kw["type"] = Path
        elif spec.kind == "mapping":
            kw.update(type=_parse_mapping, action=_MergeMapping)
        elif spec.kind == "list":
            kw["type"] = lambda text: tuple(x.strip() for x in text.split(",") if x.strip())
        if spec.metavar and spec.kind != "bool":
            kw["metavar"] = spec.metavar
        parser.add_argument(spec.flag, **kw)
        added.append(spec)
    return added


@dataclasses.dataclass(frozen=True)
class Resolved:
    """Settings and where each field's value came from: ``"default"``, ``"user"`` or a named base."""

    settings: Any
    sources: dict[str, str]


def merge_settings(cls: type, *, user: Mapping[str, Any] | None = None, base: Mapping[str, Any] | None = None,
                   base_name: str = "base", stage: str = "settings") -> Resolved:
    """``cls`` from its defaults, overridden by ``base`` (e.g. a checkpoint's calibrated read-out),
    overridden by what the user set; validated (:func:`validate_settings`)."""
    values: dict[str, Any] = {}
    sources = {f.name: "default" for f in dataclasses.fields(cls)}
    for origin, given in ((base_name, base or {}), ("user", user or {})):
        for k, v in given.items():
            values[k] = v
            sources[k] = origin
    # an unknown key is refused there, naming it, before ``sources`` is returned
    return Resolved(validate_settings(values, cls, stage=stage), sources)


def args_values(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """The fields of ``cls`` the user gave on the command line (:func:`add_arguments` suppresses the
    others, so a default left alone is not an override)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(args).items() if k in names}


def from_args(cls: type, args: argparse.Namespace, *, base: Mapping[str, Any] | None = None,
              base_name: str = "base", stage: str = "settings") -> Resolved:
    """Build ``cls`` from parsed arguments (only the flags the user gave) over ``base`` and the defaults."""
    return merge_settings(cls, user=args_values(cls, args), base=base, base_name=base_name, stage=stage)


def _one_line(exc: ValidationError, stage: str) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ()) if p != "__root__")
    msg = err.get("msg", "invalid").removeprefix("Value error, ")
    named = re.match(r"([A-Za-z_][\w\[\]'.]*): (.*)", msg) if not loc else None
    if named:  # a __post_init__ message that starts with its field's name
        loc, msg = named.groups()
    where = f"{stage}.{loc}" if loc else stage
    got = err.get("input")
    shown = "" if isinstance(got, Mapping) or named or not loc else f" (got {got!r})"
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"{where}: {msg}{shown}{more}"


def validate_settings(obj: Any, cls: type | None = None, *, stage: str = "settings") -> Any:
    """The validated settings object from an instance or a mapping of field values.

    Runs the annotation's bounds and the class's ``__post_init__`` (through pydantic, the same code
    that validates the flow's parameters at submission). Raises :class:`SettingsError` with one line
    naming ``<stage>.<field>``.
    """
    cls = cls or type(obj)
    data = dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else dict(obj)
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise SettingsError(f"{stage}.{unknown[0]}: unknown setting (known: {', '.join(known)})")
    try:
        return TypeAdapter(cls).validate_python(data)
    except ValidationError as exc:
        raise SettingsError(_one_line(exc, stage)) from None


def settings_model(cls: type, *, name: str, module: str, doc: str | None = None) -> type:
    """A pydantic model with exactly the fields, bounds, help and defaults of the settings ``cls``.

    For parameter models (the flow's): Prefect's JSON schema and validation at submission come from
    the same annotations, and the model records which fields the caller set
    (``model_fields_set``), so a flow can lay the user's values over a checkpoint's own read-out the
    way the CLI does (:func:`merge_settings`). ``m.user_values()`` gives the fields set, and
    ``m.settings(base=...)`` the validated dataclass with their sources (:class:`Resolved`). ``name``/``module`` make it picklable by
    reference (assign it to ``module.name``).
    """
    from pydantic import BaseModel, ConfigDict, create_model

    hints = typing.get_type_hints(cls, include_extras=True)
    spec = {f.name: (hints[f.name], _default(f)) for f in dataclasses.fields(cls)}

    def user_values(self) -> dict[str, Any]:
        """The fields the caller set explicitly (a default left alone is not an override)."""
        return {k: getattr(self, k) for k in self.model_fields_set}

    def settings(self, *, base: Mapping[str, Any] | None = None, base_name: str = "base",
                 stage: str = "settings") -> Resolved:
        return merge_settings(cls, user=self.user_values(), base=base, base_name=base_name, stage=stage)

    model = create_model(name, __config__=ConfigDict(extra="forbid", frozen=True), __module__=module,
                         __doc__=doc or f"Parameters of :class:`{cls.__module__}.{cls.__qualname__}` (same fields).",
                         **spec)
    model.user_values = user_values
    model.settings = settings
    model.settings_class = cls
    return model
