"""Sensors between the request store and Dagster.

``export_requests_sensor`` turns new requests into partitions and runs (the cursor is
the store's ``seq``; the run key is the request id, so no request runs twice). When the
API launches portal requests itself (``PORTABILITY_DAGSTER_URL``, api/launcher.py), the
sensor leaves each such request to it for ``LAUNCH_GRACE_S`` seconds, then launches it
only if no run for it exists: the sensor is the fallback that loses nothing. Bulk-lane
requests (subscriptions, organisation exports) wait for the nightly batch: the sensor
launches nothing for them but moves its cursor past them. The run-status sensors
write each run's outcome back: completed with the archive's location, or failed with
the failing step and source named.
"""

from datetime import UTC, datetime, timedelta
from itertools import takewhile

import dagster as dg

from pipelines.defs.export.assets import DELIVERY
from pipelines.defs.export.jobs import export_job
from pipelines.lib.partitions import export_requests
from pipelines.lib.settings import PortabilityResource
from request_store import State, StoredRequest

RUNNING = dg.DefaultSensorStatus.RUNNING
BATCH = 100  # requests turned into runs per tick


@dg.sensor(job=export_job, minimum_interval_seconds=5, default_status=RUNNING)
def export_requests_sensor(
    context: dg.SensorEvaluationContext, portability: PortabilityResource
) -> dg.SensorResult:
    """New requests in the store: a partition and a run each (unless the API launched it)."""
    after = int(context.cursor or 0)
    with portability.open_store() as store:
        # the bulk lane waits for the nightly batch: never read here, never in the way
        new = store.list_new(after_seq=after, limit=BATCH, lane="single")
    grace = portability.launch_grace_s()
    if grace:  # in seq order, up to the first portal request still the API's to launch
        cutoff = datetime.now(UTC) - timedelta(seconds=grace)
        new = list(takewhile(lambda r: _ready(r, cutoff), new))
    if not new:
        return dg.SensorResult(skip_reason="no new requests")
    cursor = str(new[-1].seq)
    ids = [r.request_id for r in new]
    launched = _with_runs(context.instance, ids) if grace else set()
    todo = [i for i in ids if i not in launched]
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=i, partition_key=i) for i in todo],
        dynamic_partitions_requests=[export_requests.build_add_request(todo)] if todo else [],
        cursor=cursor,
    )


def _ready(request: StoredRequest, cutoff: datetime) -> bool:
    return request.channel != "portal" or request.received_at <= cutoff


def _with_runs(instance: dg.DagsterInstance, ids: list[str]) -> set[str]:
    """Those of ``ids`` that have a run of the export job already."""
    runs = instance.get_runs(
        dg.RunsFilter(job_name=export_job.name, tags={"dagster/partition": ids})
    )
    return {r.tags["dagster/partition"] for r in runs}


def _request_id(run: dg.DagsterRun) -> str | None:
    return run.tags.get("dagster/partition")


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[export_job],
    default_status=RUNNING,
    name="export_run_succeeded",
)
def export_run_succeeded(context: dg.RunStatusSensorContext) -> None:
    """A delivered export completes its request, with the archive's location and hash
    (the delivery asset does so itself; this catches a run stopped just after delivery)."""
    rid = _request_id(context.dagster_run)
    if rid is None:
        return
    found = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=DELIVERY, asset_partitions=[rid]), limit=1
    ).records
    if not found:
        return  # a run of part of the graph: nothing was delivered
    meta = found[0].asset_materialization.metadata  # type: ignore[union-attr]
    with PortabilityResource().open_store() as store:
        if store.get(rid).state == State.RUNNING:
            store.complete(
                rid,
                location=str(meta["location"].value),
                sha256=str(meta["sha256"].value),
                count=int(meta["records"].value),  # type: ignore[arg-type]
                actor="dagster",
            )


@dg.run_failure_sensor(
    monitored_jobs=[export_job], default_status=RUNNING, name="export_run_failed"
)
def export_run_failed(context: dg.RunFailureSensorContext) -> None:
    """A failed export fails its request, naming the step (and so the source) that failed."""
    rid = _request_id(context.dagster_run)
    if rid is None:
        return
    reasons = [
        f"{e.step_key}: {_first_line(e.event_specific_data.error.message)}"  # type: ignore[union-attr]
        for e in context.get_step_failure_events()
        if e.event_specific_data is not None and e.event_specific_data.error is not None
    ]
    reason = "; ".join(reasons) or "the run failed before any step (see the run in Dagster)"
    with PortabilityResource().open_store() as store:
        if store.get(rid).state == State.RUNNING:
            store.fail(rid, reason, actor="dagster")


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "failed"
