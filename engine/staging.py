"""The private per-request staging area: where extracted data waits to be packed.

``<root>/<request_id>/`` with mode 0700, holding ``datasets/<dataset>/<entity>.parquet``,
``files/`` (customer files under their archive names) and the archive being built.
It is removed when the request ends, delivered or not.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


class Staging:
    def __init__(self, root: Path, request_id: str) -> None:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(root, 0o700)
        self.path = root / request_id
        if self.path.exists():  # a crashed earlier attempt: start clean
            shutil.rmtree(self.path)
        self.path.mkdir(mode=0o700)
        self.datasets = self.path / "datasets"
        self.files = self.path / "files"
        self.datasets.mkdir(mode=0o700)
        self.files.mkdir(mode=0o700)
        self._writers: dict[tuple[str, str], pq.ParquetWriter] = {}

    def dataset_file(self, dataset: str, entity_ref: str) -> Path:
        return self.datasets / dataset / f"{entity_ref}.parquet"

    def write(self, dataset: str, entity_ref: str, batch: pa.RecordBatch) -> None:
        key = (dataset, entity_ref)
        writer = self._writers.get(key)
        if writer is None:
            path = self.dataset_file(dataset, entity_ref)
            path.parent.mkdir(exist_ok=True, mode=0o700)
            writer = pq.ParquetWriter(path, batch.schema, compression="zstd")
            self._writers[key] = writer
        writer.write_batch(batch)

    def finish(self) -> None:
        for w in self._writers.values():
            w.close()
        self._writers.clear()

    def staged_files(self, dataset: str) -> list[Path]:
        """Staged Parquet files of a dataset, in a stable order."""
        folder = self.datasets / dataset
        return sorted(folder.glob("*.parquet")) if folder.exists() else []

    def cleanup(self) -> None:
        self.finish()
        shutil.rmtree(self.path, ignore_errors=True)
