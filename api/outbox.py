"""Status callbacks through a persisted outbox (table ``api_outbox``, beside the store).

A round (:meth:`Outbox.run_once`; the worker thread runs one every
``callback_poll_s`` seconds) does two things:

1. **Enqueue.** It reads the store's audit trail after its cursor (kept in
   ``api_outbox_cursor``) for status changes (``claimed`` -> running, ``completed``,
   ``failed``, ``denied``, ``cancelled``), whoever made them (Dagster, the DPO, the
   API), and adds one outbox row per change and callback URL. The row's key (event id,
   URL position) is unique, so a change is never enqueued twice; the last
   ``LOOKBACK`` events before the cursor are read again each round, so an event that
   committed late (PostgreSQL hands out ids before commit) is not skipped.
2. **Deliver.** For each (request, URL) the unsent rows are sent oldest first, each
   once it is due, and a row only after the one before it was acknowledged: a portal
   never sees ``completed`` before ``in_progress``. A sender
   leases a row before sending, so two API processes never send it at once. The body
   is built when sent, from the request as stored and the status of the row (a
   completed callback carries a fresh results link), and signed like a response. A 2xx
   answer marks the row sent: it is never sent again. Anything else (an error status, a
   refused connection, a timeout, a redirect) schedules a retry with exponential
   backoff (``callback_backoff_s`` doubling up to ``callback_backoff_max_s``); after
   ``callback_give_up_s`` the row is abandoned.

Rows are durable: a row enqueued or not yet acknowledged before a restart is sent
after it. Delivery is at least once: a process that dies between the portal's 2xx and
marking the row sent sends it again after the lease; each callback carries
``X-OpenDSR-Delivery-Id`` (the row id) for a portal that wants to drop such repeats.
Rows hold no personal data, and errors are recorded as ``HTTP 503`` or an exception
type, never a body or URL (a callback URL may carry a token).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa

from api import tables
from api.settings import Settings
from api.signing import Signer
from api.status import StatusView
from request_store import RequestNotFound, RequestStore, State
from request_store import tables as store_tables

log = logging.getLogger("api.outbox")

CHANGES: dict[str, State] = {
    "claimed": State.RUNNING,
    "completed": State.COMPLETED,
    "failed": State.FAILED,
    "denied": State.DENIED,
    "cancelled": State.CANCELLED,
}
CURSOR = "callbacks"
LOOKBACK = 200  # event ids re-read before the cursor each round
BATCH = 1000  # events read per query (> LOOKBACK)
LEASE = timedelta(seconds=60)
OUTBOX_LOCK = 0x5245_5104  # PostgreSQL advisory lock around enqueueing
OUT = tables.outbox
EVT = store_tables.request_events
REQ = store_tables.requests


@dataclass(frozen=True)
class Round:
    enqueued: int = 0
    sent: int = 0
    failed: int = 0


class Outbox:
    def __init__(
        self,
        store: RequestStore,
        settings: Settings,
        signer: Signer,
        view: StatusView,
        clock: Callable[[], datetime] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.store, self.settings, self.signer, self.view = store, settings, signer, view
        self._engine = store.engine
        self._writer = store.engine.execution_options(store_write=True)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._client = httpx.Client(
            timeout=settings.callback_timeout_s,
            follow_redirects=False,
            trust_env=False,  # callbacks go direct, whatever proxy the environment names
            transport=transport,
            headers={"User-Agent": "infuze-portability-opendsr/1"},
        )
        self._lock = threading.Lock()  # one round at a time in this process

    def close(self) -> None:
        self._client.close()

    def run_once(self) -> Round:
        """Enqueue new status changes, then send what is due."""
        with self._lock:
            enqueued = self.enqueue()
            sent, failed = self.deliver()
            return Round(enqueued, sent, failed)

    # -- enqueue ---------------------------------------------------------------------

    def enqueue(self) -> int:
        total = 0
        while True:
            added, more = self._enqueue_batch()
            total += added
            if not more:
                return total

    def _enqueue_batch(self) -> tuple[int, bool]:
        with self._engine.connect() as conn:  # a read first: most rounds find nothing
            if self._plan(conn) is None:
                return 0, False
        with self._writer.begin() as conn:
            store_tables.lock(conn, OUTBOX_LOCK)
            plan = self._plan(conn)  # again, under the write lock
            if plan is None:
                return 0, False
            last, newest, rows, full = plan
            if rows:
                conn.execute(OUT.insert(), rows)
            cur = tables.cursor
            if last is None:
                conn.execute(cur.insert().values(name=CURSOR, last_event_id=newest))
            elif newest > last:
                conn.execute(cur.update().where(cur.c.name == CURSOR).values(last_event_id=newest))
            return len(rows), full and newest > (last or 0)

    def _plan(self, conn: sa.Connection) -> tuple[int | None, int, list[dict], bool] | None:
        """(cursor, new cursor, rows to add, batch full), or None if nothing is to do."""
        cur = tables.cursor
        last = conn.scalar(sa.select(cur.c.last_event_id).where(cur.c.name == CURSOR))
        query = (
            sa.select(EVT.c.id, EVT.c.request_id, EVT.c.event)
            .where(EVT.c.id > max(0, (last or 0) - LOOKBACK), EVT.c.event.in_(list(CHANGES)))
            .order_by(EVT.c.id)
            .limit(BATCH)
        )
        events = conn.execute(query).all()
        if not events:
            return None
        ids = {e.request_id for e in events}
        where = REQ.c.request_id.in_(ids)
        urls = dict(
            conn.execute(sa.select(REQ.c.request_id, REQ.c.callback_urls).where(where)).all()
        )
        known = OUT.c.event_id.in_([e.id for e in events])
        have = set(conn.execute(sa.select(OUT.c.event_id, OUT.c.url_index).where(known)).all())
        now = self._clock()
        rows = [
            dict(
                request_id=e.request_id,
                event_id=e.id,
                state=CHANGES[e.event].value,
                url_index=n,
                created_at=now,
                next_attempt_at=now,
            )
            for e in events
            for n, _url in enumerate(urls.get(e.request_id) or ())
            if (e.id, n) not in have
        ]
        newest = max(last or 0, events[-1].id)
        if not rows and last is not None and newest <= last:
            return None
        return last, newest, rows, len(events) == BATCH

    # -- deliver ---------------------------------------------------------------------

    def deliver(self) -> tuple[int, int]:
        now = self._clock()
        open_rows = (
            sa.select(OUT)
            .where(OUT.c.sent_at.is_(None), OUT.c.abandoned_at.is_(None))
            .order_by(OUT.c.id)
            .limit(5000)
        )
        with self._engine.connect() as conn:
            pending = conn.execute(open_rows).all()
        queues: dict[tuple[str, int], list[Any]] = {}
        for row in pending:  # per (request, URL), oldest first
            queues.setdefault((row.request_id, row.url_index), []).append(row)
        sent = failed = 0
        for queue in queues.values():
            for row in queue:  # in order: stop at the first row not sent now
                free = row.lease_until is None or row.lease_until <= now
                if row.next_attempt_at > now or not free or not self._lease(row.id):
                    break
                if not self._send(row):
                    failed += 1
                    break
                sent += 1
        return sent, failed

    def _lease(self, row_id: int) -> bool:
        now = self._clock()
        free = sa.or_(OUT.c.lease_until.is_(None), OUT.c.lease_until <= now)
        claim = OUT.update().where(
            OUT.c.id == row_id, OUT.c.sent_at.is_(None), OUT.c.abandoned_at.is_(None), free
        )
        with self._writer.begin() as conn:
            return conn.execute(claim.values(lease_until=now + LEASE)).rowcount == 1

    def _send(self, row: Any) -> bool:
        try:
            req = self.store.get(row.request_id)
            url = req.callback_urls[row.url_index]
        except (RequestNotFound, IndexError):
            self._finish(row, ok=False, error="request or URL gone", final=True)
            return False
        raw = json.dumps(self.view.callback(req, State(row.state), url)).encode()
        headers = {
            **self.signer.headers(raw),
            "Content-Type": "application/json",
            "X-OpenDSR-Delivery-Id": str(row.id),
        }
        try:
            response = self._client.post(url, content=raw, headers=headers)
            ok, error = 200 <= response.status_code < 300, f"HTTP {response.status_code}"
        except Exception as exc:  # refused, timeout, bad URL...: the type names it
            ok, error = False, type(exc).__name__
        self._finish(row, ok=ok, error=error)
        status = "sent" if ok else f"failed ({error})"
        log.info("callback %s of request %s (%s): %s", row.id, row.request_id, row.state, status)
        return ok

    def _finish(self, row: Any, *, ok: bool, error: str, final: bool = False) -> None:
        now = self._clock()
        attempts = row.attempts + 1
        values: dict[str, Any] = dict(attempts=attempts, lease_until=None)
        if ok:
            values.update(sent_at=now, last_error=None)
        else:
            values["last_error"] = error[:200]
            s = self.settings
            delay = min(s.callback_backoff_max_s, s.callback_backoff_s * 2 ** (attempts - 1))
            values["next_attempt_at"] = now + timedelta(seconds=delay)
            if final or now - row.created_at >= timedelta(seconds=s.callback_give_up_s):
                values["abandoned_at"] = now
        with self._writer.begin() as conn:
            conn.execute(
                OUT.update().where(OUT.c.id == row.id, OUT.c.sent_at.is_(None)).values(values)
            )

    # -- inspection ------------------------------------------------------------------

    def rows(self, request_id: str | None = None) -> list[dict[str, Any]]:
        """Outbox rows, oldest first (for tests and operators; no personal data)."""
        query = sa.select(OUT).order_by(OUT.c.id)
        if request_id is not None:
            query = query.where(OUT.c.request_id == request_id)
        with self._engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]


class OutboxWorker:
    """Runs outbox rounds in a background thread while the app runs."""

    def __init__(self, outbox: Outbox, interval_s: float) -> None:
        self.outbox, self.interval = outbox, interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="opendsr-outbox", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.outbox.run_once()
            except Exception as exc:  # the type only; keep going (the database may be back)
                log.error("outbox round failed: %s", type(exc).__name__)
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.outbox.settings.callback_timeout_s + 5)
            self._thread = None
