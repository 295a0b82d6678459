"""``request_deadlines``: the open requests against their legal deadlines, daily.

Its checks turn the asset red in the catalog when a request is overdue (error) and
yellow from day 25 of the month (warning); the metadata lists the requests by opaque id.
"""

import dagster as dg

from pipelines.lib.settings import PortabilityResource

NO_OVERDUE, NONE_DUE_SOON = "no_overdue_requests", "none_due_soon"


@dg.asset(
    group_name="deadlines",
    check_specs=[
        dg.AssetCheckSpec(
            NO_OVERDUE,
            asset="request_deadlines",
            description="No open request is past its legal deadline.",
        ),
        dg.AssetCheckSpec(
            NONE_DUE_SOON,
            asset="request_deadlines",
            description="No open request is in the last days before its deadline (day 25 on).",
        ),
    ],
    description="Open export requests and their legal deadlines (Art. 12(3)).",
)
def request_deadlines(portability: PortabilityResource) -> dg.MaterializeResult:
    with portability.open_store() as store:
        views = store.list_open_with_deadlines()
    overdue = [v for v in views if v.status == "overdue"]
    due_soon = [v for v in views if v.status == "due_soon"]
    rows = [
        f"| {v.request.request_id} | {v.request.state} | {v.request.due:%Y-%m-%d} | "
        f"{v.days_left} | {v.status} |"
        for v in sorted(views, key=lambda v: v.request.due)
    ]
    table = "\n".join(
        ["| request | state | deadline | days left | status |", "|---|---|---|---|---|", *rows]
    )
    return dg.MaterializeResult(
        metadata={
            "open requests": len(views),
            "due soon": len(due_soon),
            "overdue": len(overdue),
            "requests": dg.MetadataValue.md(table),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=NO_OVERDUE,
                passed=not overdue,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={"overdue": len(overdue)},
            ),
            dg.AssetCheckResult(
                check_name=NONE_DUE_SOON,
                passed=not due_soon,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"due soon": len(due_soon)},
            ),
        ],
    )


flag_deadlines_job = dg.define_asset_job(
    "flag_deadlines",
    selection=dg.AssetSelection.assets(request_deadlines),
    description="Check every open request against its legal deadline.",
)

deadlines_daily = dg.ScheduleDefinition(
    name="deadlines_daily",
    job=flag_deadlines_job,
    cron_schedule="0 6 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
