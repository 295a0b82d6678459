"""build_connector: one connector per kind, configuration errors as SourceError."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.connectors.base import SourceError
from engine.connectors.http import HttpConnector
from engine.connectors.objects import LocalObjectStore
from engine.connectors.objects_s3 import S3ObjectStore
from engine.connectors.parquet import ParquetConnector
from engine.connectors.registry import build_connector
from engine.connectors.sql import SqlConnector


def test_builds_each_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYMENTS_API_TOKEN", "from-env")
    built = [
        build_connector("crm", "sql", {"url": f"sqlite:///{tmp_path / 'crm.sqlite'}"}),
        build_connector("lake", "parquet", {"root": str(tmp_path)}),
        build_connector("files", "objects", {"root": str(tmp_path)}),
        build_connector("s3files", "objects", {"bucket": "b", "region": "us-east-1"}),
        build_connector(
            "pay",
            "http",
            {
                "base_url": "http://127.0.0.1:9",
                "token": "t",
                "token_env": "PAYMENTS_API_TOKEN",
                "timeout_s": 3,
            },
        ),
        build_connector(
            "pay2", "http", {"base_url": "http://127.0.0.1:9", "token_env": "PAYMENTS_API_TOKEN"}
        ),
    ]
    kinds = [
        SqlConnector,
        ParquetConnector,
        LocalObjectStore,
        S3ObjectStore,
        HttpConnector,
        HttpConnector,
    ]
    for conn, kind in zip(built, kinds, strict=True):
        assert isinstance(conn, kind)
        assert conn.name in ("crm", "lake", "files", "s3files", "pay", "pay2")
        conn.close()
    assert built[4].headers["Authorization"] == "Bearer t"  # type: ignore[attr-defined]
    assert built[5].headers["Authorization"] == "Bearer from-env"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "kind, options, message",
    [
        ("oracle", {}, "unknown kind 'oracle'"),
        ("sql", {}, "'url' is missing"),
        ("sql", {"url": "not a url"}, "invalid database URL"),
        ("parquet", {}, "'root' is missing"),
        ("objects", {}, "needs 'root'"),
        ("http", {"token": "t"}, "'base_url' is missing"),
    ],
)
def test_configuration_errors(kind: str, options: dict, message: str) -> None:
    with pytest.raises(SourceError, match=message) as info:
        build_connector("sys", kind, options)
    assert info.value.system == "sys"
