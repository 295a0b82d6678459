"""Retention against real files and a real S3 server (moto over HTTP): exactly what
expired is deleted and recorded, nothing else; leftover staging areas of closed requests
go; a copy transferred to another organisation is never touched."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from exporters.delivery import LocalFolderDelivery
from exporters.s3_delivery import S3Delivery
from request_store import DeliveredPart, Deliveries, Identity, RequestSpec, RequestStore
from request_store.retention import apply_retention
from tests.clock import Clock

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[RequestStore]:
    with RequestStore.open(tmp_path / "requests.sqlite", clock=clock) as s:
        yield s


def completed(store: RequestStore, delivery, tmp: Path, days: int | None, n: int = 1) -> str:
    """A request completed with ``n`` delivered parts kept ``days`` days (None: theirs)."""
    req, _ = store.submit(
        RequestSpec(request_type="access", identities=[Identity("email", "a@b.example")])
    )
    rid = req.request_id
    store.claim(rid)
    parts = []
    for i in range(1, n + 1):
        src = tmp / f"{rid}-{i}.src"
        src.write_bytes(f"part {i} of {rid}".encode())
        done = delivery.deliver(src, f"{rid}-{i:03d}.zip")
        parts.append(DeliveredPart(f"{rid}-{i:03d}.zip", done.location, done.bytes, done.sha256))
    expires = store.now() + timedelta(days=days) if days is not None else None
    Deliveries(store).record(rid, parts, actor="dagster", expires_at=expires)
    store.complete(rid, location=parts[0].location, sha256=parts[0].sha256, count=1)
    return rid


def test_only_what_expired_is_deleted_and_recorded(
    store: RequestStore, clock: Clock, tmp_path: Path
) -> None:
    folder = LocalFolderDelivery(tmp_path / "exports")
    old = completed(store, folder, tmp_path, days=30, n=2)
    young = completed(store, folder, tmp_path, days=60)
    theirs = completed(store, folder, tmp_path, days=None)  # a direct transfer's record
    clock.advance(days=31)
    report = apply_retention(store, folder, tmp_path / "staging")
    assert sorted((r.request_id, r.part) for r in report.deleted) == [(old, 1), (old, 2)]
    assert report.deleted_bytes == sum(r.bytes for r in report.deleted) > 0
    assert not list((tmp_path / "exports").glob(f"{old}*"))
    assert {r.request_id for r in report.held} == {young, theirs}
    assert (tmp_path / "exports" / f"{young}-001.zip").is_file()
    deleted = [e.detail for e in store.events(old) if e.event == "archive_deleted"]
    digest = hashlib.sha256(f"part 1 of {old}".encode()).hexdigest()
    assert (
        deleted[0]
        == f"part 1/2 {old}-001.zip: {len(f'part 1 of {old}')} bytes, sha256 {digest} (expired)"
    )
    assert apply_retention(store, folder).deleted == []  # nothing twice
    clock.advance(days=365)
    later = apply_retention(store, folder)
    assert [r.request_id for r in later.deleted] == [young]
    assert [r.request_id for r in later.held] == [theirs]  # theirs to keep, never ours


def test_a_file_outside_the_delivery_folder_is_reported_not_deleted(
    store: RequestStore, clock: Clock, tmp_path: Path
) -> None:
    elsewhere = LocalFolderDelivery(tmp_path / "elsewhere")
    rid = completed(store, elsewhere, tmp_path, days=1)
    clock.advance(days=2)
    report = apply_retention(store, LocalFolderDelivery(tmp_path / "exports"))
    assert report.deleted == [] and [r.request_id for r, _ in report.not_deleted] == [rid]
    assert "not in the configured delivery folder" in report.not_deleted[0][1]
    assert (tmp_path / "elsewhere" / f"{rid}-001.zip").is_file()
    assert [r.request_id for r in report.held] == [rid]  # still held: retried next run


def test_staging_areas_of_closed_or_unknown_requests_are_removed(
    store: RequestStore, tmp_path: Path
) -> None:
    staging = tmp_path / "staging"
    folder = LocalFolderDelivery(tmp_path / "exports")
    closed = completed(store, folder, tmp_path, days=30)
    running, _ = store.submit(
        RequestSpec(request_type="access", identities=[Identity("email", "c@d.example")])
    )
    store.claim(running.request_id)
    for name in (closed, running.request_id, "not-a-request"):
        (staging / name / "state").mkdir(parents=True)
    report = apply_retention(store, folder, staging)
    assert sorted(report.staging_removed) == sorted([closed, "not-a-request"])
    assert [p.name for p in staging.iterdir()] == [running.request_id]


def test_expired_objects_are_deleted_from_s3(
    store: RequestStore, clock: Clock, tmp_path: Path, moto_endpoint: str, s3_bucket: str
) -> None:
    s3 = S3Delivery.from_url(f"s3://{s3_bucket}/exports?endpoint_url={moto_endpoint}")
    old = completed(store, s3, tmp_path, days=30)
    young = completed(store, s3, tmp_path, days=90)
    clock.advance(days=31)
    report = apply_retention(store, s3)
    assert [r.request_id for r in report.deleted] == [old]
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    with pytest.raises(ClientError):
        client.head_object(Bucket=s3_bucket, Key=f"exports/{old}-001.zip")
    assert client.head_object(Bucket=s3_bucket, Key=f"exports/{young}-001.zip")
    other = S3Delivery.from_url(f"s3://{s3_bucket}-other/x?endpoint_url={moto_endpoint}")
    clock.advance(days=90)
    refused = apply_retention(store, other)
    assert [r.request_id for r, _ in refused.not_deleted] == [young]
    assert "not in the configured S3 bucket" in refused.not_deleted[0][1]
