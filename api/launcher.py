"""Direct launch: a portal's new request starts its Dagster run at once.

Without it a request waits for ``export_requests_sensor``, whose daemon loop ticks every
5 to 10 s. With ``PORTABILITY_DAGSTER_URL`` set (``make serve`` sets it), the API hands
each new request to a background thread that asks the Dagster webserver over GraphQL to
add the request's partition and launch ``export_request`` for it; the run then waits in
Dagster's queue like any other, within the limits of ``dagster.yaml``.

It is best effort, and the sensor stays the durable path: with the same variable set,
the sensor leaves a portal's request alone for ``LAUNCH_GRACE_S`` seconds
(``pipelines/defs/requests/sensors.py``), then launches it unless a run for it exists.
The thread does not try a launch later than ``LAUNCH_WINDOW_S`` after the request was
received, well inside that grace, so the two never both launch one request. A launch
that fails (webserver down, a reload) is logged with the request id and the error's
type, and left to the sensor. Nothing personal is sent: the request id is opaque.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx

log = logging.getLogger("api.launcher")

LAUNCH_WINDOW_S = 5.0  # no direct launch later than this after receipt
LAUNCH_GRACE_S = 15.0  # the sensor's wait for a portal's request (must exceed the window)
EXPORT_JOB, PARTITIONS = "export_request", "export_requests"
QUEUE_SIZE = 10_000  # beyond it, requests are left to the sensor

ADD_PARTITION = """
mutation ($repo: RepositorySelector!, $def: String!, $key: String!) {
  addDynamicPartition(repositorySelector: $repo, partitionsDefName: $def, partitionKey: $key) {
    __typename
  }
}
"""
LAUNCH = """
mutation ($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
  }
}
"""
ADDED = {"AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError"}


class LaunchError(RuntimeError):
    """Dagster refused or did not answer (the message holds GraphQL type names only)."""


class DagsterLauncher:
    """Launches export runs through the Dagster webserver's GraphQL API."""

    def __init__(
        self,
        url: str,
        *,
        location: str = "pipelines.definitions",
        repository: str = "__repository__",
        timeout_s: float = LAUNCH_WINDOW_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/") + "/graphql"
        self.repo = {"repositoryLocationName": location, "repositoryName": repository}
        self.client = httpx.Client(timeout=timeout_s, transport=transport)

    def launch(self, request_id: str) -> str:
        """Add the request's partition and launch its run; the run id."""
        added = self._call(ADD_PARTITION, {"repo": self.repo, "def": PARTITIONS, "key": request_id})
        if added["addDynamicPartition"]["__typename"] not in ADDED:
            raise LaunchError(f"addDynamicPartition: {added['addDynamicPartition']['__typename']}")
        params = {
            "selector": {**self.repo, "jobName": EXPORT_JOB},
            "runConfigData": {},
            "executionMetadata": {
                "tags": [
                    {"key": "dagster/partition", "value": request_id},
                    {"key": "portability/launched_by", "value": "api"},
                ]
            },
        }
        result = self._call(LAUNCH, {"params": params})["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            raise LaunchError(f"launchRun: {result['__typename']}")
        return str(result["run"]["runId"])

    def _call(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        r = self.client.post(self.url, json={"query": query, "variables": variables})
        if r.status_code != 200:
            raise LaunchError(f"Dagster answered HTTP {r.status_code}")
        body = r.json()
        if body.get("errors") or not body.get("data"):
            raise LaunchError("Dagster returned GraphQL errors")
        return dict(body["data"])

    def close(self) -> None:
        self.client.close()


class LaunchWorker:
    """One background thread that launches queued requests in order, never the caller's."""

    def __init__(self, launcher: DagsterLauncher, clock: Callable[[], datetime]) -> None:
        self.launcher, self.clock = launcher, clock
        self._queue: queue.Queue[tuple[str, datetime] | None] = queue.Queue(QUEUE_SIZE)
        self._thread: threading.Thread | None = None

    def submit(self, request_id: str, received_at: datetime) -> None:
        """Queue a launch; a full queue leaves the request to the sensor."""
        try:
            self._queue.put_nowait((request_id, received_at))
        except queue.Full:
            log.warning("launch queue full: request %s left to the sensor", request_id)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="dagster-launch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            request_id, received_at = item
            if (self.clock() - received_at).total_seconds() > LAUNCH_WINDOW_S:
                log.warning("request %s left to the sensor (launch window passed)", request_id)
                continue
            try:
                run_id = self.launcher.launch(request_id)
            except (httpx.HTTPError, LaunchError, ValueError, KeyError) as exc:
                log.warning("request %s left to the sensor: %s", request_id, _why(exc))
                continue
            log.info("request %s: run %s launched", request_id, run_id)

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=LAUNCH_WINDOW_S + 5)
            self._thread = None
        self.launcher.close()


def _why(exc: Exception) -> str:
    return str(exc) if isinstance(exc, LaunchError) else type(exc).__name__
