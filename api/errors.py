"""OpenDSR error responses: ``{"error": {"code", "message", "errors": [{"domain",
"reason", "message"}]}}``, for every refusal the service makes.

Messages are written here or in :mod:`api.validation` from field names and fixed
wording; no handler ever copies a submitted value into a response (identity values
included), and FastAPI's default 422 body (which echoes the input) is replaced.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("api")

_TITLES = {
    400: "bad request",
    401: "authentication required",
    403: "forbidden",
    404: "not found",
    405: "method not allowed",
    409: "conflict",
    413: "request body too large",
    429: "too many requests",
    500: "internal error",
}


@dataclass(frozen=True)
class Detail:
    """One entry of ``errors``: where (domain), what kind (reason), and why (message)."""

    domain: str
    reason: str
    message: str


@dataclass
class ApiError(Exception):
    """A refusal with its HTTP status; raised anywhere, rendered by :func:`install`."""

    status: int
    message: str
    details: Sequence[Detail] = ()
    headers: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.message}"


def error_body(status: int, message: str, details: Sequence[Detail] = ()) -> dict:
    errors = [{"domain": d.domain, "reason": d.reason, "message": d.message} for d in details] or [
        {
            "domain": "request",
            "reason": _TITLES.get(status, "error").replace(" ", "_"),
            "message": message,
        }
    ]
    return {"error": {"code": status, "message": message, "errors": errors}}


def error_response(
    status: int, message: str, details: Sequence[Detail] = (), headers: Mapping[str, str] = {}
) -> JSONResponse:
    return JSONResponse(error_body(status, message, details), status, headers=dict(headers))


def bad_request(
    message: str, reason: str = "invalid_field", domain: str = "validation"
) -> ApiError:
    return ApiError(400, message, [Detail(domain, reason, message)])


def not_found(what: str = "request") -> ApiError:
    message = f"no such {what}"
    return ApiError(404, message, [Detail("request", "not_found", message)])


def _location(loc: Sequence[object]) -> str:
    """A validation error's location from field names and indexes only (a key of a
    free-form object is a submitted value, so it is shown as ``*``)."""
    parts = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif isinstance(item, str) and item.isidentifier() and item.islower() and len(item) <= 40:
            parts.append(f".{item}" if parts else item)
        else:
            parts.append(".*" if parts else "*")
    return "".join(parts) or "request"


def _from_validation(exc: RequestValidationError) -> ApiError:
    """FastAPI's parameter validation (path, query, headers) as an OpenDSR 400."""
    details = []
    for err in exc.errors()[:20]:
        loc = list(err.get("loc", ()))
        where = _location(loc[1:] if loc and loc[0] in ("path", "query", "header") else loc)
        kind = str(err.get("type", "invalid"))
        if where == "subject_request_id" or kind == "string_pattern_mismatch":
            message = f"{where}: must be a lowercase UUID v4"
        else:
            message = f"{where}: invalid value ({kind})"
        details.append(Detail("validation", "invalid_parameter", message))
    message = details[0].message if details else "invalid request"
    return ApiError(400, message, details)


def _allowed(request: Request) -> list[str]:
    """The methods the OpenAPI document gives the request's path (for ``Allow``)."""
    path = request.url.path
    methods: set[str] = set()
    for template, operations in request.app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\{[^}/]+\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            methods |= {m.upper() for m in operations}
    return sorted(methods)


def install(app: FastAPI) -> None:
    """Render every error the application can raise in the OpenDSR format."""

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.details, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        err = _from_validation(exc)
        return error_response(err.status, err.message, err.details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        status = exc.status_code
        headers = dict(exc.headers or {})
        if status == 405:  # every method of the path, not just the first route's
            headers["Allow"] = ", ".join(_allowed(request))
        title = _TITLES.get(status, "error")
        reason = {404: "no_such_endpoint", 405: "method_not_allowed"}.get(status, "http_error")
        message = {404: "no such endpoint"}.get(status, title)
        detail = Detail("http", reason, message)
        return error_response(status, message, [detail], headers)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        # the type only: an exception's text may quote data
        log.error("unexpected %s while handling a request", type(exc).__name__)
        return error_response(
            500, "internal error", [Detail("server", "internal", "internal error")]
        )
