"""Single-subject export latency in one warm process, on the large world.

Subjects are people whose accounts hold about 1,000 usage events (the typical heavy
subject). Goal: p50 at most 50 ms.  Run: ``python -m benchmarks.bench_latency``.

The payment provider's stand-in runs in a process of its own, as a third party's API
does: in a thread of this process it would spend the export's own CPU and GIL time.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from datetime import UTC, datetime

import pyarrow.compute as pc
import pyarrow.dataset as ds

from benchmarks.common import BENCH_DIR, percentiles, world
from demo_world.session import running_world
from engine.datamap import load_datamap
from engine.export import open_connectors, run_export
from engine.request import ExportRequest, Identity
from exporters.delivery import LocalFolderDelivery


def heavy_subjects(root, n: int = 60, low: int = 800, high: int = 1200) -> list[str]:
    counts = (
        ds.dataset(root / "events", format="parquet", partitioning="hive")
        .to_table(columns=["account_id"])
        .group_by("account_id")
        .aggregate([([], "count_all")])
    )
    mask = pc.and_(
        pc.greater_equal(counts["count_all"], low), pc.less_equal(counts["count_all"], high)
    )
    accounts = counts.filter(mask)["account_id"].to_pylist()[: n * 3]
    con = sqlite3.connect(root / "crm.sqlite")
    q = ",".join("?" * len(accounts))
    rows = con.execute(
        f"select distinct p.email from accounts a join people p "
        f"on p.person_id = a.person_id where a.account_id in ({q})",
        accounts,
    )
    return [r[0] for r in rows][:n]


def main(size: str = "large", rounds: int = 60) -> dict:
    root = world(size)
    emails = heavy_subjects(root, rounds)
    dm = load_datamap()
    out = BENCH_DIR / "latency-out"
    shutil.rmtree(out, ignore_errors=True)
    samples: list[float] = []
    events: list[int] = []
    with running_world(root, own_process=True) as env:
        conns = open_connectors(dm, env)
        try:
            for i, email in enumerate([emails[0], *emails]):  # first one warms up
                req = ExportRequest(
                    f"lat-{i}",
                    "access",
                    (Identity("email", email),),
                    as_of=datetime(2026, 7, 1, tzinfo=UTC),
                )
                t0 = time.perf_counter()
                res = run_export(
                    req,
                    dm,
                    LocalFolderDelivery(out),
                    staging_root=out / "staging",
                    connectors=conns,
                )
                dt = (time.perf_counter() - t0) * 1000
                if i:
                    samples.append(dt)
                    events.append(
                        next(
                            d["records"]
                            for d in res.manifest["datasets"]
                            if d["name"] == "usage_event"
                        )
                    )
        finally:
            for c in conns.values():
                c.close()
    fig = {
        "benchmark": "single-subject export latency",
        "world": size,
        **percentiles(samples),
        "events_per_subject_median": sorted(events)[len(events) // 2],
        "formats": "json+csv+parquet",
    }
    print(json.dumps(fig))
    return fig


if __name__ == "__main__":
    main()
