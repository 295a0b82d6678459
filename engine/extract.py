"""Finding the subject in every source: keys flow along the data map's graph.

Request identities seed keys (email, customer number ...); each entity, read in
dependency order, is looked up by the keys it matches on and yields new keys for the
entities after it (person -> accounts -> payment customer -> events and objects). Each
batch is normalized, checked against its dataset schema and staged. Nothing here logs
or raises with a value: reports carry names and counts.

The entities of one wave (``entity_waves``) need only keys found earlier, so they are
read at the same time, in up to ``workers`` threads: source round trips overlap and
Arrow's kernels run outside the GIL. What is staged does not depend on that order (each
entity stages its own batches, packed in entity name order), so neither does the archive.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from engine.connectors.base import Connector, Lookup, SourceError
from engine.datamap.graph import entity_waves
from engine.datamap.model import DataMap, Entity, Match
from engine.normalize.mapping import normalize_batch
from engine.normalize.redact import NameDirectory, Redactor
from engine.request import ExportRequest
from engine.schemas import SchemaRegistry
from engine.staging import Staging
from exporters.safe_names import SafeNamer

Progress = Callable[[str, int, int], None]
WORKERS = 4  # entities of one wave read at the same time

_NORMALIZERS = {
    "casefold": lambda v: v.strip().casefold(),
    "hex_lower": lambda v: v.strip().lower(),
    "trim": lambda v: v.strip(),
}


@dataclass
class SourceOutcome:
    entity: str  # system.entity
    system: str
    dataset: str
    status: str = "none"  # found | none | failed
    records: int = 0
    error: str | None = None


@dataclass(frozen=True)
class Violation:
    entity: str
    dataset: str
    field: str
    rule: str
    count: int


@dataclass
class StagedFile:
    archive_path: str
    size: int
    sha256: str


@dataclass
class Extraction:
    outcomes: list[SourceOutcome] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    records: dict[str, int] = field(default_factory=dict)  # dataset -> records
    files: list[StagedFile] = field(default_factory=list)
    redactions: int = 0

    @property
    def failed(self) -> list[SourceOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]


class Extractor:
    def __init__(
        self,
        request: ExportRequest,
        datamap: DataMap,
        schemas: SchemaRegistry,
        connectors: Mapping[str, Connector],
        staging: Staging,
        progress: Progress | None = None,
        workers: int = WORKERS,
        names: NameDirectory | None = None,
    ) -> None:
        """``names``: a name directory shared with other extractions (a batch's);
        by default this extraction asks the data map's name directory itself."""
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.workers = workers
        self.request = request
        self.dm = datamap
        self.schemas = schemas
        self.connectors = connectors
        self.staging = staging
        self.progress = progress or (lambda *_: None)
        self.keys: dict[str, set[str]] = {}
        self.own: dict[tuple[str, str], set[str]] = {k: set() for k in datamap.redaction.own_values}
        self.namer = SafeNamer("files")
        self._redactor: Redactor | None = None
        self.names = names if names is not None else name_directory(datamap, connectors)
        self._lock = threading.Lock()  # keys, own values and the redactor, across threads
        self.result = Extraction()

    def seed(self) -> None:
        for ident in self.request.identities:
            spec = self.dm.identities.get(ident.type)
            if spec is None:
                continue
            norm = _NORMALIZERS.get(spec.normalize or "trim", _NORMALIZERS["trim"])
            self.keys.setdefault(spec.key, set()).add(norm(ident.value))
            if ident.type == "email":
                self.own.setdefault(("personal", "email"), set()).add(ident.value.strip())

    def run(self, systems: Collection[str] | None = None) -> Extraction:
        """Read every entity once; a source error stops the run (the caller delivers nothing).

        ``systems`` reads only those systems' entities (a step of an orchestrated export;
        ``keys`` and ``own`` then hold what earlier steps found).
        """
        self.seed()
        waves = [
            [e for e in wave if systems is None or e.system in systems]
            for wave in entity_waves(self.dm)
        ]
        waves = [w for w in waves if w]
        total = sum(len(w) for w in waves)
        done = 0
        with ThreadPoolExecutor(self.workers, thread_name_prefix="extract") as pool:
            for wave in waves:
                self.progress(f"reading {', '.join(e.ref for e in wave)}", done, total)
                outcomes = {e.ref: SourceOutcome(e.ref, e.system, e.dataset or "") for e in wave}
                self.result.outcomes.extend(outcomes.values())  # sources read, or being read
                self._read_wave(pool, wave, outcomes)
                done += len(wave)
        self.progress("sources read", total, total)
        self.staging.finish()
        self.result.redactions = self.redactions
        return self.result

    @property
    def redactions(self) -> int:
        """Values of other people replaced in free text so far."""
        return self._redactor.redactions if self._redactor else 0

    def _read_wave(
        self, pool: ThreadPoolExecutor, wave: list[Entity], outcomes: dict[str, SourceOutcome]
    ) -> None:
        """Read a wave's entities together; report in data map order once all have ended.

        Entities staging files share the safe namer, whose names depend on call order:
        they run one after another, in one task.
        """
        files = [e for e in wave if e.files]
        tasks = [[e] for e in wave if not e.files] + ([files] if files else [])
        found: dict[str, list[Violation]] = {}
        errors: dict[str, BaseException] = {}

        def read(entities: list[Entity]) -> None:
            for e in entities:
                try:
                    found[e.ref] = self._read(e, outcomes[e.ref])
                except BaseException as err:
                    errors[e.ref] = err
                    return

        if self.workers == 1 or len(tasks) == 1:
            for task in tasks:
                read(task)
        else:
            wait([pool.submit(read, task) for task in tasks])  # no thread outlives the wave
        for e in wave:
            err = errors.get(e.ref)
            if isinstance(err, SourceError):
                outcomes[e.ref].status, outcomes[e.ref].error = "failed", str(err)
        for e in wave:
            if e.ref in errors:
                raise errors[e.ref]
            self.result.violations.extend(found.get(e.ref, []))
            o = outcomes[e.ref]
            if o.records:
                self.result.records[o.dataset] = self.result.records.get(o.dataset, 0) + o.records

    def lookups(self, entity: Entity) -> list[Lookup]:
        """The entity's lookups for which this subject has keys, in match order."""
        return [lk for m in entity.match if (lk := self.lookup_for(m)) is not None]

    def lookup_for(self, match: Match) -> Lookup | None:
        """The lookup of one of an entity's match columns, or None without keys for it."""
        values = self.keys.get(match.key, set())
        if match.casefold:
            values = {v.casefold() for v in values}
        return Lookup(match.column, sorted(values), match.casefold) if values else None

    def _read(self, entity: Entity, outcome: SourceOutcome) -> list[Violation]:
        """Fetch, normalize, check and stage one entity; the rules its records broke."""
        lookups = self.lookups(entity)
        if not lookups:
            return []
        reader = self.entity_reader(entity, outcome, several_lookups=len(lookups) > 1)
        columns = entity.source_columns()
        for lookup in lookups:
            for batch in reader.connector.fetch(entity.options, lookup, columns):
                reader.take(batch)
        return reader.finish()

    def entity_reader(
        self, entity: Entity, outcome: SourceOutcome, *, several_lookups: bool
    ) -> EntityReader:
        """What reads one entity's fetched batches into this subject's staging area."""
        return EntityReader(self, entity, outcome, several_lookups)

    def collect_keys(self, entity: Entity, batch: pa.RecordBatch) -> None:
        """Remember the keys the entity's rows yield for the entities after it."""
        for key, column in entity.yields.items():
            values = pc.unique(pc.drop_null(batch.column(column))).cast(pa.string())
            self.add_keys(key, values.to_pylist())

    def add_keys(self, key: str, values: Iterable[str | None]) -> None:
        """Remember key values (text; empty ones and nulls are no keys)."""
        found = [v for v in values if v]
        with self._lock:
            self.keys.setdefault(key, set()).update(found)

    def _collect_own(self, dataset: str, batch: pa.RecordBatch) -> None:
        for (ds, fname), values in self.own.items():
            if ds == dataset and fname in batch.schema.names:
                found = [v for v in batch.column(fname).to_pylist() if v]
                with self._lock:
                    values.update(found)

    def _redactor_for(self, entity: Entity) -> Redactor | None:
        if not any(f.transform == "redact_others" for f in entity.fields):
            return None
        with self._lock:
            return self._make_redactor()

    def _make_redactor(self) -> Redactor:
        if self._redactor is None:
            own = self.own
            pick = lambda f: {v for (_, fn), vs in own.items() if fn == f for v in vs}  # noqa: E731
            self._redactor = Redactor(pick("email"), pick("phone"), pick("full_name"), self.names)
        return self._redactor

    def _stage_files(
        self, entity: Entity, connector: Connector, batch: pa.RecordBatch
    ) -> pa.RecordBatch:
        """Copy each listed object into staging under its safe archive name, hashing it."""
        paths, sizes, hashes = [], [], []
        for owner, rel, key in zip(
            batch.column("owner").to_pylist(),
            batch.column("relative_key").to_pylist(),
            batch.column("key").to_pylist(),
            strict=True,
        ):
            arc = self.namer.name_for(f"{owner}/{rel}")
            folder = self.staging.folder()
            target = folder / arc
            for part in Path(arc).parent.parts:  # each level private, not just the last
                folder = folder / part
                folder.mkdir(exist_ok=True, mode=0o700)
            h, size = hashlib.sha256(), 0
            private = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with connector.open(entity.options, key) as src, os.fdopen(private, "wb") as dst:  # type: ignore[attr-defined]
                while chunk := src.read(1 << 20):
                    h.update(chunk)
                    dst.write(chunk)
                    size += len(chunk)
            paths.append(arc)
            sizes.append(size)
            hashes.append(h.hexdigest())
            self.result.files.append(StagedFile(arc, size, h.hexdigest()))
        extra = {
            "archive_path": pa.array(paths, pa.string()),
            "size_bytes": pa.array(sizes, pa.int64()),
            "sha256": pa.array(hashes, pa.string()),
        }
        cols = {n: batch.column(n) for n in batch.schema.names} | extra
        return pa.RecordBatch.from_arrays(list(cols.values()), names=list(cols))


class EntityReader:
    """One entity's rows for one subject: batches in, in fetch order; records staged.

    Rows met by several lookups (the same primary key) are taken once. ``take`` runs the
    whole per-batch path: keys yielded, files staged, normalized, checked, staged.
    """

    def __init__(
        self, ex: Extractor, entity: Entity, outcome: SourceOutcome, several_lookups: bool
    ) -> None:
        assert entity.dataset is not None
        self.ex = ex
        self.entity = entity
        self.dataset: str = entity.dataset
        self.outcome = outcome
        self.schema = ex.schemas[entity.dataset]
        self.connector = ex.connectors[entity.system]
        self.seen: set[object] | None = set() if several_lookups and entity.primary_key else None
        self.violations: list[Violation] = []

    def take(self, batch: pa.RecordBatch) -> None:
        ex, entity = self.ex, self.entity
        batch = self.fresh(batch)
        if batch.num_rows == 0:
            return
        ex.collect_keys(entity, batch)
        if entity.files:
            batch = ex._stage_files(entity, self.connector, batch)
        norm, failures = normalize_batch(
            batch, entity, self.schema, ex.request.request_type, ex._redactor_for(entity)
        )
        bad = [Violation(entity.ref, self.dataset, f.field, f.rule, f.count) for f in failures]
        bad += [
            Violation(entity.ref, self.dataset, v.field, v.rule, v.count)
            for v in self.schema.compiled.validate(norm)
        ]
        if bad:
            self.violations.extend(bad)
            return
        self.stage(norm)

    def fresh(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """The batch without rows an earlier lookup of this entity already gave."""
        if self.seen is None:
            return batch
        return _drop_seen(batch, self.entity.primary_key or "", self.seen)

    def stage(self, norm: pa.RecordBatch, nbytes: int | None = None) -> None:
        """Stage records already normalized and checked (their keys collected);
        ``nbytes`` as for ``Staging.write``."""
        self.ex._collect_own(self.dataset, norm)
        self.ex.staging.write(self.dataset, self.entity.ref, norm, nbytes)
        self.outcome.records += norm.num_rows

    def finish(self) -> list[Violation]:
        self.outcome.status = "found" if self.outcome.records else "none"
        return self.violations


def _drop_seen(batch: pa.RecordBatch, pk: str, seen: set[object]) -> pa.RecordBatch:
    keys = batch.column(pk).to_pylist()
    keep = []
    for k in keys:
        keep.append(k not in seen)
        seen.add(k)
    return batch.filter(pa.array(keep)) if not all(keep) else batch


def name_directory(dm: DataMap, connectors: Mapping[str, Connector]) -> NameDirectory | None:
    """The data map's name directory (other people's names, for redaction), or None."""
    nd = dm.redaction.name_directory
    if nd is None:
        return None
    system, entity_name, column = nd

    def lookup(candidates: list[str]) -> set[str]:
        entity, connector = dm.entity(system, entity_name), connectors[system]
        found: set[str] = set()
        for batch in connector.fetch(entity.options, Lookup(column, candidates), [column]):
            found.update(v for v in batch.column(0).to_pylist() if v)
        return found

    return NameDirectory(lookup)
