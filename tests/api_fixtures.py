"""Fixtures and helpers of the OpenDSR API tests (tests/test_api_*.py).

``api``: the application in-process (``fastapi.testclient``) on a fresh SQLite request
store in ``tmp_path``, with an injectable clock, two portals and the callback worker
off (tests call ``outbox.run_once()``). ``TestPortal``: a real HTTP server (threaded
``http.server``) that receives callbacks and verifies their signatures against the
certificate named in discovery, and can be down (not listening) or answer 503.

A test module takes the fixtures it needs as module attributes (pytest finds them
there): ``api, api_keys = api_fixtures.api, api_fixtures.api_keys``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api import Settings, create_app
from api.app import OpenDSRApp, Services
from api.keys import load_or_create
from api.signing import DOMAIN_HEADER, SIGNATURE_HEADER, verify
from request_store import RequestStore
from tests.clock import Clock

PREFIX = "/opendsr/v2"
T0 = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
SECRET_EMAIL = "zelda.confidential@example.org"
SECRET_CUSTOMER = "CUST-77441122"
KEY_FILES = ("secret.key", "processor.key", "processor.pem")


def request_body(**overrides: Any) -> dict[str, Any]:
    """A valid POST /requests body (a fresh subject_request_id), with overrides."""
    body: dict[str, Any] = {
        "regulation": "gdpr",
        "subject_request_id": str(uuid.uuid4()),
        "subject_request_type": "access",
        "submitted_time": "2026-01-31T10:00:00Z",
        "subject_identities": [
            {"identity_type": "email", "identity_value": SECRET_EMAIL, "identity_format": "raw"}
        ],
        "api_version": "2.0",
    }
    body.update(overrides)
    return body


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Api:
    """The app under test, its client, clock and portal tokens."""

    app: OpenDSRApp
    client: TestClient
    clock: Clock
    token: str  # portal-a
    other_token: str  # portal-b
    tmp: Path

    @property
    def services(self) -> Services:
        return self.app.state.services

    @property
    def store(self) -> RequestStore:
        return self.services.store

    @property
    def settings(self) -> Settings:
        return self.services.settings

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}

    def submit(
        self, body: dict[str, Any] | None = None, token: str | None = None
    ) -> httpx.Response:
        body = body if body is not None else request_body()
        return self.client.post(f"{PREFIX}/requests", json=body, headers=self.auth(token))

    def status(self, srid: str, token: str | None = None) -> httpx.Response:
        return self.client.get(f"{PREFIX}/requests/{srid}", headers=self.auth(token))

    def request_id(self, srid: str, portal: str = "portal-a") -> str:
        found = self.store.find_external(srid, portal)
        assert found is not None
        return found.request_id

    def certificate(self) -> bytes:
        """The PEM named in discovery, fetched the way a portal would."""
        url = self.client.get(f"{PREFIX}/discovery").json()["processor_certificate"]
        response = self.client.get(httpx.URL(url).path)
        assert response.status_code == 200
        return response.content

    def deliver(self, srid: str, content: bytes = b"PK\x05\x06" + b"\0" * 18) -> Path:
        """Run the request to completion the way Dagster does: claim (unless running),
        deliver an archive into the delivery folder, complete it with its location,
        sha256 and count."""
        rid = self.request_id(srid)
        if self.store.get(rid).state != "running":
            assert self.store.claim(rid)
        folder = self.settings.exports
        folder.mkdir(parents=True, exist_ok=True)
        archive = folder / f"{rid}.zip"
        archive.write_bytes(content)
        self.store.complete(rid, location=str(archive), sha256=sha256_hex(content), count=7)
        return archive


@pytest.fixture(scope="session")
def api_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Key material made once per session (an RSA key takes a while), copied per test."""
    folder = tmp_path_factory.mktemp("api-keys")
    load_or_create(folder, "testserver")
    return folder


