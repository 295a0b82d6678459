"""The wire shapes: response models (they make the OpenAPI document) and the JSON Schema
of ``POST /requests`` (checked by hand in :mod:`api.validation`, which keeps its error
messages free of submitted values; the schema documents exactly what it accepts).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

UUID4_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
# an RFC 3339 date-time, years 2000-2999 (older or later ones are typing mistakes)
TIME_PATTERN = (
    r"^2[0-9]{3}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
# Character classes spelled out, so that ECMA-262 (the OpenAPI document's regex dialect)
# and Python agree: their "\s" differ (U+0085, U+001C-U+001F, U+FEFF).
_CONTROL = r"\x00-\x1f\x7f-\x9f"  # C0, DEL, C1
_SPACE = r" \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
# text on one line: no control characters, at least one character that is not a space
TEXT_PATTERN = rf"^[^{_CONTROL}]*[^{_CONTROL}{_SPACE}][^{_CONTROL}]*$"
# what the engine takes for an email address (engine.request), without control characters
_EMAIL_PART = rf"[^@{_CONTROL}{_SPACE}]+"
EMAIL_PATTERN = rf"^{_EMAIL_PART}@{_EMAIL_PART}\.{_EMAIL_PART}$"
SHA256_PATTERN = "^[0-9a-fA-F]{64}$"
# http(s), a host name, IPv4 or [IPv6] address, an optional port, no user info
URL_PATTERN = (
    r"^[Hh][Tt][Tt][Pp][Ss]?://([A-Za-z0-9][A-Za-z0-9.-]{0,252}|\[[0-9A-Fa-f:.]{2,45}\])"
    rf"(:[0-9]{{1,5}})?([/?#][^{_CONTROL}{_SPACE}]*)?$"
)
MAX_IDENTITY = 320
MAX_URL = 2048
MAX_URLS = 10

Time = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
RequestId = Annotated[str, Field(pattern=UUID4_PATTERN)]
OpenDSRStatus = Literal["pending", "in_progress", "completed", "cancelled"]
ProcessorStatus = Literal["pending", "in_progress", "completed", "cancelled", "failed", "denied"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SupportedIdentity(_Model):
    identity_type: str
    identity_format: str


class Discovery(_Model):
    api_version: str
    supported_identities: list[SupportedIdentity]
    supported_subject_request_types: list[Literal["access", "portability"]]
    processor_certificate: Annotated[str, Field(json_schema_extra={"format": "uri"})]


class RequestCreated(_Model):
    controller_id: str
    expected_completion_time: Time
    received_time: Time
    encoded_request: str = Field(description="base64 of the exact request body")
    subject_request_id: RequestId
    api_version: str


class ResultPart(_Model):
    """One part of a split archive: each a ZIP that opens on its own."""

    part: Annotated[int, Field(ge=1)]
    name: str
    bytes: Annotated[int, Field(ge=0)]
    sha256: Annotated[str, Field(pattern="^[0-9a-f]{64}$")]
    results_url: Annotated[str, Field(json_schema_extra={"format": "uri"})]


class TransferredPart(_Model):
    name: str
    location: str
    bytes: Annotated[int, Field(ge=0)]
    sha256: Annotated[str, Field(pattern="^[0-9a-f]{64}$")]


class Transfer(_Model):
    """Where a direct transfer went (no query string: a presigned URL is a credential)."""

    recipient: str
    label: str | None = None
    parts: list[TransferredPart] = Field(default_factory=list)


class ProcessorExtension(_Model):
    """This processor's extension of a status (keyed by its domain in ``extensions``):
    the full status, including ``failed`` and ``denied`` that OpenDSR lacks."""

    status: ProcessorStatus
    reason_code: str | None = Field(
        None, description="failed: export_failed; denied: denied; cancelled: cancelled"
    )
    reason: str | None = Field(None, description="denied: the reasons (Art. 12(4))")
    deadline_extended: bool | None = Field(None, description="Art. 12(3) extension")
    extension_reason: str | None = None
    results_expires_time: Time | None = None
    parts: list[ResultPart] | None = Field(
        None, description="the archive's parts, when it came in several (results_url: part 1)"
    )
    encrypted: Literal["age"] | None = Field(
        None, description="the archive was encrypted to the request's keys (decrypt with age)"
    )
    transfer: Transfer | None = Field(
        None, description="a direct transfer (Art. 20(2)): where the data went"
    )


class RequestStatus(_Model):
    controller_id: str
    expected_completion_time: Time
    subject_request_id: RequestId
    request_status: OpenDSRStatus
    api_version: str
    results_url: Annotated[str, Field(json_schema_extra={"format": "uri"})] | None = None
    results_count: Annotated[int, Field(ge=0)] | None = None
    extensions: dict[str, ProcessorExtension]


class CallbackBody(RequestStatus):
    """What each status callback POSTs (signed like a response)."""

    status_callback_url: str


class CancelAccepted(_Model):
    controller_id: str
    subject_request_id: RequestId
    received_time: Time = Field(description="when the cancellation was received")
    api_version: str


class ErrorDetail(_Model):
    domain: str
    reason: str
    message: str


class ErrorObject(_Model):
    code: int
    message: str
    errors: list[ErrorDetail]


class ErrorResponse(_Model):
    error: ErrorObject


def error_doc(description: str) -> dict:
    """An OpenAPI ``responses`` entry for an OpenDSR error."""
    return {"model": ErrorResponse, "description": description}


def _identity(kind: str, fmt: str, value: dict) -> dict:
    return {
        "type": "object",
        "required": ["identity_type", "identity_format", "identity_value"],
        "properties": {
            "identity_type": {"type": "string", "const": kind},
            "identity_format": {"type": "string", "const": fmt},
            "identity_value": {"type": "string", **value},
        },
    }


SUBJECT_IDENTITY_SCHEMA: dict = {
    "title": "SubjectIdentity",
    "oneOf": [
        _identity(
            "email",
            "raw",
            {
                "maxLength": MAX_IDENTITY,
                "pattern": EMAIL_PATTERN,
                "description": "an email address",
            },
        ),
        _identity("email", "sha256", {"pattern": SHA256_PATTERN}),
        _identity(
            "controller_customer_id",
            "raw",
            {"minLength": 1, "maxLength": MAX_IDENTITY, "pattern": TEXT_PATTERN},
        ),
    ],
}


PUBLIC_KEY_FORMAT = "age-or-ssh-public-key"  # a key the age tools take (checksum included)


def delivery_options_schema(recipients: list[str] | tuple[str, ...] = ()) -> dict:
    """This processor's request extension: how the archive is delivered. The transfer
    options exist only when recipients are configured (``transfer_to`` is one of them)."""
    schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "max_part_bytes": {
                "type": "integer",
                "minimum": 65536,
                "maximum": 10**13,
                "description": "past this size the archive comes in parts (default 2000000000)",
            },
            "encrypt_to": {
                "type": "array",
                "minItems": 1,
                "maxItems": 10,
                "items": {
                    "type": "string",
                    "format": PUBLIC_KEY_FORMAT,
                    "minLength": 1,
                    "maxLength": 1024,
                },
                "uniqueItems": True,
                "description": "age (age1...) or SSH (ssh-ed25519, ssh-rsa) public keys: "
                "the archive is delivered encrypted to them (<name>.zip.age). A key that "
                "does not parse (its checksum included) is refused with 400",
            },
            "transfer_to": {
                "type": "string",
                "enum": list(recipients),
                "description": "portability only (Art. 20(2)): deliver to this recipient, "
                "configured by name in the recipients file, instead of to results links; "
                "a name that is not configured is refused with 400",
            },
            "transfer_url": {
                "type": "string",
                "minLength": 1,
                "maxLength": 4096,
                "description": "the recipient's presigned PUT URL (recipients of kind "
                "presigned_put): kept sealed until delivery, never shown again. It must be "
                "https to a host the recipient allows; a portability request only",
            },
        },
        "dependentRequired": {"transfer_url": ["transfer_to"]},
    }
    if not recipients:
        for key in ("transfer_to", "transfer_url"):
            del schema["properties"][key]
        del schema["dependentRequired"]
    return schema


def subject_request_schema(
    max_identities: int, domain: str = "", recipients: list[str] | tuple[str, ...] = ()
) -> dict:
    """The body of ``POST /requests``. Unknown properties are ignored; under
    ``extensions[<processor domain>]`` the delivery options are checked."""
    extensions: dict = {"type": "object"}
    if domain:
        extensions["properties"] = {domain: delivery_options_schema(recipients)}
    return {
        "title": "SubjectRequest",
        "type": "object",
        "required": [
            "regulation",
            "subject_request_id",
            "subject_request_type",
            "submitted_time",
            "subject_identities",
        ],
        "properties": {
            "regulation": {"type": "string", "enum": ["gdpr"]},
            "subject_request_id": {"type": "string", "pattern": UUID4_PATTERN},
            "subject_request_type": {"type": "string", "enum": ["access", "portability"]},
            "submitted_time": {"type": "string", "format": "date-time", "pattern": TIME_PATTERN},
            "subject_identities": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_identities,
                "items": {"$ref": "#/components/schemas/SubjectIdentity"},
            },
            "status_callback_urls": {
                "type": "array",
                "maxItems": MAX_URLS,
                "items": {"type": "string", "maxLength": MAX_URL, "pattern": URL_PATTERN},
            },
            "api_version": {"type": "string", "maxLength": 32},
            "extensions": extensions,
        },
    }
