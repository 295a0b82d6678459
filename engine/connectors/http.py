"""JSON HTTP APIs (the payment provider) through urllib3.

Connection: ``{"base_url", "token", "token_env", "timeout_s": 10, "max_retries": 5,
"backoff_s": 0.5, "max_backoff_s": 30, "page_size": 100, "max_concurrent": 8,
"requests_per_second": none}``. A bulk export calls the API for up to ``max_concurrent``
subjects at once; ``requests_per_second`` (the provider's rate limit) spaces every
request of this process, from all threads, so that 429s are the exception. Entities:

- a list endpoint filtered by a query parameter, with cursor pagination:
  ``{"endpoint": "/v1/charges", "lookup_param": "customer", "pagination": {...}}``
  (answers ``{"data": [...], "has_more": bool, "next_cursor": str|null}``; the names,
  and the ``limit`` / ``cursor`` parameters, can be changed in ``pagination``);
- one object by id: ``{"endpoint": "/v1/customers/{value}", "single": true}`` (404: none).

Nested objects are read with dotted column names (``address.line1``); a requested column
missing from a record is null, lists and objects are carried as JSON text. 429 (honouring
``Retry-After``), 5xx, connection errors and timeouts are retried with exponential backoff
and jitter. Request URLs hold customer ids and emails, so no message carries one.

urllib3 rather than httpx: a bulk export makes several calls per subject, and urllib3
spends about 140 us of CPU on a call where httpx spends 360 (measured on loopback).
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import orjson
import pyarrow as pa
import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ReadTimeoutError,
)

from engine.connectors.base import Lookup, SourceError

PAGINATION = {
    "data_field": "data",
    "has_more_field": "has_more",
    "cursor_field": "next_cursor",
    "cursor_param": "cursor",
    "limit_param": "limit",
}
BATCH_ROWS = 1_000

# urllib3 logs every request line at DEBUG; those URLs hold lookup values.
_urllib3_log = logging.getLogger("urllib3")
if _urllib3_log.level == logging.NOTSET:
    _urllib3_log.setLevel(logging.WARNING)


def _transport_failure(exc: HTTPError) -> str:
    """A name for a failed request that holds no URL: the kind of failure only."""
    if isinstance(exc, NewConnectionError):  # a subclass of ConnectTimeoutError
        return "ConnectError"
    if isinstance(exc, ConnectTimeoutError):
        return "ConnectTimeout"
    if isinstance(exc, ReadTimeoutError):
        return "ReadTimeout"
    return type(exc).__name__


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def column_value(record: Mapping[str, Any], column: str) -> Any:
    """``record[column]``, or the value at a dotted path (``address.line1``); else None."""
    if column in record:
        return record[column]
    node: Any = record
    for part in column.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _text(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def records_to_batch(
    records: Sequence[Mapping[str, Any]], columns: Sequence[str]
) -> pa.RecordBatch:
    """Arrow columns from JSON records; mixed-type columns and structures become text."""
    arrays = []
    for column in columns:
        values = [column_value(r, column) for r in records]
        if any(isinstance(v, (dict, list)) for v in values):
            arrays.append(pa.array([_text(v) for v in values], pa.string()))
            continue
        try:
            arrays.append(pa.array(values))
        except (pa.ArrowException, OverflowError, TypeError, ValueError):
            arrays.append(pa.array([_text(v) for v in values], pa.string()))
    return pa.RecordBatch.from_arrays(arrays, names=list(columns))


class HttpConnector:
    """A JSON API with bearer-token authentication."""

    kind = "http"

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        token: str | None = None,
        token_env: str | None = None,
        timeout_s: float = 10,
        max_retries: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30,
        page_size: int = 100,
        batch_rows: int = BATCH_ROWS,
        max_concurrent: int = 8,
        requests_per_second: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self.max_concurrent = max(1, int(max_concurrent))
        if requests_per_second is not None and float(requests_per_second) <= 0:
            raise SourceError(name, "connection option 'requests_per_second' must be above 0")
        self._interval = 1 / float(requests_per_second) if requests_per_second else 0.0
        self._next_slot = 0.0  # monotonic time the next request may start
        self._slot_lock = threading.Lock()
        self.token_env = token_env
        self.has_token = bool(token)
        self.max_retries = max(0, int(max_retries))
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self.page_size = int(page_size)
        self.batch_rows = batch_rows
        self._sleep = sleep
        headers = {"Accept": "application/json", "User-Agent": "infuze-portability"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._prefix = urlsplit(base_url).path.rstrip("/")  # a base URL's own path
        self._http = urllib3.connection_from_url(  # one host: its pool, no pool manager
            base_url,
            maxsize=self.max_concurrent,
            headers=headers,
            timeout=urllib3.Timeout(connect=float(timeout_s), read=float(timeout_s)),
            retries=False,  # retried here, with backoff and Retry-After
        )

    @property
    def headers(self) -> Mapping[str, str]:
        """The headers sent with every request (the bearer token among them)."""
        return self._http.headers

    def close(self) -> None:
        self._http.close()

    def fetch(
        self, entity: Mapping[str, Any], lookup: Lookup, columns: Sequence[str]
    ) -> Iterator[pa.RecordBatch]:
        """Stream ``columns`` of the records of each looked-up value."""
        endpoint = entity.get("endpoint")
        if not isinstance(endpoint, str) or not endpoint.startswith("/"):
            raise SourceError(self.name, "entity 'endpoint' must be a path starting with '/'")
        single = bool(entity.get("single"))
        param = entity.get("lookup_param")
        if single and "{value}" not in endpoint:
            raise SourceError(self.name, f"endpoint {endpoint!r}: 'single' needs '{{value}}'")
        if not single and not param and "{value}" not in endpoint:
            raise SourceError(self.name, f"endpoint {endpoint!r}: needs 'lookup_param'")
        pagination = {**PAGINATION, **(entity.get("pagination") or {})}
        values = lookup.distinct()
        if "{value}" in endpoint and any(v in ("", ".", "..") for v in values):
            raise SourceError(
                self.name,
                f"endpoint {endpoint!r}: refused a lookup value that cannot be a path segment",
            )
        label = f"endpoint {endpoint!r}"
        return self._stream(
            label, endpoint, single, param, pagination, lookup, values, list(columns)
        )

    def _stream(
        self,
        label: str,
        endpoint: str,
        single: bool,
        param: str | None,
        pagination: Mapping[str, str],
        lookup: Lookup,
        values: list[str],
        columns: list[str],
    ) -> Iterator[pa.RecordBatch]:
        rows: list[Mapping[str, Any]] = []
        for value in values:
            path = endpoint.replace("{value}", quote(value, safe=""))
            found = (
                self._one(label, path)
                if single
                else self._pages(label, path, param, value, pagination)
            )
            for record in found:
                self._check_subject(label, record, lookup, value)
                rows.append(record)
                if len(rows) >= self.batch_rows:
                    yield records_to_batch(rows, columns)
                    rows = []
        if rows:
            yield records_to_batch(rows, columns)

    def _check_subject(self, label: str, record: Any, lookup: Lookup, value: str) -> None:
        """Refuse records that belong to someone else (an API ignoring its filter)."""
        if not isinstance(record, Mapping):
            raise SourceError(self.name, f"{label}: a record is not a JSON object")
        got = column_value(record, lookup.column)
        if got is None:
            return
        got = str(got).lower() if lookup.casefold else str(got)
        if got != value:
            raise SourceError(
                self.name,
                f"{label}: the API answered with records of another "
                f"subject ({lookup.column!r} differs); refusing them",
            )

    def _one(self, label: str, path: str) -> list[Any]:
        response = self._get(label, path, {})
        if response.status == 404:
            return []
        return [self._json(label, response)]

    def _pages(
        self, label: str, path: str, param: str | None, value: str, pag: Mapping[str, str]
    ) -> Iterator[Any]:
        params: dict[str, Any] = {pag["limit_param"]: self.page_size}
        if param:
            params[param] = value
        seen: set[str] = set()
        while True:
            response = self._get(label, path, params)
            if response.status == 404:
                raise SourceError(self.name, f"{label}: not found (HTTP 404)")
            body = self._json(label, response)
            data = body.get(pag["data_field"]) if isinstance(body, Mapping) else None
            if not isinstance(data, list):
                raise SourceError(
                    self.name, f"{label}: the answer has no list {pag['data_field']!r}"
                )
            yield from data
            cursor = body.get(pag["cursor_field"])
            more = body.get(pag["has_more_field"], cursor is not None)
            if not more:
                return
            if not cursor or str(cursor) in seen:
                raise SourceError(self.name, f"{label}: pagination does not advance")
            seen.add(str(cursor))
            params[pag["cursor_param"]] = cursor

    def _json(self, label: str, response: urllib3.BaseHTTPResponse) -> Any:
        try:
            return orjson.loads(response.data)
        except ValueError:
            raise SourceError(self.name, f"{label}: the answer is not JSON") from None

    def _get(self, label: str, path: str, params: Mapping[str, Any]) -> urllib3.BaseHTTPResponse:
        """GET with retries; returns 2xx and 404 answers, raises SourceError otherwise."""
        url = self._prefix + path + (f"?{urlencode(params)}" if params else "")
        attempt = 0
        while True:
            wait: float | None = None
            self._pace()
            try:
                response = self._http.urlopen("GET", url, redirect=False)
            except HTTPError as exc:  # connection errors, timeouts, broken answers
                failure = _transport_failure(exc)
            else:
                status = response.status
                if status < 300 or status == 404:
                    return response
                if status in (401, 403):
                    raise SourceError(self.name, self._refused(status))
                if status != 429 and status < 500:
                    raise SourceError(self.name, f"{label}: HTTP {status}")
                failure = f"HTTP {status}"
                wait = _retry_after(response.headers.get("Retry-After"))
            if attempt >= self.max_retries:
                raise SourceError(
                    self.name,
                    f"{label}: gave up after {attempt + 1} attempts (last: {failure})",
                    transient=True,
                )
            self._sleep(self._delay(attempt) if wait is None else min(wait, self.max_backoff_s))
            attempt += 1

    def _pace(self) -> None:
        """Wait for this request's slot under ``requests_per_second`` (all threads)."""
        if not self._interval:
            return
        with self._slot_lock:
            now = time.monotonic()
            start = max(now, self._next_slot)
            self._next_slot = start + self._interval
        if start > now:
            self._sleep(start - now)

    def _delay(self, attempt: int) -> float:
        """Exponential backoff with jitter: half fixed, half random."""
        cap = min(self.max_backoff_s, self.backoff_s * 2**attempt)
        return cap / 2 + random.uniform(0, cap / 2)

    def _refused(self, status: int) -> str:
        if not self.has_token:
            return f"the API refused the request (HTTP {status}): no token is configured"
        name = f" ({self.token_env})" if self.token_env else ""
        return f"the API refused the token{name} (HTTP {status})"
