"""S3Delivery against a real moto S3 server over HTTP (no mocks of boto3).

moto does not check presigned URLs at all (neither the signature nor ``X-Amz-Expires``:
an expired or tampered URL is still served) and does not verify the checksums a client
sends; see the tests concerned. It does compute the composite SHA-256 of a multipart
object from the bytes it received, and refuses parts under 5 MiB (EntityTooSmall).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import boto3
import pytest
from botocore.exceptions import ClientError

from exporters.delivery import file_sha256
from exporters.s3_delivery import DEFAULT_PART_SIZE, MIN_PART_SIZE, S3Delivery, S3DeliveryError
from tests.backend_fixtures import AWS_ENV
from tests.clock import Clock

REPO = Path(__file__).resolve().parents[1]
CHILD = REPO / "tests" / "s3_upload_child.py"
REQUEST_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"
NAME = f"{REQUEST_ID}.zip"
MARKER = b"PERSONAL-DATA-jane.doe@example.org"
NOW = datetime(2030, 1, 31, 23, 30, tzinfo=UTC)  # + 30 days = 2030-03-02


def make_archive(path: Path, size: int) -> Path:
    """``size`` bytes: the marker, then random data written 1 MiB at a time."""
    with open(path, "wb") as f:
        f.write(MARKER[:size])
        left = size - min(size, len(MARKER))
        while left:
            n = min(left, 1 << 20)
            f.write(os.urandom(n))
            left -= n
    return path


def composite_sha256(path: Path, part_size: int) -> str:
    """S3's composite checksum: SHA-256 of the concatenated SHA-256 digests of the parts."""
    digests = b""
    with open(path, "rb") as f:
        while part := f.read(part_size):
            digests += hashlib.sha256(part).digest()
    return base64.b64encode(hashlib.sha256(digests).digest()).decode()


@pytest.fixture
def s3(moto_endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")


@pytest.fixture
def delivery(moto_endpoint: str, s3_bucket: str) -> S3Delivery:
    return S3Delivery(
        s3_bucket,
        "exports",
        endpoint_url=moto_endpoint,
        region="us-east-1",
        part_size=MIN_PART_SIZE,
        clock=Clock(NOW),
    )


def body(s3: Any, bucket: str, key: str) -> bytes:
    return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def assert_absent(s3: Any, bucket: str, key: str) -> None:
    with pytest.raises(ClientError) as err:
        s3.head_object(Bucket=bucket, Key=key)
    assert err.value.response["Error"]["Code"] == "404"
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def uploads(s3: Any, bucket: str) -> list[dict[str, Any]]:
    return list(s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []))


# --- uploads: bytes, encryption, tags, checksums ------------------------------------------


@pytest.mark.parametrize("from_memory", [False, True], ids=["file", "memory"])
@pytest.mark.parametrize("size", [100_000, 3 * MIN_PART_SIZE + 123], ids=["small", "4-parts"])
def test_delivers_whole_encrypted_tagged(
    delivery: S3Delivery, s3: Any, s3_bucket: str, tmp_path: Path, size: int, from_memory: bool
) -> None:
    """An archive in a file or built in memory (exporters/spool.py) uploads alike."""
    archive = make_archive(tmp_path / "a.zip", size)
    done = delivery.deliver(archive.read_bytes() if from_memory else archive, NAME)
    key = f"exports/{NAME}"
    assert done.location == f"s3://{s3_bucket}/{key}"
    assert (done.bytes, done.sha256) == (size, hashlib.sha256(archive.read_bytes()).hexdigest())
    assert body(s3, s3_bucket, key) == archive.read_bytes()
    head = s3.head_object(Bucket=s3_bucket, Key=key, ChecksumMode="ENABLED")
    assert head["ServerSideEncryption"] == "AES256"
    tags = s3.get_object_tagging(Bucket=s3_bucket, Key=key)["TagSet"]
    assert {t["Key"]: t["Value"] for t in tags} == {
        "request-id": REQUEST_ID,
        "expires": "2030-03-02",
    }
    if size < MIN_PART_SIZE:  # one PutObject, sent with the file's SHA-256 (moto keeps it)
        assert head["ETag"].count("-") == 0
        assert head["ChecksumSHA256"] == base64.b64encode(bytes.fromhex(done.sha256)).decode()
    else:  # 4 parts; moto computed the composite checksum from the bytes it received
        assert head["ETag"].strip('"').endswith("-4")
        assert head["ChecksumSHA256"] == composite_sha256(archive, MIN_PART_SIZE)
    assert uploads(s3, s3_bucket) == []


