"""An export in steps (as Dagster runs it): collect each system, check, pack, deliver."""

from __future__ import annotations

import stat
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.datamap import load_datamap
from engine.export import ExportFailed, run_export
from engine.request import ExportRequest, Identity
from engine.staging import Staging
from engine.steps import ExportSteps
from exporters.delivery import LocalFolderDelivery
from tests.world_fixtures import AS_OF, Demo, edge


def request(email: str, request_id: str = "steps-1") -> ExportRequest:
    return ExportRequest(request_id, "access", (Identity("email", email),), as_of=AS_OF)


def steps_for(demo: Demo, root: Path, req: ExportRequest, **env: str) -> ExportSteps:
    return ExportSteps(req, load_datamap(), root / "staging", env={**demo.env, **env})


def run_all(steps: ExportSteps, out: Path) -> str:
    for system in steps.systems():
        steps.collect(system)
    for dataset in steps.dm.datasets():
        assert steps.check(dataset) == []
    steps.pack()
    [delivered] = steps.deliver(LocalFolderDelivery(out))
    return delivered.sha256


def test_steps_give_the_archive_of_a_single_run(demo: Demo, tmp_path: Path) -> None:
    email = edge(demo, "multi_account")["emails"][0]
    whole = run_export(
        request(email),
        load_datamap(),
        LocalFolderDelivery(tmp_path / "whole"),
        staging_root=tmp_path / "staging-whole",
        env=demo.env,
    )
    steps = steps_for(demo, tmp_path, request(email))
    assert steps.systems() == {
        "crm": [],
        "event_lake": ["crm"],
        "object_store": ["crm"],
        "payments": ["crm"],
    }
    assert run_all(steps, tmp_path / "steps") == whole.delivered.sha256
    assert not steps.area.exists()  # removed once delivered


def test_a_system_waits_for_the_systems_whose_keys_it_needs(demo: Demo, tmp_path: Path) -> None:
    steps = steps_for(demo, tmp_path, request(edge(demo, "multi_account")["emails"][0]))
    with pytest.raises(ExportFailed, match="payments: collect crm first"):
        steps.collect("payments")
    steps.collect("crm")
    with pytest.raises(ExportFailed, match="not every system was collected"):
        steps.pack()
    with pytest.raises(ValueError, match="no system 'nowhere'"):
        steps.collect("nowhere")


def test_collecting_again_duplicates_nothing(demo: Demo, tmp_path: Path) -> None:
    email = edge(demo, "multi_account")["emails"][0]
    once = run_all(steps_for(demo, tmp_path / "a", request(email)), tmp_path / "a-out")
    steps = steps_for(demo, tmp_path / "b", request(email))
    first = steps.collect("crm")
    again = steps.collect("crm")  # a retry of the step
    assert first == again and sum(first.records.values()) > 0
    steps.collect("object_store")
    steps.collect("object_store")
    assert run_all(steps, tmp_path / "b-out") == once


def test_a_failed_step_names_its_source_and_a_retry_completes(demo: Demo, tmp_path: Path) -> None:
    email = edge(demo, "multi_account")["emails"][0]
    reference = run_all(steps_for(demo, tmp_path / "ref", request(email)), tmp_path / "ref-out")
    down = steps_for(demo, tmp_path, request(email), PAYMENTS_API_URL="http://127.0.0.1:9")
    down.collect("crm")
    with pytest.raises(ExportFailed) as err:
        down.collect("payments")
    assert err.value.failed_sources and err.value.failed_sources[0].startswith("payments.")
    assert email not in str(err.value)
    with pytest.raises(ExportFailed):
        down.pack()  # payments never collected: no partial archive
    later = steps_for(demo, tmp_path, request(email))  # the source is back; as_of kept
    assert run_all(later, tmp_path / "out") == reference


def test_the_area_is_private_and_staged_records_are_checked_again(
    demo: Demo, tmp_path: Path
) -> None:
    steps = steps_for(demo, tmp_path, request(edge(demo, "multi_account")["emails"][0]))
    steps.collect("crm")
    assert steps.collect("object_store").files > 0
    for path in [steps.area, *steps.area.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
    schema = steps.schemas["personal"].compiled.arrow_schema
    bad = pa.table({n: pa.nulls(1, f.type) for n, f in zip(schema.names, schema, strict=True)})
    pq.write_table(bad, steps.area / "datasets" / "personal" / "tampered.parquet")
    found = steps.check("personal")
    assert found and {v.entity for v in found} == {"(staged)"}
    assert all(v.dataset == "personal" and v.count == 1 for v in found)
    steps.discard()
    assert not steps.area.exists()


def test_a_crash_mid_collection_loses_nothing_and_duplicates_nothing(
    demo: Demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process dies while a system's records and files are half staged; a new
    process collects that system again and delivers the archive a clean run gives."""
    email = edge(demo, "heavy_user")["emails"][0]
    reference = run_all(steps_for(demo, tmp_path / "ref", request(email)), tmp_path / "ref-out")
    first = steps_for(demo, tmp_path, request(email))
    first.collect("crm")
    staged = []
    real_write = Staging.write

    def dying_write(
        self: Staging, dataset: str, ref: str, batch: pa.RecordBatch, nbytes: int | None = None
    ) -> None:
        real_write(self, dataset, ref, batch, nbytes)
        staged.append(ref)
        if ref == "object_store.files":
            raise SystemExit("killed")  # after the files were copied and a batch staged

    monkeypatch.setattr(Staging, "write", dying_write)
    with pytest.raises(SystemExit):
        first.collect("object_store")
    monkeypatch.setattr(Staging, "write", real_write)
    assert staged and list((first.area / "files").rglob("*"))  # half-staged leftovers
    after = steps_for(demo, tmp_path, request(email))  # a new process, same area
    assert run_all(after, tmp_path / "out") == reference
