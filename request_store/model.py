"""What the store hands out: requests, audit events, states and errors.

A :class:`StoredRequest` carries no identity values at all (they live in their own
table and come back only from :meth:`RequestStore.identities`), so it can be logged,
shown in the Dagster UI or serialized for the API without leaking personal data.
Errors name the request id and what is wrong, never a value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from engine.request import FORMATS, ExportRequest, Identity, RequestError
from request_store import deadlines


class State(StrEnum):
    """Where a request is in its life. ``failed`` is open: it can be re-run."""

    RECEIVED = "received"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DENIED = "denied"


# Allowed transitions. running -> cancelled is absent on purpose: a run in progress is
# ended by its outcome (completed / failed), then the failed request can be cancelled.
TRANSITIONS: dict[State, frozenset[State]] = {
    State.RECEIVED: frozenset({State.RUNNING, State.DENIED, State.CANCELLED}),
    State.RUNNING: frozenset({State.COMPLETED, State.FAILED}),
    State.FAILED: frozenset({State.RUNNING, State.DENIED, State.CANCELLED}),
    State.COMPLETED: frozenset(),
    State.DENIED: frozenset(),
    State.CANCELLED: frozenset(),
}
OPEN_STATES: frozenset[State] = frozenset({State.RECEIVED, State.RUNNING, State.FAILED})
# Reaching one of these deletes the request's identities in the same transaction.
CLOSED_STATES: frozenset[State] = frozenset({State.COMPLETED, State.DENIED, State.CANCELLED})

# "subscription" and "organisation": requests issued by a recurring export
# (request_store/subscriptions.py) or an organisation's export (organisations.py)
CHANNELS: tuple[str, ...] = ("portal", "dpo", "schedule", "subscription", "organisation")
# "single": run as soon as the sensor sees it; "bulk": waits for the nightly batch
LANES: tuple[str, ...] = ("single", "bulk")
REGULATIONS: tuple[str, ...] = ("gdpr",)  # the deadline rule is GDPR's; CCPA's differs
DEFAULT_CONTROLLER = "default"


class StoreError(Exception):
    """Base of the store's own errors (bad input raises engine.request.RequestError)."""


class RequestNotFound(StoreError, LookupError):
    """No request with this id."""

    def __init__(self, request_id: str) -> None:
        super().__init__(f"request {request_id}: not found")
        self.request_id = request_id


class InvalidTransition(StoreError):
    """The request's state does not allow what was asked."""

    def __init__(self, request_id: str, state: str, wanted: str, why: str = "") -> None:
        msg = f"request {request_id}: cannot {wanted} a request in state {state}"
        super().__init__(f"{msg}: {why}" if why else msg)
        self.request_id, self.state, self.wanted = request_id, state, wanted


class ExtensionRefused(InvalidTransition):
    """Already extended, original deadline passed, or the request is closed."""


class BatchNotFound(StoreError, LookupError):
    """No subscription / organisation export with this id (``what`` names which)."""

    def __init__(self, what: str, ref: str) -> None:
        super().__init__(f"{what} {ref}: not found")
        self.ref = ref


class InvalidBatchTransition(InvalidTransition):
    """A subscription's or organisation export's state does not allow what was asked."""

    def __init__(self, what: str, ref: str, state: str, wanted: str, why: str = "") -> None:
        msg = f"{what} {ref}: cannot {wanted} in state {state}"
        StoreError.__init__(self, f"{msg}: {why}" if why else msg)
        self.request_id, self.state, self.wanted = ref, state, wanted
        self.ref = ref


@dataclass(frozen=True)
class StoredRequest:
    """One export request as stored. Times are UTC-aware; no identity values here."""

    request_id: str
    seq: int
    controller: str
    external_id: str | None
    channel: str
    request_type: str
    regulation: str
    formats: tuple[str, ...]
    submitted_at: datetime
    received_at: datetime
    deadline: datetime
    extended_deadline: datetime | None
    extension_reason: str | None
    state: State
    attempts: int
    failure: str | None
    denial_reason: str | None
    result_location: str | None
    result_sha256: str | None
    result_count: int | None
    callback_urls: tuple[str, ...] = field(repr=False)  # may carry tokens
    identities_deleted_at: datetime | None
    updated_at: datetime
    # the submitter's keyed digest of its request body (see RequestStore.submit), if any
    request_digest: str | None = field(default=None, repr=False)
    # delivery options: maximum part size (None: the default) and encryption keys
    max_part_bytes: int | None = None
    encrypt_to: tuple[str, ...] = ()
    transfer_to: str | None = None  # a direct transfer's recipient (its configured name)
    lane: str = "single"  # "bulk": left to the nightly batch, not run by the sensor
    batch_ref: str | None = None  # the subscription / organisation export that issued it

    @property
    def clock_start(self) -> datetime:
        """When the legal month starts: submission, unless the submitter's clock ran ahead."""
        return min(self.submitted_at, self.received_at)

    @property
    def due(self) -> datetime:
        """The deadline in force: the extended one if any."""
        return self.extended_deadline or self.deadline

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    def days_left(self, now: datetime) -> int:
        """Calendar days (UTC) to the deadline in force; 0 on the day, negative when late."""
        return deadlines.days_left(self.due, now)

    def deadline_status(self, now: datetime) -> deadlines.DeadlineStatus:
        """``closed`` for finished requests, else on_time / due_soon / overdue."""
        if not self.is_open:
            return "closed"
        return deadlines.classify(self.clock_start, self.deadline, self.extended_deadline, now)