@pytest.mark.parametrize("size", [100_000, 2 * MIN_PART_SIZE + 1], ids=["small", "3-parts"])
def test_sse_kms_with_key_id(
    moto_endpoint: str, s3: Any, s3_bucket: str, tmp_path: Path, size: int
) -> None:
    kms = boto3.client("kms", endpoint_url=moto_endpoint, region_name="us-east-1")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    delivery = S3Delivery.from_url(
        f"s3://{s3_bucket}/out?endpoint_url={moto_endpoint}&region=us-east-1"
        f"&sse=aws:kms&kms_key_id={key_id}&part_size={MIN_PART_SIZE}&retention_days=7",
        clock=Clock(NOW),
    )
    archive = make_archive(tmp_path / "a.zip", size)
    done = delivery.deliver(archive, NAME)
    head = s3.head_object(Bucket=s3_bucket, Key=f"out/{NAME}")
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", key_id)
    got = delivery.head(done.location)
    assert (got.bytes, got.sse, got.kms_key_id) == (size, "aws:kms", key_id)
    assert got.tags == {"request-id": REQUEST_ID, "expires": "2030-02-07"}


def test_part_files_and_explicit_tags(delivery: S3Delivery, s3_bucket: str, tmp_path: Path) -> None:
    archive = make_archive(tmp_path / "a.zip", 10)
    part = delivery.head(delivery.deliver(archive, f"{REQUEST_ID}-002.zip").location)
    assert part.tags == {"request-id": REQUEST_ID, "expires": "2030-03-02"}
    until = datetime(2031, 6, 1, 12, tzinfo=UTC)
    other = delivery.deliver(archive, "x.zip", request_id="req_42", expires=until)
    assert delivery.head(other.location).tags == {"request-id": "req_42", "expires": "2031-06-01"}
    delivery.delete(other.location)
    with pytest.raises(S3DeliveryError, match=r"x\.zip.*404"):
        delivery.head(other.location)


def test_refuses_bad_settings_and_personal_tag_values(delivery: S3Delivery, tmp_path: Path) -> None:
    archive = make_archive(tmp_path / "a.zip", 10)
    with pytest.raises(ValueError, match="opaque"):
        delivery.deliver(archive, "jane.doe@example.org.zip")
    with pytest.raises(ValueError, match="opaque"):
        delivery.deliver(archive, NAME, request_id="Jane Doe")
    with pytest.raises(ValueError, match="plain file name"):
        delivery.deliver(archive, f"../{NAME}")
    with pytest.raises(ValueError, match="part_size"):
        S3Delivery("b", part_size=MIN_PART_SIZE - 1)
    with pytest.raises(ValueError, match="sse"):
        S3Delivery("b", sse="aws:kms:dsse")
    with pytest.raises(ValueError, match="unknown parameter 'sse_c'"):
        S3Delivery.from_url("s3://b/p?sse_c=1")


# --- presigned URLs -------------------------------------------------------------------------


