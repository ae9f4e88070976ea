"""What the service config and the app spec models share: strict frozen models, field
types for berth's units, and the translation of pydantic's errors into berth's words.

Models derive from :class:`ConfigModel` (frozen, unknown keys forbidden, defaults
validated so they may be written the way a user writes them: ``"1m"``, ``"128Mi"``).
Scalars are strict: ``replicas: "3"`` is an error, not a silent conversion.

:func:`validate_document` validates a :class:`~pipeline.yamldoc.YamlDocument` against a
model and turns *every* pydantic error into a :class:`~pipeline.errors.ConfigProblem`
with the key path and position, worded the way berth words it
(``unknown key (did you mean "replicas"?)``, ``must be a whole number (got "3")``).
"""

from __future__ import annotations

import difflib
import functools
import json
import os
import re
from collections.abc import Iterable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    PlainSerializer,
    PlainValidator,
    Strict,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
)
from pydantic_core import ErrorDetails

from pipeline import units
from pipeline.errors import ConfigError, ConfigProblem
from pipeline.yamldoc import KeyPath, YamlDocument

__all__ = [
    "TAG_PREFIX",
    "Bool",
    "ConfigModel",
    "Count",
    "Cpu",
    "Duration",
    "EnvName",
    "Identity",
    "Name",
    "NonEmpty",
    "PercentField",
    "PositiveDuration",
    "RelativePath",
    "ResolvedPath",
    "Size",
    "Str",
    "Variables",
    "json_schema",
    "render_schema",
    "schema_keys_at",
    "validate_document",
]

M = TypeVar("M", bound=BaseModel)

# Tags of discriminated unions carry this prefix so that they can be told apart from
# keys when pydantic puts them into an error's location.
TAG_PREFIX = "tag:"


