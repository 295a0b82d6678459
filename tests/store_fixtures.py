"""Request store locations for tests: a SQLite file, or a fresh schema on PostgreSQL.

Loaded by ``tests/conftest.py`` as a plugin, so every test can ask for ``store_url``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import PG_HOST, PG_PORT, postgres_database


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (its name), dropped afterwards."""
    with postgres_database("test_store") as url:
        yield url.rsplit("/", 1)[1]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store location: a SQLite file path, or a fresh schema on PostgreSQL."""
    if request.param == "sqlite":
        return str(tmp_path / "dagster_home" / "requests.sqlite")
    import psycopg

    database = request.getfixturevalue("pg_database")
    schema = f"s_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"postgresql://postgres@{PG_HOST}:{PG_PORT}/{database}") as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    url = sa.URL.create(
        "postgresql+psycopg", "postgres", None, PG_HOST, PG_PORT, database,
        query={"options": f"-csearch_path={schema}"},
    )  # fmt: skip
    return url.render_as_string(hide_password=False)
