"""One batch of stored requests exported together, with the store kept up to date.

Plain Python (the Dagster batch step calls it; tests call it directly). Each request is
claimed (received or failed -> running) before it is read; requests another run holds,
or closed ones, are skipped (one this run claimed, in a step tried again, is not). The
batch is exported with ``engine.bulk.export_batch``; a request that fails in it is
tried once more alone (a failure caused by a neighbour, or a passing one, does not fail
it); what still fails is marked failed with its reason (sources, rules and counts, no
values), and can be run again. Delivered requests are completed with their parts
recorded for downloads and retention.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from engine.bulk.export import SubjectResult, export_batch
from engine.connectors.base import Connector
from engine.datamap import DataMap
from engine.request import ExportRequest
from exporters.delivery import Delivery
from request_store import DeliveredPart, Deliveries, RequestStore, State

Progress = Callable[[int, int, int], None]  # delivered, failed, total of the batch


@dataclass
class BatchCounts:
    """What a batch did: counts, and the opaque ids of the requests that failed."""

    delivered: int = 0
    failed: int = 0
    skipped: int = 0  # held by another run, closed, or without identities
    retried: int = 0  # failed in the batch, then tried alone
    records: int = 0
    failed_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BatchSettings:
    datamap: DataMap
    delivery: Delivery
    staging_root: Path
    env: Mapping[str, str] | None = None
    retention_days: int = 30
    max_downloads: int | None = None
    connectors: Mapping[str, Connector] | None = None


def export_stored_batch(
    store: RequestStore,
    request_ids: Sequence[str],
    settings: BatchSettings,
    *,
    actor: str,
    progress: Progress | None = None,
) -> BatchCounts:
    """Claim, export and settle ``request_ids``; the counts of what happened."""
    counts = BatchCounts()
    requests = []
    for rid in request_ids:
        if not (store.claim(rid, actor=actor) or _claimed_by(store, rid, actor)):
            counts.skipped += 1
            continue
        requests.append(store.export_request(rid))
    total = len(requests)

    def export(batch: list[ExportRequest]) -> list[SubjectResult]:
        return export_batch(
            batch,
            settings.datamap,
            settings.delivery,
            staging_root=settings.staging_root,
            connectors=settings.connectors,
            env=settings.env,
        )

    results = export(requests)
    by_id = {r.request_id: r for r in requests}
    for result in results:
        if not result.delivered:
            counts.retried += 1
            result = export([by_id[result.request_id]])[0]
        _settle(store, result, settings, actor, counts)
        if progress:
            progress(counts.delivered, counts.failed, total)
    return counts


def _claimed_by(store: RequestStore, request_id: str, actor: str) -> bool:
    """Running under this actor's own claim: the same step tried again after a crash."""
    if store.get(request_id).state != State.RUNNING:
        return False
    claims = [e for e in store.events(request_id) if e.event == "claimed"]
    return bool(claims) and claims[-1].actor == actor


def _settle(
    store: RequestStore,
    result: SubjectResult,
    settings: BatchSettings,
    actor: str,
    counts: BatchCounts,
) -> None:
    rid = result.request_id
    if not result.delivered:
        store.fail(rid, result.reason or "export failed", actor=actor)
        counts.failed += 1
        counts.failed_ids.append(rid)
        return
    parts = [
        DeliveredPart(Path(p.location).name, p.location, p.bytes, p.sha256) for p in result.parts
    ]
    expires = store.now() + timedelta(days=settings.retention_days)
    Deliveries(store).record(
        rid, parts, actor=actor, expires_at=expires, max_downloads=settings.max_downloads
    )
    first = result.parts[0]
    store.complete(
        rid, location=first.location, sha256=first.sha256, count=result.records, actor=actor
    )
    counts.delivered += 1
    counts.records += result.records
