"""Results links: expiring, HMAC-signed URLs that stream a delivered archive.

A link is ``/opendsr/v2/results/<request id>.<expiry>.<mac>``: the store's opaque
request id (never the subject's identity), the expiry in Unix seconds, and an
HMAC-SHA256 over both with a key derived from the state folder's secret. A link is
issued each time a status body with results is built (a ``GET /requests/{id}`` or a
callback), valid for the link lifetime from then (7 days by default): the portal can
always get a fresh one while the request is completed and its archive is kept.

Serving checks the MAC (constant time), the expiry, that the request is completed,
and that its archive is a file inside the delivery folder; then it streams the file.
An archive delivered to S3 (``PORTABILITY_EXPORTS=s3://...``) is not streamed through
the API: after the same checks, and that the object is under the configured bucket and
prefix, the answer is a 307 redirect to a presigned GET URL valid a few minutes
(``PORTABILITY_API_REDIRECT_TTL``, 300 s), so the API's link stays the one that expires,
can be revoked, and is logged.
A split archive has a link per part (``<request id>~<part>.<expiry>.<mac>``; the MAC
covers the part). Each part delivered is recorded (``request_deliveries``) with its hash,
expiry and download count: a download after the part's expiry, after retention deleted
it, or past ``PORTABILITY_MAX_DOWNLOADS`` gets 410; a resumed download (a ``Range`` not
starting at byte 0) within 24 h of a counted one is not counted again.
A forged, altered or expired link gets 403 and an unknown archive 404, with the same
wording whatever the cause. The response is signed like every other one, from the
archive's SHA-256 recorded at delivery (so nothing is read twice): a client verifies
the signature over the bytes it received.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from api.errors import ApiError, Detail
from api.models import error_doc
from api.settings import API_PREFIX
from api.signing import DOMAIN_HEADER, SIGNATURE_HEADER
from request_store import CONTROLLER, Deliveries, RequestNotFound, State

_TOKEN = re.compile(r"^([0-9a-f-]{36})(?:~([1-9][0-9]{0,3}))?\.([0-9]{1,12})\.([A-Za-z0-9_-]{43})$")


class ResultLinks:
    """Issues and checks results links."""

    def __init__(
        self, key: bytes, ttl_s: int, base_url: str, clock: Callable[[], datetime]
    ) -> None:
        self._key, self.ttl, self._base, self._clock = (
            key,
            timedelta(seconds=ttl_s),
            base_url,
            clock,
        )

    def _mac(self, request_id: str, part: int, expires: int) -> str:
        what = (
            f"results:{request_id}:{expires}"
            if part == 1
            else f"results:{request_id}~{part}:{expires}"
        )
        mac = hmac.new(self._key, what.encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()

    def token(self, request_id: str, expires: datetime, part: int = 1) -> str:
        stamp = int(expires.timestamp())
        name = request_id if part == 1 else f"{request_id}~{part}"
        return f"{name}.{stamp}.{self._mac(request_id, part, stamp)}"

    def issue(self, request_id: str, part: int = 1) -> tuple[str, datetime]:
        """A fresh link to a request's results (one part of them) and when it expires."""
        expires = (self._clock() + self.ttl).replace(microsecond=0)
        token = self.token(request_id, expires, part)
        return f"{self._base}{API_PREFIX}/results/{token}", expires

    def check(self, token: str) -> tuple[str, int] | None:
        """The request id and part of a valid, unexpired link; None otherwise."""
        match = _TOKEN.fullmatch(token)
        if not match:
            return None
        request_id, part = match.group(1), int(match.group(2) or 1)
        stamp, mac = int(match.group(3)), match.group(4)
        if not hmac.compare_digest(mac, self._mac(request_id, part, stamp)):
            return None
        if datetime.fromtimestamp(stamp, UTC) < self._clock():
            return None
        return request_id, part


