"""Bulk export throughput on the large world, with its CRM in PostgreSQL.

A batch of ``--subjects`` people (10,000 by default, drawn at random with a fixed seed)
is exported through the bulk path (``run_bulk``: batches of ``--batch-size`` across
``--processes`` worker processes), then the same people one by one through the single
request path (``run_export``, warm connectors, one process per core as well), in the
same run. Printed: subjects per second and CPU milliseconds per subject (this process
and its pool workers) for each, their ratio, the peak memory of the bulk run (all its
processes together), whether every bulk archive has the bytes of its single-request
archive, and the machine's speed before and after each run (``machine_speed``: this
host's speed moves by up to 2x, and the figures with it).

Goals on the 2-core machine: at least 200 subjects/s, peak memory at most 1.5 GB,
archives identical. Run:
``python -m benchmarks.bench_bulk [--subjects 10000] [--batch-size 500]``
(the first run builds the large world into PostgreSQL, database ``crm_large``). Peak
memory leaves out the payment provider's stand-in, a third party's server here; it
counts this process, so ``make bench`` runs this benchmark in a fresh one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import shutil
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from benchmarks.common import BENCH_DIR, machine_speed
from demo_world.build import build_world
from demo_world.session import running_world
from engine.bulk import BATCH_SIZE
from engine.bulk.export import SubjectResult
from engine.bulk.pool import BulkSettings, run_bulk, worker_state
from engine.datamap import DEFAULT_DATAMAP
from engine.export import ExportFailed, run_export
from engine.request import ExportRequest, Identity

PG_URL = "postgresql://postgres@127.0.0.1:5432/crm_large"
AS_OF = datetime(2026, 7, 1, tzinfo=UTC)
PAGE = os.sysconf("SC_PAGE_SIZE")


def large_world() -> Path:
    """The large world with its CRM in PostgreSQL, built once under var/bench: a folder
    of its own, beside the SQLite world of the other benchmarks (``common.world``)."""
    root = BENCH_DIR / "world-large-pg"
    meta = root / "world.json"
    built = meta.exists() and json.loads(meta.read_text()).get("size") == "large"
    if built and "postgresql" in (root / "world.env").read_text():
        return root
    admin = sa.create_engine("postgresql://postgres@127.0.0.1:5432/postgres")
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        if not c.execute(sa.text("select 1 from pg_database where datname='crm_large'")).first():
            c.execute(sa.text("create database crm_large"))
    print(f"building the large world in {root} and PostgreSQL crm_large (once)", flush=True)
    build_world(root, seed=7, size="large", sql_url=PG_URL)
    return root


def subjects(n: int, seed: int = 11) -> list[str]:
    engine = sa.create_engine(PG_URL)
    with engine.connect() as c:
        count = c.execute(sa.text("select count(*) from people")).scalar_one()
        rows = random.Random(seed).sample(range(count), n)
        emails = c.execute(
            sa.text(
                "select email from (select email, row_number() over (order by person_id) - 1"
                " as n from people) p join unnest(cast(:rows as bigint[])) r(n) using (n)"
            ),
            {"rows": rows},
        ).scalars()
        return sorted(emails)


def requests(emails: list[str]) -> list[ExportRequest]:
    return [
        ExportRequest(f"bulk-{i:05d}", "access", (Identity("email", e),), as_of=AS_OF)
        for i, e in enumerate(emails)
    ]


class PeakMemory:
    """Peak resident memory of this process and its descendants together, sampled every
    ``interval`` seconds. The tree is found through ``/proc/<pid>/task/<tid>/children``:
    walking every process of the machine 20 times a second cost 4% of its CPU, taken
    from the run it measured."""

    def __init__(self, interval: float = 0.2) -> None:
        self.peak = 0
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, tree_rss(os.getpid()))

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            kids += [int(k) for k in (task / "children").read_text().split()]
    except OSError:
        pass
    return kids


def tree_rss(root: int) -> int:
    """Resident bytes of a process and all its descendants, but the payment provider's
    stand-in: a third party's server, not part of the pipeline."""
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += _children(pid)
        try:
            if b"payments_api" in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        except OSError:
            continue
    return total


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def one_by_one(chunk: list[ExportRequest]) -> list[SubjectResult]:
    """The single-request path (``run_export``) for each request, in a pool worker."""
    w = worker_state()
    out = []
    for req in chunk:
        try:
            res = run_export(
                req,
                w["datamap"],
                w["delivery"],
                staging_root=w["settings"].staging_root,
                schemas=w["schemas"],
                connectors=w["connectors"],
            )
            out.append(SubjectResult(req.request_id, "delivered", parts=res.parts))
        except ExportFailed as err:
            out.append(SubjectResult(req.request_id, "failed", str(err)))
    return out


