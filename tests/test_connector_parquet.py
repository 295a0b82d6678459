"""The Parquet connector on a bucketed event lake, on local disk and in S3 (moto)."""

from __future__ import annotations

import datetime as dt
import random
import time
from pathlib import Path

import boto3
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from engine.connectors.base import Lookup, SourceError
from engine.connectors.parquet import ParquetConnector, _may_hold, bucket_folder, bucket_of

BUCKETS = 64
ENTITY = {
    "path": "events",
    "bucketing": {
        "column": "account_id",
        "buckets": BUCKETS,
        "hash": "crc32",
        "partition": "bucket",
    },
}
COLUMNS = ["event_id", "occurred_at", "account_id", "device", "action"]
T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def _events(accounts: list[str], per_account: int, seed: int = 7) -> pa.Table:
    rng = random.Random(seed)
    rows: dict[str, list] = {
        "event_id": [],
        "occurred_at": [],
        "account_id": [],
        "ip_address": [],
        "device": [],
        "action": [],
        "risk_flag": [],
    }
    n = 0
    for acc in accounts:
        for _ in range(per_account):
            n += 1
            rows["event_id"].append(f"evt_{n:012x}")
            rows["occurred_at"].append(T0 + dt.timedelta(seconds=rng.randrange(10**7)))
            rows["account_id"].append(acc)
            rows["ip_address"].append(f"10.0.{rng.randrange(256)}.{rng.randrange(256)}")
            rows["device"].append(rng.choice(["iPhone", "Pixel", "MacBook", "ThinkPad"]))
            rows["action"].append(rng.choice(["login", "upload", "download", "share"]))
            rows["risk_flag"].append(rng.random() < 0.01)
    schema = pa.schema(
        [
            ("event_id", pa.string()),
            ("occurred_at", pa.timestamp("us", "UTC")),
            ("account_id", pa.string()),
            ("ip_address", pa.string()),
            ("device", pa.string()),
            ("action", pa.string()),
            ("risk_flag", pa.bool_()),
        ]
    )
    return pa.table(rows, schema=schema)


def _write_lake(root: Path, table: pa.Table, row_group_size: int = 1_000) -> dict[int, Path]:
    """Write ``events/bucket=NN/part-0.parquet`` sorted by (account_id, occurred_at)."""
    ids = pa.array([bucket_of(a, BUCKETS) for a in table["account_id"].to_pylist()])
    files = {}
    for b in sorted(set(ids.to_pylist())):
        part = table.filter(pc.equal(ids, b)).sort_by(
            [("account_id", "ascending"), ("occurred_at", "ascending")]
        )
        folder = root / "events" / bucket_folder("bucket", b, BUCKETS)
        folder.mkdir(parents=True)
        pq.write_table(part, folder / "part-0.parquet", row_group_size=row_group_size)
        files[b] = folder / "part-0.parquet"
    return files


def _accounts(n: int) -> list[str]:
    rng = random.Random(1)
    return [f"acc_{rng.getrandbits(48):012x}" for _ in range(n)]


@pytest.fixture
def lake(tmp_path: Path) -> tuple[Path, pa.Table, dict[int, Path]]:
    table = _events(_accounts(300), 40)
    return tmp_path, table, _write_lake(tmp_path, table)


def _read(conn: ParquetConnector, entity: dict, lookup: Lookup, cols: list[str]) -> pa.Table:
    batches = list(conn.fetch(entity, lookup, cols))
    return pa.Table.from_batches(batches) if batches else pa.table({})


def test_bucketed_lookup_returns_exactly_the_accounts_rows(lake) -> None:  # type: ignore[no-untyped-def]
    root, table, _ = lake
    accounts = [*sorted(set(table["account_id"].to_pylist()))[:3], "acc_000000000000"]
    got = _read(
        ParquetConnector("lake", str(root)), ENTITY, Lookup("account_id", accounts), COLUMNS
    )
    want = table.filter(pc.is_in(table["account_id"], pa.array(accounts))).select(COLUMNS)
    assert got.column_names == COLUMNS
    assert got.schema.field("occurred_at").type == pa.timestamp("us", "UTC")
    assert sorted(got["event_id"].to_pylist()) == sorted(want["event_id"].to_pylist())
    assert got.num_rows == 120


