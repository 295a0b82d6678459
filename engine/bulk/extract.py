"""Batched extraction: many subjects read together, one query per entity and match column.

Each subject keeps its own ``Extractor`` (keys, own values, staging area, files), and
what is staged for a subject is exactly what its single export stages, in the same
order, so its archive is byte-identical. Only the reading is shared:

* Sources that look up many values in one query (``bulk_lookup``: SQL, Parquet) get one
  fetch per entity and match column for the union of the subjects' keys, with the match
  column added. Groups hold at most the connector's ``max_lookup_values`` values and
  never split a subject. Each row goes to every subject whose keys hold its value. The
  connector's row order is a function of the rows (SQL orders by every column, Parquet
  keeps file order), so a subject's rows come in the order its own query gives them.
* HTTP APIs get each subject's own requests, all of a batch's at once from one thread
  (``fetch_many``: up to the connector's ``max_concurrent`` in flight, spaced by its
  ``requests_per_second``). Object stores are read per subject, ``concurrency`` at a
  time for each system, whichever of its entities the calls are for.

A fetched batch is normalized and checked once for all its subjects when nothing
depends on the subject (no redaction of others, no files) and it is clean; otherwise
each subject's rows take the single-export path, which attributes every broken rule.

Case-folded matches compare ``lower(column)`` in the source; outside ASCII a source may
fold differently from Python, so a subject with a non-ASCII key is read alone, and a
group whose rows hold non-ASCII match values, or rows matching nobody, is read again
subject by subject. A subject whose source fails is reported, not its batch: a group
whose fetch fails on a row is read again in halves down to the subjects it fails for.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from engine.bulk.memory import release_memory
from engine.connectors.base import Connector, Lookup, SourceError
from engine.datamap.graph import entity_waves
from engine.datamap.model import DataMap, Entity, Match
from engine.extract import EntityReader, Extraction, Extractor, SourceOutcome, name_directory
from engine.normalize.mapping import normalize_batch
from engine.normalize.redact import NameDirectory
from engine.request import ExportRequest
from engine.schemas import SchemaRegistry
from engine.staging import MemoryBudget, Staging, held_bytes, prepare_root

CONCURRENCY = 8  # subjects read at the same time from a source without bulk lookups
UNION_ROWS = 65_536  # rows of a union fetch normalized and checked at once
Progress = Callable[[str, int, int], None]


@dataclass
class SubjectFailure:
    """Why a subject's extraction stopped; names and counts only, never a value."""

    reason: str
    transient: bool = False
    error: SourceError | None = None


@dataclass
class _Subject:
    ex: Extractor
    failure: SubjectFailure | None = None
    readers: dict[str, EntityReader] = field(default_factory=dict)


class _Reread(Exception):
    """A group's rows cannot be split by key safely: read its subjects one by one."""


