"""One export, end to end: resolve, extract, check, pack, deliver, clean up.

Nothing is delivered unless every source was read and every record met its schema.
The staging area is removed whatever happens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path
from typing import Any

import yaml

from engine.connectors.base import Connector, SourceError
from engine.connectors.registry import build_connector
from engine.datamap import DataMap, resolve_connection
from engine.extract import WORKERS, Extraction, Extractor, Progress, SourceOutcome, Violation
from engine.manifest import build_manifest
from engine.notices import notices_for
from engine.request import ExportRequest
from engine.schemas import SchemaRegistry, default_registry
from engine.staging import MEMORY_LIMIT, Staging
from exporters.delivery import Delivered, Delivery
from exporters.package import ArchiveContent, DatasetInput, FileInput, Packing, pack_parts
from exporters.parts import Part
from exporters.spool import MEMORY_ARCHIVE

DEFAULT_REGISTER = Path(__file__).resolve().parent.parent / "config" / "processing-register.yaml"


@cache
def load_register(path: Path = DEFAULT_REGISTER) -> dict[str, Any]:
    """The processing register (Art. 15(1) context), read once per process."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


class ExportFailed(RuntimeError):
    """The export stopped; nothing was delivered. The message holds no personal data."""

    def __init__(
        self,
        reason: str,
        *,
        outcomes: list[SourceOutcome] | None = None,
        violations: list[Violation] | None = None,
        transient: bool = False,
    ) -> None:
        self.reason = reason
        self.transient = transient  # a source that may answer if asked again later
        self.outcomes = outcomes or []
        self.violations = violations or []
        lines = [reason]
        lines += [
            f"  {v.entity} -> {v.dataset}.{v.field}: rule {v.rule} broken by {v.count} record(s)"
            for v in self.violations
        ]
        super().__init__("\n".join(lines))

    @classmethod
    def source_failed(
        cls, request_id: str, err: SourceError, outcomes: list[SourceOutcome]
    ) -> ExportFailed:
        """A source could not be read (``transient`` when asking again later may work)."""
        return cls(
            f"export {request_id} stopped: {err}; nothing delivered",
            outcomes=outcomes,
            transient=err.transient,
        )

    @classmethod
    def schema_failed(cls, request_id: str, extraction: Extraction) -> ExportFailed:
        """Records broke their dataset's schema."""
        return cls(
            f"export {request_id} stopped: records failed their schema; nothing delivered",
            outcomes=extraction.outcomes,
            violations=extraction.violations,
        )

    @property
    def failed_sources(self) -> list[str]:
        return [o.entity for o in self.outcomes if o.status == "failed"]


@dataclass
class ExportResult:
    request_id: str
    delivered: Delivered  # the archive, or its first part
    manifest: dict[str, Any]
    outcomes: list[SourceOutcome] = field(default_factory=list)
    parts: list[Delivered] = field(default_factory=list)  # every file delivered, in order

    @property
    def records(self) -> int:
        return sum(d["records"] for d in self.manifest["datasets"])


def open_connectors(dm: DataMap, env: Mapping[str, str] | None = None) -> dict[str, Connector]:
    """Connectors for every system; configuration errors surface before any query."""
    options = {s.name: resolve_connection(s, env) for s in dm.systems}
    return {s.name: build_connector(s.name, s.kind, options[s.name]) for s in dm.systems}


def run_export(
    request: ExportRequest,
    datamap: DataMap,
    delivery: Delivery,
    *,
    staging_root: Path,
    schemas: SchemaRegistry | None = None,
    connectors: Mapping[str, Connector] | None = None,
    env: Mapping[str, str] | None = None,
    register_path: Path = DEFAULT_REGISTER,
    progress: Progress | None = None,
    staging_memory_limit: int = MEMORY_LIMIT,
    workers: int = WORKERS,
) -> ExportResult:
    """Export one request and deliver its archive, or raise ``ExportFailed``.

    ``workers`` bounds how many sources of one wave are read at the same time.
    """
    schemas = schemas or default_registry()
    register = load_register(register_path)
    own_connectors = connectors is None
    conns = open_connectors(datamap, env) if connectors is None else connectors
    staging = Staging(staging_root, request.request_id, staging_memory_limit)
    extractor = Extractor(request, datamap, schemas, conns, staging, progress, workers)
    try:
        try:
            extraction = extractor.run()
        except SourceError as err:
            raise ExportFailed.source_failed(
                request.request_id, err, extractor.result.outcomes
            ) from None
        if extraction.violations:
            raise ExportFailed.schema_failed(request.request_id, extraction)
        if progress:
            progress("packing archive", 0, 1)
        archive = staging.path / "archive.zip"
        packing = pack_extraction(request, datamap, schemas, extraction, staging, archive, register)
        parts = deliver_parts(request, packing.parts, delivery)
        if progress:
            progress("delivered", 1, 1)
        outcomes = extraction.outcomes
        return ExportResult(request.request_id, parts[0], packing.manifest, outcomes, parts)
    finally:
        staging.cleanup()
        if own_connectors:
            for c in conns.values():
                c.close()


def pack_extraction(
    request: ExportRequest,
    dm: DataMap,
    schemas: SchemaRegistry,
    ex: Extraction,
    staging: Staging,
    archive: Path,
    register: dict[str, Any],
    *,
    memory_limit: int = MEMORY_ARCHIVE,
) -> Packing:
    """Pack what an extraction staged into ``archive``, or into parts beside it when the
    request sets a maximum part size and the archive is larger.

    An archive of at most ``memory_limit`` bytes is built and delivered from memory
    (``Part.data``), unless the request asks for encryption: the sealed copy is made
    beside the plain file."""
    datasets = []
    for name in dm.datasets():
        if not ex.records.get(name):
            continue
        s = schemas[name]
        datasets.append(
            DatasetInput(
                name,
                s.document.get("title", name),
                s.document.get("description", ""),
                s.file_name,
                s.document,
                s.compiled.arrow_schema,
                partial(staging.batches, name),
            )
        )
    files = [FileInput(f.archive_path, staging.path / f.archive_path, f.size) for f in ex.files]
    notices = notices_for(staging, request.as_of)
    notes = {s.name: s.source_note for s in dm.systems if s.source_note}
    content = ArchiveContent(
        as_of=request.as_of,
        formats=request.formats,
        datasets=datasets,
        files=files,
        manifest=lambda data_files: build_manifest(request, dm, schemas, ex, data_files, notices),
        register=register,
        source_notes=notes,
        package_name="personal-data-export",
    )
    return pack_parts(
        archive,
        content,
        max_part_bytes=request.max_part_bytes,
        part_stem=request.request_id,
        memory_limit=0 if request.encrypt_to else memory_limit,
    )


def deliver_parts(
    request: ExportRequest, parts: Sequence[Part], delivery: Delivery
) -> list[Delivered]:
    """Hand every part over in order, each encrypted to the request's recipients
    (``<name>.age``) when it asks for that; the plain part never leaves the area then."""
    if not request.encrypt_to:
        return [delivery.deliver(p.source, p.name) for p in parts]
    from exporters.encryption import encrypt_file, encrypted_name, parse_recipients

    recipients = parse_recipients(list(request.encrypt_to))
    out = []
    for p in parts:
        sealed = p.path.with_name(encrypted_name(p.path.name))
        encrypt_file(p.source, sealed, recipients)
        out.append(delivery.deliver(sealed, encrypted_name(p.name)))
    return out
