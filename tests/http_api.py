"""A local JSON API in a thread, for the HTTP connector's tests: pagination, faults, auth,
and a slow endpoint that counts the requests in flight."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa
import pytest

from engine.connectors.base import Lookup
from engine.connectors.http import HttpConnector

TOKEN = "t0k-secret"
EMAIL = "jane.doe@example.com"
CHARGES_ENTITY = {"endpoint": "/v1/charges", "lookup_param": "customer"}
CHARGES = {
    "cus_a": [
        {
            "id": f"ch_a{i:02d}",
            "customer": "cus_a",
            "amount": 100 * i,
            "currency": "eur",
            "outcome": {"type": "authorized", "risk": {"level": "normal"}},
        }
        for i in range(23)
    ],
    "cus_b": [
        {
            "id": "ch_b00",
            "customer": "cus_b",
            "amount": 5,
            "currency": "usd",
            "metadata": {"k": "v"},
            "refunds": [1, 2],
        }
    ],
}
CUSTOMERS = {
    "cus_a": {
        "id": "cus_a",
        "email": EMAIL,
        "name": "Jane Doe",
        "address": {"line1": "1 Main St", "city": "Springfield"},
    }
}


class _Api(BaseHTTPRequestHandler):
    hits: Counter[str]
    queries: list[dict[str, list[str]]]
    protocol_version = "HTTP/1.1"  # keep-alive, as a provider's API
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(
        self, status: int, body: object = None, headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(body if body is not None else {"error": status}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        q = parse_qs(url.query)
        self.server.queries.append({"path": [url.path], **q})  # type: ignore[attr-defined]
        self.server.clients.add(self.client_address)  # type: ignore[attr-defined]
        hits = self.server.hits  # type: ignore[attr-defined]
        hits[url.path] += 1
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._send(401)
        if url.path == "/v1/flaky429" and hits[url.path] == 1:
            return self._send(429, headers={"Retry-After": "0"})
        if url.path == "/v1/flaky500" and hits[url.path] == 1:
            return self._send(500)
        if url.path == "/v1/broken":
            return self._send(503)
        if url.path == "/v1/slow":
            time.sleep(1.0)
        if url.path == "/v1/tracked":  # a slow list: how many requests overlap
            return self._tracked(q.get("customer", [""])[0])
        if url.path.startswith("/v1/customers/"):
            found = CUSTOMERS.get(url.path.rsplit("/", 1)[1])
            return self._send(200, found) if found else self._send(404)
        if url.path == "/v1/leaky":
            return self._send(200, {"data": CHARGES["cus_b"], "has_more": False})
        customer = q.get("customer", [""])[0]
        rows = CHARGES.get(customer, [])
        start = int(q.get("cursor", ["0"])[0])
        limit = int(q.get("limit", ["10"])[0])
        page = rows[start : start + limit]
        more = start + limit < len(rows)
        self._send(
            200,
            {"data": page, "has_more": more, "next_cursor": str(start + limit) if more else None},
        )

    def _tracked(self, customer: str) -> None:
        server = self.server
        with server.lock:  # type: ignore[attr-defined]
            server.flight += 1  # type: ignore[attr-defined]
            server.peak = max(server.peak, server.flight)  # type: ignore[attr-defined]
            server.starts.append(time.monotonic())  # type: ignore[attr-defined]
        time.sleep(0.02)
        with server.lock:  # type: ignore[attr-defined]
            server.flight -= 1  # type: ignore[attr-defined]
        self._send(200, {"data": [{"id": f"t_{customer}", "customer": customer}]})


@contextmanager
def serving(tls: ssl.SSLContext | None = None) -> Iterator[ThreadingHTTPServer]:
    """The API on a free loopback port, in a thread (over TLS with ``tls``)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    server.hits = Counter()  # type: ignore[attr-defined]
    server.queries = []  # type: ignore[attr-defined]
    server.lock = threading.Lock()  # type: ignore[attr-defined]
    server.flight = server.peak = 0  # type: ignore[attr-defined]
    server.starts = []  # type: ignore[attr-defined]
    server.clients = set()  # type: ignore[attr-defined]  # (host, port): one a connection
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def api() -> Iterator[ThreadingHTTPServer]:
    with serving() as server:
        yield server


def conn_to(api: ThreadingHTTPServer, **kw: object) -> HttpConnector:
    opts: dict = {
        "token": TOKEN,
        "token_env": "PAYMENTS_API_TOKEN",
        "timeout_s": 5,
        "max_retries": 3,
        "backoff_s": 0.001,
        "max_backoff_s": 0.01,
        "page_size": 10,
    }
    opts.update(kw)
    return HttpConnector("payments", f"http://127.0.0.1:{api.server_address[1]}", **opts)


def table_of(
    conn: HttpConnector, entity: dict, values: list[str], cols: list[str], column: str = "customer"
) -> pa.Table:
    batches = list(conn.fetch(entity, Lookup(column, values), cols))
    return pa.Table.from_batches(batches) if batches else pa.table({})
