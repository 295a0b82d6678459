"""The bulk job on a cluster: its batches run as Celery tasks on two worker processes.

Real parts only: the Redis on this machine as broker and result store, two
``celery worker`` processes, the run launched as ``dagster job execute`` with
``PORTABILITY_CELERY_BROKER`` set (so the job's executor is dagster-celery), a SQLite
request store and Dagster instance shared by all processes, the demo world's sources.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import uuid
import zipfile
from pathlib import Path

import dagster as dg
import pytest
import yaml

from engine.request import Identity
from exporters.delivery import file_sha256
from pipelines.defs.bulk.schedules import bulk_run_config
from request_store import RequestSpec, RequestStore, State
from tests.celery_workers import REDIS_URL, VENV_BIN, Workers, purge
from tests.world_fixtures import Demo

ROOT = Path(__file__).resolve().parent.parent
SUBJECTS = 12
BATCH = 3  # four batches for two workers


@pytest.mark.timeout(400)
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_batches_run_on_two_celery_workers(demo: Demo, tmp_path: Path) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env_file = tmp_path / "sources.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in demo.env.items()))
    queue = f"bulk_{uuid.uuid4().hex[:10]}"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "PORTABILITY_STAGING": str(tmp_path / "staging"),
        "PORTABILITY_EXPORTS": str(tmp_path / "out"),
        "PORTABILITY_ENV_FILE": str(env_file),
        "PORTABILITY_CELERY_BROKER": REDIS_URL,
        "PORTABILITY_CELERY_BACKEND": REDIS_URL,
        "PORTABILITY_CELERY_QUEUE": queue,
        "PYTHONPATH": str(ROOT),
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("PORTABILITY_REQUEST_STORE", None)  # default: in DAGSTER_HOME
    with sqlite3.connect(demo.root / "crm.sqlite") as con:
        emails = [
            e
            for (e,) in con.execute("select email from people order by email limit ?", (SUBJECTS,))
        ]
    with RequestStore.open(home / "requests.sqlite") as store:
        ids = [
            store.submit(
                RequestSpec(request_type="access", identities=[Identity("email", e)], lane="bulk")
            )[0].request_id
            for e in emails
        ]
    # the instance's tables exist before several processes open it at once
    with dg.DagsterInstance.from_config(str(home)):
        pass
    purge(queue)
    workers = Workers(tmp_path, queue, env)
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(bulk_run_config("waiting", batch_size=BATCH)))
    try:
        workers.start(ROOT)
        workers.wait_ready()
        run = subprocess.run(
            [str(VENV_BIN / "dagster"), "job", "execute", "-m", "pipelines.definitions",
             "-j", "bulk_export", "-c", str(config)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        worker_pids = workers.pids()
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:] + workers.logs()
    finally:
        workers.stop()
        purge(queue)

    with dg.DagsterInstance.from_config(str(home)) as instance:
        (record,) = instance.get_runs()
        assert record.status == dg.DagsterRunStatus.SUCCESS
        starts = instance.all_logs(record.run_id, of_type=dg.DagsterEventType.STEP_START)
    step_pids = {
        e.dagster_event.pid
        for e in starts
        if e.dagster_event and (e.step_key or "").startswith("export_batch")
    }
    assert len([e for e in starts if (e.step_key or "").startswith("export_batch")]) == 4
    assert len(step_pids) >= 2 and step_pids <= worker_pids, (step_pids, worker_pids)

    with RequestStore.open(home / "requests.sqlite") as store:
        for rid, email in zip(ids, emails, strict=True):
            req = store.get(rid)
            assert req.state == State.COMPLETED, (req.state, req.failure)
            archive = Path(req.result_location or "")
            assert file_sha256(archive) == req.result_sha256
            with zipfile.ZipFile(archive) as z:
                assert email in z.read("data/personal.json").decode()
    leaked = [
        p.relative_to(home)
        for p in home.rglob("*")
        if p.is_file()
        and not p.name.startswith("requests.sqlite")
        and any(e.encode() in p.read_bytes() for e in emails)
    ]
    assert not leaked  # no email in Dagster's storage, logs or IO-manager pickles
