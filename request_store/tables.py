"""SQLAlchemy Core tables of the request store, and the audit trail's append-only triggers.

Five tables: ``requests`` (no personal data), ``request_identities`` (the only
personal data, deleted when a request closes), ``request_secrets`` (sealed credentials
that came with a request, deleted with the identities), ``request_deliveries`` (each archive part
handed over, its expiry and deletion) and ``request_events`` (the audit trail,
append-only: triggers in the database refuse UPDATE, DELETE and (PostgreSQL) TRUNCATE,
so neither a hand-written statement nor another program can rewrite history short of
dropping the trigger, which takes DDL rights the application role need not have).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from engine.request import Identity, RequestError
from request_store.model import (
    MIN_SECRET,
    RequestNotFound,
    State,
    StoredRequest,
    clean_text,
    required_text,
)

BUSY_TIMEOUT_S = 15  # SQLite: how long a writer waits for another process's write lock
SCHEMA_LOCK, SEQ_LOCK = 0x5245_5101, 0x5245_5102  # PostgreSQL advisory lock keys

# BIGINT on PostgreSQL; INTEGER on SQLite, where only "INTEGER PRIMARY KEY" autoincrements.
_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on both backends.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so the value is stored
    as naive UTC text (fixed width, hence comparable in SQL) and re-labelled on read.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError("the request store only takes time-zone aware datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = sa.MetaData()

requests = sa.Table(
    "requests",
    metadata,
    # seq: the sensors' cursor; assigned under a lock so commit order == seq order
    sa.Column("seq", _Id, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(64), nullable=False, unique=True),
    sa.Column("controller", sa.String(128), nullable=False),
    sa.Column("external_id", sa.String(128)),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("request_type", sa.String(16), nullable=False),
    sa.Column("regulation", sa.String(16), nullable=False),
    sa.Column("formats", sa.String(64), nullable=False),  # comma-separated
    sa.Column("submitted_at", UTCDateTime, nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("deadline", UTCDateTime, nullable=False),
    sa.Column("extended_deadline", UTCDateTime),
    sa.Column("extension_reason", sa.Text),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("failure", sa.Text),
    sa.Column("denial_reason", sa.Text),
    sa.Column("result_location", sa.Text),
    sa.Column("result_sha256", sa.String(64)),
    sa.Column("result_count", sa.BigInteger),
    sa.Column("callback_urls", sa.JSON, nullable=False),
    sa.Column("identities_deleted_at", UTCDateTime),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    # keyed digest (HMAC-SHA256, hex) of the submitting body, so that a repeat of the same
    # external id can be told apart from a changed one (OpenDSR 409); NULL when not given.
    # Added after the first release: add_missing_columns() adds it to older databases.
    sa.Column("request_digest", sa.String(64)),
    # delivery options (added later, like request_digest): the maximum part size (NULL:
    # the default, 2 GB) and the public keys the archive is encrypted to (JSON list)
    sa.Column("max_part_bytes", sa.BigInteger),
    sa.Column("encrypt_to", sa.Text),
    # a direct transfer (Art. 20(2)): the recipient's name in the recipients file
    sa.Column("transfer_to", sa.String(64)),
    # idempotency of OpenDSR's subject_request_id; NULL external ids never collide
    sa.UniqueConstraint("controller", "external_id", name="uq_requests_external"),
    sa.Index("ix_requests_state_seq", "state", "seq"),
    sqlite_autoincrement=True,  # never reuse a seq
)

request_identities = sa.Table(
    "request_identities",
    metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column(
        "request_id",
        sa.String(64),
        sa.ForeignKey("requests.request_id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("value", sa.Text, nullable=False),
)

request_events = sa.Table(
    "request_events",
    metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(64), nullable=False, index=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sqlite_autoincrement=True,
)

# A credential that came with a request (a recipient's presigned PUT URL), sealed
# (request_store/sealing.py) and deleted with the identities when the request closes.
request_secrets = sa.Table(
    "request_secrets",
    metadata,
    sa.Column(
        "request_id",
        sa.String(64),
        sa.ForeignKey("requests.request_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("sealed", sa.Text, nullable=False),
)

# What was handed over, part by part, and to whom; what retention deleted, and when.
# Holds names, locations, sizes and hashes, never data. ``recipient`` is "controller" for
# the controller's own delivery (served by results links) or a direct-transfer recipient's
# configured name; ``expires_at`` is NULL where the copy is not ours to delete.
request_deliveries = sa.Table(
    "request_deliveries",
    metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(64), sa.ForeignKey("requests.request_id"), nullable=False),
    sa.Column("recipient", sa.String(128), nullable=False),
    sa.Column("part", sa.Integer, nullable=False),
    sa.Column("parts", sa.Integer, nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("location", sa.Text, nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("delivered_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime),
    sa.Column("deleted_at", UTCDateTime),
    sa.Column("downloads", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_downloads", sa.Integer),
    sa.Column("last_download_at", UTCDateTime),
    sa.UniqueConstraint("request_id", "recipient", "part", name="uq_deliveries_part"),
    sa.Index("ix_deliveries_expiry", "deleted_at", "expires_at"),
    sqlite_autoincrement=True,
)

_SQLITE_TRIGGERS = [
    f"CREATE TRIGGER IF NOT EXISTS request_events_no_{op.lower()} BEFORE {op} "
    "ON request_events BEGIN "
    "SELECT RAISE(ABORT, 'request_events is append-only'); END"
    for op in ("UPDATE", "DELETE")
]
_PG_TRIGGERS = [
    "CREATE OR REPLACE FUNCTION request_events_append_only() RETURNS trigger "
    "LANGUAGE plpgsql AS $$ BEGIN "
    "RAISE EXCEPTION 'request_events is append-only'; END $$",
    "CREATE OR REPLACE TRIGGER request_events_no_change BEFORE UPDATE OR DELETE "
    "ON request_events FOR EACH ROW EXECUTE FUNCTION request_events_append_only()",
    "CREATE OR REPLACE TRIGGER request_events_no_truncate BEFORE TRUNCATE "
    "ON request_events FOR EACH STATEMENT EXECUTE FUNCTION request_events_append_only()",
]


# Nullable columns added after the tables were first released: (table, column, DDL type).
_ADDED_COLUMNS = (
    ("requests", "request_digest", "VARCHAR(64)"),
    ("requests", "max_part_bytes", "BIGINT"),
    ("requests", "encrypt_to", "TEXT"),
    ("requests", "transfer_to", "VARCHAR(64)"),
)


def add_missing_columns(conn: sa.Connection) -> None:
    """Add the nullable columns a database created by an older version lacks."""
    inspector = sa.inspect(conn)
    for table, column, ddl_type in _ADDED_COLUMNS:
        if column not in {c["name"] for c in inspector.get_columns(table)}:
            conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {ddl_type}")


def create_schema(conn: sa.Connection) -> None:
    """Create missing tables and columns and (re)install the audit triggers. Idempotent."""
    metadata.create_all(conn)
    add_missing_columns(conn)
    if conn.dialect.name != "postgresql":
        for statement in _SQLITE_TRIGGERS:
            conn.exec_driver_sql(statement)
        return
    # CREATE OR REPLACE TRIGGER locks the table: only when a trigger is missing
    installed = conn.exec_driver_sql(
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass('request_events') "
        "AND tgname IN ('request_events_no_change', 'request_events_no_truncate')"
    ).scalar_one()
    if installed < 2:
        for statement in _PG_TRIGGERS:
            conn.exec_driver_sql(statement)


def connect(url_or_path: str | os.PathLike[str]) -> sa.Engine:
    """An engine for a SQLite file path / ``sqlite:///`` URL or a PostgreSQL URL.

    SQLite: WAL (readers never block the writer), a busy timeout (writers queue instead
    of failing), foreign keys on, and write transactions opened with BEGIN IMMEDIATE
    (engine option ``store_write``) so that a read-then-write never dead-ends in
    SQLITE_BUSY. A new file is created mode 0600: it holds identities.
    ``hide_parameters`` keeps bound values (identities) out of every SQL error message.
    """
    text = os.fspath(url_or_path)
    url = sa.make_url(text) if "://" in text else sa.URL.create("sqlite", database=text)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() != "sqlite":
        return sa.create_engine(url, hide_parameters=True, pool_pre_ping=True)
    if not url.database or url.database == ":memory:" or url.database.startswith("file:"):
        raise ValueError("the SQLite request store needs a file path (shared by processes)")
    path = Path(url.database).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    url = url.set(database=str(path))
    engine = sa.create_engine(url, hide_parameters=True, connect_args={"timeout": BUSY_TIMEOUT_S})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
        for pragma in (
            "journal_mode=WAL",
            f"busy_timeout={BUSY_TIMEOUT_S * 1000}",
            "foreign_keys=ON",
            "synchronous=NORMAL",
            "secure_delete=ON",  # deleted identities are overwritten, not left in free pages
        ):
            dbapi_conn.execute(f"PRAGMA {pragma}")

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        write = conn.get_execution_options().get("store_write")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def scrub(engine: sa.Engine) -> None:
    """After identities were deleted: fold SQLite's write-ahead log into the database and
    truncate it, so no earlier page image holding them stays on disk (best effort: a
    reader still open delays it to the next scrub). PostgreSQL reclaims deleted rows by
    its own (auto)vacuum."""
    if engine.dialect.name != "sqlite":
        return
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def lock(conn: sa.Connection, key: int) -> None:
    """PostgreSQL: a transaction-scoped advisory lock (SQLite's BEGIN IMMEDIATE already
    serializes writers). Used so that concurrent opens do not race on CREATE TABLE and
    so that seq values commit in order (a cursor never skips a late-committing row)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))


