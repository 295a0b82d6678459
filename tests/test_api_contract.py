"""The OpenDSR 2.0 processor contract, in-process against a temporary SQLite store.

Discovery, submission (deadline, idempotency, 409), status mapping of every store
state, cancellation rules, authentication and portal isolation, every kind of bad
input (OpenDSR error format, no identity value echoed), signatures verified with the
certificate named in discovery, results links (download, expiry, forgery), the rate
limit, the OpenAPI document, portal management and key material.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from api import Settings, create_app
from api.__main__ import main as cli
from api.keys import self_signed
from api.models import SUBJECT_IDENTITY_SCHEMA, subject_request_schema
from api.signing import verify
from engine.request import email_sha256
from request_store import Identity, RequestSpec, RequestStore, State
from tests import api_fixtures
from tests.api_fixtures import (
    DOMAIN_HEADER,
    PREFIX,
    SECRET_CUSTOMER,
    SECRET_EMAIL,
    SIGNATURE_HEADER,
    T0,
    Api,
    make_api,
    request_body,
    sha256_hex,
)

# the fixtures
api, api_keys, shared_api = api_fixtures.api, api_fixtures.api_keys, api_fixtures.shared_api

DOMAIN = "testserver"


def error_of(response: Any, status: int) -> dict:
    """The OpenDSR error object of a response, checked for shape and status."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert error["code"] == status
    assert isinstance(error["message"], str) and error["message"]
    assert error["errors"], "at least one error detail"
    for detail in error["errors"]:
        assert set(detail) == {"domain", "reason", "message"}
        assert all(isinstance(v, str) and v for v in detail.values())
    return error


def assert_no_identity(response: Any, *secrets: str) -> None:
    """No identity value anywhere in the response: body, headers, any case."""
    everything = (response.text + json.dumps(dict(response.headers))).lower()
    for secret in secrets or (SECRET_EMAIL, SECRET_CUSTOMER):
        assert secret.lower() not in everything
        assert base64.b64encode(secret.encode()).decode().lower() not in everything


# -- discovery ----------------------------------------------------------------------


def test_discovery(api: Api) -> None:
    response = api.client.get(f"{PREFIX}/discovery")
    assert response.status_code == 200
    body = response.json()
    assert body["api_version"] == "2.0"
    assert body["supported_identities"] == [
        {"identity_type": "email", "identity_format": "raw"},
        {"identity_type": "email", "identity_format": "sha256"},
        {"identity_type": "controller_customer_id", "identity_format": "raw"},
    ]
    assert body["supported_subject_request_types"] == ["access", "portability"]
    assert body["processor_certificate"] == f"http://testserver{PREFIX}/certificate.pem"
    cert = x509.load_pem_x509_certificate(api.certificate())
    assert isinstance(cert.public_key(), rsa.RSAPublicKey)
    assert response.headers[DOMAIN_HEADER] == DOMAIN


# -- submission ---------------------------------------------------------------------


def test_submit_answers_201_after_storing_with_the_legal_deadline(api: Api) -> None:
    body = request_body(
        subject_request_type="portability",
        subject_identities=[
            {"identity_type": "email", "identity_value": SECRET_EMAIL, "identity_format": "raw"},
            {"identity_type": "email", "identity_format": "sha256",
             "identity_value": email_sha256(SECRET_EMAIL).upper()},
            {"identity_type": "controller_customer_id", "identity_value": SECRET_CUSTOMER,
             "identity_format": "raw"},
        ],
        status_callback_urls=["https://portal.example/cb?t=1", "https://portal.example/cb?t=1"],
    )  # fmt: skip
    # exact bytes, with spacing of the portal's own: encoded_request must be those bytes
    raw = json.dumps(body, indent=3).encode()
    api.clock.now = datetime(2026, 1, 31, 18, 30, 5, tzinfo=UTC)
    response = api.client.post(f"{PREFIX}/requests", content=raw, headers=api.auth())
    assert response.status_code == 201, response.text
    got = response.json()
    assert set(got) == {
        "controller_id", "expected_completion_time", "received_time", "encoded_request",
        "subject_request_id", "api_version",
    }  # fmt: skip
    assert got["controller_id"] == "portal-a"
    assert got["subject_request_id"] == body["subject_request_id"]
    assert got["expected_completion_time"] == "2026-02-28T23:59:59Z"  # 31 Jan + 1 month
    assert got["received_time"] == "2026-01-31T18:30:05Z"
    assert base64.b64decode(got["encoded_request"]) == raw

    req = api.store.find_external(body["subject_request_id"], "portal-a")
    assert req is not None and req.state == State.RECEIVED
    assert (req.channel, req.controller, req.request_type) == ("portal", "portal-a", "portability")
    assert req.submitted_at == datetime(2026, 1, 31, 10, 0, tzinfo=UTC)
    assert req.callback_urls == ("https://portal.example/cb?t=1",)  # listed twice, kept once
    assert req.request_digest and len(req.request_digest) == 64
    assert api.store.identities(req.request_id) == (
        Identity("email", SECRET_EMAIL),
        Identity("email_sha256", email_sha256(SECRET_EMAIL)),  # lower-cased
        Identity("controller_customer_id", SECRET_CUSTOMER),
    )


