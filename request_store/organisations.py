"""Organisation exports: a business customer (or its admin) asks for all its members' data.

The export is scheduled for a due time (``schedule``); when it is due, the batch that
knows the organisation's members expands it into one bulk-lane request per member
(``expand``), writes an index for the organisation once the members' archives are
done, and completes it with the index's location (``complete``).

States: scheduled -> expanded -> completed; scheduled or expanded -> cancelled. Every
change is a compare-and-set with its audit event (``organisation_events``,
append-only) in the same transaction.

``expand`` inserts every member's request and moves the export to expanded in ONE
transaction: a crash leaves either nothing or everything. Expanding an export that is
no longer scheduled (expanded already, by this or a concurrent process, or cancelled)
does nothing and returns ``[]``, so a retried or doubled schedule tick is harmless.
An organisation without members is expanded with ``members == 0`` (no requests); it is
completed like any other once its (empty) index is written.

``cancel`` of an expanded export also cancels its member requests still waiting
(received or failed; their identities are deleted); running ones finish.

``org_id`` names a business customer, not a person, and the members' identities go
only to their requests' identity rows: the audit trail holds counts, dates and ids.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from engine.request import FORMATS, REQUEST_TYPES, Identity, RequestError
from request_store import model as m
from request_store import tables as t
from request_store.model import (
    DEFAULT_CONTROLLER,
    BatchEvent,
    BatchNotFound,
    InvalidBatchTransition,
    RequestSpec,
    State,
)
from request_store.store import NewRequest, RequestStore, insert_request, prepare_request

ORG, EVT, REQ = t.organisation_exports, t.organisation_events, t.requests
WHAT = "organisation export"
SCHEDULED, EXPANDED, COMPLETED, CANCELLED = "scheduled", "expanded", "completed", "cancelled"
EXPORT_STATES: tuple[str, ...] = (SCHEDULED, EXPANDED, COMPLETED, CANCELLED)
_WAITING = (State.RECEIVED.value, State.FAILED.value)  # member requests a cancel withdraws


@dataclass(frozen=True)
class OrganisationExport:
    """One organisation export as stored (no personal data). Times are UTC-aware."""

    export_id: str
    controller: str
    org_id: str
    request_type: str
    formats: tuple[str, ...]
    due_at: datetime
    state: str  # scheduled | expanded | completed | cancelled
    created_at: datetime
    updated_at: datetime
    members: int  # member requests issued by expand
    index_location: str | None
    actor: str  # who scheduled it


def check_org_id(value: object) -> str:
    """1-128 printable characters without whitespace (the message never echoes it)."""
    ok = isinstance(value, str) and 1 <= len(value) <= 128 and value.isprintable()
    if not ok or any(c.isspace() for c in str(value)):
        raise RequestError("organisation id must be 1-128 printable characters, no whitespace")
    return str(value)


def check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    """A non-empty selection of the engine's formats, de-duplicated (order kept)."""
    fmts = tuple(dict.fromkeys(formats))
    if not fmts or any(f not in FORMATS for f in fmts):
        raise RequestError(f"formats must be a non-empty selection of {', '.join(FORMATS)}")
    return fmts


def _to_export(row: sa.Row) -> OrganisationExport:
    values = dict(row._mapping)
    values["formats"] = tuple(values["formats"].split(","))
    return OrganisationExport(**values)


def _fetch(conn: sa.Connection, export_id: str) -> OrganisationExport:
    row = conn.execute(sa.select(ORG).where(ORG.c.export_id == export_id)).first()
    if row is None:
        raise BatchNotFound(WHAT, export_id)
    return _to_export(row)