class BulkExtractor:
    """Extract many requests at once; each gets its own staging area under ``root``."""

    def __init__(
        self,
        requests: Sequence[ExportRequest],
        datamap: DataMap,
        schemas: SchemaRegistry,
        connectors: Mapping[str, Connector],
        staging_root: Path,
        *,
        memory_budget: int,
        progress: Progress | None = None,
        concurrency: int = CONCURRENCY,
    ) -> None:
        ids = [r.request_id for r in requests]
        if len(set(ids)) != len(ids):
            raise ValueError("a batch holds each request once")
        self.dm = datamap
        self.connectors = connectors
        self.progress = progress or (lambda *_: None)
        self.concurrency = max(1, concurrency)
        budget = MemoryBudget(memory_budget)  # the batch's staged records, together
        prepare_root(staging_root)  # once for the batch's areas
        self.names = name_directory(datamap, connectors)  # one for the batch's redactions
        self.subjects = [
            _Subject(
                Extractor(
                    r,
                    datamap,
                    schemas,
                    connectors,
                    Staging(staging_root, r.request_id, budget=budget, root_ready=True),
                    workers=1,
                    names=self.names,
                )
            )
            for r in requests
        ]
        self._by_id = {s.ex.request.request_id: s for s in self.subjects}
        self._gates: dict[str, threading.Semaphore] = {}  # system -> its calls in flight
        self._gates_lock = threading.Lock()

    def run(self) -> dict[str, Extraction | SubjectFailure]:
        """Each request's extraction, or why it failed (in request order).

        The entities of a wave are read at the same time (a lake scan overlaps the
        payment API's round trips), as a single export reads them; what each subject
        records is put in data map order once the wave has ended.
        """
        for s in self.subjects:
            s.ex.seed()
        waves = entity_waves(self.dm)
        total = sum(len(w) for w in waves)
        done = 0
        with (
            ThreadPoolExecutor(self.concurrency, thread_name_prefix="bulk") as subjects,
            ThreadPoolExecutor(max(len(w) for w in waves), thread_name_prefix="wave") as wave_pool,
        ):
            for wave in waves:
                self.progress(f"reading {', '.join(e.ref for e in wave)}", done, total)
                live = [s for s in self.subjects if s.failure is None]
                for entity in wave:
                    self._open(entity, live)
                reads = [wave_pool.submit(self._read_entity, e, live, subjects) for e in wave]
                for read in reads:
                    read.result()
                for entity in wave:
                    self._close(entity, live)
                done += len(wave)
                release_memory()  # what the wave decoded and parsed is staged now
        self.progress("sources read", total, total)
        out: dict[str, Extraction | SubjectFailure] = {}
        for s in self.subjects:
            s.ex.staging.finish()
            s.ex.result.redactions = s.ex.redactions
            out[s.ex.request.request_id] = s.failure or s.ex.result
        return out

    def staging_of(self, request_id: str) -> Staging:
        return self._by_id[request_id].ex.staging

    # -- one entity, every subject ---------------------------------------------------

    def _open(self, entity: Entity, live: list[_Subject]) -> None:
        """Each subject's outcome for the entity, and a reader where it has keys to look up."""
        assert entity.dataset is not None
        for s in live:
            outcome = SourceOutcome(entity.ref, entity.system, entity.dataset)
            s.ex.result.outcomes.append(outcome)
            lookups = s.ex.lookups(entity)
            if lookups:
                several = len(lookups) > 1
                s.readers[entity.ref] = s.ex.entity_reader(entity, outcome, several_lookups=several)

    def _read_entity(self, entity: Entity, live: list[_Subject], pool: ThreadPoolExecutor) -> None:
        readers = [s for s in live if entity.ref in s.readers]
        conn = self.connectors[entity.system]
        if entity.files or not getattr(conn, "bulk_lookup", False):
            self._per_subject(entity, readers, pool)
        else:
            for m in entity.match:
                for group in self._groups(m, readers, getattr(conn, "max_lookup_values", None)):
                    self._read_group(entity, m, group)

    def _close(self, entity: Entity, live: list[_Subject]) -> None:
        for s in live:
            reader = s.readers.pop(entity.ref, None)
            if reader is None or s.failure is not None:
                continue
            s.ex.result.violations.extend(reader.finish())
            o = reader.outcome
            if o.records:
                s.ex.result.records[o.dataset] = s.ex.result.records.get(o.dataset, 0) + o.records

    def _per_subject(
        self, entity: Entity, subjects: list[_Subject], pool: ThreadPoolExecutor
    ) -> None:
        """Each subject's own lookups, as its single export makes them: all at once
        through a connector's ``fetch_many`` (an HTTP API), else some at a time in
        threads. Files are staged as they are listed. Other rows are kept per subject
        and then handed out like a union fetch's: subjects whose batches have the same
        Arrow schema (an API's JSON gives each page its own inferred types) are
        normalized and checked together; any other subject takes its batches one by one.
        """
        fetched: dict[int, list[pa.RecordBatch]] = {}
        many = getattr(self.connectors[entity.system], "fetch_many", None)
        if many is not None and not entity.files:
            self._fetch_many(entity, subjects, many, fetched)
        else:
            self._threaded(entity, subjects, pool, fetched)
        by_schema: dict[pa.Schema, list[tuple[_Subject, list[pa.RecordBatch]]]] = {}
        for s in subjects:
            batches = fetched.get(id(s), [])
            if s.failure is not None or not batches:
                continue
            if all(b.schema.equals(batches[0].schema) for b in batches[1:]):
                by_schema.setdefault(batches[0].schema, []).append((s, batches))
            else:
                for b in batches:
                    s.readers[entity.ref].take(b)
        for members in by_schema.values():
            rows, start = [], 0
            for s, bs in members:
                n = sum(b.num_rows for b in bs)
                rows.append((s, list(range(start, start + n))))
                start += n
            try:
                combined = pa.concat_batches([b for _, bs in members for b in bs])
                _Split(entity, combined, rows, self.names).dispatch()
            except Exception as err:  # the group's subjects are reported, not raised
                self._fail([s for s, _ in members], entity, err)

    def _fetch_many(
        self,
        entity: Entity,
        subjects: list[_Subject],
        many: Callable[..., list[list[pa.RecordBatch] | SourceError]],
        fetched: dict[int, list[pa.RecordBatch]],
    ) -> None:
        """Every subject's lookups in one call of the connector, which reads them at
        once (an HTTP API: up to its ``max_concurrent`` requests in flight)."""
        pairs = [(s, lookup) for s in subjects for lookup in s.ex.lookups(entity)]
        try:
            found = many(entity.options, [lk for _, lk in pairs], entity.source_columns())
        except Exception as err:  # the entity itself (its endpoint): every subject
            self._fail(subjects, entity, err)
            return
        for (s, _), got in zip(pairs, found, strict=True):
            if s.failure is not None:
                continue
            if isinstance(got, BaseException):
                self._fail([s], entity, got)
                continue
            fetched.setdefault(id(s), []).extend(b for b in got if b.num_rows)

    def _threaded(
        self,
        entity: Entity,
        subjects: list[_Subject],
        pool: ThreadPoolExecutor,
        fetched: dict[int, list[pa.RecordBatch]],
    ) -> None:
        """Each subject's lookups in a thread of ``pool``, a system's subjects at most
        ``_gate`` at a time; files are staged as they are listed."""

        def read(s: _Subject) -> None:
            reader = s.readers[entity.ref]
            try:
                for lookup in s.ex.lookups(entity):
                    for batch in reader.connector.fetch(
                        entity.options, lookup, entity.source_columns()
                    ):
                        if entity.files:
                            reader.take(batch)
                        elif batch.num_rows:
                            fetched.setdefault(id(s), []).append(batch)
            except Exception as err:  # one subject's failure is reported, not raised
                self._fail([s], entity, err)

        gate = self._gate(entity.system)

        def gated(s: _Subject) -> None:
            with gate:
                read(s)

        list(pool.map(gated, subjects))

    def _gate(self, system: str) -> threading.Semaphore:
        """How many of a system's subjects are read at once, across a wave's entities:
        ``concurrency``, or the connector's ``max_concurrent`` when lower."""
        with self._gates_lock:
            if system not in self._gates:
                conn = self.connectors[system]
                limit = min(self.concurrency, getattr(conn, "max_concurrent", self.concurrency))
                self._gates[system] = threading.Semaphore(limit)
            return self._gates[system]

    @staticmethod
    def _groups(
        m: Match, subjects: list[_Subject], max_values: int | None
    ) -> Iterable[list[tuple[_Subject, Lookup]]]:
        """Subjects with keys for ``m``, in groups of at most ``max_values`` distinct
        values; a subject needing more (or with a non-ASCII folded key) is alone."""
        group: list[tuple[_Subject, Lookup]] = []
        values: set[str] = set()
        for s in subjects:
            if s.failure is not None:
                continue
            lookup = s.ex.lookup_for(m)
            if lookup is None:
                continue
            if (m.casefold and not all(v.isascii() for v in lookup.values)) or (
                max_values is not None and len(lookup.values) > max_values
            ):
                yield [(s, lookup)]
                continue
            new = set(lookup.values) - values
            if max_values is not None and len(values) + len(new) > max_values:
                yield group
                group, values, new = [], set(), set(lookup.values)
            group.append((s, lookup))
            values |= new
        if group:
            yield group

    def _read_group(self, entity: Entity, m: Match, group: list[tuple[_Subject, Lookup]]) -> None:
        """Read a group's rows and hand them out.

        A fetch that fails for a reason that may lie in one subject's rows (a value the
        driver cannot read, not an unreachable source) is tried again in halves, so only
        the subjects whose rows fail are reported.
        """
        subjects = [s for s, _ in group]
        try:
            if len(group) == 1:
                s, lookup = group[0]
                reader = s.readers[entity.ref]
                for batch in reader.connector.fetch(
                    entity.options, lookup, entity.source_columns()
                ):
                    reader.take(batch)
                return
            try:
                batches = self._fetch_union(entity, m, group)
            except _Reread:
                for one in group:
                    self._read_group(entity, m, [one])
                return
            except SourceError as err:
                if err.transient:
                    raise
                half = len(group) // 2
                self._read_group(entity, m, group[:half])
                self._read_group(entity, m, group[half:])
                return
            for batch, rows in batches:
                _Split(entity, batch, rows, self.names).dispatch()
        except Exception as err:  # the group's subjects are reported, not raised
            self._fail(subjects, entity, err)

    def _fetch_union(
        self, entity: Entity, m: Match, group: list[tuple[_Subject, Lookup]]
    ) -> list[tuple[pa.RecordBatch, list[tuple[_Subject, list[int]]]]]:
        """The union fetch in batches of about ``UNION_ROWS`` rows, each with each
        subject's rows in it (in fetch order).

        The whole group is fetched before anything is staged, so a group read again
        subject by subject has staged nothing twice (its memory is the group's rows).
        Small fetched batches (a filtered scan gives one per row group) are joined, so
        that normalizing and checking cost once per many rows.
        """
        columns = entity.source_columns()
        fetch_columns = columns if m.column in columns else [*columns, m.column]
        owners: dict[str, list[int]] = {}  # key value -> positions in the group
        for pos, (_, lk) in enumerate(group):
            for v in lk.values:
                owners.setdefault(v, []).append(pos)
        lookup = Lookup(m.column, sorted(owners), m.casefold)
        conn = self.connectors[entity.system]
        pending: list[pa.RecordBatch] = []
        joined: list[pa.RecordBatch] = []
        rows = 0
        for batch in conn.fetch(entity.options, lookup, fetch_columns):
            if batch.num_rows:
                pending.append(batch)
                rows += batch.num_rows
            if rows >= UNION_ROWS:
                joined.append(pa.concat_batches(pending))
                pending, rows = [], 0
        if pending:
            joined.append(pa.concat_batches(pending))
        return [self._owned(b, m, columns, owners, group) for b in joined]

    @staticmethod
    def _owned(
        batch: pa.RecordBatch,
        m: Match,
        columns: list[str],
        owners: dict[str, list[int]],
        group: list[tuple[_Subject, Lookup]],
    ) -> tuple[pa.RecordBatch, list[tuple[_Subject, list[int]]]]:
        """The batch (its columns only) and each subject's row indices in it."""
        keys = batch.column(m.column).cast(pa.string())
        if m.casefold:
            if not pc.all(pc.string_is_ascii(keys)).as_py():
                raise _Reread
            keys = pc.utf8_lower(keys)
        rows_of: dict[int, list[int]] = {}
        for i, v in enumerate(keys.to_pylist()):
            found = owners.get(v)  # type: ignore[arg-type]
            if found is None:
                raise _Reread  # a row the split would lose or misplace
            for pos in found:
                rows_of.setdefault(pos, []).append(i)
        if len(columns) != batch.num_columns:
            batch = batch.select(columns)
        return batch, [(group[pos][0], idx) for pos, idx in sorted(rows_of.items())]

    def _fail(self, subjects: list[_Subject], entity: Entity, err: BaseException) -> None:
        for s in subjects:
            if s.failure is not None:
                continue
            outcome = s.readers[entity.ref].outcome if entity.ref in s.readers else None
            if isinstance(err, SourceError):
                s.failure = SubjectFailure(str(err), err.transient, err)
                if outcome:
                    outcome.status, outcome.error = "failed", str(err)
            else:  # a value may sit in the message: the type alone is reported
                s.failure = SubjectFailure(f"{entity.ref}: unexpected {type(err).__name__}")


