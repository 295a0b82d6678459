"""Shared test fixtures.

Sections: SQL databases (PostgreSQL, MariaDB, SQLite, one fresh database per test),
the moto S3 server (one per session, over HTTP). Tests that need a database server
which is not running fail, naming the server: they are real-component tests.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.backend_fixtures import AWS_ENV

pytest_plugins = ["tests.world_fixtures"]  # the demo world fixtures: demo, exporter
pytest_plugins += ["tests.dagster_fixtures"]  # dagster_ui: the webserver on an exported request
pytest_plugins += ["tests.location_fixtures"]  # location: the code location in process
pytest_plugins += ["tests.store_fixtures"]  # store_url: an empty request store, both backends
pytest_plugins += ["tests.http_api"]  # api: a local JSON API for the HTTP connector

# ---------------------------------------------------------------------------
# SQL database fixtures (connectors): each test gets its own database, dropped after
# ---------------------------------------------------------------------------

PG_HOST, PG_PORT = "127.0.0.1", 5432
MARIADB_HOST, MARIADB_PORT = "127.0.0.1", 3306


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _db_name() -> str:
    return f"test_{uuid.uuid4().hex[:16]}"


@contextmanager
def postgres_database(prefix: str = "test") -> Iterator[str]:
    """A fresh, empty PostgreSQL database (its ``postgresql://`` URL), dropped afterwards.

    Fails (never skips) when the server is down: these are real-component tests.
    """
    if not _listening(PG_HOST, PG_PORT):
        pytest.fail(
            f"PostgreSQL is not listening on {PG_HOST}:{PG_PORT}: these tests need the real "
            "server (start it: pg_ctlcluster <version> main start)"
        )
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """``postgresql://`` URL of a fresh, empty PostgreSQL database."""
    with postgres_database() as url:
        yield url


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    """``mysql+pymysql://`` URL of a fresh, empty MariaDB database."""
    if not _listening(MARIADB_HOST, MARIADB_PORT):
        pytest.fail(
            f"MariaDB is not listening on {MARIADB_HOST}:{MARIADB_PORT}: these tests need "
            "the real server (start it: mariadbd)"
        )
    import pymysql

    name = _db_name()

    def admin(sql: str) -> None:
        conn = pymysql.connect(host=MARIADB_HOST, port=MARIADB_PORT, user="root")
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    admin(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    try:
        yield f"mysql+pymysql://root@{MARIADB_HOST}:{MARIADB_PORT}/{name}"
    finally:
        admin(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture
def sqlite_url(tmp_path: os.PathLike[str]) -> str:
    """``sqlite:///`` URL of a fresh database file."""
    return f"sqlite:///{os.path.join(tmp_path, 'source.sqlite')}"


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ]
)
def sql_url(request: pytest.FixtureRequest) -> str:
    """A fresh database on each of the three backends in turn."""
    return str(request.getfixturevalue(f"{request.param}_url"))


# ---------------------------------------------------------------------------
# moto S3 server fixtures (object store and Parquet connectors)
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of a moto S3 server running for the whole session."""
    from moto.server import ThreadedMotoServer

    saved = {k: os.environ.get(k) for k in AWS_ENV}
    os.environ.update(AWS_ENV)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def s3_bucket(moto_endpoint: str) -> str:
    """A fresh, empty bucket on the moto server."""
    import boto3

    name = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(
        Bucket=name
    )
    return name
