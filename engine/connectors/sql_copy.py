"""Bulk reads from PostgreSQL with ``COPY (SELECT ...) TO STDOUT``, parsed by Arrow's CSV reader.

For many subjects at once (a bulk export, the benchmark) this is faster than
:meth:`SqlConnector.fetch`: rows never become Python objects. Same query, same lookup
semantics, same Arrow types (from the reflected column types). ``COPY`` takes no
server-side parameters, so psycopg binds the array of values client-side, as a quoted
literal; nothing is interpolated by hand.

PostgreSQL sends one CopyData message per row, so the output is cut into segments of
whole rows (about ``segment_bytes`` each), and each segment is parsed in memory by Arrow's
multi-threaded CSV reader: memory stays bounded and psycopg is only used by this thread.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.csv as pcsv

from engine.connectors.base import Lookup, SourceError
from engine.connectors.sql import SqlConnector

SEGMENT_BYTES = 16 << 20
_CSV_TYPES = (
    pa.types.is_string,
    pa.types.is_integer,
    pa.types.is_floating,
    pa.types.is_decimal,
    pa.types.is_boolean,
    pa.types.is_date,
    pa.types.is_timestamp,
)


def copy_batches(
    conn: SqlConnector,
    entity: Mapping[str, Any],
    lookup: Lookup,
    columns: Sequence[str],
    *,
    segment_bytes: int = SEGMENT_BYTES,
) -> Iterator[pa.RecordBatch]:
    """Like ``conn.fetch`` (PostgreSQL only), through ``COPY ... TO STDOUT (FORMAT csv)``."""
    if not conn.is_postgresql:
        raise SourceError(conn.name, "COPY bulk reads need PostgreSQL")
    schema, table, label, values = conn.prepare(entity, lookup, columns)
    if not values:
        return iter(())
    return _copy(conn, schema, table, label, lookup, list(columns), values, segment_bytes)


def _segments(blocks: Iterator[Any], size: int) -> Iterator[bytearray]:
    """Whole rows, about ``size`` bytes at a time (blocks are copied, not kept)."""
    buf = bytearray()
    for block in blocks:
        buf += block
        if len(buf) >= size:
            yield buf
            buf = bytearray()
    if buf:
        yield buf


def _copy(
    conn: SqlConnector,
    schema: str | None,
    table: str,
    label: str,
    lookup: Lookup,
    columns: list[str],
    values: list[str],
    segment_bytes: int,
) -> Iterator[pa.RecordBatch]:
    try:
        with conn.query(schema, table, label, lookup, columns) as (sa_conn, stmt, convs):
            for name, (type_, _) in zip(columns, convs, strict=True):
                if not any(check(type_) for check in _CSV_TYPES):
                    raise SourceError(
                        conn.name,
                        f"{label}: column {name!r} ({type_}) cannot be read with COPY; use fetch",
                    )
            sql = str(stmt.compile(dialect=conn.engine.dialect))
            read = pcsv.ReadOptions(column_names=columns)
            convert = pcsv.ConvertOptions(
                column_types={n: t for n, (t, _) in zip(columns, convs, strict=True)},
                true_values=["t"],
                false_values=["f"],
                strings_can_be_null=True,  # NULL is an empty unquoted field ...
                quoted_strings_can_be_null=False,  # ... and '' is written as ""
            )
            raw = sa_conn.connection.driver_connection
            assert raw is not None
            with (
                raw.cursor() as cur,
                cur.copy(f"COPY ({sql}) TO STDOUT (FORMAT csv)", {"values": values}) as copy,
            ):
                for segment in _segments(iter(copy), segment_bytes):
                    parsed = pcsv.read_csv(
                        pa.BufferReader(segment), read_options=read, convert_options=convert
                    )
                    yield from parsed.combine_chunks().to_batches()
    except pa.ArrowInvalid as exc:
        raise SourceError(
            conn.name, f"{label}: COPY output could not be parsed ({type(exc).__name__})"
        ) from None
