"""Many batches across the cores of one machine: a pool of worker processes.

Each worker loads the data map, opens the connectors and the delivery once, then
exports the batches it is handed (``export_batch``); results come back as
``SubjectResult``s, names and counts only. Memory is the workers' batches, whatever the
number of requests. (The Dagster batch job runs the same batches as steps instead, on
the multiprocess or Celery executor.)
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from engine.bulk import BATCH_SIZE
from engine.bulk.export import BATCH_MEMORY, SubjectResult, export_batch
from engine.request import ExportRequest

Progress = Callable[[int, int, int], None]  # delivered, failed, total
T = TypeVar("T")


@dataclass(frozen=True)
class BulkSettings:
    """What every worker needs to export, all of it picklable (no open connections)."""

    datamap: Path
    target: str  # a folder or an s3:// URL
    staging_root: Path
    env: Mapping[str, str] | None = None
    memory_budget: int = BATCH_MEMORY


def batches(items: Sequence[T], size: int) -> Iterator[list[T]]:
    """``items`` (requests, request ids) in batches of at most ``size``, in order."""
    if size < 1:
        raise ValueError("batch size must be at least 1")
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def run_bulk(
    requests: Sequence[ExportRequest],
    settings: BulkSettings,
    *,
    processes: int | None = None,
    batch_size: int = BATCH_SIZE,
    progress: Progress | None = None,
    worker: Callable[[list[ExportRequest]], list[SubjectResult]] | None = None,
) -> list[SubjectResult]:
    """Export every request, ``processes`` batches at a time; one result per request,
    in request order. ``processes`` defaults to the machine's cores; 0 runs the batches
    in this process, one after another. ``worker`` (a module-level function, run in
    the workers with ``worker_state()``) replaces ``export_batch`` for each batch."""
    work = worker or _export
    todo = list(batches(requests, batch_size))
    total = len(requests)
    results: list[SubjectResult] = []

    def report() -> None:
        if progress:
            done = sum(r.delivered for r in results)
            progress(done, len(results) - done, total)

    report()
    if processes == 0:
        _init(settings)
        try:
            for chunk in todo:
                results += work(chunk)
                report()
        finally:
            for conn in _WORKER.pop("connectors", {}).values():
                conn.close()
            _WORKER.clear()
        return results
    workers = min(processes or os.cpu_count() or 1, len(todo)) or 1
    context = multiprocessing.get_context("spawn")
    by_chunk: dict[Future[list[SubjectResult]], int] = {}
    ordered: list[list[SubjectResult] | None] = [None] * len(todo)
    with ProcessPoolExecutor(workers, context, initializer=_init, initargs=(settings,)) as pool:
        pending = set()
        for n, chunk in enumerate(todo):
            fut = pool.submit(work, chunk)
            by_chunk[fut] = n
            pending.add(fut)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                ordered[by_chunk[fut]] = fut.result()
                results += ordered[by_chunk[fut]] or []
            report()
    return [r for chunk_results in ordered for r in chunk_results or []]


_WORKER: dict[str, Any] = {}


def _init(settings: BulkSettings) -> None:
    from engine.datamap import load_datamap
    from engine.export import open_connectors
    from engine.schemas import default_registry
    from exporters.delivery import open_delivery

    dm = load_datamap(settings.datamap)
    _WORKER.update(
        settings=settings,
        datamap=dm,
        schemas=default_registry(),
        connectors=open_connectors(dm, settings.env),
        delivery=open_delivery(settings.target),
    )


def worker_state() -> dict[str, Any]:
    """This worker's settings, data map, schemas, connectors and delivery."""
    return _WORKER


def _export(chunk: list[ExportRequest]) -> list[SubjectResult]:
    w = _WORKER
    settings: BulkSettings = w["settings"]
    return export_batch(
        chunk,
        w["datamap"],
        w["delivery"],
        staging_root=settings.staging_root,
        schemas=w["schemas"],
        connectors=w["connectors"],
        memory_budget=settings.memory_budget,
    )
