"""The object store connector: a local folder, and S3 through moto's server over HTTP."""

from __future__ import annotations

import hashlib
import os
import unicodedata
from pathlib import Path

import boto3
import pyarrow as pa
import pytest

from engine.connectors.base import Lookup, SourceError
from engine.connectors.objects import OBJECT_SCHEMA, LocalObjectStore, build_object_store
from engine.connectors.objects_s3 import S3ObjectStore

ENTITY = {"prefix": "{value}/"}
NFC = unicodedata.normalize("NFC", "café.txt")
NFD = unicodedata.normalize("NFD", "café.txt")
BIG = 6 * 1024 * 1024 + 123
OWNER_KEYS = [
    "report.pdf",
    "photos/summer 2024.jpg",
    NFC,
    NFD,
    "..name",
    "backups/old.tar.gz",
    "a/b/c/deep.csv",
    "big.bin",
]
REFUSED = ["../x", "acc/1", "..", ".hidden", "a\\b", "acc_1\n", ""]
REFUSAL = (
    "source 'files': refused a lookup value that is not a plain owner key "
    "(path separator, '..', leading '.' or control character)"
)


def _big() -> bytes:
    return hashlib.sha256(b"seed").digest() * (BIG // 32) + b"x" * (BIG % 32)


def _table(store, owners: list[str], columns: list[str] | None = None) -> pa.Table:  # type: ignore[no-untyped-def]
    cols = columns or OBJECT_SCHEMA.names
    batches = list(store.fetch(ENTITY, Lookup("owner", owners), cols))
    return pa.Table.from_batches(batches) if batches else pa.table({})


def _read_all(stream) -> bytes:  # type: ignore[no-untyped-def]
    out = bytearray()
    while chunk := stream.read(1 << 20):
        out += chunk
    return bytes(out)


# ---------------------------------------------------------------------------- local


@pytest.fixture
def local_root(tmp_path: Path) -> Path:
    root = tmp_path / "objects"
    for rel in OWNER_KEYS:
        path = root / "acc_1" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_big() if rel == "big.bin" else f"content of {rel}".encode())
    (root / "acc_10").mkdir()
    (root / "acc_10" / "other.txt").write_text("someone else")
    outside = tmp_path / "secret.txt"
    outside.write_text("outside the store")
    (tmp_path / "outside_dir").mkdir()
    (tmp_path / "outside_dir" / "leak.txt").write_text("outside")
    os.symlink(outside, root / "acc_1" / "link-out.txt")
    os.symlink(tmp_path / "outside_dir", root / "acc_1" / "dir-out")
    os.symlink(root / "acc_1" / "report.pdf", root / "acc_1" / "link-in.pdf")
    return root


def test_local_listing(local_root: Path) -> None:
    store = LocalObjectStore("files", str(local_root))
    table = _table(store, ["acc_1", "acc_2"])
    assert table.schema == OBJECT_SCHEMA
    rel = table["relative_key"].to_pylist()
    assert sorted(rel) == sorted([*OWNER_KEYS, "link-in.pdf"])  # nothing pointing out
    assert table["key"].to_pylist() == sorted(table["key"].to_pylist())
    assert all(k == f"acc_1/{r}" for k, r in zip(table["key"].to_pylist(), rel, strict=True))
    assert set(table["owner"].to_pylist()) == {"acc_1"}
    row = {r["relative_key"]: r for r in table.to_pylist()}
    assert row["big.bin"]["size"] == BIG
    assert row["report.pdf"]["content_type"] == "application/pdf"
    assert row["backups/old.tar.gz"]["content_type"] == "application/gzip"
    assert row["photos/summer 2024.jpg"]["content_type"] == "image/jpeg"
    assert row["report.pdf"]["last_modified"].tzinfo is not None
    picked = _table(store, ["acc_1"], ["relative_key", "size"])
    assert picked.column_names == ["relative_key", "size"]


def test_local_refuses_owner_keys_that_leave_the_prefix(local_root: Path) -> None:
    store = LocalObjectStore("files", str(local_root))
    for bad in REFUSED:
        with pytest.raises(SourceError, match="refused a lookup value") as info:
            store.fetch(ENTITY, Lookup("owner", ["acc_1", bad]), ["key"])
        assert str(info.value) == REFUSAL  # the same words whatever the value


def test_local_open_streams_and_refuses_escapes(local_root: Path) -> None:
    store = LocalObjectStore("files", str(local_root))
    with store.open(ENTITY, "acc_1/big.bin") as f:
        assert hashlib.sha256(_read_all(f)).digest() == hashlib.sha256(_big()).digest()
    with store.open(ENTITY, f"acc_1/{NFD}") as f:
        assert f.read() == f"content of {NFD}".encode()
    with store.open(ENTITY, "acc_1/link-in.pdf") as f:
        assert f.read() == b"content of report.pdf"
    for key in [
        "acc_1/../../secret.txt",
        "../secret.txt",
        "/etc/passwd",
        str(local_root.parent / "secret.txt"),
        "acc_1/link-out.txt",
        "acc_1/dir-out/leak.txt",
        ".",
        "acc_1",
    ]:
        with pytest.raises(SourceError, match="refused") as info:
            store.open(ENTITY, key)
        assert "secret" not in str(info.value) and "acc_1" not in str(info.value)
    with pytest.raises(SourceError, match="object not found") as info:
        store.open(ENTITY, "acc_1/nope.txt")
    assert "nope" not in str(info.value)


