"""Helpers for tests/test_export_backends.py: the demo world on servers (PostgreSQL, S3).

``ServerWorld`` is one demo world whose CRM is loaded into a fresh PostgreSQL database and
whose event lake and customer files live in buckets of the moto S3 server; its ``env``
points the real data map at them the way a deployment does, through the variables
``CRM_DATABASE_URL``, ``EVENT_LAKE_PATH`` and ``OBJECT_STORE_PATH`` (an
``s3://bucket/prefix?endpoint_url=...&region=...`` root). The ``expected_*`` functions
count a subject's records straight from those servers, without the engine.
"""

from __future__ import annotations

import io
import os
import socket
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pyarrow.compute as pc
import pyarrow.parquet as pq

from engine.connectors.parquet import bucket_folder, bucket_of

REGION = "us-east-1"
LAKE_BUCKETS = 64  # the data map's bucketing of the event lake


# Fake credentials for the moto S3 server: nothing reaches AWS or reads the user's config.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


def s3_root(bucket: str, prefix: str, endpoint: str) -> str:
    """``s3://bucket[/prefix]?endpoint_url=...&region=...``: one variable for an S3 store."""
    path = f"{bucket}/{prefix.strip('/')}" if prefix.strip("/") else bucket
    return f"s3://{path}?{urlencode({'endpoint_url': endpoint, 'region': REGION})}"


def dead_endpoint() -> str:
    """``http://127.0.0.1:<port>`` where nothing listens (a port just released)."""
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def upload_lake(s3: Any, world_root: Path, bucket: str, prefix: str) -> int:
    """Copy ``<world_root>/events/**`` to ``s3://bucket/prefix/events/**``; files copied."""
    n = 0
    for path in sorted((world_root / "events").rglob("*")):
        if path.is_file():
            key = f"{prefix}/{path.relative_to(world_root).as_posix()}"
            s3.upload_file(str(path), bucket, key)
            n += 1
    return n


@dataclass
class ServerWorld:
    root: Path
    env: dict[str, str]  # what run_export(env=...) gets: the data map's variables
    pg_url: str
    s3: Any  # boto3 client of the moto server
    endpoint: str
    lake_bucket: str
    lake_prefix: str
    files_bucket: str


# --------------------------------------------------------------------- expected counts


def expected_crm(pg_url: str, person_id: str) -> dict[str, int]:
    """Rows of the person in each CRM table the data map reads, counted in PostgreSQL."""
    import psycopg

    tables = {
        "crm.people": "people",
        "crm.accounts": "accounts",
        "crm.memberships": "org_members",
        "crm.support_tickets": "support_tickets",
        "crm.marketing_consents": "marketing_consents",
    }
    out = {}
    with psycopg.connect(pg_url) as conn:
        for ref, table in tables.items():
            row = conn.execute(
                f"select count(*) from {table} where person_id = %s", (person_id,)
            ).fetchone()
            out[ref] = int(row[0]) if row else 0
    return out


def expected_events(world: ServerWorld, account_ids: list[str]) -> int:
    """The accounts' events, counted in the lake's bucket files read straight from S3."""
    total = 0
    for acc in account_ids:
        folder = bucket_folder("bucket", bucket_of(acc, LAKE_BUCKETS), LAKE_BUCKETS)
        key = f"{world.lake_prefix}/events/{folder}/part-0.parquet"
        body = world.s3.get_object(Bucket=world.lake_bucket, Key=key)["Body"].read()
        table = pq.read_table(io.BytesIO(body), columns=["account_id"])
        total += int(pc.sum(pc.equal(table["account_id"], acc)).as_py() or 0)
    return total


def s3_objects(world: ServerWorld, account_ids: list[str]) -> dict[str, Any]:
    """``{S3 key: LastModified}`` of the accounts' customer files."""
    out = {}
    pages = world.s3.get_paginator("list_objects_v2")
    for acc in account_ids:
        for page in pages.paginate(Bucket=world.files_bucket, Prefix=f"{acc}/"):
            out.update({o["Key"]: o["LastModified"] for o in page.get("Contents", [])})
    return out


def expected_payments(payments_db: Path, customer_ids: list[str]) -> dict[str, int]:
    """The customers' records in the payment stand-in's own store."""
    marks = ",".join("?" * len(customer_ids))
    out = {}
    with closing(sqlite3.connect(f"file:{payments_db}?mode=ro", uri=True)) as con:
        for entity, table, column in (
            ("customers", "customers", "id"),
            ("payment_methods", "payment_methods", "customer"),
            ("charges", "charges", "customer"),
            ("invoices", "invoices", "customer"),
        ):
            sql = f"select count(*) from {table} where {column} in ({marks})"
            out[f"payments.{entity}"] = (
                con.execute(sql, customer_ids).fetchone()[0] if customer_ids else 0
            )
    return out
