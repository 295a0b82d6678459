"""A request's delivery options through the engine: parts past a maximum size and
encryption to the recipient's key, the same from ``run_export`` and from the steps
Dagster runs, and read back with standard tools (zipfile, ``age``)."""

from __future__ import annotations

import io
import json
import subprocess
import zipfile
from datetime import UTC, datetime
from pathlib import Path

from engine.datamap import load_datamap
from engine.export import run_export
from engine.request import ExportRequest, Identity
from engine.steps import ExportSteps
from exporters.delivery import LocalFolderDelivery, file_sha256
from tests.test_encryption import age, new_identity
from tests.world_fixtures import Demo, edge

__all__ = ["age"]
AS_OF = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LIMIT = 256 * 1024


def request(demo: Demo, **options: object) -> ExportRequest:
    email = edge(demo, "heavy_user")["emails"][0]
    return ExportRequest("opts-1", "access", (Identity("email", email),), as_of=AS_OF, **options)  # type: ignore[arg-type]


def whole(demo: Demo, out: Path, req: ExportRequest):
    return run_export(
        req, load_datamap(), LocalFolderDelivery(out), staging_root=out / "staging", env=demo.env
    )


def by_steps(demo: Demo, root: Path, req: ExportRequest) -> list:
    steps = ExportSteps(req, load_datamap(), root / "staging", env=demo.env)
    for system in steps.systems():
        steps.collect(system)
    packed = steps.pack()
    delivered = steps.deliver(LocalFolderDelivery(root / "out"))
    assert packed.parts == len(delivered) and not steps.area.exists()
    return delivered


def entries(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None
        return {n: z.read(n) for n in z.namelist()}


def test_a_large_archive_comes_in_parts_the_same_from_steps_and_run_export(
    demo: Demo, tmp_path: Path
) -> None:
    one = whole(demo, tmp_path / "one", request(demo))
    assert len(one.parts) == 1 and Path(one.delivered.location).name == "opts-1.zip"
    assert one.delivered.bytes > 3 * LIMIT  # big enough to split
    split = whole(demo, tmp_path / "split", request(demo, max_part_bytes=LIMIT))
    names = [Path(p.location).name for p in split.parts]
    assert names == [f"opts-1-{n:03d}.zip" for n in range(1, len(names) + 1)]
    assert len(names) >= 3 and all(p.bytes <= LIMIT for p in split.parts)
    assert [p.sha256 for p in split.parts] == [file_sha256(Path(p.location)) for p in split.parts]
    stepped = by_steps(demo, tmp_path / "steps", request(demo, max_part_bytes=LIMIT))
    assert [p.sha256 for p in stepped] == [p.sha256 for p in split.parts]

    merged: dict[str, bytes] = {}
    for p in split.parts:
        merged.update(entries(Path(p.location)))  # each part opens on its own
    original = entries(Path(one.delivered.location))
    for name in [n for n in original if n not in merged]:  # larger than a part: cut
        pieces = sorted(n for n in merged if n.rsplit(".", 1)[0] == name)
        assert len(pieces) > 1, name
        merged[name] = b"".join(merged.pop(n) for n in pieces)
    data = {n for n in original if n.startswith(("data/", "files/", "schemas/"))}
    assert {n: merged[n] for n in data} == {n: original[n] for n in data}
    index = json.loads(entries(Path(split.parts[0].location))["parts.json"])
    assert [p["file"] for p in index["parts"]] == names


def test_an_encrypted_export_decrypts_with_age_to_the_plain_archive(
    demo: Demo, tmp_path: Path, age: str
) -> None:
    key, public = new_identity(tmp_path, "subject")
    plain = whole(demo, tmp_path / "plain", request(demo))
    sealed = whole(demo, tmp_path / "sealed", request(demo, encrypt_to=(public,)))
    path = Path(sealed.delivered.location)
    assert path.name == "opts-1.zip.age" and not list(path.parent.glob("*.zip"))
    assert file_sha256(path) == sealed.delivered.sha256
    opened = subprocess.run([age, "-d", "-i", str(key), str(path)], capture_output=True, check=True)
    assert opened.stdout == Path(plain.delivered.location).read_bytes()
    with zipfile.ZipFile(io.BytesIO(opened.stdout)) as z:
        assert "manifest.json" in z.namelist()
    [stepped] = by_steps(demo, tmp_path / "steps", request(demo, encrypt_to=(public,)))
    assert Path(stepped.location).name == "opts-1.zip.age"
    again = subprocess.run([age, "-d", "-i", str(key), stepped.location], capture_output=True)
    assert again.returncode == 0 and again.stdout == opened.stdout
