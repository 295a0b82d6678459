"""A portal's request end to end: POST to the API, Dagster's sensor and export run, the
signed completed callback, and the download holding the subject's data only."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import boto3
import httpx
import pytest

from request_store import State
from tests import api_fixtures
from tests.api_fixtures import TestPortal, make_api, request_body
from tests.clock import Clock
from tests.location_fixtures import Location
from tests.test_encryption import age, new_identity
from tests.world_fixtures import Demo, edge

api_keys, portal = api_fixtures.api_keys, api_fixtures.portal
__all__ = ["age", "api_keys", "portal"]


def test_a_portal_request_is_exported_called_back_and_downloaded(
    demo: Demo, location: Location, api_keys: Path, portal: TestPortal, tmp_path: Path
) -> None:
    api = make_api(
        tmp_path / "api-tmp",
        api_keys,
        clock=Clock(datetime.now(UTC).replace(microsecond=0)),
        store_url=str(location.home / "requests.sqlite"),
        exports=location.exports,
    )
    try:
        portal.certificate = api.certificate()
        portal.start()
        subject = edge(demo, "shared_org_member")
        email = subject["emails"][0]
        body = request_body(
            subject_identities=[
                {"identity_type": "email", "identity_value": email, "identity_format": "raw"}
            ],
            submitted_time=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            status_callback_urls=[portal.url],
        )
        srid = body["subject_request_id"]
        assert api.submit(body).status_code == 201
        assert api.status(srid).json()["request_status"] == "pending"

        tick = location.sensor_tick()  # Dagster picks the request up from the shared store
        (run,) = tick.run_requests
        result = location.run_export(run.partition_key)
        assert result.success
        location.report(result)

        for _ in range(3):  # enqueue the status changes, then deliver them
            api.services.outbox.run_once()
        assert portal.statuses()[-1] == "completed"
        assert all(r.verified for r in portal.received)  # signed with the discovery cert
        status = api.status(srid).json()
        assert status["request_status"] == "completed" and status["results_count"] > 0
        download = api.client.get(httpx.URL(status["results_url"]).path)
        assert download.status_code == 200
        with zipfile.ZipFile(io.BytesIO(download.content)) as z:
            people = json.loads(z.read("data/personal.json"))
            text = b"".join(z.read(n) for n in z.namelist() if n.startswith("data/"))
        assert [p["email"] for p in people] == [email]
        others = {e for name in ("multi_account", "heavy_user") for e in edge(demo, name)["emails"]}
        assert not [e for e in others if e.encode() in text]
    finally:
        api.client.close()
        api.services.close()


def test_an_export_delivered_to_s3_is_downloaded_through_a_presigned_redirect(
    demo: Demo,
    location: Location,
    api_keys: Path,
    tmp_path: Path,
    moto_endpoint: str,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = f"s3://{s3_bucket}/exports?endpoint_url={moto_endpoint}"
    monkeypatch.setenv("PORTABILITY_EXPORTS", target)  # the code location delivers to S3
    api = make_api(
        tmp_path / "api-tmp",
        api_keys,
        store_url=str(location.home / "requests.sqlite"),
        delivery_url=target,
    )
    try:
        email = edge(demo, "multi_account")["emails"][0]
        identity = {"identity_type": "email", "identity_value": email, "identity_format": "raw"}
        body = request_body(subject_identities=[identity])
        assert api.submit(body).status_code == 201
        (run,) = location.sensor_tick().run_requests
        assert location.run_export(run.partition_key).success
        req = location.store.get(run.partition_key)
        assert req.state == State.COMPLETED
        assert req.result_location == f"s3://{s3_bucket}/exports/{req.request_id}.zip"
        s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
        key = f"exports/{req.request_id}.zip"
        assert s3.head_object(Bucket=s3_bucket, Key=key)["ServerSideEncryption"] == "AES256"
        tags = {
            t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=s3_bucket, Key=key)["TagSet"]
        }
        assert tags["request-id"] == req.request_id and email not in str(tags)
        assert not (location.staging / req.request_id).exists()

        results = api.status(body["subject_request_id"]).json()["results_url"]
        redirect = api.client.get(httpx.URL(results).path, follow_redirects=False)
        assert redirect.status_code == 307
        presigned = redirect.headers["location"]
        assert presigned.startswith(f"{moto_endpoint}/{s3_bucket}/{key}?")
        assert "X-Amz-Expires=300" in presigned  # a few minutes: the API's link is the one kept
        archive = httpx.get(presigned)  # a plain HTTP client, as a portal would
        assert archive.status_code == 200
        assert hashlib.sha256(archive.content).hexdigest() == req.result_sha256
        with zipfile.ZipFile(io.BytesIO(archive.content)) as z:
            people = json.loads(z.read("data/personal.json"))
        assert [p["email"] for p in people] == [email]
        # an object outside the configured bucket and prefix is never handed out
        with location.store.engine.begin() as conn:
            conn.exec_driver_sql(
                "UPDATE requests SET result_location = ? WHERE request_id = ?",
                (f"s3://{s3_bucket}/elsewhere/{req.request_id}.zip", req.request_id),
            )
        assert api.client.get(httpx.URL(results).path).status_code == 404
    finally:
        api.client.close()
        api.services.close()


def test_a_split_encrypted_export_is_listed_by_part_and_each_link_is_used_as_allowed(
    demo: Demo,
    location: Location,
    api_keys: Path,
    tmp_path: Path,
    age: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PORTABILITY_MAX_DOWNLOADS", "1")
    key, public = new_identity(tmp_path, "subject")
    api = make_api(
        tmp_path / "api-tmp",
        api_keys,
        store_url=str(location.home / "requests.sqlite"),
        exports=location.exports,
    )
    try:
        email = edge(demo, "heavy_user")["emails"][0]
        identity = {"identity_type": "email", "identity_value": email, "identity_format": "raw"}
        options = {"max_part_bytes": 256 * 1024, "encrypt_to": [public]}
        body = request_body(subject_identities=[identity], extensions={"testserver": options})
        assert api.submit(body).status_code == 201
        (run,) = location.sensor_tick().run_requests
        assert location.run_export(run.partition_key).success
        status = api.status(body["subject_request_id"]).json()
        ext = status["extensions"]["testserver"]
        assert status["request_status"] == "completed" and ext["encrypted"] == "age"
        parts = ext["parts"]
        assert len(parts) >= 3 and status["results_url"] == parts[0]["results_url"]
        entries: set[str] = set()
        for part in parts:
            assert part["name"].endswith(f"-{part['part']:03d}.zip.age")
            got = api.client.get(httpx.URL(part["results_url"]).path)
            assert got.status_code == 200
            assert hashlib.sha256(got.content).hexdigest() == part["sha256"]
            sealed = tmp_path / part["name"]
            sealed.write_bytes(got.content)
            plain = subprocess.run([age, "-d", "-i", str(key), str(sealed)], capture_output=True)
            assert plain.returncode == 0
            with zipfile.ZipFile(io.BytesIO(plain.stdout)) as z:
                entries |= set(z.namelist())
            path = httpx.URL(part["results_url"]).path
            resumed = api.client.get(path, headers={"Range": "bytes=100-"})
            assert resumed.status_code == 206 and resumed.content == got.content[100:]
            assert api.client.get(path).status_code == 410  # one download allowed per part
        assert {"parts.json", "manifest.json", "data/personal.json"} <= entries
        trail = [e.event for e in location.store.events(run.partition_key)]
        assert trail.count("delivered") == len(parts)
        # retention deleted the parts: even a resumed download is refused
        with location.store.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE request_deliveries SET expires_at = '2000-01-01'")
        location.defs.resolve_job_def("apply_retention").execute_in_process(
            instance=location.instance
        )
        last = httpx.URL(parts[-1]["results_url"]).path
        assert api.client.get(last, headers={"Range": "bytes=10-"}).status_code == 410
    finally:
        api.client.close()
        api.services.close()


def test_bad_delivery_options_are_refused_naming_the_field(api_keys: Path, tmp_path: Path) -> None:
    api = make_api(tmp_path / "api-tmp", api_keys)
    try:
        for options, where in (
            ({"max_part_bytes": "big"}, "extensions.testserver.max_part_bytes"),
            ({"max_part_bytes": 1000}, "must be an integer from 65536"),
            ({"encrypt_to": "age1x"}, "extensions.testserver.encrypt_to"),
            ({"encrypt_to": ["age1-zelda-not-a-key"]}, "recipient 1 is not"),
            ({"deliver_to": "x"}, "unknown option"),
        ):
            r = api.submit(request_body(extensions={"testserver": options}))
            assert r.status_code == 400, options
            assert where in r.text and "zelda" not in r.text
    finally:
        api.client.close()
        api.services.close()
