"""The code location in process, for tests: an instance, the request store, the sensors.

Loaded by ``tests/conftest.py`` as a plugin, so every test can ask for ``location``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from pipelines.definitions import build_definitions
from pipelines.defs.requests.sensors import (
    export_requests_sensor,
    export_run_failed,
    export_run_succeeded,
)
from pipelines.lib.settings import PortabilityResource
from request_store import RequestStore
from tests.world_fixtures import Demo


@dataclass
class Location:
    home: Path  # DAGSTER_HOME
    staging: Path
    exports: Path
    instance: dg.DagsterInstance
    defs: dg.Definitions
    store: RequestStore

    def run_export(self, request_id: str) -> dg.ExecuteInProcessResult:
        job = self.defs.resolve_job_def("export_request")
        return job.execute_in_process(
            partition_key=request_id, instance=self.instance, raise_on_error=False
        )

    def sensor_tick(self, cursor: str | None = None) -> dg.SensorResult:
        portability = {"portability": PortabilityResource()}
        with dg.build_sensor_context(
            instance=self.instance, cursor=cursor, resources=portability
        ) as ctx:
            result = export_requests_sensor(ctx)
        assert isinstance(result, dg.SensorResult)
        for req in result.dynamic_partitions_requests or []:
            self.instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
        return result

    def report(self, result: dg.ExecuteInProcessResult) -> None:
        """Run the run-status sensors on a finished run, as the daemon would."""
        run = self.instance.get_run_by_id(result.run_id)
        assert run is not None
        kind = (
            dg.DagsterEventType.RUN_SUCCESS if result.success else dg.DagsterEventType.RUN_FAILURE
        )
        event = self.instance.get_records_for_run(result.run_id, of_type=kind).records[-1]
        sensor = export_run_succeeded if result.success else export_run_failed
        ctx = dg.build_run_status_sensor_context(
            sensor_name=sensor.name,
            dagster_instance=self.instance,
            dagster_run=run,
            dagster_event=event.event_log_entry.dagster_event,
        )
        if not result.success:
            ctx = ctx.for_run_failure()
        sensor(ctx)


@pytest.fixture
def location(demo: Demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Location]:
    home, staging, exports = tmp_path / "dagster_home", tmp_path / "staging", tmp_path / "out"
    home.mkdir()
    env_file = tmp_path / "sources.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in demo.env.items()))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("PORTABILITY_STAGING", str(staging))
    monkeypatch.setenv("PORTABILITY_EXPORTS", str(exports))
    monkeypatch.setenv("PORTABILITY_ENV_FILE", str(env_file))
    monkeypatch.delenv("PORTABILITY_REQUEST_STORE", raising=False)  # default: in DAGSTER_HOME
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        store = RequestStore.open(PortabilityResource().store_url())
        try:
            yield Location(home, staging, exports, instance, build_definitions(), store)
        finally:
            store.close()
