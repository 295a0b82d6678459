"""Direct transfers asked for through the API (GDPR Art. 20(2)).

A portability request may carry ``transfer_to`` (a recipient configured by name in the
recipients file, ``PORTABILITY_RECIPIENTS``) and, for a recipient of kind
``presigned_put``, ``transfer_url``. The name must be configured; the URL must be https
to one of the recipient's ``allowed_hosts``, and is sealed (request_store/sealing.py)
before it reaches the store: only the exporter can open it, and it is deleted when the
request closes. Errors name the field and the rule, never the URL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from api.errors import ApiError, Detail
from exporters.transfer import RecipientConfig, check_url, load_recipients
from request_store.sealing import seal


def load(path: Path) -> dict[str, RecipientConfig]:
    """The configured recipients; none when the file does not exist."""
    return load_recipients(path) if path.is_file() else {}


def store_options(
    options: dict[str, Any],
    request_type: str,
    recipients: dict[str, RecipientConfig],
    seal_key: Path,
    domain: str,
) -> dict[str, Any]:
    """The store's arguments for a request's transfer options (none: no transfer)."""
    options = dict(options)
    name, url = options.pop("transfer_to", None), options.pop("transfer_url", None)
    where = f"extensions.{domain}"
    if name is None:
        if url is not None:
            _refuse(f"{where}.transfer_url", "goes with transfer_to")
        return options
    config = recipients.get(name)
    if config is None:
        _refuse(f"{where}.transfer_to", "is not a configured recipient")
    if request_type != "portability":
        _refuse(f"{where}.transfer_to", "a direct transfer is for portability requests only")
    assert config is not None
    if config.kind == "presigned_put":
        if url is None:
            _refuse(f"{where}.transfer_url", "this recipient takes a presigned PUT URL")
        if "max_part_bytes" in options:
            _refuse(f"{where}.max_part_bytes", "a presigned PUT URL takes one archive")
        try:
            check_url(url)
        except ValueError:
            _refuse(f"{where}.transfer_url", "must be an https URL without user info")
        if urlsplit(url).hostname not in {h.lower() for h in config.allowed_hosts}:
            _refuse(f"{where}.transfer_url", "its host is not one this recipient allows")
        options["transfer_secret"] = seal(url, seal_key)
    elif url is not None:
        _refuse(f"{where}.transfer_url", "this recipient is configured with its own bucket")
    options["transfer_to"] = name
    return options


def _refuse(where: str, rule: str) -> None:
    message = f"{where}: {rule}"
    raise ApiError(400, message, [Detail("validation", "invalid_transfer", message)])
