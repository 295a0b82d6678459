"""Vectorized JSON Schema (draft 2020-12) validation of normalized Arrow batches.

``CompiledSchema.from_schema`` turns a dataset schema into pyarrow.compute checks run
on whole columns (over 100 times faster than jsonschema record by record); the verdicts
are jsonschema's (``Draft202012Validator`` with ``FormatChecker``), record by record,
which ``tests/test_validate.py`` checks differentially.

What a record is
    The record jsonschema would see is the row as ``batch.to_pylist()`` gives it, which
    is what the JSON writer delivers: every column is a property, and a null value is
    JSON ``null``, present. Hence:

    * a null in a field whose ``type`` does not list ``"null"`` breaks ``type`` (whether
      or not the field is required): the property is there, its value is null;
    * ``required`` (and ``if/then:required``) breaks only when the column is missing
      from the batch: a missing column is an absent property, for every record;
    * ``enum`` and ``const`` test null like any value: a nullable field whose ``enum``
      does not list ``null`` rejects null (as jsonschema does);
    * ``pattern``, ``format``, ``minLength``/``maxLength`` (code points) test strings
      only, the bounds test numbers only; null passes them;
    * a column the schema does not know breaks ``additionalProperties`` (``false``) for
      every record.

    Column types are judged as jsonschema judges the Python values: int columns are
    integers, float columns numbers (and integers where integral, as draft 2020-12
    wants for 1.0), string columns strings, bool columns booleans, a null-type column
    is all null. Decimal, float16, temporal, binary and nested columns break ``type``
    for every non-null value (``normalize`` casts to ``arrow_schema`` first).

Conditionals
    ``allOf: [{if: {properties: {f: {const: X}}, required: [f]}, then: {...}}]``: the
    condition holds where the ``f`` value equals X (``required`` in ``if`` needs the
    column); ``then`` rules are reported as ``if/then:<rule>`` for those records only.

Reports name the field, the rule, a count and the first row, never a value; so does
``explain``, which words jsonschema's errors for one record without the instance.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from jsonschema import Draft202012Validator, FormatChecker

from engine.normalize.checks import (
    ArrayLike,
    Kind,
    Mask,
    m_and,
    m_or,
    member_of,
    prepare,
    property_failures,
)
from engine.normalize.schema_compile import (
    Conditional,
    SchemaPlan,
    UnsupportedSchema,
    compile_schema,
)

__all__ = ["CompiledSchema", "UnsupportedSchema", "Violation", "explain", "load_schema"]

Batch = pa.RecordBatch | pa.Table


@dataclass(frozen=True)
class Violation:
    """One rule broken in a batch: where, which rule, how often; never the value."""

    field: str  # the property name; "" for record-level rules (additionalProperties)
    rule: str  # the keyword: "type", "pattern", "format:date-time", "if/then:required"...
    count: int  # records of the batch breaking it
    first_index: int  # row of the first of them


class CompiledSchema:
    """A dataset schema as vectorized checks over Arrow batches."""

    def __init__(self, plan: SchemaPlan) -> None:
        self._plan = plan
        self._known = frozenset(p.name for p in plan.properties)

    @classmethod
    def from_schema(cls, schema: dict[str, Any]) -> CompiledSchema:
        """Compile; raises ``UnsupportedSchema`` for anything not checked exactly."""
        return cls(compile_schema(schema))

    @property
    def arrow_schema(self) -> pa.Schema:
        return self._plan.arrow_schema

    @property
    def schema_id(self) -> str:
        return self._plan.schema_id

    def validate(self, batch: Batch) -> list[Violation]:
        """The rules broken in the batch, in schema order (empty when every record passes)."""
        n = batch.num_rows
        out = []
        for (field, rule), mask in self.failure_masks(batch).items():
            count, first = _count(mask, n)
            if count:
                out.append(Violation(field, rule, count, first))
        return out

    def invalid_mask(self, batch: Batch) -> pa.BooleanArray:
        """True for every record that breaks at least one rule."""
        acc: Mask = False
        for mask in self.failure_masks(batch).values():
            acc = m_or(acc, mask)
        if isinstance(acc, bool):
            return pa.repeat(pa.scalar(acc, pa.bool_()), batch.num_rows)
        return acc.combine_chunks() if isinstance(acc, pa.ChunkedArray) else acc

    def failure_masks(self, batch: Batch) -> dict[tuple[str, str], Mask]:
        """(field, rule) -> True where a record breaks it (a ``bool`` for all records)."""
        columns = _columns(batch)
        plan = self._plan
        prepared = {p.name: prepare(columns[p.name]) for p in plan.properties if p.name in columns}
        out: dict[tuple[str, str], Mask] = {}

        def add(field: str, rule: str, mask: Mask) -> None:
            if mask is not False:
                out[field, rule] = m_or(out.get((field, rule), False), mask)

        required = set(plan.required)
        for rules in plan.properties:
            if rules.name not in prepared:
                if rules.name in required:
                    add(rules.name, "required", True)
                continue
            for rule, mask in property_failures(rules, *prepared[rules.name]):
                add(rules.name, rule, mask)
        if plan.closed and any(name not in self._known for name in columns):
            add("", "additionalProperties", True)
        for cond in plan.conditionals:
            applies = _condition(cond, prepared)
            if applies is False:
                continue
            for name in cond.then_required:
                if name not in prepared:
                    add(name, "if/then:required", applies)
            for rules in cond.then_properties:
                if rules.name in prepared:
                    for rule, mask in property_failures(rules, *prepared[rules.name]):
                        add(rules.name, f"if/then:{rule}", m_and(applies, mask))
        return out


def _columns(batch: Batch) -> dict[str, ArrayLike]:
    names = batch.schema.names
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ValueError(f"batch has column {dup!r} more than once")
    return {name: batch.column(i) for i, name in enumerate(names)}


def _condition(cond: Conditional, prepared: dict[str, tuple[ArrayLike, Kind]]) -> Mask:
    if any(name not in prepared for name in cond.when_required):
        return False
    applies: Mask = True
    for name, values in cond.when:
        if name in prepared:  # an absent property satisfies "properties"
            applies = m_and(applies, member_of(*prepared[name], values))
    return applies


def _count(mask: Mask, n: int) -> tuple[int, int]:
    if isinstance(mask, bool):
        return (n, 0) if mask and n else (0, -1)
    count = int(pc.sum(mask).as_py() or 0)
    return count, (int(pc.index(mask, True).as_py()) if count else -1)


def load_schema(path: str | os.PathLike[str]) -> CompiledSchema:
    """Compile the JSON Schema stored in a file."""
    with open(path, encoding="utf-8") as fh:
        return CompiledSchema.from_schema(json.load(fh))


def explain(schema: dict[str, Any], record: dict[str, Any]) -> list[str]:
    """One readable line per jsonschema error for ``record``, naming field and rule only.

    jsonschema's own ``error.message`` quotes the instance (personal data), so it is
    never used: the line is built from the error's path, keyword and schema value.
    """
    validator = Draft202012Validator(schema, format_checker=FormatChecker())
    missing: dict[tuple[Any, ...], Iterator[str]] = {}
    lines = []
    for error in validator.iter_errors(record):
        where = list(error.schema_path)
        suffix = (
            f" (if/then of allOf/{where[1]})"
            if len(where) >= 3 and where[0] == "allOf" and where[2] == "then"
            else ""
        )
        keyword, value = str(error.validator), error.validator_value
        if keyword == "required" and isinstance(error.instance, dict):
            names = missing.setdefault(
                tuple(where), iter([p for p in value if p not in error.instance])
            )
            lines.append(f"field {next(names, '?')!r}: required property missing{suffix}")
        elif keyword == "additionalProperties" and isinstance(error.instance, dict):
            known = schema.get("properties", {})
            extra = ", ".join(repr(k) for k in sorted(map(str, error.instance)) if k not in known)
            lines.append(f"record: additionalProperties false: unexpected {extra}{suffix}")
        else:
            field = f"field {error.path[0]!r}" if error.path else "record"
            lines.append(f"{field}: {keyword} {value!r} not met{suffix}")
    return lines
