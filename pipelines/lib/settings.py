"""Where the code location finds the request store, staging, deliveries and the data map.

One resource, ``portability``, read from the environment so that the webserver, the
daemon and the run workers agree:

``PORTABILITY_REQUEST_STORE``  request store: a SQLite path or a database URL
                               (default ``$DAGSTER_HOME/requests.sqlite``)
``PORTABILITY_STAGING``        private per-request staging areas (default ``var/staging``)
``PORTABILITY_EXPORTS``        where archives are delivered: a folder (default ``var/exports``)
                               or ``s3://bucket/prefix?endpoint_url=...&sse=...``
``PORTABILITY_DATAMAP``        the data map (default ``config/datamap.yaml``)
``PORTABILITY_ENV_FILE``       ``NAME=value`` lines for the data map's variables (optional;
                               ``make serve`` points it at the demo world's settings)
``PORTABILITY_RETENTION_DAYS`` days a delivered archive is kept (default 30)
``PORTABILITY_MAX_DOWNLOADS``  downloads allowed per archive part (default: no limit)
``PORTABILITY_RECIPIENTS``     recipients of direct transfers (``config/recipients.yaml``)
``PORTABILITY_SEAL_KEY``       the key that opens credentials sealed by the API
                               (``$DAGSTER_HOME/seal.key``)
``PORTABILITY_DAGSTER_URL``    set when the rights-portal API launches portal requests'
                               runs itself (api/launcher.py): the sensor then leaves those
                               requests to it for ``LAUNCH_GRACE_S`` seconds
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path

import dagster as dg

from api.launcher import LAUNCH_GRACE_S
from engine.datamap import DEFAULT_DATAMAP, DataMap, load_datamap
from engine.envfile import read_env
from engine.request import ExportRequest
from engine.steps import ExportSteps
from exporters.delivery import Delivery, open_delivery
from exporters.transfer import RecipientConfig, load_recipients
from request_store import RequestStore


@functools.lru_cache(maxsize=8)
def _loaded_datamap(path: str, mtime_ns: int) -> DataMap:
    return load_datamap(Path(path))


@functools.lru_cache(maxsize=8)
def _loaded_recipients(path: str, mtime_ns: int) -> dict[str, RecipientConfig]:
    return load_recipients(Path(path)) if mtime_ns else {}


def _mtime(path: Path) -> int:
    return path.stat().st_mtime_ns if path.is_file() else 0


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def _positive(name: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name} must be a whole number of at least 1")
    return value


class PortabilityResource(dg.ConfigurableResource):
    """Settings shared by every asset, sensor and job; empty fields read the environment."""

    request_store: str = ""
    staging: str = ""
    exports: str = ""
    datamap: str = ""
    env_file: str = ""

    def store_url(self) -> str:
        home = os.environ.get("DAGSTER_HOME") or "dagster_home"
        return self.request_store or _env(
            "PORTABILITY_REQUEST_STORE", str(Path(home) / "requests.sqlite")
        )

    def open_store(self) -> RequestStore:
        return RequestStore.open(self.store_url())

    def staging_root(self) -> Path:
        return Path(self.staging or _env("PORTABILITY_STAGING", "var/staging")).resolve()

    def delivery(self) -> Delivery:
        return open_delivery(self.exports or _env("PORTABILITY_EXPORTS", "var/exports"))

    def load_datamap(self) -> DataMap:
        """The data map, parsed and checked once per version of the file (every asset of
        a run asks for it; a load costs about 50 ms)."""
        path = Path(self.datamap or _env("PORTABILITY_DATAMAP", str(DEFAULT_DATAMAP))).resolve()
        if not path.is_file():
            return load_datamap(path)  # its own error names the missing file
        return _loaded_datamap(str(path), path.stat().st_mtime_ns)

    def source_env(self) -> Mapping[str, str]:
        """The process environment, plus the env file's variables when one is set."""
        path = self.env_file or os.environ.get("PORTABILITY_ENV_FILE", "")
        return {**os.environ, **read_env(Path(path))} if path else dict(os.environ)

    def retention_days(self) -> int:
        return _positive("PORTABILITY_RETENTION_DAYS", _env("PORTABILITY_RETENTION_DAYS", "30"))

    def max_downloads(self) -> int | None:
        text = os.environ.get("PORTABILITY_MAX_DOWNLOADS")
        return _positive("PORTABILITY_MAX_DOWNLOADS", text) if text else None

    def recipients_file(self) -> Path:
        return Path(_env("PORTABILITY_RECIPIENTS", "config/recipients.yaml"))

    def recipient(self, name: str) -> RecipientConfig:
        """A direct transfer's recipient, from the recipients file (checked on load)."""
        path = self.recipients_file()
        found = _loaded_recipients(str(path.resolve()), _mtime(path)).get(name)
        if found is None:
            raise ValueError(f"recipient {name!r} is not configured in {path}")
        return found

    def launch_grace_s(self) -> float:
        """Seconds a portal's new request is left to the API's direct launch (0: none)."""
        return LAUNCH_GRACE_S if os.environ.get("PORTABILITY_DAGSTER_URL") else 0.0

    def steps(self, request: ExportRequest) -> ExportSteps:
        return ExportSteps(request, self.load_datamap(), self.staging_root(), env=self.source_env())
