"""The HTTP connector, one request at a time, against a local JSON API in a thread
(pagination, faults, auth)."""

from __future__ import annotations

import time
from http.server import ThreadingHTTPServer

import pyarrow as pa
import pytest

from engine.connectors.base import Lookup, SourceError
from engine.connectors.http import HttpConnector, records_to_batch
from tests.http_api import CHARGES_ENTITY, EMAIL, TOKEN, conn_to, table_of


def test_paginates_and_flattens(api: ThreadingHTTPServer) -> None:
    conn = conn_to(api)
    cols = ["id", "amount", "outcome.type", "outcome.risk.level", "metadata", "missing.x"]
    table = table_of(conn, CHARGES_ENTITY, ["cus_a", "cus_b", "cus_none"], cols)
    assert table.column_names == cols
    assert table.num_rows == 24
    assert table["id"].to_pylist() == [f"ch_a{i:02d}" for i in range(23)] + ["ch_b00"]
    assert table.schema.field("amount").type == pa.int64()
    assert table["outcome.type"].to_pylist()[:2] == ["authorized", "authorized"]
    assert table["outcome.risk.level"][0].as_py() == "normal"
    assert table["metadata"].to_pylist()[-1] == '{"k":"v"}'
    assert table["missing.x"].null_count == 24
    pages = [q for q in api.queries if q.get("customer") == ["cus_a"]]  # type: ignore[attr-defined]
    assert len(pages) == 3 and all(q["limit"] == ["10"] for q in pages)
    assert [q.get("cursor") for q in pages] == [None, ["10"], ["20"]]


def test_configurable_pagination_names(api: ThreadingHTTPServer) -> None:
    entity = {**CHARGES_ENTITY, "pagination": {"limit_param": "page_size"}}
    table = table_of(conn_to(api), entity, ["cus_a"], ["id"])
    assert table.num_rows == 23  # server default page of 10, 3 pages
    assert any("page_size" in q for q in api.queries)  # type: ignore[attr-defined]


def test_single_object_and_404(api: ThreadingHTTPServer) -> None:
    entity = {"endpoint": "/v1/customers/{value}", "single": True}
    table = table_of(
        conn_to(api),
        entity,
        ["cus_a", "cus_missing"],
        ["id", "address.line1", "address.postal_code", "email"],
        column="id",
    )
    assert table.to_pylist() == [
        {"id": "cus_a", "address.line1": "1 Main St", "address.postal_code": None, "email": EMAIL}
    ]
    with pytest.raises(SourceError, match="cannot be a path segment"):
        conn_to(api).fetch(entity, Lookup("id", [".."]), ["id"])


def test_base_url_with_a_path_prefixes_every_endpoint(api: ThreadingHTTPServer) -> None:
    base = f"http://127.0.0.1:{api.server_address[1]}/gateway/"
    conn = HttpConnector("payments", base, token=TOKEN, max_retries=0)
    entity = {"endpoint": "/v1/customers/{value}", "single": True}
    table_of(conn, entity, ["cus_a"], ["id"], column="id")
    assert api.queries[-1]["path"] == ["/gateway/v1/customers/cus_a"]  # type: ignore[attr-defined]


def test_429_then_success_honours_retry_after(api: ThreadingHTTPServer) -> None:
    waits: list[float] = []
    conn = conn_to(api, sleep=waits.append)
    table = table_of(
        conn, {"endpoint": "/v1/flaky429", "lookup_param": "customer"}, ["cus_b"], ["id"]
    )
    assert table["id"].to_pylist() == ["ch_b00"]
    assert waits == [0.0]


def test_requests_per_second_spaces_every_request_of_the_process(
    api: ThreadingHTTPServer,
) -> None:
    """The provider's rate limit: with 20 requests/s, request n waits for its slot
    n x 50 ms after the first, whichever thread asks (waits recorded, not slept)."""
    waits: list[float] = []
    conn = conn_to(api, sleep=waits.append, requests_per_second=20, max_concurrent=3)
    assert conn.max_concurrent == 3
    start = time.monotonic()
    ids = [table_of(conn, CHARGES_ENTITY, ["cus_b"], ["id"])["id"].to_pylist() for _ in range(5)]
    elapsed = time.monotonic() - start
    assert ids == [["ch_b00"]] * 5
    assert len(waits) == 4 and waits == sorted(waits)  # the first request goes at once
    assert 0.2 - elapsed <= waits[-1] <= 0.2  # the fifth slot: 4 x 50 ms after the first
    with pytest.raises(SourceError, match="requests_per_second"):
        conn_to(api, requests_per_second=0)


