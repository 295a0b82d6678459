"""``fetch_many``: a bulk export's API calls all at once from one thread, against a local
JSON API. Each lookup gets what ``fetch`` gives it; a lookup that fails stops only
itself; ``max_concurrent`` and ``requests_per_second`` hold across threads; TLS is
verified."""

from __future__ import annotations

import datetime as dt
import ipaddress
import itertools
import ssl
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from engine.connectors.base import Lookup, SourceError
from engine.connectors.http import HttpConnector
from tests.http_api import CHARGES_ENTITY, TOKEN, conn_to, serving

TRACKED = {"endpoint": "/v1/tracked", "lookup_param": "customer"}
CUSTOMER = {"endpoint": "/v1/customers/{value}", "single": True}


def _tables(got: list[list[pa.RecordBatch] | SourceError]) -> list[pa.Table | SourceError]:
    return [g if isinstance(g, SourceError) else pa.Table.from_batches(g) if g else None
            for g in got]  # fmt: skip


def test_each_lookup_gets_what_fetch_gives_it(api: ThreadingHTTPServer) -> None:
    """Pages, several values per lookup, a value found nowhere, one object by id and a
    404: the same batches as one ``fetch`` per lookup, in lookup order."""
    conn = conn_to(api)
    cols = ["id", "amount", "outcome.type", "metadata"]
    lookups = [
        Lookup("customer", ["cus_b", "cus_a"]),
        Lookup("customer", ["cus_none"]),
        Lookup("customer", ["cus_a"]),
    ]
    many = conn.fetch_many(CHARGES_ENTITY, lookups, cols)
    one_by_one = [list(conn.fetch(CHARGES_ENTITY, lk, cols)) for lk in lookups]
    assert [[b.num_rows for b in g] for g in many] == [[24], [], [23]]  # type: ignore[union-attr]
    assert _tables(many) == _tables(one_by_one)  # type: ignore[arg-type]
    objects = conn.fetch_many(CUSTOMER, [Lookup("id", ["cus_missing"]), Lookup("id", ["cus_a"])],
                              ["id", "address.line1"])  # fmt: skip
    assert objects[0] == [] and pa.Table.from_batches(objects[1]).to_pylist() == [  # type: ignore[arg-type]
        {"id": "cus_a", "address.line1": "1 Main St"}
    ]


def test_a_lookup_that_fails_stops_only_itself(api: ThreadingHTTPServer) -> None:
    """Another subject's records, a value that cannot be a path segment, a server that
    keeps failing: each such lookup gets its error (no value in it), the rest their data."""
    conn = conn_to(api, max_retries=1)
    leaky = {"endpoint": "/v1/leaky", "lookup_param": "customer"}
    [foreign, fine] = conn.fetch_many(
        leaky, [Lookup("customer", ["cus_a"]), Lookup("customer", ["cus_b"])], ["id"]
    )
    assert isinstance(foreign, SourceError) and "records of another subject" in str(foreign)
    assert "cus_" not in str(foreign)
    assert [b.num_rows for b in fine] == [1]  # type: ignore[union-attr]
    [bad, good] = conn.fetch_many(CUSTOMER, [Lookup("id", [".."]), Lookup("id", ["cus_a"])], ["id"])
    assert isinstance(bad, SourceError) and "path segment" in str(bad)
    assert not isinstance(good, SourceError) and good[0].num_rows == 1
    broken = {"endpoint": "/v1/broken", "lookup_param": "customer"}
    [gave_up] = conn.fetch_many(broken, [Lookup("customer", ["cus_a"])], ["id"])
    assert isinstance(gave_up, SourceError) and gave_up.transient
    assert "gave up after 2 attempts (last: HTTP 503)" in str(gave_up)
    with pytest.raises(SourceError, match="needs 'lookup_param'"):  # the entity: all of them
        conn.fetch_many({"endpoint": "/v1/charges"}, [Lookup("customer", ["cus_a"])], ["id"])


def test_retries_wait_without_holding_up_the_other_requests(api: ThreadingHTTPServer) -> None:
    conn = conn_to(api)
    flaky = {"endpoint": "/v1/flaky429", "lookup_param": "customer"}
    [got] = conn.fetch_many(flaky, [Lookup("customer", ["cus_b"])], ["id"])
    assert [b.column("id").to_pylist() for b in got] == [["ch_b00"]]  # type: ignore[union-attr]
    assert api.hits["/v1/flaky429"] == 2  # type: ignore[attr-defined]