def sigv4_query_valid(url: str, secret: str, now: datetime) -> bool:
    """Check a SigV4 presigned GET URL as S3 does: signature, then the expiry window.

    An independent reference (AWS SigV4 query-string signing, written from the spec),
    because moto accepts any presigned URL.
    """
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    signature = query.pop("X-Amz-Signature")
    amz_date = query["X-Amz-Date"]
    scope = query["X-Amz-Credential"].split("/", 1)[1]
    canonical_query = "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query.items())
    )
    canonical = "\n".join(
        ["GET", parts.path, canonical_query, f"host:{parts.netloc}\n", "host", "UNSIGNED-PAYLOAD"]
    )
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = f"AWS4{secret}".encode()
    for piece in scope.split("/"):
        key = hmac.new(key, piece.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    alive = signed_at <= now <= signed_at + timedelta(seconds=int(query["X-Amz-Expires"]))
    return hmac.compare_digest(signature, expected) and alive


def test_presigned_url_fetched_without_boto3(delivery: S3Delivery, tmp_path: Path) -> None:
    archive = make_archive(tmp_path / "a.zip", 200_000)
    url = delivery.presigned_url(delivery.deliver(archive, NAME).location, ttl_s=600)
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url and "X-Amz-Expires=600" in url
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        assert response.read() == archive.read_bytes()
    default = delivery.presigned_url(f"s3://{delivery.bucket}/exports/{NAME}")
    assert "X-Amz-Expires=604800" in default


def test_presigned_url_expiry(delivery: S3Delivery, tmp_path: Path) -> None:
    """The URL expires after ttl_s by SigV4's rules. moto ignores X-Amz-Expires (and the
    signature), so the window is checked with a reference SigV4 verifier, not by fetching."""
    archive = make_archive(tmp_path / "a.zip", 1000)
    location = delivery.deliver(archive, NAME).location
    for ttl in (0, 7 * 24 * 3600 + 1):
        with pytest.raises(ValueError, match="7 days"):
            delivery.presigned_url(location, ttl_s=ttl)
    url = delivery.presigned_url(location, ttl_s=1)
    query = dict(parse_qsl(urlsplit(url).query))
    assert query["X-Amz-Expires"] == "1"
    signed_at = datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - signed_at) < timedelta(seconds=5)
    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    assert sigv4_query_valid(url, secret, signed_at)
    assert not sigv4_query_valid(url, secret, signed_at + timedelta(seconds=2))
    assert not sigv4_query_valid(
        url.replace("X-Amz-Expires=1", "X-Amz-Expires=9"), secret, signed_at
    )


# --- all or nothing -------------------------------------------------------------------------


class FailOnPart:
    """The real client, except that UploadPart number ``n`` raises ``error``."""

    def __init__(self, client: Any, n: int, error: Exception) -> None:
        self._client, self._n, self._error, self.calls = client, n, error, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def upload_part(self, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == self._n:
            raise self._error
        return self._client.upload_part(**kwargs)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ClientError({"Error": {"Code": "InternalError"}}, "UploadPart"), "InternalError"),
        (ConnectionResetError("peer reset"), "ConnectionResetError"),
    ],
)
def test_failure_mid_upload_aborts_then_retry_succeeds(
    delivery: S3Delivery, s3: Any, s3_bucket: str, tmp_path: Path, error: Exception, code: str
) -> None:
    archive = make_archive(tmp_path / "a.zip", 4 * MIN_PART_SIZE)
    real = delivery.client
    delivery.client = FailOnPart(real, 3, error)
    with pytest.raises(S3DeliveryError) as err:
        delivery.deliver(archive, NAME)
    message = str(err.value)
    assert f"s3://{s3_bucket}/exports/{NAME}" in message and code in message
    assert delivery.client.calls == 3
    assert_absent(s3, s3_bucket, f"exports/{NAME}")
    assert uploads(s3, s3_bucket) == []  # aborted
    delivery.client = real
    done = delivery.deliver(archive, NAME)
    assert body(s3, s3_bucket, f"exports/{NAME}") == archive.read_bytes()
    assert done.sha256 == file_sha256(archive)


def child_env(endpoint: str) -> dict[str, str]:
    return {**os.environ, **AWS_ENV, "PYTHONPATH": str(REPO), "MOTO_ENDPOINT": endpoint}


