"""An export in parts: every part a whole ZIP (zipfile and unzip read it), together the
same entries as the single archive, none past the limit, the part list in part 1, the
same bytes twice, oversized files cut into pieces that join back, bounded memory."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tracemalloc
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from engine.export import load_register
from exporters.package import ArchiveContent, DatasetInput, FileInput, Packing, pack, pack_parts

AS_OF = datetime(2026, 7, 1, 12, 0, 0, tzinfo=UTC)
KB, MB = 1024, 1 << 20
LIMIT = 200_000  # the demo export below is about 640 KB as one archive


def _dataset(name: str, rows: int, rnd: random.Random, about: str = "") -> DatasetInput:
    schema = pa.schema([("id", pa.string()), ("kind", pa.string()), ("note", pa.string())])
    table = pa.table(
        {
            "id": [f"{name}-{i:06d}" for i in range(rows)],
            "kind": [rnd.choice(["login", "view", "buy"]) for _ in range(rows)],
            "note": [rnd.randbytes(24).hex() for _ in range(rows)],
        },
        schema=schema,
    )
    props = {"id": {"type": "string"}, "kind": {"type": "string"}, "note": {"type": "string"}}
    doc = {"title": name, "description": about, "type": "object", "properties": props}
    return DatasetInput(
        name, name.title(), f"The {name} records", f"{name}-1.0.0.json", doc, schema,
        lambda: iter(table.to_batches(max_chunksize=700)),
    )  # fmt: skip


def _inputs(folder: Path, extra: dict[str, int] | None = None, about: str = "") -> ArchiveContent:
    """Two datasets and customer files (``extra``: more files, name -> random bytes)."""
    rnd = random.Random(11)
    blobs = {
        "files/photos/a.jpg": rnd.randbytes(120 * KB),
        "files/docs/b.pdf": rnd.randbytes(80 * KB),
        "files/notes/c.txt": b"".join(b"line %d of my notes\n" % i for i in range(12000)),
        "files/Ünïcode name.txt": "grüße\n".encode(),
    }
    files = []
    for arc, data in blobs.items():
        files.append(FileInput(arc, folder / "staged" / arc, len(data)))
        files[-1].staged.parent.mkdir(parents=True, exist_ok=True)
        files[-1].staged.write_bytes(data)
    for arc, size in (extra or {}).items():
        files.append(FileInput(arc, folder / "staged" / arc, size))
        with open(files[-1].staged, "wb") as out:
            for left in range(size, 0, -MB):
                out.write(rnd.randbytes(min(MB, left)))
    datasets = [_dataset("personal", 40, rnd, about), _dataset("event", 3000, rnd)]

    def manifest(data_files: dict[str, list[str]]) -> dict[str, Any]:
        return {
            "request": {"id": "req-1", "type": "access", "legal_basis": "GDPR Art. 15"},
            "as_of": "2026-07-01T12:00:00Z",
            "generated_by": "tests",
            "datamap_version": "1",
            "statement": "This archive holds all personal data about you.",
            "datasets": [{"name": d, "records": 1, "files": f} for d, f in data_files.items()],
            "sources": [],
            "customer_files": {"count": len(files), "bytes": sum(f.size for f in files)},
            "withheld": [],
            "excluded": [],
            "redactions": {"count": 0, "reason": ""},
            "notices": [],
        }

    return ArchiveContent(as_of=AS_OF, formats=("json", "csv", "parquet"), datasets=datasets,
                          files=files, manifest=manifest, register=load_register(),
                          source_notes={}, package_name="personal-data-export")  # fmt: skip


def _pack(folder: Path, inputs: ArchiveContent, limit: int | None) -> Packing:
    (folder / "out").mkdir(parents=True, exist_ok=True)
    target = folder / "out" / "archive.zip"
    return pack_parts(target, inputs, max_part_bytes=limit, part_stem="req-1")


def _contents(path: Path) -> dict[str, str]:
    with zipfile.ZipFile(path) as z:
        return {n: hashlib.sha256(z.read(n)).hexdigest() for n in z.namelist()}


def _unzip_test(path: Path) -> None:
    """Debian's unzip, or the stdlib's own test when it is not installed."""
    if shutil.which("unzip"):
        run = subprocess.run(["unzip", "-t", str(path)], capture_output=True, text=True)
    else:
        cmd = [sys.executable, "-m", "zipfile", "-t", str(path)]
        run = subprocess.run(cmd, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> tuple[Packing, Path]:
    tmp = tmp_path_factory.mktemp("split")
    inputs = _inputs(tmp)
    pack(tmp / "whole.zip", inputs)
    return _pack(tmp, inputs, LIMIT), tmp / "whole.zip"


def test_parts_open_alone_and_hold_the_whole_export(split: tuple[Packing, Path]) -> None:
    packing, whole = split
    parts = packing.parts
    assert len(parts) >= 3
    assert [p.name for p in parts] == [f"req-1-{i:03d}.zip" for i in range(1, len(parts) + 1)]
    assert sorted(p.name for p in parts[0].path.parent.iterdir()) == [p.name for p in parts]
    seen: dict[str, str] = {}
    for p in parts:
        assert p.path.stat().st_size == p.bytes <= LIMIT
        assert os.stat(p.path).st_mode & 0o777 == 0o600
        _unzip_test(p.path)
        with zipfile.ZipFile(p.path) as z:
            assert z.testzip() is None
            assert tuple(z.namelist()) == p.entries
            assert z.comment.decode().startswith(f"Part {p.number} of {len(parts)} ")
        contents = _contents(p.path)
        assert not set(contents) & set(seen), "an entry in two parts"
        seen |= contents
    expected = _contents(whole)
    retold = {"manifest.json", "README.html"}  # part 1's tell of the parts too
    assert set(seen) == set(expected) | {"parts.json"}
    assert {n: h for n, h in seen.items() if n not in retold | {"parts.json"}} == {
        n: h for n, h in expected.items() if n not in retold
    }
    with zipfile.ZipFile(parts[0].path) as z, zipfile.ZipFile(whole) as w:
        manifest, readme = json.loads(z.read("manifest.json")), z.read("README.html").decode()
        assert {k: v for k, v in manifest.items() if k != "parts"} == json.loads(
            w.read("manifest.json")
        )
    files = [p.name for p in parts]
    assert manifest["parts"] == packing.manifest["parts"] == {
        "count": len(parts), "files": files, "list": "parts.json"
    }  # fmt: skip
    assert f"This export comes in {len(parts)} parts" in readme
    assert all(name in readme for name in files) and "data/personal.csv" in readme


def test_part_list_in_part_one(split: tuple[Packing, Path]) -> None:
    parts = split[0].parts
    with zipfile.ZipFile(parts[0].path) as z:
        doc = json.loads(z.read("parts.json"))
    assert doc["count"] == len(parts) and doc["max_part_bytes"] == LIMIT
    assert doc["split_files"] == []
    listed = doc["parts"]
    assert [(d["number"], d["file"], tuple(d["entries"])) for d in listed] == [
        (p.number, p.name, p.entries) for p in parts
    ]
    assert listed[0]["bytes"] is listed[0]["sha256"] is None  # it cannot hash itself
    for d, p in zip(listed[1:], parts[1:], strict=True):
        assert d["bytes"] == p.bytes == p.path.stat().st_size
        assert d["sha256"] == p.sha256 == hashlib.sha256(p.path.read_bytes()).hexdigest()
    assert parts[0].sha256 == hashlib.sha256(parts[0].path.read_bytes()).hexdigest()


def test_no_limit_or_room_enough_gives_todays_archive(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path)
    pack(tmp_path / "today.zip", inputs)
    today = (tmp_path / "today.zip").read_bytes()
    for i, limit in enumerate((None, len(today), 2_000_000_000)):
        packing = _pack(tmp_path / str(i), inputs, limit)
        (one,) = packing.parts
        assert one.path.read_bytes() == today and one.bytes == len(today)
        assert one.name == "req-1.zip" and one.path.name == "archive.zip"
        assert one.sha256 == hashlib.sha256(today).hexdigest()
        assert list(one.entries) == [e.arcname for e in packing.entries]
        assert "parts" not in packing.manifest
    with pytest.raises(ValueError, match="at least"):
        _pack(tmp_path / "tiny", inputs, 1000)


def test_same_input_same_parts(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path, {"files/video.mp4": 450 * KB})
    a, b = _pack(tmp_path / "a", inputs, LIMIT), _pack(tmp_path / "b", inputs, LIMIT)
    assert [p.path.read_bytes() for p in a.parts] == [p.path.read_bytes() for p in b.parts]
    again = _pack(tmp_path / "a", inputs, 300_000)  # fewer parts: none left over
    names = sorted(p.name for p in (tmp_path / "a" / "out").iterdir())
    assert names == [p.name for p in again.parts] and len(again.parts) < len(a.parts)


def test_oversized_files_come_in_pieces_that_join_back(tmp_path: Path) -> None:
    big = {"files/video.mp4": 700 * KB, "files/big.bin": 500 * KB}  # stored, deflated
    packing = _pack(tmp_path, _inputs(tmp_path, big), LIMIT)
    assert all(p.bytes <= LIMIT for p in packing.parts)  # no exception for them
    with zipfile.ZipFile(packing.parts[0].path) as z:
        split = {f["path"]: f for f in json.loads(z.read("parts.json"))["split_files"]}
        readme = z.read("README.html").decode()
    assert set(split) == set(big)
    by_entry = {n: p for p in packing.parts for n in p.entries}
    unpacked = tmp_path / "unpacked"
    for p in packing.parts:  # all parts into one folder, as the README asks
        with zipfile.ZipFile(p.path) as z:
            z.extractall(unpacked)
    for path, f in split.items():
        assert path not in by_entry and len(f["pieces"]) >= 3
        assert f["pieces"] == [f"{path}.{k:03d}" for k in range(1, len(f["pieces"]) + 1)]
        assert all(by_entry[n].entries == (n,) for n in f["pieces"])  # each alone in a part
        subprocess.run(f["join"], shell=True, cwd=unpacked, check=True)
        data = (unpacked / path).read_bytes()
        staged = (tmp_path / "staged" / path).read_bytes()
        assert data == staged and len(data) == f["bytes"] == big[path]
        assert hashlib.sha256(data).hexdigest() == f["sha256"]
        assert f["join"].replace(">", "&gt;") in readme
    assert packing.manifest["customer_files"]["count"] == 6


def test_index_too_big_for_a_part_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    about = random.Random(3).randbytes(80 * KB).hex()  # a schema of 160 KB
    with pytest.raises(ValueError, match="too small for the index"):
        _pack(tmp_path, _inputs(tmp_path, about=about), 128 * KB)
    assert list((tmp_path / "out").iterdir()) == []


def test_memory_stays_bounded(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path, {"files/movie.mkv": 40 * MB, "files/scan.tiff": 12 * MB})
    tracemalloc.start()
    try:
        packing = _pack(tmp_path, inputs, 8 * MB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * MB, f"peak Python memory {peak / MB:.1f} MB"
    assert len(packing.parts) >= 7 and all(p.bytes <= 8 * MB for p in packing.parts)
