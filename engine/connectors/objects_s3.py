"""Customer files in an S3 bucket (or any S3-compatible store) through boto3.

Listing uses the ``list_objects_v2`` paginator; ``content_type`` comes from a HEAD per
object (in a small thread pool, only when the column is requested), or from the key's
extension when S3 only knows ``binary/octet-stream``. ``open`` wraps ``get_object``'s
body in a buffered binary reader. boto3 error texts hold keys and URLs (personal data),
so errors name only the S3 error code and HTTP status. Credentials come from the
standard AWS environment variables.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from engine.connectors.base import SourceError
from engine.connectors.objects import BATCH_ROWS, ObjectInfo, ObjectStore, guess_content_type

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_GENERIC = {None, "", "binary/octet-stream", "application/octet-stream"}
_S3_TRANSIENT = {
    "SlowDown",
    "Throttling",
    "RequestTimeout",
    "ServiceUnavailable",
    "InternalError",
    "RequestLimitExceeded",
}
_REFUSED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"}


def _micros(when: dt.datetime) -> int:
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return (when - _EPOCH) // dt.timedelta(microseconds=1)


class S3ObjectStore(ObjectStore):
    """Objects in an S3 bucket, optionally below ``key_prefix``; keys are full S3 keys."""

    def __init__(
        self,
        name: str,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        key_prefix: str = "",
        max_attempts: int = 5,
        batch_rows: int = BATCH_ROWS,
        head_workers: int = 8,
        list_page_size: int = 1_000,
    ) -> None:
        super().__init__(name, batch_rows)
        self.bucket = bucket
        self.key_prefix = key_prefix or ""
        self.head_workers = head_workers
        self.list_page_size = list_page_size
        config = Config(
            retries={"max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
            s3={"addressing_style": "path" if endpoint_url else "auto"},
        )
        self.client = boto3.client(
            "s3", endpoint_url=endpoint_url, region_name=region, config=config
        )

    def close(self) -> None:
        self.client.close()

    def _full_prefix(self, prefix: str) -> str:
        return self.key_prefix + prefix

    def _list(self, prefix: str, want_type: bool) -> Iterable[ObjectInfo]:
        out = []
        with _S3Errors(self.name, "listing"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket,
                Prefix=self._full_prefix(prefix),
                PaginationConfig={"PageSize": self.list_page_size},
            )
            for page in pages:
                for item in page.get("Contents", []):
                    etag = str(item.get("ETag", "")).strip('"') or None
                    out.append(
                        ObjectInfo(
                            item["Key"], int(item["Size"]), _micros(item["LastModified"]), etag
                        )
                    )
            if want_type and out:
                with ThreadPoolExecutor(self.head_workers) as pool:
                    types = list(pool.map(self._content_type, [o.key for o in out]))
                out = [
                    ObjectInfo(o.key, o.size, o.last_modified_us, o.etag, t)
                    for o, t in zip(out, types, strict=True)
                ]
        return out

    def _content_type(self, key: str) -> str:
        try:
            kind = self.client.head_object(Bucket=self.bucket, Key=key).get("ContentType")
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 404:
                raise
            kind = None  # deleted since it was listed
        return guess_content_type(key) if kind in _GENERIC else str(kind)

    def open(self, entity: Mapping[str, Any], key: str) -> BinaryIO:
        """Stream an object's content (a buffered reader over the response body)."""
        if not isinstance(key, str) or not key or not key.startswith(self.key_prefix):
            raise SourceError(self.name, "object key refused: outside the store's key prefix")
        with _S3Errors(self.name, "reading an object"):
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        raw = _BodyRaw(body, self.name)
        return io.BufferedReader(raw, buffer_size=1 << 20)  # type: ignore[return-value]


class _S3Errors:
    """Turn boto3 errors (whose text holds keys and URLs) into SourceError."""

    def __init__(self, system: str, what: str) -> None:
        self.system, self.what = system, what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None or isinstance(exc, SourceError):
            return
        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", "unknown"))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if code in ("NoSuchKey", "404") and "object" in self.what:
                raise SourceError(self.system, "object not found") from None
            if code in _REFUSED:
                raise SourceError(
                    self.system, f"{self.what}: the credentials were refused ({code})"
                ) from None
            transient = status >= 500 or code in _S3_TRANSIENT
            raise SourceError(
                self.system, f"{self.what} failed ({code}, HTTP {status})", transient=transient
            ) from None
        if isinstance(exc, BotoCoreError):
            transient = "Credential" not in type(exc).__name__
            raise SourceError(
                self.system, f"{self.what} failed ({type(exc).__name__})", transient=transient
            ) from None


class _BodyRaw(io.RawIOBase):
    """A raw binary stream over a boto3 StreamingBody; read errors become SourceError."""

    def __init__(self, body: Any, system: str) -> None:
        self._body = body
        self._system = system

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        with _S3Errors(self._system, "reading an object"):
            try:
                data = self._body.read(len(buffer))
            except OSError as exc:
                raise SourceError(
                    self._system,
                    f"reading an object failed ({type(exc).__name__})",
                    transient=True,
                ) from None
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()