@pytest.mark.parametrize("threads", [1, 3])
def test_max_concurrent_requests_in_flight_from_any_number_of_threads(
    api: ThreadingHTTPServer, threads: int
) -> None:
    """Twelve lookups a thread against an endpoint that answers in 20 ms: the requests
    overlap up to ``max_concurrent`` and never beyond, also when threads read at once."""
    conn = conn_to(api, max_concurrent=3)
    out: list[list[list[pa.RecordBatch] | SourceError]] = []

    def read(n: int) -> None:
        lookups = [Lookup("customer", [f"c{n}-{i}"]) for i in range(12)]
        out.append(conn.fetch_many(TRACKED, lookups, ["id", "customer"]))

    workers = [threading.Thread(target=read, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert api.peak == 3  # type: ignore[attr-defined]
    assert sorted(b.column("id")[0].as_py() for got in out for g in got for b in g) == sorted(  # type: ignore[union-attr]
        f"t_c{n}-{i}" for n in range(threads) for i in range(12)
    )


def test_threads_that_come_and_go_reuse_the_pool_s_connections(api: ThreadingHTTPServer) -> None:
    """A single export reads its sources in threads of its own; each request borrows a
    handle, and its keep-alive connection, from the connector's pool: twenty exports one
    after another use one connection, five at once at most five, and no more than
    ``max_concurrent`` stay open."""
    conn = conn_to(api, max_concurrent=2)
    lookup = Lookup("customer", ["cus_b"])

    def export(times: int = 1) -> None:
        for _ in range(times):
            assert [b.num_rows for b in conn.fetch(CHARGES_ENTITY, lookup, ["id"])] == [1]

    for _ in range(20):
        one = threading.Thread(target=export)
        one.start()
        one.join()
    assert len(api.clients) == 1  # type: ignore[attr-defined]
    several = [threading.Thread(target=export, args=(4,)) for _ in range(5)]
    for t in several:
        t.start()
    for t in several:
        t.join()
    assert len(api.clients) <= 1 + 5  # type: ignore[attr-defined]
    assert len(conn._client._idle) <= 2  # the others were closed when given back


def test_requests_per_second_spaces_the_requests_of_a_batch(api: ThreadingHTTPServer) -> None:
    conn = conn_to(api, max_concurrent=8, requests_per_second=50)
    lookups = [Lookup("customer", [f"c{i}"]) for i in range(6)]
    assert all(not isinstance(g, SourceError) for g in conn.fetch_many(TRACKED, lookups, ["id"]))
    starts = api.starts  # type: ignore[attr-defined]
    assert len(starts) == 6
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(g >= 0.015 for g in gaps), gaps  # 20 ms slots (arrival jitter allowed)


def test_timeouts_and_an_unreachable_server_are_transient_and_name_no_host(
    api: ThreadingHTTPServer,
) -> None:
    slow = {"endpoint": "/v1/slow", "lookup_param": "customer"}
    conn = conn_to(api, timeout_s=0.2, max_retries=0)
    [timed_out, fine] = conn.fetch_many(
        slow, [Lookup("customer", ["cus_a"]), Lookup("customer", ["cus_b"])], ["id"]
    )
    assert isinstance(timed_out, SourceError) and timed_out.transient
    assert "ReadTimeout" in str(timed_out)
    assert isinstance(fine, SourceError)  # the same slow endpoint: both timed out, alone
    nowhere = HttpConnector("payments", "http://127.0.0.1:1", token=TOKEN, max_retries=0)
    [refused] = nowhere.fetch_many(CHARGES_ENTITY, [Lookup("customer", ["cus_a"])], ["id"])
    assert isinstance(refused, SourceError) and "ConnectError" in str(refused)
    assert refused.transient and "127.0.0.1" not in str(refused)


# -- TLS --------------------------------------------------------------------------------


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate for 127.0.0.1 signed by it: (ca.pem, cert.pem, key.pem)."""
    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    paths = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@pytest.fixture
def tls_api(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    ca, cert, key = _certificates(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with serving(context) as server:
        yield f"https://127.0.0.1:{server.server_address[1]}", ca


def test_tls_is_verified_against_the_trusted_certificates(
    tls_api: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An API whose certificate no trusted CA signed is refused (named, not quoted);
    trusting its CA (``SSL_CERT_FILE``, as for Python's ssl) lets both ways read it."""
    url, ca = tls_api
    lookup = Lookup("customer", ["cus_b"])
    untrusted = HttpConnector("payments", url, token=TOKEN, max_retries=0)
    [refused] = untrusted.fetch_many(CHARGES_ENTITY, [lookup], ["id"])
    assert isinstance(refused, SourceError) and "TLSError" in str(refused)
    with pytest.raises(SourceError, match="TLSError"):
        list(untrusted.fetch(CHARGES_ENTITY, lookup, ["id"]))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    trusted = HttpConnector("payments", url, token=TOKEN, max_retries=0)
    [found] = trusted.fetch_many(CHARGES_ENTITY, [lookup], ["id"])
    assert [b.column("id").to_pylist() for b in found] == [["ch_b00"]]  # type: ignore[union-attr]
    assert [b.num_rows for b in trusted.fetch(CHARGES_ENTITY, lookup, ["id"])] == [1]
