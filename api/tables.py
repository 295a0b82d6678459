"""The API's own tables, in the request store's database (same engine, same backups).

``api_portals``        the portals allowed to call the API: id and SHA-256 of its token
``api_outbox``         one row per (status change, callback URL): the callback to send,
                       its attempts, next attempt, lease and outcome
``api_outbox_cursor``  how far the outbox has read the store's audit trail

None of them holds personal data: callbacks are built from the request row when sent.
"""

from __future__ import annotations

import sqlalchemy as sa

from request_store import tables as store_tables
from request_store.tables import UTCDateTime

API_SCHEMA_LOCK = 0x5245_5103  # PostgreSQL advisory lock key (store uses ...01, ...02)
_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

metadata = sa.MetaData()

portals = sa.Table(
    "api_portals",
    metadata,
    sa.Column("portal_id", sa.String(64), primary_key=True),
    sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

outbox = sa.Table(
    "api_outbox",
    metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(64), nullable=False, index=True),
    sa.Column("event_id", sa.BigInteger, nullable=False),  # request_events.id
    sa.Column("state", sa.String(16), nullable=False),  # the store state reached
    sa.Column("url_index", sa.Integer, nullable=False),  # position in callback_urls
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),
    sa.Column("lease_until", UTCDateTime),  # a sender holds the row until then
    sa.Column("sent_at", UTCDateTime),  # acknowledged (2xx): never sent again
    sa.Column("abandoned_at", UTCDateTime),  # gave up after the give-up period
    sa.Column("last_error", sa.String(200)),  # "HTTP 503", "ConnectError": never a body
    # one row per status change and URL: a change is never enqueued twice
    sa.UniqueConstraint("event_id", "url_index", name="uq_api_outbox_event_url"),
    sa.Index("ix_api_outbox_pending", "sent_at", "abandoned_at", "id"),
    sqlite_autoincrement=True,
)

cursor = sa.Table(
    "api_outbox_cursor",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("last_event_id", sa.BigInteger, nullable=False),
)


def create(engine: sa.Engine) -> None:
    """Create the API's tables if missing (idempotent, safe from several processes)."""
    with engine.execution_options(store_write=True).begin() as conn:
        store_tables.lock(conn, API_SCHEMA_LOCK)
        metadata.create_all(conn)
