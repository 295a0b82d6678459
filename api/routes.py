"""The OpenDSR 2.0 processor endpoints under ``/opendsr/v2``.

``POST /requests`` writes to the request store and only then answers 201. A repeat of
a ``subject_request_id`` with the same body (compared as canonical JSON, by the keyed
digest kept with the request) is the same request: 201 again, same
``expected_completion_time`` and ``received_time``; a different body is 409.
``DELETE`` cancels a pending request (and, as an extension, a failed one: nothing is
running); a repeat on a cancelled request is 202 again; otherwise 409.
"""

from __future__ import annotations

import base64
import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Request
from fastapi.responses import JSONResponse, Response

from api import models as m
from api import transfers
from api.auth import current_portal
from api.errors import ApiError, Detail, bad_request, not_found
from api.settings import API_PREFIX, API_VERSION
from api.status import rfc3339
from api.validation import IDENTITY_TYPES, parse_submission
from request_store import InvalidTransition, RequestError, RequestSpec, State, StoredRequest

router = APIRouter(prefix=API_PREFIX)

Portal = Annotated[str, Depends(current_portal)]
SubjectRequestId = Annotated[
    str, Path(pattern=m.UUID4_PATTERN, description="the controller's subject_request_id")
]
_AUTH = {
    401: m.error_doc("no bearer token, or not a valid one"),
    429: m.error_doc("rate limit exceeded: see Retry-After"),
}
_NOT_FOUND = {404: m.error_doc("no request with this id for this portal")}
_BAD = {400: m.error_doc("invalid input (the OpenDSR error format; values are never echoed)")}


async def raw_body(request: Request) -> bytes:
    return await request.body()


def _services(request: Request) -> Any:  # api.app.Services
    return request.app.state.services


def _json(model: m.BaseModel, status: int = 200) -> JSONResponse:
    return JSONResponse(model.model_dump(mode="json", exclude_none=True), status)


def _find(request: Request, portal: str, subject_request_id: str) -> StoredRequest:
    req = _services(request).store.find_external(subject_request_id, portal)
    if req is None:
        raise not_found()
    return req


@router.get("/discovery", response_model=m.Discovery, summary="What this processor supports")
def discovery(request: Request) -> JSONResponse:
    settings = _services(request).settings
    body = m.Discovery(
        api_version=API_VERSION,
        supported_identities=[
            m.SupportedIdentity(identity_type=kind, identity_format=fmt)
            for kind, fmt in IDENTITY_TYPES
        ],
        supported_subject_request_types=["access", "portability"],
        processor_certificate=settings.url(f"{API_PREFIX}/certificate.pem"),
    )
    return _json(body)


@router.get(
    "/certificate.pem",
    summary="The certificate whose key signs responses and callbacks",
    response_class=Response,
    responses={
        200: {
            "content": {"application/x-pem-file": {"schema": {"type": "string"}}},
            "description": "PEM",
        }
    },
)
def certificate(request: Request) -> Response:
    pem = _services(request).keys.certificate_pem
    return Response(pem, media_type="application/x-pem-file")


@router.post(
    "/requests",
    status_code=201,
    response_model=m.RequestCreated,
    summary="Submit an access or portability request",
    responses={
        **_BAD,
        **_AUTH,
        409: m.error_doc("this subject_request_id was posted with a different body"),
        413: m.error_doc("body over the size limit"),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/SubjectRequest"}}
            },
        }
    },
)
def submit(
    request: Request, portal: Portal, raw: Annotated[bytes, Depends(raw_body)]
) -> JSONResponse:
    services = _services(request)
    sub = parse_submission(
        raw, services.settings.max_identities, services.settings.processor_domain
    )
    digest = sub.digest(services.keys.digest_key)
    options = transfers.store_options(
        sub.options, sub.request_type, services.recipients, services.settings.seal_key,
        services.settings.processor_domain,
    )  # fmt: skip
    try:
        spec = RequestSpec(
            sub.request_type,
            sub.identities,
            channel="portal",
            controller=portal,
            external_id=sub.subject_request_id,
            regulation="gdpr",
            submitted_at=sub.submitted_at,
            callback_urls=sub.callback_urls,
            request_digest=digest,
            **options,
        )
        req, created = services.store.submit(spec)
    except RequestError as exc:  # the engine's checks: its message names no value
        raise bad_request(str(exc)) from None
    if not created and req.request_digest and not hmac.compare_digest(req.request_digest, digest):
        message = "subject_request_id was already used with a different request body"
        raise ApiError(409, message, [Detail("request", "conflict", message)])
    if created and services.launches:
        services.launches.submit(req.request_id, req.received_at)
    body = m.RequestCreated(
        controller_id=portal,
        expected_completion_time=rfc3339(req.due),
        received_time=rfc3339(req.received_at),
        encoded_request=base64.b64encode(raw).decode(),
        subject_request_id=sub.subject_request_id,
        api_version=API_VERSION,
    )
    return _json(body, 201)


