"""Packing a staged export into one ZIP, streamed with bounded memory.

Entry order is fixed (data, files, schemas, datapackage.json, manifest.json,
README.html) and every entry carries the request's ``as_of`` time, so the same staged
data and ``as_of`` give a byte-identical archive.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from exporters import datapackage
from exporters.formats import FORMATS
from exporters.readme_html import render_readme
from exporters.zipwriter import ArchiveWriter, EntryInfo

JSON_OPTS = orjson.OPT_INDENT_2


@dataclass(frozen=True)
class DatasetInput:
    name: str
    title: str
    description: str
    schema_file: str  # file name under schemas/
    schema_doc: dict[str, Any]
    arrow_schema: pa.Schema
    batches: Callable[[], Iterator[pa.RecordBatch]]  # a fresh pass over the records each call


@dataclass(frozen=True)
class FileInput:
    archive_path: str
    staged: Path
    size: int


def pack(
    target: Path,
    *,
    as_of: Any,
    formats: tuple[str, ...],
    datasets: list[DatasetInput],
    files: list[FileInput],
    manifest: Callable[[dict[str, list[str]]], dict[str, Any]],
    register: dict[str, Any],
    source_notes: dict[str, str],
    package_name: str,
) -> tuple[list[EntryInfo], dict[str, Any]]:
    """Write the archive; ``manifest`` is called with dataset -> data file paths."""
    data_files: dict[str, list[str]] = {}
    resources: list[dict[str, Any]] = []
    with ArchiveWriter(target, timestamp=as_of) as zw:
        for ds in datasets:
            for fmt in formats:
                write, ext, _media = FORMATS[fmt]
                arc = f"data/{ds.name}.{ext}"
                with zw.open(arc, compress=fmt != "parquet") as out:
                    write(ds.batches(), ds.arrow_schema, out)
                info = zw.entries[-1]
                data_files.setdefault(ds.name, []).append(arc)
                resources.append(
                    datapackage.resource(
                        name=f"{ds.name}-{fmt}",
                        path=arc,
                        fmt=fmt,
                        bytes_=info.bytes,
                        sha256=info.sha256,
                        json_schema=ds.schema_doc,
                        json_schema_path=f"schemas/{ds.schema_file}",
                        title=ds.title,
                        description=ds.description,
                    )
                )
        for f in files:
            with open(f.staged, "rb") as src:
                zw.add_stream(f.archive_path, src, size=f.size)
        for ds in datasets:
            zw.add_bytes(
                f"schemas/{ds.schema_file}", orjson.dumps(ds.schema_doc, option=JSON_OPTS) + b"\n"
            )
        man = manifest(data_files)
        desc = datapackage.descriptor(
            name=package_name,
            title="Personal data export",
            created=man["as_of"],
            resources=resources,
            description=man["statement"],
        )
        zw.add_bytes("datapackage.json", orjson.dumps(desc, option=JSON_OPTS) + b"\n")
        zw.add_bytes("manifest.json", orjson.dumps(man, option=JSON_OPTS) + b"\n")
        titles = {ds.name: (ds.title, ds.description) for ds in datasets}
        zw.add_bytes(
            "README.html", render_readme(man, register, titles, source_notes).encode("utf-8")
        )
        entries = list(zw.entries)
    return entries, man