@pytest.mark.parametrize(
    ("submitted", "now", "deadline"),
    [
        ("2026-01-15T08:00:00+01:00", T0, "2026-02-15T23:59:59Z"),
        ("2026-02-01T00:30:00+02:00", T0 + timedelta(days=1), "2026-02-28T23:59:59Z"),  # 31 Jan UTC
        ("2028-01-31T10:00:00Z", datetime(2028, 2, 1, tzinfo=UTC), "2028-02-29T23:59:59Z"),
        ("2026-03-01T00:00:00Z", T0, "2026-02-28T23:59:59Z"),  # from the future: receipt counts
    ],
)
def test_deadline_is_a_calendar_month_from_submission(
    api: Api, submitted: str, now: datetime, deadline: str
) -> None:
    api.clock.now = now
    response = api.submit(request_body(submitted_time=submitted))
    assert response.status_code == 201, response.text
    assert response.json()["expected_completion_time"] == deadline


def test_resubmitting_the_same_body_is_the_same_request(api: Api) -> None:
    body = request_body()
    first = api.submit(body)
    assert first.status_code == 201
    api.clock.advance(minutes=5)
    # the same body, keys in another order and other spacing: still the same request
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=1).encode()
    again = api.client.post(f"{PREFIX}/requests", content=reordered, headers=api.auth())
    assert again.status_code == 201, again.text
    a, b = first.json(), again.json()
    assert a["received_time"] == b["received_time"]
    assert a["expected_completion_time"] == b["expected_completion_time"]
    assert base64.b64decode(b["encoded_request"]) == reordered
    assert len(api.store.list_in_state(State.RECEIVED)) == 1
    events = api.store.events(api.request_id(body["subject_request_id"]))
    assert [e.event for e in events] == ["received"]


@pytest.mark.parametrize(
    "change",
    [
        {"subject_request_type": "portability"},
        {"submitted_time": "2026-01-30T10:00:00Z"},
        {"subject_identities": [{"identity_type": "email", "identity_format": "raw",
                                 "identity_value": "other.person@example.org"}]},
        {"status_callback_urls": ["https://portal.example/other"]},
    ],
)  # fmt: skip
def test_the_same_id_with_a_different_body_is_409(api: Api, change: dict) -> None:
    body = request_body()
    assert api.submit(body).status_code == 201
    response = api.submit({**body, **change})
    error = error_of(response, 409)
    assert error["errors"][0]["reason"] == "conflict"
    assert_no_identity(response, SECRET_EMAIL, "other.person@example.org")
    req = api.store.find_external(body["subject_request_id"], "portal-a")
    assert req is not None and req.request_type == "access"
    assert api.store.identities(req.request_id) == (Identity("email", SECRET_EMAIL),)


def test_the_same_id_from_another_portal_is_another_request(api: Api) -> None:
    body = request_body()
    assert api.submit(body).status_code == 201
    other = api.submit({**body, "subject_request_type": "portability"}, token=api.other_token)
    assert other.status_code == 201
    assert other.json()["controller_id"] == "portal-b"
    a = api.store.find_external(body["subject_request_id"], "portal-a")
    b = api.store.find_external(body["subject_request_id"], "portal-b")
    assert a and b and a.request_id != b.request_id


# -- status -------------------------------------------------------------------------


