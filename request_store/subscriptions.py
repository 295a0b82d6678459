"""Recurring exports: a person asks for a fresh export every N months for a period.

A subscription keeps its own copy of the subscriber's identities
(``subscription_identities``) and issues one bulk-lane request each time it falls due
(:meth:`Subscriptions.issue_due`, run nightly); the requests then live like any other,
waiting for the nightly batch (``RequestStore.list_waiting``). The k-th export falls due
at ``starts_at + k * every_months`` calendar months (day clamped: a subscription started
on 31 January is due on 28/29 February, then on 31 March), counted from the start rather
than from the previous due date so that one short month does not pull every later date
forward. Exports fall due while before ``until`` (= start + ``months``): every 2 months
for 12 months is 6 exports. Issuing the last one ends the subscription and deletes its
identities in the same transaction; cancelling does the same at once.

Issuing is a compare-and-set on ``issued`` (and the state) in the transaction that
inserts the request and its audit events, so two processes calling issue_due together
issue each occurrence exactly once. One call issues at most one export per subscription:
a backlog (the schedule did not run for months) is caught up by the following calls.
Cancelling stops future exports; requests already issued stay (each is the subject's own
request, cancelled through the store like any other).

The audit trail (``subscription_events``, append-only) holds counts, dates, identity
types and request ids, never an identity value.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from engine.request import FORMATS, Identity, RequestError
from request_store import model as m
from request_store import tables as t
from request_store.deadlines import add_months
from request_store.model import (
    DEFAULT_CONTROLLER,
    BatchEvent,
    BatchNotFound,
    InvalidBatchTransition,
    RequestSpec,
)
from request_store.store import RequestStore, insert_request, prepare_request

SUB, EVT = t.subscriptions, t.subscription_events
WHAT = "subscription"
ACTIVE, ENDED, CANCELLED = "active", "ended", "cancelled"
SUBSCRIPTION_STATES: tuple[str, ...] = (ACTIVE, ENDED, CANCELLED)
MAX_EVERY_MONTHS, MAX_MONTHS = 12, 36


@dataclass(frozen=True)
class Subscription:
    """One subscription as stored. Times are UTC-aware; no identity values here."""

    subscription_id: str
    controller: str
    channel: str  # where the subscription came from (its requests' channel: subscription)
    request_type: str
    formats: tuple[str, ...]
    every_months: int
    starts_at: datetime  # the first export's due time, the anchor of all later ones
    until: datetime  # exports fall due strictly before this
    next_due: datetime
    state: str  # active | ended | cancelled
    issued: int  # requests issued so far
    created_at: datetime
    updated_at: datetime


def add_months_at(moment: datetime, months: int) -> datetime:
    """The same day number and time ``months`` calendar months later, the day clamped
    to the month's last (31 Jan + 1 month = 28 Feb, or 29 in a leap year)."""
    return datetime.combine(add_months(moment.date(), months), moment.timetz())


def _whole(value: object, what: str, low: int, high: int, low_name: str = "") -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise RequestError(f"{what} must be a whole number from {low_name or low} to {high}")
    return value


def _to_subscription(row: sa.Row) -> Subscription:
    values = dict(row._mapping)
    values["formats"] = tuple(values["formats"].split(","))
    return Subscription(**values)


def _fetch(conn: sa.Connection, subscription_id: str) -> Subscription:
    row = conn.execute(sa.select(SUB).where(SUB.c.subscription_id == subscription_id)).first()
    if row is None:
        raise BatchNotFound(WHAT, subscription_id)
    return _to_subscription(row)


def _values(idents: Sequence[Identity]) -> list[str]:
    return [str(i.value) for i in idents]