# -- row-level helpers, all inside the caller's transaction --------------------------


def to_request(row: Mapping[str, Any]) -> StoredRequest:
    """A ``requests`` row as the public dataclass."""
    values = dict(row)
    values["formats"] = tuple(values["formats"].split(","))
    values["callback_urls"] = tuple(values["callback_urls"] or ())
    values["state"] = State(values["state"])
    values["encrypt_to"] = tuple(json.loads(values["encrypt_to"] or "[]"))
    return StoredRequest(**values)


def fetch(conn: sa.Connection, request_id: str) -> StoredRequest:
    row = conn.execute(sa.select(requests).where(requests.c.request_id == request_id)).first()
    if row is None:
        raise RequestNotFound(request_id)
    return to_request(row._mapping)


def fetch_identities(conn: sa.Connection, request_id: str) -> tuple[Identity, ...]:
    ri = request_identities
    query = sa.select(ri.c.type, ri.c.value).where(ri.c.request_id == request_id)
    return tuple(Identity(r.type, r.value) for r in conn.execute(query.order_by(ri.c.position)))


def add_identities(conn: sa.Connection, request_id: str, idents: Sequence[Identity]) -> None:
    rows = [
        dict(request_id=request_id, position=n, type=i.type, value=i.value)
        for n, i in enumerate(idents, 1)
    ]
    conn.execute(request_identities.insert(), rows)


