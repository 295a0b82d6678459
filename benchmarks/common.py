"""Shared helpers for benchmarks: figures printed, never asserted."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "var" / "bench"


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    s = sorted(samples_ms)
    q = statistics.quantiles(s, n=100, method="inclusive")
    return {
        "p50_ms": round(q[49], 1),
        "p95_ms": round(q[94], 1),
        "max_ms": round(s[-1], 1),
        "n": len(s),
    }


def world(size: str, seed: int = 7) -> Path:
    """A demo world of that size (its CRM in SQLite) under var/bench, built once and
    reused. A world found there with its CRM elsewhere (PostgreSQL, as bench_bulk's
    once shared this folder) is built again."""
    from demo_world.build import build_world

    root = BENCH_DIR / f"world-{size}"
    meta = root / "world.json"
    if meta.exists():
        info = json.loads(meta.read_text())
        sqlite_crm = "CRM_DATABASE_URL=sqlite" in (root / "world.env").read_text()
        if info.get("seed") == seed and info.get("size") == size and sqlite_crm:
            return root
    print(f"building the {size} world in {root} (once)", flush=True)
    build_world(root, seed=seed, size=size)
    return root


def machine_speed(samples: int = 5) -> float:
    """Milliseconds of CPU for a fixed pure-Python loop of a million additions (median
    of ``samples``). This virtual machine's host moves it between about 28 and 55 ms
    from one second to the next; printed beside a figure, it tells which it got."""
    times = []
    for _ in range(samples):
        start, total = time.process_time(), 0
        for i in range(1_000_000):
            total += i
        times.append(1000 * (time.process_time() - start))
    return round(statistics.median(times))
