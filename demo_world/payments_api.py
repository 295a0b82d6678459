"""The payment provider stand-in: a small JSON API over ``payments.sqlite``.

``GET /v1/customers/{id}``, ``GET /v1/{payment_methods,charges,invoices}?customer=...``
with ``limit`` (default 10, at most 100) and ``cursor``; ``Authorization: Bearer <token>``
is required. Faults can be injected: the first N authorised requests answer 429 (with
``Retry-After``) or 500. Requests are not logged. Run it in a thread with
``start_payments_server`` or as ``python -m demo_world.payments_api --db <path>``.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import signal
import sqlite3
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .envfile import read_env
from .payments_store import LISTS, BadCursor, connect_readonly, get_customer, list_page

MAX_LIMIT = 100
DEFAULT_LIMIT = 10


@dataclass
class Faults:
    """Answer ``status`` (429 or 500) to the next ``first`` authorised requests."""

    first: int = 0
    status: int = 429
    retry_after: int = 1


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr: tuple[str, int], db: Path, token: str, faults: Faults) -> None:
        super().__init__(addr, _Handler)
        self.db = db
        self.token = token
        self.faults = faults
        self.lock = threading.Lock()
        self.requests = 0

    def take_fault(self) -> Faults | None:
        with self.lock:
            if self.faults.first > 0:
                self.faults.first -= 1
                return Faults(1, self.faults.status, self.faults.retry_after)
        return None


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # headers and body go out in separate writes: without this, delayed ACKs cost ~40 ms a reply
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """Requests carry customer ids: nothing is logged."""

    def _db(self) -> sqlite3.Connection:
        """The connection's own read-only database handle, kept for its keep-alive
        requests (opening one per request cost 0.9 ms of a 1 ms reply)."""
        db = getattr(self, "_conn", None)
        if db is None:
            db = self._conn = connect_readonly(self.server.db)
        return db

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            db = getattr(self, "_conn", None)
            if db is not None:
                db.close()

    def _send(
        self, status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
    ) -> None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, kind: str, message: str, **headers: str) -> None:
        self._send(status, {"error": {"type": kind, "message": message}}, headers)

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.requests += 1
        auth = self.headers.get("Authorization", "")
        expected = f"Bearer {self.server.token}"
        if not hmac.compare_digest(auth.encode(), expected.encode()):
            self._error(401, "authentication_error", "missing or invalid bearer token")
            return
        fault = self.server.take_fault()
        if fault is not None:
            if fault.status == 429:
                self._error(
                    429,
                    "rate_limit_error",
                    "too many requests",
                    **{"Retry-After": str(fault.retry_after)},
                )
            else:
                self._error(fault.status, "api_error", "internal error")
            return
        try:
            self._route(self._db())
        except BadCursor:
            self._error(400, "invalid_request_error", "invalid cursor")
        except Exception:  # never leak details (or data) to the client
            self._error(500, "api_error", "internal error")

    def _route(self, conn: sqlite3.Connection) -> None:
        parts = urlsplit(self.path)
        segments = [s for s in parts.path.split("/") if s]
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if len(segments) == 3 and segments[:2] == ["v1", "customers"]:
            customer = get_customer(conn, segments[2])
            if customer is None:
                self._error(404, "invalid_request_error", "no such customer")
            else:
                self._send(200, customer)
            return
        if len(segments) != 2 or segments[0] != "v1" or segments[1] not in LISTS:
            self._error(404, "invalid_request_error", "unknown endpoint")
            return
        customer = query.get("customer")
        if not customer:
            self._error(400, "invalid_request_error", "the customer parameter is required")
            return
        try:
            limit = int(query.get("limit", DEFAULT_LIMIT))
        except ValueError:
            limit = -1
        if not 1 <= limit <= MAX_LIMIT:
            self._error(400, "invalid_request_error", f"limit must be 1..{MAX_LIMIT}")
            return
        page = list_page(conn, segments[1], customer, limit, query.get("cursor"))
        self._send(200, page)

    def do_POST(self) -> None:
        self._error(405, "invalid_request_error", "method not allowed")

    do_PUT = do_DELETE = do_PATCH = do_POST


class PaymentsServer:
    """A running stand-in: ``url``, ``requests`` (count so far), ``set_faults``, ``stop``."""

    def __init__(self, server: _Server) -> None:
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name="payments-api",
        )
        self._thread.start()
        host, port = server.server_address[:2]
        self.url = f"http://{host}:{port}"

    @property
    def requests(self) -> int:
        return self._server.requests

    def set_faults(self, faults: Faults | Mapping[str, int] | None) -> None:
        self._server.faults = _faults(faults)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> PaymentsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _faults(faults: Faults | Mapping[str, int] | None) -> Faults:
    if faults is None:
        return Faults()
    if isinstance(faults, Faults):
        return Faults(faults.first, faults.status, faults.retry_after)
    return Faults(**dict(faults))


def start_payments_server(
    db_path: str | os.PathLike[str],
    token: str,
    port: int = 0,
    faults: Faults | Mapping[str, int] | None = None,
    host: str = "127.0.0.1",
) -> PaymentsServer:
    """Serve ``db_path`` in a background thread; ``port=0`` picks a free port."""
    db = Path(db_path)
    if not db.is_file():
        raise FileNotFoundError("payments store not found")
    return PaymentsServer(_Server((host, port), db, token, _faults(faults)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m demo_world.payments_api")
    parser.add_argument("--db", required=True, type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", help="default: $PAYMENTS_API_TOKEN, else world.env")
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--fail-status", type=int, default=429, choices=(429, 500, 502, 503))
    parser.add_argument("--retry-after", type=int, default=1)
    args = parser.parse_args(argv)
    token = args.token or os.environ.get("PAYMENTS_API_TOKEN")
    env_file = args.db.parent / "world.env"
    if not token and env_file.is_file():
        token = read_env(env_file).get("PAYMENTS_API_TOKEN")
    if not token:
        parser.error("no token: give --token or set PAYMENTS_API_TOKEN")
    faults = Faults(args.fail_first, args.fail_status, args.retry_after)
    server = start_payments_server(args.db, token, args.port, faults, args.host)
    print(f"PAYMENTS_API_URL={server.url}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
