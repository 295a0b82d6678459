"""Writing a dataset's normalized Arrow batches as JSON, CSV or Parquet.

Each writer takes the batches, the dataset's Arrow schema and a write-only binary
stream (typically an archive entry, which cannot seek), and returns the number of
records written. Columns always come out in schema order; the output depends only on
the records, so the same records give the same bytes.

* JSON: an array of objects, one record per line, keys in schema order, null as null.
* CSV: UTF-8 without BOM, a header row even without records, CRLF line ends, RFC 4180
  quoting (every string value is quoted, so an empty string ``""`` and a null (empty
  field) stay apart), booleans as ``true``/``false``.
* Parquet: zstd compressed and dictionary encoded, with statistics; a dataset of fewer
  than ``PARQUET_SMALL`` records is stored plain, without them (a zstd context per
  column costs more than it saves on a few rows, and nobody prunes a few rows). No
  time stamps inside (``created_by`` is the pyarrow version).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO, NamedTuple

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

PARQUET_ROW_GROUP = 65_536
PARQUET_SMALL = 1_000  # records; fewer are stored without compression, dictionaries, statistics


def _conform(batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """Batches with exactly the schema's columns, in schema order and types."""
    for batch in batches:
        if batch.schema != schema:
            batch = batch.select(schema.names).cast(schema)
        yield batch


def _json_lines(batch: pa.RecordBatch, first_key: bytes) -> bytes:
    """The batch's records as JSON objects joined by ``,\\n``.

    One ``orjson.dumps`` for the whole batch (a call per record costs ten times more),
    then a newline before each record. In compact JSON of flat records ``},{"k":``,
    with ``"k"`` the first key, only occurs between two records: a ``"`` that follows
    ``{`` is not escaped, so it opens or closes a string; one that closes a string is
    followed by ``,`` or ``}``, never by a key and a colon.
    """
    body = orjson.dumps(batch.to_pylist())
    return body[1:-1].replace(b"},{" + first_key, b"},\n{" + first_key)


def write_json(batches: Iterable[pa.RecordBatch], schema: pa.Schema, out: BinaryIO) -> int:
    """``[\\n{...},\\n{...}\\n]\\n``, or ``[]\\n`` when there are no records."""
    if not schema.names or any(pa.types.is_nested(f.type) for f in schema):
        raise ValueError("JSON output takes flat records with at least one column")
    first_key = orjson.dumps(schema.names[0]) + b":"
    count = 0
    for batch in _conform(batches, schema):
        if not batch.num_rows:
            continue
        out.write(b",\n" if count else b"[\n")
        out.write(_json_lines(batch, first_key))
        count += batch.num_rows
    out.write(b"\n]\n" if count else b"[]\n")
    return count


def write_csv(batches: Iterable[pa.RecordBatch], schema: pa.Schema, out: BinaryIO) -> int:
    """RFC 4180 CSV with a header row; nulls are empty fields."""
    count = 0
    options = pacsv.WriteOptions(
        include_header=True, delimiter=",", quoting_style="needed", eol="\r\n"
    )
    with pacsv.CSVWriter(out, schema, write_options=options) as writer:
        for batch in _conform(batches, schema):
            writer.write_batch(batch)
            count += batch.num_rows
    return count


def _write_group(writer: pq.ParquetWriter, table: pa.Table) -> None:
    # One contiguous chunk per column: page boundaries then depend on the records only.
    writer.write_table(table.combine_chunks(), row_group_size=PARQUET_ROW_GROUP)


def _small_parquet(table: pa.Table, schema: pa.Schema, out: BinaryIO) -> None:
    """A dataset of fewer than ``PARQUET_SMALL`` records: plain (no compression,
    dictionaries or statistics), built in memory and written at once."""
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(
        sink, schema, compression="none", use_dictionary=False, write_statistics=False
    ) as writer:
        if table.num_rows:
            _write_group(writer, table)
    out.write(memoryview(sink.getvalue()))


def write_parquet(batches: Iterable[pa.RecordBatch], schema: pa.Schema, out: BinaryIO) -> int:
    """Parquet into a stream that need not seek.

    Row groups hold exactly ``PARQUET_ROW_GROUP`` records (the last one fewer), however
    the records arrive in batches, so the bytes depend on the records only. The writer
    opens once the first row group is full or the records end, when it is known whether
    the dataset is small.
    """
    count = 0
    pending: list[pa.Table] = []
    pending_rows = 0
    writer: pq.ParquetWriter | None = None
    try:
        for batch in _conform(batches, schema):
            count += batch.num_rows
            pending.append(pa.Table.from_batches([batch], schema))
            pending_rows += batch.num_rows
            if pending_rows < PARQUET_ROW_GROUP:
                continue
            writer = writer or pq.ParquetWriter(out, schema, compression="zstd")
            table = pa.concat_tables(pending)
            while table.num_rows >= PARQUET_ROW_GROUP:
                _write_group(writer, table.slice(0, PARQUET_ROW_GROUP))
                table = table.slice(PARQUET_ROW_GROUP)
            pending, pending_rows = [table], table.num_rows
        rest = pa.concat_tables(pending) if pending else schema.empty_table()
        if writer is None and count < PARQUET_SMALL:
            _small_parquet(rest, schema, out)
        else:
            writer = writer or pq.ParquetWriter(out, schema, compression="zstd")
            if rest.num_rows:
                _write_group(writer, rest)
    finally:
        if writer is not None:
            writer.close()
    return count


Writer = Callable[[Iterable[pa.RecordBatch], pa.Schema, BinaryIO], int]


class Format(NamedTuple):
    writer: Writer
    extension: str
    mediatype: str


FORMATS: dict[str, Format] = {
    "json": Format(write_json, "json", "application/json"),
    "csv": Format(write_csv, "csv", "text/csv"),
    "parquet": Format(write_parquet, "parquet", "application/vnd.apache.parquet"),
}
