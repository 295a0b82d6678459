"""From a source batch to a normalized batch of a dataset: fields mapped, values canonical.

The result has exactly the dataset schema's properties, in order, with the Arrow types
of its compiled schema. Fields the request type does not carry (inferred data in a
portability export) are left empty and reported, never silently mixed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from engine.datamap.model import PROVENANCE_FOR, Entity, FieldSpec
from engine.normalize import transforms
from engine.normalize.redact import Redactor
from engine.schemas import FILE_FIELDS, DatasetSchema


@dataclass(frozen=True)
class FieldFailure:
    """Values of a field that could not be brought to canonical form (count only)."""

    field: str
    rule: str
    count: int


def excluded_fields(entity: Entity, export_type: str) -> list[FieldSpec]:
    """Mapped fields whose provenance the request type does not carry."""
    allowed = PROVENANCE_FOR[export_type]
    return [f for f in entity.fields if f.source is not None and f.provenance not in allowed]


def normalize_batch(
    batch: pa.RecordBatch,
    entity: Entity,
    schema: DatasetSchema,
    export_type: str,
    redactor: Redactor | None = None,
) -> tuple[pa.RecordBatch, list[FieldFailure]]:
    target = schema.compiled.arrow_schema
    specs = {f.name: f for f in entity.fields}
    skip = {f.name for f in excluded_fields(entity, export_type)}
    n = batch.num_rows
    arrays: list[pa.Array] = []
    failures: list[FieldFailure] = []
    for field in target:
        name = field.name
        spec = specs.get(name)
        if name == "source":
            arr: pa.Array = pa.array([entity.ref] * n, type=pa.string())
        elif entity.files and name in FILE_FIELDS:
            arr = batch.column(name)
        elif spec is None or name in skip:
            arr = pa.nulls(n, type=field.type)
        elif spec.source is None:
            arr = pa.array([spec.value] * n)
        else:
            arr, bad, rule = _convert(batch, spec, redactor)
            if bad:
                failures.append(FieldFailure(name, rule, bad))
        try:
            arr = arr.cast(field.type) if arr.type != field.type else arr
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            failures.append(FieldFailure(name, f"type:{field.type}", n))
            arr = pa.nulls(n, type=field.type)
        arrays.append(arr)
    return pa.RecordBatch.from_arrays(arrays, schema=target), failures


def _convert(
    batch: pa.RecordBatch, spec: FieldSpec, redactor: Redactor | None
) -> tuple[pa.Array, int, str]:
    src = batch.column(spec.source)
    if isinstance(src, pa.ChunkedArray):
        src = src.combine_chunks()
    t = spec.transform
    if t is None:
        return src, 0, "type"
    if t == "money_minor":
        arr, bad = transforms.money_minor(src, batch.column(spec.currency_from))
    elif t == "redact_others":
        text = pc.cast(src, pa.string())
        arr, bad = (redactor.redact(text) if redactor else text), 0
    else:
        arr, bad = transforms.UNARY[t](src)
    return arr, bad, f"transform:{t}"
