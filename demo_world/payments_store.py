"""The payment provider's own store (``payments.sqlite``): schema, loading and queries.

Only the HTTP stand-in (``payments_api``) reads it; the engine never sees this file.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

SCHEMA = """
CREATE TABLE customers (id TEXT NOT NULL, email TEXT, name TEXT, line1 TEXT, city TEXT,
    postal_code TEXT, country TEXT, created INTEGER NOT NULL);
CREATE TABLE payment_methods (id TEXT NOT NULL, customer TEXT NOT NULL, brand TEXT,
    last4 TEXT, bin TEXT, exp_month INTEGER, exp_year INTEGER, created INTEGER NOT NULL);
CREATE TABLE charges (id TEXT NOT NULL, customer TEXT NOT NULL, amount INTEGER,
    currency TEXT, status TEXT, description TEXT, payment_method TEXT,
    created INTEGER NOT NULL);
CREATE TABLE invoices (id TEXT NOT NULL, customer TEXT NOT NULL, number TEXT,
    amount_due INTEGER, amount_paid INTEGER, currency TEXT, status TEXT,
    period_start INTEGER, period_end INTEGER, created INTEGER NOT NULL);
"""
# Keys are indexed after the load (much faster than maintaining them row by row).
INDEXES = """
CREATE UNIQUE INDEX ux_customers_id ON customers (id);
CREATE UNIQUE INDEX ux_payment_methods_id ON payment_methods (id);
CREATE UNIQUE INDEX ux_charges_id ON charges (id);
CREATE UNIQUE INDEX ux_invoices_id ON invoices (id);
CREATE INDEX ix_payment_methods_customer ON payment_methods (customer);
CREATE INDEX ix_charges_customer ON charges (customer);
CREATE INDEX ix_invoices_customer ON invoices (customer);
"""
LISTS = {"payment_methods", "charges", "invoices"}
_INSERT_CHUNK = 50_000


class PaymentsWriter:
    """Creates ``payments.sqlite`` afresh and appends Arrow tables to it."""

    def __init__(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        # Written from one worker thread at a time (see build._Behind).
        self._conn = sqlite3.connect(path, check_same_thread=False)
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-262144"):
            self._conn.execute(f"PRAGMA {pragma}")
        self._conn.executescript(SCHEMA)

    def write(self, tables: dict[str, pa.Table]) -> None:
        for name, table in tables.items():
            cols = ", ".join(table.column_names)
            marks = ", ".join("?" * table.num_columns)
            sql = f"INSERT INTO {name} ({cols}) VALUES ({marks})"
            for start in range(0, table.num_rows, _INSERT_CHUNK):
                part = table.slice(start, _INSERT_CHUNK)
                rows = zip(*(c.to_pylist() for c in part.columns), strict=True)
                self._conn.executemany(sql, rows)
        self._conn.commit()

    def close(self) -> None:
        self._conn.executescript(INDEXES)
        self._conn.commit()
        self._conn.close()


def connect_readonly(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    return conn


def get_customer(conn: sqlite3.Connection, customer_id: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT * FROM customers WHERE id = ?", (customer_id,)).fetchone()
    if row is None:
        return None
    return {
        "id": row["id"],
        "email": row["email"],
        "name": row["name"],
        "address": {
            "line1": row["line1"],
            "city": row["city"],
            "postal_code": row["postal_code"],
            "country": row["country"],
        },
        "created": row["created"],
    }


class BadCursor(ValueError):
    """The pagination cursor could not be decoded."""


def encode_cursor(rowid: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": rowid}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))["after"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BadCursor("invalid cursor") from exc
    if not isinstance(value, int) or value < 0:
        raise BadCursor("invalid cursor")
    return value


def list_page(
    conn: sqlite3.Connection, table: str, customer: str, limit: int, cursor: str | None
) -> dict[str, Any]:
    """One page of a customer's records, oldest first: ``{data, has_more, next_cursor}``."""
    if table not in LISTS:
        raise ValueError("unknown list")
    after = decode_cursor(cursor)
    rows = conn.execute(
        f"SELECT rowid AS _rowid, * FROM {table} WHERE customer = ? AND rowid > ? "
        "ORDER BY rowid LIMIT ?",
        (customer, after, limit + 1),
    ).fetchall()
    has_more = len(rows) > limit
    rows = rows[:limit]
    data = [dict(row) for row in rows]
    for item in data:
        del item["_rowid"]
    next_cursor = encode_cursor(rows[-1]["_rowid"]) if has_more else None
    return {"data": data, "has_more": has_more, "next_cursor": next_cursor}


def count_rows(path: Path, tables: Iterable[str] = ("customers", *sorted(LISTS))) -> dict:
    with closing(sqlite3.connect(path)) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
