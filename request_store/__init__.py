"""The durable store of export requests (see docs/request-store.md).

Shared by the Dagster code location (sensors claim new requests and write outcomes
back, the DPO launches, denies and extends) and the rights-portal API. Plain Python on
SQLAlchemy Core: SQLite by default (a file, WAL mode), PostgreSQL by URL.
"""

from engine.request import Identity, RequestError
from request_store.deadlines import (
    DeadlineStatus,
    add_months,
    classify,
    days_left,
    due_soon_from,
    extended_deadline,
    legal_deadline,
)
from request_store.deliveries import CONTROLLER, DeliveredPart, Deliveries, DeliveryRow
from request_store.model import (
    CHANNELS,
    CLOSED_STATES,
    DEFAULT_CONTROLLER,
    LANES,
    OPEN_STATES,
    TRANSITIONS,
    AuditEvent,
    BatchEvent,
    BatchNotFound,
    DeadlineView,
    ExtensionRefused,
    InvalidBatchTransition,
    InvalidTransition,
    RequestNotFound,
    RequestSpec,
    State,
    StoredRequest,
    StoreError,
)
from request_store.organisations import OrganisationExport, OrganisationExports
from request_store.store import RequestStore
from request_store.subscriptions import Subscription, Subscriptions

__all__ = [
    "CHANNELS",
    "CLOSED_STATES",
    "CONTROLLER",
    "DEFAULT_CONTROLLER",
    "LANES",
    "OPEN_STATES",
    "TRANSITIONS",
    "AuditEvent",
    "BatchEvent",
    "BatchNotFound",
    "DeadlineStatus",
    "DeadlineView",
    "DeliveredPart",
    "Deliveries",
    "DeliveryRow",
    "ExtensionRefused",
    "Identity",
    "InvalidBatchTransition",
    "InvalidTransition",
    "OrganisationExport",
    "OrganisationExports",
    "RequestError",
    "RequestNotFound",
    "RequestSpec",
    "RequestStore",
    "State",
    "StoreError",
    "StoredRequest",
    "Subscription",
    "Subscriptions",
    "add_months",
    "classify",
    "days_left",
    "due_soon_from",
    "extended_deadline",
    "legal_deadline",
]
