"""``archives_held``: retention applied daily, and what is still held until when.

Each materialization deletes the delivered parts past their expiry (files or S3
objects) and the staging areas of closed requests (``request_store/retention.py``), then
lists what is still held, soonest expiry first, by opaque request id. Its check goes red
when an expired part could not be deleted. The DPO sees here what the controller still
holds and when it goes.
"""

import dagster as dg

from pipelines.lib.settings import PortabilityResource
from request_store.retention import apply_retention

ALL_DELETED = "expired_archives_deleted"
SHOWN = 200  # rows of the held table in the UI


@dg.asset(
    group_name="retention",
    check_specs=[
        dg.AssetCheckSpec(
            ALL_DELETED,
            asset="archives_held",
            description="Every archive part past its expiry was deleted.",
        )
    ],
    description="Applies retention (expired archives, parts and leftover staging areas are "
    "deleted), then lists the archives still held and when each goes.",
)
def archives_held(portability: PortabilityResource) -> dg.MaterializeResult:
    with portability.open_store() as store:
        report = apply_retention(store, portability.delivery(), portability.staging_root())
    rows = [
        f"| {r.request_id} | {r.part}/{r.parts} | {r.name} | {r.bytes} | "
        f"{r.expires_at:%Y-%m-%d} | {r.downloads} |"
        for r in report.held[:SHOWN]
        if r.expires_at is not None
    ]
    head = ["| request | part | file | bytes | kept until | downloads |", "|---" * 6 + "|"]
    table = "\n".join([*head, *rows])
    failed = [f"{r.request_id} part {r.part}: {why}" for r, why in report.not_deleted]
    nexts = [r.expires_at for r in report.held if r.expires_at is not None]
    return dg.MaterializeResult(
        metadata={
            "parts held": len(report.held),
            "bytes held": dg.MetadataValue.int(sum(r.bytes for r in report.held)),
            "next expiry": min(nexts).isoformat() if nexts else "none",
            "parts deleted": len(report.deleted),
            "bytes deleted": dg.MetadataValue.int(report.deleted_bytes),
            "staging areas removed": len(report.staging_removed),
            "held": dg.MetadataValue.md(table),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=ALL_DELETED,
                passed=not failed,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={
                    "not deleted": len(failed),
                    **({"why": "; ".join(failed[:20])} if failed else {}),
                },
            )
        ],
    )


apply_retention_job = dg.define_asset_job(
    "apply_retention",
    selection=dg.AssetSelection.assets(archives_held),
    description="Delete expired archives and leftover staging areas; list what is held.",
)

retention_daily = dg.ScheduleDefinition(
    name="retention_daily",
    job=apply_retention_job,
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
