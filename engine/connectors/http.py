"""JSON HTTP APIs (the payment provider), through libcurl (``http_client.py``).

Connection: ``{"base_url", "token", "token_env", "timeout_s": 10, "max_retries": 5,
"backoff_s": 0.5, "max_backoff_s": 30, "page_size": 100, "max_concurrent": 8,
"requests_per_second": none}``. ``fetch`` reads one lookup's values one request at a
time; ``fetch_many`` (a bulk export) reads many lookups at once, up to
``max_concurrent`` requests in flight from one thread. ``requests_per_second`` (the
provider's rate limit) spaces every request of this process, from all threads, so that
429s are the exception. ``timeout_s`` bounds connecting and each whole request. Entities:

- a list endpoint filtered by a query parameter, with cursor pagination:
  ``{"endpoint": "/v1/charges", "lookup_param": "customer", "pagination": {...}}``
  (answers ``{"data": [...], "has_more": bool, "next_cursor": str|null}``; the names,
  and the ``limit`` / ``cursor`` parameters, can be changed in ``pagination``);
- one object by id: ``{"endpoint": "/v1/customers/{value}", "single": true}`` (404: none).

Nested objects are read with dotted column names (``address.line1``); a requested column
missing from a record is null, lists and objects are carried as JSON text. 429 (honouring
``Retry-After``), 5xx, connection errors and timeouts are retried with exponential backoff
and jitter. Request URLs hold customer ids and emails, so no message carries one.

Each looked-up value is a job (``_ValueJob``): its object or its pages, checked as they
come, with the retry decisions; the client only moves bytes. A value's records come in
batches of at most ``batch_rows``, value by value, whichever way they were read.
"""

from __future__ import annotations

import email.utils
import json
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import orjson
import pyarrow as pa

from engine.connectors.base import Lookup, SourceError
from engine.connectors.http_client import Answer, CurlClient

PAGINATION = {
    "data_field": "data",
    "has_more_field": "has_more",
    "cursor_field": "next_cursor",
    "cursor_param": "cursor",
    "limit_param": "limit",
}
BATCH_ROWS = 1_000


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
    """Arrow columns from JSON records; mixed-type columns and structures become text.

    Arrow infers each column's type in one call; a column it cannot type (mixed values,
    integers past 64 bits) or types as a structure (objects, lists) is carried as text.
    """
    arrays = []
    for column in columns:
        if "." in column:
            values = [column_value(r, column) for r in records]
        else:
            values = [r.get(column) for r in records]
        try:
            array: pa.Array | None = pa.array(values)
        except (pa.ArrowException, OverflowError, TypeError, ValueError):
            array = None
        if array is None or pa.types.is_nested(array.type):
            array = pa.array([_text(v) for v in values], pa.string())
        arrays.append(array)
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
        self._headers = headers
        self._client = CurlClient(
            base_url,  # its path prefixes every endpoint
            headers,
            timeout_s=float(timeout_s),
            max_concurrent=self.max_concurrent,
            requests_per_second=float(requests_per_second) if requests_per_second else None,
            sleep=sleep,
        )

    @property
    def headers(self) -> Mapping[str, str]:
        """The headers sent with every request (the bearer token among them)."""
        return dict(self._headers)

    def close(self) -> None:
        self._client.close()

    def fetch(
        self, entity: Mapping[str, Any], lookup: Lookup, columns: Sequence[str]
    ) -> Iterator[pa.RecordBatch]:
        """Stream ``columns`` of the records of each looked-up value, request by request."""
        query = self._query(entity)
        values = lookup.distinct()
        query.check_values(values)
        return self._stream(query, lookup, values, list(columns))

    def fetch_many(
        self, entity: Mapping[str, Any], lookups: Sequence[Lookup], columns: Sequence[str]
    ) -> list[list[pa.RecordBatch] | SourceError]:
        """Each lookup's batches as ``fetch`` gives them, or the error that stopped it.

        Every value of every lookup is read at once, up to ``max_concurrent`` requests in
        flight, from this thread; a lookup that fails does not stop the others. Memory
        is the lookups' records (a bulk export's batch of subjects).
        """
        query = self._query(entity)
        cols = list(columns)
        out: list[list[pa.RecordBatch] | SourceError] = []
        jobs: list[_ValueJob] = []
        owners: list[int] = []
        for i, lookup in enumerate(lookups):
            values = lookup.distinct()
            try:
                query.check_values(values)
            except SourceError as err:
                out.append(err)
                continue
            out.append([])
            for value in values:
                jobs.append(_ValueJob(self, query, lookup, value))
                owners.append(i)
        rows: dict[int, list[Mapping[str, Any]]] = {}
        for job, i, err in zip(jobs, owners, self._client.run(jobs), strict=True):
            if isinstance(out[i], SourceError):
                continue
            if err is None:
                rows.setdefault(i, []).extend(job.drain())
            elif isinstance(err, SourceError):
                out[i] = err
            else:  # a value may sit in the message: the type alone
                out[i] = SourceError(self.name, f"{query.label}: unexpected {type(err).__name__}")
        for i, found in rows.items():
            if not isinstance(out[i], SourceError):
                out[i] = list(self._batches(found, cols, final=True))
        return out

    def _query(self, entity: Mapping[str, Any]) -> _Query:
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
        return _Query(self.name, endpoint, single, param, pagination)

    def _stream(
        self, query: _Query, lookup: Lookup, values: list[str], columns: list[str]
    ) -> Iterator[pa.RecordBatch]:
        rows: list[Mapping[str, Any]] = []
        for value in values:
            job = _ValueJob(self, query, lookup, value)
            while (path := job.next_request()) is not None:
                wait = job.answer(self._client.get(path))
                if wait is not None:
                    self._sleep(wait)
                rows.extend(job.drain())
                yield from self._batches(rows, columns, final=False)
        yield from self._batches(rows, columns, final=True)

    def _batches(
        self, rows: list[Mapping[str, Any]], columns: list[str], *, final: bool
    ) -> Iterator[pa.RecordBatch]:
        """Batches of ``batch_rows`` records taken from the front of ``rows`` (and the
        rest once ``final``): a lookup's records across its values, so that both ways of
        reading cut (and type) them alike."""
        n = self.batch_rows
        while len(rows) >= n or (final and rows):
            yield records_to_batch(rows[:n], columns)
            del rows[:n]

    def _delay(self, attempt: int) -> float:
        """Exponential backoff with jitter: half fixed, half random."""
        cap = min(self.max_backoff_s, self.backoff_s * 2**attempt)
        return cap / 2 + random.uniform(0, cap / 2)

    def _refused(self, status: int) -> str:
        if not self.has_token:
            return f"the API refused the request (HTTP {status}): no token is configured"
        name = f" ({self.token_env})" if self.token_env else ""
        return f"the API refused the token{name} (HTTP {status})"


