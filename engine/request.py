"""An export request: who (identities), what (access or portability), how (formats)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from exporters.parts import DEFAULT_MAX_PART_BYTES, MIN_PART_BYTES

RequestType = Literal["access", "portability"]
REQUEST_TYPES: tuple[str, ...] = ("access", "portability")
FORMATS: tuple[str, ...] = ("json", "csv", "parquet")
IDENTITY_TYPES: tuple[str, ...] = ("email", "email_sha256", "controller_customer_id")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


class RequestError(ValueError):
    """The request is malformed. The message names what is wrong, never the value."""


@dataclass(frozen=True)
class Identity:
    type: str
    value: str = field(repr=False)  # personal data: never in repr, logs or messages


@dataclass(frozen=True)
class ExportRequest:
    request_id: str
    request_type: RequestType
    identities: tuple[Identity, ...] = field(repr=False)
    formats: tuple[str, ...] = FORMATS
    as_of: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))
    # past this size the archive comes in parts (exporters/parts.py); None: never split
    max_part_bytes: int | None = DEFAULT_MAX_PART_BYTES
    # age / SSH public keys the delivered archive is encrypted to (exporters/encryption.py)
    encrypt_to: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _REQUEST_ID.match(self.request_id or ""):
            raise RequestError(
                "request id must be 1-128 characters of letters, digits, "
                "'.', '_' or '-', starting with a letter or digit"
            )
        if self.request_type not in REQUEST_TYPES:
            raise RequestError(f"request type must be one of {', '.join(REQUEST_TYPES)}")
        if not self.identities:
            raise RequestError("a request needs at least one identity")
        for i, ident in enumerate(self.identities, 1):
            _check_identity(i, ident)
        if not self.formats or any(f not in FORMATS for f in self.formats):
            raise RequestError(f"formats must be a non-empty selection of {', '.join(FORMATS)}")
        if self.as_of.tzinfo is None:
            raise RequestError("as_of must carry a time zone")
        if self.max_part_bytes is not None and (
            not isinstance(self.max_part_bytes, int) or self.max_part_bytes < MIN_PART_BYTES
        ):
            raise RequestError(
                f"max part size must be an integer of at least {MIN_PART_BYTES} bytes"
            )
        if self.encrypt_to:
            from exporters.encryption import parse_recipients  # pyrage: only when asked

            try:
                parse_recipients(list(self.encrypt_to))
            except (ValueError, TypeError) as err:
                raise RequestError(f"encryption: {err}") from None


def _check_identity(i: int, ident: Identity) -> None:
    where = f"identity {i} ({ident.type})"
    if ident.type not in IDENTITY_TYPES:
        raise RequestError(f"identity {i}: type must be one of {', '.join(IDENTITY_TYPES)}")
    v = ident.value.strip() if isinstance(ident.value, str) else ""
    if not v or len(v) > 320:
        raise RequestError(f"{where}: value must be 1-320 characters")
    if ident.type == "email" and not _EMAIL.match(v):
        raise RequestError(f"{where}: not an email address")
    if ident.type == "email_sha256" and not _SHA256.match(v):
        raise RequestError(f"{where}: not a SHA-256 hex digest (64 hex digits)")


def parse_subjects(text: str) -> list[tuple[Identity, ...]]:
    """One subject per line, ``TYPE=VALUE`` with several identities of the same person
    separated by ``;`` (``#`` comments and blank lines skipped). Errors name the line."""
    subjects = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            subjects.append(tuple(parse_identities(line.replace(";", "\n"))))
        except RequestError:
            raise RequestError(
                f"subject line {number}: expected TYPE=VALUE[;TYPE=VALUE...] with TYPE one "
                f"of {', '.join(IDENTITY_TYPES)}"
            ) from None
    return subjects


def parse_identities(text: str) -> list[Identity]:
    """Identities from ``type=value`` lines (``#`` comments and blank lines skipped).

    The form of an identity file or of standard input, which keep identities out of
    argv and shell history. Errors name the line and the problem, never the value.
    """
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        kind, sep, value = line.partition("=")
        kind = kind.strip()
        if not sep or kind not in IDENTITY_TYPES:
            raise RequestError(
                f"identity line {number}: expected TYPE=VALUE with TYPE one of "
                f"{', '.join(IDENTITY_TYPES)}"
            )
        found.append(Identity(kind, value.strip()))
    return found


def email_sha256(email: str) -> str:
    """The hash under which an email is matched: SHA-256 of the trimmed, lower-cased address."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


def new_request_id() -> str:
    """An opaque id: random, carrying nothing about the subject."""
    import uuid

    return str(uuid.uuid4())
