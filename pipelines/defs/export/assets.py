"""The export as assets, generated from the data map: adding a source adds its asset.

``collected/<system>``   one per source system, after the systems whose keys it needs
``normalized/<dataset>`` one per category, with a blocking schema check
``archive``              the ZIP, packed in the request's private staging area
``delivery``             the archive (or its parts) handed over and recorded with its
                         expiry, the staging area removed, the request completed

Every asset is partitioned by request id and returns only metadata (counts, sizes,
hashes, locations): the records themselves stay in the staging area, so nothing
personal reaches Dagster's IO manager, event log or UI.
"""

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import dagster as dg

from engine.datamap import DataMap
from engine.datamap.graph import system_dependencies
from engine.steps import ExportSteps
from exporters.delivery import Delivered
from exporters.transfer import recipient_delivery, redact
from pipelines.lib.failures import safe_failures
from pipelines.lib.partitions import export_requests
from pipelines.lib.settings import PortabilityResource
from request_store import DeliveredPart, Deliveries, RequestStore, State, StoredRequest
from request_store.sealing import seal_key_path, unseal

# A source that fails transiently gets three more tries, 2 s, 4 s, 8 s apart (+ jitter).
SOURCE_RETRY = dg.RetryPolicy(
    max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
COLLECTED, NORMALIZED = "collected", "normalized"
ARCHIVE, DELIVERY = dg.AssetKey("archive"), dg.AssetKey("delivery")
SCHEMA_CHECK = "schema_valid"


def build_export_assets(dm: DataMap) -> list[dg.AssetsDefinition]:
    """Every asset of the export, for the data map's systems and datasets."""
    systems = system_dependencies(dm)
    collected = [_collect_asset(name, needs) for name, needs in systems.items()]
    feeds = {d: sorted({e.system for e in dm.entities() if e.dataset == d}) for d in dm.datasets()}
    normalized = [_normalized_asset(d, feeds[d]) for d in dm.datasets()]
    return [*collected, *normalized, _archive_asset(dm.datasets()), _delivery_asset()]


def _request(portability: PortabilityResource, store: RequestStore, request_id: str) -> ExportSteps:
    request, stored = store.export_request(request_id), store.get(request_id)
    if stored.transfer_to and portability.recipient(stored.transfer_to).kind == "presigned_put":
        request = replace(request, max_part_bytes=None)  # one PUT URL takes one archive
    return portability.steps(request)


def _start(store: RequestStore, request_id: str, context: dg.AssetExecutionContext) -> None:
    """Mark the request running (a new run, or a re-run of a failed one); refuse closed ones."""
    req = store.get(request_id)
    if req.state in (State.RECEIVED, State.FAILED):
        store.claim(request_id, actor=f"run:{context.run.run_id[:8]}")
        req = store.get(request_id)
    if req.state != State.RUNNING:
        raise dg.Failure(
            f"request {request_id} is {req.state}: nothing to export", allow_retries=False
        )


def _collect_asset(system: str, needs: list[str]) -> dg.AssetsDefinition:
    @dg.asset(
        name=system,
        key_prefix=[COLLECTED],
        partitions_def=export_requests,
        deps=[dg.AssetKey([COLLECTED, s]) for s in needs],
        pool=f"source_{system}",
        retry_policy=SOURCE_RETRY,
        group_name="export",
        kinds={"python"},
        description=f"Everything the {system} system holds about the subject, staged privately.",
    )
    def collect(
        context: dg.AssetExecutionContext, portability: PortabilityResource
    ) -> dg.MaterializeResult:
        rid = context.partition_key
        with safe_failures(f"collect {system}"), portability.open_store() as store:
            _start(store, rid, context)
            report = _request(portability, store, rid).collect(system)
            deadline = store.get(rid).due
        return dg.MaterializeResult(
            metadata={
                "records": sum(report.records.values()),
                **{f"records {ref}": n for ref, n in report.records.items()},
                "violations": report.violations,
                "files": report.files,
                "file bytes": dg.MetadataValue.int(report.file_bytes),
                "legal deadline": deadline.isoformat(),
            }
        )

    return collect


def _normalized_asset(dataset: str, systems: list[str]) -> dg.AssetsDefinition:
    key = dg.AssetKey([NORMALIZED, dataset])

    @dg.asset(
        key=key,
        partitions_def=export_requests,
        deps=[dg.AssetKey([COLLECTED, s]) for s in systems],
        check_specs=[
            dg.AssetCheckSpec(
                SCHEMA_CHECK,
                asset=key,
                blocking=True,
                description="Every record meets the dataset's JSON Schema.",
            )
        ],
        group_name="export",
        kinds={"parquet"},
        description=f"The subject's {dataset} records, normalized and checked.",
    )
    def normalized(
        context: dg.AssetExecutionContext, portability: PortabilityResource
    ) -> dg.MaterializeResult:
        rid = context.partition_key
        with safe_failures(f"check {dataset}"), portability.open_store() as store:
            steps = _request(portability, store, rid)
            violations = steps.check(dataset)
            records = steps.extraction().records.get(dataset, 0)
        broken = {f"{v.entity} {v.field}: {v.rule}": v.count for v in violations}
        return dg.MaterializeResult(
            metadata={"records": records},
            check_results=[
                dg.AssetCheckResult(
                    check_name=SCHEMA_CHECK,
                    passed=not violations,
                    severity=dg.AssetCheckSeverity.ERROR,
                    metadata={"records breaking a rule": sum(broken.values()), **broken},
                )
            ],
        )

    return normalized


def _archive_asset(datasets: list[str]) -> dg.AssetsDefinition:
    @dg.asset(
        key=ARCHIVE,
        partitions_def=export_requests,
        deps=[dg.AssetKey([NORMALIZED, d]) for d in datasets],
        group_name="export",
        kinds={"zip"},
        description="The archive: data in JSON, CSV and Parquet, files, manifest, index.",
    )
    def archive(
        context: dg.AssetExecutionContext, portability: PortabilityResource
    ) -> dg.MaterializeResult:
        rid = context.partition_key
        with safe_failures("pack"), portability.open_store() as store:
            packed = _request(portability, store, rid).pack()
        return dg.MaterializeResult(
            metadata={
                "records": packed.records,
                "bytes": dg.MetadataValue.int(packed.bytes),
                "sha256": packed.sha256,
                "statement": packed.manifest["statement"],
            }
        )

    return archive


def _delivery_asset() -> dg.AssetsDefinition:
    @dg.asset(
        key=DELIVERY,
        partitions_def=export_requests,
        deps=[ARCHIVE],
        group_name="export",
        kinds={"folder"},
        description="The archive delivered (owner-only), the staging area removed, the "
        "request completed.",
    )
    def delivery(
        context: dg.AssetExecutionContext, portability: PortabilityResource
    ) -> dg.MaterializeResult:
        rid = context.partition_key
        with safe_failures("deliver"), portability.open_store() as store:
            req, steps = store.get(rid), _request(portability, store, rid)
            records = sum(steps.extraction().records.values())
            if req.transfer_to:  # Art. 20(2): to the recipient, no copy kept here
                parts, expires = _transfer(portability, store, req, steps), None
            else:
                parts = steps.deliver(portability.delivery())
                expires = store.now() + timedelta(days=portability.retention_days())
                Deliveries(store).record(
                    rid, [DeliveredPart(Path(p.location).name, p.location, p.bytes, p.sha256)
                          for p in parts],
                    actor="dagster", expires_at=expires,
                    max_downloads=portability.max_downloads(),
                )  # fmt: skip
            first = parts[0]
            if store.get(rid).state == State.RUNNING:  # completed now, not at the next tick
                store.complete(
                    rid, location=first.location, sha256=first.sha256, count=records,
                    actor="dagster",
                )  # fmt: skip
            deadline = store.get(rid).due
        return dg.MaterializeResult(
            metadata={
                "location": dg.MetadataValue.path(first.location),
                "sha256": first.sha256,
                "bytes": dg.MetadataValue.int(sum(p.bytes for p in parts)),
                "parts": len(parts),
                "records": records,
                "legal deadline": deadline.isoformat(),
                "kept until": expires.isoformat() if expires else "not kept (transferred)",
            }
        )

    return delivery


def _transfer(
    portability: PortabilityResource, store: RequestStore, req: StoredRequest, steps: ExportSteps
) -> list[Delivered]:
    """Deliver to the request's recipient (its sealed URL opened here, then dropped with
    the identities at completion) and record where it went."""
    config = portability.recipient(str(req.transfer_to))
    sealed = store.transfer_secret(req.request_id)
    url = unseal(sealed, seal_key_path()) if sealed else None
    parts = steps.deliver(recipient_delivery(config, put_url=url, env=portability.source_env()))
    Deliveries(store).record(
        req.request_id,
        [
            DeliveredPart(Path(p.location).name, redact(p.location), p.bytes, p.sha256)
            for p in parts
        ],
        actor="dagster",
        recipient=config.name,
    )
    return parts