class ConfigModel(BaseModel):
    """Base of every config model: frozen, strict about unknown keys, defaults validated."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        validate_default=True,
        hide_input_in_errors=True,
        use_attribute_docstrings=True,
    )


# --- scalar and unit field types ---------------------------------------------------


def _name(value: str) -> str:
    if not re.fullmatch(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?", value):
        raise ValueError(
            "must be lower-case letters, digits and dashes, starting with a letter "
            f"(got {units.show_value(value)})"
        )
    return value


def _env_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise ValueError(f"must be a variable name like LOG_LEVEL (got {units.show_value(value)})")
    return value


def _non_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _variable_value(value: object) -> str:
    # Numbers become strings; booleans and floats are refused because YAML already
    # changed what the user wrote (NO -> false, 1.10 -> 1.1).
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    hint = ""
    if isinstance(value, bool | float):
        hint = "; quote it, YAML reads yes/no/on/off as booleans and 1.10 as 1.1"
    raise ValueError(f"must be a string (got {units.show_value(value)}){hint}")


def _relative(value: str) -> str:
    path = Path(value)
    if path.is_absolute() or ".." in path.parts:
        raise ValueError(
            f"must be a path inside the repository, like docker/Dockerfile "
            f"(got {units.show_value(value)})"
        )
    return value


def _resolve(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    path = value.expanduser()
    if isinstance(base, Path) and not path.is_absolute():
        # normpath, not resolve(): "config/../var" reads better, symlinks stay as written.
        return Path(os.path.normpath(base / path))
    return path


def _not_empty_list(value: tuple[Any, ...]) -> tuple[Any, ...]:
    # A length constraint on the field itself would also fire when items fail validation.
    if not value:
        raise ValueError("must have at least one item")
    return value


NonEmpty = AfterValidator(_not_empty_list)


def _duration(minimum: timedelta | None) -> Any:
    return functools.partial(units.parse_duration, minimum=minimum)


Str = Annotated[str, Strict(), AfterValidator(_non_empty)]
Bool = Annotated[bool, Strict()]
Name = Annotated[str, Strict(), AfterValidator(_name)]
EnvName = Annotated[str, Strict(), AfterValidator(_env_name)]
Identity = Annotated[str, Strict(), AfterValidator(_non_empty)]
ResolvedPath = Annotated[Path, AfterValidator(_resolve)]
RelativePath = Annotated[str, Strict(), AfterValidator(_relative)]
Variables = Mapping[
    EnvName,
    Annotated[
        str,
        PlainValidator(_variable_value),
        WithJsonSchema({"type": ["string", "integer"]}),
    ],
]

_DURATION_SCHEMA = {"type": "string", "pattern": units.DURATION_PATTERN}
Duration = Annotated[
    timedelta,
    PlainValidator(_duration(None)),
    PlainSerializer(units.format_duration, return_type=str),
    WithJsonSchema(_DURATION_SCHEMA),
]
PositiveDuration = Annotated[
    timedelta,
    PlainValidator(_duration(timedelta(milliseconds=1))),
    PlainSerializer(units.format_duration, return_type=str),
    WithJsonSchema(_DURATION_SCHEMA),
]
Size = Annotated[
    int,
    PlainValidator(functools.partial(units.parse_size, minimum=1024 * 1024)),
    PlainSerializer(units.format_size, return_type=str),
    WithJsonSchema(
        {"type": ["string", "integer"], "pattern": units.SIZE_PATTERN, "minimum": 1048576}
    ),
]
Cpu = Annotated[
    float,
    PlainValidator(units.parse_cpu),
    WithJsonSchema({"type": ["number", "string"], "pattern": r"^[0-9]+(\.[0-9]+)?m?$"}),
]
_PERCENT_SCHEMA = {
    "anyOf": [
        {"type": "string", "pattern": units.PERCENT_PATTERN},
        {"type": "number", "minimum": 0, "maximum": 100},
    ]
}
PercentField = Annotated[
    units.Percent,
    PlainValidator(units.parse_percent),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(_PERCENT_SCHEMA),
]


def _count(value: object) -> int | units.Percent:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"must not be negative (got {value})")
        return value
    if isinstance(value, str):
        return units.parse_percent(value)
    raise ValueError(
        f"must be a number of instances or a percentage like 25% (got {units.show_value(value)})"
    )


Count = Annotated[
    int | units.Percent,
    PlainValidator(_count),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": units.PERCENT_PATTERN},
            ]
        }
    ),
]

# --- validation and error translation ---------------------------------------------


def validate_document(
    model: type[M], doc: YamlDocument, *, context: Mapping[str, object] | None = None
) -> M:
    """Validate ``doc`` as ``model``; raise ConfigError listing every problem found."""
    try:
        return model.model_validate(doc.data, context=dict(context or {}))
    except ValidationError as exc:
        problems = [_problem(model, doc, error) for error in exc.errors()]
        problems.sort(key=lambda p: (p.line is None, p.line or 0, p.column or 0))
        raise ConfigError(problems) from None


def _written_loc(data: object, loc: KeyPath) -> KeyPath:
    """Cut ``loc`` where the document holds a scalar: a shorthand the model expanded
    (``listen: ADDR`` for a list, ``store: URL`` for a mapping) is reported where written.
    """
    for depth, part in enumerate(loc):
        if isinstance(data, dict):
            if part not in data:
                return loc
            data = data[part]
        elif isinstance(data, list):
            if not isinstance(part, int) or not 0 <= part < len(data):
                return loc
            data = data[part]
        else:
            return loc[:depth]
    return loc


def _problem(model: type[BaseModel], doc: YamlDocument, error: ErrorDetails) -> ConfigProblem:
    loc: KeyPath = tuple(
        part for part in error["loc"] if not (isinstance(part, str) and part.startswith(TAG_PREFIX))
    )
    kind = error["type"]
    if loc and loc[-1] != "[key]" and kind not in ("extra_forbidden", "missing"):
        loc = _written_loc(doc.data, loc)
    if loc and loc[-1] == "[key]":
        loc = loc[:-1]
        message = _message(error, loc[-1] if loc else None)
        return doc.problem(loc, f"not a valid key: {message}", key=True)
    if kind == "extra_forbidden":
        return doc.problem(loc, _unknown_key(model, loc), key=True)
    if kind == "missing":
        return doc.problem(loc, "is required")
    return doc.problem(loc, _message(error, _value_at(doc.data, loc)))


def _value_at(data: object, loc: KeyPath) -> object:
    for part in loc:
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return None
    return data


def _message(error: ErrorDetails, value: object) -> str:
    """Berth's wording of one pydantic error about ``value`` (as the document holds it)."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    got = units.show_value(value)
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])
    simple = {
        "int_type": "must be a whole number",
        "int_parsing": "must be a whole number",
        "int_from_float": "must be a whole number",
        "float_type": "must be a number",
        "float_parsing": "must be a number",
        "bool_type": "must be true or false",
        "bool_parsing": "must be true or false",
        "list_type": "must be a list",
        "tuple_type": "must be a list",
        "dict_type": "must be a mapping of keys to values",
        "mapping_type": "must be a mapping of keys to values",
        "model_type": "must be a mapping of keys to values",
        "model_attributes_type": "must be a mapping of keys to values",
        "path_type": "must be a path",
    }
    if kind in simple:
        return f"{simple[kind]} (got {got})"
    if kind == "string_type":
        hint = "; quote it" if isinstance(value, int | float | bool) else ""
        return f"must be a string (got {got}){hint}"
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        return f"must be one of {_or(choices)} (got {got})"
    bounds = {
        "greater_than_equal": ("at least", "ge"),
        "greater_than": ("more than", "gt"),
        "less_than_equal": ("at most", "le"),
        "less_than": ("less than", "lt"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        return f"must be {words} {ctx.get(key)} (got {got})"
    if kind == "too_short":
        count = ctx.get("min_length", 1)
        return f"must have at least {count} item{'s' if count != 1 else ''}"
    if kind == "too_long":
        count = ctx.get("max_length", 0)
        return f"must have at most {count} item{'s' if count != 1 else ''}"
    return error["msg"]


def _or(words: Iterable[str]) -> str:
    quoted = [f'"{w}"' if w else '""' for w in words]
    if len(quoted) <= 1:
        return "".join(quoted)
    return ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _unknown_key(model: type[BaseModel], loc: KeyPath) -> str:
    allowed = schema_keys_at(model, loc[:-1])
    key = str(loc[-1])
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        return f'unknown key (did you mean "{close[0]}"?)'
    if allowed:
        return f"unknown key (expected one of: {', '.join(sorted(allowed))})"
    return "unknown key"


@functools.cache
def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()


def schema_keys_at(model: type[BaseModel], loc: KeyPath) -> list[str]:
    """The keys the model's JSON schema allows in the mapping at ``loc``."""
    schema = _schema(model)
    defs: dict[str, Any] = schema.get("$defs", {})
    nodes = [schema]
    for part in loc:
        nodes = [child for node in nodes for child in _children(node, part, defs)]
    keys: list[str] = []
    for node in nodes:
        for branch in _branches(node, defs):
            keys.extend(k for k in branch.get("properties", {}) if k not in keys)
    return keys


def _branches(node: dict[str, Any], defs: dict[str, Any]) -> list[dict[str, Any]]:
    if "$ref" in node:
        return _branches(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
    found = [node]
    for union in ("anyOf", "oneOf", "allOf"):
        for option in node.get(union, []):
            found.extend(_branches(option, defs))
    return found


def _children(node: dict[str, Any], part: str | int, defs: dict[str, Any]) -> list[dict[str, Any]]:
    children = []
    for branch in _branches(node, defs):
        if isinstance(part, int) and "items" in branch:
            children.append(branch["items"])
        elif isinstance(part, str) and part in branch.get("properties", {}):
            children.append(branch["properties"][part])
        elif isinstance(branch.get("additionalProperties"), dict):
            children.append(branch["additionalProperties"])
    return children


def json_schema(model: type[BaseModel], title: str, description: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a config model, as written to config/schema/."""
    schema = model.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title,
        "description": description,
        **{k: v for k, v in schema.items() if k not in ("title", "description")},
    }


def render_schema(schema: Mapping[str, Any]) -> str:
    """A schema as the committed file holds it: stable key order, two-space indents."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
