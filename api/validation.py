"""Checking a ``POST /requests`` body and turning it into a store submission.

Every check names the field and the rule, never the value: the body carries identity
values, and nothing in it may come back in an error. The rules are exactly those of
the published JSON Schema (:func:`api.models.subject_request_schema`), so that a body
the schema accepts is accepted here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from api import models as m
from api.errors import ApiError, Detail
from engine.request import Identity
from exporters.parts import MIN_PART_BYTES

# (OpenDSR identity_type, identity_format) -> the engine's identity type
IDENTITY_TYPES: dict[tuple[str, str], str] = {
    ("email", "raw"): "email",
    ("email", "sha256"): "email_sha256",
    ("controller_customer_id", "raw"): "controller_customer_id",
}
_VALUE_RULES: dict[str, tuple[re.Pattern[str], str]] = {
    "email": (re.compile(m.EMAIL_PATTERN), "not an email address"),
    "email_sha256": (re.compile(m.SHA256_PATTERN), "not a SHA-256 hex digest (64 hex digits)"),
    "controller_customer_id": (re.compile(m.TEXT_PATTERN), "must be text on one line"),
}
_UUID4 = re.compile(m.UUID4_PATTERN)
_URL = re.compile(m.URL_PATTERN)
_TIME = re.compile(
    r"^(2\d{3})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))$"
)
_MAX_DEPTH = 32
REQUIRED = ("regulation", "subject_request_id", "subject_request_type", "submitted_time")


@dataclass(frozen=True)
class Submission:
    """A checked request, ready for ``RequestStore.submit``."""

    subject_request_id: str
    request_type: str
    submitted_at: datetime
    identities: tuple[Identity, ...] = field(repr=False)
    callback_urls: tuple[str, ...] = field(repr=False)
    canonical: bytes = field(repr=False)  # the body as canonical JSON (for the digest)
    options: dict[str, Any] = field(default_factory=dict)  # delivery options (extension)

    def digest(self, key: bytes) -> str:
        """The keyed digest kept in the store: equal bodies, equal digests; without the
        key a digest cannot be tested against guessed identities."""
        return hmac.new(key, self.canonical, hashlib.sha256).hexdigest()


class _Errors:
    def __init__(self) -> None:
        self.details: list[Detail] = []

    def add(self, where: str, message: str, reason: str = "invalid_field") -> None:
        self.details.append(Detail("validation", reason, f"{where}: {message}"))

    def raise_if_any(self) -> None:
        if self.details:
            raise ApiError(400, self.details[0].message, self.details[:20])


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key")
    return result


def _well_formed(value: Any, depth: int = 0) -> bool:
    """No nesting deeper than _MAX_DEPTH, and no unpaired surrogates in any string."""
    if depth > _MAX_DEPTH:
        return False
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_well_formed(k, depth) and _well_formed(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return all(_well_formed(v, depth + 1) for v in value)
    return True


def parse_json(raw: bytes) -> Any:
    """The body as JSON (UTF-8, no duplicate keys), or a 400 that quotes nothing."""
    try:
        text = raw.decode("utf-8")
        value = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except UnicodeDecodeError:
        raise _malformed("the body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise _malformed(f"malformed JSON at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise _malformed("JSON nested too deeply") from None
    except ValueError:
        raise _malformed("an object has a duplicate key") from None
    if not _well_formed(value):
        raise _malformed(f"JSON nested deeper than {_MAX_DEPTH} levels or not valid Unicode")
    return value


def _malformed(message: str) -> ApiError:
    return ApiError(400, message, [Detail("validation", "invalid_json", message)])


def parse_time(text: str) -> datetime | None:
    """An RFC 3339 date-time (years 2000-2999) as aware UTC, or None."""
    match = _TIME.fullmatch(text)
    if not match:
        return None
    year, month, day, hour, minute, second, frac, zulu, sign, oh, om = match.groups()
    try:
        tz = UTC
        if not zulu:
            if int(oh) > 23 or int(om) > 59:
                return None
            offset = timedelta(hours=int(oh), minutes=int(om))
            tz = timezone(-offset if sign == "-" else offset)
        micro = int((frac or "0")[:6].ljust(6, "0"))
        # RFC 3339 allows a leap second (60): counted as the end of that minute
        sec = min(int(second), 59)
        if int(second) > 60:
            return None
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), sec, micro, tz)
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _string(body: dict, name: str, errors: _Errors) -> str | None:
    value = body.get(name)
    if name not in body:
        errors.add(name, "is required", "missing_field")
    elif not isinstance(value, str):
        errors.add(name, "must be a string", "invalid_type")
    else:
        return value
    return None


def _identities(body: dict, max_identities: int, errors: _Errors) -> tuple[Identity, ...]:
    where = "subject_identities"
    value = body.get(where)
    if where not in body:
        errors.add(where, "is required: at least one identity", "missing_field")
        return ()
    if not isinstance(value, list):
        errors.add(where, "must be an array of identity objects", "invalid_type")
        return ()
    if not value:
        errors.add(where, "needs at least one identity", "missing_identity")
        return ()
    if len(value) > max_identities:
        errors.add(where, f"at most {max_identities} identities", "too_many_identities")
        return ()
    found = []
    supported = "supported: email raw, email sha256, controller_customer_id raw"
    for n, item in enumerate(value):
        at = f"{where}[{n}]"
        if not isinstance(item, dict):
            errors.add(at, "must be an object", "invalid_type")
            continue
        kind, fmt, val = (
            item.get(k) for k in ("identity_type", "identity_format", "identity_value")
        )
        missing = [
            k for k in ("identity_type", "identity_format", "identity_value") if k not in item
        ]
        if missing:
            errors.add(at, f"{', '.join(missing)} required", "missing_field")
            continue
        if not all(isinstance(x, str) for x in (kind, fmt, val)):
            errors.add(
                at, "identity_type, identity_format, identity_value must be strings", "invalid_type"
            )
            continue
        engine_type = IDENTITY_TYPES.get((kind, fmt))
        if engine_type is None:
            errors.add(
                at, f"identity type and format not supported ({supported})", "unsupported_identity"
            )
            continue
        pattern, rule = _VALUE_RULES[engine_type]
        if len(val) > m.MAX_IDENTITY or not pattern.fullmatch(val):
            errors.add(
                f"{at}.identity_value",
                rule if len(val) <= m.MAX_IDENTITY else f"at most {m.MAX_IDENTITY} characters",
                "invalid_identity",
            )
            continue
        found.append(Identity(engine_type, val.lower() if engine_type == "email_sha256" else val))
    return tuple(found)


def _urls(body: dict, errors: _Errors) -> tuple[str, ...]:
    where = "status_callback_urls"
    if where not in body:
        return ()
    value = body[where]
    if not isinstance(value, list) or len(value) > m.MAX_URLS:
        errors.add(where, f"must be an array of at most {m.MAX_URLS} URLs", "invalid_type")
        return ()
    urls = []
    for n, url in enumerate(value):
        if not isinstance(url, str) or len(url) > m.MAX_URL or not _URL.fullmatch(url):
            errors.add(
                f"{where}[{n}]",
                f"must be an http(s) URL of at most {m.MAX_URL} characters, without user info",
                "invalid_url",
            )
        else:
            urls.append(url)
    return tuple(dict.fromkeys(urls))  # a URL listed twice is called once


OPTIONS = ("max_part_bytes", "encrypt_to", "transfer_to", "transfer_url")  # our extension
MIN_PART, MAX_PART = MIN_PART_BYTES, 10**13  # a part of 64 KiB to 10 TB


def _options(body: dict, domain: str, errors: _Errors) -> dict[str, Any]:
    """Delivery options from ``extensions[<processor domain>]``: the maximum part size
    and the public keys to encrypt to (their form is checked by the store)."""
    ext = body.get("extensions")
    if not isinstance(ext, dict) or domain not in ext:
        return {}
    mine = ext[domain]
    where = f"extensions.{domain}"
    if not isinstance(mine, dict):
        errors.add(where, "must be an object", "invalid_type")
        return {}
    options: dict[str, Any] = {}
    for key in mine:
        if key not in OPTIONS:
            errors.add(where, f"unknown option (known: {', '.join(OPTIONS)})", "unknown_option")
    size = mine.get("max_part_bytes")
    if "max_part_bytes" in mine:
        if isinstance(size, float) and size.is_integer():
            size = int(size)  # JSON has one number type: 5e6 is an integer too
        if isinstance(size, int) and not isinstance(size, bool) and MIN_PART <= size <= MAX_PART:
            options["max_part_bytes"] = size
        else:
            errors.add(
                f"{where}.max_part_bytes",
                f"must be an integer from {MIN_PART} to {MAX_PART} (bytes)",
                "invalid_type",
            )
    keys = mine.get("encrypt_to")
    if "encrypt_to" in mine:
        if (
            isinstance(keys, list)
            and 0 < len(keys) <= 10
            and all(isinstance(k, str) and 0 < len(k) <= 1024 for k in keys)
        ):
            options["encrypt_to"] = tuple(keys)
        else:
            errors.add(
                f"{where}.encrypt_to",
                "must be an array of 1 to 10 public keys (age1... or ssh-ed25519/ssh-rsa)",
                "invalid_type",
            )
    for key, limit in (("transfer_to", 64), ("transfer_url", 4096)):
        if key in mine:
            value = mine[key]
            if isinstance(value, str) and 0 < len(value) <= limit:
                options[key] = value
            else:
                errors.add(f"{where}.{key}", f"must be a string of 1 to {limit} characters")
    return options


def parse_submission(raw: bytes, max_identities: int, domain: str = "") -> Submission:
    """Check a ``POST /requests`` body; raises ApiError(400) naming every problem."""
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise ApiError(
            400,
            "the body must be a JSON object",
            [Detail("validation", "invalid_type", "the body must be a JSON object")],
        )
    errors = _Errors()
    regulation, srid, kind, submitted = (_string(body, name, errors) for name in REQUIRED)
    if regulation is not None and regulation != "gdpr":
        reason = "unsupported_regulation"
        if regulation == "ccpa":
            errors.add(
                "regulation",
                "ccpa is not supported: this processor handles GDPR requests (regulation gdpr)",
                reason,
            )
        else:
            errors.add("regulation", "must be gdpr", reason)
    if srid is not None and not _UUID4.fullmatch(srid):
        errors.add("subject_request_id", "must be a lowercase UUID v4", "invalid_id")
    if kind is not None and kind not in ("access", "portability"):
        if kind == "erasure":
            errors.add(
                "subject_request_type",
                "erasure is not supported: this processor "
                "exports data (access, portability) and erases nothing",
                "unsupported_request_type",
            )
        else:
            errors.add(
                "subject_request_type", "must be access or portability", "unsupported_request_type"
            )
    moment = parse_time(submitted) if submitted is not None else None
    if submitted is not None and moment is None:
        errors.add(
            "submitted_time", "must be an RFC 3339 date-time (years 2000-2999)", "invalid_time"
        )
    identities = _identities(body, max_identities, errors)
    urls = _urls(body, errors)
    version = body.get("api_version")
    if "api_version" in body and (not isinstance(version, str) or len(version) > 32):
        errors.add("api_version", "must be a string of at most 32 characters", "invalid_type")
    if "extensions" in body and not isinstance(body["extensions"], dict):
        errors.add("extensions", "must be an object keyed by processor domain", "invalid_type")
    options = _options(body, domain, errors)
    errors.raise_if_any()
    assert srid is not None and kind is not None and moment is not None
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return Submission(srid, kind, moment, identities, urls, canonical.encode(), options)