@dataclass(frozen=True)
class AuditEvent:
    """One line of the append-only audit trail. ``detail`` never holds identity values."""

    id: int
    request_id: str
    at: datetime
    actor: str
    event: str
    detail: str


@dataclass(frozen=True)
class BatchEvent:
    """One line of a subscription's or organisation export's append-only audit trail
    (``ref`` is its id). ``detail`` holds counts and dates, never identity values."""

    id: int
    ref: str
    at: datetime
    actor: str
    event: str
    detail: str


@dataclass(frozen=True)
class DeadlineView:
    """An open request with its deadline classification at a given moment."""

    request: StoredRequest
    status: deadlines.DeadlineStatus
    days_left: int


# -- input checks: each raises RequestError naming what is wrong, never the value --------

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_REASON = 500
MIN_SECRET = 4  # shorter identity values are not searched for in free text


def required_text(value: object, what: str, max_len: int) -> str:
    """A non-empty single-line string of at most ``max_len`` characters, stripped."""
    text = value.strip() if isinstance(value, str) else ""
    if not text or len(text) > max_len or _CONTROL.search(text):
        raise RequestError(f"{what} must be 1-{max_len} characters on one line")
    return text


def clean_text(value: object, what: str, secrets: Sequence[str]) -> str:
    """Free text (a reason) made safe for the audit trail: one line, at most MAX_REASON
    characters, and any of the subject's identity values replaced by ``[identity]``."""
    text = " ".join(_CONTROL.sub(" ", value).split()) if isinstance(value, str) else ""
    if not text:
        raise RequestError(f"{what} must not be empty")
    for secret in sorted((s for s in secrets if len(s) >= MIN_SECRET), key=len, reverse=True):
        text = re.sub(re.escape(secret), "[identity]", text, flags=re.IGNORECASE)
    return text[:MAX_REASON]


def check_choice(value: object, allowed: Sequence[str], what: str) -> str:
    if value not in allowed:
        raise RequestError(f"{what} must be one of {', '.join(allowed)}")
    return str(value)


def check_urls(urls: Sequence[str]) -> tuple[str, ...]:
    """Callback URLs: http(s), at most 10 of at most 2048 characters."""
    if isinstance(urls, str) or len(urls) > 10:
        raise RequestError("callback urls must be a list of at most 10 URLs")
    for n, url in enumerate(urls, 1):
        text = required_text(url, f"callback url {n}", 2048)
        if not text.lower().startswith(("https://", "http://")):
            raise RequestError(f"callback url {n} must be an http(s) URL")
    return tuple(u.strip() for u in urls)


_RECIPIENT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def check_recipient(name: object, request_type: str) -> str | None:
    """A direct transfer's recipient name (Art. 20(2): portability requests only)."""
    if name is None:
        return None
    if not isinstance(name, str) or not _RECIPIENT.match(name):
        raise RequestError("transfer recipient must be a configured name (a-z, 0-9, - and _)")
    if request_type != "portability":
        raise RequestError("a direct transfer is for portability requests (Art. 20(2)) only")
    return name


def check_sha256(value: object) -> str:
    text = value.lower() if isinstance(value, str) else ""
    if not _SHA256.match(text):
        raise RequestError("result sha256 must be 64 hex digits")
    return text


def check_digest(value: object) -> str | None:
    """An optional request digest: 64 hex digits (lower-cased), or None."""
    if value is None:
        return None
    text = value.lower() if isinstance(value, str) else ""
    if not _SHA256.match(text):
        raise RequestError("request digest must be 64 hex digits")
    return text


def aware(value: object, what: str) -> datetime:
    """A time-zone aware datetime in UTC (a naive one has no knowable legal day)."""
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise RequestError(f"{what} must be a datetime with a time zone")
    return value.astimezone(UTC)


