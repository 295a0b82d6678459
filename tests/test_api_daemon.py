"""The rights-portal API beside a real Dagster (``dagster dev``: webserver and daemon).

A request the API accepts is launched at once through the webserver; one it could not
launch, because the API was killed right after answering, is launched by the sensor after
its grace. Both complete with one run each, each status is called back once and signed,
and each download holds its own subject's data.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from dagster import DagsterInstance, RunsFilter

from api.auth import Portals
from api.launcher import LAUNCH_GRACE_S, LAUNCH_WINDOW_S, LaunchWorker
from api.tables import create as create_api_tables
from request_store import RequestStore
from tests import api_fixtures
from tests.api_fixtures import PREFIX, TestPortal, copy_keys, request_body, wait_until
from tests.dagster_fixtures import (
    BIN,
    ROOT,
    dagster_home,
    free_port,
    portability_env,
    tail,
    wait_until_loaded,
)
from tests.world_fixtures import Demo, edge

api_keys, portal = api_fixtures.api_keys, api_fixtures.portal
__all__ = ["api_keys", "portal"]


@pytest.fixture
def dagster_dev(demo: Demo, tmp_path: Path) -> Iterator[tuple[str, dict[str, str], Path]]:
    """``dagster dev`` on a fresh DAGSTER_HOME; its URL, environment and log."""
    port = free_port()
    home = dagster_home(tmp_path / "dagster_home")
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        **portability_env(tmp_path, demo),
        "DAGSTER_HOME": str(home),
        "PORTABILITY_DAGSTER_URL": url,
    }
    log = tmp_path / "dagster.log"
    cmd = [str(BIN / "dagster"), "dev", "-m", "pipelines.definitions", "-p", str(port)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*cmd, "-h", "127.0.0.1"], cwd=ROOT, env=env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_until_loaded(url, proc, log, timeout=180)
        yield url, env, log
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_requests_launch_at_once_and_survive_the_api_killed_mid_request(
    demo: Demo,
    dagster_dev: tuple[str, dict[str, str], Path],
    api_keys: Path,
    portal: TestPortal,
    tmp_path: Path,
) -> None:
    _, env, dagster_log = dagster_dev
    port, log = free_port(), tmp_path / "api.log"
    api_env = {
        **env,
        "PORTABILITY_API_PORT": str(port),
        "PORTABILITY_API_STATE": str(tmp_path / "api"),
        "PORTABILITY_API_CALLBACK_POLL": "0.2",
    }
    copy_keys(api_keys, tmp_path / "api")
    store = RequestStore.open(env["PORTABILITY_REQUEST_STORE"])
    create_api_tables(store.engine)
    headers = {"Authorization": f"Bearer {Portals(store.engine).add('portal-a')}"}
    base = f"http://127.0.0.1:{port}{PREFIX}"
    procs: list[subprocess.Popen[bytes]] = []

    def start_api(**extra: str) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "api"], cwd=ROOT, env={**api_env, **extra},
                stdout=out, stderr=out,
            )  # fmt: skip
        procs.append(proc)

        def up() -> bool:
            assert proc.poll() is None, f"the API exited:\n{tail(log)}"
            try:
                return httpx.get(f"{base}/discovery", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(up, 30, "the API", log)
        return proc

    emails = {s: edge(demo, s)["emails"][0] for s in ("multi_account", "shared_org_member")}

    def post(subject: str) -> str:
        identity = {"identity_type": "email", "identity_format": "raw"}
        body = request_body(
            subject_identities=[{**identity, "identity_value": emails[subject]}],
            submitted_time=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            status_callback_urls=[portal.url],
        )
        assert httpx.post(f"{base}/requests", json=body, headers=headers).status_code == 201
        return str(body["subject_request_id"])

    try:
        # the first API process cannot reach Dagster, and is killed after its 201
        first = start_api(PORTABILITY_DAGSTER_URL=f"http://127.0.0.1:{free_port()}")
        portal.certificate = httpx.get(
            httpx.get(f"{base}/discovery").json()["processor_certificate"]
        ).content
        portal.start()
        orphan = post("multi_account")
        wait_until(lambda: "left to the sensor" in log.read_text(), 10, "the failed launch", log)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        # restarted: the next request is launched at once, the orphan by the sensor
        start_api()
        direct = post("shared_org_member")

        def completed() -> bool:
            done = [r.json["subject_request_id"] for r in portal.received
                    if r.json["request_status"] == "completed"]  # fmt: skip
            return sorted(done) == sorted([orphan, direct])

        wait_until(completed, 180, "both completed callbacks", dagster_log)
        time.sleep(1.0)  # a few more outbox rounds: nothing may arrive twice
        by_request: dict[str, list[str]] = {}
        for r in portal.received:
            assert r.verified
            by_request.setdefault(r.json["subject_request_id"], []).append(r.json["request_status"])
        assert by_request == {orphan: ["in_progress", "completed"],
                              direct: ["in_progress", "completed"]}  # fmt: skip

        with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            for srid, launched_by in ((orphan, "sensor"), (direct, "api")):
                rid = store.find_external(srid, "portal-a").request_id  # type: ignore[union-attr]
                runs = instance.get_runs(RunsFilter(tags={"dagster/partition": rid}))
                assert len(runs) == 1, f"{len(runs)} runs for one request"
                tags = runs[0].tags
                by = "api" if tags.get("portability/launched_by") == "api" else (
                    "sensor" if tags.get("dagster/sensor_name") == "export_requests_sensor" else "?"
                )  # fmt: skip
                assert by == launched_by

        for subject, srid in (("multi_account", orphan), ("shared_org_member", direct)):
            status = httpx.get(f"{base}/requests/{srid}", headers=headers).json()
            download = httpx.get(status["results_url"])
            assert download.status_code == 200
            with zipfile.ZipFile(io.BytesIO(download.content)) as z:
                people = json.loads(z.read("data/personal.json"))
            assert [p["email"] for p in people] == [emails[subject]]
        logs = log.read_text() + dagster_log.read_text()
        assert not [e for e in emails.values() if e in logs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)
        store.close()


class Recorder:
    """A launcher that records what it was asked to launch (the real one is tested above)."""

    def __init__(self) -> None:
        self.launched: list[str] = []

    def launch(self, request_id: str) -> str:
        self.launched.append(request_id)
        return f"run-{request_id}"

    def close(self) -> None:
        pass


def test_a_request_past_the_launch_window_is_left_to_the_sensor() -> None:
    now = datetime.now(UTC)
    recorder = Recorder()
    worker = LaunchWorker(recorder, lambda: now)  # type: ignore[arg-type]
    worker.start()
    worker.submit("late", now - timedelta(seconds=LAUNCH_WINDOW_S + 1))
    worker.submit("fresh", now - timedelta(seconds=1))
    worker.stop()  # drains the queue first
    assert recorder.launched == ["fresh"]
    assert LAUNCH_GRACE_S > LAUNCH_WINDOW_S * 2  # the sensor waits well past the window
