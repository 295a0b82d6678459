"""The Frictionless Data Package descriptor (``datapackage.json``) of an export.

Data Package v2 (``$schema``), as frictionless 5.x reads it. Each data file is a
``table`` resource whose Table Schema is derived from the dataset's flat JSON Schema;
the JSON Schema file itself is referenced by the custom property ``jsonSchema``.

What frictionless 5 checks, and what that means here:

* ``hash`` (``sha256:<hex>``) and ``bytes`` are only measured for CSV (it reads CSV
  through its counting byte stream; JSON goes through ijson and Parquet through
  pyarrow, which bypass it). A declared ``bytes`` it cannot measure is reported as a
  ``byte-count`` error, so ``bytes`` is given for CSV only; ``hash`` is given for
  every file (verified for CSV, unchecked by frictionless for JSON and Parquet).
* date-time strings ``YYYY-MM-DDTHH:MM:SSZ`` are its ``datetime`` type with the
  default format (ISO 8601 via dateutil); dates are ``date`` (``YYYY-MM-DD``).
* Its ``pattern`` is implicitly anchored and only allowed on ``string`` fields;
  JSON Schema patterns are unanchored searches, so they are converted.
* ``missingValues`` ``[""]``: in CSV an empty field is null. JSON and Parquet carry
  real nulls, so their resources declare ``[]`` and an empty string stays a string.
* String formats other than date and date-time (``email`` ...) are not carried over:
  frictionless checks them more strictly than the JSON Schema validator the pipeline
  uses. The JSON Schema, referenced by ``jsonSchema``, keeps them.
"""

from __future__ import annotations

import re
from typing import Any

from exporters.formats import FORMATS

DATAPACKAGE_SCHEMA = "https://datapackage.org/profiles/2.0/datapackage.json"
NAME_PATTERN = re.compile(r"^[-a-z0-9._/]+$")  # frictionless / Data Package v1 names
TEXT_FORMATS = frozenset({"json", "csv"})
BYTES_CHECKED = frozenset({"csv"})  # formats whose ``bytes`` frictionless can measure

_SIMPLE_TYPES = {
    "string": "string",
    "integer": "integer",
    "number": "number",
    "boolean": "boolean",
    "array": "array",
    "object": "object",
}
_STRING_FORMATS = {"date-time": "datetime", "date": "date"}
_NUMERIC = {"integer", "number"}


def _field_type(prop: dict[str, Any]) -> tuple[str, bool]:
    """(Table Schema type, nullable) of a JSON Schema property."""
    declared = prop.get("type")
    types = [declared] if isinstance(declared, str) else list(declared or [])
    nullable = "null" in types or not types
    concrete = [t for t in types if t != "null"]
    if len(concrete) != 1:
        return "any", nullable
    kind = _SIMPLE_TYPES.get(concrete[0], "any")
    if kind == "string":
        kind = _STRING_FORMATS.get(prop.get("format", ""), "string")
    return kind, nullable


def frictionless_pattern(pattern: str) -> str:
    """A JSON Schema pattern (unanchored search) as an implicitly anchored pattern.

    ``^X$`` (the usual form) becomes ``X``; anything else is wrapped as ``.*(?:P).*``,
    which under implicit anchoring matches exactly where a search for ``P`` would.
    """
    body = pattern[1:-1]
    trailing = len(body) - len(body.rstrip("\\"))
    if (
        pattern.startswith("^")
        and pattern.endswith("$")
        and trailing % 2 == 0
        and "|" not in body
        and body
    ):
        return body
    return f".*(?:{pattern}).*"


def _constraints(prop: dict[str, Any], kind: str, required: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if required:
        out["required"] = True
    enum = prop.get("enum", [prop["const"]] if "const" in prop else None)
    if enum is not None:
        out["enum"] = [v for v in enum if v is not None]
    if kind == "string":
        if "pattern" in prop:
            out["pattern"] = frictionless_pattern(prop["pattern"])
        for key in ("minLength", "maxLength"):
            if key in prop:
                out[key] = prop[key]
    if kind in _NUMERIC:
        for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if key in prop:
                out[key] = prop[key]
    return out


def table_schema(json_schema: dict[str, Any]) -> dict[str, Any]:
    """Frictionless Table Schema of a flat JSON Schema (fields in property order)."""
    required = set(json_schema.get("required", []))
    fields = []
    for name, prop in json_schema.get("properties", {}).items():
        kind, nullable = _field_type(prop)
        field: dict[str, Any] = {"name": name, "type": kind}
        for key in ("title", "description"):
            if key in prop:
                field[key] = prop[key]
        constraints = _constraints(prop, kind, name in required and not nullable)
        if constraints:
            field["constraints"] = constraints
        fields.append(field)
    return {"fields": fields, "missingValues": [""]}


_SCHEMAS: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}


def _table_schema_of(json_schema: dict[str, Any]) -> dict[str, Any]:
    """``table_schema`` of a schema document, worked out once per document (a batch
    export asks for the same few thousands of times); a fresh top level each call."""
    hit = _SCHEMAS.get(id(json_schema))
    if hit is None or hit[0] is not json_schema:
        hit = (json_schema, table_schema(json_schema))
        _SCHEMAS[id(json_schema)] = hit
    return dict(hit[1])


def _check_name(name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise ValueError(f"{name!r}: names are lower-case letters, digits and - _ . /")


def resource(
    *,
    name: str,
    path: str,
    fmt: str,
    bytes_: int,
    sha256: str,
    json_schema: dict[str, Any],
    json_schema_path: str,
    title: str,
    description: str,
) -> dict[str, Any]:
    """A tabular Data Package resource for one data file of the archive."""
    _check_name(name)
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}")
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ValueError("sha256 must be 64 lower-case hex digits")
    schema = _table_schema_of(json_schema)
    if fmt != "csv":  # real nulls: an empty string is a value, not a missing one
        schema["missingValues"] = []
    res: dict[str, Any] = {
        "name": name,
        "type": "table",
        "path": path,
        "format": fmt,
        "mediatype": FORMATS[fmt].mediatype,
    }
    if fmt in TEXT_FORMATS:
        res["encoding"] = "utf-8"
    if fmt in BYTES_CHECKED:
        res["bytes"] = bytes_
    res["hash"] = f"sha256:{sha256}"
    res.update(
        {
            "title": title,
            "description": description,
            "schema": schema,
            "jsonSchema": json_schema_path,
        }
    )
    return res


def descriptor(
    *, name: str, title: str, created: str, resources: list[dict[str, Any]], description: str = ""
) -> dict[str, Any]:
    """The package descriptor: Data Package v2, resources in the given order."""
    _check_name(name)
    desc: dict[str, Any] = {"$schema": DATAPACKAGE_SCHEMA, "name": name, "title": title}
    if description:
        desc["description"] = description
    desc["created"] = created
    desc["resources"] = resources
    return desc