def as_identity(n: int, value: object) -> Identity:
    """An engine Identity with its value trimmed (checked later by ExportRequest)."""
    if not isinstance(value, Identity):
        raise RequestError(f"identity {n}: must be an engine.request.Identity")
    v = value.value.strip() if isinstance(value.value, str) else value.value
    return Identity(value.type, v)


@dataclass(frozen=True)
class RequestSpec:
    """What a new request asks for, as submitted: checked by :func:`new_request_values`
    when the store takes it (``RequestStore.submit``, subscriptions, organisation
    exports). Neither the identities nor the transfer secret are in its repr.

    ``request_digest`` (64 hex digits) is kept and handed back on a repeat, so that the
    caller can tell a retry of the same body from a changed one (the API stores a keyed
    HMAC there, never a plain hash of the body, which holds identities).
    ``max_part_bytes`` (default 2 GB) splits a larger archive into parts;
    ``encrypt_to`` (age or SSH public keys) encrypts what is delivered to them;
    ``transfer_to`` names a direct transfer's recipient and ``transfer_secret`` is its
    sealed credential (request_store/sealing.py), deleted when the request closes.
    ``lane`` is "single" (the sensor launches its run at once) or "bulk" (it waits for
    the nightly batch); ``batch_ref`` names the subscription or organisation export
    that issued it."""

    request_type: str
    identities: Sequence[Identity] = field(repr=False)
    formats: Sequence[str] = FORMATS
    channel: str = "portal"
    controller: str = DEFAULT_CONTROLLER
    external_id: str | None = None
    regulation: str = "gdpr"
    submitted_at: datetime | None = None
    callback_urls: Sequence[str] = ()
    request_digest: str | None = None
    max_part_bytes: int | None = None
    encrypt_to: Sequence[str] = ()
    transfer_to: str | None = None
    transfer_secret: str | None = field(default=None, repr=False)
    lane: str = "single"
    batch_ref: str | None = None


def new_request_values(
    request_id: str, now: datetime, spec: RequestSpec
) -> tuple[dict[str, Any], tuple[Identity, ...]]:
    """Check a submission; return the ``requests`` row and the identities. The engine's
    ExportRequest does the identity, type and format checks, so the store accepts
    exactly what the engine can run."""
    q = spec
    options: dict[str, Any] = {"encrypt_to": tuple(q.encrypt_to)}
    if q.max_part_bytes is not None:
        options["max_part_bytes"] = q.max_part_bytes
    idents, fmts = check_subject(
        request_id, q.request_type, q.identities, q.formats, now, **options
    )
    batch_ref = q.batch_ref
    if batch_ref is not None:
        batch_ref = required_text(batch_ref, "batch reference", 64)
    submitted = aware(q.submitted_at or now, "submitted_at")
    external_id = q.external_id
    if external_id is not None:
        external_id = required_text(external_id, "external id", 128)
    row = dict(
        request_id=request_id,
        controller=required_text(q.controller, "controller", 128),
        external_id=external_id,
        channel=check_choice(q.channel, CHANNELS, "channel"),
        request_type=q.request_type,
        regulation=check_choice(q.regulation, REGULATIONS, "regulation"),
        formats=",".join(fmts),
        submitted_at=submitted,
        received_at=now,
        # the legal month runs from submission, unless the submitter's clock ran ahead
        deadline=deadlines.legal_deadline(min(submitted, now)),
        state=State.RECEIVED.value,
        callback_urls=list(check_urls(q.callback_urls)),
        updated_at=now,
        request_digest=check_digest(q.request_digest),
        max_part_bytes=q.max_part_bytes,
        encrypt_to=json.dumps(list(q.encrypt_to)) if q.encrypt_to else None,
        transfer_to=check_recipient(q.transfer_to, q.request_type),
        lane=check_choice(q.lane, LANES, "lane"),
        batch_ref=batch_ref,
    )
    return row, idents


def check_subject(
    ref: str,
    request_type: str,
    identities: Sequence[Identity],
    formats: Sequence[str],
    now: datetime,
    **options: Any,
) -> tuple[tuple[Identity, ...], tuple[str, ...]]:
    """Trimmed identities and de-duplicated formats, checked by the engine's ExportRequest
    (type, identities, formats, options) exactly as a submission is: what a subscription
    stores is what its requests will be able to run. Errors never echo a value."""
    idents = tuple(as_identity(n, i) for n, i in enumerate(identities, 1))
    fmts = tuple(dict.fromkeys(formats))
    ExportRequest(ref, request_type, idents, fmts, as_of=now, **options)  # type: ignore[arg-type]
    return idents, fmts
