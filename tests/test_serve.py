"""``make serve`` (``python -m pipelines.serve``) for real: a world built, the payment
stand-in, the webserver and the daemon up; a request in the store is exported through the
sensor, the run queue and the source pools of ``dagster.yaml``; Ctrl-C stops everything."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from demo_world.envfile import read_env
from request_store import Identity, RequestSpec, RequestStore
from tests.dagster_fixtures import ROOT, dagster_home, free_port, graphql, tail, wait_until_loaded

RUN = "query ($runId: ID!) { runOrError(runId: $runId) { ... on Run { status jobName } } }"
DAEMONS = "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy } } } }"
# the queue, the crash retries and run monitoring of dagster.yaml, and the sensors and schedule
NEEDED = {"QUEUED_RUN_COORDINATOR", "EVENT_LOG_CONSUMER", "MONITORING", "SENSOR", "SCHEDULER"}


def healthy_daemons(url: str, timeout: float = 60) -> set[str]:
    deadline = time.monotonic() + timeout
    healthy: set[str] = set()
    while time.monotonic() < deadline and not healthy >= NEEDED:
        statuses = graphql(url, DAEMONS)["instance"]["daemonHealth"]["allDaemonStatuses"]
        healthy = {s["daemonType"] for s in statuses if s["healthy"]}
        time.sleep(1)
    return healthy


SCHEDULES = """
{ repositoriesOrError { ... on RepositoryConnection {
    nodes { schedules { name scheduleState { status } } } } } }
"""
BULK_SCHEDULES = {"pending_exports_nightly", "recurring_exports", "organisation_exports"}


DELIVERY = """
query ($partition: String!) {
  assetNodeOrError(assetKey: {path: ["delivery"]}) {
    ... on AssetNode { latestMaterializationByPartition(partitions: [$partition]) { runId } }
  }
}
"""


def delivered_by(url: str, partition: str, timeout: float = 120) -> str | None:
    """The run that delivered ``partition``, once the daemon has run it (None if it did not)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        node = graphql(url, DELIVERY, {"partition": partition})["assetNodeOrError"]
        [latest] = node["latestMaterializationByPartition"]
        if latest:
            return str(latest["runId"])
        time.sleep(1)
    return None


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_serve_runs_the_ui_and_the_daemon_exports_a_request_and_stops_on_ctrl_c(
    tmp_path: Path,
) -> None:
    port, api_port = free_port(), free_port()
    world = tmp_path / "demo" / "world"
    home = dagster_home(tmp_path / "dagster_home")
    env = {
        **os.environ,
        "PORTABILITY_STAGING": str(tmp_path / "staging"),
        "PORTABILITY_EXPORTS": str(tmp_path / "exports"),
        "PORTABILITY_API_STATE": str(tmp_path / "api"),
    }
    cmd = [sys.executable, "-m", "pipelines.serve", "--port", str(port)]
    cmd += ["--api-port", str(api_port)]
    cmd += ["--world", str(world), "--dagster-home", str(home)]
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        # its own process group, as a terminal gives it: Ctrl-C goes to the whole group
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_loaded(url, proc, log, timeout=240)  # builds the world first
        assert (world / "world.json").is_file()

        nodes = graphql(url, "{ assetNodes { assetKey { path } } }")["assetNodes"]
        assert ["delivery"] in [n["assetKey"]["path"] for n in nodes]
        assert healthy_daemons(url) >= NEEDED, tail(log)
        repos = graphql(url, SCHEDULES)["repositoriesOrError"]["nodes"]
        running = {
            s["name"]
            for r in repos
            for s in r["schedules"]
            if s["scheduleState"]["status"] == "RUNNING"
        }
        assert running >= BULK_SCHEDULES  # the scheduler daemon ticks them from the start

        serve_env = world.parent / "serve.env"
        assert stat.S_IMODE(serve_env.stat().st_mode) == 0o600  # it holds the API token
        settings = read_env(serve_env)
        assert read_env(world / "world.env").items() <= settings.items()
        payments = settings["PAYMENTS_API_URL"]
        assert httpx.get(f"{payments}/v1/customers/x", timeout=5).status_code == 401  # it's up
        for _ in range(60):  # the API starts beside the UI
            if listening(api_port):
                break
            time.sleep(0.5)
        discovery = httpx.get(f"http://127.0.0.1:{api_port}/opendsr/v2/discovery", timeout=10)
        assert discovery.status_code == 200 and discovery.json()["api_version"] == "2.0"
        assert "portal 'demo' registered" in log.read_text()

        # a request in the store: the sensor adds its partition, the queue launches the run
        email = json.loads((world / "world.json").read_text())["edge_cases"]["multi_account"]
        with RequestStore.open(home / "requests.sqlite") as store:
            req, _ = store.submit(
                RequestSpec(
                    request_type="access", identities=[Identity("email", email["emails"][0])]
                )
            )
        run_id = delivered_by(url, req.request_id)
        assert run_id, f"request {req.request_id} was not delivered:\n{tail(log)}"
        run = graphql(url, RUN, {"runId": run_id})["runOrError"]
        assert run == {"status": "SUCCESS", "jobName": "export_request"}
        assert list((tmp_path / "exports").glob(f"{req.request_id}*.zip"))

        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        assert proc.wait(timeout=60) == 0, tail(log)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{payments}/v1/customers/x", timeout=5)
        assert not listening(port) and not listening(api_port)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
