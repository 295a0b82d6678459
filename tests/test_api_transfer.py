"""Direct transfer (Art. 20(2)) end to end: a portal's portability request names another
organisation; the export goes through Dagster's sensor and run to that organisation (a
presigned PUT URL served by a local server, or its S3 bucket on moto), the status says
where it went, nothing is kept for download here, and the presigned URL's secret is in
no database, log or Dagster storage once the request is done."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import boto3
import pytest

from request_store import State
from tests import api_fixtures
from tests.api_fixtures import make_api, request_body
from tests.location_fixtures import Location
from tests.test_transfer import RECIPIENTS, TOKEN, PutServer, put_server
from tests.world_fixtures import Demo, edge

api_keys = api_fixtures.api_keys
__all__ = ["api_keys", "put_server"]


@pytest.fixture
def transfer_env(
    tmp_path: Path,
    moto_endpoint: str,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, Path]:
    """A recipients file (initech: presigned PUT to 127.0.0.1; acme-cloud: a moto bucket)
    and a seal key, set for the code location as the API gets them."""
    text = RECIPIENTS.format(bucket=s3_bucket, endpoint=moto_endpoint)
    recipients = tmp_path / "recipients.yaml"
    recipients.write_text(text)
    monkeypatch.setenv("PORTABILITY_RECIPIENTS", str(recipients))
    monkeypatch.setenv("PORTABILITY_SEAL_KEY", str(tmp_path / "seal.key"))
    monkeypatch.setenv("TEST_ACME_KEY_ID", "testing")
    monkeypatch.setenv("TEST_ACME_SECRET", "testing")
    return {"recipients": recipients, "seal_key": tmp_path / "seal.key"}


def portability(email: str, **options: str) -> dict:
    identity = {"identity_type": "email", "identity_value": email, "identity_format": "raw"}
    return request_body(
        subject_request_type="portability",
        subject_identities=[identity],
        extensions={"testserver": options},
    )


def test_a_transfer_to_a_presigned_url_goes_there_and_nowhere_else(
    demo: Demo,
    location: Location,
    api_keys: Path,
    tmp_path: Path,
    transfer_env: dict[str, Path],
    put_server: PutServer,
) -> None:
    api = make_api(
        tmp_path / "api-tmp",
        api_keys,
        store_url=str(location.home / "requests.sqlite"),
        exports=location.exports,
        recipients_file=transfer_env["recipients"],
        seal_key=transfer_env["seal_key"],
    )
    try:
        email = edge(demo, "multi_account")["emails"][0]
        url = put_server.url(name="export.zip")
        body = portability(email, transfer_to="initech", transfer_url=url)
        assert api.submit(body).status_code == 201
        (run,) = location.sensor_tick().run_requests
        rid = run.partition_key
        assert TOKEN not in json.dumps(location.store.get(rid).__dict__, default=str)
        assert location.run_export(rid).success
        req = location.store.get(rid)
        assert req.state == State.COMPLETED and req.transfer_to == "initech"
        [put] = put_server.puts
        received = put_server.folder / "export.zip"
        assert put.status == 200 and hashlib.sha256(received.read_bytes()).hexdigest() == put.sha256
        with zipfile.ZipFile(io.BytesIO(received.read_bytes())) as z:
            assert [p["email"] for p in json.loads(z.read("data/personal.json"))] == [email]
        assert not location.exports.exists() or not list(location.exports.iterdir())

        status = api.status(body["subject_request_id"]).json()
        transfer = status["extensions"]["testserver"]["transfer"]
        assert status["request_status"] == "completed" and "results_url" not in status
        assert transfer["recipient"] == "initech" and transfer["label"] == "Initech GmbH"
        [part] = transfer["parts"]
        assert part["location"] == f"{put_server.base}/inbox/export.zip"
        assert part["sha256"] == put.sha256
        trail = [(e.event, e.detail) for e in location.store.events(rid)]
        assert any(e == "delivered" and "to initech" in d and put.sha256 in d for e, d in trail)

        assert location.store.transfer_secret(rid) is None  # dropped at completion
        for path in [*location.home.rglob("*"), *(tmp_path / "api-tmp").rglob("*")]:
            if path.is_file():
                assert TOKEN.encode() not in path.read_bytes(), path
    finally:
        api.client.close()
        api.services.close()


def test_a_transfer_to_a_recipients_bucket_and_refusals(
    demo: Demo,
    location: Location,
    api_keys: Path,
    tmp_path: Path,
    transfer_env: dict[str, Path],
    moto_endpoint: str,
    s3_bucket: str,
) -> None:
    api = make_api(
        tmp_path / "api-tmp",
        api_keys,
        store_url=str(location.home / "requests.sqlite"),
        recipients_file=transfer_env["recipients"],
        seal_key=transfer_env["seal_key"],
    )
    try:
        email = edge(demo, "shared_org_member")["emails"][0]
        body = portability(email, transfer_to="acme-cloud")
        assert api.submit(body).status_code == 201
        (run,) = location.sensor_tick().run_requests
        assert location.run_export(run.partition_key).success
        s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
        key = f"inbox/{run.partition_key}.zip"
        assert s3.head_object(Bucket=s3_bucket, Key=key)["ServerSideEncryption"] == "AES256"
        status = api.status(body["subject_request_id"]).json()
        [part] = status["extensions"]["testserver"]["transfer"]["parts"]
        assert part["location"] == f"s3://{s3_bucket}/{key}"
        results = api.client.get(f"/opendsr/v2/requests/{body['subject_request_id']}")
        assert "results_url" not in results.text

        secret = "https://127.0.0.1:1/x?X-Amz-Signature=zelda"
        refusals = [
            (portability(email, transfer_to="globex"), "is not a configured recipient"),
            ({**portability(email, transfer_to="acme-cloud"), "subject_request_type": "access"},
             "portability requests only"),
            (portability(email, transfer_to="initech"), "takes a presigned PUT URL"),
            (portability(email, transfer_to="acme-cloud", transfer_url=secret),
             "configured with its own bucket"),
            (portability(email, transfer_to="initech",
                         transfer_url="https://evil.example/x?X-Amz-Signature=zelda"),
             "its host is not one this recipient allows"),
            (portability(email, transfer_url=secret), "goes with transfer_to"),
        ]  # fmt: skip
        for bad, why in refusals:
            r = api.submit(bad)
            assert r.status_code == 400 and why in r.text, (why, r.text)
            assert "zelda" not in r.text and "evil" not in r.text
    finally:
        api.client.close()
        api.services.close()
