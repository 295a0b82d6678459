"""Bulk exports in the code location: the three schedules, the batch job, its failures.

The job runs in process here (the Celery test runs it on workers); the store, the
demo world's sources and the deliveries are real.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from engine.request import Identity
from pipelines.defs.bulk.schedules import (
    bulk_run_failed,
    organisation_exports,
    pending_exports_nightly,
    recurring_exports,
)
from pipelines.lib.settings import PortabilityResource
from request_store import OrganisationExports, RequestSpec, State, Subscriptions
from tests.location_fixtures import Location
from tests.world_fixtures import Demo, edge

RESOURCES = {"portability": PortabilityResource()}


def people(demo: Demo, n: int) -> list[str]:
    with sqlite3.connect(demo.root / "crm.sqlite") as con:
        return [e for (e,) in con.execute("select email from people order by email limit ?", (n,))]


def bulk(loc: Location, email: str) -> str:
    req, _ = loc.store.submit(
        RequestSpec(request_type="access", identities=[Identity("email", email)], lane="bulk")
    )
    return req.request_id


def tick(schedule: dg.ScheduleDefinition, loc: Location) -> list[dg.RunRequest]:
    with dg.build_schedule_context(
        instance=loc.instance,
        scheduled_execution_time=datetime.now(UTC),
        resources=RESOURCES,
    ) as ctx:
        result = schedule.evaluate_tick(ctx)
    return list(result.run_requests or [])


def run(loc: Location, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    job = loc.defs.resolve_job_def("bulk_export")
    return job.execute_in_process(
        run_config=request.run_config, instance=loc.instance, raise_on_error=False
    )


def summary(result: dg.ExecuteInProcessResult) -> dict:
    (event,) = [
        e for e in result.all_node_events if e.step_key == "bulk_summary" and e.is_successful_output
    ]
    return {k: v.value for k, v in event.event_specific_data.metadata.items()}  # type: ignore[union-attr]


def personal_json(path: str | None) -> str:
    with zipfile.ZipFile(path or "") as z:
        return z.read("data/personal.json").decode()


def test_nightly_run_exports_the_waiting_bulk_requests_in_batches(
    demo: Demo, location: Location
) -> None:
    emails = [*people(demo, 7), edge(demo, "shared_org_member")["emails"][0]]
    ids = [bulk(location, e) for e in emails]
    portal, _ = location.store.submit(
        RequestSpec(request_type="access", identities=[Identity("email", emails[0])])
    )
    sensor = location.sensor_tick()  # the per-request sensor leaves the bulk lane alone
    assert [r.partition_key for r in sensor.run_requests] == [portal.request_id]
    (request,) = tick(pending_exports_nightly, location)
    request.run_config["ops"]["plan_batches"]["config"]["batch_size"] = 3
    result = run(location, request)
    assert result.success
    batches = [e for e in result.all_node_events if e.is_step_success]
    assert len([e for e in batches if (e.step_key or "").startswith("export_batch")]) == 3
    assert summary(result)["delivered"] == 8 and summary(result)["failed"] == 0
    for rid, email in zip(ids, emails, strict=True):
        req = location.store.get(rid)
        assert req.state == State.COMPLETED and location.store.identities(rid) == ()
        assert email in personal_json(req.result_location)
        assert not (location.staging / rid).exists()
    assert location.store.get(portal.request_id).state == State.RECEIVED  # not bulk's
    assert tick(pending_exports_nightly, location) == []  # nothing left waiting


def test_a_failing_subject_is_retried_alone_reported_and_taken_again(
    demo: Demo, location: Location, tmp_path: Path
) -> None:
    """One person's CRM row cannot be read: their request fails with the source named
    (after a second try alone), the batch's others are delivered, and the next nightly
    run takes the failed one again."""
    crm = tmp_path / "crm.sqlite"
    shutil.copy(demo.root / "crm.sqlite", crm)
    emails = people(demo, 5)
    with sqlite3.connect(crm) as con:
        con.execute("update people set created_at = 'garbage' where email = ?", (emails[2],))
    env_file = tmp_path / "broken.env"
    env_file.write_text(
        "".join(
            f"{k}={v}\n" for k, v in {**demo.env, "CRM_DATABASE_URL": f"sqlite:///{crm}"}.items()
        )
    )
    ids = [bulk(location, e) for e in emails]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PORTABILITY_ENV_FILE", str(env_file))
        (request,) = tick(pending_exports_nightly, location)
        result = run(location, request)
    assert result.success  # one subject's failure is not the batch's
    counts = summary(result)
    assert (counts["delivered"], counts["failed"], counts["retried"]) == (4, 1, 1)
    failed = location.store.get(ids[2])
    assert failed.state == State.FAILED and "'crm'" in (failed.failure or "")
    assert "garbage" not in (failed.failure or "") and emails[2] not in (failed.failure or "")
    assert all(location.store.get(i).state == State.COMPLETED for i in ids if i != ids[2])
    (again,) = tick(pending_exports_nightly, location)  # the failed one is taken again
    assert run(location, again).success
    assert location.store.get(ids[2]).state == State.COMPLETED  # the real CRM reads fine


def test_a_subscription_is_exported_when_due_and_then_every_two_months(
    demo: Demo, location: Location
) -> None:
    email = people(demo, 1)[0]
    subs = Subscriptions(location.store)
    sub = subs.subscribe(identities=[Identity("email", email)], every_months=2, months=12)
    (request,) = tick(recurring_exports, location)
    assert run(location, request).success
    issued = location.store.list_batch(sub)
    assert [r.state for r in issued] == [State.COMPLETED] and issued[0].lane == "bulk"
    assert email in personal_json(issued[0].result_location)
    state = subs.get(sub)
    assert state.issued == 1 and state.next_due - state.starts_at > timedelta(days=58)
    assert tick(recurring_exports, location) == []  # next one in two months


def test_an_organisation_export_gives_each_member_an_archive_and_an_index(
    demo: Demo, location: Location
) -> None:
    org = edge(demo, "shared_org_member")["org_ids"][0]
    with sqlite3.connect(demo.root / "crm.sqlite") as con:
        members = {
            cn
            for (cn,) in con.execute(
                "select distinct p.customer_number from org_members m "
                "join people p on p.person_id = m.person_id where m.org_id = ?",
                (org,),
            )
        }
    exports = OrganisationExports(location.store)
    export_id = exports.schedule(org_id=org, actor="dpo")
    (request,) = tick(organisation_exports, location)
    assert request.run_key == export_id
    result = run(location, request)
    assert result.success
    done = exports.get(export_id)
    assert done.state == "completed" and done.members == len(members) >= 2
    requests = location.store.list_batch(export_id)
    assert all(r.state == State.COMPLETED for r in requests)
    found = set()
    for r in requests:
        with zipfile.ZipFile(r.result_location or "") as z:
            (person,) = json.loads(z.read("data/personal.json"))  # one person per archive
        found.add(person["customer_number"])
    assert found == members
    index = json.loads(Path(done.index_location or "").read_text())
    assert index["members"] == index["delivered"] == len(members)
    assert {m["archive"] for m in index["requests"]} == {
        Path(r.result_location or "").name for r in requests
    }
    assert not any(cn in Path(done.index_location or "").read_text() for cn in members)
    assert tick(organisation_exports, location) == []  # it runs once
    empty = exports.schedule(org_id="org_with_nobody", actor="dpo")  # still gets its index
    (request,) = tick(organisation_exports, location)
    assert run(location, request).success
    assert exports.get(empty).state == "completed"
    assert json.loads(Path(exports.get(empty).index_location or "").read_text())["members"] == 0


def test_a_failed_bulk_run_leaves_no_request_running(demo: Demo, location: Location) -> None:
    rid = bulk(location, people(demo, 1)[0])
    failed = run(
        location,
        dg.RunRequest(run_config={"ops": {"plan_batches": {"config": {"source": "nope"}}}}),
    )
    assert not failed.success
    assert location.store.claim(rid, actor=f"run:{failed.run_id[:8]}")  # as its step would
    record = location.instance.get_run_by_id(failed.run_id)
    assert record is not None
    event = location.instance.get_records_for_run(
        failed.run_id, of_type=dg.DagsterEventType.RUN_FAILURE
    ).records[-1]
    ctx = dg.build_run_status_sensor_context(
        sensor_name=bulk_run_failed.name,
        dagster_instance=location.instance,
        dagster_run=record,
        dagster_event=event.event_log_entry.dagster_event,
        resources=RESOURCES,
    ).for_run_failure()
    bulk_run_failed(ctx)
    assert location.store.get(rid).state == State.FAILED
    (again,) = tick(pending_exports_nightly, location)
    assert run(location, again).success
    assert location.store.get(rid).state == State.COMPLETED


def test_a_batch_skips_requests_another_run_holds_but_takes_its_own_again(
    demo: Demo, location: Location
) -> None:
    """A step tried again after a crash finds its requests running under its own claim
    and exports them; one another run holds (running under its claim) is left alone."""
    from engine.datamap import load_datamap
    from exporters.delivery import LocalFolderDelivery
    from pipelines.lib.bulk_batches import BatchSettings, export_stored_batch

    ours, theirs, fresh = (bulk(location, e) for e in people(demo, 3))
    assert location.store.claim(ours, actor="run:mine0000")
    assert location.store.claim(theirs, actor="run:other000")
    settings = BatchSettings(
        datamap=load_datamap(),
        delivery=LocalFolderDelivery(location.exports),
        staging_root=location.staging,
        env=demo.env,
    )
    counts = export_stored_batch(
        location.store, [ours, theirs, fresh], settings, actor="run:mine0000"
    )
    assert (counts.delivered, counts.skipped, counts.failed) == (2, 1, 0)
    assert location.store.get(ours).state == location.store.get(fresh).state == State.COMPLETED
    assert location.store.get(theirs).state == State.RUNNING  # still the other run's
