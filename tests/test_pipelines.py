"""The Dagster code location, in process: requests from the store become partitions and
runs, outcomes go back to the store, the DPO's jobs work, and no personal data lands in
Dagster's storage."""

from __future__ import annotations

import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from engine.request import Identity
from exporters.delivery import file_sha256
from pipelines.definitions import build_definitions
from pipelines.defs.deadlines.assets import deadlines_daily, request_deadlines
from pipelines.defs.requests.dpo import purge_registration_runs
from pipelines.lib.settings import PortabilityResource
from request_store import RequestSpec, RequestStore, State
from tests.location_fixtures import Location
from tests.world_fixtures import Demo, edge

SUBJECTS = ("multi_account", "shared_org_member", "ticket_mentions_other")


def test_the_code_location_loads_as_dagster_loads_it() -> None:
    defs = build_definitions()
    dg.Definitions.validate_loadable(defs)  # names unique, jobs resolvable, schedules valid
    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert {"collected/crm", "collected/payments", "normalized/personal", "archive"} <= keys
    assert {"delivery", "request_deadlines"} <= keys


def submit(loc: Location, email: str, channel: str = "portal") -> str:
    req, _ = loc.store.submit(
        RequestSpec(request_type="access", identities=[Identity("email", email)], channel=channel)
    )
    return req.request_id


def test_requests_become_partitions_runs_and_completed_exports(
    demo: Demo, location: Location
) -> None:
    emails = [edge(demo, s)["emails"][0] for s in SUBJECTS]
    ids = [submit(location, e) for e in emails]
    tick = location.sensor_tick()
    assert [r.partition_key for r in tick.run_requests] == ids
    assert [r.run_key for r in tick.run_requests] == ids  # a request never runs twice
    assert location.sensor_tick(tick.cursor).run_requests == []  # nothing new
    assert set(location.instance.get_dynamic_partitions("export_requests")) == set(ids)
    for rid, email in zip(ids, emails, strict=True):
        result = location.run_export(rid)
        assert result.success
        location.report(result)
        req = location.store.get(rid)
        assert req.state == State.COMPLETED and location.store.identities(rid) == ()
        archive = Path(req.result_location or "")
        assert archive.parent == location.exports and file_sha256(archive) == req.result_sha256
        with zipfile.ZipFile(archive) as z:
            assert email in z.read("data/personal.json").decode()
        assert not (location.staging / rid).exists()
        checks = result.get_asset_check_evaluations()
        assert checks and all(c.passed for c in checks)
        meta = (
            location.instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey("delivery"), asset_partitions=[rid]),
                limit=1,
            )
            .records[0]
            .asset_materialization.metadata
        )
        assert meta["records"].value == req.result_count and "legal deadline" in meta


def test_the_delivery_completes_the_request_and_the_run_sensor_catches_a_missed_one(
    demo: Demo, location: Location, monkeypatch: pytest.MonkeyPatch
) -> None:
    email = edge(demo, "multi_account")["emails"][0]
    first, second = submit(location, email), submit(location, email)
    location.sensor_tick()
    result = location.run_export(first)  # no run-status sensor yet: the asset completed it
    assert result.success and location.store.get(first).state == State.COMPLETED
    # a run that stopped between delivering and completing: the run-status sensor completes it
    with monkeypatch.context() as patched:
        patched.setattr(RequestStore, "complete", lambda *a, **k: None)
        missed = location.run_export(second)
    assert missed.success and location.store.get(second).state == State.RUNNING
    location.report(missed)
    done = location.store.get(second)
    assert done.state == State.COMPLETED and Path(done.result_location or "").is_file()


