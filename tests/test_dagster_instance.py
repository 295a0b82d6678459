"""The shipped ``dagster_home/dagster.yaml``, loaded as Dagster loads it, and PostgreSQL
instance storage (dagster-postgres) against the server on this machine."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import yaml
from dagster import (
    AssetsDefinition,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    QueuedRunCoordinator,
)
from dagster._core.events import RunFailureReason
from dagster._core.execution.retries import auto_reexecution_should_retry_run
from dagster._core.instance.config import PoolGranularity
from dagster._utils.tags import TagConcurrencyLimitsCounter

from tests.conftest import PG_HOST, PG_PORT
from tests.dagster_fixtures import (
    EXPORT_JOB,
    PARTITIONS,
    ROOT,
    SOURCE_POOLS,
    dagster_home,
    export_one,
    portability_env,
)
from tests.world_fixtures import Demo, edge


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[DagsterInstance]:
    """An instance on a copy of the shipped dagster.yaml (as DAGSTER_HOME would load it)."""
    with DagsterInstance.from_config(str(dagster_home(tmp_path / "home"))) as inst:
        yield inst


def test_telemetry_is_off_and_runs_are_queued_within_limits(instance: DagsterInstance) -> None:
    assert instance.telemetry_enabled is False
    assert instance.nux_enabled is False
    assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
    queue = instance.get_concurrency_config().run_queue_config  # what the queue daemon reads
    assert queue is not None
    assert queue.max_concurrent_runs == 4
    assert queue.max_user_code_failure_retries == 3
    assert "QUEUED_RUN_COORDINATOR" in instance.get_required_daemon_types()


def run(partition: str | None = None, **tags: str) -> DagsterRun:
    if partition:
        tags["dagster/partition"] = partition
    return DagsterRun(job_name=EXPORT_JOB, run_id=str(uuid.uuid4()), tags=tags)


def test_one_run_per_request_at_a_time_and_backfills_leave_room(
    instance: DagsterInstance,
) -> None:
    limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
    # the queue daemon's own counter, as it is built from the instance's limits
    counter = TagConcurrencyLimitsCounter(limits, [run("req-a")])
    assert counter.is_blocked(run("req-a"))  # a second run of the same request waits
    assert not counter.is_blocked(run("req-b"))  # another request does not

    two_backfill_runs = [run(f"b{i}", **{"dagster/backfill": "bf1"}) for i in range(2)]
    counter = TagConcurrencyLimitsCounter(limits, two_backfill_runs)
    assert counter.is_blocked(run("b3", **{"dagster/backfill": "bf1"}))
    assert not counter.is_blocked(run("dpo-request"))


@pytest.mark.parametrize("pool", sorted(SOURCE_POOLS))
def test_each_source_pool_runs_at_most_two_steps_at_once(
    instance: DagsterInstance, pool: str
) -> None:
    pools = instance.get_concurrency_config().pool_config
    assert pools.default_pool_limit == 2
    assert pools.pool_granularity == PoolGranularity.OP
    storage = instance.event_log_storage
    assert storage.initialize_concurrency_limit_to_default(pool)  # as a step does first
    assert storage.get_concurrency_info(pool).slot_count == 2
    claims = [storage.claim_concurrency_slot(pool, f"run-{i}", f"collected__{pool}") for i in "abc"]
    assert [c.is_claimed for c in claims] == [True, True, False]


def test_the_code_locations_pools_are_the_source_pools() -> None:
    from pipelines.definitions import defs

    assets = [a for a in defs.assets or [] if isinstance(a, AssetsDefinition)]
    assert {a.op.pool for a in assets if a.op.pool} == SOURCE_POOLS


def failed_run(instance: DagsterInstance, parent: DagsterRun | None = None) -> DagsterRun:
    """A failed export run; with ``parent``, a re-execution of it (as a retry is)."""
    tags = {"dagster/partition": "req-a"}
    parent_id = root_id = None
    if parent:
        parent_id, root_id = parent.run_id, parent.root_run_id or parent.run_id
        tags |= {"dagster/parent_run_id": parent_id, "dagster/root_run_id": root_id}
    r = DagsterRun(
        job_name=EXPORT_JOB,
        run_id=str(uuid.uuid4()),
        status=DagsterRunStatus.FAILURE,
        tags=tags,
        parent_run_id=parent_id,
        root_run_id=root_id,
    )
    return instance.add_run(r)


def test_a_crashed_run_is_retried_twice_an_asset_failure_is_not(
    instance: DagsterInstance,
) -> None:
    assert instance.run_retries_enabled
    assert instance.run_retries_max_retries == 2
    assert instance.run_retries_retry_on_asset_or_op_failure is False
    assert "EVENT_LOG_CONSUMER" in instance.get_required_daemon_types()  # the retry daemon

    def retried(r: DagsterRun, reason: RunFailureReason) -> bool:
        return auto_reexecution_should_retry_run(instance, r, reason)

    first = failed_run(instance)
    assert not retried(first, RunFailureReason.STEP_FAILURE)  # assets retry themselves
    assert retried(first, RunFailureReason.UNEXPECTED_TERMINATION)  # the run process died
    assert retried(first, RunFailureReason.START_TIMEOUT)
    second = failed_run(instance, parent=first)
    assert retried(second, RunFailureReason.RUN_EXCEPTION)
    third = failed_run(instance, parent=second)  # two retries spent
    assert not retried(third, RunFailureReason.UNEXPECTED_TERMINATION)


def test_runs_that_never_start_are_failed_by_run_monitoring(instance: DagsterInstance) -> None:
    assert instance.run_monitoring_enabled
    assert instance.run_monitoring_start_timeout_seconds == 180
    assert "MONITORING" in instance.get_required_daemon_types()


# ---------------------------------------------------------------- PostgreSQL instance storage


def readme_postgres_storage(db_name: str) -> str:
    """The ``storage: postgres:`` block the README documents, on this machine's server."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"```yaml\n(storage:\n  postgres:\n.*?)```", text, re.S)
    assert found, "README.md documents no `storage: postgres:` block"
    config = yaml.safe_load(found.group(1))
    db = config["storage"]["postgres"]["postgres_db"]
    assert db["scheme"] == "postgresql+psycopg2"  # the driver dagster-postgres ships
    db.update(hostname=PG_HOST, port=PG_PORT, username="postgres", db_name=db_name)
    return yaml.safe_dump(config)


