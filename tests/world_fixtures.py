"""Fixtures for end-to-end tests: one demo world per session, its payment provider running.

Loaded by ``tests/conftest.py`` as a plugin, so every test can ask for ``demo`` and ``exporter``.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from demo_world.build import build_world
from demo_world.session import running_world
from engine.datamap import load_datamap
from engine.export import ExportResult, open_connectors, run_export
from engine.request import ExportRequest, Identity
from exporters.delivery import LocalFolderDelivery

AS_OF = datetime(2026, 7, 1, 12, 0, 0, tzinfo=UTC)


@dataclass
class Demo:
    root: Path
    world: object
    env: dict[str, str]


def edge(demo: Demo, name: str) -> dict[str, Any]:
    """An edge case of the demo world (world.json): its people's emails, ids ..."""
    return json.loads((demo.root / "world.json").read_text())["edge_cases"][name]


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    root = tmp_path_factory.mktemp("world")
    world = build_world(root, seed=7, size="demo")
    with running_world(root) as env:
        yield Demo(root, world, env)


class Exporter:
    """Runs exports against the demo world with shared connectors (as a warm service would)."""

    def __init__(self, demo: Demo, base: Path) -> None:
        self.demo = demo
        self.base = base
        self.dm = load_datamap()
        self.connectors = open_connectors(self.dm, demo.env)
        self.n = 0

    def export(
        self,
        *identities: tuple[str, str],
        request_type: str = "access",
        formats: tuple[str, ...] = ("json", "csv", "parquet"),
        request_id: str | None = None,
        out: Path | None = None,
        **options: Any,
    ) -> ExportResult:
        self.n += 1
        req = ExportRequest(
            request_id or f"req-{self.n:04d}",
            request_type,  # type: ignore[arg-type]
            tuple(Identity(t, v) for t, v in identities),
            formats,
            AS_OF,
        )
        return run_export(
            req,
            self.dm,
            LocalFolderDelivery(out or self.base / "out"),
            staging_root=self.base / "staging",
            connectors=self.connectors,
            **options,
        )

    def close(self) -> None:
        for c in self.connectors.values():
            c.close()


@pytest.fixture(scope="session")
def exporter(demo: Demo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exporter]:
    ex = Exporter(demo, tmp_path_factory.mktemp("exports"))
    yield ex
    ex.close()


def archive_text(path: Path) -> str:
    """Every text a person or program reads in the archive, but the customer files' content.

    (Customer files are the subject's own uploads; their names are included.)
    """
    parts = []
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            parts.append(name)
            if name.endswith((".json", ".csv", ".html")):
                parts.append(z.read(name).decode("utf-8"))
    return "\n".join(parts)