def test_only_the_values_buckets_are_opened(lake) -> None:  # type: ignore[no-untyped-def]
    root, table, files = lake
    account = table["account_id"][0].as_py()
    mine = bucket_of(account, BUCKETS)
    for b, path in files.items():  # every other bucket file is now unreadable
        if b != mine:
            path.write_bytes(b"not parquet at all")
    conn = ParquetConnector("lake", str(root))
    assert _read(conn, ENTITY, Lookup("account_id", [account]), ["event_id"]).num_rows == 40
    with pytest.raises(SourceError, match="read failed") as info:  # a full scan meets them
        _read(conn, ENTITY, Lookup("event_id", ["evt_000000000001"]), ["event_id"])
    assert "evt_000000000001" not in str(info.value)


def test_many_values_read_only_row_groups_that_may_hold_them(tmp_path: Path) -> None:
    """A lookup of many accounts (a batch export) gives the rows, in the order, of a
    scan without pruning, while reading only row groups whose statistics admit a value."""
    root, table = tmp_path, _events(_accounts(300), 40)
    files = _write_lake(root, table, row_group_size=50)
    accounts = sorted(set(table["account_id"].to_pylist()))[::7]  # 43 of 300
    conn = ParquetConnector("lake", str(root))
    got = _read(conn, ENTITY, Lookup("account_id", accounts), COLUMNS)
    unbucketed = {"path": "events"}  # every file, Arrow's own filter, no pruning of ours
    want = _read(conn, unbucketed, Lookup("account_id", accounts), COLUMNS)
    assert got.num_rows == 43 * 40 and got.equals(want)
    frag = next(iter(ds.dataset(next(iter(files.values())), format="parquet").get_fragments()))
    frag.ensure_complete_metadata()
    ids = sorted(set(pq.read_table(frag.path)["account_id"].to_pylist()))
    kept = _may_hold(frag, "account_id", [ids[0]])
    assert kept is not None and 0 < len(kept.row_groups) < frag.num_row_groups
    assert _may_hold(frag, "account_id", ["zzz"]) is None


def test_each_bucket_file_is_pruned_with_its_own_accounts(tmp_path: Path) -> None:
    """Accounts of a batch fall into every bucket; a file's row groups are kept only for
    the accounts of its own bucket (all of a batch's accounts together fall inside
    nearly every row group's min/max)."""
    table = _events(_accounts(300), 40)
    files = _write_lake(tmp_path, table, row_group_size=50)
    accounts = sorted(set(table["account_id"].to_pylist()))[::10]  # 30 of 300
    conn = ParquetConnector("lake", str(tmp_path))
    lookup = Lookup("account_id", accounts)
    buckets = conn._buckets(ENTITY["bucketing"], lookup, accounts, "events")
    assert buckets is not None
    dataset = conn._files_dataset(conn._bucket_files(str(tmp_path / "events"), buckets), lookup)
    kept = sum(len(f.row_groups) for f in dataset.get_fragments())
    mine_only = everyone = 0
    for b, path in files.items():
        own = [a for a in accounts if bucket_of(a, BUCKETS) == b]
        meta = pq.ParquetFile(path).metadata
        for rg in range(meta.num_row_groups):
            stats = meta.row_group(rg).column(2).statistics
            mine_only += any(stats.min <= a <= stats.max for a in own)
            everyone += any(stats.min <= a <= stats.max for a in accounts)
    assert kept == mine_only and mine_only * 2 < everyone, (mine_only, everyone)
    got = _read(conn, ENTITY, lookup, COLUMNS)
    want = _read(conn, {"path": "events"}, lookup, COLUMNS)  # no pruning of ours
    assert got.num_rows == 30 * 40 and got.equals(want)


def test_full_scan_without_bucketing_and_on_other_columns(lake) -> None:  # type: ignore[no-untyped-def]
    root, table, _ = lake
    conn = ParquetConnector("lake", str(root))
    ips = table["ip_address"].to_pylist()[:5]
    got = _read(conn, {"path": "events"}, Lookup("ip_address", ips), ["ip_address", "event_id"])
    assert got.column_names == ["ip_address", "event_id"]
    assert set(got["ip_address"].to_pylist()) == set(ips)
    other = _read(conn, ENTITY, Lookup("ip_address", ips), ["event_id"])
    assert sorted(other["event_id"].to_pylist()) == sorted(got["event_id"].to_pylist())


