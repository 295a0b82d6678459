"""The three ways bulk exports start on their own, and the net under a failed bulk run.

``pending_exports_nightly``  the bulk lane's waiting requests (and failed ones, up to
                             three attempts), nightly at ``PORTABILITY_BULK_CRON``
                             (default 01:00 UTC)
``recurring_exports``        subscriptions now due (every N months for a period):
                             each issues a request, exported in the same run; daily
``organisation_exports``     organisation-wide exports now due: one request per
                             member, one archive each and an index; hourly

Each tick asks the store and skips when there is nothing to do; a run's key makes a
tick that is evaluated twice launch one run. ``bulk_run_failed`` marks failed the
requests a failed run had claimed but not settled, so a later run takes them again:
a crash loses no request.
"""

import os

import dagster as dg

from pipelines.defs.bulk.jobs import bulk_export_job
from pipelines.lib.settings import PortabilityResource
from request_store import OrganisationExports, State, Subscriptions

RUNNING = dg.DefaultScheduleStatus.RUNNING
NIGHTLY = os.environ.get("PORTABILITY_BULK_CRON") or "0 1 * * *"


def bulk_run_config(source: str, **options: object) -> dict:
    """Run config of a bulk run (``plan_batches`` and ``bulk_summary`` share it)."""
    config = {"source": source, **options}
    return {"ops": {"plan_batches": {"config": config}, "bulk_summary": {"config": config}}}


@dg.schedule(
    job=bulk_export_job,
    cron_schedule=NIGHTLY,
    execution_timezone="UTC",
    default_status=RUNNING,
    description="Export the bulk lane's waiting requests in batches.",
)
def pending_exports_nightly(
    context: dg.ScheduleEvaluationContext, portability: PortabilityResource
) -> dg.RunRequest | dg.SkipReason:
    with portability.open_store() as store:
        waiting = store.list_waiting("bulk", limit=1)
        failed = [r for r in store.list_in_state(State.FAILED) if r.lane == "bulk"]
    if not waiting and not failed:
        return dg.SkipReason("no bulk requests waiting")
    stamp = context.scheduled_execution_time
    key = f"waiting-{stamp:%Y%m%dT%H%M}" if stamp else None
    return dg.RunRequest(run_key=key, run_config=bulk_run_config("waiting"))


@dg.schedule(
    job=bulk_export_job,
    cron_schedule="30 0 * * *",
    execution_timezone="UTC",
    default_status=RUNNING,
    description="Issue and export the recurring exports now due.",
)
def recurring_exports(
    context: dg.ScheduleEvaluationContext, portability: PortabilityResource
) -> dg.RunRequest | dg.SkipReason:
    with portability.open_store() as store:
        due = Subscriptions(store).due()
    if not due:
        return dg.SkipReason("no subscription due")
    stamp = context.scheduled_execution_time
    key = f"subscriptions-{stamp:%Y%m%d}" if stamp else None
    return dg.RunRequest(run_key=key, run_config=bulk_run_config("subscriptions"))


@dg.schedule(
    job=bulk_export_job,
    cron_schedule="15 * * * *",
    execution_timezone="UTC",
    default_status=RUNNING,
    description="Start the organisation-wide exports now due (one run each).",
)
def organisation_exports(
    context: dg.ScheduleEvaluationContext, portability: PortabilityResource
) -> list[dg.RunRequest] | dg.SkipReason:
    with portability.open_store() as store:
        due = OrganisationExports(store).due()
    if not due:
        return dg.SkipReason("no organisation export due")
    return [
        dg.RunRequest(
            run_key=e.export_id,
            run_config=bulk_run_config("organisation", organisation_export=e.export_id),
            tags={"portability/organisation_export": e.export_id},
        )
        for e in due
    ]


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.FAILURE,
    monitored_jobs=[bulk_export_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
    name="bulk_run_failed",
)
def bulk_run_failed(context: dg.RunStatusSensorContext, portability: PortabilityResource) -> None:
    """Requests the failed run claimed and did not settle: failed, to be taken again."""
    actor = f"run:{context.dagster_run.run_id[:8]}"
    with portability.open_store() as store:
        for req in store.list_in_state(State.RUNNING):
            if req.lane != "bulk":
                continue
            claims = [e for e in store.events(req.request_id) if e.event == "claimed"]
            if claims and claims[-1].actor == actor:
                store.fail(
                    req.request_id,
                    "the bulk run stopped before this request was settled; a later run "
                    "takes it again",
                    actor="sensor",
                )
