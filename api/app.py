"""The application factory: ``create_app(settings)`` wires store, keys, auth, limits,
signing, routes and the callback worker into one FastAPI application.

Outside FastAPI's own middleware sit, outermost first: the signing middleware (every
response body, errors and 413s included, is signed) and the body limit (413).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.types import ASGIApp

from api import downloads, errors, keys, models, routes, tables, transfers
from api.auth import Portals
from api.downloads import ResultLinks
from api.launcher import DagsterLauncher, LaunchWorker
from api.limits import BodyLimitMiddleware, RateLimiter
from api.outbox import Outbox, OutboxWorker
from api.settings import API_VERSION, Settings
from api.signing import DOMAIN_HEADER, SIGNATURE_HEADER, Signer, SigningMiddleware
from api.status import StatusView
from exporters.s3_delivery import S3Delivery
from exporters.transfer import RecipientConfig
from request_store import Deliveries, RequestStore

Clock = Callable[[], datetime]


@dataclass
class Services:
    """What the routes use, on ``app.state.services``."""

    settings: Settings
    store: RequestStore
    keys: keys.KeyMaterial
    signer: Signer
    portals: Portals
    limiter: RateLimiter
    links: ResultLinks
    view: StatusView
    outbox: Outbox
    launches: LaunchWorker | None = None  # direct launch of runs (PORTABILITY_DAGSTER_URL)
    s3: S3Delivery | None = None  # archives delivered to S3 (PORTABILITY_EXPORTS=s3://...)
    recipients: dict[str, RecipientConfig] = field(default_factory=dict)  # direct transfers

    def close(self) -> None:
        """Release the database connections and the callback client."""
        self.outbox.close()
        self.store.close()


class OpenDSRApp(FastAPI):
    """FastAPI with the signing and body-limit layers outside everything else."""

    services: Services

    def build_middleware_stack(self) -> ASGIApp:
        inner = super().build_middleware_stack()
        services = self.state.services
        limited = BodyLimitMiddleware(inner, services.settings.max_body)
        return SigningMiddleware(limited, services.signer)


def _openapi(
    app: OpenDSRApp, max_identities: int, domain: str, recipients: list[str]
) -> Callable[[], dict[str, Any]]:
    """The OpenAPI document: FastAPI's, plus the request body schema, the signature
    headers on every response, and without the 422 FastAPI adds (errors are 400)."""

    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            webhooks=app.webhooks.routes,
        )
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        schemas["SubjectRequest"] = models.subject_request_schema(
            max_identities, domain, recipients
        )
        schemas["SubjectIdentity"] = models.SUBJECT_IDENTITY_SCHEMA
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        signed = {
            DOMAIN_HEADER: {
                "required": True,
                "schema": {"type": "string"},
                "description": "the domain of the signing certificate",
            },
            SIGNATURE_HEADER: {
                "required": True,
                "schema": {"type": "string"},
                "description": "base64 RSA PKCS#1 v1.5 SHA-256 signature "
                "of the exact body (see discovery's processor_certificate)",
            },
        }
        extra = {
            "401": {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}},
            "429": {"Retry-After": {"required": True, "schema": {"type": "string"}}},
        }
        for path in doc.get("paths", {}).values():
            for operation in path.values():
                responses = operation.get("responses", {})
                responses.pop("422", None)
                for code, response in responses.items():
                    response["headers"] = {**signed, **extra.get(code, {})}
        for hook in doc.get("webhooks", {}).values():
            for operation in hook.values():
                operation.get("responses", {}).pop("422", None)
        app.openapi_schema = doc
        return doc

    return build


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    callback_transport: httpx.BaseTransport | None = None,
) -> OpenDSRApp:
    """The OpenDSR processor API. ``settings`` default to the environment
    (:meth:`Settings.from_env`); ``clock`` (UTC-aware) is for tests, as is
    ``callback_transport`` (an httpx transport for callbacks)."""
    settings = settings or Settings.from_env()
    clock = clock or (lambda: datetime.now(UTC))
    store = RequestStore.open(settings.store_url, clock=clock)
    tables.create(store.engine)
    material = keys.load_or_create(
        settings.state_dir, settings.processor_domain, settings.key_file, settings.cert_file
    )
    signer = Signer(material.private_key, settings.processor_domain)
    links = ResultLinks(material.link_key, settings.link_ttl_s, settings.base_url, clock)
    deliveries = Deliveries(store)
    recipients = transfers.load(settings.recipients_file)
    labels = {name: r.label for name, r in recipients.items()}
    view = StatusView(settings.processor_domain, links, deliveries.of, labels)
    services = Services(
        settings=settings,
        store=store,
        keys=material,
        signer=signer,
        portals=Portals(store.engine, clock),
        limiter=RateLimiter(settings.rate_per_s, settings.burst),
        links=links,
        view=view,
        outbox=Outbox(store, settings, signer, view, clock, callback_transport),
    )
    services.recipients = recipients
    if settings.delivery_url:
        services.s3 = S3Delivery.from_url(settings.delivery_url)
    if settings.dagster_url:
        launcher = DagsterLauncher(settings.dagster_url, location=settings.dagster_location)
        services.launches = LaunchWorker(launcher, clock)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        worker = OutboxWorker(services.outbox, settings.callback_poll_s)
        if settings.callbacks:
            worker.start()
        if services.launches:
            services.launches.start()
        try:
            yield
        finally:
            worker.stop()
            if services.launches:
                services.launches.stop()

    app = OpenDSRApp(
        title="Infuze Cloud data portability: OpenDSR 2.0 processor API",
        version=API_VERSION,
        description=(
            "Access (GDPR Art. 15) and portability (Art. 20) exports for rights portals "
            "speaking OpenDSR 2.0. Every response body is signed (X-OpenDSR-Signature); "
            "errors use the OpenDSR error object and never echo identity values. "
            "See docs/api.md."
        ),
        lifespan=lifespan,
    )
    app.state.services = services
    app.services = services
    errors.install(app)
    app.include_router(routes.router)
    app.include_router(downloads.router)
    routes.document_callbacks(app)
    app.openapi = _openapi(  # type: ignore[method-assign]
        app, settings.max_identities, settings.processor_domain, sorted(recipients)
    )
    return app
