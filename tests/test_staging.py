"""The staging area keeps small subjects in memory and spills big ones to Parquet,
with the same records either way."""

from __future__ import annotations

import stat
from pathlib import Path

import pyarrow as pa

from engine.staging import Staging, held_bytes, prepare_root
from tests.world_fixtures import Demo, Exporter


def _batches(n: int) -> list[pa.RecordBatch]:
    return [pa.record_batch({"id": [f"x{i}-{j}" for j in range(100)]}) for i in range(n)]


def test_memory_and_spill_give_the_same_batches(tmp_path: Path) -> None:
    small = Staging(tmp_path, "in-memory")
    spill = Staging(tmp_path, "spilled", memory_limit=2_000)
    for i, b in enumerate(_batches(6)):
        for st in (small, spill):
            st.write("d", f"s.e{i % 2}", b)
    for st in (small, spill):
        st.finish()
    assert not small.staged_paths()
    assert spill.staged_paths()  # it did spill
    as_table = lambda st: pa.Table.from_batches(list(st.batches("d")))  # noqa: E731
    assert as_table(small).equals(as_table(spill))
    assert stat.S_IMODE(spill.path.stat().st_mode) == 0o700
    spill.cleanup()
    assert not spill.path.exists()


def test_spilled_export_is_byte_identical(demo: Demo, exporter: Exporter, tmp_path: Path) -> None:
    import json

    email = json.loads((demo.root / "world.json").read_text())["edge_cases"]["heavy_user"][
        "emails"
    ][0]
    kept = exporter.export(("email", email), request_id="spill", out=tmp_path / "a")
    spilled = exporter.export(
        ("email", email), request_id="spill", out=tmp_path / "b", staging_memory_limit=0
    )
    assert kept.delivered.sha256 == spilled.delivered.sha256


def test_cleanup_removes_flat_and_nested_areas(tmp_path: Path) -> None:
    root = tmp_path / "staging"
    flat = Staging(root, "flat")
    (flat.folder() / "archive.zip").write_bytes(b"zip")
    nested = Staging(root, "nested", memory_limit=0)  # every batch spills to Parquet
    nested.write("ds", "crm.people", pa.record_batch({"a": [1, 2]}))
    (nested.path / "files" / "x").mkdir(parents=True)
    (nested.path / "files" / "x" / "photo.jpg").write_bytes(b"jpg")
    for area in (flat, nested):
        area.cleanup()
        assert not area.path.exists()
    flat.cleanup()  # twice is harmless
    assert list(root.iterdir()) == []


def test_prepare_root_makes_it_private_and_areas_can_skip_it(tmp_path: Path) -> None:
    root = tmp_path / "staging"
    prepare_root(root)
    root.chmod(0o755)  # made public behind the batch's back: the next prepare mends it
    prepare_root(root)
    assert root.stat().st_mode & 0o777 == 0o700
    area = Staging(root, "r1", root_ready=True)
    assert area.folder().is_dir() and area.path.stat().st_mode & 0o777 == 0o700


def test_an_area_touches_the_disk_only_when_something_must_be_written(tmp_path: Path) -> None:
    """Records held in memory need no folder; a spill or ``folder()`` makes it (0700).
    An area left by a crashed attempt is emptied when the request starts again."""
    root = tmp_path / "staging"
    area = Staging(root, "r1")
    area.write("d", "s.e", _batches(1)[0])
    area.finish()
    assert [b.num_rows for b in area.batches("d")] == [100]
    assert not area.path.exists()
    area.cleanup()
    assert list(root.iterdir()) == []
    spilled = Staging(root, "r2", memory_limit=0)
    spilled.write("d", "s.e", _batches(1)[0])
    assert spilled.path.stat().st_mode & 0o777 == 0o700
    (spilled.path / "left-over").write_bytes(b"x")
    again = Staging(root, "r2")
    assert not again.path.exists()
    assert again.folder().is_dir() and list(again.path.iterdir()) == []


def test_the_budget_counts_the_memory_a_batch_keeps_alive(tmp_path: Path) -> None:
    """A slice of a large batch holds the large batch's buffers: it counts them all, so
    the budget bounds real memory (and a slice that would pass it spills)."""
    big = _batches(1)[0]
    one_row = big.slice(0, 1)
    assert held_bytes(one_row) == held_bytes(big) > one_row.nbytes
    area = Staging(tmp_path, "r1", memory_limit=held_bytes(big) - 1)
    area.write("d", "s.e", one_row)
    area.finish()
    assert area.staged_paths()  # spilled: the slice pins more than the limit
    assert [b.num_rows for b in area.batches("d")] == [1]


def test_a_batch_charged_by_the_caller_is_given_back_as_charged(tmp_path: Path) -> None:
    """Slices of one batch shared by several areas are charged their share of it
    (``nbytes``); dropping an entity or cleaning up gives back exactly that."""
    from engine.staging import MemoryBudget

    budget = MemoryBudget(1_000)
    shared = _batches(1)[0]
    a = Staging(tmp_path, "a", budget=budget)
    b = Staging(tmp_path, "b", budget=budget)
    a.write("d", "s.e", shared.slice(0, 50), nbytes=400)
    a.write("d", "s.f", shared.slice(50, 10), nbytes=100)
    b.write("d", "s.e", shared.slice(60, 40), nbytes=450)
    assert budget.used == 950 and not a.staged_paths()
    b.write("d", "s.f", shared.slice(0, 1), nbytes=100)  # past the budget: b spills
    assert b.staged_paths() and budget.used == 500
    a.drop({"s.f"})
    assert budget.used == 400
    a.cleanup()
    b.cleanup()
    assert budget.used == 0
