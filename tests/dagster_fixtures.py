"""Fixtures for the Dagster tests: an instance with the shipped ``dagster.yaml``, one request
exported through the code location, and ``dagster-webserver`` serving it for real.

Loaded by ``tests/conftest.py`` as a plugin, so every test can ask for ``dagster_ui``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from dagster import DagsterInstance

from demo_world.envfile import write_env
from request_store import Identity, RequestSpec, RequestStore
from tests.world_fixtures import Demo, edge

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_YAML = ROOT / "dagster_home" / "dagster.yaml"
BIN = Path(sys.executable).parent
EXPORT_JOB = "export_request"
PARTITIONS = "export_requests"

EXPORT_ASSETS = {
    *(f"collected/{s}" for s in ("crm", "event_lake", "object_store", "payments")),
    *(
        f"normalized/{d}"
        for d in (
            "personal",
            "account",
            "organisation_membership",
            "support_ticket",
            "marketing_consent",
            "usage_event",
            "customer_object",
            "payment",
        )
    ),
    "archive",
    "delivery",
}
SOURCE_POOLS = {"source_crm", "source_event_lake", "source_object_store", "source_payments"}


def dagster_home(path: Path, extra_yaml: str = "") -> Path:
    """A fresh DAGSTER_HOME at ``path``: the shipped ``dagster.yaml``, plus ``extra_yaml``."""
    path.mkdir(parents=True)
    shutil.copy(SHIPPED_YAML, path / "dagster.yaml")
    if extra_yaml:
        with open(path / "dagster.yaml", "a", encoding="utf-8") as f:
            f.write("\n" + extra_yaml)
    return path


def portability_env(base: Path, demo: Demo) -> dict[str, str]:
    """The code location's settings for a test: store, staging, exports and the world's env."""
    env_file = base / "portability.env"
    write_env(env_file, demo.env, "the demo world of the test session", "end")
    return {
        "PORTABILITY_REQUEST_STORE": str(base / "requests.sqlite"),
        "PORTABILITY_STAGING": str(base / "staging"),
        "PORTABILITY_EXPORTS": str(base / "exports"),
        "PORTABILITY_ENV_FILE": str(env_file),
    }


def export_one(instance: DagsterInstance, env: Mapping[str, str], email: str) -> tuple[str, str]:
    """Submit a request (as the DPO's channel does) and run its export partition in-process.

    Returns the request id (the partition key) and the run's id.
    """
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        with RequestStore.open(env["PORTABILITY_REQUEST_STORE"]) as store:
            req, _ = store.submit(
                RequestSpec(
                    request_type="access", identities=[Identity("email", email)], channel="dpo"
                )
            )
        rid = req.request_id
        instance.add_dynamic_partitions(PARTITIONS, [rid])
        from pipelines.definitions import defs

        job = defs.resolve_job_def(EXPORT_JOB)
        result = job.execute_in_process(partition_key=rid, instance=instance, raise_on_error=False)
        failures = [e.message for e in result.all_events if e.is_failure]
        assert result.success, f"the export run of {rid} failed: {failures}"
    return rid, result.run_id


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def graphql(url: str, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """POST a query to ``<url>/graphql``; its ``data`` (GraphQL errors fail the test)."""
    r = httpx.post(
        f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=30
    )
    r.raise_for_status()
    body = r.json()
    assert not body.get("errors"), body["errors"]
    return body["data"]


LOCATIONS = """
{ workspaceOrError { __typename ... on Workspace { locationEntries {
    name loadStatus
    locationOrLoadError { __typename ... on PythonError { message } }
} } } }
"""


def wait_until_loaded(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Until the server answers GraphQL and its code location is loaded (fails otherwise)."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the Dagster server exited ({proc.returncode}):\n{tail(log)}")
        try:
            data = graphql(url, LOCATIONS)
        except (httpx.HTTPError, ValueError) as err:
            last = repr(err)
        else:
            entries = data["workspaceOrError"].get("locationEntries") or []
            errors = [
                e["locationOrLoadError"]["message"]
                for e in entries
                if (e["locationOrLoadError"] or {}).get("__typename") == "PythonError"
            ]
            if errors:
                pytest.fail(f"the code location failed to load:\n{errors[0]}")
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                return
            last = repr(data)
        time.sleep(0.25)
    pytest.fail(f"the Dagster server did not come up in {timeout} s ({last}):\n{tail(log)}")


def tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""


@contextmanager
def stopping(proc: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    """The process, terminated (then killed) when the block ends."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@contextmanager
def webserver(home: Path, env: Mapping[str, str], log: Path) -> Iterator[str]:
    """``dagster-webserver -m pipelines.definitions`` on a free port; its base URL."""
    port = free_port()
    cmd = [str(BIN / "dagster-webserver"), "-m", "pipelines.definitions"]
    cmd += ["-h", "127.0.0.1", "-p", str(port)]
    full_env = {**os.environ, **env, "DAGSTER_HOME": str(home)}
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=full_env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    with stopping(proc):
        url = f"http://127.0.0.1:{port}"
        wait_until_loaded(url, proc, log, timeout=120)
        yield url


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Each phase's report on the test item (``rep_call``...): fixtures see a failed test."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@dataclass
class DagsterUI:
    url: str
    home: Path
    request_id: str  # a request exported (delivered) before the server started
    run_id: str  # its export run
    log: Path


@pytest.fixture(scope="session")
def dagster_ui(demo: Demo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterUI]:
    """The webserver on a DAGSTER_HOME (shipped dagster.yaml) where one request was exported."""
    base = tmp_path_factory.mktemp("dagster_ui")
    home = dagster_home(base / "dagster_home")
    env = portability_env(base, demo)
    with DagsterInstance.from_config(str(home)) as instance:
        rid, run_id = export_one(instance, env, edge(demo, "multi_account")["emails"][0])
    log = base / "webserver.log"
    with webserver(home, env, log) as url:
        yield DagsterUI(url, home, rid, run_id, log)
