"""End to end on servers: the real data map, the CRM in PostgreSQL, the event lake and
the customer files in S3 (moto's server, over HTTP), payments from the stand-in.

Every connection setting reaches the engine as production's do: through the variables
of the env mapping given to ``run_export`` (``CRM_DATABASE_URL``, ``EVENT_LAKE_PATH``,
``OBJECT_STORE_PATH``, ``PAYMENTS_API_URL``, ``PAYMENTS_API_TOKEN``); S3 credentials come
from the standard AWS variables (set by the ``moto_endpoint`` fixture). The same world
(seed and size) is also exported from its embedded default, SQLite and local folders:
both archives must hold the same data.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from demo_world.build import build_world
from demo_world.session import running_world
from engine.connectors.base import Lookup, SourceError
from engine.connectors.objects import LocalObjectStore, guess_content_type
from engine.connectors.objects_s3 import S3ObjectStore
from engine.connectors.parquet import ParquetConnector, s3_filesystem
from engine.connectors.registry import build_connector
from engine.datamap import load_datamap
from engine.export import ExportFailed, ExportResult, run_export
from engine.request import ExportRequest, Identity
from exporters.delivery import LocalFolderDelivery
from tests.backend_fixtures import (
    REGION,
    ServerWorld,
    dead_endpoint,
    expected_crm,
    expected_events,
    expected_payments,
    s3_objects,
    s3_root,
    upload_lake,
)
from tests.conftest import postgres_database
from tests.world_fixtures import AS_OF

SEED = 7
SIZE = {"people": 40, "events_target": 2_000, "objects": 30}  # heavy_user: 400 events
REQUEST_ID = "req-backends"  # the same for both exports: it is in the manifest
LAKE_PREFIX = "lake"
# heavy_user: CRM, events, every awkward file key (unicode NFC/NFD, spaces, "..", "v2./",
# a multi-MB file) and payments; shared_org_member #0: the same four systems and an
# organisation membership. Between them, every source of the data map finds records.
SUBJECTS = [("heavy_user", 0), ("shared_org_member", 0)]
# Only these entries may differ between the two archives, because customer_object reports
# each store's own metadata of a file:
# - last_modified: S3 cannot be told an object's modification time (LastModified is the
#   moment of the upload), whereas the local world sets each file's mtime from the seed;
# - content_type: a local file has no stored type, so the engine guesses from the key
#   (``x.tar.gz`` -> application/gzip); an S3 object has the Content-Type it was put with,
#   and the demo world puts ``.tar.gz`` files as application/x-tar (mimetypes' guess,
#   without a Content-Encoding), which the engine rightly reports as stored.
# datapackage.json carries those data files' hashes. Everything else is byte-identical.
STORE_METADATA = {
    "data/customer_object.json",
    "data/customer_object.csv",
    "data/customer_object.parquet",
    "datapackage.json",
}
_GENERIC = ("binary/octet-stream", "application/octet-stream")  # S3 knows no better


@dataclass
class Worlds:
    embedded_root: Path
    embedded_env: dict[str, str]
    server: ServerWorld
    edge_cases: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def worlds(moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worlds]:
    base = tmp_path_factory.mktemp("backends")
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name=REGION)
    tag = uuid.uuid4().hex[:10]
    lake_bucket, files_bucket = f"lake-{tag}", f"files-{tag}"
    for bucket in (lake_bucket, files_bucket):
        s3.create_bucket(Bucket=bucket)
    embedded = build_world(base / "embedded", seed=SEED, size=SIZE)
    with ExitStack() as stack:
        pg_url = stack.enter_context(postgres_database("test_backends"))
        servers = build_world(
            base / "servers",
            seed=SEED,
            size=SIZE,
            sql_url=pg_url,
            s3_client=s3,
            bucket=files_bucket,
        )
        assert servers.edge_cases == embedded.edge_cases  # the same world, on servers
        assert upload_lake(s3, servers.root, lake_bucket, LAKE_PREFIX) == 64
        # Nothing of the server world stays on local disk but the payment store (which
        # only the stand-in reads): the engine must read CRM, lake and files remotely.
        shutil.rmtree(servers.root / "events")
        assert not (servers.root / "crm.sqlite").exists()
        assert not any((servers.root / "objects").iterdir())
        embedded_env = stack.enter_context(running_world(embedded.root))
        payments_env = stack.enter_context(running_world(servers.root))
        env = {
            **payments_env,  # PAYMENTS_API_URL, PAYMENTS_API_TOKEN
            "CRM_DATABASE_URL": pg_url,
            "EVENT_LAKE_PATH": s3_root(lake_bucket, LAKE_PREFIX, moto_endpoint),
            "OBJECT_STORE_PATH": s3_root(files_bucket, "", moto_endpoint),
        }
        server = ServerWorld(
            servers.root, env, pg_url, s3, moto_endpoint, lake_bucket, LAKE_PREFIX, files_bucket
        )
        yield Worlds(embedded.root, embedded_env, server, embedded.edge_cases)


def _export(env: dict[str, str], email: str, base: Path) -> ExportResult:
    req = ExportRequest(REQUEST_ID, "access", (Identity("email", email),), as_of=AS_OF)
    return run_export(
        req,
        load_datamap(),
        LocalFolderDelivery(base / "out"),
        staging_root=base / "staging",
        env=env,
    )


@pytest.fixture(scope="module")
def exports(
    worlds: Worlds, tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, int], tuple[ExportResult, ExportResult]]:
    """(embedded, servers) export of each subject, each run opening its own connectors."""
    out = {}
    for case, i in SUBJECTS:
        email = worlds.edge_cases[case]["emails"][i]
        runs = []
        for label, env in (("embedded", worlds.embedded_env), ("servers", worlds.server.env)):
            runs.append(_export(env, email, tmp_path_factory.mktemp(f"{case}-{label}")))
        out[(case, i)] = (runs[0], runs[1])
    return out


def _entries(path: str) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {name: z.read(name) for name in z.namelist()}


def _records(name: str, data: bytes) -> list[dict[str, Any]]:
    if name.endswith(".json"):
        return json.loads(data)
    if name.endswith(".csv"):
        return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    return pq.read_table(pa.BufferReader(data)).to_pylist()


def _utc(when: datetime | float) -> str:
    if isinstance(when, float):
        when = datetime.fromtimestamp(when, UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _without(record: dict[str, Any], *fields: str) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in fields}


@pytest.mark.postgres
@pytest.mark.parametrize("subject", SUBJECTS, ids=lambda s: f"{s[0]}-{s[1]}")
def test_servers_and_embedded_default_give_the_same_archive(
    worlds: Worlds, exports: dict, subject: tuple[str, int]
) -> None:
    embedded, servers = exports[subject]
    a = _entries(embedded.delivered.location)
    b = _entries(servers.delivered.location)
    assert list(a) == list(b)  # the same entries, in the same order
    data = [n for n in a if n.startswith("data/")]
    files = [n for n in a if n.startswith("files/")]
    assert {n.rsplit(".", 1)[1] for n in data} == {"json", "csv", "parquet"} and files
    assert embedded.manifest == servers.manifest
    assert a["manifest.json"] == b["manifest.json"] and a["README.html"] == b["README.html"]
    for name in files:  # the customer files' bytes, streamed from S3 and from disk
        assert a[name] == b[name], name
    assert {n for n in a if a[n] != b[n]} == STORE_METADATA

    # customer_object: every field the same but the store's metadata, each from its store
    world = worlds.server
    owners = sorted({r["account_id"] for r in _records(".json", a["data/customer_object.json"])})
    on_s3 = {k: _utc(v) for k, v in s3_objects(world, owners).items()}
    stored = {
        k: world.s3.head_object(Bucket=world.files_bucket, Key=k)["ContentType"] for k in on_s3
    }
    local = worlds.embedded_root / "objects"
    metadata = ("last_modified", "content_type")
    for name in sorted(n for n in STORE_METADATA if n.startswith("data/")):
        rec_a, rec_b = _records(name, a[name]), _records(name, b[name])
        assert [_without(r, *metadata) for r in rec_a] == [_without(r, *metadata) for r in rec_b], (
            name
        )
        assert [(r["last_modified"], r["content_type"]) for r in rec_a] == [
            (
                _utc(os.stat(local / r["account_id"] / r["key"]).st_mtime),
                guess_content_type(r["key"]),
            )
            for r in rec_a
        ], name
        s3_keys = [f"{r['account_id']}/{r['key']}" for r in rec_b]
        assert [(r["last_modified"], r["content_type"]) for r in rec_b] == [
            (on_s3[k], guess_content_type(k) if stored[k] in _GENERIC else stored[k])
            for k in s3_keys
        ], name
    assert len(on_s3) == servers.manifest["customer_files"]["count"]

    # datapackage.json: the same but the customer_object files' sizes and hashes, which
    # describe this very archive
    pkg_a, pkg_b = json.loads(a["datapackage.json"]), json.loads(b["datapackage.json"])
    for pkg, entries in ((pkg_a, a), (pkg_b, b)):
        for res in pkg["resources"]:
            if res["path"] in STORE_METADATA:
                digest = hashlib.sha256(entries[res["path"]]).hexdigest()
                assert res["hash"] == f"sha256:{digest}", res["path"]
                assert res.get("bytes", len(entries[res["path"]])) == len(entries[res["path"]])
                res.pop("hash")
                res.pop("bytes", None)
    assert pkg_a == pkg_b


@pytest.mark.postgres
@pytest.mark.parametrize("subject", SUBJECTS, ids=lambda s: f"{s[0]}-{s[1]}")
def test_manifest_counts_every_source_as_the_servers_hold_it(
    worlds: Worlds, exports: dict, subject: tuple[str, int]
) -> None:
    case, i = subject
    _, servers = exports[subject]
    world = worlds.server
    person = worlds.edge_cases[case]["person_ids"][i]
    with psycopg.connect(world.pg_url) as conn:
        rows = conn.execute(
            "select account_id, payment_customer_id from accounts where person_id = %s",
            (person,),
        ).fetchall()
    accounts = sorted(r[0] for r in rows)
    customers = sorted({r[1] for r in rows if r[1]})
    want = {
        **expected_crm(world.pg_url, person),
        "event_lake.events": expected_events(world, accounts),
        "object_store.files": len(s3_objects(world, accounts)),
        **expected_payments(world.root / "payments.sqlite", customers),
    }
    # the subject has data in all four systems (else this test proves less than it says)
    assert want["crm.people"] == 1 and want["crm.accounts"] >= 1
    assert want["event_lake.events"] and want["object_store.files"]
    assert want["payments.customers"] == len(customers) >= 1 and want["payments.charges"]

    sources = servers.manifest["sources"]
    got = {f"{s['system']}.{s['entity']}": s["records"] for s in sources}
    assert got == want
    assert {f"{s['system']}.{s['entity']}": s["status"] for s in sources} == {
        ref: "found" if n else "none" for ref, n in want.items()
    }
    per_dataset: dict[str, int] = {}
    for s in sources:
        per_dataset[s["dataset"]] = per_dataset.get(s["dataset"], 0) + s["records"]
    assert {d["name"]: d["records"] for d in servers.manifest["datasets"]} == per_dataset
    assert servers.manifest["customer_files"]["count"] == want["object_store.files"]
    if case == "heavy_user":  # the generator's own answer key agrees
        info = worlds.edge_cases[case]
        assert want["event_lake.events"] == info["event_count"]
        assert want["object_store.files"] == info["object_count"]


@pytest.mark.postgres
def test_the_subjects_between_them_find_every_source(exports: dict) -> None:
    dm = load_datamap()
    every = {e.ref for s in dm.systems for e in s.entities if e.dataset}
    found = {
        f"{s['system']}.{s['entity']}"
        for _, servers in exports.values()
        for s in servers.manifest["sources"]
        if s["status"] == "found"
    }
    assert found == every


@pytest.mark.postgres
@pytest.mark.parametrize(
    "variable, failed",
    [("EVENT_LAKE_PATH", "event_lake.events"), ("OBJECT_STORE_PATH", "object_store.files")],
)
def test_an_unreachable_s3_endpoint_stops_the_export(
    worlds: Worlds, tmp_path: Path, variable: str, failed: str
) -> None:
    world = worlds.server
    dead = dead_endpoint()
    bucket, prefix = (
        (world.lake_bucket, world.lake_prefix)
        if variable == "EVENT_LAKE_PATH"
        else (world.files_bucket, "")
    )
    env = {**world.env, variable: s3_root(bucket, prefix, dead)}
    info = worlds.edge_cases["heavy_user"]
    with pytest.raises(ExportFailed) as raised:
        _export(env, info["emails"][0], tmp_path)
    err = raised.value
    system = failed.split(".")[0]
    assert err.failed_sources == [failed]
    assert f"source {system!r}" in str(err) and "nothing delivered" in str(err)
    # only the S3 source failed: the CRM, read first (it yields the account ids), was fine
    others = [o for o in err.outcomes if o.entity != failed]
    assert others and all(o.status in ("found", "none") for o in others)
    assert {o.entity for o in others if o.status == "found"} >= {"crm.people", "crm.accounts"}
    text = str(err)
    for value in (info["emails"][0], *info["account_ids"], *info["payment_customer_ids"]):
        assert value not in text  # errors name sources, never personal data
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert not (tmp_path / "staging").exists() or not any((tmp_path / "staging").iterdir())


# ----------------------------------------------- s3:// roots with endpoint and region


def test_an_s3_root_carries_bucket_prefix_endpoint_and_region(
    moto_endpoint: str, s3_bucket: str
) -> None:
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name=REGION)
    for key in ("pre/fix/acc_1/a.txt", "pre/fix/acc_1/sub/b.txt", "acc_1/outside.txt"):
        s3.put_object(Bucket=s3_bucket, Key=key, Body=key.encode())
    root = s3_root(s3_bucket, "pre/fix/", moto_endpoint)
    files = build_connector("files", "objects", {"root": root})
    assert isinstance(files, S3ObjectStore)
    assert (files.bucket, files.key_prefix) == (s3_bucket, "pre/fix/")
    assert files.client.meta.endpoint_url == moto_endpoint
    assert files.client.meta.region_name == REGION
    batches = files.fetch({"prefix": "{value}/"}, Lookup("owner", ["acc_1"]), ["relative_key"])
    assert [k for b in batches for k in b.column(0).to_pylist()] == ["a.txt", "sub/b.txt"]
    with files.open({}, "pre/fix/acc_1/a.txt") as stream:
        assert stream.read() == b"pre/fix/acc_1/a.txt"
    files.close()

    lake = build_connector("lake", "parquet", {"root": root, "region": REGION})
    assert isinstance(lake, ParquetConnector) and lake.remote
    assert lake.base == f"{s3_bucket}/pre/fix"
    assert lake.fs.equals(s3_filesystem(moto_endpoint, REGION))
    assert not lake.fs.equals(s3_filesystem(dead_endpoint(), REGION))


@pytest.mark.parametrize(
    "kind, root, extra, message",
    [
        ("objects", "s3://b?endpoint=http://127.0.0.1:9", {}, "unknown parameter 'endpoint'"),
        ("parquet", "s3://b/p?region=eu-west-1", {"region": REGION}, "'region' given both"),
        ("objects", "s3:///p?region=eu-west-1", {}, "names no bucket"),
    ],
)
def test_s3_root_mistakes_are_configuration_errors(
    kind: str, root: str, extra: dict[str, str], message: str
) -> None:
    with pytest.raises(SourceError, match=message) as info:
        build_connector("sys", kind, {"root": root, **extra})
    assert info.value.system == "sys"


def test_other_roots_are_taken_as_they_are(tmp_path: Path) -> None:
    odd = tmp_path / "a?endpoint_url=x"  # a local folder may hold a '?'
    odd.mkdir()
    files = build_connector("files", "objects", {"root": str(odd)})
    assert isinstance(files, LocalObjectStore) and files.root == os.path.realpath(odd)
    lake = build_connector("lake", "parquet", {"root": str(odd)})
    assert isinstance(lake, ParquetConnector) and not lake.remote and lake.base == str(odd)
    same = build_connector(  # stated both ways alike: no conflict
        "lake", "parquet", {"root": "s3://b/p?region=eu-west-1", "region": "eu-west-1"}
    )
    assert isinstance(same, ParquetConnector) and same.base == "b/p"
    assert same.fs.region == "eu-west-1"  # type: ignore[attr-defined]
