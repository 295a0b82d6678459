"""Build a connector from a system's kind and its resolved connection options."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from engine.connectors.base import Connector, SourceError
from engine.connectors.http import HttpConnector
from engine.connectors.objects import build_object_store
from engine.connectors.parquet import ParquetConnector
from engine.connectors.sql import SqlConnector

KINDS = ("sql", "parquet", "objects", "http")


def _required(name: str, options: Mapping[str, Any], key: str) -> str:
    value = options.get(key)
    if not isinstance(value, str) or not value:
        raise SourceError(name, f"connection option {key!r} is missing")
    return value


def _sql(name: str, o: Mapping[str, Any]) -> Connector:
    extra = {k: o[k] for k in ("batch_rows", "in_chunk", "connect_timeout_s") if k in o}
    return SqlConnector(name, _required(name, o, "url"), **extra)


def _parquet(name: str, o: Mapping[str, Any]) -> Connector:
    return ParquetConnector(
        name, _required(name, o, "root"), endpoint_url=o.get("endpoint_url"), region=o.get("region")
    )


def _objects(name: str, o: Mapping[str, Any]) -> Connector:
    return build_object_store(name, o)


def _http(name: str, o: Mapping[str, Any]) -> Connector:
    token = o.get("token")
    token_env = o.get("token_env")
    if token is None and token_env:
        token = os.environ.get(str(token_env))
    extra = {
        k: o[k]
        for k in ("timeout_s", "max_retries", "backoff_s", "max_backoff_s", "page_size")
        if o.get(k) is not None
    }
    return HttpConnector(
        name, _required(name, o, "base_url"), token=token, token_env=token_env, **extra
    )


_BUILDERS: dict[str, Callable[[str, Mapping[str, Any]], Connector]] = {
    "sql": _sql,
    "parquet": _parquet,
    "objects": _objects,
    "http": _http,
}


def build_connector(name: str, kind: str, options: Mapping[str, Any]) -> Connector:
    """The connector for a system of ``kind`` (sql, parquet, objects, http)."""
    builder = _BUILDERS.get(kind)
    if builder is None:
        raise SourceError(name, f"unknown kind {kind!r} (known: {', '.join(KINDS)})")
    return builder(name, options)