def test_killed_mid_upload_leaves_nothing_and_retry_completes(
    moto_endpoint: str, delivery: S3Delivery, s3: Any, s3_bucket: str, tmp_path: Path
) -> None:
    archive = make_archive(tmp_path / "a.zip", 3 * MIN_PART_SIZE + 7)
    argv = [sys.executable, str(CHILD), moto_endpoint, s3_bucket, str(archive), NAME]
    child = subprocess.Popen(
        [*argv, str(MIN_PART_SIZE), "--hang-after-parts", "2"],
        env=child_env(moto_endpoint),
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:  # until the child's upload has parts on the server
            found = uploads(s3, s3_bucket)
            if found:
                parts = s3.list_parts(Bucket=s3_bucket, Key=NAME, UploadId=found[0]["UploadId"])
                if len(parts.get("Parts", [])) >= 2:
                    break
            assert child.poll() is None, "the child ended before it was killed"
            assert time.monotonic() < deadline, "the child uploaded no part in 60 s"
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    stale = [u["UploadId"] for u in uploads(s3, s3_bucket)]
    assert len(stale) == 1  # what a killed process leaves: an unfinished upload, ...
    assert_absent(s3, s3_bucket, NAME)  # ... but no object
    retry = S3Delivery(s3_bucket, endpoint_url=moto_endpoint, part_size=MIN_PART_SIZE)
    done = retry.deliver(archive, NAME)
    assert uploads(s3, s3_bucket) == []  # the stale upload was aborted
    assert body(s3, s3_bucket, NAME) == archive.read_bytes()
    assert (done.bytes, done.sha256) == (archive.stat().st_size, file_sha256(archive))


# --- errors ---------------------------------------------------------------------------------


def test_errors_name_bucket_and_problem_never_data(moto_endpoint: str, tmp_path: Path) -> None:
    archive = make_archive(tmp_path / "a.zip", 2 * MIN_PART_SIZE)
    missing = S3Delivery("no-such-bucket-4711", endpoint_url=moto_endpoint, max_attempts=1)
    with pytest.raises(S3DeliveryError) as err:
        missing.deliver(archive, NAME)
    assert f"s3://no-such-bucket-4711/{NAME}" in str(err.value)
    assert "NoSuchBucket" in str(err.value)
    unreachable = S3Delivery("bucket-x", endpoint_url="http://127.0.0.1:9", max_attempts=1)
    with pytest.raises(S3DeliveryError) as err2:
        unreachable.deliver(archive, NAME)
    assert f"s3://bucket-x/{NAME}" in str(err2.value)
    assert "EndpointConnectionError" in str(err2.value)
    for e in (err.value, err2.value):
        chain = f"{e!r} {e.__cause__!r} {e.__cause__}"
        assert MARKER.decode() not in chain and "jane" not in chain


# --- memory: a 1 GiB archive from a child process, into a moto server of its own ---------------


@pytest.fixture
def own_moto_server() -> Iterator[str]:
    """A moto server in a separate process (so the uploaded GiB lands there)."""
    code = (
        "import sys, time\n"
        "from moto.server import ThreadedMotoServer\n"
        "s = ThreadedMotoServer(ip_address='127.0.0.1', port=0, verbose=False)\n"
        "s.start()\n"
        "print('%s:%s' % s.get_host_and_port(), flush=True)\n"
        "time.sleep(3600)\n"
    )
    server = subprocess.Popen(
        [sys.executable, "-c", code], env=child_env(""), stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        yield f"http://{server.stdout.readline().strip()}"
    finally:
        server.kill()
        server.wait(timeout=30)


GIB = 1 << 30


def test_1gib_upload_in_bounded_memory(own_moto_server: str, tmp_path: Path) -> None:
    part_size = DEFAULT_PART_SIZE  # what production uses (16 MiB)
    s3 = boto3.client(
        "s3",
        endpoint_url=own_moto_server,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    s3.create_bucket(Bucket="big")
    block = os.urandom(1 << 20)
    archive = tmp_path / "big.zip"
    with open(archive, "wb") as f:  # 1 GiB; each MiB differs (its index up front)
        for i in range(GIB >> 20):
            f.write(i.to_bytes(8, "big") + block[8:])
    child = subprocess.run(
        [sys.executable, str(CHILD), own_moto_server, "big", str(archive), NAME, str(part_size)],
        env=child_env(own_moto_server),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    result = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"1 GiB upload: {result['seconds']} s, child peak RSS {result['vm_hwm_kib'] // 1024} MiB")
    assert result["vm_hwm_kib"] < 300 * 1024
    assert (result["bytes"], result["sha256"]) == (GIB, file_sha256(archive))
    head = s3.head_object(Bucket="big", Key=NAME, ChecksumMode="ENABLED")
    assert head["ContentLength"] == GIB
    assert head["ChecksumSHA256"] == composite_sha256(archive, part_size)
    assert head["ETag"].strip('"').endswith(f"-{GIB // part_size}")