@router.get(
    "/requests/{subject_request_id}",
    response_model=m.RequestStatus,
    summary="A request's status (results_url and results_count once completed)",
    responses={**_BAD, **_AUTH, **_NOT_FOUND},
)
def status(request: Request, portal: Portal, subject_request_id: SubjectRequestId) -> JSONResponse:
    req = _find(request, portal, subject_request_id)
    return JSONResponse(_services(request).view.body(req))


_NOT_CANCELLABLE = {
    State.RUNNING: ("request_in_progress", "the request is in progress"),
    State.COMPLETED: ("request_completed", "the request is completed"),
    State.DENIED: ("request_denied", "the request was denied"),
}


@router.delete(
    "/requests/{subject_request_id}",
    status_code=202,
    response_model=m.CancelAccepted,
    summary="Cancel a pending request",
    responses={
        **_BAD,
        **_AUTH,
        **_NOT_FOUND,
        409: m.error_doc("the request is no longer pending: it cannot be cancelled"),
    },
)
def cancel(request: Request, portal: Portal, subject_request_id: SubjectRequestId) -> JSONResponse:
    store = _services(request).store
    req = _find(request, portal, subject_request_id)
    if req.state in (State.RECEIVED, State.FAILED):
        try:
            req = store.cancel(req.request_id, actor="portal", reason="cancelled by the portal")
        except InvalidTransition:
            req = store.get(req.request_id)  # it moved meanwhile: answer from its state
    if req.state != State.CANCELLED:
        reason, what = _NOT_CANCELLABLE.get(req.state, ("request_not_pending", "not pending"))
        message = f"{what} and can no longer be cancelled (only a pending request can)"
        raise ApiError(409, message, [Detail("request", reason, message)])
    cancelled_at = next(
        (e.at for e in reversed(store.events(req.request_id)) if e.event == "cancelled"),
        req.updated_at,
    )
    body = m.CancelAccepted(
        controller_id=portal,
        subject_request_id=subject_request_id,
        received_time=rfc3339(cancelled_at),
        api_version=API_VERSION,
    )
    return _json(body, 202)


def document_callbacks(app: FastAPI) -> None:
    """The status callback in the OpenAPI document (``webhooks``): what the service POSTs
    to each ``status_callback_urls`` entry."""

    @app.webhooks.post(
        "status-callback",
        summary="Status callback, POSTed to each of a request's status_callback_urls",
        responses={200: {"description": "any 2xx acknowledges the callback: it is not sent again"}},
        openapi_extra={
            "parameters": [
                {
                    "name": "X-OpenDSR-Signature",
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string"},
                    "description": "base64 RSA PKCS#1 v1.5 SHA-256 signature of the exact body: "
                    "verify it with discovery's processor_certificate before parsing",
                },
                {
                    "name": "X-OpenDSR-Processor-Domain",
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string"},
                },
                {
                    "name": "X-OpenDSR-Delivery-Id",
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string"},
                    "description": "the same for every attempt of one callback",
                },
            ]
        },
    )
    def status_callback(body: m.CallbackBody) -> None:
        """Sent on every status change (running, completed, failed, denied, cancelled),
        retried with exponential backoff until a 2xx answer, in order per request and URL."""
