"""Validation throughput: the vectorized validator against jsonschema, on usage events.

1,000,000 usage-event records (unique event ids and times; account ids, IP addresses,
user agents... drawn from pools) as an Arrow table, validated by ``CompiledSchema`` in
one call and in 65,536-row batches; jsonschema (``Draft202012Validator`` with
``FormatChecker``) on 20,000 of them.
Goal: at least 500,000 records/s. Run: ``python -m benchmarks.bench_validate``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from jsonschema import Draft202012Validator, FormatChecker

from engine.normalize.validate import CompiledSchema

ACTIONS = ["login", "logout", "view", "create", "update", "delete", "download", "share"]
DATE_TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"
NULLABLE_STRING = {"type": ["string", "null"]}
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://schemas.example.org/bench/usage_event/1.0.0.json",
    "type": "object",
    "properties": {
        "source": {"type": "string", "pattern": r"^[a-z0-9_]+\.[a-z0-9_]+$"},
        "event_id": {"type": "string", "pattern": "^evt_[0-9a-f]{12}$"},
        "occurred_at": {"type": "string", "format": "date-time", "pattern": DATE_TIME},
        "account_id": {"type": "string", "pattern": "^acc_[0-9a-f]{12}$"},
        "ip_address": {"type": ["string", "null"], "maxLength": 45, "pattern": "^[0-9A-Fa-f:.]+$"},
        "user_agent": {"type": ["string", "null"], "maxLength": 1000},
        "device": NULLABLE_STRING,
        "os": NULLABLE_STRING,
        "action": {"type": "string", "enum": ACTIONS},
        "resource": {"type": ["string", "null"], "maxLength": 500},
        "duration_ms": {"type": ["integer", "null"], "minimum": 0},
        "geo_country": {"type": ["string", "null"], "pattern": "^[A-Z]{2}$"},
    },
    "required": [
        "source",
        "event_id",
        "occurred_at",
        "account_id",
        "ip_address",
        "user_agent",
        "device",
        "os",
        "action",
        "resource",
        "duration_ms",
        "geo_country",
    ],
    "additionalProperties": False,
}
AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
    None,
]


def _pool(rng: random.Random, size: int, make: Callable[[random.Random], Any]) -> pa.Array:
    return pa.array([make(rng) for _ in range(size)], pa.string())


def _ip(rng: random.Random) -> str | None:
    if rng.random() < 0.05:
        return None
    if rng.random() < 0.7:
        return ".".join(str(rng.randrange(256)) for _ in range(4))
    return "2001:db8:" + ":".join(f"{rng.randrange(65536):x}" for _ in range(3)) + "::1"


def build(compiled: CompiledSchema, n: int, seed: int = 11) -> pa.Table:
    """n usage events: event ids and times unique per row, other values from pools."""
    rng = random.Random(seed)
    np_rng = np.random.default_rng(seed)

    def pick(pool: pa.Array) -> pa.Array:
        return pool.take(pa.array(np_rng.integers(0, len(pool), n)))

    seconds = np_rng.integers(1_546_300_800, 1_767_225_600, n)  # 2019-01-01 .. 2026-01-01
    columns = {
        "source": pa.array(["events.usage"] * n, pa.string()),
        "event_id": pa.array([f"evt_{v:012x}" for v in np_rng.integers(0, 2**48, n).tolist()]),
        "occurred_at": pc.strftime(
            pa.array(seconds, pa.timestamp("s", tz="UTC")), format="%Y-%m-%dT%H:%M:%SZ"
        ),
        "account_id": pick(_pool(rng, 20_000, lambda r: f"acc_{r.getrandbits(48):012x}")),
        "ip_address": pick(_pool(rng, 100_000, _ip)),
        "user_agent": pick(pa.array(AGENTS)),
        "device": pick(pa.array(["desktop", "mobile", "tablet", None])),
        "os": pick(pa.array(["Windows", "macOS", "Linux", "iOS", "Android", None])),
        "action": pick(pa.array(ACTIONS)),
        "resource": pick(
            _pool(
                rng, 200_000, lambda r: f"/projects/{r.randrange(10**6)}/files/{r.randrange(10**4)}"
            )
        ),
        "duration_ms": pa.array(np_rng.integers(0, 5000, n), pa.int64()),
        "geo_country": pick(pa.array(["DE", "FR", "NL", "GB", "US", None])),
    }
    return pa.Table.from_pydict(columns, schema=compiled.arrow_schema)


def _rate(n: int, seconds: float) -> int:
    return round(n / seconds)


def main(n: int = 1_000_000, reference: int = 20_000) -> dict:
    compiled = CompiledSchema.from_schema(SCHEMA)
    table = build(compiled, n)
    compiled.validate(table.slice(0, 1000))  # warm up pyarrow.compute
    t0 = time.perf_counter()
    violations = compiled.validate(table)
    whole = time.perf_counter() - t0
    assert not violations, violations
    t0 = time.perf_counter()
    for batch in table.to_batches(max_chunksize=65_536):
        compiled.validate(batch)
    batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    compiled.invalid_mask(table)
    masked = time.perf_counter() - t0
    records = table.slice(0, reference).to_pylist()
    validator = Draft202012Validator(SCHEMA, format_checker=FormatChecker())
    t0 = time.perf_counter()
    for record in records:
        for _ in validator.iter_errors(record):
            pass
    reference_s = time.perf_counter() - t0
    figures = {
        "benchmark": "validation (vectorized JSON Schema, usage events)",
        "records": n,
        "vectorized_records_per_s": _rate(n, whole),
        "vectorized_65536_batches_records_per_s": _rate(n, batched),
        "invalid_mask_records_per_s": _rate(n, masked),
        "jsonschema_records": reference,
        "jsonschema_records_per_s": _rate(reference, reference_s),
        "speedup": round((n / whole) / (reference / reference_s), 1),
    }
    for key, value in figures.items():
        print(f"{key}: {value}")
    return figures


if __name__ == "__main__":
    main()