@pytest.mark.postgres
def test_postgres_instance_storage_holds_an_export_run(
    postgres_url: str, demo: Demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "")  # the README's password variable; trust auth
    db_name = postgres_url.rsplit("/", 1)[1]
    home = dagster_home(tmp_path / "home", readme_postgres_storage(db_name))
    env = portability_env(tmp_path, demo)
    with DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        rid, run_id = export_one(instance, env, edge(demo, "no_payments")["emails"][0])

    # what PostgreSQL itself holds: the run, the partition, the delivery's materialization
    with psycopg.connect(postgres_url) as conn:
        runs = conn.execute(
            "select run_id, status from runs where pipeline_name = %s", (EXPORT_JOB,)
        ).fetchall()
        partitions = conn.execute(
            "select partition from dynamic_partitions where partitions_def_name = %s",
            (PARTITIONS,),
        ).fetchall()
        delivered = conn.execute(
            "select run_id from event_logs where dagster_event_type = 'ASSET_MATERIALIZATION'"
            " and asset_key = %s and partition = %s",
            ('["delivery"]', rid),
        ).fetchall()
    assert runs == [(run_id, "SUCCESS")]
    assert partitions == [(rid,)]
    assert delivered == [(run_id,)]
    assert not (home / "history").exists()  # nothing went to SQLite files in DAGSTER_HOME
