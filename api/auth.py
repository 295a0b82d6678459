"""Portal authentication: bearer tokens, stored as their SHA-256 only.

A token is 32 random bytes (``odsr_`` + URL-safe base64), shown once when the portal is
added (``python -m api add-portal ID``) and never stored: ``api_portals`` keeps its
SHA-256 (a token has 256 bits of entropy, so a fast hash is as good as a slow one and
keeps each request cheap). The portal id is the OpenDSR ``controller_id`` and the
store's ``controller``: a portal only ever sees the requests it submitted.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api import tables
from api.errors import ApiError, Detail

TOKEN_PREFIX = "odsr_"
_PORTAL_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
bearer = HTTPBearer(auto_error=False, description="A portal's token (python -m api add-portal)")


class PortalError(ValueError):
    """Bad portal id, or a portal that exists / does not exist."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_portal_id(portal_id: str) -> str:
    if not isinstance(portal_id, str) or not _PORTAL_ID.match(portal_id):
        raise PortalError(
            "a portal id is 1-64 characters: lowercase letters, digits, '.', '_', '-'"
        )
    return portal_id


class Portals:
    """The registry of portals in the store's database."""

    def __init__(self, engine: sa.Engine, clock: Callable[[], datetime] | None = None) -> None:
        self._engine = engine
        self._writer = engine.execution_options(store_write=True)
        self._clock = clock or (lambda: datetime.now(UTC))

    def add(self, portal_id: str, *, rotate: bool = False) -> str:
        """Register a portal (or give it a new token with ``rotate``); returns the token,
        which is not kept anywhere: show it once."""
        check_portal_id(portal_id)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = dict(portal_id=portal_id, token_sha256=token_hash(token), created_at=self._clock())
        p = tables.portals
        with self._writer.begin() as conn:
            exists = conn.execute(sa.select(p.c.portal_id).where(p.c.portal_id == portal_id))
            if exists.first() is not None:
                if not rotate:
                    raise PortalError(f"portal {portal_id} exists (use --rotate for a new token)")
                conn.execute(p.update().where(p.c.portal_id == portal_id).values(row))
            else:
                conn.execute(p.insert().values(row))
        return token

    def remove(self, portal_id: str) -> bool:
        p = tables.portals
        with self._writer.begin() as conn:
            return conn.execute(p.delete().where(p.c.portal_id == portal_id)).rowcount > 0

    def list(self) -> list[str]:
        with self._engine.connect() as conn:
            return list(conn.scalars(sa.select(tables.portals.c.portal_id).order_by("portal_id")))

    def authenticate(self, token: str) -> str | None:
        """The portal id a token belongs to, or None."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        p = tables.portals
        query = sa.select(p.c.portal_id).where(p.c.token_sha256 == token_hash(token))
        with self._engine.connect() as conn:
            return conn.scalar(query)


def _unauthorized(message: str, reason: str) -> ApiError:
    challenge = 'Bearer realm="opendsr"'
    if reason == "invalid_token":
        challenge += ', error="invalid_token"'
    detail = Detail("authentication", reason, message)
    return ApiError(401, message, [detail], {"WWW-Authenticate": challenge})


def current_portal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str:
    """The authenticated portal's id (401 otherwise), within its rate limit (429)."""
    services = request.app.state.services
    if credentials is None:
        raise _unauthorized("a bearer token is required", "missing_token")
    portal = services.portals.authenticate(credentials.credentials)
    if portal is None:
        raise _unauthorized("the bearer token is not valid", "invalid_token")
    wait = services.limiter.take(portal)
    if wait > 0:
        retry = services.limiter.retry_after(wait)
        message = f"rate limit exceeded: retry after {retry} s"
        detail = Detail("rate_limit", "rate_limit_exceeded", message)
        raise ApiError(429, message, [detail], {"Retry-After": retry})
    return portal
