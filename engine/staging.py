"""The private per-request staging area: where extracted data waits to be packed.

``<root>/<request_id>/`` with mode 0700, holding ``datasets/<dataset>/<entity>.parquet``
(once records spill), ``files/`` (customer files under their archive names) and the
archive being built when it is too large for memory (or is to be encrypted). The folder
is made only when something is to be written in it (``folder()``): a typical subject's
area never touches the disk. It is removed when the request ends, delivered or not.

A typical subject's records are small: they stay in memory as Arrow batches until they
pass ``memory_limit`` bytes, and then everything spills to the Parquet files, so memory
stays bounded whatever the subject's size.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Collection, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

MEMORY_LIMIT = 64 << 20


class MemoryBudget:
    """Bytes of staged records that staging areas may hold in memory, together.

    A single export has a budget of its own; the subjects of a batch export share one,
    so a batch's memory is bounded however its records fall among its subjects.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self, nbytes: int) -> bool:
        with self._lock:
            if self.used + nbytes > self.limit:
                return False
            self.used += nbytes
            return True

    def give(self, nbytes: int) -> None:
        with self._lock:
            self.used -= nbytes


def held_bytes(batch: pa.RecordBatch) -> int:
    """The memory a batch keeps alive: its buffers whole, also where it is a slice of a
    larger batch (which ``nbytes`` would count by its own rows only, at 30 us a call)."""
    return batch.get_total_buffer_size()


def prepare_root(root: Path) -> None:
    """Make the staging root, private to its owner (0700), whatever it was before."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(root, 0o700)


class Staging:
    def __init__(
        self,
        root: Path,
        request_id: str,
        memory_limit: int = MEMORY_LIMIT,
        *,
        resume: bool = False,
        budget: MemoryBudget | None = None,
        root_ready: bool = False,
    ) -> None:
        """Open the request's area, emptied first unless ``resume`` (steps of one export).

        Records are held in memory while ``budget`` (default: ``memory_limit`` bytes of
        this area's own) allows, then everything of this area spills to Parquet.
        ``root_ready``: the caller has made ``root`` private (``prepare_root``) already,
        as a batch does once for its subjects' areas. The area's folder is made by
        ``folder()``, when something first needs it."""
        if not root_ready:
            prepare_root(root)
        self.path = root / request_id
        if not resume and os.path.lexists(self.path):  # a crashed earlier attempt: start clean
            shutil.rmtree(self.path)
        self._made = resume and self.path.is_dir()
        self.datasets = self.path / "datasets"  # made when a batch first spills
        self._writers: dict[tuple[str, str], pq.ParquetWriter] = {}
        self._memory: dict[tuple[str, str], list[pa.RecordBatch]] = {}
        self._key_bytes: dict[tuple[str, str], int] = {}  # what each key's batches were charged
        self._memory_bytes = 0
        self._on_disk = resume  # whether records may sit in Parquet files (spilled, resumed)
        self.memory_limit = memory_limit
        self.budget = budget or MemoryBudget(memory_limit)
        self._lock = threading.Lock()  # entities are read (and staged) in parallel

    def folder(self) -> Path:
        """The area's folder (0700), made on first use.

        Made only when needed: every folder made and removed per subject costs the file
        system (ext4 without a journal, for one, looks past each inode freed in the last
        30 seconds when it allocates the next: 0.5 ms a file at a batch's pace)."""
        if not self._made:
            self.path.mkdir(mode=0o700, exist_ok=True)
            self._made = True
        return self.path

    def dataset_file(self, dataset: str, entity_ref: str) -> Path:
        return self.datasets / dataset / f"{entity_ref}.parquet"

    def write(
        self, dataset: str, entity_ref: str, batch: pa.RecordBatch, nbytes: int | None = None
    ) -> None:
        """Stage a batch of an entity; an entity's batches keep their order (thread-safe).

        ``nbytes``: the memory to charge it with, when the caller knows better than its
        buffers (a slice of a batch shared with other areas: its share of it)."""
        key = (dataset, entity_ref)
        size = held_bytes(batch) if nbytes is None else nbytes
        with self._lock:
            if not self._writers and self.budget.take(size):
                self._memory.setdefault(key, []).append(batch)
                self._key_bytes[key] = self._key_bytes.get(key, 0) + size
                self._memory_bytes += size
                return
            self._spill()
            self._write_file(key, batch)

    def _spill(self) -> None:
        """Move every batch held in memory to its Parquet file."""
        for key, batches in self._memory.items():
            for b in batches:
                self._write_file(key, b)
        self._memory.clear()
        self._key_bytes.clear()
        self.budget.give(self._memory_bytes)
        self._memory_bytes = 0

    def _write_file(self, key: tuple[str, str], batch: pa.RecordBatch) -> None:
        writer = self._writers.get(key)
        if writer is None:
            self._on_disk = True
            path = self.dataset_file(*key)
            self.folder()
            self.datasets.mkdir(exist_ok=True, mode=0o700)
            path.parent.mkdir(exist_ok=True, mode=0o700)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))  # private
            writer = pq.ParquetWriter(path, batch.schema, compression="zstd")
            self._writers[key] = writer
        writer.write_batch(batch)

    def finish(self) -> None:
        with self._lock:
            for w in self._writers.values():
                w.close()
            self._writers.clear()

    def drop(self, entity_refs: Collection[str]) -> None:
        """Forget what these entities staged (before they are read again)."""
        with self._lock:
            for key in [k for k in self._memory if k[1] in entity_refs]:
                del self._memory[key]
                freed = self._key_bytes.pop(key, 0)
                self._memory_bytes -= freed
                self.budget.give(freed)
            for ref in entity_refs:
                for path in self.datasets.glob(f"*/{ref}.parquet"):
                    path.unlink()

    def staged_paths(self) -> list[Path]:
        """Parquet files written so far (empty while everything fits in memory)."""
        return sorted(self.datasets.glob("*/*.parquet"))

    def batches(self, dataset: str, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        """A dataset's staged batches, entity by entity in name order (call after finish)."""
        refs = {ref for ds, ref in self._memory if ds == dataset}
        folder = self.datasets / dataset
        if self._on_disk and folder.exists():
            refs |= {p.stem for p in folder.glob("*.parquet")}
        for ref in sorted(refs):
            held = self._memory.get((dataset, ref))
            if held is not None:
                for b in held:
                    yield b.select(columns) if columns else b
                continue
            path = self.dataset_file(dataset, ref)
            if path.exists():
                yield from pq.ParquetFile(path).iter_batches(batch_size=65_536, columns=columns)

    def cleanup(self) -> None:
        self.finish()
        with self._lock:
            self._memory.clear()
            self._key_bytes.clear()
            self.budget.give(self._memory_bytes)
            self._memory_bytes = 0
        _remove(self.path)


def _remove(path: Path) -> None:
    """Remove an area: its files and itself when it holds no folder (an area after
    packing: the archive), else the whole tree."""
    try:
        with os.scandir(path) as it:
            entries = list(it)
        if not any(e.is_dir(follow_symlinks=False) for e in entries):
            for e in entries:
                os.unlink(e.path)
            os.rmdir(path)
            return
    except FileNotFoundError:
        return
    except OSError:
        pass
    shutil.rmtree(path, ignore_errors=True)
