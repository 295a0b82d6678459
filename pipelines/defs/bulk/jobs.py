"""``bulk_export``: many stored requests, in batches that run as parallel steps.

``plan_batches`` picks the requests (the bulk lane's waiting ones, the subscriptions now
due, an organisation's members, or a list of ids) and hands out batches of opaque
request ids; ``export_batch`` (one step per batch) exports its batch with one query per
table and settles every request in the store; ``bulk_summary`` adds up the counts and,
for an organisation, delivers its index. Steps exchange request ids and counts only.

The steps run on Dagster's multiprocess executor (one process per batch, at most
``PORTABILITY_BULK_PROCESSES`` at once, default the machine's cores), or on Celery
workers when ``PORTABILITY_CELERY_BROKER`` is set: a batch then runs on whichever worker
of the cluster takes it (README, "Bulk exports").
"""

import os
from collections.abc import Iterator
from dataclasses import asdict

import dagster as dg
from pydantic import Field

from engine.bulk import BATCH_SIZE
from engine.bulk.pool import batches
from pipelines.defs.bulk.selection import OrganisationIndex, select_requests
from pipelines.lib.bulk_batches import BatchSettings, export_stored_batch
from pipelines.lib.settings import PortabilityResource

BULK_JOB = "bulk_export"
SOURCES = ("waiting", "subscriptions", "organisation", "ids")


class BulkConfig(dg.Config):
    """What a bulk run exports."""

    source: str = "waiting"  # waiting | subscriptions | organisation | ids
    request_ids: list[str] = Field(default_factory=list)  # source "ids": these requests
    organisation_export: str = ""  # source "organisation": the export's id (org-...)
    batch_size: int = BATCH_SIZE
    limit: int = 100_000  # requests per run at most (source "waiting")


@dg.op(out=dg.DynamicOut(list[str]), description="Pick the requests and cut them in batches.")
def plan_batches(
    context: dg.OpExecutionContext, config: BulkConfig, portability: PortabilityResource
) -> Iterator[dg.DynamicOutput[list[str]]]:
    if config.source not in SOURCES:
        raise dg.Failure(f"source must be one of {', '.join(SOURCES)}, not {config.source!r}")
    if config.batch_size < 1:
        raise dg.Failure("batch_size must be at least 1")
    with portability.open_store() as store:
        ids = select_requests(store, portability, config.source, config)
    chunks = list(batches(ids, config.batch_size))
    context.log.info(
        f"{len(ids)} requests ({config.source}) in {len(chunks)} batches of up to "
        f"{config.batch_size}"
    )
    for n, chunk in enumerate(chunks):
        yield dg.DynamicOutput(chunk, mapping_key=f"batch_{n:05d}")


@dg.op(description="Export one batch together; settle each request in the store.")
def export_batch(
    context: dg.OpExecutionContext, portability: PortabilityResource, request_ids: list[str]
) -> dict:
    settings = BatchSettings(
        datamap=portability.load_datamap(),
        delivery=portability.delivery(),
        staging_root=portability.staging_root(),
        env=portability.source_env(),
        retention_days=portability.retention_days(),
        max_downloads=portability.max_downloads(),
    )
    step = max(1, len(request_ids) // 10)

    def progress(delivered: int, failed: int, total: int) -> None:
        if (delivered + failed) % step == 0 or delivered + failed == total:
            context.log.info(f"{delivered} delivered, {failed} failed, of {total}")

    with portability.open_store() as store:
        counts = export_stored_batch(
            store, request_ids, settings, actor=f"run:{context.run_id[:8]}", progress=progress
        )
    context.add_output_metadata(
        {
            "delivered": counts.delivered,
            "failed": counts.failed,
            "retried alone": counts.retried,
            "skipped": counts.skipped,
            "records": counts.records,
        }
    )
    return asdict(counts)


@dg.op(description="Add up the batches; deliver an organisation's index.")
def bulk_summary(
    context: dg.OpExecutionContext,
    config: BulkConfig,
    portability: PortabilityResource,
    counts: list[dict],
) -> dg.Output[None]:
    keys = ("delivered", "failed", "retried", "skipped", "records")
    totals = {k: sum(c[k] for c in counts) for k in keys}
    failed = [rid for c in counts for rid in c["failed_ids"]]
    meta: dict = {**totals, "batches": len(counts)}
    if failed:
        meta["failed requests"] = dg.MetadataValue.md("\n".join(f"- {r}" for r in failed[:200]))
    if config.source == "organisation":
        with portability.open_store() as store:
            index = OrganisationIndex(store, portability).deliver(config.organisation_export)
        meta["organisation index"] = dg.MetadataValue.path(index)
    context.log.info(
        f"{totals['delivered']} delivered, {totals['failed']} failed "
        f"({totals['retried']} tried again alone), {totals['skipped']} skipped"
    )
    return dg.Output(None, metadata=meta)


def bulk_executor() -> dg.ExecutorDefinition:
    """Celery when ``PORTABILITY_CELERY_BROKER`` names a broker, else one process per
    batch on this machine (forkserver: a step starts without importing Dagster again)."""
    broker = os.environ.get("PORTABILITY_CELERY_BROKER")
    if broker:
        from dagster_celery import celery_executor

        return celery_executor.configured(
            {
                "broker": broker,
                "backend": os.environ.get("PORTABILITY_CELERY_BACKEND", broker),
                "config_source": {
                    "task_default_queue": os.environ.get("PORTABILITY_CELERY_QUEUE", "dagster")
                },
            },
            name="celery",
        )
    processes = int(os.environ.get("PORTABILITY_BULK_PROCESSES") or os.cpu_count() or 1)
    return dg.multiprocess_executor.configured(
        {
            "max_concurrent": processes,
            "start_method": {"forkserver": {"preload_modules": ["pipelines.definitions"]}},
        },
        name="multiprocess",
    )


def build_bulk_job(executor: dg.ExecutorDefinition | None = None) -> dg.JobDefinition:
    @dg.job(
        name=BULK_JOB,
        executor_def=executor or bulk_executor(),
        description="Export many requests in batches (nightly, recurring, organisation-wide).",
        tags={"portability/kind": "bulk"},
    )
    def bulk_export() -> None:
        bulk_summary(plan_batches().map(export_batch).collect())

    return bulk_export


bulk_export_job = build_bulk_job()
