"""The request store against SQLite (a temp file) and the real PostgreSQL server.

PostgreSQL: one database per test session (dropped after), one schema per test. A
server that is not running fails the tests: they are real-component tests.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyrage
import pytest
import sqlalchemy as sa

from engine.request import Identity, RequestError
from request_store import (
    TRANSITIONS,
    DeliveredPart,
    Deliveries,
    ExtensionRefused,
    InvalidTransition,
    RequestNotFound,
    RequestSpec,
    RequestStore,
    State,
    StoredRequest,
)
from request_store.sealing import SealError, seal, unseal
from request_store.tables import connect
from tests.clock import Clock

SECRET_EMAIL = "zelda.secret@example.org"
SECRET_ID = "C99887766"
SECRETS = (SECRET_EMAIL, SECRET_ID, SECRET_EMAIL.upper())
IDENTITIES = (Identity("email", SECRET_EMAIL), Identity("controller_customer_id", SECRET_ID))
T0 = datetime(2026, 1, 31, 10, 0, tzinfo=UTC)
SHA = "ab" * 32


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def store(store_url: str, clock: Clock) -> Iterator[RequestStore]:
    with RequestStore.open(store_url, clock=clock) as s:
        yield s


def submit(store: RequestStore, **kw: object) -> StoredRequest:
    kw.setdefault("request_type", "access")
    kw.setdefault("identities", IDENTITIES)
    actor = kw.pop("actor", None)
    return store.submit(RequestSpec(**kw), actor=actor)[0]  # type: ignore[arg-type]


def raw_count(url: str, table: str, request_id: str) -> int:
    engine = connect(url)
    try:
        with engine.connect() as conn:
            q = f"SELECT count(*) FROM {table} WHERE request_id = :r"
            return int(conn.execute(sa.text(q), {"r": request_id}).scalar_one())
    finally:
        engine.dispose()


# -- submitting ------------------------------------------------------------------------


def test_submit_stores_an_opaque_request_with_its_deadline(store: RequestStore) -> None:
    req, created = store.submit(RequestSpec(request_type="portability", identities=IDENTITIES))
    assert created
    assert uuid.UUID(req.request_id).version == 4
    assert req.state is State.RECEIVED and req.seq >= 1 and req.attempts == 0
    assert req.formats == ("json", "csv", "parquet") and req.regulation == "gdpr"
    assert req.received_at == req.submitted_at == req.updated_at == T0
    assert req.deadline == datetime(2026, 2, 28, 23, 59, 59, tzinfo=UTC)
    assert store.get(req.request_id) == req
    assert store.identities(req.request_id) == IDENTITIES
    assert [e.event for e in store.events(req.request_id)] == ["received"]


def test_a_request_spec_shows_neither_identities_nor_secret() -> None:
    """A spec may end up in a log line or a traceback's locals: its repr names the
    request's fields but never the subject's identities or a transfer credential."""
    spec = RequestSpec("access", IDENTITIES, transfer_to="initech", transfer_secret="s3cr3t")
    shown = repr(spec) + str(spec)
    assert "access" in shown and "initech" in shown
    assert SECRET_EMAIL not in shown and SECRET_ID not in shown and "s3cr3t" not in shown


def test_the_legal_clock_starts_at_submission_but_never_in_the_future(
    store: RequestStore, clock: Clock
) -> None:
    clock.now = datetime(2026, 2, 1, 8, tzinfo=UTC)
    early = submit(store, submitted_at=datetime(2026, 1, 31, 23, tzinfo=UTC))
    assert early.deadline == datetime(2026, 2, 28, 23, 59, 59, tzinfo=UTC)
    ahead = submit(store, submitted_at=datetime(2026, 3, 31, tzinfo=UTC))
    assert ahead.deadline == datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC)


def test_the_same_external_id_is_one_request(store: RequestStore) -> None:
    ext = str(uuid.uuid4())
    first, created = store.submit(
        RequestSpec(request_type="access", identities=IDENTITIES, external_id=ext)
    )
    again, created_again = store.submit(
        RequestSpec(request_type="portability", identities=IDENTITIES[:1], external_id=ext)
    )
    assert created and not created_again and again == first
    assert store.find_external(ext) == first
    other = submit(store, external_id=ext, controller="other-portal")
    assert other.request_id != first.request_id
    assert [r.request_id for r in store.list_new()] == [first.request_id, other.request_id]
    assert [e.event for e in store.events(first.request_id)] == ["received"]


@pytest.mark.parametrize(
    ("change", "names"),
    [
        ({"identities": [Identity("email", "zelda.secret-at-example.org")]}, "identity 1 (email)"),
        ({"identities": [Identity("phone", SECRET_ID)]}, "identity 1: type"),
        ({"identities": []}, "at least one identity"),
        ({"request_type": "erasure"}, "request type"),
        ({"formats": ["xml"]}, "formats"),
        ({"channel": "fax"}, "channel"),
        ({"regulation": "ccpa"}, "regulation"),
        ({"submitted_at": datetime(2026, 1, 1)}, "submitted_at"),
        ({"callback_urls": ["ftp://portal.example/cb"]}, "callback url 1"),
        ({"external_id": "  "}, "external id"),
    ],
)
def test_bad_input_is_refused_naming_what_not_the_value(
    store: RequestStore, change: dict, names: str
) -> None:
    with pytest.raises(RequestError) as err:
        submit(store, **change)
    assert names in str(err.value)
    assert not any(s in str(err.value) for s in (*SECRETS, "zelda"))
    assert store.list_new() == []


# -- transitions -----------------------------------------------------------------------


def in_state(store: RequestStore, state: State) -> str:
    rid = submit(store).request_id
    if state in (State.RUNNING, State.FAILED, State.COMPLETED):
        assert store.claim(rid)
    if state is State.FAILED:
        store.fail(rid, "source crm unreachable")
    if state is State.COMPLETED:
        store.complete(rid, location="/exports/a.zip", sha256=SHA, count=3)
    if state is State.DENIED:
        store.deny(rid, "manifestly unfounded", actor="dpo:alice")
    if state is State.CANCELLED:
        store.cancel(rid, actor="portal")
    assert store.get(rid).state is state
    return rid


ACTIONS: dict[State, Callable[[RequestStore, str], object]] = {
    State.RUNNING: lambda s, r: s.claim(r),
    State.COMPLETED: lambda s, r: s.complete(r, location="/x.zip", sha256=SHA, count=0),
    State.FAILED: lambda s, r: s.fail(r, "source billing timed out"),
    State.DENIED: lambda s, r: s.deny(r, "identity not verified", actor="dpo:bob"),
    State.CANCELLED: lambda s, r: s.cancel(r, actor="portal", reason="withdrawn"),
}


def test_the_transition_table_is_the_documented_one() -> None:
    assert {a.value: sorted(b.value for b in bs) for a, bs in TRANSITIONS.items()} == {
        "received": ["cancelled", "denied", "running"],
        "running": ["completed", "failed"],
        "failed": ["cancelled", "denied", "running"],
        "completed": [], "denied": [], "cancelled": [],
    }  # fmt: skip


def test_transitions_follow_the_table_and_others_are_refused(store: RequestStore) -> None:
    for start in State:
        for target, action in ACTIONS.items():
            rid = in_state(store, start)
            before = store.events(rid)
            if target in TRANSITIONS[start]:
                result = action(store, rid)
                assert result is True or isinstance(result, StoredRequest)
                assert store.get(rid).state is target, (start, target)
                assert store.events(rid)[len(before)].event == (
                    "claimed" if target is State.RUNNING else target.value
                )
            elif target is State.RUNNING:
                assert action(store, rid) is False, start
            else:
                with pytest.raises(InvalidTransition) as err:
                    action(store, rid)
                assert rid in str(err.value) and start.value in str(err.value)
            if target not in TRANSITIONS[start]:
                assert store.get(rid).state is start
                assert store.events(rid) == before


def claim_together(stores: list[RequestStore], rid: str) -> list[bool]:
    """Each store claims ``rid`` from its own thread, released at the same instant."""
    barrier = threading.Barrier(len(stores))

    def race(s: RequestStore) -> bool:
        barrier.wait()
        return s.claim(rid, actor="sensor")

    with ThreadPoolExecutor(len(stores)) as pool:
        return list(pool.map(race, stores))


def test_concurrent_claims_have_exactly_one_winner(store: RequestStore, store_url: str) -> None:
    ids = [submit(store).request_id for _ in range(8)]
    other = RequestStore.open(store_url)
    try:
        for rid in ids:
            results = claim_together([store, other], rid)
            assert sorted(results) == [False, True], rid
            assert [e.event for e in other.events(rid)] == ["received", "claimed"]
            assert store.get(rid).attempts == 1
    finally:
        other.close()


def test_unknown_request_is_not_found(store: RequestStore) -> None:
    for call in (store.get, store.claim, store.identities, lambda r: store.fail(r, "x")):
        with pytest.raises(RequestNotFound, match="request nope-123: not found"):
            call("nope-123")


# -- identities ------------------------------------------------------------------------


@pytest.mark.parametrize("end", [State.COMPLETED, State.DENIED, State.CANCELLED])
@pytest.mark.parametrize("via_failure", [False, True])
def test_identities_are_deleted_when_a_request_closes(
    store: RequestStore, store_url: str, end: State, via_failure: bool
) -> None:
    rid = in_state(store, State.FAILED if via_failure else State.RECEIVED)
    if end is State.COMPLETED:
        assert store.claim(rid)
    ACTIONS[end](store, rid)
    req = store.get(rid)
    assert req.state is end and req.identities_deleted_at is not None
    assert store.identities(rid) == ()
    assert raw_count(store_url, "request_identities", rid) == 0
    assert store.events(rid)[-1].event == "identities_deleted"
    assert store.events(rid)[-1].detail == f"2 identities deleted: {end.value}"
    with pytest.raises(RequestError, match=f"request {rid}: identities were deleted"):
        store.export_request(rid)


def test_a_failed_request_keeps_its_identities_and_can_be_rerun(store: RequestStore) -> None:
    rid = in_state(store, State.FAILED)
    failed = store.get(rid)
    assert failed.failure == "source crm unreachable"
    assert store.identities(rid) == IDENTITIES
    export = store.export_request(rid, as_of=T0)
    assert (export.request_id, export.identities, export.as_of) == (rid, IDENTITIES, T0)
    assert store.claim(rid, actor="dpo:alice")
    rerun = store.get(rid)
    assert (rerun.state, rerun.attempts, rerun.failure) == (State.RUNNING, 2, None)
    assert store.events(rid)[-1].detail == "attempt 2, from failed"


def test_purge_deletes_identities_of_failed_requests_left_too_long(
    store: RequestStore, store_url: str, clock: Clock
) -> None:
    old = in_state(store, State.FAILED)
    waiting = submit(store).request_id
    clock.advance(days=20)
    recent = in_state(store, State.FAILED)
    clock.advance(days=11)
    assert store.purge_identities(timedelta(days=30)) == [old]
    assert store.identities(old) == () and raw_count(store_url, "request_identities", old) == 0
    assert store.identities(recent) == IDENTITIES and store.identities(waiting) == IDENTITIES
    assert store.get(old).state is State.FAILED  # the outcome stays visible
    last = store.events(old)[-1]
    assert (last.event, last.actor) == ("identities_purged", "system")
    assert not store.claim(old)  # nothing left to export
    assert store.purge_identities(timedelta(days=30)) == []


# -- deadlines -------------------------------------------------------------------------


def test_extension_once_with_a_reason_from_the_original_deadline(store: RequestStore) -> None:
    rid = submit(store).request_id  # received 31 Jan 2026 -> 28 Feb
    with pytest.raises(RequestError, match="extension reason"):
        store.extend(rid, "   ", actor="dpo:alice")
    req = store.extend(rid, "complex: 14 source systems", actor="dpo:alice")
    assert req.extended_deadline == datetime(2026, 4, 28, 23, 59, 59, tzinfo=UTC)
    assert req.due == req.extended_deadline and req.extension_reason.startswith("complex")
    with pytest.raises(ExtensionRefused, match="already extended"):
        store.extend(rid, "again", actor="dpo:alice")
    ev = store.events(rid)[-1]
    assert (ev.event, ev.actor) == ("extended", "dpo:alice")
    assert ev.detail == "deadline 2026-02-28 -> 2026-04-28: complex: 14 source systems"


def test_extension_refused_after_the_deadline_or_when_closed(
    store: RequestStore, clock: Clock
) -> None:
    late, on_the_day = submit(store).request_id, submit(store).request_id
    closed = in_state(store, State.COMPLETED)
    clock.now = datetime(2026, 2, 28, 23, 59, 59, tzinfo=UTC)
    assert store.extend(on_the_day, "numerous requests", "dpo:alice").extended_deadline
    clock.advance(seconds=1)
    with pytest.raises(ExtensionRefused, match="original deadline has passed"):
        store.extend(late, "too late", "dpo:alice")
    with pytest.raises(ExtensionRefused, match="closed"):
        store.extend(closed, "complex", "dpo:alice")
    assert store.get(late).extended_deadline is None


def test_open_requests_are_classified_on_time_due_soon_overdue(
    store: RequestStore, clock: Clock
) -> None:
    clock.now = datetime(2026, 1, 1, 9, tzinfo=UTC)
    a = submit(store).request_id  # deadline 1 Feb, due soon from 26 Jan
    extended = submit(store).request_id
    store.extend(extended, "complex", "dpo:alice")  # 1 Apr
    clock.now = datetime(2026, 1, 10, 9, tzinfo=UTC)
    b = in_state(store, State.FAILED)  # deadline 10 Feb, failed is still open
    in_state(store, State.COMPLETED)  # closed: not listed

    def view(now: datetime) -> list[tuple[str, str, int]]:
        return [(v.request.request_id, v.status, v.days_left) for v in
                store.list_open_with_deadlines(now)]  # fmt: skip

    assert view(datetime(2026, 1, 25, 23, tzinfo=UTC)) == [
        (a, "on_time", 7), (b, "on_time", 16), (extended, "on_time", 66)
    ]  # fmt: skip
    assert view(datetime(2026, 1, 26, 0, tzinfo=UTC))[0] == (a, "due_soon", 6)
    assert view(datetime(2026, 2, 4, tzinfo=UTC)) == [
        (a, "overdue", -3), (b, "due_soon", 6), (extended, "on_time", 56)
    ]  # fmt: skip
    assert store.get(a).deadline_status(datetime(2026, 2, 4, tzinfo=UTC)) == "overdue"
    clock.now = datetime(2026, 2, 4, tzinfo=UTC)
    store.cancel(a, actor="dpo:alice")
    assert store.get(a).deadline_status(clock.now) == "closed"


# -- audit trail -----------------------------------------------------------------------


def test_audit_trail_records_every_change_in_order(store: RequestStore, clock: Clock) -> None:
    rid = submit(store, channel="dpo", actor="dpo:alice").request_id
    steps = [
        lambda: store.claim(rid),
        lambda: store.fail(rid, "source crm: connection refused"),
        lambda: store.extend(rid, "complex", actor="dpo:alice"),
        lambda: store.claim(rid, actor="dpo:alice"),
        lambda: store.complete(rid, location="/x.zip", sha256=SHA, count=42),
    ]
    for step in steps:
        clock.advance(minutes=1)
        step()
    events = store.events(rid)
    assert [(e.event, e.actor) for e in events] == [
        ("received", "dpo:alice"), ("claimed", "sensor"), ("failed", "sensor"),
        ("extended", "dpo:alice"), ("claimed", "dpo:alice"), ("completed", "sensor"),
        ("identities_deleted", "sensor"),
    ]  # fmt: skip
    assert [e.at for e in events] == [T0 + timedelta(minutes=m) for m in (0, 1, 2, 3, 4, 5, 5)]
    assert len({e.id for e in events}) == 7 and all(e.request_id == rid for e in events)
    assert events[5].detail == "42 records"


def test_audit_trail_is_append_only_in_the_database(store: RequestStore, store_url: str) -> None:
    rid = in_state(store, State.FAILED)
    before = store.events(rid)
    engine = connect(store_url)
    statements = ["UPDATE request_events SET detail = 'rewritten'", "DELETE FROM request_events"]
    if engine.dialect.name == "postgresql":
        statements.append("TRUNCATE request_events")
    try:
        for statement in statements:
            with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
                conn.execute(sa.text(statement))
    finally:
        engine.dispose()
    assert store.events(rid) == before


def test_reopening_is_idempotent_and_keeps_everything(store_url: str, clock: Clock) -> None:
    with RequestStore.open(store_url, clock=clock) as first:
        rid = submit(first).request_id
    with RequestStore.open(store_url, clock=clock) as again:
        assert again.identities(rid) == IDENTITIES
        assert [e.event for e in again.events(rid)] == ["received"]
    engine = connect(store_url)
    try:
        with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM request_events"))
    finally:
        engine.dispose()


def test_sqlite_file_is_private_and_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "home" / "requests.sqlite"
    with RequestStore.open(path) as store:
        submit(store)
        with store._engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    assert path.stat().st_mode & 0o777 == 0o600


# -- cursors ---------------------------------------------------------------------------


def test_list_new_is_a_cursor_over_received_requests(store: RequestStore) -> None:
    r1, r2, r3 = (submit(store) for _ in range(3))
    assert r1.seq < r2.seq < r3.seq
    assert store.list_new() == [r1, r2, r3]
    assert store.list_new(limit=2) == [r1, r2]
    assert store.list_new(after_seq=r2.seq) == [r3]
    assert store.list_new(after_seq=r3.seq) == []
    assert store.claim(r1.request_id)
    store.deny(r3.request_id, "excessive", actor="dpo:alice")
    assert [r.request_id for r in store.list_new()] == [r2.request_id]
    r4 = submit(store)
    assert r4.seq > r3.seq and store.list_new(after_seq=r3.seq) == [r4]
    assert [r.request_id for r in store.list_in_state("running")] == [r1.request_id]


# -- privacy ---------------------------------------------------------------------------


def test_no_identity_value_in_any_repr_error_or_stored_text(
    store: RequestStore, store_url: str
) -> None:
    texts: list[str] = []
    rid = submit(store, callback_urls=["https://portal.example/cb?token=t0p"]).request_id
    assert store.claim(rid)
    failed = store.fail(rid, f"source crm failed looking up {SECRET_EMAIL.upper()} / {SECRET_ID}")
    assert failed.failure == "source crm failed looking up [identity] / [identity]"
    texts += [repr(store.get(rid)), str(store.get(rid)), repr(store.identities(rid))]
    texts += [repr(store.export_request(rid)), repr(store.list_open_with_deadlines())]
    for bad in (
        lambda: store.complete(rid, location="/x", sha256=SECRET_EMAIL, count=1),
        lambda: store.deny(rid, f"  {SECRET_EMAIL}  ", actor=SECRET_EMAIL + "\n"),
        lambda: store.claim(rid) and store.cancel(rid, actor="dpo:alice"),
        lambda: submit(store, identities=[Identity("email_sha256", SECRET_EMAIL)]),
    ):
        with pytest.raises(Exception) as err:  # any error: its text is checked below
            bad()
        texts += [str(err.value), repr(err.value)]
    store.extend(rid, f"complex, asked by {SECRET_EMAIL}", actor="dpo:alice")
    store.complete(rid, location="/x.zip", sha256=SHA, count=1)
    texts += [repr(store.get(rid)), repr(store.events(rid))]
    assert "t0p" not in repr(store.get(rid))  # callback URLs may carry tokens
    engine = connect(store_url)
    try:
        with engine.connect() as conn:
            for table in ("requests", "request_events", "request_identities"):
                texts += [repr(row) for row in conn.execute(sa.text(f"SELECT * FROM {table}"))]
    finally:
        engine.dispose()
    blob = "\n".join(texts)
    assert "[identity]" in blob
    assert not [s for s in SECRETS if s.lower() in blob.lower()]


def test_results_and_clock_are_checked(store_url: str) -> None:
    naive = RequestStore.open(store_url, clock=lambda: datetime(2026, 1, 1))
    with naive, pytest.raises(RequestError, match="clock time"):
        submit(naive)
    with RequestStore.open(store_url) as store:
        rid = submit(store).request_id
        assert store.claim(rid)
        with pytest.raises(RequestError, match="sha256"):
            store.complete(rid, location="/x.zip", sha256="abc", count=1)
        with pytest.raises(RequestError, match="result count"):
            store.complete(rid, location="/x.zip", sha256=SHA, count=-1)
        assert store.get(rid).state is State.RUNNING


# -- delivery options and deliveries ---------------------------------------------------

AGE_KEY = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"


def test_delivery_options_are_kept_and_reach_the_export_request(store: RequestStore) -> None:
    plain = submit(store)
    assert (plain.max_part_bytes, plain.encrypt_to) == (None, ())
    assert store.export_request(plain.request_id).max_part_bytes == 2_000_000_000  # default
    req = submit(store, max_part_bytes=10_000_000, encrypt_to=[AGE_KEY])
    assert (req.max_part_bytes, req.encrypt_to) == (10_000_000, (AGE_KEY,))
    export = store.export_request(req.request_id)
    assert (export.max_part_bytes, export.encrypt_to) == (10_000_000, (AGE_KEY,))
    with pytest.raises(RequestError, match="max part size"):
        submit(store, max_part_bytes=1000)
    with pytest.raises(RequestError, match="recipient 1 is not") as bad:
        submit(store, encrypt_to=["age1-not-a-key-zelda@example.org"])
    assert "zelda" not in str(bad.value)


def test_deliveries_are_recorded_used_expired_and_deleted_in_the_trail(
    store: RequestStore, clock: Clock
) -> None:
    rid = submit(store).request_id
    store.claim(rid)
    deliveries = Deliveries(store)
    parts = [DeliveredPart(f"{rid}-00{n}.zip", f"/x/{rid}-00{n}.zip", 100 * n, f"{n}" * 64)
             for n in (1, 2)]  # fmt: skip
    expires = clock() + timedelta(days=30)
    rows = deliveries.record(rid, parts, actor="dagster", expires_at=expires, max_downloads=2)
    assert [(r.part, r.parts, r.name, r.bytes) for r in rows] == [
        (1, 2, parts[0].name, 100), (2, 2, parts[1].name, 200)
    ]  # fmt: skip
    again = deliveries.record(rid, parts, actor="dagster", expires_at=expires, max_downloads=2)
    assert len(deliveries.of(rid)) == 2 and again[0].id != rows[0].id  # a retry replaces
    first = again[0].id
    assert not deliveries.resumable(first)  # limited, and nothing counted yet
    assert deliveries.use(first) and deliveries.use(first) and not deliveries.use(first)
    assert deliveries.resumable(first)  # a counted download may be resumed ...
    clock.advance(hours=25)
    assert not deliveries.resumable(first)  # ... for a day
    assert deliveries.held() == deliveries.of(rid) and deliveries.expired() == []
    clock.advance(days=29)
    expired = deliveries.expired()
    assert [r.part for r in expired] == [1, 2]
    assert deliveries.deleted(expired[0], actor="retention")
    assert not deliveries.deleted(expired[0], actor="retention")  # once
    assert not deliveries.use(expired[1].id)  # past its expiry: no download, held or not
    assert [r.part for r in deliveries.held()] == [2]
    trail = [(e.event, e.detail) for e in store.events(rid)]
    delivered = [d for e, d in trail if e == "delivered"]
    assert (
        len(delivered) == 4
        and f"part 1/2 {parts[0].name}: 100 bytes, sha256 {'1' * 64}" in delivered[0]
    )
    assert "to controller, kept until" in delivered[0]
    assert (
        "archive_deleted",
        f"part 1/2 {parts[0].name}: 100 bytes, sha256 {'1' * 64} (expired)",
    ) in trail


def test_deliveries_refuse_bad_input_without_echoing_it(store: RequestStore) -> None:
    rid = submit(store).request_id
    deliveries = Deliveries(store)
    with pytest.raises(RequestError, match="at least one part"):
        deliveries.record(rid, [], actor="dagster")
    with pytest.raises(RequestError, match="sha256"):
        deliveries.record(rid, [DeliveredPart("a.zip", "/a.zip", 1, "zelda")], actor="dagster")
    with pytest.raises(RequestNotFound):
        deliveries.record("nope", [DeliveredPart("a.zip", "/a.zip", 1, "a" * 64)], actor="x")


def test_a_transfer_keeps_its_sealed_secret_only_while_open(
    store: RequestStore, tmp_path: Path
) -> None:
    key = tmp_path / "seal.key"
    sealed = seal("https://inbox.example/up?X-Amz-Signature=zelda", key)
    req = submit(
        store, request_type="portability", transfer_to="acme-cloud", transfer_secret=sealed
    )
    assert req.transfer_to == "acme-cloud"
    assert unseal(store.transfer_secret(req.request_id) or "", key).endswith("=zelda")
    assert "transfer to acme-cloud" in store.events(req.request_id)[0].detail
    store.claim(req.request_id)
    store.complete(req.request_id, location="https://inbox.example/up", sha256="a" * 64, count=1)
    assert store.transfer_secret(req.request_id) is None  # deleted with the identities
    with pytest.raises(RequestError, match="portability requests"):
        submit(store, transfer_to="acme-cloud")
    with pytest.raises(RequestError, match="configured name"):
        submit(store, request_type="portability", transfer_to="https://evil.example/")
    (tmp_path / "other.key").write_text(str(pyrage.x25519.Identity.generate()))
    with pytest.raises(SealError, match="does not open") as wrong:
        unseal(sealed, tmp_path / "other.key")
    assert "zelda" not in str(wrong.value)