def archive_path(location: str, exports: Path) -> Path | None:
    """The delivered archive, if it is a file inside the delivery folder."""
    root = exports.resolve()
    loc = Path(location)
    for candidate in (loc if loc.is_absolute() else Path.cwd() / loc, root / loc.name):
        path = candidate.resolve()
        if path.is_relative_to(root) and path.is_file():
            return path
    return None


router = APIRouter(prefix=API_PREFIX)

_REFUSED = "this link is not valid or has expired"
_GONE = "these results are not available"
_SPENT = (
    "these results are no longer available (expired, deleted or downloaded as often as allowed)"
)


@router.get(
    "/results/{token}",
    summary="Download a completed request's archive (the results_url)",
    response_class=FileResponse,
    responses={
        200: {
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
            "description": "the archive, streamed",
        },
        307: {
            "description": "the archive is in S3: a presigned GET URL valid a few minutes",
            "headers": {"Location": {"required": True, "schema": {"type": "string"}}},
        },
        403: error_doc(_REFUSED),
        404: error_doc(_GONE),
        410: error_doc(_SPENT),
    },
)
def download(token: str, request: Request) -> Response:
    services = request.app.state.services
    checked = services.links.check(token)
    if checked is None:
        raise ApiError(403, _REFUSED, [Detail("results", "invalid_link", _REFUSED)])
    request_id, number = checked
    try:
        req = services.store.get(request_id)
    except RequestNotFound:
        req = None
    if req is None or req.state != State.COMPLETED or not req.result_location or req.transfer_to:
        raise ApiError(404, _GONE, [Detail("results", "not_available", _GONE)])
    deliveries = Deliveries(services.store)
    parts = deliveries.of(request_id, CONTROLLER)
    part = next((p for p in parts if p.part == number), None)
    if part is not None:  # recorded part by part: each has its hash, expiry and uses
        location, sha256, name = part.location, part.sha256, part.name
    elif not parts and number == 1 and req.result_sha256:  # completed before parts were kept
        location, sha256, name = req.result_location, req.result_sha256, f"{request_id}.zip"
    else:
        raise ApiError(404, _GONE, [Detail("results", "not_available", _GONE)])
    if part is not None and part.deleted_at is not None:
        raise ApiError(410, _SPENT, [Detail("results", "gone", _SPENT)])
    path = _locate(location, services)
    if path is None:
        raise ApiError(404, _GONE, [Detail("results", "not_available", _GONE)])
    if part is not None:  # a download counts once: a resumed one (Range past 0) is not
        resumed = (
            not request.headers.get("range", "bytes=0-").replace(" ", "").startswith("bytes=0-")
        )
        if not (deliveries.resumable(part.id) if resumed else deliveries.use(part.id)):
            raise ApiError(410, _SPENT, [Detail("results", "gone", _SPENT)])
    digest = bytes.fromhex(sha256)
    headers = {
        DOMAIN_HEADER: services.signer.domain,
        SIGNATURE_HEADER: services.signer.sign_digest(sha256),
        "Repr-Digest": f"sha-256=:{base64.b64encode(digest).decode()}:",
        "Cache-Control": "no-store",
    }
    if isinstance(path, str):  # an S3 object: a short-lived presigned URL
        url = services.s3.presigned_url(path, services.settings.redirect_ttl_s)
        return RedirectResponse(url, status_code=307, headers=headers)
    media = "application/age" if name.endswith(".age") else "application/zip"
    filename = name.replace(request_id, req.external_id or request_id, 1)
    return FileResponse(path, media_type=media, filename=filename, headers=headers)


def _locate(location: str, services: Any) -> Path | str | None:
    """The archive's local path, or its ``s3://`` location when it is under the
    configured bucket and prefix; None when it is neither."""
    if not location.startswith("s3://"):
        return archive_path(location, services.settings.exports)
    s3 = services.s3
    if s3 is None:
        return None
    root = f"s3://{s3.bucket}/{s3.prefix + '/' if s3.prefix else ''}"
    name = location[len(root) :]
    return location if location.startswith(root) and name and "/" not in name else None
