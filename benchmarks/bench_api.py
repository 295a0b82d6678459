"""The rights-portal API: POST /requests to the completed callback, and POSTs accepted/s.

1. **Latency.** ``make serve``'s stack in a scratch folder (``python -m pipelines.serve``:
   demo world, payment stand-in, the API launching runs directly, ``dagster dev``). A
   portal posts a request for a demo subject and waits for its ``completed`` callback,
   one request at a time; the first is a warm-up. The store's audit trail splits each
   figure: POST to ``claimed`` (launch, queue, run worker start), ``claimed`` to
   ``completed`` (the export run's steps), ``completed`` to the callback (the outbox).
2. **Throughput.** ``python -m api`` alone on a fresh store (rate limit raised, callbacks
   and launches off), loaded by a second process posting distinct requests from
   ``CONCURRENCY`` keep-alive connections for ``SECONDS``.

``python -m benchmarks.bench_api [--requests N] [--seconds S]``; figures, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import BENCH_DIR, ROOT

PREFIX = "/opendsr/v2"
SUBJECTS = ("multi_account", "shared_org_member", "ticket_mentions_other", "heavy_user")
CONCURRENCY = 8


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Callbacks:
    """A portal's callback endpoint: the arrival time of each (request, status)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.arrived: dict[tuple[str, str], datetime] = {}
        self.event = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.event:
                    key = (body["subject_request_id"], body["request_status"])
                    outer.arrived[key] = datetime.now(UTC)
                    outer.event.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/callbacks"

    def wait(self, srid: str, status: str, timeout: float) -> datetime | None:
        with self.event:
            self.event.wait_for(lambda: (srid, status) in self.arrived, timeout)
            return self.arrived.get((srid, status))


def body(email: str, callbacks: list[str]) -> dict[str, Any]:
    return {
        "regulation": "gdpr",
        "subject_request_id": str(uuid.uuid4()),
        "subject_request_type": "access",
        "submitted_time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "subject_identities": [
            {"identity_type": "email", "identity_value": email, "identity_format": "raw"}
        ],
        "status_callback_urls": callbacks,
        "api_version": "2.0",
    }


@contextmanager
def serve(base: Path, api_port: int) -> Iterator[tuple[dict[str, str], Path]]:
    """``python -m pipelines.serve`` in ``base``; its environment and log."""
    env = {
        **os.environ,
        "PORTABILITY_STAGING": str(base / "staging"),
        "PORTABILITY_EXPORTS": str(base / "exports"),
        "PORTABILITY_API_STATE": str(base / "api"),
        "PORTABILITY_API_CALLBACK_POLL": "0.2",
        "DAGSTER_HOME": str(base / "dagster_home"),
    }
    home = base / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text((ROOT / "dagster_home/dagster.yaml").read_text())
    cmd = [sys.executable, "-m", "pipelines.serve", "--port", str(free_port())]
    cmd += ["--api-port", str(api_port), "--world", str(BENCH_DIR / "api-world" / "world")]
    cmd += ["--dagster-home", str(home)]
    log = base / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield env, log
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"timed out waiting for {what}")


