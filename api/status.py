"""A stored request as OpenDSR sees it: the status body of ``GET /requests/{id}`` and
of the status callbacks.

OpenDSR has four statuses; the store has six states. The two without a match are
told in a way a four-status client still reads correctly, and in full in this
processor's extension (``extensions[<processor domain>]``):

=========  ================  ===================================================
store      request_status    extensions[domain]
=========  ================  ===================================================
received   pending           status pending
running    in_progress       status in_progress
failed     in_progress       status failed, reason_code export_failed (it may be
                             re-run within the legal deadline: not final)
completed  completed         status completed, results_expires_time; ``transfer``
                             (recipient, label, where each part went) instead of
                             results links for a direct transfer; ``parts``
                             (name, bytes, sha256, results_url each) when the
                             archive came in parts; ``encrypted: age`` when it was
                             encrypted to the request's keys
cancelled  cancelled         status cancelled, reason_code cancelled
denied     cancelled         status denied, reason_code denied, reason (Art. 12(4))
=========  ================  ===================================================

An extended deadline (Art. 12(3)) shows as the later ``expected_completion_time`` plus
``deadline_extended`` and ``extension_reason``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from api.downloads import ResultLinks
from api.settings import API_VERSION
from request_store import CONTROLLER, DeliveryRow, State, StoredRequest

OPENDSR_STATUS: dict[State, str] = {
    State.RECEIVED: "pending",
    State.RUNNING: "in_progress",
    State.FAILED: "in_progress",
    State.COMPLETED: "completed",
    State.CANCELLED: "cancelled",
    State.DENIED: "cancelled",
}
PROCESSOR_STATUS: dict[State, str] = {
    State.RECEIVED: "pending",
    State.RUNNING: "in_progress",
    State.FAILED: "failed",
    State.COMPLETED: "completed",
    State.CANCELLED: "cancelled",
    State.DENIED: "denied",
}
REASON_CODES: dict[State, str] = {
    State.FAILED: "export_failed",
    State.CANCELLED: "cancelled",
    State.DENIED: "denied",
}


def rfc3339(moment: datetime) -> str:
    """UTC, whole seconds: ``2026-02-28T23:59:59Z``."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class StatusView:
    """Builds status bodies; ``links`` issues the results URL of a completed request, and
    ``parts_of`` lists its delivered parts (several when the archive was split)."""

    def __init__(
        self,
        domain: str,
        links: ResultLinks,
        parts_of: Callable[[str, str], list[DeliveryRow]] = lambda _rid, _to: [],
        labels: dict[str, str] | None = None,
    ) -> None:
        self.domain, self.links, self.parts_of = domain, links, parts_of
        self.labels = labels or {}  # recipient name -> organisation

    def body(self, req: StoredRequest, state: State | None = None) -> dict:
        """The status of ``req`` (as of ``state``, for a callback of an earlier change)."""
        state = State(state or req.state)
        ext: dict = {"status": PROCESSOR_STATUS[state]}
        if state in REASON_CODES:
            ext["reason_code"] = REASON_CODES[state]
        if state == State.DENIED and req.denial_reason:
            ext["reason"] = req.denial_reason
        if req.extended_deadline is not None:
            ext["deadline_extended"] = True
            if req.extension_reason:
                ext["extension_reason"] = req.extension_reason
        body: dict = {
            "controller_id": req.controller,
            "expected_completion_time": rfc3339(req.due),
            "subject_request_id": req.external_id,
            "request_status": OPENDSR_STATUS[state],
            "api_version": API_VERSION,
        }
        if state == State.COMPLETED and req.transfer_to:  # delivered to the recipient only
            ext["transfer"] = self._transfer(req)
        elif state == State.COMPLETED and req.result_location:
            url, expires = self.links.issue(req.request_id)
            body["results_url"] = url
            body["results_count"] = req.result_count or 0
            ext["results_expires_time"] = rfc3339(expires)
            parts = self.parts_of(req.request_id, CONTROLLER)
            if len(parts) > 1:  # one link per part; results_url is the first part's
                ext["parts"] = [self._part(req.request_id, p) for p in parts]
            if req.encrypt_to:
                ext["encrypted"] = "age"
        body["extensions"] = {self.domain: ext}
        return body

    def _transfer(self, req: StoredRequest) -> dict:
        name = str(req.transfer_to)
        parts = self.parts_of(req.request_id, name)
        label = self.labels.get(name)
        return {
            "recipient": name,
            **({"label": label} if label else {}),
            "parts": [{"name": p.name, "location": p.location, "bytes": p.bytes,
                       "sha256": p.sha256} for p in parts],
        }  # fmt: skip

    def _part(self, request_id: str, part: DeliveryRow) -> dict:
        url, _ = self.links.issue(request_id, part.part)
        return {"part": part.part, "name": part.name, "bytes": part.bytes,
                "sha256": part.sha256, "results_url": url}  # fmt: skip

    def callback(self, req: StoredRequest, state: State, url: str) -> dict:
        """A status callback's body: the status body plus the URL it is sent to."""
        return {**self.body(req, state), "status_callback_url": url}
