"""The API's configuration: one frozen object, read from the environment by default.

Environment variables (all optional; see docs/api.md):

``PORTABILITY_REQUEST_STORE``       the request store, shared with Dagster (default
                                    ``$DAGSTER_HOME/requests.sqlite``, else
                                    ``dagster_home/requests.sqlite``)
``PORTABILITY_EXPORTS``             where archives are delivered: the folder results are
                                    streamed from (``var/exports``), or an ``s3://`` URL
                                    (results links then redirect to a presigned URL)
``PORTABILITY_API_REDIRECT_TTL``    seconds such a presigned URL is valid (300)
``PORTABILITY_API_STATE``           the API's own state: key, certificate, HMAC secret
                                    (``var/api``; created 0700, secrets 0600)
``PORTABILITY_API_HOST`` / ``_PORT``  where ``python -m api`` listens (127.0.0.1, 8000)
``PORTABILITY_API_PUBLIC_URL``      the URL portals reach the service at, used in the
                                    certificate and results links (``http://HOST:PORT``)
``PORTABILITY_API_DOMAIN``          the processor domain (``X-OpenDSR-Processor-Domain``,
                                    the extensions key; default: the public URL's host)
``PORTABILITY_API_KEY_FILE`` / ``_CERT_FILE``  a real signing key and certificate (PEM);
                                    both or neither (neither: self-signed, in the state folder)
``PORTABILITY_API_LINK_TTL``        seconds a results link stays valid (604800: 7 days)
``PORTABILITY_API_MAX_BODY``        request body limit in bytes (65536)
``PORTABILITY_API_MAX_IDENTITIES``  identities per request (10)
``PORTABILITY_API_RATE`` / ``_BURST``  per-portal token bucket: requests per second, burst
``PORTABILITY_RECIPIENTS``          recipients of direct transfers (``config/recipients.yaml``;
                                    no file: none; see config/recipients.example.yaml)
``PORTABILITY_SEAL_KEY``            the key sealing credentials that come with a request
                                    (``$DAGSTER_HOME/seal.key``; request_store/sealing.py)
``PORTABILITY_DAGSTER_URL``         the Dagster webserver (``http://127.0.0.1:3000``): a new
                                    request's run is launched at once (api/launcher.py);
                                    unset, the sensor launches it within about 10 s
``PORTABILITY_DAGSTER_LOCATION``    the code location there (``pipelines.definitions``)
``PORTABILITY_API_CALLBACKS``       ``0`` to run no callback worker in this process (1)
``PORTABILITY_API_CALLBACK_POLL``   seconds between outbox rounds (1.0)
``PORTABILITY_API_CALLBACK_TIMEOUT``  seconds per callback POST (10)
``PORTABILITY_API_CALLBACK_BACKOFF`` / ``_BACKOFF_MAX``  first retry delay and its cap (2, 900)
``PORTABILITY_API_CALLBACK_GIVE_UP``  seconds after which an undelivered callback is
                                    abandoned (604800)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from request_store.sealing import seal_key_path

API_PREFIX = "/opendsr/v2"
API_VERSION = "2.0"


class SettingsError(ValueError):
    """A setting is missing or malformed (names the variable, never a secret)."""


@dataclass(frozen=True)
class Settings:
    store_url: str = "dagster_home/requests.sqlite"
    exports: Path = Path("var/exports")
    delivery_url: str = ""  # s3://bucket/prefix?... when archives are delivered to S3
    redirect_ttl_s: int = 300
    state_dir: Path = Path("var/api")
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str = ""  # "" = http://host:port
    domain: str = ""  # "" = the public URL's host
    key_file: Path | None = None
    cert_file: Path | None = None
    link_ttl_s: int = 7 * 24 * 3600
    max_body: int = 64 * 1024
    max_identities: int = 10
    rate_per_s: float = 20.0
    burst: int = 60
    recipients_file: Path = Path("config/recipients.yaml")  # direct-transfer recipients
    seal_key: Path = Path("dagster_home/seal.key")  # seals credentials that come with requests
    dagster_url: str = ""  # "" = no direct launch (the sensor launches runs)
    dagster_location: str = "pipelines.definitions"
    callbacks: bool = True  # run the callback worker thread with the app
    callback_poll_s: float = 1.0
    callback_timeout_s: float = 10.0
    callback_backoff_s: float = 2.0
    callback_backoff_max_s: float = 900.0
    callback_give_up_s: float = 7 * 24 * 3600.0

    def __post_init__(self) -> None:
        if (self.key_file is None) != (self.cert_file is None):
            raise SettingsError("PORTABILITY_API_KEY_FILE and _CERT_FILE go together")
        for name in ("link_ttl_s", "max_body", "max_identities", "burst", "redirect_ttl_s"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1")
        if self.rate_per_s <= 0:
            raise SettingsError("rate_per_s must be positive")
        url = urlsplit(self.base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise SettingsError("PORTABILITY_API_PUBLIC_URL must be an http(s) URL")

    @property
    def base_url(self) -> str:
        """The public URL without a trailing slash."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def processor_domain(self) -> str:
        return self.domain or urlsplit(self.base_url).hostname or "localhost"

    def url(self, path: str) -> str:
        """An absolute public URL for an API path (``/opendsr/v2/...``)."""
        return f"{self.base_url}{path}"

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        def number(name: str, kind: type, default: object) -> object:
            text = get(name)
            if text is None:
                return default
            try:
                return kind(text)
            except ValueError:
                raise SettingsError(f"{name} must be a number") from None

        home = get("DAGSTER_HOME") or "dagster_home"
        exports = get("PORTABILITY_EXPORTS") or "var/exports"
        key, cert = get("PORTABILITY_API_KEY_FILE"), get("PORTABILITY_API_CERT_FILE")
        d = cls()
        values: dict[str, object] = dict(
            store_url=get("PORTABILITY_REQUEST_STORE") or str(Path(home) / "requests.sqlite"),
            exports=Path(d.exports if exports.startswith("s3://") else exports),
            delivery_url=exports if exports.startswith("s3://") else "",
            redirect_ttl_s=number("PORTABILITY_API_REDIRECT_TTL", int, d.redirect_ttl_s),
            state_dir=Path(get("PORTABILITY_API_STATE") or "var/api"),
            host=get("PORTABILITY_API_HOST") or d.host,
            port=number("PORTABILITY_API_PORT", int, d.port),
            public_url=get("PORTABILITY_API_PUBLIC_URL") or "",
            domain=get("PORTABILITY_API_DOMAIN") or "",
            key_file=Path(key) if key else None,
            cert_file=Path(cert) if cert else None,
            link_ttl_s=number("PORTABILITY_API_LINK_TTL", int, d.link_ttl_s),
            max_body=number("PORTABILITY_API_MAX_BODY", int, d.max_body),
            max_identities=number("PORTABILITY_API_MAX_IDENTITIES", int, d.max_identities),
            rate_per_s=number("PORTABILITY_API_RATE", float, d.rate_per_s),
            burst=number("PORTABILITY_API_BURST", int, d.burst),
            recipients_file=Path(get("PORTABILITY_RECIPIENTS") or d.recipients_file),
            seal_key=seal_key_path(env),
            dagster_url=get("PORTABILITY_DAGSTER_URL") or "",
            dagster_location=get("PORTABILITY_DAGSTER_LOCATION") or d.dagster_location,
            callbacks=(get("PORTABILITY_API_CALLBACKS") or "1") not in ("0", "false", "no"),
            callback_poll_s=number("PORTABILITY_API_CALLBACK_POLL", float, d.callback_poll_s),
            callback_timeout_s=number(
                "PORTABILITY_API_CALLBACK_TIMEOUT", float, d.callback_timeout_s
            ),
            callback_backoff_s=number(
                "PORTABILITY_API_CALLBACK_BACKOFF", float, d.callback_backoff_s
            ),
            callback_backoff_max_s=number(
                "PORTABILITY_API_CALLBACK_BACKOFF_MAX", float, d.callback_backoff_max_s
            ),
            callback_give_up_s=number(
                "PORTABILITY_API_CALLBACK_GIVE_UP", float, d.callback_give_up_s
            ),
        )
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