def latency(n: int) -> dict[str, Any]:
    from request_store import RequestStore

    base = BENCH_DIR / "api" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    api_port, callbacks = free_port(), Callbacks()
    api = f"http://127.0.0.1:{api_port}{PREFIX}"
    with serve(base, api_port) as (env, log):
        wait_until(lambda: httpx.get(f"{api}/discovery").status_code == 200, 300, "the API")
        loaded = "Serving dagster-webserver"
        wait_until(lambda: loaded in log.read_text(), 300, "the Dagster webserver")
        portal = f"bench-{uuid.uuid4().hex[:6]}"
        add = [sys.executable, "-m", "api", "add-portal", portal]
        token = subprocess.run(add, env=env, cwd=ROOT, check=True, capture_output=True, text=True)
        headers = {"Authorization": f"Bearer {token.stdout.strip()}"}
        world = json.loads((BENCH_DIR / "api-world" / "world" / "world.json").read_text())
        emails = [world["edge_cases"][s]["emails"][0] for s in SUBJECTS]
        rows: list[dict[str, float]] = []
        store = RequestStore.open(base / "dagster_home" / "requests.sqlite")
        for i in range(n + 1):
            b = body(emails[i % len(emails)], [callbacks.url])
            t0 = datetime.now(UTC)
            r = httpx.post(f"{api}/requests", json=b, headers=headers, timeout=30)
            r.raise_for_status()
            done = callbacks.wait(b["subject_request_id"], "completed", timeout=120)
            if done is None:
                raise SystemExit(f"no completed callback; see {log}")
            req = store.find_external(b["subject_request_id"], portal)
            assert req is not None
            at = {e.event: e.at for e in store.events(req.request_id)}
            if i == 0:
                continue  # warm-up: the code server's first run
            rows.append(
                {
                    "total": (done - t0).total_seconds(),
                    "to_claimed": (at["claimed"] - t0).total_seconds(),
                    "run": (at["completed"] - at["claimed"]).total_seconds(),
                    "callback": (done - at["completed"]).total_seconds(),
                }
            )
        store.close()

    def med(k: str) -> float:
        return round(statistics.median(r[k] for r in rows), 2)

    return {
        "benchmark": "POST /requests to completed callback (make serve, demo world)",
        "n": len(rows),
        "p50_s": med("total"),
        "max_s": round(max(r["total"] for r in rows), 2),
        "median_post_to_claimed_s": med("to_claimed"),
        "median_run_s": med("run"),
        "median_completed_to_callback_s": med("callback"),
    }


def load(url: str, token: str, seconds: float, concurrency: int) -> None:
    """The load generator (a second process): posts until the time is up; prints JSON."""
    counts = {"accepted": 0, "other": 0}
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker() -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=30) as c:
            while time.monotonic() < stop:
                r = c.post(f"{url}/requests", json=body("load@example.org", []))
                with lock:
                    counts["accepted" if r.status_code == 201 else "other"] += 1

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({**counts, "seconds": time.monotonic() - t0}))


def throughput(seconds: float) -> dict[str, Any]:
    base = BENCH_DIR / "api-load" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    port = free_port()
    env = {
        **os.environ,
        "PORTABILITY_REQUEST_STORE": str(base / "requests.sqlite"),
        "PORTABILITY_API_STATE": str(base / "api"),
        "PORTABILITY_API_PORT": str(port),
        "PORTABILITY_API_RATE": "1000000",
        "PORTABILITY_API_BURST": "1000000",
        "PORTABILITY_API_CALLBACKS": "0",
    }
    env.pop("PORTABILITY_DAGSTER_URL", None)
    base.mkdir(parents=True)
    add = [sys.executable, "-m", "api", "add-portal", "load"]
    token = subprocess.run(add, env=env, cwd=ROOT, check=True, capture_output=True, text=True)
    log = open(base / "api.log", "wb")  # noqa: SIM115 (closed below)
    server = subprocess.Popen(
        [sys.executable, "-m", "api"], env=env, cwd=ROOT, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}{PREFIX}"
    try:
        wait_until(lambda: httpx.get(f"{url}/discovery").status_code == 200, 60, "the API")
        cmd = [sys.executable, "-m", "benchmarks.bench_api", "--load", url, token.stdout.strip()]
        cmd += [str(seconds), str(CONCURRENCY)]
        out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
        figures = json.loads(out)
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()
    return {
        "benchmark": "POST /requests accepted per second (second process, loopback)",
        "accepted_per_s": round(figures["accepted"] / figures["seconds"], 1),
        "accepted": figures["accepted"],
        "refused": figures["other"],
        "connections": CONCURRENCY,
        "store": "SQLite",
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_api")
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--load", nargs=4, metavar=("URL", "TOKEN", "SECONDS", "CONNECTIONS"))
    args = parser.parse_args(argv)
    if args.load:
        url, token, secs, conns = args.load
        load(url, token, float(secs), int(conns))
        return []
    figures = [latency(args.requests), throughput(args.seconds)]
    for f in figures:
        print(json.dumps(f), flush=True)
    return figures


if __name__ == "__main__":
    main()