@dataclass(frozen=True)
class _Query:
    """An entity's endpoint, checked: one object by id, or a list with pages."""

    system: str
    endpoint: str
    single: bool
    param: str | None
    pagination: Mapping[str, str]

    @property
    def label(self) -> str:
        return f"endpoint {self.endpoint!r}"

    def check_values(self, values: list[str]) -> None:
        if "{value}" in self.endpoint and any(v in ("", ".", "..") for v in values):
            raise SourceError(
                self.system, f"{self.label}: refused a lookup value that cannot be a path segment"
            )


class _ValueJob:
    """One looked-up value's requests, without I/O: its object, or its pages in turn.

    Every record is checked to belong to the value as it comes (an API ignoring its
    filter would hand over someone else's). Answers that may pass (429, 5xx, transport
    failures) are retried with backoff, ``Retry-After`` honoured, up to ``max_retries``
    times.
    """

    def __init__(self, conn: HttpConnector, q: _Query, lookup: Lookup, value: str) -> None:
        self.conn, self.q, self.lookup, self.value = conn, q, lookup, value
        self._path = q.endpoint.replace("{value}", quote(value, safe=""))
        self._params: dict[str, Any] = {}
        if not q.single:
            self._params[q.pagination["limit_param"]] = conn.page_size
            if q.param:
                self._params[q.param] = value
        self._url: str | None = None  # the next request's, made once
        self._done = False
        self._attempt = 0
        self._seen: set[str] = set()  # cursors already followed
        self._records: list[Mapping[str, Any]] = []

    def next_request(self) -> str | None:
        if self._done:
            return None
        if self._url is None:
            self._url = self._path + (f"?{urlencode(self._params)}" if self._params else "")
        return self._url

    def answer(self, a: Answer) -> float | None:
        """Take an answer; the seconds to wait before asking again, or None to go on."""
        label, system = self.q.label, self.q.system
        if a.failure is None and (a.status < 300 or a.status == 404):
            self._attempt = 0
            self._page(a)
            return None
        if a.failure is None and a.status in (401, 403):
            raise SourceError(system, self.conn._refused(a.status))
        if a.failure is None and a.status != 429 and a.status < 500:
            raise SourceError(system, f"{label}: HTTP {a.status}")
        failure = a.failure or f"HTTP {a.status}"
        if self._attempt >= self.conn.max_retries:
            raise SourceError(
                system,
                f"{label}: gave up after {self._attempt + 1} attempts (last: {failure})",
                transient=True,
            )
        wait = _retry_after(a.retry_after)
        self._attempt += 1
        if wait is None:
            return self.conn._delay(self._attempt - 1)
        return min(wait, self.conn.max_backoff_s)

    def drain(self) -> list[Mapping[str, Any]]:
        """The records that came since the last call, in order."""
        out, self._records = self._records, []
        return out

    def _page(self, a: Answer) -> None:
        label, system, pag = self.q.label, self.q.system, self.q.pagination
        if self.q.single:
            self._done = True
            if a.status != 404:
                self._add([self._json(a.body)])
            return
        if a.status == 404:
            raise SourceError(system, f"{label}: not found (HTTP 404)")
        body = self._json(a.body)
        data = body.get(pag["data_field"]) if isinstance(body, Mapping) else None
        if not isinstance(data, list):
            raise SourceError(system, f"{label}: the answer has no list {pag['data_field']!r}")
        self._add(data)
        cursor = body.get(pag["cursor_field"])
        if not body.get(pag["has_more_field"], cursor is not None):
            self._done = True
            return
        if not cursor or str(cursor) in self._seen:
            raise SourceError(system, f"{label}: pagination does not advance")
        self._seen.add(str(cursor))
        self._params[pag["cursor_param"]] = cursor
        self._url = None

    def _add(self, records: list[Any]) -> None:
        for record in records:
            self._check_subject(record)
        self._records.extend(records)

    def _check_subject(self, record: Any) -> None:
        """Refuse records that belong to someone else (an API ignoring its filter)."""
        if not isinstance(record, Mapping):
            raise SourceError(self.q.system, f"{self.q.label}: a record is not a JSON object")
        got = column_value(record, self.lookup.column)
        if got is None:
            return
        got = str(got).lower() if self.lookup.casefold else str(got)
        if got != self.value:
            raise SourceError(
                self.q.system,
                f"{self.q.label}: the API answered with records of another "
                f"subject ({self.lookup.column!r} differs); refusing them",
            )

    def _json(self, body: bytes) -> Any:
        try:
            return orjson.loads(body)
        except ValueError:
            raise SourceError(self.q.system, f"{self.q.label}: the answer is not JSON") from None
