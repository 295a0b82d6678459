"""A dataset JSON Schema (draft 2020-12) compiled into a plan of vectorized checks.

Only the flat-record subset the dataset schemas use is accepted; any other keyword
raises ``UnsupportedSchema`` naming the keyword and its location, so a check is never
skipped silently. Regular expressions are translated to RE2 and verified once, here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from engine.normalize.formats import FORMATS
from engine.normalize.re2_translate import RegexUnsupported, re2_pattern

DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "$comment",
        "examples",
        "default",
        "deprecated",
        "readOnly",
        "writeOnly",
    }
)
ROOT_KEYWORDS = ANNOTATIONS | {
    "$schema",
    "$id",
    "type",
    "properties",
    "required",
    "additionalProperties",
    "allOf",
}
VALUE_KEYWORDS = (
    "type",
    "enum",
    "const",
    "pattern",
    "format",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
)
BOUND_KEYWORDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
JSON_TYPES = {
    "string": pa.string(),
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
}
Scalar = str | int | float | bool | None


class UnsupportedSchema(ValueError):
    """A keyword (or keyword value) the vectorized validator cannot check exactly."""

    def __init__(self, keyword: str, path: str, reason: str = "not supported") -> None:
        self.keyword = keyword
        self.path = path
        super().__init__(f"keyword {keyword!r} at {path!r}: {reason}")


@dataclass(frozen=True)
class PropertyRules:
    """The checks one (sub)schema puts on one property."""

    name: str
    types: frozenset[str] | None = None  # None: no "type" keyword
    enum: tuple[Scalar, ...] | None = None
    const: tuple[Scalar] | None = None  # a 1-tuple, so that const null is expressible
    pattern: str | None = None  # the RE2 translation
    format: str | None = None
    min_length: int | None = None
    max_length: int | None = None
    bounds: tuple[tuple[str, int | float], ...] = ()
    pattern_source: str | None = None  # as written: jsonschema runs it with Python's re

    @property
    def nullable(self) -> bool:
        return self.types is None or "null" in self.types


@dataclass(frozen=True)
class Conditional:
    """``allOf`` item: if every ``when`` property is among its values, ``then`` applies."""

    index: int
    when: tuple[tuple[str, tuple[Scalar, ...]], ...]
    when_required: tuple[str, ...]
    then_required: tuple[str, ...]
    then_properties: tuple[PropertyRules, ...]


@dataclass(frozen=True)
class SchemaPlan:
    schema_id: str
    properties: tuple[PropertyRules, ...]
    required: tuple[str, ...]
    closed: bool  # additionalProperties: false
    conditionals: tuple[Conditional, ...]
    arrow_schema: pa.Schema


def compile_schema(schema: dict[str, Any]) -> SchemaPlan:
    if not isinstance(schema, dict):
        raise UnsupportedSchema("(schema)", "#", "the schema must be an object")
    _only(schema, ROOT_KEYWORDS, "#")
    if schema.get("$schema", DRAFT_2020_12) != DRAFT_2020_12:
        raise UnsupportedSchema("$schema", "#", f"only {DRAFT_2020_12} is supported")
    if schema.get("type", "object") != "object":
        raise UnsupportedSchema("type", "#", "the root must be of type 'object'")
    raw = schema.get("properties", {})
    if not isinstance(raw, dict):
        raise UnsupportedSchema("properties", "#", "must be an object")
    props = tuple(
        _property(name, sub, f"#/properties/{_escape(name)}", top=True) for name, sub in raw.items()
    )
    names = set(raw)
    required = _names(schema.get("required", []), names, "required", "#")
    closed = schema.get("additionalProperties", True)
    if not isinstance(closed, bool):
        raise UnsupportedSchema("additionalProperties", "#", "only true or false is supported")
    conditionals = tuple(
        _conditional(i, item, names)
        for i, item in enumerate(_list(schema.get("allOf", []), "allOf", "#"))
    )
    fields = [pa.field(p.name, _arrow_type(p), nullable=p.nullable) for p in props]
    return SchemaPlan(
        str(schema.get("$id", "")), props, required, not closed, conditionals, pa.schema(fields)
    )


def _escape(name: str) -> str:
    """A property name as a JSON Pointer token."""
    return name.replace("~", "~0").replace("/", "~1")


def _only(sub: dict[str, Any], allowed: frozenset[str] | set[str], path: str) -> None:
    for key in sub:
        if key not in allowed:
            raise UnsupportedSchema(key, path, "not supported by the vectorized validator")


def _list(value: Any, keyword: str, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise UnsupportedSchema(keyword, path, "must be an array")
    return value


def _names(value: Any, known: set[str], keyword: str, path: str) -> tuple[str, ...]:
    items = _list(value, keyword, path)
    for item in items:
        if not isinstance(item, str) or item not in known:
            raise UnsupportedSchema(keyword, path, f"{item!r} is not a property of the schema")
    return tuple(dict.fromkeys(items))


def _property(name: str, sub: Any, path: str, top: bool) -> PropertyRules:
    if not isinstance(sub, dict):
        raise UnsupportedSchema("(subschema)", path, "boolean subschemas are not supported")
    _only(sub, ANNOTATIONS | set(VALUE_KEYWORDS), path)
    types = _types(sub, path, top)
    enum = None
    if "enum" in sub:
        enum = tuple(_scalar(v, "enum", path) for v in _list(sub["enum"], "enum", path))
    const = (_scalar(sub["const"], "const", path),) if "const" in sub else None
    pattern = None
    if "pattern" in sub:
        if not isinstance(sub["pattern"], str):
            raise UnsupportedSchema("pattern", path, "must be a string")
        try:
            pattern = re2_pattern(sub["pattern"])
        except RegexUnsupported as exc:
            raise UnsupportedSchema("pattern", path, str(exc)) from None
    fmt = sub.get("format")
    if fmt is not None and fmt not in FORMATS:
        raise UnsupportedSchema(
            "format",
            path,
            f"format {fmt!r} is not supported (supported: {', '.join(sorted(FORMATS))})",
        )
    bounds = tuple((k, _number(sub[k], k, path)) for k in BOUND_KEYWORDS if k in sub)
    return PropertyRules(
        name,
        types,
        enum,
        const,
        pattern,
        fmt,
        _length(sub, "minLength", path),
        _length(sub, "maxLength", path),
        bounds,
        sub["pattern"] if pattern is not None else None,
    )


def _types(sub: dict[str, Any], path: str, top: bool) -> frozenset[str] | None:
    if "type" not in sub:
        if top:
            raise UnsupportedSchema("type", path, "every property needs a type")
        return None
    raw = sub["type"]
    listed = [raw] if isinstance(raw, str) else _list(raw, "type", path)
    if not listed or any(t not in (*JSON_TYPES, "null") for t in listed):
        raise UnsupportedSchema(
            "type",
            path,
            "only string, integer, number, boolean and null (flat records) are supported",
        )
    types = frozenset(listed)
    if top and len(types - {"null"}) != 1:
        raise UnsupportedSchema(
            "type", path, "exactly one non-null type is needed for the Arrow column"
        )
    return types


def _arrow_type(rules: PropertyRules) -> pa.DataType:
    assert rules.types is not None
    (json_type,) = rules.types - {"null"}
    return JSON_TYPES[json_type]


def _scalar(value: Any, keyword: str, path: str) -> Scalar:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    raise UnsupportedSchema(keyword, path, "only string, number, boolean and null values")


def _number(value: Any, keyword: str, path: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UnsupportedSchema(keyword, path, "must be a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise UnsupportedSchema(keyword, path, "must be finite")
    return value


def _length(sub: dict[str, Any], keyword: str, path: str) -> int | None:
    if keyword not in sub:
        return None
    value = sub[keyword]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UnsupportedSchema(keyword, path, "must be a non-negative integer")
    return value


def _conditional(index: int, item: Any, names: set[str]) -> Conditional:
    path = f"#/allOf/{index}"
    if not isinstance(item, dict) or "if" not in item or "then" not in item:
        raise UnsupportedSchema("allOf", path, "only items of the form {if, then} are supported")
    _only(item, ANNOTATIONS | {"if", "then"}, path)
    cond, then = item["if"], item["then"]
    if not isinstance(cond, dict) or not isinstance(then, dict):
        raise UnsupportedSchema("if", path, "if and then must be objects")
    _only(cond, ANNOTATIONS | {"properties", "required"}, f"{path}/if")
    when: list[tuple[str, tuple[Scalar, ...]]] = []
    for name, sub in _object(cond.get("properties", {}), f"{path}/if").items():
        sub_path = f"{path}/if/properties/{_escape(name)}"
        if name not in names:
            raise UnsupportedSchema("properties", f"{path}/if", f"{name!r} is not a property")
        rules = _property(name, sub, sub_path, top=False)
        if rules.const is not None and set(sub) - ANNOTATIONS == {"const"}:
            when.append((name, rules.const))
        elif rules.enum is not None and set(sub) - ANNOTATIONS == {"enum"}:
            when.append((name, rules.enum))
        else:
            raise UnsupportedSchema("if", sub_path, "conditions may only use const or enum")
    when_required = _names(cond.get("required", []), names, "required", f"{path}/if")
    _only(then, ANNOTATIONS | {"properties", "required"}, f"{path}/then")
    then_props = []
    for name, sub in _object(then.get("properties", {}), f"{path}/then").items():
        if name not in names:
            raise UnsupportedSchema("properties", f"{path}/then", f"{name!r} is not a property")
        sub_path = f"{path}/then/properties/{_escape(name)}"
        then_props.append(_property(name, sub, sub_path, top=False))
    then_required = _names(then.get("required", []), names, "required", f"{path}/then")
    return Conditional(index, tuple(when), when_required, then_required, tuple(then_props))


def _object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UnsupportedSchema("properties", path, "must be an object")
    return value
