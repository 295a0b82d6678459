"""The RequestStore: durable export requests shared by Dagster, the DPO and the API.

Every state change is a compare-and-set (``UPDATE ... WHERE state = <expected>``) and
writes its audit event in the same transaction, so two processes can never both claim
a request and the trail never disagrees with the state. Reaching completed, denied or
cancelled deletes the request's identities in that same transaction.

A request's insert is :func:`insert_request` on a connection, so that subscriptions and
organisation exports can issue requests inside their own compare-and-set transaction
(request_store/subscriptions.py, organisations.py): their state and the requests they
issue commit together or not at all.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Self

import sqlalchemy as sa

from engine.request import ExportRequest, Identity, RequestError, new_request_id
from request_store import deadlines
from request_store import model as m
from request_store import tables as t
from request_store.model import (
    DEFAULT_CONTROLLER,
    AuditEvent,
    DeadlineView,
    ExtensionRefused,
    InvalidTransition,
    RequestSpec,
    State,
    StoredRequest,
)

Clock = Callable[[], datetime]
REQ, EVT = t.requests, t.request_events
_VERB = {State.RUNNING: "run", State.COMPLETED: "complete", State.FAILED: "fail"}
_VERB |= {State.DENIED: "deny", State.CANCELLED: "cancel"}


@dataclass(frozen=True)
class NewRequest:
    """A checked submission, ready to be inserted in any transaction (insert_request)."""

    row: dict[str, Any] = field(repr=False)
    identities: tuple[Identity, ...] = field(repr=False)
    detail: str  # the "received" event's detail: no identity values
    secret: str | None = field(default=None, repr=False)  # a sealed transfer credential

    @property
    def request_id(self) -> str:
        return str(self.row["request_id"])


def prepare_request(now: datetime, spec: RequestSpec) -> NewRequest:
    """Check a submission received at ``now`` and give it a new opaque id; raises
    RequestError naming what is wrong, never a value."""
    row, idents = m.new_request_values(new_request_id(), now, spec)
    if spec.transfer_secret is not None and not spec.transfer_to:
        raise RequestError("a transfer secret needs a transfer recipient")
    types = ",".join(i.type for i in idents)
    detail = f"channel {row['channel']}, {row['request_type']}, formats {row['formats']}, "
    detail += f"identities {types}, deadline {row['deadline']:%Y-%m-%d}"
    if row["transfer_to"]:
        detail += f", transfer to {row['transfer_to']}"
    if row["lane"] != "single":
        detail += f", lane {row['lane']}"
    if row["batch_ref"]:
        detail += f", batch {row['batch_ref']}"
    return NewRequest(row, idents, detail, spec.transfer_secret)


def insert_request(conn: sa.Connection, new: NewRequest, actor: str) -> StoredRequest:
    """Insert a prepared request with its identities, secret and "received" event, in the
    caller's write transaction. Takes the seq lock first (PostgreSQL), so seq values
    commit in order and a sensor's cursor skips nothing; a transaction that inserts
    requests should take it before any other lock (or row update) to keep one lock order."""
    t.lock(conn, t.SEQ_LOCK)
    conn.execute(REQ.insert().values(new.row))
    t.add_identities(conn, new.request_id, new.identities)
    if new.secret is not None:
        values = dict(request_id=new.request_id, sealed=new.secret)
        conn.execute(t.request_secrets.insert().values(values))
    t.add_event(conn, new.request_id, new.row["received_at"], actor, "received", new.detail)
    return t.fetch(conn, new.request_id)


class RequestStore:
    """Export requests on SQLite (a file, WAL) or PostgreSQL; safe across processes."""

    def __init__(self, engine: sa.Engine, clock: Clock | None = None) -> None:
        self._engine = engine
        self._writer = engine.execution_options(store_write=True)  # SQLite: BEGIN IMMEDIATE
        self._clock = clock or (lambda: datetime.now(UTC))

    @classmethod
    def open(cls, url_or_path: str | os.PathLike[str], *, clock: Clock | None = None) -> Self:
        """Open a store (a SQLite file path or a database URL); creates missing tables."""
        engine = t.connect(url_or_path)
        with engine.execution_options(store_write=True).begin() as conn:
            t.lock(conn, t.SCHEMA_LOCK)
            t.create_schema(conn)
        return cls(engine, clock)

    @property
    def engine(self) -> sa.Engine:
        """The SQLAlchemy engine, for tables that live beside the store's (the API's
        outbox). ``engine.execution_options(store_write=True)`` opens SQLite write
        transactions with BEGIN IMMEDIATE, as the store's own writes do."""
        return self._engine

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------

    def submit(self, spec: RequestSpec, *, actor: str | None = None) -> tuple[StoredRequest, bool]:
        """Store a new request (``RequestSpec`` tells what each field does); returns
        (request, created). An external id the controller already used returns that
        request with created=False (OpenDSR idempotency). ``actor`` (default: the
        channel) is named in the "received" event."""
        new = prepare_request(self._now(), spec)
        try:
            with self._writer.begin() as conn:
                return insert_request(conn, new, actor or spec.channel), True
        except sa.exc.IntegrityError:  # the unique (controller, external_id): a repeat
            external = new.row["external_id"]
            existing = external and self.find_external(external, new.row["controller"])
            if not existing:
                raise
            return existing, False

    def claim(self, request_id: str, actor: str = "sensor") -> bool:
        """received/failed -> running. True if this caller won; False if the request is
        running already, closed, has had its identities purged, or another process won."""
        now = self._now()
        with self._writer.begin() as conn:
            req = t.fetch(conn, request_id)
            if State.RUNNING not in m.TRANSITIONS[req.state] or req.identities_deleted_at:
                return False
            values = dict(state="running", attempts=req.attempts + 1, failure=None, updated_at=now)
            if conn.execute(self._cas(request_id, req.state).values(values)).rowcount != 1:
                return False
            detail = f"attempt {req.attempts + 1}, from {req.state}"
            t.add_event(conn, request_id, now, actor, "claimed", detail)
            return True

    def complete(
        self, request_id: str, *, location: str, sha256: str, count: int, actor: str = "sensor"
    ) -> StoredRequest:
        """running -> completed with the delivered archive; deletes the identities."""
        location = m.required_text(location, "result location", 2048)
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise RequestError(f"request {request_id}: result count must be an integer >= 0")
        values = dict(result_location=location, result_sha256=m.check_sha256(sha256))
        values["result_count"] = count
        return self._move(request_id, State.COMPLETED, actor, f"{count} records", values)

    def fail(self, request_id: str, reason: str, actor: str = "sensor") -> StoredRequest:
        """running -> failed; ``reason`` names the failed source, never data values."""
        return self._move(request_id, State.FAILED, actor, reason, {}, field="failure")

    def deny(self, request_id: str, reason: str, actor: str) -> StoredRequest:
        """received/failed -> denied (Art. 12(4): the reasons are told to the subject)."""
        return self._move(request_id, State.DENIED, actor, reason, {}, field="denial_reason")

    def cancel(self, request_id: str, actor: str, reason: str = "cancelled") -> StoredRequest:
        """received/failed -> cancelled (withdrawn by the subject or the controller)."""
        return self._move(request_id, State.CANCELLED, actor, reason, {})

    def extend(self, request_id: str, reason: str, actor: str) -> StoredRequest:
        """Extend the deadline once by two months (Art. 12(3)), before it has passed."""
        m.clean_text(reason, "extension reason", ())
        m.required_text(actor, "actor", 128)
        now = self._now()
        with self._writer.begin() as conn:
            req = t.fetch(conn, request_id)
            why = "it was already extended once" if req.extended_deadline else ""
            why = "its original deadline has passed" if now > req.deadline else why
            why = "the request is closed" if not req.is_open else why
            if why:
                raise ExtensionRefused(request_id, req.state, "extend", why)
            text = t.redacted(conn, request_id, reason, "extension reason")
            new = deadlines.extended_deadline(req.deadline)
            cas = self._cas(request_id, req.state).where(REQ.c.extended_deadline.is_(None))
            values = dict(extended_deadline=new, extension_reason=text, updated_at=now)
            if conn.execute(cas.values(values)).rowcount != 1:
                raise ExtensionRefused(request_id, req.state, "extend", "changed concurrently")
            detail = f"deadline {req.deadline:%Y-%m-%d} -> {new:%Y-%m-%d}: {text}"
            t.add_event(conn, request_id, now, actor, "extended", detail)
            return t.fetch(conn, request_id)

    def purge_identities(self, older_than: timedelta, actor: str = "system") -> list[str]:
        """Delete the identities of failed requests untouched for ``older_than``; returns
        their ids. They stay failed (the DPO sees the outcome) but cannot be re-run."""
        if not isinstance(older_than, timedelta) or older_than < timedelta(0):
            raise RequestError("older_than must be a timedelta of zero or more")
        now = self._now()
        stale = sa.and_(
            REQ.c.state == State.FAILED.value,
            REQ.c.identities_deleted_at.is_(None),
            REQ.c.updated_at <= now - older_than,
        )
        with self._engine.connect() as conn:
            ids = list(conn.scalars(sa.select(REQ.c.request_id).where(stale).order_by(REQ.c.seq)))
        purged = []
        for request_id in ids:
            with self._writer.begin() as conn:  # re-checked: a re-run may have started
                claim = REQ.update().where(REQ.c.request_id == request_id, stale)
                if conn.execute(claim.values(identities_deleted_at=now)).rowcount:
                    why = f"failed and untouched for {older_than.days} days or more"
                    t.drop_identities(conn, request_id, now, actor, "identities_purged", why)
                    purged.append(request_id)
        if purged:
            t.scrub(self._engine)
        return purged

    # -- reading ---------------------------------------------------------------------

    def get(self, request_id: str) -> StoredRequest:
        """The request (raises RequestNotFound)."""
        with self._engine.connect() as conn:
            return t.fetch(conn, request_id)

    def find_external(
        self, external_id: str, controller: str = DEFAULT_CONTROLLER
    ) -> StoredRequest | None:
        """The request a controller posted under ``external_id`` (OpenDSR id), if any."""
        where = (REQ.c.controller == controller, REQ.c.external_id == external_id)
        found = self._list(*where, limit=1)
        return found[0] if found else None

    def list_new(
        self, after_seq: int = 0, limit: int = 100, lane: str | None = None
    ) -> list[StoredRequest]:
        """Requests still ``received`` with seq > after_seq, by seq (a sensor's cursor);
        only ``lane``'s when given (a row from before lanes counts as single)."""
        where = [REQ.c.state == "received", REQ.c.seq > after_seq]
        if lane == "single":
            where.append(sa.or_(REQ.c.lane == "single", REQ.c.lane.is_(None)))
        elif lane is not None:
            where.append(REQ.c.lane == lane)
        return self._list(*where, limit=limit)

    def list_waiting(self, lane: str = "bulk", limit: int = 10_000) -> list[StoredRequest]:
        """Requests of ``lane`` still ``received``, oldest (seq) first: the nightly batch's
        work list. A row from before lanes (lane NULL) counts as single."""
        lane = m.check_choice(lane, m.LANES, "lane")
        lane_of = sa.func.coalesce(REQ.c.lane, "single")
        return self._list(REQ.c.state == State.RECEIVED.value, lane_of == lane, limit=limit)

    def list_batch(self, batch_ref: str) -> list[StoredRequest]:
        """Every request a subscription or organisation export issued, any state, by seq."""
        return self._list(REQ.c.batch_ref == batch_ref)

    def list_in_state(self, state: State | str, limit: int = 1000) -> list[StoredRequest]:
        """Requests in one state by seq (e.g. ``running`` ones, to reconcile with runs)."""
        return self._list(REQ.c.state == State(state).value, limit=limit)

    def list_open_with_deadlines(self, now: datetime | None = None) -> list[DeadlineView]:
        """Open requests (received, running, failed), soonest deadline first, classified."""
        now = m.aware(now, "now") if now else self._now()
        due = sa.func.coalesce(REQ.c.extended_deadline, REQ.c.deadline)
        open_ = REQ.c.state.in_([s.value for s in m.OPEN_STATES])
        reqs = self._list(open_, order=(due, REQ.c.seq))
        return [DeadlineView(r, r.deadline_status(now), r.days_left(now)) for r in reqs]

    def identities(self, request_id: str) -> tuple[Identity, ...]:
        """The subject's identities; empty once deleted. Personal data: never log them."""
        with self._engine.connect() as conn:
            t.fetch(conn, request_id)
            return t.fetch_identities(conn, request_id)

    def export_request(self, request_id: str, as_of: datetime | None = None) -> ExportRequest:
        """The engine's ExportRequest for a stored request whose identities remain."""
        req, idents = self.get(request_id), self.identities(request_id)
        if not idents:
            raise RequestError(f"request {request_id}: identities were deleted ({req.state})")
        as_of = as_of or self._now().replace(microsecond=0)
        options: dict[str, Any] = {"encrypt_to": req.encrypt_to}
        if req.max_part_bytes is not None:
            options["max_part_bytes"] = req.max_part_bytes
        return ExportRequest(request_id, req.request_type, idents, req.formats, as_of, **options)  # type: ignore[arg-type]

    def transfer_secret(self, request_id: str) -> str | None:
        """The sealed credential of a direct transfer, while the request is open."""
        q = sa.select(t.request_secrets.c.sealed).where(
            t.request_secrets.c.request_id == request_id
        )
        with self._engine.connect() as conn:
            return conn.execute(q).scalar()

    def events(self, request_id: str) -> list[AuditEvent]:
        """The audit trail of one request, oldest first."""
        query = sa.select(EVT).where(EVT.c.request_id == request_id).order_by(EVT.c.id)
        with self._engine.connect() as conn:
            return [AuditEvent(**row._mapping) for row in conn.execute(query)]

    def now(self) -> datetime:
        """The store's clock (UTC-aware): the time its events and deadlines are taken at."""
        return self._now()

    # -- internals -------------------------------------------------------------------

    def _now(self) -> datetime:
        return m.aware(self._clock(), "clock time")

    def _list(self, *where: Any, limit: int | None = None, order: Any = (REQ.c.seq,)) -> list:
        query = sa.select(REQ).where(*where).order_by(*order).limit(limit)
        with self._engine.connect() as conn:
            return [t.to_request(row._mapping) for row in conn.execute(query)]

    @staticmethod
    def _cas(request_id: str, expected: State) -> sa.Update:
        return REQ.update().where(REQ.c.request_id == request_id, REQ.c.state == expected.value)

    def _move(
        self, request_id: str, to: State, actor: str, reason: str, values: dict, field: str = ""
    ) -> StoredRequest:
        """One allowed transition: compare-and-set, its event, and identity deletion."""
        m.clean_text(reason, "reason", ())
        m.required_text(actor, "actor", 128)
        now = self._now()
        with self._writer.begin() as conn:
            state = t.fetch(conn, request_id).state
            if to not in m.TRANSITIONS[state]:
                raise InvalidTransition(request_id, state, _VERB[to])
            text = t.redacted(conn, request_id, reason, "reason")
            values = {**values, field: text} if field else values
            cas = self._cas(request_id, state).values(state=to.value, updated_at=now, **values)
            if conn.execute(cas).rowcount != 1:
                state = t.fetch(conn, request_id).state
                raise InvalidTransition(request_id, state, _VERB[to], "changed concurrently")
            t.add_event(conn, request_id, now, actor, to.value, text)
            if to in m.CLOSED_STATES:
                t.drop_identities(conn, request_id, now, actor, "identities_deleted", to.value)
            result = t.fetch(conn, request_id)
        if to in m.CLOSED_STATES:
            t.scrub(self._engine)
        return result
