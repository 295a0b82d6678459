"""JSON, CSV and Parquet writers: awkward values read back by pyarrow, duckdb, pandas and
the csv module; exact layout; non-seekable output; deterministic bytes."""

from __future__ import annotations

import csv
import io
import json
import random
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from exporters.formats import FORMATS, write_csv, write_json, write_parquet
from exporters.zipwriter import ArchiveWriter
from tests.streams import Sink

SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("text", pa.string()),
        ("n", pa.int64()),
        ("x", pa.float64()),
        ("ok", pa.bool_()),
        ("at", pa.string()),
    ]
)
TEXTS = [
    "", None, 'say "hi"', "a,b", "line1\nline2", "cr\r\nlf", "Grüße ☃ 🙂 e\u0301",
    "مرحبا", "tab\tsep", " padded ", "null", "NULL", "\\N", "'single'", "=1+1",
    '},{"id":"forged"}', "ends with a backslash \\", '\\"},{\\"id', "nul\x00byte",
]  # fmt: skip
N = len(TEXTS)
ROWS = {
    "id": [f"r{i:02d}" for i in range(N)],
    "text": TEXTS,
    "n": [2**63 - 1, -(2**63), None, 0, 2**53 + 1, -1, *range(N - 6)],
    "x": [0.1, 1 / 3, None, -0.0, 1e300, 1e-300, 123456789.125, *[float(i) for i in range(N - 7)]],
    "ok": [True, False, None, *[i % 2 == 0 for i in range(N - 3)]],
    "at": ["2026-06-30T12:34:56Z", None, *["1999-12-31T23:59:59Z"] * (N - 2)],
}
TABLE = pa.table(ROWS, schema=SCHEMA)
RECORDS = TABLE.to_pylist()


def duck_records(sql: str) -> list[dict[str, object]]:
    """Rows read by duckdb; it detects the date-time strings, so turn them back."""
    out = []
    for row in duckdb.sql(sql).fetchall():
        rec = dict(zip(SCHEMA.names, row, strict=True))
        if isinstance(rec["at"], datetime):
            rec["at"] = rec["at"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        out.append(rec)
    return out


def nulls_as_none(values: pd.Series) -> list[object]:
    return [None if pd.isna(v) else v for v in values]


def batches(size: int = 4) -> list[pa.RecordBatch]:
    return TABLE.to_batches(max_chunksize=size)


def write(fmt: str, tmp_path: Path, table: pa.Table = TABLE) -> Path:
    writer, ext, _ = FORMATS[fmt]
    sink = Sink()
    assert writer(table.to_batches(max_chunksize=4), table.schema, sink) == table.num_rows
    path = tmp_path / f"data.{ext}"
    path.write_bytes(sink.buf)
    return path


def test_json_layout_and_round_trip(tmp_path: Path) -> None:
    path = write("json", tmp_path)
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    assert lines[0] == "[" and lines[-2:] == ["]", ""] and len(lines) == N + 3
    assert all(line.startswith("{") for line in lines[1:-2])
    assert json.loads(text) == RECORDS
    assert list(json.loads(lines[1].rstrip(","))) == SCHEMA.names  # keys in schema order
    assert duck_records(f"select * from read_json_auto('{path}')") == RECORDS
    df = pd.read_json(path, dtype=False, precise_float=True)
    assert nulls_as_none(df["text"]) == TEXTS
    assert df["x"].tolist()[:2] == [0.1, 1 / 3]


def test_json_one_record_per_line_for_any_string() -> None:
    pieces = ['"', "\\", "}", "{", ",", ":", "id", "\n", "é", "\x00", " "]
    rng = random.Random(7)
    texts = ["".join(rng.choices(pieces, k=rng.randint(0, 12))) for _ in range(3000)]
    table = pa.table({"id": texts, "text": texts[::-1]})
    sink = Sink()
    write_json(table.to_batches(max_chunksize=700), table.schema, sink)
    lines = bytes(sink.buf).split(b"\n")[1:-2]
    assert len(lines) == len(texts)
    assert [orjson.loads(line.rstrip(b",")) for line in lines] == table.to_pylist()


def test_csv_is_rfc_4180_and_round_trips(tmp_path: Path) -> None:
    path = write("csv", tmp_path)
    raw = path.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")
    assert raw.startswith(b'"id","text","n","x","ok","at"\r\n')
    assert b'"say ""hi"""' in raw and b'"line1\nline2"' in raw and b",true," in raw
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, strict=True))
    assert rows[0] == SCHEMA.names and len(rows) == N + 1
    assert [r[1] for r in rows[1:]] == [t or "" for t in TEXTS]
    # pyarrow tells a quoted empty string from an empty (null) field: exact round trip
    options = pacsv.ConvertOptions(
        column_types=SCHEMA, strings_can_be_null=True, quoted_strings_can_be_null=False
    )
    assert pacsv.read_csv(path, convert_options=options).equals(TABLE)
    assert duck_records(f"select * from read_csv('{path}', allow_quoted_nulls=false)") == RECORDS
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert df["text"].tolist() == [t or "" for t in TEXTS]
    assert df["n"].tolist()[:3] == [str(2**63 - 1), str(-(2**63)), ""]


