"""One batch of exports in one process: read together, then packed and delivered one by one.

Each subject's archive is the one its single export would build (same records, same
order, same as_of), so a bulk archive is byte-identical to the single-request archive.
A subject that fails (a source that could not be read for it, a record breaking its
schema, a delivery that failed) is reported with the reason and nothing of it is
delivered; the others are. Every staging area is removed whatever happens.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.bulk.extract import CONCURRENCY, BulkExtractor, SubjectFailure
from engine.bulk.memory import RELEASE_EVERY, fewer_collections, release_memory
from engine.connectors.base import Connector
from engine.datamap import DataMap
from engine.export import (
    DEFAULT_REGISTER,
    ExportFailed,
    deliver_parts,
    load_register,
    open_connectors,
    pack_extraction,
)
from engine.extract import Extraction
from engine.request import ExportRequest
from engine.schemas import SchemaRegistry, default_registry
from engine.staging import Staging
from exporters.delivery import Delivered, Delivery

BATCH_MEMORY = 256 << 20  # staged records held in memory across a batch; more spills
Progress = Callable[[str, int, int], None]


@dataclass
class SubjectResult:
    """How one request of a batch ended. ``reason`` names sources, rules and counts only."""

    request_id: str
    status: str  # delivered | failed
    reason: str | None = None
    transient: bool = False  # asking the source again later may work
    parts: list[Delivered] = field(default_factory=list)
    records: int = 0

    @property
    def delivered(self) -> bool:
        return self.status == "delivered"


def export_batch(
    requests: Sequence[ExportRequest],
    datamap: DataMap,
    delivery: Delivery,
    *,
    staging_root: Path,
    schemas: SchemaRegistry | None = None,
    connectors: Mapping[str, Connector] | None = None,
    env: Mapping[str, str] | None = None,
    register_path: Path = DEFAULT_REGISTER,
    progress: Progress | None = None,
    memory_budget: int = BATCH_MEMORY,
    concurrency: int = CONCURRENCY,
) -> list[SubjectResult]:
    """Export ``requests`` together; one result per request, in request order."""
    if not requests:
        return []
    schemas = schemas or default_registry()
    register = load_register(register_path)
    own_connectors = connectors is None
    conns = open_connectors(datamap, env) if connectors is None else connectors
    bulk = BulkExtractor(
        requests,
        datamap,
        schemas,
        conns,
        staging_root,
        memory_budget=memory_budget,
        progress=progress,
        concurrency=concurrency,
    )
    results: list[SubjectResult] = []
    try:
        with fewer_collections():
            extracted = bulk.run()
            release_memory()
            for n, request in enumerate(requests):
                if n and n % RELEASE_EVERY == 0:
                    release_memory()
                if progress:
                    progress("packing archives", n, len(requests))
                staging = bulk.staging_of(request.request_id)
                found = extracted[request.request_id]
                try:
                    results.append(
                        _deliver_one(request, found, datamap, schemas, register, delivery, staging)
                    )
                finally:
                    staging.cleanup()
        if progress:
            progress("packing archives", len(requests), len(requests))
        return results
    finally:
        for s in bulk.subjects:
            s.ex.staging.cleanup()
        if own_connectors:
            for c in conns.values():
                c.close()
        release_memory()  # the next batch starts from little


def _deliver_one(
    request: ExportRequest,
    found: Extraction | SubjectFailure,
    datamap: DataMap,
    schemas: SchemaRegistry,
    register: dict[str, Any],
    delivery: Delivery,
    staging: Staging,
) -> SubjectResult:
    rid = request.request_id
    if isinstance(found, SubjectFailure):
        reason = f"export {rid} stopped: {found.reason}; nothing delivered"
        return SubjectResult(rid, "failed", reason, found.transient)
    if found.violations:
        return SubjectResult(rid, "failed", str(ExportFailed.schema_failed(rid, found)))
    try:
        archive = staging.path / "archive.zip"
        packing = pack_extraction(request, datamap, schemas, found, staging, archive, register)
        parts = deliver_parts(request, packing.parts, delivery)
    except ExportFailed as err:
        return SubjectResult(rid, "failed", str(err), err.transient)
    except Exception as err:  # a value may sit in the message: its type only
        return SubjectResult(rid, "failed", f"export {rid} stopped: {type(err).__name__}")
    records = sum(d["records"] for d in packing.manifest["datasets"])
    return SubjectResult(rid, "delivered", parts=parts, records=records)
