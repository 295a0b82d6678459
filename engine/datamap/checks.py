"""Checks of a data map's meaning, beyond its JSON Schema: fields, keys, cycles."""

from __future__ import annotations

import re

from engine.datamap.errors import Problem
from engine.datamap.graph import CycleError, entity_order
from engine.datamap.model import DataMap, Entity
from engine.schemas import ENGINE_FIELDS, FILE_FIELDS, SchemaRegistry

_REDUCING = frozenset({"is_present"})
_SECRET_IN_URL = re.compile(r"://[^/@:\s]+:[^/@\s$]+@")


def check_datamap(dm: DataMap, schemas: SchemaRegistry) -> list[Problem]:
    """Every problem found in the data map's meaning (empty when it is sound)."""
    problems: list[Problem] = []
    provided_keys = {spec.key for spec in dm.identities.values()}
    for e in dm.entities():
        provided_keys.update(e.yields)
    for system in dm.systems:
        base = f"systems.{system.name}"
        for opt, value in system.connection.items():
            if isinstance(value, str) and _SECRET_IN_URL.search(value):
                problems.append(
                    Problem(
                        f"{base}.connection.{opt}",
                        "holds a password in clear text; read it from an environment variable "
                        "with ${NAME} instead",
                    )
                )
        for e in system.entities:
            problems.extend(_check_entity(e, f"{base}.entities.{e.name}", schemas, provided_keys))
    problems.extend(_check_redaction(dm, schemas))
    problems.extend(_check_organisations(dm))
    try:
        entity_order(dm)
    except CycleError as err:
        problems.append(Problem("systems", str(err)))
    return problems


def _check_entity(
    e: Entity, path: str, schemas: SchemaRegistry, provided_keys: set[str]
) -> list[Problem]:
    out: list[Problem] = []
    kind_needs = {"table": "table", "path": "path", "endpoint": "endpoint", "prefix": "prefix"}
    if not e.directory_only and not any(k in e.options for k in kind_needs):
        out.append(Problem(path, "names no table, path, endpoint or prefix to read"))
    for i, m in enumerate(e.match):
        if m.key not in provided_keys:
            out.append(
                Problem(
                    f"{path}.match.{i}.key",
                    f"key {m.key!r} is given by no request identity and yielded by no entity",
                )
            )
    if e.directory_only or e.dataset is None:
        return out
    if e.dataset not in schemas:
        out.append(
            Problem(
                f"{path}.dataset",
                f"no schema for dataset {e.dataset!r} in "
                f"{schemas.folder} (known: {', '.join(schemas.names())})",
            )
        )
        return out
    schema = schemas[e.dataset]
    props = schema.properties
    mapped = {f.name for f in e.fields}
    for f in e.fields:
        fpath = f"{path}.fields.{f.name}"
        if f.name not in props:
            out.append(
                Problem(
                    fpath,
                    f"dataset {e.dataset!r} (schema {schema.file_name}) has no field {f.name!r}",
                )
            )
            continue
        if f.name in ENGINE_FIELDS or (e.files and f.name in FILE_FIELDS):
            out.append(Problem(fpath, f"field {f.name!r} is filled by the engine; remove it"))
        if f.provenance == "inferred" and not schema.nullable(f.name):
            out.append(
                Problem(
                    fpath,
                    f"inferred field {f.name!r} must be nullable in "
                    f"{schema.file_name}: portability exports leave it empty",
                )
            )
        if f.transform == "money_minor" and not f.currency_from:
            out.append(Problem(fpath, "transform money_minor needs currency_from"))
    engine_filled = ENGINE_FIELDS | (FILE_FIELDS if e.files else frozenset())
    for name in props:
        if name not in mapped and name not in engine_filled and not schema.nullable(name):
            out.append(
                Problem(
                    f"{path}.fields",
                    f"required field {name!r} of dataset {e.dataset!r} is not filled",
                )
            )
    # A withheld column may be matched on or reduced to "is it set"; never exported as it is.
    exported = {f.source for f in e.fields if f.source and f.transform not in _REDUCING}
    exported |= {f.currency_from for f in e.fields if f.currency_from}
    for i, w in enumerate(e.withheld):
        if w.column in exported:
            out.append(
                Problem(
                    f"{path}.withheld.{i}.column",
                    f"column {w.column!r} is withheld but also exported by a field",
                )
            )
    return out


def _check_redaction(dm: DataMap, schemas: SchemaRegistry) -> list[Problem]:
    out: list[Problem] = []
    for i, (dataset, field) in enumerate(dm.redaction.own_values):
        if dataset not in schemas or field not in schemas[dataset].properties:
            out.append(
                Problem(f"redaction.own_values.{i}", f"dataset {dataset!r} has no field {field!r}")
            )
    if dm.redaction.name_directory:
        system, entity, _ = dm.redaction.name_directory
        try:
            dm.entity(system, entity)
        except KeyError:
            out.append(Problem("redaction.name_directory", f"no entity {system}.{entity}"))
    uses_redaction = any(f.transform == "redact_others" for e in dm.entities() for f in e.fields)
    if uses_redaction and not dm.redaction.own_values:
        out.append(
            Problem(
                "redaction",
                "fields use redact_others but redaction.own_values "
                "names none of the subject's own values",
            )
        )
    return out


def _check_organisations(dm: DataMap) -> list[Problem]:
    if dm.organisations is None:
        return []
    out: list[Problem] = []
    for part, (system, entity, *_) in (
        ("members", dm.organisations.members),
        ("identity", dm.organisations.identity),
    ):
        try:
            dm.entity(system, entity)
        except KeyError:
            out.append(Problem(f"organisations.{part}", f"no entity {system}.{entity}"))
    kind = dm.organisations.identity[4]
    if kind not in dm.identities:
        out.append(Problem("organisations.identity.type", f"no identity type {kind!r}"))
    return out