class OrganisationExports:
    """Organisation exports kept beside a RequestStore (same database, same clock)."""

    def __init__(self, store: RequestStore) -> None:
        self._store = store
        self._engine = store.engine
        self._writer = store.engine.execution_options(store_write=True)  # BEGIN IMMEDIATE

    # -- writing ---------------------------------------------------------------------

    def schedule(
        self,
        *,
        org_id: str,
        request_type: str = "access",
        formats: Sequence[str] = FORMATS,
        due_at: datetime | None = None,
        controller: str = DEFAULT_CONTROLLER,
        actor: str,
    ) -> str:
        """Schedule an export of all of ``org_id``'s members, due at ``due_at`` (default:
        now). Returns its id ("org-" and a random part: opaque)."""
        now = self._store.now()
        export_id = f"org-{uuid.uuid4().hex}"
        row = dict(
            export_id=export_id,
            controller=m.required_text(controller, "controller", 128),
            org_id=check_org_id(org_id),
            request_type=m.check_choice(request_type, REQUEST_TYPES, "request type"),
            formats=",".join(check_formats(formats)),
            due_at=m.aware(due_at, "due_at") if due_at is not None else now,
            state=SCHEDULED,
            created_at=now,
            updated_at=now,
            members=0,
            actor=m.required_text(actor, "actor", 128),
        )
        detail = f"{request_type}, formats {row['formats']}, due {row['due_at']:%Y-%m-%d}"
        with self._writer.begin() as conn:
            conn.execute(ORG.insert().values(row))
            t.add_batch_event(conn, EVT, export_id, now, row["actor"], SCHEDULED, detail)
        return export_id

    def expand(
        self,
        export_id: str,
        members: Sequence[Sequence[Identity]],
        actor: str = "schedule",
    ) -> list[str]:
        """scheduled -> expanded: one bulk-lane request per member (each member a list
        of identities, checked as a submission's are), all in one transaction. Returns
        the new request ids in member order; ``[]`` if the export is no longer scheduled
        (see the module docstring). Errors name the member by number, never a value."""
        actor = m.required_text(actor, "actor", 128)
        export = self.get(export_id)
        if export.state != SCHEDULED:
            return []
        if isinstance(members, (str, bytes, Identity)):
            raise RequestError("members must be a list of identity lists")
        at = self._store.now()
        prepared = [self._prepare(export, n, member, at) for n, member in enumerate(members, 1)]
        with self._writer.begin() as conn:
            t.lock(conn, t.SEQ_LOCK)  # first, as insert_request would: one lock order
            cas = ORG.update().where(ORG.c.export_id == export_id, ORG.c.state == SCHEDULED)
            values = dict(state=EXPANDED, members=len(prepared), updated_at=at)
            if conn.execute(cas.values(values)).rowcount != 1:
                return []  # expanded (or cancelled) by another process meanwhile
            ids = [insert_request(conn, new, actor).request_id for new in prepared]
            detail = f"{len(ids)} member requests (bulk lane)"
            t.add_batch_event(conn, EVT, export_id, at, actor, EXPANDED, detail)
        return ids

    def complete(self, export_id: str, index_location: str, actor: str) -> OrganisationExport:
        """expanded -> completed, with the location of the organisation's index."""
        location = m.required_text(index_location, "index location", 2048)
        return self._move(export_id, (EXPANDED,), COMPLETED, "complete", actor, location)

    def cancel(self, export_id: str, actor: str) -> OrganisationExport:
        """scheduled/expanded -> cancelled; member requests still waiting (received or
        failed) are cancelled too and their identities deleted, in the same transaction."""
        return self._move(export_id, (SCHEDULED, EXPANDED), CANCELLED, "cancel", actor)

    # -- reading ---------------------------------------------------------------------

    def get(self, export_id: str) -> OrganisationExport:
        """The export (raises BatchNotFound)."""
        with self._engine.connect() as conn:
            return _fetch(conn, export_id)

    def due(self, now: datetime | None = None) -> list[OrganisationExport]:
        """Scheduled exports due at ``now`` (default: the store's clock), earliest first."""
        now = m.aware(now, "now") if now is not None else self._store.now()
        query = (
            sa.select(ORG)
            .where(ORG.c.state == SCHEDULED, ORG.c.due_at <= now)
            .order_by(ORG.c.due_at, ORG.c.export_id)
        )
        with self._engine.connect() as conn:
            return [_to_export(row) for row in conn.execute(query)]

    def events(self, export_id: str) -> list[BatchEvent]:
        """The export's audit trail, oldest first."""
        with self._engine.connect() as conn:
            return t.fetch_batch_events(conn, EVT, export_id)

    # -- internals -------------------------------------------------------------------

    @staticmethod
    def _prepare(
        export: OrganisationExport, n: int, member: Sequence[Identity], at: datetime
    ) -> NewRequest:
        if isinstance(member, (str, bytes, Identity)):
            raise RequestError(f"member {n}: must be a list of identities")
        try:
            spec = RequestSpec(
                export.request_type, member, export.formats, channel="organisation",
                controller=export.controller, lane="bulk", batch_ref=export.export_id,
            )  # fmt: skip
            return prepare_request(at, spec)
        except RequestError as err:  # the engine's messages name what, never a value
            raise RequestError(f"member {n}: {err}") from None

    def _move(
        self,
        export_id: str,
        allowed: tuple[str, ...],
        to: str,
        verb: str,
        actor: str,
        location: str | None = None,
    ) -> OrganisationExport:
        """One transition: compare-and-set and its event (cancel: with the members')."""
        actor = m.required_text(actor, "actor", 128)
        now = self._store.now()
        withdrawn = 0
        with self._writer.begin() as conn:
            export = _fetch(conn, export_id)
            if export.state not in allowed:
                raise InvalidBatchTransition(WHAT, export_id, export.state, verb)
            values: dict[str, object] = dict(state=to, updated_at=now)
            if location is not None:
                values["index_location"] = location
            cas = ORG.update().where(ORG.c.export_id == export_id, ORG.c.state == export.state)
            if conn.execute(cas.values(values)).rowcount != 1:
                state = _fetch(conn, export_id).state
                raise InvalidBatchTransition(WHAT, export_id, state, verb, "changed concurrently")
            if to == CANCELLED:
                withdrawn = self._cancel_members(conn, export_id, now, actor)
            detail = f"{export.members} members"
            if to == CANCELLED and export.state == EXPANDED:
                detail += f", {withdrawn} waiting member requests cancelled"
            if to == COMPLETED:
                detail += ", index written"
            t.add_batch_event(conn, EVT, export_id, now, actor, to, detail)
            result = _fetch(conn, export_id)
        if withdrawn:
            t.scrub(self._engine)
        return result

    @staticmethod
    def _cancel_members(conn: sa.Connection, export_id: str, at: datetime, actor: str) -> int:
        """Cancel the export's member requests still received or failed, as
        RequestStore.cancel would (compare-and-set, event, identities deleted)."""
        waiting = sa.and_(REQ.c.batch_ref == export_id, REQ.c.state.in_(_WAITING))
        rows = conn.execute(sa.select(REQ.c.request_id, REQ.c.state).where(waiting)).all()
        cancelled = 0
        for request_id, state in rows:
            cas = REQ.update().where(REQ.c.request_id == request_id, REQ.c.state == state)
            values = dict(state=State.CANCELLED.value, updated_at=at)
            if conn.execute(cas.values(values)).rowcount != 1:
                continue  # claimed meanwhile: its run finishes
            why = "organisation export cancelled"
            t.add_event(conn, request_id, at, actor, State.CANCELLED.value, why)
            t.drop_identities(conn, request_id, at, actor, "identities_deleted", "cancelled")
            cancelled += 1
        return cancelled