def redacted(conn: sa.Connection, request_id: str, text: str, what: str) -> str:
    """Free text with this subject's identity values replaced (see model.clean_text)."""
    return clean_text(text, what, [str(i.value) for i in fetch_identities(conn, request_id)])


def add_event(
    conn: sa.Connection, request_id: str, at: datetime, actor: str, event: str, detail: str
) -> None:
    """Append one audit event (the only write request_events ever gets)."""
    actor = required_text(actor, "actor", 128)
    values = [str(i.value).lower() for i in fetch_identities(conn, request_id)]
    if any(len(v) >= MIN_SECRET and v in actor.lower() for v in values):
        raise RequestError(f"request {request_id}: actor must not contain the subject's identity")
    values = dict(request_id=request_id, at=at, actor=actor, event=event, detail=detail)
    conn.execute(request_events.insert().values(values))


def drop_identities(
    conn: sa.Connection, request_id: str, at: datetime, actor: str, event: str, why: str
) -> None:
    """Delete a request's identities, mark the request, and record it in the trail."""
    ri = request_identities
    n = conn.execute(ri.delete().where(ri.c.request_id == request_id)).rowcount
    conn.execute(request_secrets.delete().where(request_secrets.c.request_id == request_id))
    where = requests.c.request_id == request_id
    conn.execute(requests.update().where(where).values(identities_deleted_at=at, updated_at=at))
    add_event(conn, request_id, at, actor, event, f"{n} identities deleted: {why}")