class _Split:
    """One fetched batch handed out to the subjects whose keys its rows hold."""

    def __init__(
        self,
        entity: Entity,
        batch: pa.RecordBatch,
        rows: list[tuple[_Subject, list[int]]],
        names: NameDirectory | None = None,
    ) -> None:
        self.entity = entity
        self.batch = batch
        self.rows = [(s, idx) for s, idx in rows if s.failure is None]
        self.names = names

    def dispatch(self) -> None:
        self._prefetch_names()
        norms: dict[str, pa.RecordBatch | None] = {}  # request type -> the batch normalized
        pk_values: list[object] | None = None
        keys: dict[str, list[str | None]] | None = None  # key -> the batch's values, as text
        staged: dict[str, tuple[pa.RecordBatch, list[tuple[EntityReader, list[int]]]]] = {}
        for s, idx in self.rows:
            reader = s.readers[self.entity.ref]
            kind = s.ex.request.request_type
            if kind not in norms:
                norms[kind] = self._shared_normalized(reader, kind)
            norm = norms[kind]
            if norm is None:
                reader.take(self.batch.take(idx))
                continue
            if reader.seen is not None:
                if pk_values is None:
                    pk_values = self.batch.column(self.entity.primary_key or "").to_pylist()
                idx = [i for i in idx if _first(reader.seen, pk_values[i])]
                if not idx:
                    continue
            if keys is None:  # once for the batch, not a take per subject
                keys = {k: self._texts(c) for k, c in self.entity.yields.items()}
            for key, values in keys.items():
                s.ex.add_keys(key, (values[i] for i in idx))
            staged.setdefault(kind, (norm, []))[1].append((reader, idx))
        for normalized, members in staged.values():  # per request type
            _stage_slices(normalized, members)

    def _texts(self, column: str) -> list[str | None]:
        return self.batch.column(column).cast(pa.string()).to_pylist()

    def _prefetch_names(self) -> None:
        """One name-directory lookup for the free text of every subject's rows, which
        each subject's redaction then finds answered (instead of a query per subject)."""
        redacted = [f.source for f in self.entity.fields if f.transform == "redact_others"]
        if self.names is None or not self.rows or not redacted:
            return
        texts = [
            t
            for source in redacted
            if source in self.batch.schema.names
            for t in self.batch.column(source).to_pylist()
            if isinstance(t, str)
        ]
        if texts:
            with suppress(SourceError):  # each subject's redaction asks again, fails alone
                self.names.prefetch(texts)

    def _shared_normalized(self, reader: EntityReader, kind: str) -> pa.RecordBatch | None:
        """The batch normalized once for every subject of a request type, or None when
        each must do it (redaction depends on the subject; a broken rule is named per
        subject by its own pass)."""
        if any(f.transform == "redact_others" for f in self.entity.fields):
            return None
        norm, failures = normalize_batch(self.batch, self.entity, reader.schema, kind)
        if failures or any(True for _ in reader.schema.compiled.validate(norm)):
            return None
        return norm


def _stage_slices(norm: pa.RecordBatch, members: list[tuple[EntityReader, list[int]]]) -> None:
    """Every subject's rows of a normalized batch in one take, subject after subject, then
    a slice for each (a slice costs 2 us where a take of its own cost 45). A slice keeps
    the whole taken batch alive, so each is charged its share of that batch's memory."""
    order = [i for _, idx in members for i in idx]
    if not order:  # nobody's rows: nothing to stage
        return
    taken = norm.take(pa.array(order, pa.int64()))
    size, start = held_bytes(taken), 0
    for reader, idx in members:
        reader.stage(taken.slice(start, len(idx)), size * len(idx) // len(order))
        start += len(idx)


def _first(seen: set[object], key: object) -> bool:
    if key in seen:
        return False
    seen.add(key)
    return True
