"""The CRM database: DDL (SQLAlchemy Core) and bulk loading of Arrow tables.

SQLite and MariaDB load with ``executemany`` in chunks; PostgreSQL with ``COPY`` (the
table is rendered as CSV by Arrow and streamed through psycopg). Indexes other than
primary and unique keys are created after the load.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import pyarrow as pa
import pyarrow.csv as pacsv
from sqlalchemy import (
    CHAR,
    REAL,
    Boolean,
    Column,
    Date,
    DateTime,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
)
from sqlalchemy.engine import URL, Engine, make_url

_ID = 16
metadata = MetaData()
_KW = {"mysql_charset": "utf8mb4", "mariadb_charset": "utf8mb4"}

people = Table(
    "people",
    metadata,
    Column("person_id", String(_ID), primary_key=True),
    Column("customer_number", String(9), unique=True, nullable=False),
    Column("full_name", String(300)),
    Column("email", String(320)),
    Column("phone", String(40)),
    Column("billing_street", String(200)),
    Column("billing_city", String(100)),
    Column("billing_postcode", String(20)),
    Column("billing_country", String(2)),
    Column("date_of_birth", Date),
    Column("created_at", DateTime),
    Column("risk_score", REAL),
    Column("segment", String(40)),
    Column("email_sha256", CHAR(64)),
    **_KW,
)
accounts = Table(
    "accounts",
    metadata,
    Column("account_id", String(_ID), primary_key=True),
    Column("person_id", String(_ID), nullable=True),
    Column("org_id", String(_ID), nullable=True),
    Column("login_name", String(320), unique=True, nullable=False),
    Column("password_hash", String(200)),
    Column("mfa_secret", String(64), nullable=True),
    Column("preferences", Text),
    Column("plan", String(20)),
    Column("is_shared", Boolean),
    Column("created_at", DateTime),
    Column("last_login_at", DateTime, nullable=True),
    Column("payment_customer_id", String(_ID), nullable=True),
    **_KW,
)
organisations = Table(
    "organisations",
    metadata,
    Column("org_id", String(_ID), primary_key=True),
    Column("name", String(300)),
    Column("created_at", DateTime),
    **_KW,
)
org_members = Table(
    "org_members",
    metadata,
    Column("org_id", String(_ID), primary_key=True),
    Column("person_id", String(_ID), primary_key=True),
    Column("role", String(16)),
    Column("joined_at", DateTime),
    **_KW,
)
support_tickets = Table(
    "support_tickets",
    metadata,
    Column("ticket_id", String(_ID), primary_key=True),
    Column("person_id", String(_ID)),
    Column("opened_at", DateTime),
    Column("subject", String(300)),
    Column("body", Text),
    Column("status", String(16)),
    Column("agent_notes", Text),
    **_KW,
)
marketing_consents = Table(
    "marketing_consents",
    metadata,
    Column("consent_id", String(_ID), primary_key=True),
    Column("person_id", String(_ID)),
    Column("channel", String(8)),
    Column("purpose", String(40)),
    Column("granted", Boolean),
    Column("recorded_at", DateTime),
    Column("source", String(40)),
    **_KW,
)
TABLES = (
    "people",
    "accounts",
    "organisations",
    "org_members",
    "support_tickets",
    "marketing_consents",
)


def _index_ddl(dialect: str) -> list[str]:
    # MariaDB has no expression indexes; its default collation is case-insensitive anyway.
    email = "email" if dialect in ("mysql", "mariadb") else "lower(email)"
    specs = [
        ("ix_people_email_lower", "people", email),
        ("ix_people_email_sha256", "people", "email_sha256"),
        # the data map's name directory: recognising other people named in free text
        ("ix_people_full_name", "people", "full_name"),
        ("ix_accounts_person_id", "accounts", "person_id"),
        ("ix_org_members_person_id", "org_members", "person_id"),
        ("ix_support_tickets_person_id", "support_tickets", "person_id"),
        ("ix_marketing_consents_person_id", "marketing_consents", "person_id"),
    ]
    return [f"CREATE INDEX {name} ON {table} ({expr})" for name, table, expr in specs]


def normalize_url(url: str | URL) -> URL:
    """Pin the drivers this project ships: psycopg 3 and PyMySQL."""
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    elif u.drivername in ("mysql", "mariadb"):
        u = u.set(drivername=f"{u.drivername}+pymysql")
    if u.get_backend_name() in ("mysql", "mariadb") and "charset" not in u.query:
        u = u.update_query_dict({"charset": "utf8mb4"})
    return u


def _text_times(table: pa.Table, dates_too: bool) -> pa.Table:
    """Timestamps as ``YYYY-MM-DD HH:MM:SS`` (UTC) text; dates as ``YYYY-MM-DD``."""
    for i, f in enumerate(table.schema):
        # timestamp[s] casts to "YYYY-MM-DD HH:MM:SS", date32 to "YYYY-MM-DD"
        if pa.types.is_timestamp(f.type) or (dates_too and pa.types.is_date(f.type)):
            table = table.set_column(i, f.name, table.column(i).cast(pa.string()))
    return table


class CrmSink:
    """Creates the CRM tables afresh at ``url`` and appends Arrow tables to them."""

    def __init__(self, url: str | URL, chunk_rows: int = 20_000) -> None:
        self.url = normalize_url(url)
        self.engine: Engine = create_engine(self.url)
        self.dialect = self.engine.dialect.name
        self._chunk = chunk_rows
        metadata.drop_all(self.engine)
        metadata.create_all(self.engine)
        self._raw = self.engine.raw_connection()
        if self.dialect == "sqlite":  # a fresh file: no journal, a big page cache for the load
            for pragma in ("synchronous=OFF", "journal_mode=OFF", "cache_size=-262144"):
                self._raw.driver_connection.execute(f"PRAGMA {pragma}")
        loaders: dict[str, Callable[[str, pa.Table], None]] = {"postgresql": self._copy}
        self._load = loaders.get(self.dialect, self._executemany)

    def write(self, name: str, table: pa.Table) -> None:
        if name not in TABLES:
            raise ValueError(f"unknown CRM table {name!r}")
        if table.num_rows:  # in primary-key order: cheaper index inserts
            self._load(name, table.sort_by(table.column_names[0]))

    def _executemany(self, name: str, table: pa.Table) -> None:
        table = _text_times(table, dates_too=True)
        cols = ", ".join(table.column_names)
        mark = "?" if self.dialect == "sqlite" else "%s"
        sql = f"INSERT INTO {name} ({cols}) VALUES ({', '.join([mark] * table.num_columns)})"
        cur = self._raw.cursor()
        for start in range(0, table.num_rows, self._chunk):
            part = table.slice(start, self._chunk)
            cur.executemany(sql, list(zip(*(c.to_pylist() for c in part.columns), strict=True)))
        cur.close()
        self._raw.commit()

    def _copy(self, name: str, table: pa.Table) -> None:
        table = _text_times(table, dates_too=False)
        opts = pacsv.WriteOptions(include_header=False)
        sql = f"COPY {name} ({', '.join(table.column_names)}) FROM STDIN WITH (FORMAT csv)"
        with self._raw.driver_connection.cursor() as cur, cur.copy(sql) as copy:
            for start in range(0, table.num_rows, 100_000):
                buf = io.BytesIO()
                pacsv.write_csv(table.slice(start, 100_000), buf, write_options=opts)
                copy.write(buf.getvalue())
        self._raw.commit()

    def finish(self) -> None:
        """Create the secondary indexes, analyze, and release the connection."""
        self._raw.close()
        with self.engine.begin() as conn:
            for ddl in _index_ddl(self.dialect):
                conn.exec_driver_sql(ddl)
        if self.dialect in ("sqlite", "postgresql"):
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.exec_driver_sql("ANALYZE")
        self.engine.dispose()
