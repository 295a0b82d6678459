"""Lanes, subscriptions and organisation exports on the request store, against SQLite (a
temp file) and the real PostgreSQL server (one database per session, a schema per test).

Bulk-lane requests wait for the nightly batch (the sensor skips them but moves past
them); a subscription issues one bulk request per occurrence, exactly once even when two
processes race, and forgets its subscriber at the end; an organisation export issues one
bulk request per member in one transaction. No identity value reaches an audit trail.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
import sqlalchemy as sa

from engine.request import Identity, RequestError
from pipelines.defs.requests.sensors import export_requests_sensor
from pipelines.lib.settings import PortabilityResource
from request_store import (
    BatchNotFound,
    InvalidBatchTransition,
    OrganisationExports,
    RequestSpec,
    RequestStore,
    State,
    StoredRequest,
    Subscriptions,
)
from request_store import organisations as org_module
from request_store.subscriptions import add_months_at
from request_store.tables import connect
from tests.clock import Clock

SECRET_EMAIL = "zelda.secret@example.org"
SECRET_ID = "C99887766"
IDENTITIES = (Identity("email", SECRET_EMAIL), Identity("controller_customer_id", SECRET_ID))
MEMBERS = [[Identity("email", f"member{n}.hidden@acme.example")] for n in range(1, 4)] + [
    [Identity("controller_customer_id", "M-55501"), Identity("email", "ola.nordmann@acme.example")]
]
SECRETS = (
    SECRET_EMAIL,
    SECRET_ID,
    "zelda",
    "hidden@acme",
    "M-55501",
    "ola.nordmann",
)
T0 = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
AUDIT_TABLES = ("request_events", "subscription_events", "organisation_events")


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


def raw_rows(url: str, *tables: str) -> list[str]:
    """Every row of ``tables``, as text (what a database dump would show)."""
    engine = connect(url)
    try:
        with engine.connect() as conn:
            return [
                repr(tuple(row))
                for table in tables
                for row in conn.execute(sa.text(f"SELECT * FROM {table}"))
            ]
    finally:
        engine.dispose()


def assert_no_secret(texts: list[str]) -> None:
    blob = "\n".join(texts).lower()
    assert not [s for s in SECRETS if s.lower() in blob]


# -- lanes -----------------------------------------------------------------------------


def test_lane_defaults_to_single_and_bulk_is_recorded(store: RequestStore) -> None:
    single = submit(store)
    assert (single.lane, single.batch_ref) == ("single", None)
    assert "lane" not in store.events(single.request_id)[0].detail
    bulk = submit(store, lane="bulk")
    assert (bulk.lane, bulk.batch_ref) == ("bulk", None)
    assert store.get(bulk.request_id) == bulk
    assert "lane bulk" in store.events(bulk.request_id)[0].detail


def test_an_unknown_lane_is_refused_and_nothing_stored(store: RequestStore) -> None:
    with pytest.raises(RequestError, match="lane must be one of single, bulk"):
        submit(store, lane="express")
    with pytest.raises(RequestError, match="lane"):
        store.list_waiting("express")
    assert store.list_new() == []


def test_list_waiting_is_one_lanes_received_requests_oldest_first(store: RequestStore) -> None:
    s1, b1, b2, s2, b3 = (
        submit(store, lane=lane) for lane in ("single", *["bulk"] * 2, "single", "bulk")
    )
    assert store.list_waiting() == [b1, b2, b3]
    assert store.list_waiting(limit=2) == [b1, b2]
    assert store.list_waiting("single") == [s1, s2]
    assert store.claim(b2.request_id)
    store.cancel(b3.request_id, actor="portal")
    assert [r.request_id for r in store.list_waiting()] == [b1.request_id]
    assert store.list_batch("sub-none") == []


def test_older_databases_get_the_lane_columns_and_null_means_single(
    store: RequestStore, store_url: str
) -> None:
    old = submit(store)
    engine = connect(store_url)
    try:  # the database as an older version left it: no lane, no batch_ref
        with engine.begin() as conn:
            conn.execute(sa.text("DROP INDEX ix_requests_batch_ref"))
            conn.execute(sa.text("ALTER TABLE requests DROP COLUMN lane"))
            conn.execute(sa.text("ALTER TABLE requests DROP COLUMN batch_ref"))
        with RequestStore.open(store_url) as again:
            assert again.get(old.request_id).lane == "single"
            with engine.begin() as conn:  # a NULL lane (added without its default)
                conn.execute(sa.text("UPDATE requests SET lane = NULL"))
            assert again.get(old.request_id).lane == "single"
            assert [r.request_id for r in again.list_waiting("single")] == [old.request_id]
            assert again.list_waiting() == []
            bulk = submit(again, lane="bulk")
            assert again.list_waiting() == [bulk]
        indexes = {i["name"] for i in sa.inspect(engine).get_indexes("requests")}
        assert "ix_requests_batch_ref" in indexes
    finally:
        engine.dispose()


# -- the sensor skips the bulk lane --------------------------------------------------


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


def sensor_tick(
    instance: dg.DagsterInstance, store_url: str, cursor: str | None = None
) -> dg.SensorResult:
    resources = {"portability": PortabilityResource(request_store=store_url)}
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as ctx:
        result = export_requests_sensor(ctx)
    assert isinstance(result, dg.SensorResult)
    return result


def test_the_sensor_launches_no_bulk_request_and_is_never_held_back_by_them(
    store: RequestStore,
    store_url: str,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PORTABILITY_DAGSTER_URL", raising=False)  # no direct launch
    a, _, _, d, e = (
        submit(store, lane=lane) for lane in ("single", "bulk", "bulk", "single", "bulk")
    )
    tick = sensor_tick(instance, store_url)
    assert [r.partition_key for r in tick.run_requests] == [a.request_id, d.request_id]
    assert tick.cursor == str(d.seq)
    again = sensor_tick(instance, store_url, tick.cursor)
    assert again.run_requests == [] and again.skip_reason is not None  # nothing new
    # an organisation's members ahead of it do not delay a portal request by a tick
    only_bulk = [submit(store, lane="bulk") for _ in range(150)]
    later = submit(store)
    first = sensor_tick(instance, store_url, tick.cursor)
    assert [r.partition_key for r in first.run_requests] == [later.request_id]
    assert first.cursor == str(later.seq) and later.seq > e.seq
    waiting = [r.request_id for r in store.list_waiting()]  # for the nightly batch
    assert len(waiting) == 153 and waiting[-150:] == [r.request_id for r in only_bulk]


def test_with_a_launch_grace_a_fresh_bulk_request_never_holds_the_sensor_back(
    store_url: str, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PORTABILITY_DAGSTER_URL", "http://127.0.0.1:3000")
    with RequestStore.open(store_url) as live:  # the real clock: the grace is real time
        fresh_bulk = submit(live, lane="bulk")  # portal channel, fresh: but bulk
        dpo = submit(live, channel="dpo")
        fresh_portal = submit(live)  # the API's to launch for now: holds later ones back
        submit(live, channel="dpo")
    tick = sensor_tick(instance, store_url)
    assert [r.partition_key for r in tick.run_requests] == [dpo.request_id]
    assert tick.cursor == str(dpo.seq) and fresh_bulk.seq < dpo.seq < fresh_portal.seq
    assert fresh_bulk.channel == "portal"  # a portal's, yet never the API's to launch


# -- subscriptions ---------------------------------------------------------------------


def test_every_two_months_for_a_year_is_six_exports_then_the_subscriber_is_forgotten(
    store: RequestStore, clock: Clock
) -> None:
    subs = Subscriptions(store)
    sid = subs.subscribe(identities=IDENTITIES, actor="portal")
    assert sid.startswith("sub-") and SECRET_EMAIL not in sid
    sub = subs.get(sid)
    assert (sub.state, sub.every_months, sub.issued, sub.channel) == ("active", 2, 0, "portal")
    assert sub.request_type == "portability" and sub.next_due == sub.starts_at == T0
    assert sub.until == datetime(2027, 1, 15, 10, tzinfo=UTC)
    assert subs.identities(sid) == IDENTITIES
    issued: list[str] = []
    for _ in range(400):  # a simulated year and a month, one nightly run a day
        issued += subs.issue_due()
        clock.advance(days=1)
    assert len(issued) == 6
    requests = [store.get(r) for r in issued]
    assert [r.received_at.date().isoformat() for r in requests] == [
        "2026-01-15", "2026-03-15", "2026-05-15", "2026-07-15", "2026-09-15", "2026-11-15",
    ]  # fmt: skip
    for req in requests:
        assert (req.lane, req.batch_ref, req.channel) == ("bulk", sid, "subscription")
        assert req.request_type == "portability" and req.state is State.RECEIVED
        assert store.identities(req.request_id) == IDENTITIES  # each request's own copy
        assert "batch " + sid in store.events(req.request_id)[0].detail
    assert store.list_batch(sid) == requests
    assert store.list_waiting() == requests
    ended = subs.get(sid)
    assert (ended.state, ended.issued) == ("ended", 6)
    assert subs.identities(sid) == ()
    assert subs.due(clock.now + timedelta(days=3650)) == []
    assert [e.event for e in subs.events(sid)] == ["subscribed", *["issued"] * 6, "ended"]
    assert "2 identities deleted" in subs.events(sid)[-1].detail


def test_months_are_calendar_months_clamped_and_counted_from_the_start(
    store: RequestStore, clock: Clock
) -> None:
    jan31 = datetime(2027, 1, 31, 9, 30, tzinfo=UTC)
    assert add_months_at(jan31, 1) == datetime(2027, 2, 28, 9, 30, tzinfo=UTC)
    assert add_months_at(jan31.replace(year=2028), 1) == datetime(2028, 2, 29, 9, 30, tzinfo=UTC)
    assert add_months_at(jan31, 3) == datetime(2027, 4, 30, 9, 30, tzinfo=UTC)
    subs = Subscriptions(store)
    sid = subs.subscribe(identities=IDENTITIES, every_months=1, months=3, start=jan31)
    assert subs.issue_due() == []  # not due yet (the clock is in 2026)
    seen = []
    for day in (
        jan31,
        datetime(2027, 2, 28, 9, 30, tzinfo=UTC),
        datetime(2027, 3, 31, 9, 30, tzinfo=UTC),
    ):
        assert subs.get(sid).next_due == day  # 31 Mar, not 28 Mar: no drift after February
        assert subs.issue_due(day - timedelta(seconds=1)) == []
        clock.now = day
        seen += subs.issue_due()
    assert len(seen) == 3 and subs.get(sid).state == "ended"  # 30 Apr is the end


def issue_together(racers: list[Subscriptions]) -> list[list[str]]:
    """Each calls issue_due from its own thread, released at the same instant."""
    barrier = threading.Barrier(len(racers))

    def race(s: Subscriptions) -> list[str]:
        barrier.wait()
        return s.issue_due()

    with ThreadPoolExecutor(len(racers)) as pool:
        return list(pool.map(race, racers))


def test_concurrent_issue_due_issues_each_occurrence_once(
    store: RequestStore, store_url: str, clock: Clock
) -> None:
    subs = Subscriptions(store)
    ids = [subs.subscribe(identities=IDENTITIES, months=4) for _ in range(6)]
    other = RequestStore.open(store_url, clock=clock)
    try:
        racers = [subs, Subscriptions(other)]
        for occurrence in (1, 2):
            results = issue_together(racers)
            issued = results[0] + results[1]
            assert len(issued) == len(set(issued)) == len(ids), results
            for sid in ids:
                assert len(store.list_batch(sid)) == occurrence
                assert subs.get(sid).issued == occurrence
            clock.advance(days=62)
        assert all(subs.get(sid).state == "ended" for sid in ids)
        assert all(subs.issue_due(clock.now + timedelta(days=400)) == [] for _ in range(2))
    finally:
        other.close()


def test_cancel_stops_a_subscription_and_forgets_the_subscriber(
    store: RequestStore, clock: Clock
) -> None:
    subs = Subscriptions(store)
    sid = subs.subscribe(identities=IDENTITIES)
    first = subs.issue_due()
    assert len(first) == 1
    subs.cancel(sid, actor="portal")
    assert subs.get(sid).state == "cancelled" and subs.identities(sid) == ()
    clock.advance(days=365)
    assert subs.due() == [] and subs.issue_due() == []
    assert store.get(first[0]).state is State.RECEIVED  # an issued request stays
    with pytest.raises(InvalidBatchTransition, match=f"subscription {sid}: cannot cancel"):
        subs.cancel(sid, actor="portal")
    with pytest.raises(BatchNotFound, match="subscription sub-nope: not found"):
        subs.cancel("sub-nope", actor="portal")
    with pytest.raises(BatchNotFound):
        subs.identities("sub-nope")
    assert [e.event for e in subs.events(sid)] == ["subscribed", "issued", "cancelled"]


@pytest.mark.parametrize(
    ("change", "names"),
    [
        ({"identities": [Identity("email", "zelda-at-example")]}, "not an email address"),
        ({"identities": [Identity("email_sha256", SECRET_EMAIL)]}, "SHA-256"),
        ({"identities": [Identity("passport", SECRET_ID)]}, "type must be one of"),
        ({"identities": []}, "at least one identity"),
        ({"request_type": "erasure"}, "request type"),
        ({"formats": ["xml"]}, "formats"),
        ({"every_months": 0}, "every_months"),
        ({"every_months": 13}, "every_months"),
        ({"every_months": True}, "every_months"),
        ({"every_months": 3, "months": 2}, "months must be a whole number from every_months"),
        ({"months": 37}, "months"),
        ({"start": datetime(2026, 2, 1)}, "start"),
        ({"channel": "fax"}, "channel"),
        ({"controller": ""}, "controller"),
        ({"actor": SECRET_EMAIL}, "actor must not contain"),
    ],
)
def test_subscribe_refuses_bad_input_naming_what_not_the_value(
    store: RequestStore, store_url: str, change: dict, names: str
) -> None:
    subs = Subscriptions(store)
    with pytest.raises(RequestError) as err:
        subs.subscribe(**{"identities": IDENTITIES, **change})
    assert names in str(err.value)
    assert_no_secret([str(err.value), repr(err.value)])
    assert raw_rows(store_url, "subscriptions", "subscription_identities") == []


# -- organisation exports ------------------------------------------------------------


def test_an_organisation_export_expands_into_one_bulk_request_per_member(
    store: RequestStore, clock: Clock
) -> None:
    orgs = OrganisationExports(store)
    eid = orgs.schedule(org_id="ACME-4411", due_at=T0 + timedelta(days=1), actor="dpo:alice")
    export = orgs.get(eid)
    assert eid.startswith("org-") and export.state == "scheduled" and export.members == 0
    assert (export.org_id, export.request_type, export.actor) == (
        "ACME-4411",
        "access",
        "dpo:alice",
    )
    assert orgs.due() == []
    clock.advance(days=1)
    assert orgs.due() == [export]
    ids = orgs.expand(eid, MEMBERS)
    assert len(ids) == len(MEMBERS)
    for rid, member in zip(ids, MEMBERS, strict=True):
        req = store.get(rid)
        assert (req.lane, req.batch_ref, req.channel) == ("bulk", eid, "organisation")
        assert req.request_type == "access" and store.identities(rid) == tuple(member)
    assert [r.request_id for r in store.list_batch(eid)] == ids
    assert [r.request_id for r in store.list_waiting()] == ids
    expanded = orgs.get(eid)
    assert (expanded.state, expanded.members) == ("expanded", 4) and orgs.due() == []
    assert orgs.expand(eid, MEMBERS) == []  # twice: nothing more
    assert len(store.list_batch(eid)) == 4
    done = orgs.complete(eid, "/exports/org/index.json", actor="batch")
    assert (done.state, done.index_location) == ("completed", "/exports/org/index.json")
    assert [e.event for e in orgs.events(eid)] == ["scheduled", "expanded", "completed"]
    with pytest.raises(InvalidBatchTransition, match="cannot complete in state completed"):
        orgs.complete(eid, "/x", actor="batch")
    with pytest.raises(InvalidBatchTransition, match="cannot cancel"):
        orgs.cancel(eid, actor="dpo:alice")


def test_expand_is_one_transaction_nothing_or_everything(
    store: RequestStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    orgs = OrganisationExports(store)
    eid = orgs.schedule(org_id="acme", actor="dpo:alice")
    bad = [*MEMBERS[:2], [Identity("email", "zelda-without-at")]]
    with pytest.raises(RequestError) as err:
        orgs.expand(eid, bad)
    assert "member 3" in str(err.value) and "not an email address" in str(err.value)
    assert_no_secret([str(err.value)])
    real = org_module.insert_request
    calls = []

    def crash_on_second(*args: object, **kw: object) -> StoredRequest:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("the process died mid-expansion")
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(org_module, "insert_request", crash_on_second)
    with pytest.raises(RuntimeError, match="mid-expansion"):
        orgs.expand(eid, MEMBERS)
    monkeypatch.undo()
    assert len(calls) == 2  # the first member's request was inserted, then rolled back
    assert store.list_batch(eid) == [] and store.list_new() == []
    assert (orgs.get(eid).state, orgs.get(eid).members) == ("scheduled", 0)
    assert [e.event for e in orgs.events(eid)] == ["scheduled"]
    assert len(orgs.expand(eid, MEMBERS)) == 4  # a retry does it all


def test_an_organisation_without_members_expands_to_zero_then_completes(
    store: RequestStore,
) -> None:
    orgs = OrganisationExports(store)
    eid = orgs.schedule(org_id="empty-org", actor="dpo:alice")
    assert orgs.expand(eid, []) == []
    assert (orgs.get(eid).state, orgs.get(eid).members) == ("expanded", 0)
    assert orgs.complete(eid, "/exports/empty/index.json", actor="batch").state == "completed"


def test_cancelling_an_expanded_export_withdraws_its_waiting_member_requests(
    store: RequestStore,
) -> None:
    orgs = OrganisationExports(store)
    scheduled = orgs.schedule(org_id="acme", actor="dpo:alice")
    assert orgs.cancel(scheduled, actor="dpo:alice").state == "cancelled"
    assert orgs.expand(scheduled, MEMBERS) == []  # cancelled: nothing to expand
    eid = orgs.schedule(org_id="acme", actor="dpo:alice")
    ids = orgs.expand(eid, MEMBERS)
    assert store.claim(ids[0])
    assert orgs.cancel(eid, actor="dpo:alice").state == "cancelled"
    assert store.get(ids[0]).state is State.RUNNING  # a running export finishes
    for rid in ids[1:]:
        assert store.get(rid).state is State.CANCELLED and store.identities(rid) == ()
        assert [e.event for e in store.events(rid)][-2:] == ["cancelled", "identities_deleted"]
    assert "3 waiting member requests cancelled" in orgs.events(eid)[-1].detail
    with pytest.raises(BatchNotFound, match="organisation export org-nope: not found"):
        orgs.get("org-nope")


@pytest.mark.parametrize("org_id", ["", " acme", "acme corp", "a\tb", "x" * 129, "acme\x00", 42])
def test_org_ids_are_checked_without_echoing_them(store: RequestStore, org_id: object) -> None:
    with pytest.raises(RequestError, match="organisation id must be 1-128 printable") as err:
        OrganisationExports(store).schedule(org_id=org_id, actor="dpo:alice")  # type: ignore[arg-type]
    assert "acme" not in str(err.value)


def test_schedule_checks_type_formats_due_and_actor(store: RequestStore) -> None:
    orgs = OrganisationExports(store)
    for change, names in (
        ({"request_type": "erasure"}, "request type"),
        ({"formats": []}, "formats"),
        ({"due_at": datetime(2026, 3, 1)}, "due_at"),
        ({"actor": ""}, "actor"),
    ):
        with pytest.raises(RequestError, match=names):
            orgs.schedule(**{"org_id": "acme", "actor": "dpo:alice", **change})


# -- the audit trails --------------------------------------------------------------------


def test_no_identity_value_in_any_audit_trail_or_batch_row(
    store: RequestStore, store_url: str, clock: Clock
) -> None:
    subs, orgs = Subscriptions(store), OrganisationExports(store)
    ended = subs.subscribe(identities=IDENTITIES, every_months=1, months=1)
    cancelled = subs.subscribe(identities=[Identity("email", "zelda.other@example.org")])
    issued = subs.issue_due()
    subs.cancel(cancelled, actor="portal")
    eid = orgs.schedule(org_id="acme", actor="dpo:alice")
    ids = orgs.expand(eid, MEMBERS)
    orgs.cancel(eid, actor="dpo:alice")
    texts = [repr(subs.get(ended)), repr(subs.get(cancelled)), repr(orgs.get(eid))]
    texts += [repr(subs.events(s)) for s in (ended, cancelled)] + [repr(orgs.events(eid))]
    texts += [repr(store.get(r)) + repr(store.events(r)) for r in issued + ids]
    texts += raw_rows(store_url, *AUDIT_TABLES, "subscriptions", "organisation_exports")
    texts += raw_rows(store_url, "subscription_identities")  # all deleted by now
    assert len(issued) == 2 and len(ids) == 4
    assert_no_secret(texts)
    # still there, but only where they belong: the open requests' identity rows
    assert store.identities(store.list_batch(ended)[0].request_id) == IDENTITIES


@pytest.mark.parametrize("table", ["subscription_events", "organisation_events"])
def test_the_new_audit_trails_are_append_only(
    store: RequestStore, store_url: str, table: str
) -> None:
    Subscriptions(store).subscribe(identities=IDENTITIES)
    OrganisationExports(store).schedule(org_id="acme", actor="dpo:alice")
    before = raw_rows(store_url, table)
    assert len(before) == 1
    engine = connect(store_url)
    statements = [f"UPDATE {table} SET detail = 'rewritten'", f"DELETE FROM {table}"]
    if engine.dialect.name == "postgresql":
        statements.append(f"TRUNCATE {table}")
    try:
        for statement in statements:
            with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
                conn.execute(sa.text(statement))
    finally:
        engine.dispose()
    assert raw_rows(store_url, table) == before
