"""Deliveries: each archive part handed over, to whom, until when; and its deletion.

``Deliveries(store)`` works on the store's database (table ``request_deliveries``):

- ``record()`` writes the parts of one delivery (the controller's own, or a direct
  transfer to a named recipient) with their expiry and download limit, and one audit
  event ``delivered`` per part naming its file, size, sha256 and recipient;
- ``of()`` / ``held()`` / ``expired()`` answer what is held, for whom and until when
  (the API's status and downloads, the DPO's view, the retention schedule);
- ``deleted()`` marks a part deleted by retention (event ``archive_deleted``, with the
  same name, size and hash: the trail keeps what was delivered and deleted, never data);
- ``use()`` counts a download, refusing one past the limit, the expiry or deletion, in one
  compare-and-set so that two concurrent downloads cannot both take the last use;
  ``resumable()`` lets a counted download be resumed (a ``Range`` past byte 0) for 24 h
  without counting it again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from engine.request import RequestError
from request_store import model as m
from request_store import tables as t
from request_store.store import RequestStore

DEL = t.request_deliveries
CONTROLLER = "controller"  # the recipient of the controller's own delivery
RESUME_WINDOW = timedelta(hours=24)  # a counted download may be resumed this long


@dataclass(frozen=True)
class DeliveredPart:
    """One delivered file, as the delivery reported it."""

    name: str
    location: str
    bytes: int
    sha256: str


@dataclass(frozen=True)
class DeliveryRow:
    id: int
    request_id: str
    recipient: str
    part: int
    parts: int
    name: str
    location: str
    bytes: int
    sha256: str
    delivered_at: datetime
    expires_at: datetime | None
    deleted_at: datetime | None
    downloads: int
    max_downloads: int | None
    last_download_at: datetime | None


class Deliveries:
    """The deliveries of the requests in one store."""

    def __init__(self, store: RequestStore) -> None:
        self.store = store
        self._engine = store.engine
        self._writer = store.engine.execution_options(store_write=True)

    def record(
        self,
        request_id: str,
        parts: Sequence[DeliveredPart],
        *,
        actor: str,
        recipient: str = CONTROLLER,
        expires_at: datetime | None = None,
        max_downloads: int | None = None,
    ) -> list[DeliveryRow]:
        """Record a delivery's parts (replacing an earlier, undeleted record of the same
        request and recipient: a retried delivery writes the same names again)."""
        if not parts:
            raise RequestError(f"request {request_id}: a delivery has at least one part")
        if max_downloads is not None and max_downloads < 1:
            raise RequestError("max_downloads must be at least 1")
        recipient = m.required_text(recipient, "recipient", 128)
        expires = m.aware(expires_at, "expires_at") if expires_at else None
        now = self.store.now()
        ours = (DEL.c.request_id == request_id) & (DEL.c.recipient == recipient)
        with self._writer.begin() as conn:
            t.fetch(conn, request_id)
            conn.execute(DEL.delete().where(ours, DEL.c.deleted_at.is_(None)))
            for n, p in enumerate(parts, 1):
                values = dict(
                    request_id=request_id, recipient=recipient, part=n, parts=len(parts),
                    name=m.required_text(p.name, "part name", 255),
                    location=m.required_text(p.location, "part location", 2048),
                    bytes=p.bytes, sha256=m.check_sha256(p.sha256), delivered_at=now,
                    expires_at=expires, max_downloads=max_downloads,
                )  # fmt: skip
                conn.execute(DEL.insert().values(values))
                until = f", kept until {expires:%Y-%m-%d}" if expires else ""
                detail = f"{_describe(n, len(parts), p.name, p.bytes, p.sha256)} to {recipient}"
                t.add_event(conn, request_id, now, actor, "delivered", detail + until)
        return self.of(request_id, recipient)

    def of(self, request_id: str, recipient: str | None = None) -> list[DeliveryRow]:
        """A request's delivered parts (of one recipient), in order; deleted ones too."""
        where = [DEL.c.request_id == request_id]
        if recipient is not None:
            where.append(DEL.c.recipient == recipient)
        return self._rows(*where, order=(DEL.c.recipient, DEL.c.part))

    def held(self) -> list[DeliveryRow]:
        """Every part still held (not deleted), soonest expiry first."""
        return self._rows(DEL.c.deleted_at.is_(None), order=(DEL.c.expires_at, DEL.c.id))

    def expired(self, now: datetime | None = None) -> list[DeliveryRow]:
        """Parts held past their expiry: what retention deletes."""
        now = m.aware(now, "now") if now else self.store.now()
        live = DEL.c.deleted_at.is_(None) & DEL.c.expires_at.is_not(None)
        return self._rows(live, DEL.c.expires_at <= now, order=(DEL.c.expires_at, DEL.c.id))

    def deleted(self, row: DeliveryRow, *, actor: str, why: str = "expired") -> bool:
        """Mark a part deleted (after its file was removed); False if it already was."""
        now = self.store.now()
        with self._writer.begin() as conn:
            done = conn.execute(
                DEL.update()
                .where(DEL.c.id == row.id, DEL.c.deleted_at.is_(None))
                .values(deleted_at=now)
            ).rowcount
            if done:
                detail = _describe(row.part, row.parts, row.name, row.bytes, row.sha256)
                t.add_event(
                    conn, row.request_id, now, actor, "archive_deleted", f"{detail} ({why})"
                )
        return bool(done)

    def use(self, row_id: int) -> bool:
        """Count one download of a part; False when it expired, was deleted or its uses
        are spent."""
        allowed = DEL.c.max_downloads.is_(None) | (DEL.c.downloads < DEL.c.max_downloads)
        live = DEL.c.expires_at.is_(None) | (DEL.c.expires_at > self.store.now())
        update = (
            DEL.update()
            .where(DEL.c.id == row_id, DEL.c.deleted_at.is_(None), allowed, live)
            .values(downloads=DEL.c.downloads + 1, last_download_at=self.store.now())
        )
        with self._writer.begin() as conn:
            return conn.execute(update).rowcount == 1

    def resumable(self, row_id: int) -> bool:
        """Whether a download of a part may be resumed uncounted: the part is live, and
        when its downloads are limited, one was counted within ``RESUME_WINDOW``."""
        now = self.store.now()
        live = DEL.c.expires_at.is_(None) | (DEL.c.expires_at > now)
        recent = DEL.c.max_downloads.is_(None) | (DEL.c.last_download_at > now - RESUME_WINDOW)
        query = sa.select(DEL.c.id).where(
            DEL.c.id == row_id, DEL.c.deleted_at.is_(None), live, recent
        )
        with self._engine.connect() as conn:
            return conn.execute(query).first() is not None

    def _rows(self, *where: sa.ColumnElement[bool], order: tuple) -> list[DeliveryRow]:
        query = sa.select(DEL).where(*where).order_by(*order)
        with self._engine.connect() as conn:
            return [DeliveryRow(**row._mapping) for row in conn.execute(query)]


def _describe(part: int, parts: int, name: str, size: int, sha256: str) -> str:
    return f"part {part}/{parts} {name}: {size} bytes, sha256 {sha256}"
