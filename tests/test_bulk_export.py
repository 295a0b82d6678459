"""A batch export gives every subject the archive its single export gives, byte for byte.

The whole demo world (300 people, by every identity type, access and portability) is
exported one by one and as one batch; the delivered files must have the same bytes.
Then the grouping limits, a failing subject that does not fail its batch, and a source
that compares differently from Python (so a group is read again subject by subject).
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

import pyarrow as pa
import pytest

from engine.bulk.export import SubjectResult, export_batch
from engine.datamap import load_datamap
from engine.export import open_connectors, run_export
from engine.request import ExportRequest, Identity
from exporters.delivery import LocalFolderDelivery
from tests.world_fixtures import AS_OF, Demo, edge


def people(demo: Demo) -> list[tuple[str, str, str]]:
    con = sqlite3.connect(demo.root / "crm.sqlite")
    return list(con.execute("select email, customer_number, email_sha256 from people"))


def requests_for(demo: Demo) -> list[ExportRequest]:
    """Every person once, the identity type and request type varying; plus nobody."""
    out = []
    for n, (email, customer, sha) in enumerate(people(demo)):
        ident = [
            (Identity("email", email.upper() if n % 7 == 0 else email),),
            (Identity("controller_customer_id", customer),),
            (Identity("email_sha256", sha),),
            (Identity("email", email), Identity("controller_customer_id", customer)),
        ][n % 4]
        kind = "portability" if n % 3 == 0 else "access"
        out.append(ExportRequest(f"bulk-{n:04d}", kind, ident, ("json", "csv", "parquet"), AS_OF))  # type: ignore[arg-type]
    nobody = edge(demo, "nobody")["emails"][0]
    out.append(
        ExportRequest("bulk-nobody", "access", (Identity("email", nobody),), ("json",), AS_OF)
    )
    return out


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def single(demo: Demo, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Every request exported alone through the single-request path."""
    base = tmp_path_factory.mktemp("single")
    dm = load_datamap()
    conns = open_connectors(dm, demo.env)
    try:
        for req in requests_for(demo):
            run_export(
                req,
                dm,
                LocalFolderDelivery(base / "out"),
                staging_root=base / "staging",
                connectors=conns,
            )
    finally:
        for c in conns.values():
            c.close()
    return digests(base / "out")


def run_batch(demo: Demo, base: Path, requests: list[ExportRequest], **kw) -> list[SubjectResult]:
    return export_batch(
        requests,
        load_datamap(),
        LocalFolderDelivery(base / "out"),
        staging_root=base / "staging",
        env=kw.pop("env", demo.env),
        **kw,
    )


def test_a_batch_gives_each_subject_its_single_archive(
    demo: Demo, single: dict[str, str], tmp_path: Path
) -> None:
    requests = requests_for(demo)
    results = run_batch(demo, tmp_path, requests)
    assert [r.request_id for r in results] == [r.request_id for r in requests]
    assert all(r.delivered for r in results), [r.reason for r in results if not r.delivered]
    assert digests(tmp_path / "out") == single
    assert not any((tmp_path / "staging").iterdir())  # every area removed


def test_small_query_groups_and_low_concurrency_change_nothing(
    demo: Demo, single: dict[str, str], tmp_path: Path
) -> None:
    """Lookups in groups of at most 5 values (a subject never split), one subject at a
    time on the API, and a memory budget that spills staging to Parquet."""
    dm = load_datamap()
    conns = open_connectors(dm, demo.env)
    conns["crm"].in_chunk = 5  # type: ignore[attr-defined]
    try:
        results = run_batch(
            demo,
            tmp_path,
            requests_for(demo)[:60],
            connectors=conns,
            concurrency=1,
            memory_budget=1,
        )
    finally:
        for c in conns.values():
            c.close()
    assert all(r.delivered for r in results)
    got = digests(tmp_path / "out")
    assert got == {name: single[name] for name in got}
    assert len(got) == 60


