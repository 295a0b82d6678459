"""The demo world generator and the payment provider stand-in (demo_world/)."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import sqlite3
import subprocess
import sys
import unicodedata
import zlib
from collections.abc import Iterator
from contextlib import closing
from datetime import date, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest
from sqlalchemy import create_engine

from demo_world import SIZES, Faults, World, WorldSize, build_world, start_payments_server
from demo_world.session import running_world
from demo_world.sizes import REF_TS, resolve_size
from demo_world.sql import TABLES, normalize_url
from demo_world.vec import IdSpace, crc32_rows

TINY = {"people": 60, "events_target": 3_000, "objects": 24}
KEYS = {
    "people": "person_id",
    "accounts": "account_id",
    "organisations": "org_id",
    "org_members": "org_id, person_id",
    "support_tickets": "ticket_id",
    "marketing_consents": "consent_id",
}
ARGON2 = r"\$argon2id?\$v=19\$m=\d+,t=\d,p=\d\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}"
PAYMENT_TABLES = ("customers", "payment_methods", "charges", "invoices")


# --------------------------------------------------------------------------- helpers


def _value(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, float):
        return round(v, 4)
    return v


def sql_rows(url: str, table: str) -> list[tuple]:
    engine = create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(f"SELECT * FROM {table} ORDER BY {KEYS[table]}")
            out = [tuple(_value(v) for v in row) for row in rows]
    finally:
        engine.dispose()
    return sorted(out, key=repr)


def digest(root: Path, crm_url: str | None = None) -> dict[str, str]:
    """Content hashes of everything a world holds (table contents, not SQLite bytes)."""
    url = crm_url or f"sqlite:///{root / 'crm.sqlite'}"
    out = {f"crm.{t}": hashlib.sha256(repr(sql_rows(url, t)).encode()).hexdigest() for t in TABLES}
    with closing(sqlite3.connect(root / "payments.sqlite")) as con:
        for t in PAYMENT_TABLES:
            rows = con.execute(f"SELECT * FROM {t} ORDER BY id").fetchall()
            out[f"payments.{t}"] = hashlib.sha256(repr(rows).encode()).hexdigest()
    for path in sorted((root / "events").rglob("*.parquet")):
        out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    out["people.parquet"] = hashlib.sha256((root / "people.parquet").read_bytes()).hexdigest()
    files = sorted(p for p in (root / "objects").rglob("*") if p.is_file())
    h = hashlib.sha256()
    for p in files:
        h.update(str(p.relative_to(root)).encode() + p.read_bytes())
        h.update(str(int(p.stat().st_mtime)).encode())
    out["objects"] = h.hexdigest()
    out["world.json"] = hashlib.sha256((root / "world.json").read_bytes()).hexdigest()
    return out


def crm(root: Path) -> sqlite3.Connection:
    con = sqlite3.connect(root / "crm.sqlite")
    con.row_factory = sqlite3.Row
    return con


def events_of(root: Path, account_id: str) -> Any:
    bucket = zlib.crc32(account_id.encode()) % 64
    table = pq.read_table(root / "events" / f"bucket={bucket:02d}" / "part-0.parquet")
    return table.filter(np.array(table["account_id"].to_pylist()) == account_id)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("demo"), seed=7, size="demo")


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    roots = [tmp_path_factory.mktemp(n) for n in ("tiny_a", "tiny_b", "tiny_c")]
    for root, seed in zip(roots, (7, 7, 8), strict=True):
        build_world(root, seed=seed, size=TINY)
    return roots[0], roots[1], roots[2]


@pytest.fixture
def server(demo: World) -> Iterator[Any]:
    handle = start_payments_server(demo.payments_db, demo.env["PAYMENTS_API_TOKEN"], port=0)
    yield handle
    handle.stop()


def auth(world: World) -> dict[str, str]:
    return {"Authorization": f"Bearer {world.env['PAYMENTS_API_TOKEN']}"}


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_world_and_another_seed_differs(tiny_pair: tuple[Path, Path, Path]) -> None:
    a, b, c = tiny_pair
    da, db, dc = digest(a), digest(b), digest(c)
    assert da == db
    assert len(da) == 6 + 4 + 64 + 3
    differing = {k for k in da if da[k] != dc[k]}
    assert {"crm.people", "crm.accounts", "payments.charges", "objects"} <= differing


def test_parallel_build_writes_the_same_world(
    tiny_pair: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    seen: list[str] = []
    build_world(
        tmp_path,
        seed=7,
        size=TINY,
        parallel=True,
        progress=lambda stage, done, total: seen.append(stage),
    )
    assert digest(tmp_path) == digest(tiny_pair[0])
    assert {"skeleton", "crm", "payments", "events", "objects", "done"} <= set(seen)


def test_sizes_resolve_and_reject_nonsense() -> None:
    assert resolve_size("demo") is SIZES["demo"]
    assert resolve_size({"people": 40, "events_target": 10, "objects": 0}).people == 40
    assert resolve_size(WorldSize(50, 0, 0)).events_target == 0
    for bad in ("huge", {"people": 5, "events_target": 1, "objects": 0}, {"persons": 40}):
        with pytest.raises(ValueError):
            resolve_size(bad)  # type: ignore[arg-type]


def test_ids_are_unique_and_crc32_is_zlibs() -> None:
    space = IdSpace(7, "evt")
    values = space.values(np.arange(300_000))
    assert np.unique(values).size == 300_000 and int(values.max()) < 1 << 48
    mat = space.matrix(np.arange(2_000))
    expected = [zlib.crc32(bytes(row)) for row in mat]
    assert crc32_rows(mat).tolist() == expected
    assert re.fullmatch(r"evt_[0-9a-f]{12}", space.one(5))


# --------------------------------------------------------------------------- the demo world


def test_layout_counts_and_env(demo: World) -> None:
    root = demo.root
    info = json.loads((root / "world.json").read_text())
    assert info["seed"] == 7 and info["size"] == "demo"
    assert info["reference_date"] == "2026-06-30T00:00:00Z"
    assert info["counts"]["people"] == 301 and info["counts"]["persons"] == 300
    assert abs(info["counts"]["events"] - 30_000) < 1_500
    assert info["counts"]["objects"] == 400
    assert len(list((root / "events").glob("bucket=*/part-0.parquet"))) == 64
    env = World.load(root).env
    assert set(env) == {
        "CRM_DATABASE_URL",
        "EVENT_LAKE_PATH",
        "OBJECT_STORE_PATH",
        "PAYMENTS_API_TOKEN",
    }
    assert env["CRM_DATABASE_URL"] == f"sqlite:///{root / 'crm.sqlite'}"
    assert Path(env["EVENT_LAKE_PATH"], "events").is_dir()
    assert World.load(root).edge_cases == demo.edge_cases


def test_ids_names_and_emails(demo: World) -> None:
    con = crm(demo.root)
    people = con.execute("select * from people").fetchall()
    assert all(re.fullmatch(r"per_[0-9a-f]{12}", p["person_id"]) for p in people)
    assert all(re.fullmatch(r"C\d{8}", p["customer_number"]) for p in people)
    twins = set(demo.edge_cases["case_variant_email"]["person_ids"])
    singles = [p for p in people if p["person_id"] not in twins]
    names = [p["full_name"] for p in singles]
    assert len(set(names)) == len(names) == 299
    assert all(unicodedata.is_normalized("NFC", n) for n in names)
    assert not [(a, b) for a in names for b in names if a != b and a in b]
    lowered = [p["email"].lower() for p in singles]
    assert len(set(lowered)) == len(lowered)
    assert any(p["email"] != p["email"].lower() for p in people)
    assert any(not n.isascii() for n in names)
    assert len({p["billing_country"] for p in people}) >= 8
    assert all(
        p["email_sha256"] == hashlib.sha256(p["email"].lower().encode()).hexdigest() for p in people
    )
    for acc in con.execute("select * from accounts"):
        assert re.fullmatch(ARGON2, acc["password_hash"])
        assert acc["mfa_secret"] is None or re.fullmatch(r"[A-Z2-7]{32}", acc["mfa_secret"])
        assert isinstance(json.loads(acc["preferences"]), dict)


def test_world_people_is_the_answer_key(demo: World) -> None:
    key = demo.people()
    assert key.num_rows == 301
    con = crm(demo.root)
    rows = {r["person_id"]: r for r in con.execute("select * from people")}
    for rec in key.to_pylist():
        row = rows[rec["person_id"]]
        assert (row["email"], row["full_name"], row["customer_number"]) == (
            rec["email"],
            rec["full_name"],
            rec["customer_number"],
        )
        accounts = {
            a
            for (a,) in con.execute(
                "select account_id from accounts where person_id = ?", (rec["person_id"],)
            )
        }
        assert set(rec["account_ids"]) == accounts


def test_edge_under_16(demo: World) -> None:
    case = demo.edge_cases["under_16"]
    dob = date.fromisoformat(
        crm(demo.root)
        .execute("select date_of_birth from people where person_id = ?", case["person_ids"])
        .fetchone()[0]
    )
    ref = date(2026, 6, 30)
    age = ref.year - dob.year - ((ref.month, ref.day) < (dob.month, dob.day))
    assert age == 14 == case["age_on_reference_date"]
    others = [
        date.fromisoformat(d)
        for (d,) in crm(demo.root).execute(
            "select date_of_birth from people where person_id != ?", case["person_ids"]
        )
    ]
    assert all((ref - d).days > 16 * 365 for d in others)


def test_edge_case_variant_email(demo: World) -> None:
    case = demo.edge_cases["case_variant_email"]
    rows = (
        crm(demo.root)
        .execute("select * from people where lower(email) = lower(?)", (case["emails"][0],))
        .fetchall()
    )
    assert len(rows) == 2 and rows[0]["full_name"] == rows[1]["full_name"]
    assert rows[0]["email"] != rows[1]["email"]
    assert {r["person_id"] for r in rows} == set(case["person_ids"])
    with closing(sqlite3.connect(demo.payments_db)) as pay:
        (provider_email,) = pay.execute(
            "select email from customers where id = ?", case["payment_customer_ids"][:1]
        ).fetchone()
    assert provider_email.lower() == case["emails"][0].lower() == case["payment_emails"][0]
    assert provider_email not in {r["email"] for r in rows}


def test_edge_accounts_shared_org_and_payments(demo: World) -> None:
    con = crm(demo.root)
    multi = demo.edge_cases["multi_account"]
    assert (
        con.execute(
            "select count(*) from accounts where person_id = ?", multi["person_ids"]
        ).fetchone()[0]
        == 3
    )
    shared = demo.edge_cases["shared_org_member"]
    acc = con.execute(
        "select * from accounts where account_id = ?", shared["shared_account_ids"]
    ).fetchone()
    assert acc["person_id"] is None and acc["org_id"] == shared["org_ids"][0] and acc["is_shared"]
    members = {
        p
        for (p,) in con.execute(
            "select person_id from org_members where org_id = ?", shared["org_ids"]
        )
    }
    assert members == set(shared["person_ids"]) and len(members) >= 3
    no_pay = demo.edge_cases["no_payments"]
    pay_ids = [
        p
        for (p,) in con.execute(
            "select payment_customer_id from accounts where person_id = ?", no_pay["person_ids"]
        )
    ]
    assert pay_ids and all(p is None for p in pay_ids)
    with closing(sqlite3.connect(demo.payments_db)) as pay:
        assert not pay.execute(
            "select 1 from customers where lower(email) = lower(?)", no_pay["emails"]
        ).fetchall()


def test_edge_ticket_mentions_other(demo: World) -> None:
    case = demo.edge_cases["ticket_mentions_other"]
    con = crm(demo.root)
    body = con.execute(
        "select body from support_tickets where ticket_id = ? and person_id = ?",
        (case["ticket_ids"][0], case["person_ids"][0]),
    ).fetchone()[0]
    other = con.execute(
        "select * from people where person_id = ?", case["mentioned_person_ids"]
    ).fetchone()
    assert other["person_id"] != case["person_ids"][0]
    assert other["full_name"] in body and other["email"] in body
    assert other["full_name"] not in case["full_names"]


def test_edge_events_objects_and_nobody(demo: World) -> None:
    root = demo.root
    heavy = demo.edge_cases["heavy_user"]
    events = events_of(root, heavy["account_ids"][0])
    assert 900 <= events.num_rows <= 1_100
    assert events.num_rows == heavy["event_count"]
    times = events["occurred_at"].cast("int64").to_numpy() // 1_000_000
    assert times.min() >= REF_TS - 730 * 86_400 and times.max() < REF_TS
    for case in ("no_events",):
        for acc in demo.edge_cases[case]["account_ids"]:
            assert events_of(root, acc).num_rows == 0
    for acc in demo.edge_cases["no_objects"]["account_ids"]:
        assert not (root / "objects" / acc).exists()
    nobody = demo.edge_cases["nobody"]["emails"][0].lower()
    con = crm(root)
    assert not con.execute("select 1 from people where lower(email) = ?", (nobody,)).fetchall()
    assert not con.execute(
        "select 1 from support_tickets where lower(body) like ?", (f"%{nobody}%",)
    ).fetchall()
    with closing(sqlite3.connect(demo.payments_db)) as pay:
        assert not pay.execute(
            "select 1 from customers where lower(email) = ?", (nobody,)
        ).fetchall()


def test_event_lake_layout(demo: World) -> None:
    path = demo.root / "events" / "bucket=05" / "part-0.parquet"
    meta = pq.ParquetFile(path).metadata
    assert all(meta.row_group(i).num_rows <= 4_096 for i in range(meta.num_row_groups))
    table = pq.read_table(path)
    assert table.schema.names == [
        "event_id",
        "occurred_at",
        "account_id",
        "ip_address",
        "user_agent",
        "device",
        "os",
        "action",
        "resource",
        "geo_country",
        "risk_flag",
    ]
    assert str(table.schema.field("occurred_at").type) == "timestamp[us, tz=UTC]"
    keys = list(zip(table["account_id"].to_pylist(), table["occurred_at"].to_pylist(), strict=True))
    assert keys == sorted(keys)
    assert all(zlib.crc32(a.encode()) % 64 == 5 for a in set(table["account_id"].to_pylist()))


def test_customer_files(demo: World) -> None:
    files = [p for p in (demo.root / "objects").rglob("*") if p.is_file()]
    assert len(files) == 400
    names = [p.name for p in files]
    nfc = unicodedata.normalize("NFC", "Résumé 2025.pdf")
    assert nfc in names and unicodedata.normalize("NFD", nfc) in names
    assert any(" " in n for n in names) and any(n.startswith("..") for n in names)
    assert any(p.parent.name.endswith(".") for p in files)
    assert any(p.stat().st_size > 2 << 20 for p in files)
    assert all(p.stat().st_size < 8 << 20 for p in files)
    heavy = demo.edge_cases["heavy_user"]["account_ids"][0]
    assert (demo.root / "objects" / heavy / "big" / "disk-image.raw.gz").read_bytes()[:2] == (
        b"\x1f\x8b"
    )


# --------------------------------------------------------------------------- payments API


def test_payments_api_requires_the_token(demo: World, server: Any) -> None:
    cus = demo.edge_cases["multi_account"]["payment_customer_ids"][0]
    assert httpx.get(f"{server.url}/v1/customers/{cus}").status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert httpx.get(f"{server.url}/v1/customers/{cus}", headers=wrong).status_code == 401
    r = httpx.get(f"{server.url}/v1/customers/{cus}", headers=auth(demo))
    assert r.status_code == 200
    body = r.json()
    assert body["id"] == cus and set(body["address"]) == {"line1", "city", "postal_code", "country"}
    assert cus not in r.text.replace(body["id"], "", 1)
    missing = httpx.get(f"{server.url}/v1/customers/cus_000000000000", headers=auth(demo))
    assert missing.status_code == 404 and "cus_" not in missing.text


def test_payments_api_pagination_walks_every_page(demo: World, server: Any) -> None:
    with closing(sqlite3.connect(demo.payments_db)) as pay:
        cus, n = pay.execute(
            "select customer, count(*) c from charges group by customer order by c desc limit 1"
        ).fetchone()
        expected = [
            r
            for (r,) in pay.execute(
                "select id from charges where customer = ? order by rowid", (cus,)
            )
        ]
    assert n >= 5
    seen, cursor, pages = [], None, 0
    while True:
        params = {"customer": cus, "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = httpx.get(f"{server.url}/v1/charges", params=params, headers=auth(demo)).json()
        pages += 1
        seen += [c["id"] for c in page["data"]]
        assert all(isinstance(c["amount"], int) and c["currency"].islower() for c in page["data"])
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
    assert seen == expected and pages == -(-n // 2)
    default = httpx.get(f"{server.url}/v1/invoices", params={"customer": cus}, headers=auth(demo))
    assert len(default.json()["data"]) == min(10, n)
    for bad in (
        {"customer": cus, "limit": 101},
        {"customer": cus, "limit": "x"},
        {"customer": cus, "cursor": "not-a-cursor"},
        {},
    ):
        r = httpx.get(f"{server.url}/v1/charges", params=bad, headers=auth(demo))
        assert r.status_code == 400


def test_payments_api_fault_injection(demo: World, server: Any) -> None:
    cus = demo.edge_cases["heavy_user"]["payment_customer_ids"][0]
    url = f"{server.url}/v1/payment_methods"
    server.set_faults(Faults(first=2, status=429, retry_after=3))
    codes = [httpx.get(url, params={"customer": cus}, headers=auth(demo)) for _ in range(3)]
    assert [r.status_code for r in codes] == [429, 429, 200]
    assert codes[0].headers["Retry-After"] == "3"
    server.set_faults({"first": 1, "status": 500})
    assert httpx.get(url, params={"customer": cus}, headers=auth(demo)).status_code == 500
    assert httpx.get(url, params={"customer": cus}, headers=auth(demo)).status_code == 200
    assert server.requests == 5


def test_payments_api_command_line(demo: World) -> None:
    cmd = [
        sys.executable,
        "-m",
        "demo_world.payments_api",
        "--db",
        str(demo.payments_db),
        "--port",
        "0",
        "--fail-first",
        "1",
        "--fail-status",
        "500",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent
    )
    try:
        line = proc.stdout.readline().strip() if proc.stdout else ""
        assert line.startswith("PAYMENTS_API_URL=http://127.0.0.1:")
        base = line.split("=", 1)[1]
        cus = demo.edge_cases["heavy_user"]["payment_customer_ids"][0]
        assert httpx.get(f"{base}/v1/customers/{cus}", headers=auth(demo)).status_code == 500
        assert httpx.get(f"{base}/v1/customers/{cus}", headers=auth(demo)).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("own_process", [False, True])
def test_running_world_serves_payments(demo: World, own_process: bool) -> None:
    cus = demo.edge_cases["heavy_user"]["payment_customer_ids"][0]
    with running_world(demo.root, own_process=own_process) as env:
        url = f"{env['PAYMENTS_API_URL']}/v1/customers/{cus}"
        assert env["PAYMENTS_API_TOKEN"] == demo.env["PAYMENTS_API_TOKEN"]
        assert httpx.get(url, headers=auth(demo)).status_code == 200
        assert httpx.get(url).status_code == 401
    with pytest.raises(httpx.ConnectError):  # stopped with the block
        httpx.get(url, headers=auth(demo))


# --------------------------------------------------------------------------- SQL backends


@pytest.mark.postgres
def test_crm_loads_into_postgresql(
    tiny_pair: tuple[Path, Path, Path], tmp_path: Path, postgres_url: str
) -> None:
    import psycopg

    url = postgres_url
    world = build_world(tmp_path, seed=7, size=TINY, sql_url=url)
    assert world.env["CRM_DATABASE_URL"].startswith("postgresql+psycopg://")
    sqlite_url = f"sqlite:///{tiny_pair[0] / 'crm.sqlite'}"
    for table in TABLES:
        assert sql_rows(url, table) == sql_rows(sqlite_url, table), table
    with psycopg.connect(url) as conn:
        index = conn.execute(
            "select indexdef from pg_indexes where indexname = 'ix_people_email_lower'"
        ).fetchone()[0]
        assert "lower" in index
        assert (
            conn.execute(
                "select count(*) from accounts where person_id is null and is_shared"
            ).fetchone()[0]
            >= 1
        )


@pytest.mark.mariadb
def test_crm_loads_into_mariadb(
    tiny_pair: tuple[Path, Path, Path], tmp_path: Path, mariadb_url: str
) -> None:
    build_world(tmp_path, seed=7, size=TINY, sql_url=mariadb_url)
    sqlite_url = f"sqlite:///{tiny_pair[0] / 'crm.sqlite'}"
    for table in TABLES:
        assert sql_rows(mariadb_url, table) == sql_rows(sqlite_url, table), table


def test_objects_go_to_s3(s3_bucket: str, moto_endpoint: str, tmp_path: Path) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    world = build_world(tmp_path, seed=7, size=TINY, s3_client=client, bucket=s3_bucket)
    assert world.env["OBJECT_STORE_PATH"] == f"s3://{s3_bucket}"
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert len(keys) == TINY["objects"] and all(re.match(r"acc_[0-9a-f]{12}/", k) for k in keys)
    assert not any((tmp_path / "objects").iterdir())