def test_with_direct_launch_the_sensor_leaves_fresh_portal_requests_to_the_api(
    demo: Demo, location: Location, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PORTABILITY_DAGSTER_URL", "http://127.0.0.1:3000")
    email = edge(demo, "multi_account")["emails"][0]
    minute_ago = RequestStore.open(
        PortabilityResource().store_url(), clock=lambda: datetime.now(UTC) - timedelta(minutes=1)
    )
    with minute_ago:  # portal requests past the grace: one the API launched, one it did not
        launched = submit(Location(**{**location.__dict__, "store": minute_ago}), email)
        missed = submit(Location(**{**location.__dict__, "store": minute_ago}), email)
    job = location.defs.resolve_job_def("export_request")
    location.instance.add_run(
        dg.DagsterRun(job_name=job.name, tags={"dagster/partition": launched})  # queued by the API
    )
    dpo, fresh, later = (
        submit(location, email, "dpo"),
        submit(location, email),
        submit(location, email, "dpo"),
    )
    tick = location.sensor_tick()
    assert [r.partition_key for r in tick.run_requests] == [missed, dpo]
    # the fresh portal request is the API's to launch for now, and so is all after it
    assert location.sensor_tick(tick.cursor).run_requests == []
    monkeypatch.delenv("PORTABILITY_DAGSTER_URL")  # no direct launch: no grace
    assert [r.partition_key for r in location.sensor_tick(tick.cursor).run_requests] == [
        fresh,
        later,
    ]


def test_a_failed_source_fails_the_request_and_a_rerun_completes_it(
    demo: Demo, location: Location, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    email = edge(demo, "multi_account")["emails"][0]
    rid = submit(location, email)
    location.sensor_tick()
    bad = tmp_path / "bad.env"
    bad.write_text("".join(f"{k}={v}\n" for k, v in demo.env.items()) + "PAYMENTS_API_TOKEN=no\n")
    monkeypatch.setenv("PORTABILITY_ENV_FILE", str(bad))
    failed = location.run_export(rid)
    assert not failed.success
    location.report(failed)
    req = location.store.get(rid)
    assert req.state == State.FAILED and "collected__payments" in (req.failure or "")
    assert email not in (req.failure or "")
    assert not location.exports.exists() or not list(location.exports.iterdir())
    monkeypatch.setenv("PORTABILITY_ENV_FILE", str(tmp_path / "sources.env"))
    again = location.run_export(rid)  # the DPO re-runs the partition
    assert again.success
    location.report(again)
    done = location.store.get(rid)
    assert done.state == State.COMPLETED and done.attempts == 2
    events = [e.event for e in location.store.events(rid)]
    assert events[:2] == ["received", "claimed"] and "failed" in events
    assert events[-2:] == ["completed", "identities_deleted"] or "completed" in events


def test_closed_requests_are_not_exported(demo: Demo, location: Location) -> None:
    rid = submit(location, edge(demo, "under_16")["emails"][0])
    location.store.deny(rid, "manifestly unfounded", actor="dpo:test")
    location.instance.add_dynamic_partitions("export_requests", [rid])
    result = location.run_export(rid)
    assert not result.success
    assert location.store.get(rid).state == State.DENIED


def test_the_dpo_registers_denies_and_extends_and_the_form_is_purged(
    demo: Demo, location: Location
) -> None:
    email = edge(demo, "no_events")["emails"][0]
    job = location.defs.resolve_job_def("register_request")
    config = {"identity_type": "email", "identity_value": email, "request_type": "portability"}
    result = job.execute_in_process(
        run_config={"ops": {"register": {"config": config}}}, instance=location.instance
    )
    assert result.success
    (new,) = location.store.list_new()
    assert new.channel == "dpo" and new.request_type == "portability"
    assert location.store.identities(new.request_id) == (Identity("email", email),)
    extend = location.defs.resolve_job_def("extend_request")
    decision = {"request_id": new.request_id, "reason": "complex request: several systems"}
    assert extend.execute_in_process(
        run_config={"ops": {"extend": {"config": decision}}}, instance=location.instance
    ).success
    assert location.store.get(new.request_id).extended_deadline is not None
    deny = location.defs.resolve_job_def("deny_request")
    assert deny.execute_in_process(
        run_config={"ops": {"deny": {"config": decision}}}, instance=location.instance
    ).success
    assert location.store.get(new.request_id).state == State.DENIED
    bad = {**config, "identity_value": "not-an-email"}
    refused = job.execute_in_process(
        run_config={"ops": {"register": {"config": bad}}},
        instance=location.instance,
        raise_on_error=False,
    )
    assert not refused.success
    purge_registration_runs(dg.build_sensor_context(instance=location.instance))
    assert location.instance.get_run_records(dg.RunsFilter(job_name="register_request")) == []


def test_the_deadline_schedule_runs_the_check_daily() -> None:
    assert deadlines_daily.default_status == dg.DefaultScheduleStatus.RUNNING
    ctx = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 11, 24, 6, tzinfo=UTC))
    (run,) = list(deadlines_daily.evaluate_tick(ctx).run_requests or [])
    assert deadlines_daily.job_name == "flag_deadlines" and isinstance(run, dg.RunRequest)
    assert deadlines_daily.cron_schedule == "0 6 * * *"


def test_deadlines_are_flagged_in_the_catalog(demo: Demo, location: Location) -> None:
    submit(location, edge(demo, "heavy_user")["emails"][0])
    result = dg.materialize(
        [request_deadlines],
        instance=location.instance,
        resources={"portability": PortabilityResource()},
    )
    assert result.success
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {"no_overdue_requests": True, "none_due_soon": True}
    meta = result.asset_materializations_for_node("request_deadlines")[0].metadata
    assert meta["open requests"].value == 1 and meta["overdue"].value == 0

    now = datetime.now(UTC)
    for days_ago in (26, 40):  # due soon (day 26 of the month), overdue
        location.store.submit(
            RequestSpec(
                request_type="access",
                identities=[Identity("email", edge(demo, "no_payments")["emails"][0])],
                submitted_at=now - timedelta(days=days_ago),
            )
        )
    result = dg.materialize(
        [request_deadlines],
        instance=location.instance,
        resources={"portability": PortabilityResource()},
    )
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {"no_overdue_requests": False, "none_due_soon": False}
    meta = result.asset_materializations_for_node("request_deadlines")[0].metadata
    assert (meta["open requests"].value, meta["due soon"].value, meta["overdue"].value) == (
        3,
        1,
        1,
    )


