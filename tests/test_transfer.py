"""Direct transfer (Art. 20(2)): a presigned PUT to a real local HTTP server, and an S3
recipient (configured by reference) to the moto S3 server. No mocks.

``PutServer`` plays the recipient's presigned URL endpoint: a threaded ``http.server`` on
127.0.0.1 that accepts ``PUT /inbox/<name>?X-Amz-Signature=<token>``, streams the body
to a file (hashing it as it goes), records the headers, answers 403 to a wrong token and
503 to the first ``fail_first`` PUTs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from exporters.delivery import file_sha256
from exporters.transfer import (
    PresignedPutDelivery,
    RecipientConfig,
    RecipientsError,
    TransferError,
    TransferRecord,
    audit_detail,
    load_recipients,
    recipient_delivery,
)
from tests.backend_fixtures import dead_endpoint

REPO = Path(__file__).resolve().parents[1]
TOKEN = "tok-7f3a9c2e51b84d06"  # the presigned URL's secret part
REQUEST_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"
NAME = f"{REQUEST_ID}.zip"
MiB = 1024 * 1024


@dataclass
class Put:
    path: str
    headers: dict[str, str]
    bytes: int
    sha256: str
    status: int


@dataclass
class PutServer:
    folder: Path
    fail_first: int = 0
    puts: list[Put] = field(default_factory=list)
    server: Any = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def url(self, token: str = TOKEN, name: str = NAME) -> str:
        return f"{self.base}/inbox/{name}?X-Amz-Expires=600&X-Amz-Signature={token}"

    def handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                parts = urlsplit(self.path)
                size = int(self.headers.get("Content-Length", "-1"))
                tmp = owner.folder / f".upload-{threading.get_ident()}"
                h, left = hashlib.sha256(), size
                with open(tmp, "wb") as f:
                    while left > 0 and (chunk := self.rfile.read(min(MiB, left))):
                        h.update(chunk)
                        f.write(chunk)
                        left -= len(chunk)
                if parse_qs(parts.query).get("X-Amz-Signature") != [TOKEN] or size < 0:
                    status = 403
                elif owner.fail_first > 0:
                    owner.fail_first -= 1
                    status = 503
                else:
                    status = 200
                    tmp.replace(owner.folder / Path(parts.path).name)
                tmp.unlink(missing_ok=True)
                headers = {k.lower(): v for k, v in self.headers.items()}
                owner.puts.append(Put(parts.path, headers, size - left, h.hexdigest(), status))
                body = (
                    b"<Error><Code>SignatureDoesNotMatch</Code></Error>" if status != 200 else b""
                )
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def __enter__(self) -> PutServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def put_server(tmp_path: Path) -> Iterator[PutServer]:
    with PutServer(tmp_path / "received") as server:
        yield server


def make_archive(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        while size > 0:
            f.write(os.urandom(min(size, MiB)))
            size -= MiB
    return path


def no_secret_logged(caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        assert TOKEN not in record.getMessage(), record.name


# --- presigned PUT ------------------------------------------------------------------------


def test_put_streams_exact_bytes(
    put_server: PutServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    archive = make_archive(tmp_path / "a.zip", 3 * MiB + 17)
    done = PresignedPutDelivery(put_server.url()).deliver(archive, NAME)
    assert (done.bytes, done.sha256) == (archive.stat().st_size, file_sha256(archive))
    assert file_sha256(put_server.folder / NAME) == done.sha256
    [put] = put_server.puts
    assert put.headers["content-length"] == str(archive.stat().st_size)
    assert put.headers["content-type"] == "application/zip"
    assert "transfer-encoding" not in put.headers
    assert done.location == f"{put_server.base}/inbox/{NAME}"
    assert "?" not in done.location and TOKEN not in repr(done)
    assert any(r.name.startswith("httpcore") for r in caplog.records)  # logging was on
    no_secret_logged(caplog)


def test_wrong_token_is_final_and_names_host_only(
    put_server: PutServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    archive = make_archive(tmp_path / "a.zip", 100_000)
    wrong = "wrong-9d8c7b6a"
    with pytest.raises(TransferError) as err:
        PresignedPutDelivery(put_server.url(token=wrong), backoff_s=0).deliver(archive, NAME)
    message = str(err.value)
    assert "HTTP 403" in message and "127.0.0.1" in message
    assert wrong not in message and "?" not in message and "Signature" not in message
    assert err.value.__cause__ is None and err.value.__context__ is None
    assert [p.status for p in put_server.puts] == [403]  # 4xx: not retried
    assert not (put_server.folder / NAME).exists()
    for record in caplog.records:
        assert wrong not in record.getMessage()


@pytest.mark.parametrize("from_memory", [False, True], ids=["file", "memory"])
def test_503_twice_then_ok_retries_from_the_start(
    put_server: PutServer, tmp_path: Path, from_memory: bool
) -> None:
    """Every attempt sends the archive from its first byte, from a file or from memory."""
    put_server.fail_first = 2
    archive = make_archive(tmp_path / "a.zip", 2 * MiB + 5)
    source = archive.read_bytes() if from_memory else archive
    done = PresignedPutDelivery(put_server.url(), backoff_s=0.01).deliver(source, NAME)
    assert [p.status for p in put_server.puts] == [503, 503, 200]
    assert {(p.bytes, p.sha256) for p in put_server.puts} == {(done.bytes, done.sha256)}
    assert file_sha256(put_server.folder / NAME) == file_sha256(archive) == done.sha256


def test_503_every_time_gives_up_after_max_attempts(put_server: PutServer, tmp_path: Path) -> None:
    put_server.fail_first = 10
    archive = make_archive(tmp_path / "a.zip", 1000)
    with pytest.raises(TransferError, match=r"after 3 attempt\(s\): HTTP 503"):
        PresignedPutDelivery(put_server.url(), backoff_s=0.01).deliver(archive, NAME)
    assert len(put_server.puts) == 3


def test_server_down_names_the_host_only(tmp_path: Path) -> None:
    archive = make_archive(tmp_path / "a.zip", 1000)
    endpoint = dead_endpoint()
    url = f"{endpoint}/inbox/{NAME}?X-Amz-Signature={TOKEN}"
    with pytest.raises(TransferError) as err:
        PresignedPutDelivery(url, max_attempts=2, backoff_s=0.01).deliver(archive, NAME)
    message = str(err.value)
    assert message == (
        f"PUT to {urlsplit(endpoint).netloc} failed after 2 attempt(s): ConnectError"
    )
    assert err.value.__cause__ is None and err.value.__context__ is None


def test_one_url_takes_one_archive(put_server: PutServer, tmp_path: Path) -> None:
    archive = make_archive(tmp_path / "a.zip", 1000)
    delivery = PresignedPutDelivery(put_server.url())
    delivery.deliver(archive, NAME)
    delivery.deliver(archive, NAME)  # the same archive again (a retried step): fine
    with pytest.raises(ValueError, match="one archive"):
        delivery.deliver(archive, f"{REQUEST_ID}-002.zip")  # a second part: refused
    assert len(put_server.puts) == 2


CHILD = """
import json, os, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from exporters.transfer import PresignedPutDelivery
start = time.monotonic()
done = PresignedPutDelivery(os.environ["PUT_URL"]).deliver(Path(sys.argv[1]), "big.zip")
seconds = round(time.monotonic() - start, 2)
status = Path("/proc/self/status").read_text().splitlines()
hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({"bytes": done.bytes, "sha256": done.sha256, "seconds": seconds,
                  "vm_hwm_kib": hwm}))
