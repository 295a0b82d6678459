"""Status callbacks through the persisted outbox, received by a real portal server.

The portal (a threaded ``http.server`` on loopback) verifies every callback's
signature against the certificate named in discovery before reading it. The store is
driven directly, as Dagster and the DPO drive it. Outages: the portal not listening,
the portal answering 503, the API re-created (a restart) and, last, the real API
process killed with SIGKILL and started again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api import create_app
from api.auth import Portals
from api.models import CallbackBody
from api.tables import create as create_api_tables
from request_store import RequestStore
from tests import api_fixtures
from tests.api_fixtures import (
    DOMAIN_HEADER,
    PREFIX,
    Api,
    TestPortal,
    copy_keys,
    free_port,
    make_api,
    request_body,
    restart,
    sha256_hex,
    wait_until,
)

# the fixtures
api, api_keys, portal = api_fixtures.api, api_fixtures.api_keys, api_fixtures.portal

ROOT = Path(__file__).resolve().parents[1]


def submit_with_callback(api: Api, portal: TestPortal, **overrides: object) -> str:
    portal.certificate = api.certificate()  # from discovery, as a portal would
    body = request_body(status_callback_urls=[portal.url], **overrides)
    assert api.submit(body).status_code == 201
    return body["subject_request_id"]


def run(api: Api, rounds: int = 1, advance_s: float = 0.0):
    result = None
    for _ in range(rounds):
        api.clock.advance(seconds=advance_s)
        result = api.services.outbox.run_once()
    return result


def test_each_status_change_is_called_back_signed(api: Api, portal: TestPortal) -> None:
    portal.start()
    srid = submit_with_callback(api, portal)
    assert run(api).enqueued == 0  # received: answered by the 201, no callback
    rid = api.request_id(srid)
    assert api.store.claim(rid)
    assert run(api).sent == 1
    archive = api.deliver(srid, b"the archive")
    assert run(api).sent == 1
    assert portal.statuses() == ["in_progress", "completed"]
    assert all(r.verified for r in portal.received)
    first, done = (r.json for r in portal.received)
    assert first == {
        "controller_id": "portal-a",
        "expected_completion_time": "2026-02-28T23:59:59Z",
        "subject_request_id": srid,
        "request_status": "in_progress",
        "api_version": "2.0",
        "extensions": {"testserver": {"status": "in_progress"}},
        "status_callback_url": portal.url,
    }
    assert done["results_count"] == 7
    for r in portal.received:  # what the OpenAPI document's webhook says
        CallbackBody.model_validate(r.json)
    assert portal.received[1].headers[DOMAIN_HEADER] == "testserver"
    assert portal.received[1].headers["X-OpenDSR-Delivery-Id"]
    download = api.client.get(done["results_url"])
    assert download.status_code == 200 and download.content == archive.read_bytes()
    # acknowledged: never sent again, however many rounds run
    assert run(api, rounds=5, advance_s=3600).sent == 0
    assert len(portal.received) == 2
    rows = api.services.outbox.rows(rid)
    assert [(r["state"], r["attempts"], r["last_error"]) for r in rows] == [
        ("running", 1, None),
        ("completed", 1, None),
    ]
    assert all(r["sent_at"] is not None for r in rows)


def test_the_portal_down_during_completion_gets_each_callback_once_when_up(
    api: Api, portal: TestPortal
) -> None:
    srid = submit_with_callback(api, portal)  # the portal is not listening
    rid = api.request_id(srid)
    assert api.store.claim(rid)
    api.deliver(srid, b"zip")
    first = run(api)
    assert (first.enqueued, first.sent, first.failed) == (2, 0, 1)  # completed waits its turn
    rows = api.services.outbox.rows(rid)
    assert [(r["attempts"], r["last_error"]) for r in rows] == [(1, "ConnectError"), (0, None)]
    assert run(api, advance_s=1).failed == 0  # backoff: not due for 2 s
    assert run(api, advance_s=1.5).failed == 1  # due: fails again, next in 4 s
    delay = rows_of(api, rid)[0]["next_attempt_at"] - api.clock.now
    assert delay.total_seconds() == pytest.approx(4)
    portal.start()
    assert run(api, advance_s=1).sent == 0  # still backing off
    assert run(api, advance_s=3).sent == 2  # in order, in one round
    assert portal.statuses() == ["in_progress", "completed"]
    assert all(r.verified for r in portal.received)
    run(api, rounds=5, advance_s=600)
    assert portal.statuses() == ["in_progress", "completed"]  # exactly once each


def rows_of(api: Api, rid: str) -> list[dict]:
    return api.services.outbox.rows(rid)


def test_a_failing_portal_is_retried_with_exponential_backoff(api: Api, portal: TestPortal) -> None:
    portal.status = 503
    portal.start()
    srid = submit_with_callback(api, portal)
    api.client.delete(f"{PREFIX}/requests/{srid}", headers=api.auth())
    rid = api.request_id(srid)
    delays = []
    for _ in range(5):
        assert run(api).failed == 1
        row = rows_of(api, rid)[0]
        assert row["last_error"] == "HTTP 503"
        delays.append((row["next_attempt_at"] - api.clock.now).total_seconds())
        api.clock.now = row["next_attempt_at"]
    assert delays == [2, 4, 8, 16, 32]
    portal.status = 200
    assert run(api).sent == 1
    assert run(api, rounds=3, advance_s=3600).sent == 0
    assert portal.statuses() == ["cancelled"] * 6  # 5 refused, 1 acknowledged
    assert rows_of(api, rid)[0]["attempts"] == 6


def test_outbox_rows_survive_a_restart(api: Api, portal: TestPortal) -> None:
    srid = submit_with_callback(api, portal)
    rid = api.request_id(srid)
    assert api.store.claim(rid)
    assert run(api).failed == 1  # the portal is down
    api.deliver(srid, b"zip")
    api.services.outbox.enqueue()  # enqueued, never attempted: then the process stops
    again = restart(api)
    try:
        rows = again.services.outbox.rows(rid)
        assert [(r["state"], r["attempts"]) for r in rows] == [("running", 1), ("completed", 0)]
        portal.start()
        result = run(again, advance_s=5)
        assert (result.enqueued, result.sent) == (0, 2)  # nothing enqueued twice
        run(again, rounds=3, advance_s=600)
        assert portal.statuses() == ["in_progress", "completed"]
    finally:
        again.client.close()
        again.services.close()


def test_changes_by_anyone_are_called_back_in_order(api: Api, portal: TestPortal) -> None:
    portal.start()
    srid = submit_with_callback(api, portal)
    rid = api.request_id(srid)
    s = api.store
    s.claim(rid)
    s.fail(rid, "collected__crm: connection refused", actor="dagster")
    s.claim(rid, actor="dagster")  # the DPO re-runs it
    s.fail(rid, "collected__crm: connection refused", actor="dagster")
    s.deny(rid, "identity could not be confirmed", actor="dpo:alice")
    run(api)
    got = [(r.json["request_status"], r.json["extensions"]["testserver"]) for r in portal.received]
    assert got == [
        ("in_progress", {"status": "in_progress"}),
        ("in_progress", {"status": "failed", "reason_code": "export_failed"}),
        ("in_progress", {"status": "in_progress"}),
        ("in_progress", {"status": "failed", "reason_code": "export_failed"}),
        ("cancelled", {"status": "denied", "reason_code": "denied",
                       "reason": "identity could not be confirmed"}),
    ]  # fmt: skip


def test_requests_without_callbacks_enqueue_nothing(api: Api) -> None:
    body = request_body()
    api.submit(body)
    rid = api.request_id(body["subject_request_id"])
    api.store.claim(rid)
    assert run(api).enqueued == 0
    assert rows_of(api, rid) == []


def test_an_event_that_commits_behind_the_cursor_is_not_skipped(
    api: Api, portal: TestPortal
) -> None:
    """PostgreSQL hands out event ids before commit: a change can appear below the
    cursor. Two events are written by hand with ids that leave such a gap."""
    portal.start()
    srids = [submit_with_callback(api, portal) for _ in range(2)]
    first, late = (api.request_id(s) for s in srids)
    engine = api.store.engine
    with engine.begin() as conn:
        top = conn.exec_driver_sql("SELECT max(id) FROM request_events").scalar()
        insert = (
            "INSERT INTO request_events (id, request_id, at, actor, event, detail) "
            "VALUES (?, ?, '2026-01-31 12:00:00.000000', 'dagster', 'claimed', 'attempt 1')"
        )
        conn.exec_driver_sql(insert, (top + 10, first))
    assert run(api).sent == 1  # the cursor is now past top + 10
    with engine.begin() as conn:  # the one that committed late, inside the gap
        conn.exec_driver_sql(insert, (top + 5, late))
    assert run(api).sent == 1
    assert sorted(r.json["subject_request_id"] for r in portal.received) == sorted(srids)
    assert run(api, rounds=2).sent == 0


def test_an_undeliverable_callback_is_abandoned(
    tmp_path: Path, api_keys: Path, portal: TestPortal
) -> None:
    short = make_api(tmp_path, api_keys, callback_give_up_s=60)
    try:
        srid = submit_with_callback(short, portal)
        short.client.delete(f"{PREFIX}/requests/{srid}", headers=short.auth())
        rid = short.request_id(srid)
        for _ in range(10):
            run(short, advance_s=30)
        row = rows_of(short, rid)[0]
        assert row["abandoned_at"] is not None and row["sent_at"] is None
        attempts = row["attempts"]
        portal.start()
        run(short, rounds=3, advance_s=3600)
        assert rows_of(short, rid)[0]["attempts"] == attempts
        assert portal.received == []
    finally:
        short.services.close()


def test_two_processes_never_send_a_callback_twice(api: Api, portal: TestPortal) -> None:
    portal.start()
    second = create_app(api.settings, clock=api.clock)  # another API process, same database
    try:
        srids = [submit_with_callback(api, portal) for _ in range(5)]
        for srid in srids:
            api.store.claim(api.request_id(srid))
        outboxes = [api.services.outbox, second.state.services.outbox]
        threads = [
            threading.Thread(target=lambda o=o: [o.run_once() for _ in range(3)]) for o in outboxes
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ids = sorted(r.json["subject_request_id"] for r in portal.received)
        assert ids == sorted(srids)
    finally:
        second.state.services.close()


def test_the_worker_thread_delivers_while_the_app_runs(
    tmp_path: Path, api_keys: Path, portal: TestPortal
) -> None:
    live = make_api(tmp_path, api_keys, callbacks=True, callback_poll_s=0.05)
    portal.start()
    try:
        with TestClient(live.app) as client:  # runs the lifespan: the worker starts
            live.client = client
            srid = submit_with_callback(live, portal)
            live.store.claim(live.request_id(srid))
            deadline = time.monotonic() + 10
            while not portal.received and time.monotonic() < deadline:
                time.sleep(0.05)
            assert portal.statuses() == ["in_progress"]
    finally:
        live.services.close()


# -- the real service, killed and restarted -------------------------------------------


@pytest.fixture
def service(tmp_path: Path, api_keys: Path) -> Iterator[dict]:
    """``python -m api`` as a real process: start(), kill() (SIGKILL)."""
    port = free_port()
    env = {
        **os.environ,
        "PORTABILITY_REQUEST_STORE": str(tmp_path / "requests.sqlite"),
        "PORTABILITY_EXPORTS": str(tmp_path / "exports"),
        "PORTABILITY_API_STATE": str(tmp_path / "api"),
        "PORTABILITY_API_PORT": str(port),
        "PORTABILITY_API_CALLBACK_POLL": "0.1",
        "PORTABILITY_API_CALLBACK_BACKOFF": "0.2",
        "PORTABILITY_API_CALLBACK_BACKOFF_MAX": "0.5",
    }
    copy_keys(api_keys, tmp_path / "api")
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "api.log"
    procs: list[subprocess.Popen] = []

    def start() -> None:
        cmd = [sys.executable, "-m", "api"]
        with log.open("ab") as out:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=out)
        procs.append(proc)

        def up() -> bool:
            assert proc.poll() is None, "the API process exited"
            try:
                return httpx.get(f"{base}{PREFIX}/discovery", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(up, what="the API to listen")

    def kill() -> None:
        proc = procs[-1]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    store = RequestStore.open(env["PORTABILITY_REQUEST_STORE"])
    create_api_tables(store.engine)
    token = Portals(store.engine).add("portal-a")
    try:
        yield {"base": base, "start": start, "kill": kill, "store": store, "token": token,
               "exports": tmp_path / "exports", "log": log}  # fmt: skip
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)
        store.close()


def test_a_killed_service_delivers_its_pending_callbacks_once_after_a_restart(
    service: dict, portal: TestPortal
) -> None:
    base, store = service["base"], service["store"]
    service["start"]()
    discovery = httpx.get(f"{base}{PREFIX}/discovery").json()
    portal.certificate = httpx.get(discovery["processor_certificate"]).content
    body = request_body(status_callback_urls=[portal.url])
    headers = {"Authorization": f"Bearer {service['token']}"}
    created = httpx.post(f"{base}{PREFIX}/requests", json=body, headers=headers)
    assert created.status_code == 201
    req = store.find_external(body["subject_request_id"], "portal-a")
    assert req is not None
    # Dagster runs it while the portal is down
    assert store.claim(req.request_id)
    content = os.urandom(50_000)
    folder = service["exports"]
    folder.mkdir(parents=True)
    (folder / "out.zip").write_bytes(content)
    store.complete(req.request_id, location=str(folder / "out.zip"), sha256=sha256_hex(content),
                   count=3)  # fmt: skip
    engine = store.engine

    def attempted() -> bool:
        with engine.connect() as conn:
            attempts = conn.exec_driver_sql("SELECT max(attempts) FROM api_outbox").scalar()
            return (attempts or 0) >= 2

    wait_until(attempted, what="failed attempts")
    service["kill"]()
    portal.start()
    service["start"]()
    wait_until(lambda: len(portal.received) >= 2, what="the callbacks")
    time.sleep(1.0)  # several more rounds: nothing more may arrive
    assert portal.statuses() == ["in_progress", "completed"]
    assert all(r.verified for r in portal.received)
    results = portal.received[1].json["results_url"]
    download = httpx.get(results)
    assert download.status_code == 200 and download.content == content
    status = httpx.get(f"{base}{PREFIX}/requests/{body['subject_request_id']}", headers=headers)
    assert status.json()["request_status"] == "completed"
    log = service["log"].read_text()
    assert "/results/[link]" in log  # the download is in the access log, its token is not
    assert results.rsplit("/", 1)[1] not in log


@pytest.mark.postgres
def test_the_api_and_its_outbox_on_postgresql(
    tmp_path: Path, api_keys: Path, postgres_url: str, portal: TestPortal
) -> None:
    pg = make_api(tmp_path, api_keys, store_url=postgres_url)
    try:
        portal.start()
        body = request_body(status_callback_urls=[portal.url])
        portal.certificate = pg.certificate()
        assert pg.submit(body).status_code == 201
        assert pg.submit(body).status_code == 201  # idempotent
        assert pg.submit({**body, "subject_request_type": "portability"}).status_code == 409
        srid = body["subject_request_id"]
        pg.deliver(srid, b"zip bytes")
        assert run(pg).sent == 2
        assert portal.statuses() == ["in_progress", "completed"]
        assert all(r.verified for r in portal.received)
        assert pg.client.get(portal.received[1].json["results_url"]).content == b"zip bytes"
        assert run(pg, rounds=2, advance_s=600).sent == 0
    finally:
        pg.services.close()
