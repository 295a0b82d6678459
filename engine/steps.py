"""One export in steps that may run in different processes (Dagster assets drive them).

``collect(system)`` reads one source system, ``check(dataset)`` re-checks one dataset's
staged records, ``pack()`` builds the archive and ``deliver()`` hands it over, then the
area is removed. Between steps the state lives in the request's private staging area
(0700, files 0600): each entity's normalized records as Parquet, and per system what it
found (``state/<system>.json``: outcomes, rule violations as counts, staged files, and
the keys and own values later systems need). Steps exchange only the request id, so
nothing personal reaches an orchestrator's storage.

A step can run again (a retry, a re-run of a failed request): ``collect`` first drops
what the same system staged before, so records are never duplicated, and ``pack``
refuses to build an archive while a system is missing or any record broke its schema.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.connectors.base import Connector, SourceError
from engine.datamap import DataMap
from engine.datamap.graph import system_dependencies
from engine.export import (
    DEFAULT_REGISTER,
    ExportFailed,
    deliver_parts,
    load_register,
    open_connectors,
    pack_extraction,
)
from engine.extract import WORKERS, Extraction, Extractor, SourceOutcome, StagedFile, Violation
from engine.request import ExportRequest
from engine.schemas import SchemaRegistry, default_registry
from engine.staging import Staging
from exporters.delivery import Delivered, Delivery
from exporters.parts import Part


@dataclass(frozen=True)
class SystemReport:
    """What collecting one system found: counts and names only, fit for run metadata."""

    system: str
    records: dict[str, int]  # entity ref -> records staged
    violations: int  # records that broke a rule (the export cannot be delivered)
    files: int
    file_bytes: int


@dataclass(frozen=True)
class Packed:
    archive: Path  # the archive, or its first part
    sha256: str
    bytes: int
    records: int
    manifest: dict[str, Any]
    parts: int = 1  # files to deliver (the archive split past the request's part size)


class ExportSteps:
    """The steps of one request's export over its staging area under ``staging_root``."""

    def __init__(
        self,
        request: ExportRequest,
        datamap: DataMap,
        staging_root: Path,
        *,
        schemas: SchemaRegistry | None = None,
        env: Mapping[str, str] | None = None,
        register_path: Path = DEFAULT_REGISTER,
        workers: int = WORKERS,
    ) -> None:
        self.dm = datamap
        self.schemas = schemas or default_registry()
        self.env = env
        self.register_path = register_path
        self.workers = workers
        self.staging_root = staging_root
        self.area = staging_root / request.request_id
        self.state = self.area / "state"
        # The first step fixes as_of: later steps, even days later, label the same moment.
        self.request = _with_as_of(request, self._as_of(request.as_of))

    # -- collecting ------------------------------------------------------------------

    @functools.cached_property
    def _needs(self) -> dict[str, list[str]]:
        return system_dependencies(self.dm)

    def systems(self) -> dict[str, list[str]]:
        """System -> the systems it needs collected first (data map order)."""
        return self._needs

    def collect(
        self, system: str, connectors: Mapping[str, Connector] | None = None
    ) -> SystemReport:
        """Read one system's entities; raises ``ExportFailed`` naming a failed source."""
        needs = self.systems()
        if system not in needs:
            raise ValueError(f"no system {system!r} with entities to read in the data map")
        missing = [s for s in needs[system] if not self._state_file(s).exists()]
        if missing:
            raise ExportFailed(f"{system}: collect {', '.join(missing)} first")
        staging = self._staging()
        self._forget(system, staging)
        own_conns = connectors is None
        conns = open_connectors(self.dm, self.env) if connectors is None else connectors
        extractor = Extractor(
            self.request, self.dm, self.schemas, conns, staging, workers=self.workers
        )
        for upstream in needs[system]:
            _merge_into(extractor, self._load(upstream))
        try:
            ex = extractor.run(systems={system})
        except SourceError as err:
            raise ExportFailed.source_failed(
                self.request.request_id, err, extractor.result.outcomes
            ) from None
        finally:
            staging.finish()
            if own_conns:
                for c in conns.values():
                    c.close()
        self._save(system, ex, extractor)
        return SystemReport(
            system,
            {o.entity: o.records for o in ex.outcomes},
            sum(v.count for v in ex.violations),
            len(ex.files),
            sum(f.size for f in ex.files),
        )

    # -- checking, packing, delivering -------------------------------------------------

    def check(self, dataset: str) -> list[Violation]:
        """Rules broken by the dataset's records: those collection found, and a re-check
        of what is staged (the area is trusted, but a bad archive is never delivered)."""
        schema = self.schemas[dataset]
        found = [v for s in self._collected() for v in self._load(s)["violations"]]
        out = [Violation(**v) for v in found if v["dataset"] == dataset]
        for batch in self._staging().batches(dataset):
            out += [
                Violation("(staged)", dataset, v.field, v.rule, v.count)
                for v in schema.compiled.validate(batch)
            ]
        return out

    def pack(self) -> Packed:
        """Build the archive in the area; refuses while a system is missing or invalid."""
        missing = [s for s in self.systems() if not self._state_file(s).exists()]
        if missing:
            raise ExportFailed(f"not every system was collected: {', '.join(missing)}")
        ex = self.extraction()
        if ex.violations:
            raise ExportFailed.schema_failed(self.request.request_id, ex)
        staging = self._staging()
        archive = self.area / "archive.zip"
        register = load_register(self.register_path)
        packing = pack_extraction(  # on disk: another process (the next step) delivers it
            self.request, self.dm, self.schemas, ex, staging, archive, register, memory_limit=0
        )
        parts = [{**asdict(p), "path": p.path.name} for p in packing.parts]
        _write_private(self.state / "packed.json", json.dumps(parts))
        records = sum(d["records"] for d in packing.manifest["datasets"])
        first = packing.parts[0]
        return Packed(first.path, first.sha256, first.bytes, records, packing.manifest, len(parts))

    def deliver(self, delivery: Delivery) -> list[Delivered]:
        """Hand every packed file over (encrypted when the request asks); the staging
        area is removed once all are delivered. A retry delivers the same names again."""
        packed = self.state / "packed.json"
        if not packed.exists():
            raise ExportFailed(f"export {self.request.request_id}: nothing packed to deliver")
        parts = [
            Part(**{**p, "path": self.area / p["path"], "entries": tuple(p["entries"])})
            for p in json.loads(packed.read_text(encoding="utf-8"))
        ]
        delivered = deliver_parts(self.request, parts, delivery)
        self.discard()
        return delivered

    def discard(self) -> None:
        """Remove the request's staging area (after delivery, denial or cancellation)."""
        shutil.rmtree(self.area, ignore_errors=True)

    def extraction(self) -> Extraction:
        """What every collected system found, merged in data map order."""
        ex = Extraction()
        for system in self._collected():
            state = self._load(system)
            ex.outcomes += [SourceOutcome(**o) for o in state["outcomes"]]
            ex.violations += [Violation(**v) for v in state["violations"]]
            ex.files += [StagedFile(**f) for f in state["files"]]
            ex.redactions += state["redactions"]
        order = {e.ref: i for i, e in enumerate(self.dm.entities())}
        ex.outcomes.sort(key=lambda o: order.get(o.entity, len(order)))
        for o in ex.outcomes:
            if o.records:
                ex.records[o.dataset] = ex.records.get(o.dataset, 0) + o.records
        return ex

    # -- the area --------------------------------------------------------------------

    def _staging(self) -> Staging:
        return Staging(self.staging_root, self.area.name, 0, resume=True)

    def _state_file(self, system: str) -> Path:
        return self.state / f"{system}.json"

    def _collected(self) -> list[str]:
        return [s for s in self.systems() if self._state_file(s).exists()]

    def _as_of(self, proposed: datetime) -> datetime:
        path = self.state / "as_of"
        if path.exists():
            return datetime.fromisoformat(path.read_text().strip())
        self._staging().folder()  # the area, private (0700), before anything is written in it
        self.state.mkdir(exist_ok=True, mode=0o700)
        _write_private(path, proposed.isoformat())
        return proposed

    def _forget(self, system: str, staging: Staging) -> None:
        """Drop what an earlier attempt at this system staged: no record twice."""
        path = self._state_file(system)
        if path.exists():
            for f in self._load(system)["files"]:
                (self.area / f["archive_path"]).unlink(missing_ok=True)
            path.unlink()
        staging.drop({e.ref for e in self.dm.entities() if e.system == system})

    def _save(self, system: str, ex: Extraction, extractor: Extractor) -> None:
        state = {
            "outcomes": [asdict(o) for o in ex.outcomes],
            "violations": [asdict(v) for v in ex.violations],
            "files": [asdict(f) for f in ex.files],
            "redactions": ex.redactions,
            "keys": {k: sorted(v) for k, v in extractor.keys.items()},
            "own": [[d, f, sorted(v)] for (d, f), v in extractor.own.items()],
        }
        _write_private(self._state_file(system), json.dumps(state))

    def _load(self, system: str) -> dict[str, Any]:
        return json.loads(self._state_file(system).read_text(encoding="utf-8"))


def _merge_into(extractor: Extractor, state: dict[str, Any]) -> None:
    for key, values in state["keys"].items():
        extractor.keys.setdefault(key, set()).update(values)
    for dataset, field, values in state["own"]:
        extractor.own.setdefault((dataset, field), set()).update(values)


def _with_as_of(request: ExportRequest, as_of: datetime) -> ExportRequest:
    return request if request.as_of == as_of else replace(request, as_of=as_of)


def _write_private(path: Path, text: str) -> None:
    """Write a state file readable by the owner only, replacing it atomically."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)