class Subscriptions:
    """Recurring exports kept beside a RequestStore (same database, same clock)."""

    def __init__(self, store: RequestStore) -> None:
        self._store = store
        self._engine = store.engine
        self._writer = store.engine.execution_options(store_write=True)  # BEGIN IMMEDIATE

    # -- writing ---------------------------------------------------------------------

    def subscribe(
        self,
        *,
        identities: Sequence[Identity],
        request_type: str = "portability",
        formats: Sequence[str] = FORMATS,
        every_months: int = 2,
        months: int = 12,
        controller: str = DEFAULT_CONTROLLER,
        channel: str = "portal",
        start: datetime | None = None,
        actor: str | None = None,
    ) -> str:
        """Subscribe a person to an export every ``every_months`` (1-12) months for
        ``months`` (``every_months``-36) months, the first due at ``start`` (default: now).
        The identities, type and formats are checked as a submission's are. Returns the
        subscription id ("sub-" and a random part: opaque)."""
        now = self._store.now()
        subscription_id = f"sub-{uuid.uuid4().hex}"
        idents, fmts = m.check_subject(subscription_id, request_type, identities, formats, now)
        every = _whole(every_months, "every_months", 1, MAX_EVERY_MONTHS)
        total = _whole(months, "months", every, MAX_MONTHS, "every_months")
        starts = m.aware(start, "start") if start is not None else now
        until = add_months_at(starts, total)
        row = dict(
            subscription_id=subscription_id,
            controller=m.required_text(controller, "controller", 128),
            channel=m.check_choice(channel, m.CHANNELS, "channel"),
            request_type=request_type,
            formats=",".join(fmts),
            every_months=every,
            starts_at=starts,
            until=until,
            next_due=starts,
            state=ACTIVE,
            issued=0,
            created_at=now,
            updated_at=now,
        )
        types = ",".join(i.type for i in idents)
        detail = f"{request_type}, formats {row['formats']}, identities {types}, every "
        detail += f"{every} months for {total} months, first due {starts:%Y-%m-%d}, "
        detail += f"until {until:%Y-%m-%d}"
        with self._writer.begin() as conn:
            conn.execute(SUB.insert().values(row))
            t.add_subscription_identities(conn, subscription_id, idents)
            self._event(conn, subscription_id, now, actor or channel, "subscribed", detail, idents)
        return subscription_id

    def issue_due(self, now: datetime | None = None, actor: str = "schedule") -> list[str]:
        """Issue one bulk-lane request for each subscription due at ``now`` (default: the
        store's clock); returns the new request ids. Safe to run from several processes
        at once: each occurrence is issued exactly once."""
        now = self._at(now)
        actor = m.required_text(actor, "actor", 128)
        issued = [self._issue(sid, now, actor) for sid in self.due(now)]
        ended = [rid for rid, end in issued if rid and end]
        if ended:
            t.scrub(self._engine)
        return [rid for rid, _ in issued if rid]

    def cancel(self, subscription_id: str, actor: str) -> None:
        """active -> cancelled: no further exports; the identities are deleted at once.
        Requests already issued are not touched. Raises InvalidBatchTransition when the
        subscription is not active."""
        actor = m.required_text(actor, "actor", 128)
        now = self._store.now()
        with self._writer.begin() as conn:
            sub = _fetch(conn, subscription_id)
            if sub.state != ACTIVE:
                raise InvalidBatchTransition(WHAT, subscription_id, sub.state, "cancel")
            cas = SUB.update().where(
                SUB.c.subscription_id == subscription_id, SUB.c.state == ACTIVE
            )
            if conn.execute(cas.values(state=CANCELLED, updated_at=now)).rowcount != 1:
                state = _fetch(conn, subscription_id).state
                why = "changed concurrently"
                raise InvalidBatchTransition(WHAT, subscription_id, state, "cancel", why)
            idents = t.fetch_subscription_identities(conn, subscription_id)
            n = t.drop_subscription_identities(conn, subscription_id)
            detail = f"after {sub.issued} exports; {n} identities deleted"
            self._event(conn, subscription_id, now, actor, CANCELLED, detail, idents)
        t.scrub(self._engine)

    # -- reading ---------------------------------------------------------------------

    def get(self, subscription_id: str) -> Subscription:
        """The subscription (raises BatchNotFound)."""
        with self._engine.connect() as conn:
            return _fetch(conn, subscription_id)

    def identities(self, subscription_id: str) -> tuple[Identity, ...]:
        """The subscriber's identities; empty once ended or cancelled. Never log them."""
        with self._engine.connect() as conn:
            _fetch(conn, subscription_id)
            return t.fetch_subscription_identities(conn, subscription_id)

    def due(self, now: datetime | None = None) -> list[str]:
        """Ids of active subscriptions due at ``now`` (default: the store's clock),
        longest due first."""
        now = self._at(now)
        query = (
            sa.select(SUB.c.subscription_id)
            .where(SUB.c.state == ACTIVE, SUB.c.next_due <= now)
            .order_by(SUB.c.next_due, SUB.c.subscription_id)
        )
        with self._engine.connect() as conn:
            return list(conn.scalars(query))

    def events(self, subscription_id: str) -> list[BatchEvent]:
        """The subscription's audit trail, oldest first."""
        with self._engine.connect() as conn:
            return t.fetch_batch_events(conn, EVT, subscription_id)

    # -- internals -------------------------------------------------------------------

    def _at(self, now: datetime | None) -> datetime:
        return m.aware(now, "now") if now is not None else self._store.now()

    def _issue(self, subscription_id: str, now: datetime, actor: str) -> tuple[str | None, bool]:
        """Issue the subscription's next export if still due; (request id, ended) or
        (None, False) when another process issued it first."""
        at = self._store.now()
        with self._writer.begin() as conn:
            t.lock(conn, t.SEQ_LOCK)  # first, as insert_request would: one lock order
            sub = _fetch(conn, subscription_id)
            if sub.state != ACTIVE or sub.next_due > now:
                return None, False
            k = sub.issued + 1
            following = add_months_at(sub.starts_at, k * sub.every_months)
            ended = following >= sub.until
            values = dict(next_due=following, issued=k, updated_at=at)
            if ended:
                values["state"] = ENDED
            cas = SUB.update().where(
                SUB.c.subscription_id == subscription_id,
                SUB.c.state == ACTIVE,
                SUB.c.issued == sub.issued,
            )
            if conn.execute(cas.values(values)).rowcount != 1:
                return None, False  # another process won this occurrence
            idents = t.fetch_subscription_identities(conn, subscription_id)
            spec = RequestSpec(
                sub.request_type, idents, sub.formats, channel="subscription",
                controller=sub.controller, lane="bulk", batch_ref=subscription_id,
            )  # fmt: skip
            new = prepare_request(at, spec)
            request = insert_request(conn, new, actor)
            detail = f"export {k}, due {sub.next_due:%Y-%m-%d}, request {request.request_id}"
            if not ended:
                detail += f", next due {following:%Y-%m-%d}"
            self._event(conn, subscription_id, at, actor, "issued", detail, idents)
            if ended:
                n = t.drop_subscription_identities(conn, subscription_id)
                detail = f"{k} exports issued, period over; {n} identities deleted"
                self._event(conn, subscription_id, at, actor, ENDED, detail, idents)
            return request.request_id, ended

    @staticmethod
    def _event(
        conn: sa.Connection,
        subscription_id: str,
        at: datetime,
        actor: str,
        event: str,
        detail: str,
        idents: Sequence[Identity],
    ) -> None:
        t.add_batch_event(conn, EVT, subscription_id, at, actor, event, detail, _values(idents))
