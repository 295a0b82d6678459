"""Direct transfer to another controller (GDPR Art. 20(2), "where technically feasible").

A request may name a recipient configured in a recipients file
(config/recipients.example.yaml): ``kind: s3`` (its bucket and prefix, credentials from
environment variables the file names) or ``kind: presigned_put`` (one streamed PUT to a
URL that comes with the request, to a host the file allows).

Security: the file holds variable NAMES, never credentials; the request store keeps only
the recipient NAME. A presigned URL is a bearer credential: seal it on receipt (age or a
KMS data key) in a separate table keyed by request id, read it once when delivering and
delete it after delivery or on cancel/deny/purge; never log it or put it in run config,
metadata, status or errors. Here errors name only its host, ``Delivered.location`` is
``scheme://host/path``, and httpx.Client (which logs full URLs) is not used. The audit
trail gets recipient, label, redacted location, size and SHA-256 (:func:`audit_detail`).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import httpx
import yaml

from exporters.delivery import Archive, Delivered, Delivery, archive_size, open_archive

_LOOPBACK_V4 = re.compile(r"127(\.\d{1,3}){3}")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
_AWS_KEY_ID = re.compile(r"(AKIA|ASIA)[A-Z0-9]{16}")  # an access key id is not a name
_SECRET_WORDS = ("secret", "password", "token", "access_key", "api_key", "credential")
_BY_NAME = "credentials are referenced by environment variable name (credentials_env)"
_CREDENTIALS = {"access_key_id", "secret_access_key", "session_token"}
_S3_FIELDS = {"kind", "label", "url", "credentials_env", "sse", "kms_key_id"}
_FIELDS = {"s3": _S3_FIELDS, "presigned_put": {"kind", "label", "allowed_hosts"}}
_S3_QUERY = {"endpoint_url", "region", "sse", "kms_key_id", "part_size", "retention_days"}


class TransferError(RuntimeError):
    """A transfer that did not happen; names the host and status, never the URL."""


class RecipientsError(ValueError):
    """A bad recipients file or recipient; names file, recipient and field, no values."""


def check_url(url: str, what: str = "presigned PUT URL") -> tuple[str, str]:
    """(host[:port], ``scheme://host[:port]/path``) of an https or loopback http URL."""
    try:
        httpx.URL(url)  # what the request will parse (its error could quote the URL)
    except httpx.InvalidURL:
        raise ValueError(f"{what} is not a valid URL") from None
    parts = urlsplit(url)
    host = parts.hostname or ""
    loopback = host in ("localhost", "::1") or bool(_LOOPBACK_V4.fullmatch(host))
    if not host or parts.scheme not in ("https", "http") or "@" in parts.netloc:
        raise ValueError(f"{what} must be an https:// URL with a host and no user:password")
    if parts.scheme == "http" and not loopback:
        raise ValueError(f"{what} must be https (plain http only to loopback), not http to {host}")
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    return netloc, f"{parts.scheme}://{netloc}{parts.path or '/'}"


class PresignedPutDelivery:
    """One archive streamed by HTTP PUT to a presigned URL (S3, GCS, Azure SAS, ...)."""

    def __init__(
        self, url: str, *, timeout_s: float = 60.0, max_attempts: int = 3, backoff_s: float = 1.0
    ) -> None:
        self.host, self.location = check_url(url)
        self._url, self._name = url, ""
        self.timeout, self.max_attempts, self.backoff_s = timeout_s, max(1, max_attempts), backoff_s

    def deliver(self, archive: Archive, name: str) -> Delivered:
        """PUT ``archive``; one URL takes one archive (``name`` guards against a second)."""
        if self._name not in ("", name):
            raise ValueError("a presigned PUT URL takes one archive: ask for one part")
        self._name, problem = name, ""
        for attempt in range(1, self.max_attempts + 1):
            time.sleep(self.backoff_s * 2 ** (attempt - 2) if attempt > 1 else 0)
            try:
                status, size, digest = self._put(archive)
            except httpx.TransportError as exc:  # connection, timeout, protocol: retried
                problem = type(exc).__name__
                continue
            if 200 <= status < 300:
                return Delivered(self.location, size, digest)
            problem = f"HTTP {status}"
            if status < 500:
                break  # 3xx/4xx: refused (expired, bad signature, ...): final
        raise TransferError(f"PUT to {self.host} failed after {attempt} attempt(s): {problem}")

    def _put(self, archive: Archive) -> tuple[int, int, str]:
        h = hashlib.sha256()
        size = archive_size(archive)
        with open_archive(archive) as f, httpx.HTTPTransport() as transport:

            def body() -> Iterator[bytes]:  # re-read from the start on every attempt
                left = size
                while left and (chunk := f.read(min(1 << 20, left))):
                    h.update(chunk)
                    left -= len(chunk)
                    yield chunk

            headers = {"Content-Type": "application/zip", "Content-Length": str(size)}
            request = httpx.Request("PUT", self._url, headers=headers, content=body())
            request.extensions["timeout"] = httpx.Timeout(self.timeout).as_dict()
            response = transport.handle_request(request)  # httpx.Client logs the full URL
            response.close()  # its body is never read: an error may echo the signed query
        return response.status_code, size, h.hexdigest()


@dataclass(frozen=True)
class RecipientConfig:
    name: str
    label: str  # the organisation's name, for the audit trail and the status
    kind: Literal["s3", "presigned_put"]
    url: str | None = None  # s3://bucket/prefix?endpoint_url=...
    credentials_env: Mapping[str, str] = field(default_factory=dict)  # field -> VARIABLE
    sse: str | None = None
    kms_key_id: str | None = None
    allowed_hosts: tuple[str, ...] = ()


def load_recipients(path: Path) -> dict[str, RecipientConfig]:
    """The checked ``recipients:`` mapping of a YAML file (see the example file)."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:  # a YAML error quotes the file: line only
        at = f" at line {m.line + 1}" if (m := getattr(exc, "problem_mark", None)) else ""
        raise RecipientsError(f"{path}: cannot be read ({type(exc).__name__}{at})") from None
    recipients = data.get("recipients") if isinstance(data, dict) else None
    if not isinstance(recipients, dict):
        raise RecipientsError(f"{path}: expected a 'recipients:' mapping of names")
    return {str(n): _recipient(path, str(n), raw) for n, raw in recipients.items()}


def _recipient(path: Path, name: str, raw: Any) -> RecipientConfig:
    def bad(what: str) -> RecipientsError:
        return RecipientsError(f"{path}: recipient {name!r}: {what}")

    if not _NAME.fullmatch(name):
        raise RecipientsError(f"{path}: recipient names are 1-64 of a-z, 0-9, '-', '_'")
    if not isinstance(raw, dict):
        raise bad("expected a mapping of fields")
    for key in map(str, raw):
        if key != "credentials_env" and any(w in key.lower() for w in _SECRET_WORDS):
            raise bad(f"field {key!r} refused: {_BY_NAME}, never written in the file")
    kind, label = raw.get("kind"), raw.get("label")
    if kind not in _FIELDS:
        raise bad(f"field 'kind' must be one of {', '.join(_FIELDS)}")
    if unknown := sorted(set(map(str, raw)) - _FIELDS[kind]):
        raise bad(f"unknown field(s) for kind {kind}: {', '.join(unknown)}")
    if not isinstance(label, str) or not label.strip() or not label.isprintable():
        raise bad("field 'label' (the organisation's name) must be one line of text")
    if kind == "presigned_put":
        hosts = raw.get("allowed_hosts")
        if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) for h in hosts):
            raise bad("field 'allowed_hosts' must list the hosts its PUT URLs may name")
        return RecipientConfig(name, label.strip(), kind, allowed_hosts=tuple(hosts))
    url, creds, sse, kms = (raw.get(k) for k in ("url", "credentials_env", "sse", "kms_key_id"))
    parts = urlsplit(url) if isinstance(url, str) else None
    if not parts or parts.scheme != "s3" or not parts.netloc:
        raise bad("field 'url' must be s3://bucket/prefix[?endpoint_url=...]")
    query = dict(parse_qsl(parts.query))
    if unknown := sorted(set(query) - _S3_QUERY):
        raise bad(f"field 'url': unknown parameter(s) {', '.join(unknown)}")
    try:
        check_url(query.get("endpoint_url", "https://s3.amazonaws.com"), "endpoint_url")
    except ValueError as exc:
        raise bad(f"field 'url': {exc}") from None
    creds = creds or {}
    if not isinstance(creds, dict) or not set(map(str, creds)) <= _CREDENTIALS:
        raise bad(f"field 'credentials_env' may only name {', '.join(sorted(_CREDENTIALS))}")
    if creds and not {"access_key_id", "secret_access_key"} <= set(creds):
        raise bad("field 'credentials_env' needs both access_key_id and secret_access_key")
    for key, var in creds.items():
        if not isinstance(var, str) or not _ENV_NAME.fullmatch(var) or _AWS_KEY_ID.match(var):
            raise bad(f"field 'credentials_env.{key}' must be a variable NAME: {_BY_NAME}")
    if sse not in (None, "AES256", "aws:kms") or (kms and sse != "aws:kms"):
        raise bad("field 'sse' must be AES256 or aws:kms (kms_key_id needs aws:kms)")
    return RecipientConfig(name, label.strip(), kind, url, dict(creds), sse, kms)


def recipient_delivery(
    config: RecipientConfig, *, put_url: str | None = None, env: Mapping[str, str] = os.environ
) -> Delivery:
    """Where ``config``'s archives go: its S3 prefix, or the request's presigned URL."""
    where = f"recipient {config.name!r}"
    if config.kind == "presigned_put":
        if not put_url:
            raise RecipientsError(f"{where}: the request must carry the recipient's PUT URL")
        if (host := urlsplit(put_url).hostname) not in {h.lower() for h in config.allowed_hosts}:
            raise RecipientsError(f"{where}: PUT URL host {host!r} is not in allowed_hosts")
        return PresignedPutDelivery(put_url)
    if put_url:
        raise RecipientsError(f"{where}: an S3 recipient takes no PUT URL")
    import boto3  # only when S3 is used
    from botocore.config import Config

    from exporters.s3_delivery import S3Delivery

    if missing := [var for var in config.credentials_env.values() if not env.get(var)]:
        raise RecipientsError(f"{where}: environment variable(s) not set: {', '.join(missing)}")
    keys = {f"aws_{key}": env[var] for key, var in config.credentials_env.items()}
    query = dict(parse_qsl(urlsplit(str(config.url)).query))
    endpoint, retries = query.get("endpoint_url"), {"max_attempts": 5, "mode": "standard"}
    s3 = {"addressing_style": "path" if endpoint else "auto"}  # as S3Delivery does
    client = boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name=query.get("region"), **keys,
        config=Config(signature_version="s3v4", retries=retries, s3=s3),
    )  # fmt: skip
    options = {k: v for k, v in (("sse", config.sse), ("kms_key_id", config.kms_key_id)) if v}
    return S3Delivery.from_url(str(config.url), client=client, **options)


@dataclass(frozen=True)
class TransferRecord:
    """What the audit trail and the status say of one transfer (never a credential)."""

    recipient: str
    label: str
    location: str  # redacted: no query string or fragment
    bytes: int
    sha256: str

    @classmethod
    def of(cls, config: RecipientConfig, done: Delivered) -> TransferRecord:
        return cls(config.name, config.label, redact(done.location), done.bytes, done.sha256)


def redact(location: str) -> str:
    """A location without its query string or fragment (where a URL's credential sits)."""
    return re.split(r"[?#]", location, maxsplit=1)[0]


def audit_detail(record: TransferRecord) -> str:
    """``transferred to acme-cloud (ACME Cloud Ltd): <where> 12345 bytes sha256 <hex>``."""
    where = redact(record.location)
    return (f"transferred to {record.recipient} ({record.label}): {where} "
            f"{record.bytes} bytes sha256 {record.sha256}")  # fmt: skip