def api_settings(tmp: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        store_url=str(tmp / "requests.sqlite"),
        exports=tmp / "exports",
        state_dir=tmp / "api",
        public_url="http://testserver",
        callbacks=False,
        callback_backoff_s=2.0,
        burst=1000,
        rate_per_s=1000.0,
    )
    values.update(overrides)
    return Settings(**values)


def copy_keys(keys: Path, state: Path) -> None:
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name in KEY_FILES:
        shutil.copy2(keys / name, state / name)


def make_api(tmp: Path, keys: Path, clock: Clock | None = None, **overrides: Any) -> Api:
    settings = api_settings(tmp, **overrides)
    copy_keys(keys, settings.state_dir)
    clock = clock or Clock(T0)
    app = create_app(settings, clock=clock)
    portals = app.state.services.portals
    tokens = {p: portals.add(p) for p in ("portal-a", "portal-b")}
    client = TestClient(app, raise_server_exceptions=True)
    return Api(app, client, clock, tokens["portal-a"], tokens["portal-b"], tmp)


def restart(old: Api, **overrides: Any) -> Api:
    """A new application on the same store, state folder, clock and portals (a restart);
    the old one is closed."""
    old.client.close()
    old.services.close()
    settings = old.settings.with_(**overrides)
    app = create_app(settings, clock=old.clock)
    return Api(app, TestClient(app), old.clock, old.token, old.other_token, old.tmp)


@pytest.fixture
def api(tmp_path: Path, api_keys: Path) -> Iterator[Api]:
    a = make_api(tmp_path, api_keys)
    try:
        yield a
    finally:
        a.client.close()
        a.services.close()


@pytest.fixture(scope="module")
def shared_api(tmp_path_factory: pytest.TempPathFactory, api_keys: Path) -> Iterator[Api]:
    """One application for a whole module, for tests that leave nothing behind (bad
    input is refused before anything is stored)."""
    a = make_api(tmp_path_factory.mktemp("shared-api"), api_keys)
    try:
        yield a
    finally:
        a.client.close()
        a.services.close()


# ---------------------------------------------------------------------------------
# A rights portal receiving callbacks
# ---------------------------------------------------------------------------------


def wait_until(
    check: Callable[[], bool],
    timeout: float = 20.0,
    what: str = "condition",
    log: Path | None = None,
) -> None:
    """Poll ``check`` until true; fail after ``timeout`` s, with the log's tail if given."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:]) if log else ""
    raise AssertionError(f"timed out waiting for {what}" + (f":\n{tail}" if tail else ""))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]
    verified: bool

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class TestPortal:
    """A portal's callback endpoint on 127.0.0.1:``port``. ``start()``/``stop()`` bring
    it up and down (down = nothing listening); ``status`` is what it answers (503 to
    play a failing portal). Callbacks are verified against ``certificate`` before
    anything is parsed, as OpenDSR asks; unverified ones are answered 403."""

    __test__ = False  # not a test class

    certificate: bytes = b""
    port: int = field(default_factory=free_port)
    status: int = 200
    received: list[Received] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/opendsr/callbacks?token=portal-secret"

    def start(self) -> None:
        portal = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                signature = self.headers.get(SIGNATURE_HEADER, "")
                ok = bool(portal.certificate) and verify(portal.certificate, body, signature)
                headers = {k: v for k, v in self.headers.items()}
                portal.received.append(Received(body, headers, ok))
                code = portal.status if ok else 403
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def statuses(self) -> list[str]:
        return [r.json["request_status"] for r in self.received]


@pytest.fixture
def portal() -> Iterator[TestPortal]:
    p = TestPortal()
    try:
        yield p
    finally:
        p.stop()


__all__ = [
    "DOMAIN_HEADER",
    "PREFIX",
    "SECRET_CUSTOMER",
    "SECRET_EMAIL",
    "SIGNATURE_HEADER",
    "T0",
    "Api",
    "Clock",
    "TestPortal",
    "api",
    "api_keys",
    "make_api",
    "portal",
    "request_body",
    "restart",
    "sha256_hex",
    "shared_api",
]