def _drive(api: Api, rid: str, state: str) -> None:
    s = api.store
    if state == "running":
        assert s.claim(rid)
    elif state == "failed":
        assert s.claim(rid)
        s.fail(rid, "collected__payments: the source did not answer")
    elif state == "cancelled":
        s.cancel(rid, actor="dpo:alice")
    elif state == "denied":
        s.deny(rid, "manifestly unfounded: repeated request within a week", actor="dpo:alice")


@pytest.mark.parametrize(
    ("state", "status", "extension"),
    [
        ("received", "pending", {"status": "pending"}),
        ("running", "in_progress", {"status": "in_progress"}),
        ("failed", "in_progress", {"status": "failed", "reason_code": "export_failed"}),
        ("cancelled", "cancelled", {"status": "cancelled", "reason_code": "cancelled"}),
        ("denied", "cancelled", {"status": "denied", "reason_code": "denied",
                                 "reason": "manifestly unfounded: repeated request within a week"}),
    ],
)  # fmt: skip
def test_status_maps_each_store_state(api: Api, state: str, status: str, extension: dict) -> None:
    body = request_body()
    srid = body["subject_request_id"]
    assert api.submit(body).status_code == 201
    _drive(api, api.request_id(srid), state)
    response = api.status(srid)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "controller_id": "portal-a",
        "expected_completion_time": "2026-02-28T23:59:59Z",
        "subject_request_id": srid,
        "request_status": status,
        "api_version": "2.0",
        "extensions": {DOMAIN: extension},
    }


def test_completed_status_carries_results(api: Api) -> None:
    body = request_body()
    srid = body["subject_request_id"]
    api.submit(body)
    api.deliver(srid)
    got = api.status(srid).json()
    assert got["request_status"] == "completed"
    assert got["results_count"] == 7
    assert got["results_url"].startswith(f"http://testserver{PREFIX}/results/")
    expires = (T0 + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert got["extensions"] == {DOMAIN: {"status": "completed", "results_expires_time": expires}}


def test_an_extended_deadline_is_shown_with_its_reason(api: Api) -> None:
    body = request_body()
    api.submit(body)
    rid = api.request_id(body["subject_request_id"])
    api.store.extend(rid, "many sources to search", actor="dpo:alice")
    got = api.status(body["subject_request_id"]).json()
    assert got["expected_completion_time"] == "2026-04-28T23:59:59Z"
    assert got["extensions"][DOMAIN] == {
        "status": "pending",
        "deadline_extended": True,
        "extension_reason": "many sources to search",
    }


# -- cancellation -------------------------------------------------------------------


def test_delete_cancels_a_pending_request(api: Api) -> None:
    body = request_body()
    srid = body["subject_request_id"]
    api.submit(body)
    api.clock.advance(hours=1)
    response = api.client.delete(f"{PREFIX}/requests/{srid}", headers=api.auth())
    assert response.status_code == 202, response.text
    assert response.json() == {
        "controller_id": "portal-a",
        "subject_request_id": srid,
        "received_time": "2026-01-31T13:00:00Z",
        "api_version": "2.0",
    }
    rid = api.request_id(srid)
    assert api.store.get(rid).state == State.CANCELLED
    assert api.store.identities(rid) == ()  # closed: identities deleted
    assert api.status(srid).json()["request_status"] == "cancelled"
    # a repeat (the portal lost the answer) is accepted again, with the same time
    api.clock.advance(hours=1)
    again = api.client.delete(f"{PREFIX}/requests/{srid}", headers=api.auth())
    assert again.status_code == 202
    assert again.json()["received_time"] == "2026-01-31T13:00:00Z"
    assert [e.event for e in api.store.events(rid)].count("cancelled") == 1


def test_delete_cancels_a_failed_request(api: Api) -> None:
    body = request_body()
    api.submit(body)
    _drive(api, api.request_id(body["subject_request_id"]), "failed")
    response = api.client.delete(
        f"{PREFIX}/requests/{body['subject_request_id']}", headers=api.auth()
    )
    assert response.status_code == 202


@pytest.mark.parametrize(
    ("state", "reason"),
    [("running", "request_in_progress"), ("completed", "request_completed"),
     ("denied", "request_denied")],
)  # fmt: skip
def test_delete_refuses_a_request_that_is_not_pending(api: Api, state: str, reason: str) -> None:
    body = request_body()
    srid = body["subject_request_id"]
    api.submit(body)
    if state == "completed":
        api.deliver(srid)
    else:
        _drive(api, api.request_id(srid), state)
    response = api.client.delete(f"{PREFIX}/requests/{srid}", headers=api.auth())
    error = error_of(response, 409)
    assert error["errors"][0]["reason"] == reason
    assert "cannot be cancelled" in error["message"] or "can no longer" in error["message"]
    assert api.store.get(api.request_id(srid)).state == state


def test_delete_of_an_unknown_request_is_404(api: Api) -> None:
    response = api.client.delete(f"{PREFIX}/requests/{uuid.uuid4()}", headers=api.auth())
    error_of(response, 404)


# -- authentication and isolation -----------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer odsr_not-a-real-token"}, {"Authorization": "Basic YTpi"},
     {"Authorization": "Bearer "}],
)  # fmt: skip
def test_no_or_wrong_token_is_401(api: Api, headers: dict) -> None:
    srid = str(uuid.uuid4())
    calls = [
        api.client.post(f"{PREFIX}/requests", json=request_body(), headers=headers),
        api.client.get(f"{PREFIX}/requests/{srid}", headers=headers),
        api.client.delete(f"{PREFIX}/requests/{srid}", headers=headers),
    ]
    for response in calls:
        error = error_of(response, 401)
        assert error["errors"][0]["domain"] == "authentication"
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert_no_identity(response)
    assert api.store.list_in_state(State.RECEIVED) == []