def test_a_failing_subject_is_reported_and_the_rest_delivered(
    demo: Demo, single: dict[str, str], tmp_path: Path
) -> None:
    """In a copy of the CRM, one person's row cannot be read (a time stamp that is not
    one) and another's breaks its schema (a country that is not a code). Those two
    requests fail, naming the source or the rule and not the value; the batch's other
    requests are delivered with their single archives."""
    crm = tmp_path / "crm.sqlite"
    shutil.copy(demo.root / "crm.sqlite", crm)
    requests = requests_for(demo)[:40]
    unreadable, invalid = people(demo)[5][0], people(demo)[22][0]
    with sqlite3.connect(crm) as con:
        con.execute("update people set created_at = 'not a time' where email = ?", (unreadable,))
        con.execute("update people set billing_country = 'Narnia' where email = ?", (invalid,))
    env = {**demo.env, "CRM_DATABASE_URL": f"sqlite:///{crm}"}
    results = run_batch(demo, tmp_path, requests, env=env)
    failed = {r.request_id: r.reason or "" for r in results if not r.delivered}
    assert sorted(failed) == ["bulk-0005", "bulk-0022"], list(failed.values())[:3]
    assert "'crm'" in failed["bulk-0005"] and "could not be read" in failed["bulk-0005"]
    assert "personal.billing_country: rule pattern" in failed["bulk-0022"]
    assert not any(v in text for text in failed.values() for v in ("not a time", "NARNIA"))
    got = digests(tmp_path / "out")
    assert len(got) == 38 and got == {name: single[name] for name in got}


def test_a_batch_asks_the_name_directory_once_per_ticket_group(
    demo: Demo, single: dict[str, str], tmp_path: Path
) -> None:
    """Other people's names in tickets are looked up for every subject's tickets at once
    (a query per subject before); the archives keep their bytes."""
    dm = load_datamap()
    conns = open_connectors(dm, demo.env)
    crm, asked = conns["crm"], []
    fetch = crm.fetch

    def counting(entity, lookup, columns):  # type: ignore[no-untyped-def]
        if lookup.column == "full_name":
            asked.append(len(lookup.values))
        return fetch(entity, lookup, columns)

    crm.fetch = counting  # type: ignore[method-assign]
    try:
        results = run_batch(demo, tmp_path, requests_for(demo), connectors=conns)
    finally:
        for c in conns.values():
            c.close()
    assert all(r.delivered for r in results)
    assert digests(tmp_path / "out") == single
    with_tickets = sqlite3.connect(demo.root / "crm.sqlite").execute(
        "select count(distinct person_id) from support_tickets"
    )
    assert with_tickets.fetchone()[0] > 20
    assert 1 <= len(asked) <= 3 and sum(asked) > 20


def test_a_batch_reads_each_api_entity_in_one_call_for_all_its_subjects(
    demo: Demo, single: dict[str, str], tmp_path: Path
) -> None:
    """The payment API's entities are read through ``fetch_many``, once per entity with
    every subject's lookups (the connector keeps its requests in flight from one
    thread), never request by request; the archives are still the single ones."""
    dm = load_datamap()
    conns = open_connectors(dm, demo.env)
    api = conns["payments"]
    calls: list[int] = []
    many = api.fetch_many  # type: ignore[attr-defined]

    def counted(entity, lookups, columns):  # type: ignore[no-untyped-def]
        calls.append(len(lookups))
        return many(entity, lookups, columns)

    def refused(*_: object) -> None:
        raise AssertionError("a bulk export read the API one subject at a time")

    api.fetch_many = counted  # type: ignore[attr-defined]
    api.fetch = refused  # type: ignore[method-assign]
    try:
        results = run_batch(demo, tmp_path, requests_for(demo)[:40], connectors=conns)
    finally:
        for c in conns.values():
            c.close()
    assert all(r.delivered for r in results)
    payments = [e for e in dm.entities() if e.system == "payments"]
    assert len(calls) == len(payments) and sum(calls) > len(payments)
    got = digests(tmp_path / "out")
    assert len(got) == 40 and got == {name: single[name] for name in got}


class _Recorder:
    """Stands in for an EntityReader: what is staged, with what it is charged."""

    def __init__(self) -> None:
        self.staged: list[tuple[list[int], int]] = []

    def stage(self, batch: pa.RecordBatch, nbytes: int) -> None:
        self.staged.append((batch.column("n").to_pylist(), nbytes))


def test_stage_slices_hands_each_subject_its_rows_and_its_share() -> None:
    """One take for the batch's subjects, a slice each, charged in proportion to its
    rows; subjects with no rows (all of them, too) are no error."""
    from engine.bulk.extract import _stage_slices
    from engine.staging import held_bytes

    norm = pa.record_batch({"n": list(range(10))})
    a, b, c = _Recorder(), _Recorder(), _Recorder()
    _stage_slices(norm, [(a, [7, 1]), (b, []), (c, [3, 4, 5, 9])])  # type: ignore[list-item]
    taken = held_bytes(norm.take(pa.array([7, 1, 3, 4, 5, 9])))
    assert a.staged == [([7, 1], taken * 2 // 6)]
    assert b.staged == [([], 0)]
    assert c.staged == [([3, 4, 5, 9], taken * 4 // 6)]
    nobody = _Recorder()
    _stage_slices(norm, [(nobody, [])])  # type: ignore[list-item]
    assert nobody.staged == []