def timed_run(
    reqs: list[ExportRequest],
    out: Path,
    env: dict[str, str],
    batch_size: int,
    processes: int,
    single: bool = False,
) -> dict[str, float]:
    settings = BulkSettings(DEFAULT_DATAMAP, str(out / "archives"), out / "staging", env)
    last = [0.0]

    def progress(done: int, failed: int, total: int) -> None:
        if time.monotonic() - last[0] > 5 or done + failed == total:
            last[0] = time.monotonic()
            print(f"    {done} delivered, {failed} failed of {total}", flush=True)

    speed_before = machine_speed()
    cpu0 = _cpu_seconds()
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        results = run_bulk(
            reqs,
            settings,
            processes=processes,
            batch_size=batch_size,
            progress=progress,
            worker=one_by_one if single else None,
        )
        elapsed = time.perf_counter() - t0
    n, cpu = len(results), _cpu_seconds() - cpu0
    return {
        "seconds": round(elapsed, 1),
        "subjects_per_s": round(n / elapsed, 1),
        "cpu_ms_per_subject": round(1000 * cpu / n, 1),
        "peak_rss_mb": round(mem.peak / 2**20),
        "failed": sum(not r.delivered for r in results),
        "loop_ms_before_after": [speed_before, machine_speed()],  # benchmarks.common
    }


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the pool's workers once
    the pool has shut down; the payment stand-in is still running, so it is not in)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_bulk")
    parser.add_argument("--subjects", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--skip-single", action="store_true")
    parser.add_argument("--figures", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    root = large_world()
    emails = subjects(args.subjects)
    reqs = requests(emails)
    figures: dict = {
        "benchmark": f"bulk export, {len(reqs):,} subjects (large world, CRM in PostgreSQL)",
        "subjects": len(reqs),
        "batch_size": args.batch_size,
        "processes": args.processes,
    }
    bulk_out, single_out = BENCH_DIR / "bulk-out", BENCH_DIR / "single-out"
    _remove_outputs(bulk_out, single_out)
    with running_world(root, own_process=True) as env:
        print(f"bulk: {len(reqs)} subjects, batches of {args.batch_size}", flush=True)
        figures["bulk"] = timed_run(reqs, bulk_out, env, args.batch_size, args.processes)
        print(f"  {figures['bulk']}", flush=True)
        if not args.skip_single:
            print(f"single: the same {len(reqs)} subjects one by one", flush=True)
            figures["single"] = timed_run(
                reqs, single_out, env, args.batch_size, args.processes, single=True
            )
            figures["ratio"] = round(figures["single"]["seconds"] / figures["bulk"]["seconds"], 1)
            a = digests(bulk_out / "archives")
            b = digests(single_out / "archives")
            figures["identical_archives"] = sum(a[k] == b.get(k) for k in a)
            figures["archives"] = len(a)
            print(f"  {figures['single']}", flush=True)
    print(json.dumps(figures, indent=1))
    if args.figures:
        args.figures.write_text(json.dumps(figures))
    return figures


def _remove_outputs(*folders: Path) -> None:
    """Remove the archives of the previous run (kept for a look until the next one),
    then let the file system settle: ext4 without a journal (this machine's) looks past
    every inode freed in the last 30 s each time it allocates one, which would charge
    the harness's deletions to the export (0.5 ms an archive)."""
    left = [f for f in folders if f.exists()]
    for folder in left:
        shutil.rmtree(folder)
    if left:
        print("removed the previous run's archives; waiting 31 s for the file system", flush=True)
        time.sleep(31)


if __name__ == "__main__":
    main()
