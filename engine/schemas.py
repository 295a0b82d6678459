"""The dataset JSON Schemas in ``schemas/export``: one per dataset, newest version wins."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.normalize.validate import CompiledSchema

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
EXPORT_SCHEMA_DIR = SCHEMA_DIR / "export"
DATAMAP_SCHEMA = SCHEMA_DIR / "datamap" / "datamap-1.1.0.json"

# Fields the engine fills itself rather than the data map.
ENGINE_FIELDS = frozenset({"source"})
FILE_FIELDS = frozenset({"archive_path", "size_bytes", "sha256"})

_NAME = re.compile(r"^(?P<name>[a-z0-9_]+)-(?P<version>\d+\.\d+\.\d+)\.json$")


@dataclass(frozen=True)
class DatasetSchema:
    name: str
    version: str
    path: Path
    document: dict[str, Any]

    @property
    def schema_id(self) -> str:
        return str(self.document["$id"])

    @property
    def file_name(self) -> str:
        return self.path.name

    @property
    def properties(self) -> dict[str, dict[str, Any]]:
        return dict(self.document.get("properties", {}))

    def nullable(self, field: str) -> bool:
        t = self.properties[field].get("type")
        return isinstance(t, list) and "null" in t

    @cached_property
    def compiled(self) -> CompiledSchema:
        from engine.normalize.validate import CompiledSchema

        return CompiledSchema.from_schema(self.document)


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


class SchemaRegistry:
    """Dataset schemas found in a folder, by dataset name."""

    def __init__(self, folder: Path = EXPORT_SCHEMA_DIR) -> None:
        self.folder = folder
        found: dict[str, DatasetSchema] = {}
        for path in sorted(folder.glob("*.json")):
            m = _NAME.match(path.name)
            if not m:
                continue
            doc = json.loads(path.read_text(encoding="utf-8"))
            ds = DatasetSchema(m["name"], m["version"], path, doc)
            best = found.get(ds.name)
            if best is None or _version_key(ds.version) > _version_key(best.version):
                found[ds.name] = ds
        self._by_name = found

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def __getitem__(self, name: str) -> DatasetSchema:
        return self._by_name[name]

    def names(self) -> list[str]:
        return sorted(self._by_name)


@cache
def default_registry() -> SchemaRegistry:
    """The shipped schemas, loaded and compiled once per process."""
    return SchemaRegistry()
