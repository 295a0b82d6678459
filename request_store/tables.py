"""SQLAlchemy Core tables of the request store, and the audit trail's append-only triggers.

Five tables: ``requests`` (no personal data), ``request_identities`` (the only
personal data, deleted when a request closes), ``request_secrets`` (sealed credentials
that came with a request, deleted with the identities), ``request_deliveries`` (each archive part
handed over, its expiry and deletion) and ``request_events`` (the audit trail,
append-only: triggers in the database refuse UPDATE, DELETE and (PostgreSQL) TRUNCATE,
so neither a hand-written statement nor another program can rewrite history short of
dropping the trigger, which takes DDL rights the application role need not have).

Bulk work that issues requests has its own tables: ``subscriptions`` (recurring exports,
request_store/subscriptions.py) with ``subscription_identities`` (personal data, deleted
when the subscription ends or is cancelled) and ``subscription_events``, and
``organisation_exports`` (an organisation's members, request_store/organisations.py)
with ``organisation_events``. Both event tables are append-only like ``request_events``.
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
    BatchEvent,
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
    # the lane (added later): "single" runs at once, "bulk" waits for the nightly batch;
    # NULL (a row older than the column) means single
    sa.Column("lane", sa.String(8), server_default="single"),
    # the subscription ("sub-...") or organisation export ("org-...") that issued it
    sa.Column("batch_ref", sa.String(64)),
    # idempotency of OpenDSR's subject_request_id; NULL external ids never collide
    sa.UniqueConstraint("controller", "external_id", name="uq_requests_external"),
    sa.Index("ix_requests_state_seq", "state", "seq"),
    sa.Index("ix_requests_batch_ref", "batch_ref"),
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

# A recurring export: one bulk-lane request every ``every_months`` calendar months from
# ``starts_at`` (the k-th falls due at starts_at + k * every_months, day clamped) while
# before ``until``. ``issued`` counts the requests issued: the compare-and-set key.
subscriptions = sa.Table(
    "subscriptions",
    metadata,
    sa.Column("subscription_id", sa.String(64), primary_key=True),
    sa.Column("controller", sa.String(128), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("request_type", sa.String(16), nullable=False),
    sa.Column("formats", sa.String(64), nullable=False),  # comma-separated
    sa.Column("every_months", sa.Integer, nullable=False),
    sa.Column("starts_at", UTCDateTime, nullable=False),
    sa.Column("until", UTCDateTime, nullable=False),
    sa.Column("next_due", UTCDateTime, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # active | ended | cancelled
    sa.Column("issued", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_subscriptions_due", "state", "next_due"),
)

# A subscriber's identities, encoded as request_identities; deleted when it stops.
subscription_identities = sa.Table(
    "subscription_identities",
    metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column(
        "subscription_id",
        sa.String(64),
        sa.ForeignKey("subscriptions.subscription_id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("value", sa.Text, nullable=False),
)

# A business customer's export: one bulk-lane request per member plus an index. No
# personal data: org_id names the organisation, the members' identities go to requests.
organisation_exports = sa.Table(
    "organisation_exports",
    metadata,
    sa.Column("export_id", sa.String(64), primary_key=True),
    sa.Column("controller", sa.String(128), nullable=False),
    sa.Column("org_id", sa.String(128), nullable=False),
    sa.Column("request_type", sa.String(16), nullable=False),
    sa.Column("formats", sa.String(64), nullable=False),  # comma-separated
    sa.Column("due_at", UTCDateTime, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # scheduled|expanded|completed|cancelled
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("members", sa.Integer, nullable=False, server_default="0"),
    sa.Column("index_location", sa.Text),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Index("ix_organisation_exports_due", "state", "due_at"),
)


def _event_table(name: str, key: str) -> sa.Table:
    """An append-only audit table like request_events, keyed by ``key``."""
    return sa.Table(
        name,
        metadata,
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column(key, sa.String(64), nullable=False, index=True),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sqlite_autoincrement=True,
        info={"key": key},
    )


subscription_events = _event_table("subscription_events", "subscription_id")
organisation_events = _event_table("organisation_events", "export_id")

# Every audit table gets the same append-only triggers (names derived from the table's).
AUDIT_TABLES = ("request_events", "subscription_events", "organisation_events")


def _sqlite_triggers(table: str) -> list[str]:
    return [
        f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} "
        f"ON {table} BEGIN "
        f"SELECT RAISE(ABORT, '{table} is append-only'); END"
        for op in ("UPDATE", "DELETE")
    ]


def _pg_triggers(table: str) -> list[str]:
    return [
        f"CREATE OR REPLACE FUNCTION {table}_append_only() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN "
        f"RAISE EXCEPTION '{table} is append-only'; END $$",
        f"CREATE OR REPLACE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE "
        f"ON {table} FOR EACH ROW EXECUTE FUNCTION {table}_append_only()",
        f"CREATE OR REPLACE TRIGGER {table}_no_truncate BEFORE TRUNCATE "
        f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION {table}_append_only()",
    ]


# Nullable columns added after the tables were first released: (table, column, DDL type).
_ADDED_COLUMNS = (
    ("requests", "request_digest", "VARCHAR(64)"),
    ("requests", "max_part_bytes", "BIGINT"),
    ("requests", "encrypt_to", "TEXT"),
    ("requests", "transfer_to", "VARCHAR(64)"),
    ("requests", "lane", "VARCHAR(8) DEFAULT 'single'"),
    ("requests", "batch_ref", "VARCHAR(64)"),
)
# Indexes on those columns, created where missing (create_all only indexes new tables).
_ADDED_INDEXES = ("ix_requests_batch_ref",)


def add_missing_columns(conn: sa.Connection) -> None:
    """Add the nullable columns a database created by an older version lacks."""
    inspector = sa.inspect(conn)
    for table, column, ddl_type in _ADDED_COLUMNS:
        if column not in {c["name"] for c in inspector.get_columns(table)}:
            conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {ddl_type}")
    for index in requests.indexes:
        if index.name in _ADDED_INDEXES:
            index.create(conn, checkfirst=True)


def create_schema(conn: sa.Connection) -> None:
    """Create missing tables and columns and (re)install the audit triggers. Idempotent."""
    metadata.create_all(conn)
    add_missing_columns(conn)
    for table in AUDIT_TABLES:
        if conn.dialect.name != "postgresql":
            for statement in _sqlite_triggers(table):
                conn.exec_driver_sql(statement)
            continue
        # CREATE OR REPLACE TRIGGER locks the table: only when a trigger is missing
        installed = conn.exec_driver_sql(
            f"SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass('{table}') "
            f"AND tgname IN ('{table}_no_change', '{table}_no_truncate')"
        ).scalar_one()
        if installed < 2:
            for statement in _pg_triggers(table):
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
    values["lane"] = values.get("lane") or "single"  # NULL: a row from before lanes
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


# -- subscriptions and organisation exports: their identities and audit trails ---------


def fetch_subscription_identities(
    conn: sa.Connection, subscription_id: str
) -> tuple[Identity, ...]:
    si = subscription_identities
    query = sa.select(si.c.type, si.c.value).where(si.c.subscription_id == subscription_id)
    return tuple(Identity(r.type, r.value) for r in conn.execute(query.order_by(si.c.position)))


def add_subscription_identities(
    conn: sa.Connection, subscription_id: str, idents: Sequence[Identity]
) -> None:
    rows = [
        dict(subscription_id=subscription_id, position=n, type=i.type, value=i.value)
        for n, i in enumerate(idents, 1)
    ]
    conn.execute(subscription_identities.insert(), rows)


def drop_subscription_identities(conn: sa.Connection, subscription_id: str) -> int:
    """Delete a subscription's identities; returns how many there were."""
    si = subscription_identities
    return conn.execute(si.delete().where(si.c.subscription_id == subscription_id)).rowcount


def add_batch_event(
    conn: sa.Connection,
    table: sa.Table,
    ref: str,
    at: datetime,
    actor: str,
    event: str,
    detail: str,
    identity_values: Sequence[str] = (),
) -> None:
    """Append one event to subscription_events / organisation_events (their only write).
    ``identity_values``: the subject's, which the actor must not contain."""
    actor = required_text(actor, "actor", 128)
    if any(len(v) >= MIN_SECRET and v.lower() in actor.lower() for v in identity_values):
        raise RequestError(f"{ref}: actor must not contain the subject's identity")
    values = {table.info["key"]: ref, "at": at, "actor": actor, "event": event, "detail": detail}
    conn.execute(table.insert().values(values))


def fetch_batch_events(conn: sa.Connection, table: sa.Table, ref: str) -> list[BatchEvent]:
    """One subscription's / organisation export's trail, oldest first."""
    key = table.c[table.info["key"]]
    query = sa.select(table).where(key == ref).order_by(table.c.id)
    return [
        BatchEvent(r.id, r._mapping[key.name], r.at, r.actor, r.event, r.detail)
        for r in conn.execute(query)
    ]