def test_parquet_into_non_seekable_stream_round_trips(tmp_path: Path) -> None:
    path = write("parquet", tmp_path)
    meta = pq.ParquetFile(path).metadata
    assert meta.created_by.startswith("parquet-cpp-arrow version")
    assert meta.row_group(0).column(0).compression == "UNCOMPRESSED"  # a small dataset
    assert pq.read_table(path).equals(TABLE)
    assert duck_records(f"select * from read_parquet('{path}')") == RECORDS
    df = pd.read_parquet(path, dtype_backend="pyarrow")
    assert nulls_as_none(df["text"]) == TEXTS
    assert df["n"].tolist()[:2] == [2**63 - 1, -(2**63)]


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_same_records_give_same_bytes(fmt: str) -> None:
    writer = FORMATS[fmt].writer
    outputs = set()
    for size in (1, 4, 1000):  # batch boundaries must not show
        sink = Sink()
        writer(TABLE.to_batches(max_chunksize=size), SCHEMA, sink)
        outputs.add(bytes(sink.buf))
    assert len(outputs) == 1


@pytest.mark.parametrize(("records", "codec"), [(999, "UNCOMPRESSED"), (1000, "ZSTD")])
def test_parquet_compresses_from_a_thousand_records(records: int, codec: str) -> None:
    words = pa.array([f"w{i % 7}" for i in range(records)])
    table = pa.table({"i": pa.array(range(records), pa.int64()), "word": words})
    sink = Sink()
    assert write_parquet(table.to_batches(max_chunksize=100), table.schema, sink) == records
    meta = pq.ParquetFile(io.BytesIO(bytes(sink.buf))).metadata
    columns = [meta.row_group(0).column(c) for c in range(2)]
    assert {c.compression for c in columns} == {codec}
    dictionary = [c.dictionary_page_offset is not None for c in columns]
    assert dictionary == ([True, True] if codec == "ZSTD" else [False, False])
    statistics = [c.is_stats_set for c in columns]
    assert statistics == ([True, True] if codec == "ZSTD" else [False, False])
    assert pq.read_table(io.BytesIO(bytes(sink.buf))).equals(table)


def test_parquet_row_groups_do_not_depend_on_batches() -> None:
    big = pa.table({"i": pa.array(range(150_000), pa.int64())})
    sizes = set()
    for chunk in (150_000, 1000, 77):
        sink = Sink()
        write_parquet(big.to_batches(max_chunksize=chunk), big.schema, sink)
        meta = pq.ParquetFile(io.BytesIO(bytes(sink.buf))).metadata
        sizes.add((bytes(sink.buf), tuple(meta.row_group(g).num_rows for g in range(3))))
    assert len(sizes) == 1
    assert next(iter(sizes))[1] == (65_536, 65_536, 18_928)


def test_columns_come_out_in_schema_order() -> None:
    shuffled = TABLE.select(["at", "ok", "x", "n", "text", "id"])
    sink = Sink()
    write_json(shuffled.to_batches(), SCHEMA, sink)
    assert json.loads(bytes(sink.buf)) == RECORDS
    sink = Sink()
    write_csv(shuffled.to_batches(), SCHEMA, sink)
    assert bytes(sink.buf).startswith(b'"id","text","n","x","ok","at"\r\n')


def test_no_records(tmp_path: Path) -> None:
    empty = SCHEMA.empty_table()
    assert write("json", tmp_path, empty).read_bytes() == b"[]\n"
    assert write("csv", tmp_path, empty).read_bytes() == b'"id","text","n","x","ok","at"\r\n'
    back = pq.read_table(write("parquet", tmp_path, empty))
    assert back.num_rows == 0 and back.schema.names == SCHEMA.names
    sink = Sink()
    assert write_json(iter([]), SCHEMA, sink) == 0 and sink.buf == b"[]\n"


def test_writers_into_archive_entries(tmp_path: Path) -> None:
    path = tmp_path / "a.zip"
    with ArchiveWriter(path, timestamp=datetime(2026, 6, 30, tzinfo=UTC)) as zw:
        for fmt, (writer, ext, _) in FORMATS.items():
            with zw.open(f"data/t.{ext}", compress=fmt != "parquet") as out:
                writer(batches(), SCHEMA, out)
    with zipfile.ZipFile(path) as z:
        assert json.loads(z.read("data/t.json")) == RECORDS
        assert pq.read_table(io.BytesIO(z.read("data/t.parquet"))).equals(TABLE)
        assert z.read("data/t.csv").count(b"\r\n") == N + 1 + 1  # + the embedded CRLF