def test_local_missing_owner_and_root(local_root: Path, tmp_path: Path) -> None:
    assert _table(LocalObjectStore("files", str(local_root)), ["acc_404"]).num_rows == 0
    with pytest.raises(SourceError, match="root folder does not exist"):
        _table(LocalObjectStore("files", str(tmp_path / "nowhere")), ["acc_1"])
    with pytest.raises(SourceError, match="looked up by 'owner'"):
        LocalObjectStore("files", str(local_root)).fetch(ENTITY, Lookup("key", ["x"]), ["key"])


def test_local_owner_folder_symlinked_out_is_refused(local_root: Path, tmp_path: Path) -> None:
    os.symlink(tmp_path / "outside_dir", local_root / "acc_evil")
    with pytest.raises(SourceError, match="outside the store root"):
        _table(LocalObjectStore("files", str(local_root)), ["acc_evil"])


# ---------------------------------------------------------------------------- S3 (moto)

S3_KEYS = [*OWNER_KEYS, "../x", "/abs", "./dot"]


@pytest.fixture
def s3_store(moto_endpoint: str, s3_bucket: str) -> S3ObjectStore:
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    for rel in S3_KEYS:
        body = _big() if rel == "big.bin" else f"content of {rel}".encode()
        extra = {"ContentType": "application/pdf"} if rel == "report.pdf" else {}
        s3.put_object(Bucket=s3_bucket, Key=f"tenant/acc_1/{rel}", Body=body, **extra)
    s3.put_object(Bucket=s3_bucket, Key="tenant/acc_10/other.txt", Body=b"someone else")
    s3.put_object(Bucket=s3_bucket, Key="elsewhere/acc_1/x.txt", Body=b"not in the prefix")
    store = build_object_store(
        "files",
        {
            "bucket": s3_bucket,
            "endpoint_url": moto_endpoint,
            "region": "us-east-1",
            "key_prefix": "tenant/",
        },
    )
    assert isinstance(store, S3ObjectStore)
    store.list_page_size = 3  # several pages per owner
    return store


def test_s3_listing(s3_store: S3ObjectStore) -> None:
    table = _table(s3_store, ["acc_1", "acc_2"])
    assert table.schema == OBJECT_SCHEMA
    rel = table["relative_key"].to_pylist()
    assert sorted(rel) == sorted(S3_KEYS)
    assert table["key"].to_pylist() == sorted(table["key"].to_pylist())
    row = {r["relative_key"]: r for r in table.to_pylist()}
    assert row["../x"]["key"] == "tenant/acc_1/../x" and row["/abs"]["key"] == "tenant/acc_1//abs"
    assert row["big.bin"]["size"] == BIG
    assert row["report.pdf"]["content_type"] == "application/pdf"  # S3's own
    assert row["photos/summer 2024.jpg"]["content_type"] == "image/jpeg"  # guessed
    assert row[NFC]["etag"] and '"' not in row[NFC]["etag"]
    assert row[NFC]["key"] != row[NFD]["key"]


def test_s3_open_streams_every_kind_of_key(s3_store: S3ObjectStore) -> None:
    table = _table(s3_store, ["acc_1"], ["key", "relative_key"])
    for key, rel in zip(table["key"].to_pylist(), table["relative_key"].to_pylist(), strict=True):
        with s3_store.open(ENTITY, key) as f:
            assert f.readable()
            data = _read_all(f)
        want = _big() if rel == "big.bin" else f"content of {rel}".encode()
        assert data == want, rel
    with pytest.raises(SourceError, match="object not found") as info:
        s3_store.open(ENTITY, "tenant/acc_1/nope.txt")
    assert "acc_1" not in str(info.value)
    with pytest.raises(SourceError, match="outside the store's key prefix"):
        s3_store.open(ENTITY, "elsewhere/acc_1/x.txt")


def test_s3_refuses_owner_keys(s3_store: S3ObjectStore) -> None:
    for bad in REFUSED:
        with pytest.raises(SourceError, match="refused a lookup value"):
            s3_store.fetch(ENTITY, Lookup("owner", [bad]), ["key"])


def test_s3_errors(moto_endpoint: str) -> None:
    missing = S3ObjectStore(
        "files", "no-such-bucket", endpoint_url=moto_endpoint, region="us-east-1", max_attempts=1
    )
    with pytest.raises(SourceError, match="NoSuchBucket") as info:
        _table(missing, ["acc_1"])
    assert not info.value.transient and "acc_1" not in str(info.value)
    down = S3ObjectStore(
        "files", "b", endpoint_url="http://127.0.0.1:1", region="us-east-1", max_attempts=1
    )
    with pytest.raises(SourceError) as info:
        _table(down, ["acc_1"])
    assert info.value.transient and info.value.system == "files"
    assert "acc_1" not in str(info.value) and "127.0.0.1" not in str(info.value)
