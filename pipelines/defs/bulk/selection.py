"""Which requests a bulk run exports, and an organisation's index once they are done.

Plain Python over the request store (no Dagster): the bulk job's first step calls
``select_requests``, its last ``OrganisationIndex.deliver``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Protocol

from engine.bulk.organisations import organisation_members
from engine.export import open_connectors
from pipelines.lib.settings import PortabilityResource
from request_store import OrganisationExports, RequestStore, State, Subscriptions

RETRY_ATTEMPTS = 3  # a failed bulk request is taken again by later nightly runs this often


class Selection(Protocol):
    request_ids: list[str]
    organisation_export: str
    limit: int


def select_requests(
    store: RequestStore, portability: PortabilityResource, source: str, config: Selection
) -> list[str]:
    """The request ids a run of ``source`` exports, oldest first."""
    if source == "ids":
        return list(dict.fromkeys(config.request_ids))
    if source == "subscriptions":
        return Subscriptions(store).issue_due(actor="schedule")
    if source == "organisation":
        return _organisation(store, portability, config.organisation_export)
    waiting = [r.request_id for r in store.list_waiting("bulk", limit=config.limit)]
    retry = [
        r.request_id
        for r in store.list_in_state(State.FAILED)
        if r.lane == "bulk" and r.attempts < RETRY_ATTEMPTS
    ]
    return (waiting + retry)[: config.limit]


def _organisation(
    store: RequestStore, portability: PortabilityResource, export_id: str
) -> list[str]:
    """Expand a scheduled organisation export into one request per member (once), or on a
    re-run take its members' requests that are still open."""
    exports = OrganisationExports(store)
    export = exports.get(export_id)
    if export.state == "scheduled":
        dm = portability.load_datamap()
        conns = open_connectors(dm, portability.source_env())
        try:
            members = organisation_members(dm, conns, export.org_id)
        finally:
            for c in conns.values():
                c.close()
        return exports.expand(export_id, members, actor="bulk")
    open_states = (State.RECEIVED, State.FAILED)
    return [r.request_id for r in store.list_batch(export_id) if r.state in open_states]


class OrganisationIndex:
    """``<export id>-index.json``: each member's request, its state, and its archive's
    name, size and SHA-256; delivered beside the archives. It holds no personal data:
    each archive's manifest says whose it is."""

    def __init__(self, store: RequestStore, portability: PortabilityResource) -> None:
        self.store = store
        self.portability = portability

    def document(self, export_id: str) -> dict:
        export = OrganisationExports(self.store).get(export_id)
        members = []
        for r in self.store.list_batch(export_id):
            members.append(
                {
                    "request_id": r.request_id,
                    "state": str(r.state),
                    "archive": Path(r.result_location).name if r.result_location else None,
                    "sha256": r.result_sha256,
                    "records": r.result_count,
                    "failure": r.failure,
                }
            )
        return {
            "organisation_export": export_id,
            "request_type": export.request_type,
            "members": len(members),
            "delivered": sum(m["state"] == State.COMPLETED for m in members),
            "requests": members,
        }

    def deliver(self, export_id: str) -> str:
        """Deliver the index and complete the organisation export; its location."""
        body = json.dumps(self.document(export_id), indent=1).encode("utf-8")
        root = self.portability.staging_root()
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".index-", dir=root)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(body)
            delivered = self.portability.delivery().deliver(Path(tmp), f"{export_id}-index.json")
        finally:
            Path(tmp).unlink(missing_ok=True)
        OrganisationExports(self.store).complete(export_id, delivered.location, actor="bulk")
        return delivered.location
