"""SQL source systems (PostgreSQL, MariaDB/MySQL, SQLite) through SQLAlchemy Core.

One pooled engine per connector. A fetch builds ``SELECT <columns> FROM <table> WHERE
<col> = ANY(:values)`` (PostgreSQL, one array bind) or ``<col> IN (:values)`` (others,
an expanding bind of at most 1,000 values per query), streams the rows with a
server-side cursor and turns each chunk of rows into an Arrow batch column by column.

Arrow types come from the table's reflected column types (reflected once per table),
so that every batch of an entity has the same schema: text as ``string``, integers as
``int64``, floats as ``float64``, ``NUMERIC(p, s)`` as ``decimal128(p, s)`` (plain
``NUMERIC`` as decimal text), booleans, dates, timestamps (``tz=UTC`` only for
time-zone aware columns) and binary; anything else (JSON, UUID, arrays, untyped SQLite
columns ...) is cast to text in SQL.

SQLAlchemy's exception text carries the SQL statement and the bound parameters, i.e. the
looked-up values: every error is turned into a :class:`SourceError` that names only the
system, the entity and the driver's error class and code.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from engine.connectors.base import Lookup, SourceError

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
IN_CHUNK = 1_000  # values per IN (...) query
ANY_CHUNK = 10_000  # values per PostgreSQL array bind
BATCH_ROWS = 10_000

_DRIVERS = {
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}
_MYSQL_TRANSIENT = {1040, 1053, 1205, 1213, 1317, 1927, 2002, 2003, 2006, 2013, 2055}
_PG_TRANSIENT_CLASSES = ("08", "40", "53", "57")

# (arrow type, python pre-conversion or None); None as a whole: cast to text in SQL
_Conv = tuple[pa.DataType, Callable[[Any], Any] | None]


def check_identifier(system: str, name: str, what: str) -> str:
    """Return ``name`` if it is a plain SQL identifier, else raise SourceError."""
    if not isinstance(name, str) or not IDENTIFIER.match(name):
        raise SourceError(system, f"invalid {what} identifier {name!r} in the data map")
    return name


def engine_url(url: str | sa.URL) -> sa.URL:
    """Map bare driver names to the installed drivers (psycopg 3, PyMySQL)."""
    parsed = sa.make_url(url)
    driver = _DRIVERS.get(parsed.drivername)
    return parsed.set(drivername=driver) if driver else parsed


def create_engine(url: str | sa.URL, connect_timeout_s: float = 10) -> sa.Engine:
    """A pooled engine; SQLite files are opened read-only and must exist."""
    parsed = engine_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        path = parsed.database or ""
        if path in ("", ":memory:") or path.startswith("file:"):
            return sa.create_engine(parsed)
        uri = f"file:{quote(os.path.abspath(path))}?mode=ro"

        def connect() -> sqlite3.Connection:
            return sqlite3.connect(
                uri, uri=True, check_same_thread=False, timeout=connect_timeout_s
            )

        return sa.create_engine("sqlite://", creator=connect, poolclass=sa.pool.QueuePool)
    args: dict[str, Any] = {}
    if "connect_timeout" not in parsed.query:
        args["connect_timeout"] = max(1, int(connect_timeout_s))
    return sa.create_engine(parsed, connect_args=args, pool_pre_ping=True)


def _arrow_conversion(type_: sa.types.TypeEngine[Any]) -> _Conv | None:
    if isinstance(type_, sa.Boolean):
        return pa.bool_(), None
    if isinstance(type_, sa.Integer):
        return pa.int64(), None
    if isinstance(type_, sa.Float):
        return pa.float64(), None
    if isinstance(type_, sa.Numeric):
        p, s = type_.precision, type_.scale
        if p is not None and s is not None and 0 < p <= 38 and 0 <= s <= p:
            return pa.decimal128(p, s), None
        return pa.string(), _to_text
    if isinstance(type_, sa.DateTime):
        return pa.timestamp("us", tz="UTC" if type_.timezone else None), None
    if isinstance(type_, sa.Date):
        return pa.date32(), None
    if isinstance(type_, sa.Time):
        return pa.time64("us"), None
    if isinstance(type_, (sa.JSON, sa.ARRAY)):
        return None
    if isinstance(type_, sa.String):  # Text, VARCHAR, CHAR, Enum ...
        return pa.string(), None
    if isinstance(type_, sa.LargeBinary):
        return pa.binary(), _to_bytes
    return None


def _to_text(value: Any) -> Any:
    return None if value is None else str(value)


def _to_bytes(value: Any) -> Any:
    return None if value is None else bytes(value)


class SqlConnector:
    """A relational database; entity ``{"table": "people"}`` or ``"schema.table"``."""

    kind = "sql"
    bulk_lookup = True  # one query serves many subjects: a batch export splits the rows

    def __init__(
        self,
        name: str,
        url: str | sa.URL,
        *,
        batch_rows: int = BATCH_ROWS,
        in_chunk: int = IN_CHUNK,
        connect_timeout_s: float = 10,
    ) -> None:
        self.name = name
        self.batch_rows = batch_rows
        self.in_chunk = in_chunk
        try:
            self.engine = create_engine(url, connect_timeout_s)
        except (sa.exc.ArgumentError, ImportError, ValueError) as exc:
            raise SourceError(name, f"invalid database URL ({type(exc).__name__})") from None
        self._columns: dict[tuple[str | None, str], dict[str, sa.types.TypeEngine[Any]]] = {}
        self._lock = threading.Lock()

    @property
    def is_postgresql(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @property
    def max_lookup_values(self) -> int:
        """Values one query takes; a lookup with more is read in several queries."""
        return ANY_CHUNK if self.is_postgresql else self.in_chunk

    def close(self) -> None:
        self.engine.dispose()

    def fetch(
        self, entity: Mapping[str, Any], lookup: Lookup, columns: Sequence[str]
    ) -> Iterator[pa.RecordBatch]:
        """Stream ``columns`` of the rows whose ``lookup.column`` is one of the values."""
        schema, table, label, values = self.prepare(entity, lookup, columns)
        if not values:
            return iter(())
        return self._stream(schema, table, label, lookup, list(columns), values)

    def prepare(
        self, entity: Mapping[str, Any], lookup: Lookup, columns: Sequence[str]
    ) -> tuple[str | None, str, str, list[str]]:
        """Checked ``(schema, table, label, values)`` of a lookup, before any query."""
        schema, table = self.table_name(entity)
        label = f"entity {table!r}"
        if not columns:
            raise SourceError(self.name, f"{label}: no columns requested")
        for column in (*columns, lookup.column):
            check_identifier(self.name, column, "column")
        return schema, table, label, lookup.distinct()

    def table_name(self, entity: Mapping[str, Any]) -> tuple[str | None, str]:
        """``(schema or None, table)`` of an entity, each a checked identifier."""
        name = entity.get("table")
        if not isinstance(name, str):
            raise SourceError(self.name, "entity has no 'table'")
        parts = name.split(".")
        if len(parts) > 2:
            raise SourceError(self.name, f"invalid table identifier {name!r} in the data map")
        for part in parts:
            check_identifier(self.name, part, "table")
        return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])

    def column_types(
        self,
        conn: sa.Connection,
        schema: str | None,
        table: str,
        label: str,
        needed: Sequence[str] = (),
    ) -> dict[str, sa.types.TypeEngine[Any]]:
        """Column types of a table, reflected once (again if a needed column is new)."""
        key = (schema, table)
        with self._lock:
            known = self._columns.get(key)
        if known is not None:
            names = {n.lower() for n in known}
            if any(c.lower() not in names for c in needed):
                known = None
        if known is None:
            try:
                found = sa.inspect(conn).get_columns(table, schema=schema)
            except sa.exc.NoSuchTableError:
                raise SourceError(self.name, f"{label}: table not found") from None
            known = {c["name"]: c["type"] for c in found}
            with self._lock:
                self._columns[key] = known
        return known

    def build_select(
        self,
        types: Mapping[str, sa.types.TypeEngine[Any]],
        schema: str | None,
        table: str,
        label: str,
        lookup: Lookup,
        columns: list[str],
    ) -> tuple[sa.Select[Any], list[_Conv]]:
        """The SELECT (one ``:values`` bind) and each column's Arrow conversion."""
        by_lower = {n.lower(): n for n in types}

        def real(column: str) -> str:
            if column in types:
                return column
            if column.lower() in by_lower:
                return by_lower[column.lower()]
            raise SourceError(self.name, f"{label}: no column {column!r}")

        names = list(dict.fromkeys(real(c) for c in (*columns, lookup.column)))
        tbl = sa.table(table, *(sa.column(n, types[n]) for n in names), schema=schema)
        selected: list[Any] = []
        convs: list[_Conv] = []
        order: list[Any] = []  # every natively typed column: a total, repeatable row order
        for column in columns:
            col = tbl.c[real(column)]
            conv = _arrow_conversion(col.type)
            if conv is None:
                conv = (pa.string(), None)
                selected.append(sa.cast(col, sa.String).label(column))
            else:
                selected.append(col.label(column))
                order.append(col)
            convs.append(conv)
        match: Any = tbl.c[real(lookup.column)]
        if lookup.casefold:
            match = sa.func.lower(match)
        if self.is_postgresql:
            values = sa.bindparam("values", type_=postgresql.ARRAY(sa.Text))
            where = match == sa.any_(values)
        else:
            where = match.in_(sa.bindparam("values", expanding=True))
        return sa.select(*selected).where(where).order_by(*order), convs

    @contextmanager
    def query(
        self, schema: str | None, table: str, label: str, lookup: Lookup, columns: list[str]
    ) -> Iterator[tuple[sa.Connection, sa.Select[Any], list[_Conv]]]:
        """A connection, the lookup's SELECT and its conversions; driver errors raised in
        the block become SourceErrors naming the source only."""
        phase = "connection"
        try:
            with self.engine.connect() as conn:
                phase = "query"
                types = self.column_types(conn, schema, table, label, (*columns, lookup.column))
                stmt, convs = self.build_select(types, schema, table, label, lookup, columns)
                yield conn, stmt, convs
        except (sa.exc.SQLAlchemyError, sqlite3.Error) as exc:  # sqlite3: read-only creator
            raise self.source_error(exc, label, phase) from None
        except Exception as exc:
            if type(exc).__module__.startswith("psycopg"):  # raw driver use (COPY)
                raise self.source_error(exc, label, phase) from None
            raise

    def _stream(
        self,
        schema: str | None,
        table: str,
        label: str,
        lookup: Lookup,
        columns: list[str],
        values: list[str],
    ) -> Iterator[pa.RecordBatch]:
        size = self.max_lookup_values
        try:
            with self.query(schema, table, label, lookup, columns) as (conn, stmt, convs):
                conn = conn.execution_options(yield_per=self.batch_rows)
                for start in range(0, len(values), size):
                    result = conn.execute(stmt, {"values": values[start : start + size]})
                    for rows in result.partitions():
                        yield self._batch(rows, columns, convs, label)
        except (ValueError, TypeError, ArithmeticError) as exc:  # a type's result processor
            raise SourceError(
                self.name, f"{label}: a row could not be read ({type(exc).__name__})"
            ) from None

    def _batch(
        self, rows: Sequence[Sequence[Any]], names: list[str], convs: list[_Conv], label: str
    ) -> pa.RecordBatch:
        arrays = []
        for name, values, (type_, pre) in zip(names, zip(*rows, strict=True), convs, strict=True):
            data = [pre(v) for v in values] if pre else values
            try:
                arrays.append(pa.array(data, type=type_))
            except (pa.ArrowException, ValueError, TypeError, OverflowError) as exc:
                try:
                    arrays.append(pa.array(data).cast(type_))
                except (pa.ArrowException, ValueError, TypeError, OverflowError):
                    raise SourceError(
                        self.name,
                        f"{label}: column {name!r} holds values that do not fit its "
                        f"declared type {type_} ({type(exc).__name__})",
                    ) from None
        return pa.RecordBatch.from_arrays(arrays, names=names)

    def source_error(self, exc: BaseException, label: str, phase: str) -> SourceError:
        """A SourceError naming the driver's error class and code, never its message."""
        orig = getattr(exc, "orig", None) or exc
        code, transient = _classify(exc, orig)
        detail = type(orig).__name__ + (f", code {code}" if code else "")
        verb = "cannot connect" if phase == "connection" else "query failed"
        return SourceError(self.name, f"{label}: {verb} ({detail})", transient=transient)


def _classify(exc: BaseException, orig: BaseException) -> tuple[str | None, bool]:
    """The driver's error code (no message text) and whether retrying may help."""
    if isinstance(exc, (sa.exc.DisconnectionError, sa.exc.TimeoutError)):
        return None, True
    invalidated = bool(getattr(exc, "connection_invalidated", False))
    if isinstance(orig, sqlite3.Error):
        name = getattr(orig, "sqlite_errorname", None)
        return name, invalidated or name in ("SQLITE_BUSY", "SQLITE_LOCKED")
    sqlstate = getattr(orig, "sqlstate", None)
    if type(orig).__module__.startswith("psycopg"):
        if sqlstate is None:  # client side: connection refused, lost, timed out
            return None, invalidated or type(orig).__name__ == "OperationalError"
        return sqlstate, invalidated or sqlstate.startswith(_PG_TRANSIENT_CLASSES)
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):  # PyMySQL
        return str(args[0]), invalidated or args[0] in _MYSQL_TRANSIENT
    return None, invalidated