"""


def test_256_mib_put_in_bounded_memory(put_server: PutServer, tmp_path: Path) -> None:
    archive = make_archive(tmp_path / "big.zip", 256 * MiB)
    env = {**os.environ, "PUT_URL": put_server.url(name="big.zip")}  # not in argv
    run = subprocess.run(
        [sys.executable, "-c", CHILD, str(archive), str(REPO)],
        env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    print(f"256 MiB PUT: {out['seconds']} s, peak RSS {out['vm_hwm_kib'] / 1024:.1f} MiB")
    assert out["bytes"] == 256 * MiB
    assert out["sha256"] == file_sha256(archive) == file_sha256(put_server.folder / "big.zip")
    assert out["vm_hwm_kib"] * 1024 < 150_000_000


@pytest.mark.parametrize(
    "url",
    [
        "http://example.org/inbox/a.zip?X-Amz-Signature=tok-123",
        "http://127.0.0.1.evil.example/a.zip?X-Amz-Signature=tok-123",
        "ftp://127.0.0.1/a.zip?X-Amz-Signature=tok-123",
        "https://user:tok-123@example.org/a.zip",
        "/inbox/a.zip?X-Amz-Signature=tok-123",
    ],
)
def test_refuses_insecure_urls(url: str) -> None:
    with pytest.raises(ValueError) as err:
        PresignedPutDelivery(url)
    assert "tok-123" not in str(err.value)


def test_accepts_https_and_loopback_http() -> None:
    for url in ("https://up.example/a?sig=1", "http://localhost:8080/a", "http://[::1]/a"):
        assert "sig" not in PresignedPutDelivery(url).location
    assert PresignedPutDelivery("http://127.0.0.2:9/x/y?s=1").location == "http://127.0.0.2:9/x/y"


# --- recipients by reference --------------------------------------------------------------

RECIPIENTS = """
recipients:
  acme-cloud:
    kind: s3
    label: ACME Cloud Ltd
    url: s3://{bucket}/inbox?endpoint_url={endpoint}&region=us-east-1
    credentials_env:
      access_key_id: TEST_ACME_KEY_ID
      secret_access_key: TEST_ACME_SECRET
    sse: AES256
  initech:
    kind: presigned_put
    label: Initech GmbH
    allowed_hosts: [127.0.0.1]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipients.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def recipients(tmp_path: Path, moto_endpoint: str, s3_bucket: str) -> dict[str, RecipientConfig]:
    return load_recipients(
        write(tmp_path, RECIPIENTS.format(bucket=s3_bucket, endpoint=moto_endpoint))
    )


