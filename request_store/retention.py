"""Retention: delete what has been kept long enough, and say what is still held.

``apply_retention(store, delivery, staging_root)`` removes

- every delivered part past its ``expires_at`` (``request_deliveries``): the file in the
  delivery folder, or the object in S3 when the archives go there, then marks the part
  deleted (audit event ``archive_deleted`` with its name, size and hash). A part whose
  file is already gone is marked deleted too; one that cannot be removed (S3 down, a
  location outside the configured delivery) is reported and left for the next run;
- every staging area whose request is closed (completed, denied, cancelled) or unknown:
  what a run left behind when it stopped between packing and delivering.

Copies transferred to another organisation (``expires_at`` NULL) are theirs, never
touched. The report holds counts, sizes, opaque ids and file names, never data.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from exporters.delivery import Delivery, LocalFolderDelivery
from request_store.deliveries import Deliveries, DeliveryRow
from request_store.model import CLOSED_STATES, RequestNotFound
from request_store.store import RequestStore

ACTOR = "retention"


@dataclass
class RetentionReport:
    deleted: list[DeliveryRow] = field(default_factory=list)
    not_deleted: list[tuple[DeliveryRow, str]] = field(default_factory=list)  # (part, why)
    staging_removed: list[str] = field(default_factory=list)  # request ids
    held: list[DeliveryRow] = field(default_factory=list)  # what is still held, after

    @property
    def deleted_bytes(self) -> int:
        return sum(r.bytes for r in self.deleted)


def apply_retention(
    store: RequestStore, delivery: Delivery, staging_root: Path | None = None
) -> RetentionReport:
    """Delete expired parts and leftover staging areas; the report of what was done."""
    deliveries, report = Deliveries(store), RetentionReport()
    for row in deliveries.expired():
        why = remove(row.location, delivery)
        if why:
            report.not_deleted.append((row, why))
        elif deliveries.deleted(row, actor=ACTOR):
            report.deleted.append(row)
    if staging_root is not None and staging_root.is_dir():
        for area in sorted(p for p in staging_root.iterdir() if p.is_dir()):
            try:
                closed = store.get(area.name).state in CLOSED_STATES
            except RequestNotFound:
                closed = True
            if closed:
                shutil.rmtree(area, ignore_errors=True)
                report.staging_removed.append(area.name)
    report.held = deliveries.held()
    return report


def remove(location: str, delivery: Delivery) -> str:
    """Remove one delivered file; "" when it is gone, else why it is not."""
    if location.startswith("s3://"):
        from exporters.s3_delivery import S3Delivery, S3DeliveryError, parse_location

        if not isinstance(delivery, S3Delivery) or parse_location(location)[0] != delivery.bucket:
            return "not in the configured S3 bucket"
        try:
            delivery.delete(location)
        except S3DeliveryError as err:
            return str(err)
        return ""
    path = Path(location)
    inside = isinstance(delivery, LocalFolderDelivery) and path.resolve().is_relative_to(
        delivery.folder.resolve()
    )
    if not inside:
        return "not in the configured delivery folder"
    path.unlink(missing_ok=True)
    return ""