def test_500_then_success(api: ThreadingHTTPServer) -> None:
    table = table_of(
        conn_to(api), {"endpoint": "/v1/flaky500", "lookup_param": "customer"}, ["cus_b"], ["id"]
    )
    assert table.num_rows == 1 and api.hits["/v1/flaky500"] == 2  # type: ignore[attr-defined]


def test_5xx_forever_is_transient_after_retries(api: ThreadingHTTPServer) -> None:
    waits: list[float] = []
    conn = conn_to(api, max_retries=4, backoff_s=0.001, max_backoff_s=0.004, sleep=waits.append)
    with pytest.raises(SourceError) as info:
        table_of(conn, {"endpoint": "/v1/broken", "lookup_param": "email"}, [EMAIL], ["id"])
    err = info.value
    assert err.transient and err.system == "payments"
    assert "gave up after 5 attempts" in str(err) and "HTTP 503" in str(err)
    assert api.hits["/v1/broken"] == 5  # type: ignore[attr-defined]
    assert len(waits) == 4 and all(0 < w <= 0.004 for w in waits)
    assert waits[0] <= 0.001 < waits[-1]  # grows exponentially, within the cap
    for secret in (EMAIL, "jane", "127.0.0.1", "email="):
        assert secret not in str(err)


def test_401_names_the_token_variable(api: ThreadingHTTPServer) -> None:
    conn = conn_to(api, token="wrong")
    with pytest.raises(SourceError, match=r"refused the token \(PAYMENTS_API_TOKEN\)") as info:
        table_of(conn, CHARGES_ENTITY, ["cus_a"], ["id"])
    assert not info.value.transient and "wrong" not in str(info.value)
    assert api.hits["/v1/charges"] == 1  # type: ignore[attr-defined]
    with pytest.raises(SourceError, match="no token is configured"):
        table_of(conn_to(api, token=None), CHARGES_ENTITY, ["cus_a"], ["id"])


def test_slow_endpoint_times_out(api: ThreadingHTTPServer) -> None:
    conn = conn_to(api, timeout_s=0.2, max_retries=1)
    start = time.monotonic()
    with pytest.raises(SourceError, match="ReadTimeout") as info:
        table_of(conn, {"endpoint": "/v1/slow", "lookup_param": "customer"}, ["cus_a"], ["id"])
    assert info.value.transient and time.monotonic() - start < 1.5
    assert "cus_a" not in str(info.value)


def test_unreachable_server_is_transient() -> None:
    conn = HttpConnector(
        "payments", "http://127.0.0.1:1", token=TOKEN, max_retries=1, backoff_s=0.001
    )
    with pytest.raises(SourceError, match="ConnectError") as info:
        list(conn.fetch(CHARGES_ENTITY, Lookup("customer", ["cus_a"]), ["id"]))
    assert info.value.transient


def test_records_of_another_subject_are_refused(api: ThreadingHTTPServer) -> None:
    with pytest.raises(SourceError, match="records of another subject") as info:
        table_of(
            conn_to(api), {"endpoint": "/v1/leaky", "lookup_param": "customer"}, ["cus_a"], ["id"]
        )
    assert "cus_" not in str(info.value)


def test_records_become_typed_columns_or_text() -> None:
    """One Arrow type per column where the values agree; mixed values, integers past 64
    bits, objects and lists as text (JSON for structures); a key holding a dot wins over
    the path it looks like; a column no record has is null."""
    records = [
        {"n": 1, "mixed": 1, "big": 2**70, "obj": {"b": 1, "a": [2]}, "a.b": "lit", "a": {"b": 0}},
        {"n": 2, "mixed": "x", "big": 1, "obj": None, "tags": ["p", "q"], "a": {"b": 9}},
    ]
    cols = ["n", "mixed", "big", "obj", "tags", "a.b", "none"]
    batch = records_to_batch(records, cols)
    assert batch.schema.field("n").type == pa.int64()
    assert batch.to_pydict() == {
        "n": [1, 2],
        "mixed": ["1", "x"],
        "big": [str(2**70), "1"],
        "obj": ['{"a":[2],"b":1}', None],
        "tags": [None, '["p","q"]'],
        "a.b": ["lit", "9"],
        "none": [None, None],
    }