def test_casefold_compares_lower_case(lake) -> None:  # type: ignore[no-untyped-def]
    root, table, _ = lake
    conn = ParquetConnector("lake", str(root))
    got = _read(conn, {"path": "events"}, Lookup("device", ["iphone"], casefold=True), ["device"])
    assert got.num_rows == pc.sum(pc.equal(table["device"], "iPhone")).as_py() > 0
    assert set(got["device"].to_pylist()) == {"iPhone"}
    assert _read(conn, {"path": "events"}, Lookup("device", ["iphone"]), ["device"]).num_rows == 0


def test_non_string_lookup_column(tmp_path: Path) -> None:
    (tmp_path / "nums").mkdir()
    pq.write_table(
        pa.table({"n": pa.array([1, 2, 3, 2], pa.int64()), "s": list("abcd")}),
        tmp_path / "nums" / "part-0.parquet",
    )
    conn = ParquetConnector("lake", str(tmp_path))
    assert _read(conn, {"path": "nums"}, Lookup("n", ["2"]), ["s"])["s"].to_pylist() == ["b", "d"]
    with pytest.raises(SourceError, match="do not fit") as info:
        _read(conn, {"path": "nums"}, Lookup("n", ["jane@example.com"]), ["s"])
    assert "jane" not in str(info.value)


def test_errors_name_the_dataset_not_the_values(lake) -> None:  # type: ignore[no-untyped-def]
    root, _, _ = lake
    conn = ParquetConnector("lake", str(root))
    with pytest.raises(SourceError, match="no column 'shoe_size'"):
        _read(conn, ENTITY, Lookup("account_id", ["acc_1"]), ["shoe_size"])
    with pytest.raises(SourceError, match="no such dataset folder"):
        _read(conn, {"path": "nothing"}, Lookup("account_id", ["acc_1"]), ["event_id"])
    with pytest.raises(SourceError, match="invalid dataset path"):
        _read(conn, {"path": "../etc"}, Lookup("account_id", ["acc_1"]), ["event_id"])
    assert list(conn.fetch(ENTITY, Lookup("account_id", []), ["event_id"])) == []


def test_s3_dataset_on_moto(lake, moto_endpoint: str, s3_bucket: str) -> None:  # type: ignore[no-untyped-def]
    root, table, files = lake
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    for path in files.values():
        key = "lake/" + path.relative_to(root).as_posix()
        s3.upload_file(str(path), s3_bucket, key)
    conn = ParquetConnector(
        "lake", f"s3://{s3_bucket}/lake", endpoint_url=moto_endpoint, region="us-east-1"
    )
    accounts = sorted(set(table["account_id"].to_pylist()))[5:7]
    got = _read(conn, ENTITY, Lookup("account_id", accounts), COLUMNS)
    assert got.num_rows == 80 and set(got["account_id"].to_pylist()) == set(accounts)
    full = _read(conn, {"path": "events"}, Lookup("account_id", accounts), ["event_id"])
    assert full.num_rows == 80
    with pytest.raises(SourceError, match="no such dataset folder"):
        _read(conn, {"path": "missing"}, Lookup("account_id", accounts), ["event_id"])


def test_single_account_lookup_time_on_150k_row_bucket(tmp_path: Path) -> None:
    """Measures; run with -s to see the figures."""
    rng = random.Random(3)
    accounts = [a for a in _accounts(120_000) if bucket_of(a, BUCKETS) == 5][:1_500]
    table = _events(accounts, 100)  # 1,500 accounts x 100 events in one bucket: 150k rows
    _write_lake(tmp_path, table, row_group_size=16_384)
    path = tmp_path / "events" / "bucket=05" / "part-0.parquet"
    target = rng.choice(accounts)
    conn = ParquetConnector("lake", str(tmp_path))
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        got = _read(conn, ENTITY, Lookup("account_id", [target]), COLUMNS)
        timings.append(time.perf_counter() - start)
    assert got.num_rows == 100
    frag = next(iter(ds.dataset(path, format="parquet").get_fragments()))
    kept = frag.split_by_row_group(pc.field("account_id").isin([target]))
    print(
        f"\nparquet single-account lookup, {table.num_rows:,} rows "
        f"({pq.ParquetFile(path).num_row_groups} row groups, {len(kept)} left by statistics, "
        f"{path.stat().st_size / 1e6:.1f} MB): first {timings[0] * 1e3:.1f} ms, "
        f"best {min(timings) * 1e3:.1f} ms"
    )
    assert min(timings) < 2.0