def test_a_portal_sees_only_its_own_requests(api: Api) -> None:
    body = request_body()
    srid = body["subject_request_id"]
    api.submit(body)
    for response in (
        api.status(srid, token=api.other_token),
        api.client.delete(f"{PREFIX}/requests/{srid}", headers=api.auth(api.other_token)),
    ):
        error_of(response, 404)
    assert api.store.get(api.request_id(srid)).state == State.RECEIVED
    assert api.status(srid).status_code == 200


def test_a_removed_portal_is_refused(api: Api) -> None:
    assert api.services.portals.remove("portal-b")
    error_of(api.status(str(uuid.uuid4()), token=api.other_token), 401)


# -- bad input ----------------------------------------------------------------------


def _identity(kind: str, value: Any, fmt: str = "raw") -> list[dict]:
    return [{"identity_type": kind, "identity_value": value, "identity_format": fmt}]


def _raw(body: dict) -> bytes:
    return json.dumps(body).encode()


BAD_BODIES: list[tuple[str, bytes, str]] = [
    ("malformed JSON", b'{"subject_identities": [{"identity_value": "' + SECRET_EMAIL.encode()
     + b'", }', "invalid_json"),
    ("not UTF-8", b'{"x": "\xff\xfe' + SECRET_EMAIL.encode() + b'"}', "invalid_json"),
    ("not an object", json.dumps([SECRET_EMAIL]).encode(), "invalid_type"),
    ("empty body", b"", "invalid_json"),
    ("duplicate keys", b'{"regulation": "gdpr", "regulation": "' + SECRET_EMAIL.encode() + b'"}',
     "invalid_json"),
    ("nested too deeply", _raw(request_body(extensions=json.loads("[" * 40 + "]" * 40))),
     "invalid_json"),
    ("unpaired surrogate", _raw(request_body()).replace(b'"gdpr"', b'"\\ud800gdpr"'),
     "invalid_json"),
    ("missing subject_request_id",
     _raw({k: v for k, v in request_body().items() if k != "subject_request_id"}),
     "missing_field"),
    ("missing identities", _raw({k: v for k, v in request_body().items()
                                 if k != "subject_identities"}), "missing_field"),
    ("identities as a string", _raw(request_body(subject_identities=SECRET_EMAIL)), "invalid_type"),
    ("identities null", _raw(request_body(subject_identities=None)), "invalid_type"),
    ("no identities", _raw(request_body(subject_identities=[])), "missing_identity"),
    ("too many identities", _raw(request_body(subject_identities=_identity("email", SECRET_EMAIL)
                                               * 11)), "too_many_identities"),
    ("identity value a number", _raw(request_body(subject_identities=_identity("email", 42))),
     "invalid_type"),
    ("identity not an object", _raw(request_body(subject_identities=[SECRET_EMAIL])),
     "invalid_type"),
    ("identity without a format", _raw(request_body(subject_identities=[
        {"identity_type": "email", "identity_value": SECRET_EMAIL}])), "missing_field"),
    ("unknown identity type", _raw(request_body(subject_identities=_identity(
        "phone_number", SECRET_EMAIL))), "unsupported_identity"),
    ("unsupported identity format", _raw(request_body(subject_identities=_identity(
        "email", SECRET_EMAIL, "md5"))), "unsupported_identity"),
    ("customer id hashed", _raw(request_body(subject_identities=_identity(
        "controller_customer_id", SECRET_CUSTOMER, "sha256"))), "unsupported_identity"),
    ("not an email", _raw(request_body(subject_identities=_identity(
        "email", SECRET_EMAIL.replace("@", " at ")))), "invalid_identity"),
    ("email with a control character", _raw(request_body(subject_identities=_identity(
        "email", SECRET_EMAIL + "\n"))), "invalid_identity"),
    ("email too long", _raw(request_body(subject_identities=_identity(
        "email", "x" * 320 + SECRET_EMAIL))), "invalid_identity"),
    ("sha256 not hex", _raw(request_body(subject_identities=_identity(
        "email", SECRET_EMAIL, "sha256"))), "invalid_identity"),
    ("blank customer id", _raw(request_body(subject_identities=_identity(
        "controller_customer_id", "   "))), "invalid_identity"),
    ("erasure", _raw(request_body(subject_request_type="erasure")), "unsupported_request_type"),
    ("unknown request type", _raw(request_body(subject_request_type="rectification")),
     "unsupported_request_type"),
    ("request type a list", _raw(request_body(subject_request_type=["access"])), "invalid_type"),
    ("ccpa", _raw(request_body(regulation="ccpa")), "unsupported_regulation"),
    ("regulation a number", _raw(request_body(regulation=1)), "invalid_type"),
    ("uppercase UUID", _raw(request_body(subject_request_id=str(uuid.uuid4()).upper())),
     "invalid_id"),
    ("UUID v1", _raw(request_body(subject_request_id=str(uuid.uuid1()))), "invalid_id"),
    ("id is the email", _raw(request_body(subject_request_id=SECRET_EMAIL)), "invalid_id"),
    ("submitted_time not a time", _raw(request_body(submitted_time="yesterday")), "invalid_time"),
    ("submitted_time without zone", _raw(request_body(submitted_time="2026-01-31T10:00:00")),
     "invalid_time"),
    ("submitted_time impossible date", _raw(request_body(submitted_time="2026-02-30T10:00:00Z")),
     "invalid_time"),
    ("submitted_time year 1", _raw(request_body(submitted_time="0001-01-01T00:00:00+05:00")),
     "invalid_time"),
    ("callback URLs a string", _raw(request_body(status_callback_urls="https://a.example/")),
     "invalid_type"),
    ("callback URL not http", _raw(request_body(status_callback_urls=["ftp://a.example/x"])),
     "invalid_url"),
    ("callback URL with user info", _raw(request_body(status_callback_urls=[
        f"https://{SECRET_EMAIL}@portal.example/cb"])), "invalid_url"),
    ("too many callback URLs", _raw(request_body(status_callback_urls=[
        f"https://portal.example/{n}" for n in range(11)])), "invalid_type"),
    ("extensions not an object", _raw(request_body(extensions=[SECRET_EMAIL])), "invalid_type"),
    ("api_version null", _raw(request_body(api_version=None)), "invalid_type"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "raw", "reason"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
def test_bad_input_is_400_in_the_opendsr_format_without_identity_values(
    shared_api: Api, case: str, raw: bytes, reason: str
) -> None:
    api = shared_api
    headers = {**api.auth(), "Content-Type": "application/json"}
    response = api.client.post(f"{PREFIX}/requests", content=raw, headers=headers)
    error = error_of(response, 400)
    assert reason in {d["reason"] for d in error["errors"]}, error
    assert_no_identity(response)
    assert api.store.list_in_state(State.RECEIVED) == []
    assert verify(api.certificate(), response.content, response.headers[SIGNATURE_HEADER])


def test_erasure_is_refused_with_a_clear_message(api: Api) -> None:
    response = api.submit(request_body(subject_request_type="erasure"))
    error = error_of(response, 400)
    assert "erasure is not supported" in error["message"]


def test_all_problems_are_named_at_once(api: Api) -> None:
    body = request_body(regulation="ccpa", subject_request_id="x", submitted_time="soon")
    error = error_of(api.submit(body), 400)
    fields = {d["message"].split(":")[0] for d in error["errors"]}
    assert fields == {"regulation", "subject_request_id", "submitted_time"}


@pytest.mark.parametrize("size", [64 * 1024 + 1, 200 * 1024])
def test_a_body_over_the_limit_is_413(api: Api, size: int) -> None:
    body = request_body(extensions={"testserver": {"padding": "x" * size}})
    raw = _raw(body)
    response = api.client.post(f"{PREFIX}/requests", content=raw, headers=api.auth())
    error = error_of(response, 413)
    assert error["errors"][0]["reason"] == "body_too_large"
    assert_no_identity(response)
    assert verify(api.certificate(), response.content, response.headers[SIGNATURE_HEADER])

    def chunks():  # no Content-Length: the limit still holds
        yield raw[: len(raw) // 2]
        yield raw[len(raw) // 2 :]

    response = api.client.post(f"{PREFIX}/requests", content=chunks(), headers=api.auth())
    error_of(response, 413)
    assert api.store.list_in_state(State.RECEIVED) == []


@pytest.mark.parametrize(
    "bad_id",
    ["not-a-uuid", "A7551968-D5D6-44B2-9831-815AC9017798", str(uuid.uuid1()), SECRET_EMAIL],
)
def test_an_id_that_is_not_a_uuid_is_400(shared_api: Api, bad_id: str) -> None:
    api = shared_api
    for response in (
        api.status(bad_id),
        api.client.delete(f"{PREFIX}/requests/{bad_id}", headers=api.auth()),
    ):
        error = error_of(response, 400)
        assert "UUID" in error["message"]
        assert_no_identity(response)


def test_unknown_paths_and_methods_use_the_error_format(api: Api) -> None:
    error_of(api.client.get(f"{PREFIX}/nothing-here"), 404)
    response = api.client.put(f"{PREFIX}/requests", headers=api.auth())
    error_of(response, 405)
    assert "POST" in response.headers["allow"]


# -- signatures ---------------------------------------------------------------------


def test_every_response_verifies_against_the_discovery_certificate(api: Api) -> None:
    cert = api.certificate()
    body = request_body()
    responses = [
        api.client.get(f"{PREFIX}/discovery"),
        api.submit(body),
        api.status(body["subject_request_id"]),
        api.submit(request_body(regulation="ccpa")),  # 400
        api.client.get(f"{PREFIX}/requests/{uuid.uuid4()}"),  # 401
        api.status(str(uuid.uuid4())),  # 404
        api.client.get("/openapi.json"),
    ]
    for response in responses:
        assert response.headers[DOMAIN_HEADER] == DOMAIN
        signature = response.headers[SIGNATURE_HEADER]
        assert verify(cert, response.content, signature), response.request.url
        # a changed byte, or another response's signature, does not verify
        assert not verify(cert, response.content + b" ", signature)
    assert not verify(cert, responses[0].content, responses[1].headers[SIGNATURE_HEADER])


def test_a_configured_key_and_certificate_are_used(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = self_signed(key, "opendsr.infuze.example", datetime.now(UTC))
    key_file, cert_file = tmp_path / "real.key", tmp_path / "real.pem"
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption())
    )  # fmt: skip
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    settings = Settings(
        store_url=str(tmp_path / "requests.sqlite"), state_dir=tmp_path / "state",
        key_file=key_file, cert_file=cert_file, callbacks=False,
        public_url="https://opendsr.infuze.example",
    )  # fmt: skip
    app = create_app(settings)
    try:
        from fastapi.testclient import TestClient

        with TestClient(app) as client:
            pem = client.get(f"{PREFIX}/certificate.pem").content
            assert pem == cert_file.read_bytes()
            response = client.get(f"{PREFIX}/discovery")
            assert response.headers[DOMAIN_HEADER] == "opendsr.infuze.example"
            assert verify(pem, response.content, response.headers[SIGNATURE_HEADER])
        assert not (tmp_path / "state" / "processor.key").exists()
    finally:
        app.state.services.close()


def test_key_material_is_private_and_kept_across_restarts(tmp_path: Path) -> None:
    state = tmp_path / "var" / "api"  # does not exist yet: created 0700, files 0600

    def start() -> bytes:
        settings = Settings(store_url=str(tmp_path / "r.sqlite"), state_dir=state, callbacks=False)
        app = create_app(settings)
        pem = app.state.services.keys.certificate_pem
        app.state.services.close()
        return pem

    pem = start()
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    for name in ("secret.key", "processor.key", "processor.pem"):
        assert stat.S_IMODE(os.stat(state / name).st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(pem)
    assert cert.subject == cert.issuer  # self-signed, for local use
    assert start() == pem  # the same key and certificate after a restart


# -- results links ------------------------------------------------------------------


def _completed(api: Api, content: bytes) -> tuple[str, str]:
    body = request_body()
    api.submit(body)
    api.deliver(body["subject_request_id"], content)
    return body["subject_request_id"], api.status(body["subject_request_id"]).json()["results_url"]


def test_the_results_link_streams_the_archive_signed(api: Api) -> None:
    content = os.urandom(300_000)
    _srid, url = _completed(api, content)
    response = api.client.get(url)  # no bearer token: the link is the credential
    assert response.status_code == 200
    assert response.content == content
    assert response.headers["content-type"] == "application/zip"
    assert "attachment" in response.headers["content-disposition"]
    digest = base64.b64encode(bytes.fromhex(sha256_hex(content))).decode()
    assert response.headers["repr-digest"] == f"sha-256=:{digest}:"
    assert verify(api.certificate(), response.content, response.headers[SIGNATURE_HEADER])


def test_an_expired_link_is_refused(api: Api) -> None:
    _srid, url = _completed(api, b"archive bytes")
    api.clock.advance(days=7, seconds=-1)
    assert api.client.get(url).status_code == 200
    api.clock.advance(seconds=2)
    error = error_of(api.client.get(url), 403)
    assert error["errors"][0]["reason"] == "invalid_link"


def test_a_forged_or_altered_link_is_refused(api: Api) -> None:
    srid, url = _completed(api, b"archive bytes")
    _, other_url = _completed(api, b"another archive")
    path = httpx_path(url)
    token = path.rsplit("/", 1)[1]
    rid, expires, mac = token.split(".")
    other_rid = httpx_path(other_url).rsplit("/", 1)[1].split(".")[0]
    later = str(int(expires) + 86400 * 365)
    flipped = mac[:-2] + ("A" if mac[-2] != "A" else "B") + mac[-1]
    for bad in (
        f"{rid}.{expires}.{flipped}",  # MAC changed
        f"{rid}.{later}.{mac}",  # expiry pushed out
        f"{other_rid}.{expires}.{mac}",  # another request's archive
        f"{rid}.{expires}",
        "x" * 90,
        f"{rid}.{expires}.{mac}.extra",
    ):
        response = api.client.get(f"{PREFIX}/results/{bad}")
        error = error_of(response, 403)
        assert error["message"] == "this link is not valid or has expired"
    assert api.client.get(url).status_code == 200
    assert api.status(srid).status_code == 200


def test_a_link_to_an_archive_outside_the_delivery_folder_is_404(api: Api, tmp_path: Path) -> None:
    body = request_body()
    api.submit(body)
    rid = api.request_id(body["subject_request_id"])
    outside = tmp_path / "elsewhere.zip"
    outside.write_bytes(b"not to be served")
    api.store.claim(rid)
    api.store.complete(rid, location=str(outside), sha256=sha256_hex(b"x"), count=1)
    url = api.status(body["subject_request_id"]).json()["results_url"]
    error_of(api.client.get(url), 404)
    # and a delivered archive removed later (retention) is 404 too
    _srid, url = _completed(api, b"kept for a while")
    for archive in api.settings.exports.glob("*.zip"):
        archive.unlink()
    error_of(api.client.get(url), 404)


def httpx_path(url: str) -> str:
    import httpx

    return httpx.URL(url).path


# -- rate limit ---------------------------------------------------------------------


def test_requests_are_rate_limited_per_token(tmp_path: Path, api_keys: Path) -> None:
    limited = make_api(tmp_path, api_keys, burst=3, rate_per_s=0.01)
    try:
        srid = str(uuid.uuid4())
        codes = [limited.status(srid).status_code for _ in range(4)]
        assert codes == [404, 404, 404, 429]
        response = limited.status(srid)
        error = error_of(response, 429)
        assert error["errors"][0]["reason"] == "rate_limit_exceeded"
        assert int(response.headers["retry-after"]) >= 1
        assert limited.status(srid, token=limited.other_token).status_code == 404  # own bucket
    finally:
        limited.services.close()


# -- the OpenAPI document -----------------------------------------------------------


def test_the_openapi_document_describes_the_real_responses(api: Api) -> None:
    doc = api.client.get("/openapi.json").json()
    paths = doc["paths"]
    assert set(paths) == {
        f"{PREFIX}/discovery", f"{PREFIX}/certificate.pem", f"{PREFIX}/requests",
        f"{PREFIX}/requests/{{subject_request_id}}", f"{PREFIX}/results/{{token}}",
    }  # fmt: skip
    text = json.dumps(doc)
    assert '"422"' not in text and "HTTPValidationError" not in text
    post = paths[f"{PREFIX}/requests"]["post"]
    assert set(post["responses"]) == {"201", "400", "401", "409", "413", "429"}
    assert post["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorResponse"
    }
    assert "X-OpenDSR-Signature" in post["responses"]["201"]["headers"]
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_the_published_request_schema_agrees_with_validation(api: Api) -> None:
    schema = {**subject_request_schema(10), "$defs": {"SubjectIdentity": SUBJECT_IDENTITY_SCHEMA}}
    text = json.dumps(schema).replace("#/components/schemas/", "#/$defs/")
    # OpenAPI patterns are ECMA-262: "$" ends the string (Python's also matches before a
    # final newline), so check with Python's end-of-string anchor
    text = text.replace('$"', '\\\\Z"')
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    validator = jsonschema.Draft202012Validator(json.loads(text), format_checker=checker)
    good = request_body(
        subject_identities=_identity("email", SECRET_EMAIL)
        + _identity("email", "ab" * 32, "sha256")
        + _identity("controller_customer_id", SECRET_CUSTOMER),
        status_callback_urls=["https://portal.example:8443/cb?x=1", "http://[::1]:9/cb"],
        extensions={"portal.example": {"a": 1}},
    )
    assert not list(validator.iter_errors(good))
    assert api.submit(good).status_code == 201
    for _case, raw, _reason in BAD_BODIES:
        try:
            body = json.loads(raw)
        except ValueError:
            continue
        if isinstance(body, dict) and "regulation" in body and "subject_identities" in body:
            if body.get("extensions") and isinstance(body["extensions"], dict):
                continue  # too deep: a rule of the parser, not of the schema
            assert list(validator.iter_errors(body)), _case


# -- portals ------------------------------------------------------------------------


def test_add_portal_prints_the_token_once_and_stores_only_its_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "requests.sqlite"
    monkeypatch.setenv("PORTABILITY_REQUEST_STORE", str(db))
    assert cli(["add-portal", "rights-portal"]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("odsr_") and len(token) > 40
    assert cli(["add-portal", "rights-portal"]) == 2  # exists: no silent new token
    assert "exists" in capsys.readouterr().err
    assert token.encode() not in db.read_bytes()
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT token_sha256 FROM api_portals")).scalar_one()
    engine.dispose()
    assert stored == sha256_hex(token.encode())
    assert cli(["add-portal", "rights-portal", "--rotate"]) == 0
    rotated = capsys.readouterr().out.strip()
    assert rotated != token
    assert cli(["list-portals"]) == 0
    assert capsys.readouterr().out.split() == ["rights-portal"]
    assert cli(["add-portal", "Bad Id!"]) == 2
    assert cli(["remove-portal", "rights-portal"]) == 0
    assert cli(["remove-portal", "rights-portal"]) == 1


# -- the store's request digest -----------------------------------------------------


def test_the_store_adds_the_digest_column_to_an_older_database(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite"
    RequestStore.open(db).close()
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:  # as the first release created it
        conn.exec_driver_sql("ALTER TABLE requests DROP COLUMN request_digest")
    engine.dispose()
    with RequestStore.open(db) as store:
        spec = RequestSpec(
            "access", [Identity("email", SECRET_EMAIL)], external_id="x-1", controller="p"
        )
        req, created = store.submit(replace(spec, request_digest="AB" * 32))
        assert created and req.request_digest == "ab" * 32
        again, created = store.submit(replace(spec, request_digest="cd" * 32))
        assert not created and again.request_digest == "ab" * 32  # the first one's
        old, _ = store.submit(
            RequestSpec(request_type="access", identities=[Identity("email", SECRET_EMAIL)])
        )
        assert old.request_digest is None
        assert "request_digest" not in repr(old)
