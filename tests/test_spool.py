"""Archives built in memory while small, on disk past a limit: the same bytes either way,
private files when they go to disk, and a typical export that touches no staging file."""

from __future__ import annotations

import io
import os
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.datamap import load_datamap
from engine.export import run_export
from engine.request import ExportRequest, Identity
from engine.staging import Staging
from exporters import zipwriter
from exporters.delivery import LocalFolderDelivery, file_sha256
from exporters.spool import ArchiveSpool
from exporters.zipwriter import ArchiveWriter
from tests.world_fixtures import AS_OF, Demo, edge

WHEN = datetime(2026, 6, 30, 12, tzinfo=UTC)


def _archive(target: Path | io.BytesIO | ArchiveSpool) -> None:
    """Small entries written whole, then one that streams and has its header completed
    in place afterwards (a seek back over what was written before)."""
    with ArchiveWriter(target, timestamp=WHEN) as zw:  # type: ignore[arg-type]
        zw.add_bytes("data/a.json", b'[{"x": 1}]\n' * 50)
        with zw.open("files/noise.bin", compress=False) as out:
            for _ in range(6):
                out.write(os.urandom(1000))
        zw.add_bytes("README.html", b"<p>hello</p>")


@pytest.mark.parametrize("limit", [0, 1, 3_000, 10_000, 1 << 20])
def test_memory_or_file_the_archive_has_the_same_bytes(
    tmp_path: Path, limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(zipwriter, "_BUFFER", 2_000)  # the 6 KB entry streams
    monkeypatch.setattr(os, "urandom", lambda n: bytes(i % 251 for i in range(n)))
    reference = io.BytesIO()
    _archive(reference)
    spool = ArchiveSpool(tmp_path / "area" / "archive.zip", limit)
    _archive(spool)
    spool.close()
    whole = reference.getvalue()
    if len(whole) <= limit:
        assert spool.data == whole
        assert not (tmp_path / "area").exists()  # nothing touched the disk
    else:
        assert spool.data is None
        assert spool.path.read_bytes() == whole
        assert spool.path.stat().st_mode & 0o777 == 0o600
        assert spool.path.parent.stat().st_mode & 0o777 == 0o700
    with zipfile.ZipFile(io.BytesIO(whole)) as z:
        assert z.testzip() is None


def test_save_puts_an_archive_held_in_memory_in_its_file(tmp_path: Path) -> None:
    spool = ArchiveSpool(tmp_path / "a" / "archive.zip")
    spool.write(b"PK")
    spool.close()
    assert spool.data == b"PK"
    spool.save()
    assert spool.data is None and spool.path.read_bytes() == b"PK"


def test_a_typical_export_is_packed_and_delivered_without_a_staging_file(
    demo: Demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A subject without customer files: no staging folder is made (every file made and
    removed costs the file system), and its archive is the one of an export whose
    records spilled to disk."""
    made: list[str] = []
    folder = Staging.folder

    def counted(self: Staging) -> Path:
        made.append(self.path.name)
        return folder(self)

    monkeypatch.setattr(Staging, "folder", counted)
    email = edge(demo, "no_objects")["emails"][0]
    dm = load_datamap()

    def export(rid: str, out: str, **options: int) -> str:
        req = ExportRequest(rid, "access", (Identity("email", email),), as_of=AS_OF)
        done = run_export(
            req,
            dm,
            LocalFolderDelivery(tmp_path / out),
            staging_root=tmp_path / "staging",
            env=demo.env,
            **options,
        )
        assert done.delivered.sha256 == file_sha256(Path(done.delivered.location))
        return done.delivered.sha256

    in_memory = export("r-memory", "a")
    assert made == [] and list((tmp_path / "staging").iterdir()) == []
    spilled = export("r-memory", "b", staging_memory_limit=0)  # records spill to Parquet
    assert set(made) == {"r-memory"} and list((tmp_path / "staging").iterdir()) == []
    assert spilled == in_memory
