"""Delivery to an S3 bucket (or any S3-compatible store: MinIO, Ceph, R2) through boto3.

The archive is streamed in ``part_size`` chunks into a multipart upload (one part in
memory at a time, SHA-256 computed in the same pass); an archive smaller than one part
goes in a single PutObject. Each request carries its SHA-256 (``x-amz-checksum-sha256``)
so that S3 refuses a damaged part, server-side encryption (SSE-S3 ``AES256`` or SSE-KMS
``aws:kms`` with a key id) and two tags: ``request-id=<opaque id>`` and
``expires=<YYYY-MM-DD>`` (now + ``retention_days``). Tag values are never personal data:
the request id must be an opaque token (letters, digits, ``-``, ``_``).

All or nothing: the object only becomes visible at CompleteMultipartUpload. On any
failure the upload is aborted and :class:`S3DeliveryError` names the bucket, the key and
the S3 error code (never the archive's contents). A process killed mid-upload cannot
abort; the next ``deliver`` of the same key aborts such stale uploads first. Production
buckets should also carry a lifecycle rule that drops abandoned parts
(``aws s3api put-bucket-lifecycle-configuration --lifecycle-configuration file://rule.json``)::

    {"Rules": [{"ID": "abort-incomplete-multipart-uploads", "Status": "Enabled",
                "Filter": {"Prefix": ""},
                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}]}

One deliverer per key at a time: a second concurrent ``deliver`` of the same key would
abort the first one's upload (the engine delivers a request once, by one worker).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from exporters.delivery import Archive, Delivered, archive_size, open_archive

MiB = 1024 * 1024
MIN_PART_SIZE = 5 * MiB  # S3's minimum for every part but the last (moto enforces it too)
DEFAULT_PART_SIZE = 16 * MiB
MAX_PARTS = 10_000
MAX_PRESIGN_TTL_S = 7 * 24 * 3600  # SigV4 presigned URLs live at most 7 days
_OPAQUE_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_PART_SUFFIX = re.compile(r"-\d{3}$")


class S3DeliveryError(RuntimeError):
    """A delivery that did not happen (nothing visible was left behind)."""


@dataclass(frozen=True)
class S3Object:
    location: str
    bytes: int
    tags: dict[str, str]
    sse: str | None
    kms_key_id: str | None


def _b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def _problem(exc: BaseException) -> str:
    """The S3 error code (or the client-side error's type), never a message body."""
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "unknown")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
        return f"{code} (HTTP {status}) in {exc.operation_name}"
    return type(exc).__name__


