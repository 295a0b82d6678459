"""The usage event lake: ``events/bucket=NN/part-0.parquet``, written bucket by bucket.

``NN = zlib.crc32(account_id) % 64``; each file is sorted by ``(account_id, occurred_at)``
with row groups of 4,096 rows (a subject's events span one or two; bigger groups made a
lookup decode four times the rows it keeps). Every account uses a few IP addresses (one
abroad, which makes ``geo_country`` differ) and a couple of user agents, so events look
like a person's.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import places
from .sizes import EVENT_WINDOW, REF_TS
from .skeleton import Skeleton
from .vec import cat, hex_strings, offsets, pick, stream, take

BUCKETS = 64
ROW_GROUP = 4_096
SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("occurred_at", pa.timestamp("us", tz="UTC")),
        ("account_id", pa.string()),
        ("ip_address", pa.string()),
        ("user_agent", pa.string()),
        ("device", pa.string()),
        ("os", pa.string()),
        ("action", pa.string()),
        ("resource", pa.string()),
        ("geo_country", pa.string()),
        ("risk_flag", pa.bool_()),
    ]
)
_AGENTS = (
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/124.0.0.0 Safari/537.36", "desktop", "Windows"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4_1) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.4.1 Safari/605.1.15", "desktop", "macOS"),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
     "desktop", "Linux"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
     "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1", "mobile", "iOS"),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/124.0.6367.82 Mobile Safari/537.36", "mobile", "Android"),
    ("Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.4 Mobile/15E148 Safari/604.1", "tablet", "iPadOS"),
    ("infuze-cli/2.4.1 (linux; amd64) go1.22.2", "cli", "Linux"),
    ("infuze-cli/2.3.0 (darwin; arm64) go1.21.8", "cli", "macOS"),
    ("terraform-provider-infuze/1.8.0 (+https://registry.terraform.io)", "server", "Linux"),
    ("InfuzeMobile/5.2.0 (Android 13; SM-S911B) okhttp/4.12.0", "mobile", "Android"),
)  # fmt: skip
_ACTIONS = (
    ("auth.login", "session/", 18), ("auth.logout", "session/", 6),
    ("auth.mfa_challenge", "session/", 3), ("vm.create", "vm/", 3), ("vm.start", "vm/", 9),
    ("vm.stop", "vm/", 8), ("vm.delete", "vm/", 2), ("storage.upload", "bucket/", 14),
    ("storage.download", "bucket/", 16), ("storage.delete", "bucket/", 3),
    ("dns.record_update", "zone/", 4), ("api.token_create", "token/", 2),
    ("billing.invoice_view", "invoice/", 3), ("support.ticket_view", "ticket/", 2),
)  # fmt: skip
_ACTION_P = np.array([a[2] for a in _ACTIONS], dtype=float) / sum(a[2] for a in _ACTIONS)


def _ips(rng: np.random.Generator, home: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """Three addresses per account (home, home mobile, abroad), flattened, and countries."""
    n = home.size
    abroad = (home + rng.integers(1, len(places.COUNTRIES), n)) % len(places.COUNTRIES)
    country = np.stack([home, home, abroad], axis=1).ravel()
    octets = [c.ip_first_octets for c in places.COUNTRIES]
    flat = np.array([o for lst in octets for o in lst])
    start = np.cumsum([0, *(len(x) for x in octets)])[:-1]
    first = flat[start[country] + rng.integers(0, np.array([len(x) for x in octets])[country])]
    rest = rng.integers(0, 256, (3, country.size))
    last = rng.integers(1, 255, country.size)
    v4 = cat(
        pa.array(first).cast(pa.string()),
        ".",
        pa.array(rest[0]).cast(pa.string()),
        ".",
        pa.array(rest[1]).cast(pa.string()),
        ".",
        pa.array(last).cast(pa.string()),
    )
    groups = [hex_strings(rng.integers(0x1000, 0x10000, country.size), 4) for _ in range(3)]
    v6 = cat("2001:db8:", groups[0], ":", groups[1], "::", groups[2])
    use_v6 = np.repeat(rng.random(n) < 0.1, 3)
    return pick(use_v6, v6, v4), country


def bucket_table(sk: Skeleton, bucket: int, first_event: int) -> pa.Table:
    """All events of the accounts in ``bucket``, sorted by (account_id, occurred_at)."""
    rng = stream(sk.seed, 8, bucket)
    accs = np.flatnonzero(sk.acc_bucket == bucket)
    accs = accs[np.argsort(sk.ids["acc"].values(accs), kind="stable")]
    counts = sk.acc_events[accs]
    local = np.repeat(np.arange(accs.size), counts)
    n = local.size
    person = sk.acc_person[accs]
    home = np.where(person >= 0, sk.country[np.maximum(person, 0)], 0)
    ips, ip_country = _ips(rng, home)
    ip_pick = rng.choice(3, n, p=[0.75, 0.2, 0.05])
    ip_row = local * 3 + ip_pick
    agents = rng.integers(0, len(_AGENTS), (accs.size, 2))
    agent = agents[local, (rng.random(n) < 0.3).astype(np.int64)]
    start = np.maximum(sk.acc_created[accs], REF_TS - EVENT_WINDOW)[local] * 1_000_000
    span = REF_TS * 1_000_000 - start
    occurred = start + (rng.random(n) * span).astype(np.int64)
    order = np.lexsort((occurred, local))
    local, occurred, ip_row, agent = local[order], occurred[order], ip_row[order], agent[order]
    action = rng.choice(len(_ACTIONS), n, p=_ACTION_P)
    base = rng.integers(0, 1 << 32, accs.size, dtype=np.uint64)
    pool = rng.integers(0, 4, n).astype(np.uint64) * np.uint64(7919)
    res = (base[local] + pool) & np.uint64(0xFFFFFFFF)
    session = np.array([a[1] == "session/" for a in _ACTIONS])[action]
    res = np.where(session, rng.integers(0, 1 << 32, n, dtype=np.uint64), res)
    abroad = (ip_pick[order] == 2) & (rng.random(n) < 0.3)
    codes = [c.code for c in places.COUNTRIES]
    return pa.table(
        {
            "event_id": sk.ids["evt"].strings(np.arange(first_event, first_event + n)),
            "occurred_at": pa.array(occurred, pa.timestamp("us", tz="UTC")),
            "account_id": sk.ids["acc"].strings(accs[local]),
            "ip_address": ips.take(pa.array(ip_row)),
            "user_agent": take([a[0] for a in _AGENTS], agent),
            "device": take([a[1] for a in _AGENTS], agent),
            "os": take([a[2] for a in _AGENTS], agent),
            "action": take([a[0] for a in _ACTIONS], action),
            "resource": cat(take([a[1] for a in _ACTIONS], action), hex_strings(res, 8)),
            "geo_country": take(codes, ip_country[ip_row]),
            "risk_flag": pa.array(abroad | (rng.random(n) < 0.002)),
        },
        schema=SCHEMA,
    )


def write_lake(
    sk: Skeleton, root: Path, progress: Callable[[str, int, int], None] | None = None
) -> int:
    """Write all 64 buckets (empty ones too) under ``root/events``; return the event count."""
    totals = np.bincount(sk.acc_bucket, weights=sk.acc_events, minlength=BUCKETS)
    first = offsets(totals.astype(np.int64))
    sorting = [pq.SortingColumn(2), pq.SortingColumn(1)]
    for b in range(BUCKETS):
        table = bucket_table(sk, b, int(first[b]))
        folder = root / "events" / f"bucket={b:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(
            table,
            folder / "part-0.parquet",
            row_group_size=ROW_GROUP,
            compression="zstd",
            sorting_columns=sorting,
        )
        if progress and (b + 1) % 8 == 0:
            progress("events", b + 1, BUCKETS)
    return int(first[-1])