def test_example_file_loads() -> None:
    found = load_recipients(REPO / "config" / "recipients.example.yaml")
    assert {n: r.kind for n, r in found.items()} == {
        "acme-cloud": "s3", "globex-minio": "s3", "initech": "presigned_put"
    }  # fmt: skip
    assert found["acme-cloud"].label == "ACME Cloud Ltd"
    assert found["acme-cloud"].credentials_env["secret_access_key"] == "ACME_AWS_SECRET_ACCESS_KEY"


def test_s3_recipient_delivers_with_referenced_credentials(
    recipients: dict[str, RecipientConfig],
    s3_bucket: str,
    moto_endpoint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_ACME_KEY_ID", "acme-key-id")
    monkeypatch.setenv("TEST_ACME_SECRET", "acme-secret-value")
    acme = recipients["acme-cloud"]
    delivery = recipient_delivery(acme)
    creds = delivery.client._get_credentials()  # type: ignore[attr-defined]
    assert (creds.access_key, creds.secret_key, creds.token) == (
        "acme-key-id", "acme-secret-value", None
    )  # fmt: skip
    archive = make_archive(tmp_path / "a.zip", 123_456)
    record = TransferRecord.of(acme, delivery.deliver(archive, NAME))
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    head = s3.head_object(Bucket=s3_bucket, Key=f"inbox/{NAME}")
    assert head["ServerSideEncryption"] == "AES256"
    body = s3.get_object(Bucket=s3_bucket, Key=f"inbox/{NAME}")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == file_sha256(archive) == record.sha256
    assert audit_detail(record) == (
        f"transferred to acme-cloud (ACME Cloud Ltd): s3://{s3_bucket}/inbox/{NAME} "
        f"123456 bytes sha256 {record.sha256}"
    )
    assert "acme-secret-value" not in audit_detail(record)


def test_missing_credential_variable_names_it(
    recipients: dict[str, RecipientConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_ACME_KEY_ID", "acme-key-id")
    monkeypatch.delenv("TEST_ACME_SECRET", raising=False)
    with pytest.raises(RecipientsError) as err:
        recipient_delivery(recipients["acme-cloud"])
    assert "TEST_ACME_SECRET" in str(err.value) and "acme-cloud" in str(err.value)
    assert "acme-key-id" not in str(err.value)


def test_presigned_recipient_transfers_and_is_audited_without_query(
    recipients: dict[str, RecipientConfig], put_server: PutServer, tmp_path: Path
) -> None:
    initech = recipients["initech"]
    with pytest.raises(RecipientsError, match="must carry"):
        recipient_delivery(initech)
    with pytest.raises(RecipientsError, match="not in allowed_hosts") as err:
        recipient_delivery(initech, put_url=f"https://evil.example/x?X-Amz-Signature={TOKEN}")
    assert TOKEN not in str(err.value)
    archive = make_archive(tmp_path / "a.zip", 4321)
    done = recipient_delivery(initech, put_url=put_server.url()).deliver(archive, NAME)
    detail = audit_detail(TransferRecord.of(initech, done))
    assert detail == (
        f"transferred to initech (Initech GmbH): {put_server.base}/inbox/{NAME} "
        f"4321 bytes sha256 {file_sha256(archive)}"
    )
    assert TOKEN not in detail and "?" not in detail


@pytest.mark.parametrize(
    "fields",
    [
        "secret_access_key: abcSECRETvalue123",
        "aws_access_key_id: AKIAABCDEFGHIJKLMNOP",
        "password: abcSECRETvalue123",
        "credentials_env: {access_key_id: KEY_ID, secret_access_key: abcSECRET/value+123}",
        "credentials_env: {access_key_id: AKIAABCDEFGHIJKLMNOP, secret_access_key: SECRET}",
    ],
)
def test_literal_credentials_are_refused(tmp_path: Path, fields: str) -> None:
    text = "recipients:\n  acme-cloud:\n    kind: s3\n    label: ACME\n    url: s3://b/p\n"
    with pytest.raises(RecipientsError) as err:
        load_recipients(write(tmp_path, text + f"    {fields}\n"))
    message = str(err.value)
    assert "credentials are referenced by environment variable name" in message
    assert "acme-cloud" in message and "recipients.yaml" in message
    assert "abcSECRET" not in message and "AKIAABCDEFGHIJKLMNOP" not in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("recipients: [a]", "expected a 'recipients:' mapping"),
        ("recipients:\n  x: {kind: ftp, label: X}", "field 'kind'"),
        ("recipients:\n  x: {kind: s3, label: X, url: 'http://b/p'}", "field 'url'"),
        (
            "recipients:\n  x: {kind: s3, label: X, url: 's3://b?endpoint_url=http://h.example'}",
            "endpoint_url must be https",
        ),
        ("recipients:\n  x: {kind: s3, url: 's3://b/p'}", "field 'label'"),
        ("recipients:\n  x: {kind: s3, label: X, url: 's3://b/p', sse: none}", "field 'sse'"),
        ("recipients:\n  x: {kind: presigned_put, label: X}", "field 'allowed_hosts'"),
        (
            "recipients:\n  x: {kind: presigned_put, label: X, allowed_hosts: [h], url: u}",
            "unknown field(s) for kind presigned_put: url",
        ),
        (
            "recipients:\n  x: {kind: s3, label: X, url: 's3://b', credentials_env: {a: B}}",
            "field 'credentials_env' may only name",
        ),
        ("recipients:\n  Bad Name: {kind: s3}", "recipient names are"),
        ("recipients:\n  x: {kind: s3, label: 'sk-hidden-value\n", "line"),
    ],
)
def test_bad_files_are_refused_naming_the_field(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(RecipientsError) as err:
        load_recipients(write(tmp_path, text))
    assert expected in str(err.value) and "recipients.yaml" in str(err.value)
    assert "sk-hidden-value" not in str(err.value)