def parse_location(location: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key)."""
    parts = urlsplit(location)
    if parts.scheme != "s3" or not parts.netloc or not parts.path.strip("/"):
        raise ValueError("not an s3://bucket/key location")
    return parts.netloc, parts.path.lstrip("/")


class S3Delivery:
    """Archives as objects ``<prefix>/<name>`` in ``bucket``."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        sse: str = "AES256",
        kms_key_id: str | None = None,
        part_size: int = DEFAULT_PART_SIZE,
        retention_days: int = 30,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        client: Any = None,
        max_attempts: int = 5,
    ) -> None:
        if sse not in ("AES256", "aws:kms"):
            raise ValueError("sse must be 'AES256' or 'aws:kms'")
        if kms_key_id and sse != "aws:kms":
            raise ValueError("kms_key_id needs sse='aws:kms'")
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3 rule)")
        if retention_days < 1:
            raise ValueError("retention_days must be at least 1")
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.sse, self.kms_key_id = sse, kms_key_id
        self.part_size, self.retention_days, self.clock = part_size, retention_days, clock
        config = Config(
            signature_version="s3v4",
            retries={"max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=10,
            read_timeout=120,
            s3={"addressing_style": "path" if endpoint_url else "auto"},
        )
        self.client = client or boto3.client(
            "s3", endpoint_url=endpoint_url, region_name=region, config=config
        )

    @classmethod
    def from_url(cls, url: str, **options: Any) -> S3Delivery:
        """``s3://bucket/prefix?endpoint_url=...&region=...&sse=aws:kms&kms_key_id=...``."""
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError("not an s3://bucket/prefix URL")
        known = {"endpoint_url", "region", "sse", "kms_key_id", "part_size", "retention_days"}
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key not in known:
                raise ValueError(f"unknown parameter {key!r} in the s3:// URL")
            options.setdefault(key, int(value) if key in ("part_size", "retention_days") else value)
        return cls(parts.netloc, parts.path, **options)

    def key_for(self, name: str) -> str:
        if not name or "/" in name or name in (".", ".."):
            raise ValueError("name must be a plain file name")
        return f"{self.prefix}/{name}" if self.prefix else name

    def deliver(
        self,
        archive: Archive,
        name: str,
        *,
        request_id: str | None = None,
        expires: datetime | None = None,
    ) -> Delivered:
        """Upload ``archive`` as ``<prefix>/<name>``, whole or not at all."""
        key = self.key_for(name)
        if archive_size(archive) > MAX_PARTS * self.part_size:
            raise ValueError(f"archive needs more than {MAX_PARTS} parts: raise part_size")
        rid = request_id or _PART_SUFFIX.sub("", name.removesuffix(".zip"))
        if not _OPAQUE_ID.fullmatch(rid):
            raise ValueError("request id must be an opaque token (letters, digits, - and _)")
        until = expires or self.clock() + timedelta(days=self.retention_days)
        if until.tzinfo is None:
            raise ValueError("the clock (and expires) must give aware datetimes")
        extra: dict[str, Any] = {
            "ServerSideEncryption": self.sse,
            "Tagging": urlencode({"request-id": rid, "expires": until.astimezone(UTC).date()}),
        }
        if self.kms_key_id:
            extra["SSEKMSKeyId"] = self.kms_key_id
        where = f"s3://{self.bucket}/{key}"
        try:
            self.abort_stale(key)
            with open_archive(archive) as f:
                size, digest = self._upload(f, key, extra)
        except S3DeliveryError:
            raise
        except Exception as exc:
            raise S3DeliveryError(f"delivery to {where} failed: {_problem(exc)}") from exc
        return Delivered(where, size, digest)

    def abort_stale(self, key: str) -> int:
        """Abort in-progress multipart uploads of exactly ``key``; how many there were."""
        stale = []
        pages = self.client.get_paginator("list_multipart_uploads")
        for page in pages.paginate(Bucket=self.bucket, Prefix=key):
            stale += [u["UploadId"] for u in page.get("Uploads", []) if u["Key"] == key]
        for upload_id in stale:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        return len(stale)

    def _upload(self, f: Any, key: str, extra: dict[str, Any]) -> tuple[int, str]:
        whole = hashlib.sha256()
        chunk = f.read(self.part_size)
        whole.update(chunk)
        if len(chunk) < self.part_size:  # below one part: a single (atomic) PutObject
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=chunk,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=_b64_sha256(chunk),
                **extra,
            )
            return len(chunk), whole.hexdigest()
        upload_id = self.client.create_multipart_upload(
            Bucket=self.bucket, Key=key, ChecksumAlgorithm="SHA256", **extra
        )["UploadId"]
        try:
            parts, size = [], 0
            while chunk:
                number, checksum = len(parts) + 1, _b64_sha256(chunk)
                etag = self.client.upload_part(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=chunk,
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=checksum,
                )["ETag"]
                parts.append({"PartNumber": number, "ETag": etag, "ChecksumSHA256": checksum})
                size += len(chunk)
                del chunk  # drop this part before reading the next: one part in memory
                chunk = f.read(self.part_size)
                whole.update(chunk)
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException as exc:  # even KeyboardInterrupt: leave no upload behind
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except Exception as abort_exc:
                exc.add_note(f"aborting the upload failed too: {_problem(abort_exc)}")
            raise
        return size, whole.hexdigest()

    def presigned_url(self, location: str, ttl_s: int = MAX_PRESIGN_TTL_S) -> str:
        """A GET URL for ``location`` valid ``ttl_s`` seconds (1 s to 7 days, SigV4's limit)."""
        if not 1 <= ttl_s <= MAX_PRESIGN_TTL_S:
            raise ValueError(f"ttl_s must be between 1 and {MAX_PRESIGN_TTL_S} s (7 days)")
        bucket, key = parse_location(location)
        return str(
            self.client.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=ttl_s
            )
        )

    def head(self, location: str) -> S3Object:
        """Size, tags and encryption of a delivered object."""
        bucket, key = parse_location(location)
        try:
            meta = self.client.head_object(Bucket=bucket, Key=key)
            tags = self.client.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
        except (ClientError, BotoCoreError) as exc:
            raise S3DeliveryError(f"head of {location} failed: {_problem(exc)}") from exc
        return S3Object(
            location,
            int(meta["ContentLength"]),
            {t["Key"]: t["Value"] for t in tags},
            meta.get("ServerSideEncryption"),
            meta.get("SSEKMSKeyId"),
        )

    def delete(self, location: str) -> None:
        """Remove a delivered object (retention); deleting a missing one is not an error."""
        bucket, key = parse_location(location)
        try:
            self.client.delete_object(Bucket=bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise S3DeliveryError(f"deleting {location} failed: {_problem(exc)}") from exc
