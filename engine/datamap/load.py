"""Reading the data map: YAML, its JSON Schema, then the checks of its meaning."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from engine.datamap.checks import check_datamap
from engine.datamap.errors import ConfigError, DataMapError, Problem
from engine.datamap.model import (
    DataMap,
    Entity,
    FieldSpec,
    IdentitySpec,
    Match,
    OrganisationSpec,
    RedactionSpec,
    System,
    Withheld,
)
from engine.datamap.yamlpos import line_index, nearest_line
from engine.schemas import DATAMAP_SCHEMA, SchemaRegistry, default_registry

DEFAULT_DATAMAP = Path(__file__).resolve().parents[2] / "config" / "datamap.yaml"
_ENTITY_KEYS = {
    "dataset",
    "match",
    "yields",
    "fields",
    "withheld",
    "primary_key",
    "files",
    "directory_only",
}


def load_datamap(
    path: Path | str = DEFAULT_DATAMAP, schemas: SchemaRegistry | None = None
) -> DataMap:
    """Load and check a data map; raise DataMapError naming file, path and why."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise DataMapError(path, [Problem("", f"cannot be read: {err.strerror}")]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark else None
        why = f"is not valid YAML: {getattr(err, 'problem', None) or err}"
        raise DataMapError(path, [Problem("", why, line)]) from None
    lines = line_index(text)
    validator = jsonschema.Draft202012Validator(json.loads(DATAMAP_SCHEMA.read_text()))
    errors = sorted(validator.iter_errors(raw), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        problems = []
        for err in errors:
            # best_match descends into oneOf/anyOf for the most useful message
            err = jsonschema.exceptions.best_match([err])
            p = ".".join(str(x) for x in err.absolute_path)
            problems.append(Problem(p, err.message, nearest_line(lines, p)))
        raise DataMapError(path, problems)
    dm = _build(path, raw)
    problems = check_datamap(dm, schemas or default_registry())
    if problems:
        raise DataMapError(
            path, [Problem(p.path, p.why, nearest_line(lines, p.path)) for p in problems]
        )
    return dm


def _build(path: Path, raw: dict[str, Any]) -> DataMap:
    identities = {
        t: IdentitySpec(t, spec["key"], spec.get("normalize"))
        for t, spec in raw["identities"].items()
    }
    systems = []
    for sname, s in raw["systems"].items():
        entities = tuple(_entity(sname, ename, e) for ename, e in s["entities"].items())
        systems.append(
            System(
                sname,
                s["kind"],
                s.get("title", sname),
                dict(s["connection"]),
                entities,
                s.get("source_note"),
            )
        )
    red = raw.get("redaction") or {}
    nd = red.get("name_directory")
    redaction = RedactionSpec(
        tuple((o["dataset"], o["field"]) for o in red.get("own_values", [])),
        (nd["system"], nd["entity"], nd["column"]) if nd else None,
    )
    orgs = raw.get("organisations")
    organisations = (
        OrganisationSpec(
            tuple(orgs["members"][k] for k in ("system", "entity", "column", "yields")),  # type: ignore[arg-type]
            tuple(orgs["identity"][k] for k in ("system", "entity", "column", "value", "type")),  # type: ignore[arg-type]
        )
        if orgs
        else None
    )
    version = str(raw["datamap_version"])
    return DataMap(path, version, identities, tuple(systems), redaction, organisations)


def _entity(system: str, name: str, e: dict[str, Any]) -> Entity:
    fields = []
    for fname, f in (e.get("fields") or {}).items():
        if "value" in f:
            fields.append(FieldSpec(fname, None, "observed", value=f["value"]))
        else:
            fields.append(
                FieldSpec(
                    fname, f["from"], f["provenance"], f.get("transform"), f.get("currency_from")
                )
            )
    return Entity(
        system=system,
        name=name,
        options={k: v for k, v in e.items() if k not in _ENTITY_KEYS},
        dataset=e.get("dataset"),
        match=tuple(
            Match(m["key"], m["column"], bool(m.get("casefold"))) for m in e.get("match", [])
        ),
        yields=dict(e.get("yields") or {}),
        fields=tuple(fields),
        withheld=tuple(
            Withheld(w["column"], " ".join(w["reason"].split())) for w in e.get("withheld", [])
        ),
        primary_key=e.get("primary_key"),
        files=bool(e.get("files")),
        directory_only=bool(e.get("directory_only")),
    )


_VAR = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")


def resolve_connection(system: System, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A system's connection options with ``${NAME}`` and ``*_env`` read from the environment.

    ``token_env: NAME`` becomes ``token`` (the secret) beside ``token_env`` (its name, for
    messages). A missing variable raises ConfigError naming it and the system.
    """
    env = os.environ if env is None else env
    out: dict[str, Any] = {}
    for key, value in system.connection.items():
        if isinstance(value, str):
            missing = [v for v in _VAR.findall(value) if v not in env]
            if missing:
                raise ConfigError(
                    f"source {system.name!r}: environment variable {missing[0]} "
                    f"(used in connection.{key}) is not set"
                )
            value = _VAR.sub(lambda m: env[m.group(1)], value)
        out[key] = value
        if key.endswith("_env") and isinstance(value, str):
            if value not in env:
                raise ConfigError(
                    f"source {system.name!r}: environment variable {value} "
                    f"(named by connection.{key}) is not set"
                )
            out[key[: -len("_env")]] = env[value]
    return out
