"""manifest.json: what was asked, what each source returned, what was withheld and why."""

from __future__ import annotations

import functools
from importlib import metadata
from typing import Any

from engine.datamap.model import DataMap
from engine.extract import Extraction
from engine.normalize.mapping import excluded_fields
from engine.request import ExportRequest
from engine.schemas import SchemaRegistry

MANIFEST_VERSION = "1.0.0"
ARTICLE = {
    "access": "GDPR Art. 15 (right of access)",
    "portability": "GDPR Art. 20 (right to data portability)",
}
INFERRED_REASON = (
    "Inferred or derived data is outside the right to data portability "
    "(GDPR Art. 20; WP242 rev.01); ask for an access copy (Art. 15) to receive it."
)
REDACTION_REASON = (
    "Names, email addresses and phone numbers of other people in free text "
    "are replaced to protect their rights (GDPR Art. 15(4), 20(4))."
)


@functools.cache
def generator() -> str:
    """This program and its version (read once: the package metadata lookup is slow)."""
    try:
        return f"infuze-portability {metadata.version('infuze-portability')}"
    except metadata.PackageNotFoundError:
        return "infuze-portability"


def rfc3339(dt: Any) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def build_manifest(
    request: ExportRequest,
    dm: DataMap,
    schemas: SchemaRegistry,
    extraction: Extraction,
    data_files: dict[str, list[str]],
    notices: list[dict[str, str]],
) -> dict[str, Any]:
    datasets = [
        {
            "name": d,
            "records": extraction.records.get(d, 0),
            "files": data_files.get(d, []),
            "schema": schemas[d].schema_id,
        }
        for d in dm.datasets()
    ]
    withheld = [
        {"system": e.system, "entity": e.name, "column": w.column, "reason": w.reason}
        for e in dm.entities()
        if e.dataset
        for w in e.withheld
    ]
    excluded = [
        {
            "system": e.system,
            "entity": e.name,
            "field": f.name,
            "provenance": f.provenance,
            "reason": INFERRED_REASON,
        }
        for e in dm.entities()
        if e.dataset
        for f in excluded_fields(e, request.request_type)
    ]
    held = any(extraction.records.values())
    return {
        "manifest_version": MANIFEST_VERSION,
        "request": {
            "id": request.request_id,
            "type": request.request_type,
            "legal_basis": ARTICLE[request.request_type],
            "formats": list(request.formats),
        },
        "as_of": rfc3339(request.as_of),
        "generated_by": generator(),
        "datamap_version": dm.version,
        "personal_data_held": held,
        "statement": (
            "This archive holds all personal data about you found in the systems "
            "listed under sources, as of the time given."
            if held
            else "We hold no personal data about you in any of the systems listed under "
            "sources, as of the time given."
        ),
        "schemas": {d: schemas[d].schema_id for d in dm.datasets()},
        "datasets": datasets,
        "sources": [
            {
                "system": o.system,
                "entity": o.entity.split(".", 1)[1],
                "dataset": o.dataset,
                "status": o.status,
                "records": o.records,
            }
            for o in extraction.outcomes
        ],
        "customer_files": {
            "count": len(extraction.files),
            "bytes": sum(f.size for f in extraction.files),
        },
        "withheld": withheld,
        "excluded": excluded,
        "redactions": {"count": extraction.redactions, "reason": REDACTION_REASON},
        "notices": notices,
    }