def test_no_personal_data_in_dagster_storage_or_staging(demo: Demo, location: Location) -> None:
    people = [edge(demo, s) for s in (*SUBJECTS, "no_events")]
    for person in people[:3]:
        rid = submit(location, person["emails"][0])
        location.sensor_tick()
        result = location.run_export(rid)
        location.report(result)
    job = location.defs.resolve_job_def("register_request")
    typed = {"identity_type": "email", "identity_value": people[3]["emails"][0]}
    job.execute_in_process(
        run_config={"ops": {"register": {"config": typed}}}, instance=location.instance
    )
    (registered,) = location.store.list_new()
    location.store.deny(registered.request_id, "test", actor="dpo:test")
    purge_registration_runs(dg.build_sensor_context(instance=location.instance))
    needles = {
        str(v)
        for p in people
        for key in ("emails", "full_names", "person_ids", "customer_numbers", "account_ids")
        for v in p.get(key, [])
        if v
    }
    found = []
    for root in (location.home, location.staging):
        for path in root.rglob("*") if root.exists() else []:
            if path.is_file():
                data = path.read_bytes()
                found += [(str(path), n) for n in needles if n.encode() in data]
    assert found == []


def test_a_transient_source_failure_is_retried_a_permanent_one_is_not(
    demo: Demo, location: Location, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.export import ExportFailed
    from engine.steps import ExportSteps

    real = ExportSteps.collect
    calls: list[str] = []

    def flaky(self: ExportSteps, system: str, connectors: object = None) -> object:
        calls.append(system)
        if system == "payments" and calls.count("payments") == 1:
            raise ExportFailed("payments.charges: HTTP 503 (retries exhausted)", transient=True)
        return real(self, system)

    monkeypatch.setattr(ExportSteps, "collect", flaky)
    rid = submit(location, edge(demo, "multi_account")["emails"][0])
    location.instance.add_dynamic_partitions("export_requests", [rid])
    result = location.run_export(rid)
    assert result.success and calls.count("payments") == 2
    restarts = location.instance.get_records_for_run(
        result.run_id, of_type=dg.DagsterEventType.STEP_RESTARTED
    ).records
    assert [r.event_log_entry.step_key for r in restarts] == ["collected__payments"]

    calls.clear()

    def broken(self: ExportSteps, system: str, connectors: object = None) -> object:
        calls.append(system)
        if system == "payments":
            raise ExportFailed("payments.charges: HTTP 401 (not transient)")
        return real(self, system)

    monkeypatch.setattr(ExportSteps, "collect", broken)
    rid = submit(location, edge(demo, "shared_org_member")["emails"][0])
    location.instance.add_dynamic_partitions("export_requests", [rid])
    result = location.run_export(rid)
    assert not result.success and calls.count("payments") == 1


def test_retention_deletes_expired_archives_and_shows_what_is_held(
    demo: Demo, location: Location
) -> None:
    email = edge(demo, "multi_account")["emails"][0]
    old, kept = submit(location, email), submit(location, email)
    location.sensor_tick()
    for rid in (old, kept):
        assert location.run_export(rid).success
    archive = Path(location.store.get(old).result_location or "")
    assert archive.is_file()
    with location.store.engine.begin() as conn:  # the old one's 30 days have passed
        conn.exec_driver_sql(
            "UPDATE request_deliveries SET expires_at = '2000-01-01 00:00:00.000000' "
            "WHERE request_id = ?",
            (old,),
        )
    job = location.defs.resolve_job_def("apply_retention")
    result = job.execute_in_process(instance=location.instance)
    assert result.success
    assert not archive.exists() and Path(location.store.get(kept).result_location or "").is_file()
    meta = result.asset_materializations_for_node("archives_held")[0].metadata
    assert meta["parts deleted"].value == 1 and meta["parts held"].value == 1
    assert kept in meta["held"].value and old not in meta["held"].value
    assert email not in str(meta)
    (check,) = result.get_asset_check_evaluations()
    assert check.passed
    assert "archive_deleted" in [e.event for e in location.store.events(old)]
    schedule = location.defs.resolve_schedule_def("retention_daily")
    assert schedule.cron_schedule == "0 3 * * *" and schedule.job_name == "apply_retention"
