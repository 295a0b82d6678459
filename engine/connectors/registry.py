"""Build a connector from a system's kind and its resolved connection options."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

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


_S3_QUERY = ("endpoint_url", "region")


def _s3_root(name: str, o: Mapping[str, Any]) -> dict[str, Any]:
    """Options with an ``s3://bucket/prefix?endpoint_url=...&region=...`` root split up.

    So that one variable (``root: ${EVENT_LAKE_PATH}``) can name an S3-compatible store
    that is not AWS itself: the query's ``endpoint_url`` and ``region`` become the
    options of the same name (stating one both ways, differently, is an error); the
    root keeps ``s3://bucket/prefix``. Any other root is returned unchanged.
    """
    out = dict(o)
    root = out.get("root")
    if not isinstance(root, str) or not root.startswith("s3://") or "?" not in root:
        return out
    out["root"], _, query = root.partition("?")
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if key not in _S3_QUERY:
            raise SourceError(
                name, f"unknown parameter {key!r} in the s3:// root (known: endpoint_url, region)"
            )
        if out.get(key) not in (None, value):
            raise SourceError(name, f"{key!r} given both in the s3:// root and as an option")
        out[key] = value
    return out


def _parquet(name: str, o: Mapping[str, Any]) -> Connector:
    o = _s3_root(name, o)
    return ParquetConnector(
        name, _required(name, o, "root"), endpoint_url=o.get("endpoint_url"), region=o.get("region")
    )


def _objects(name: str, o: Mapping[str, Any]) -> Connector:
    return build_object_store(name, _s3_root(name, o))


def _http(name: str, o: Mapping[str, Any]) -> Connector:
    token = o.get("token")
    token_env = o.get("token_env")
    if token is None and token_env:
        token = os.environ.get(str(token_env))
    extra = {
        k: o[k]
        for k in (
            "timeout_s",
            "max_retries",
            "backoff_s",
            "max_backoff_s",
            "page_size",
            "max_concurrent",
            "requests_per_second",
        )
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
