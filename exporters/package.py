"""Packing a staged export into one ZIP, streamed with bounded memory, or into parts.

Entry order is fixed (data, files, schemas, datapackage.json, manifest.json,
README.html) and every entry carries the request's ``as_of`` time, so the same staged
data and ``as_of`` give a byte-identical archive. ``pack_parts`` writes the same
archive, or past a maximum part size splits it into parts (exporters/parts.py), part
001 holding ``parts.json`` and a manifest and README that tell of the parts.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from exporters import datapackage
from exporters.delivery import file_sha256
from exporters.formats import FORMATS
from exporters.parts import MIN_PART_BYTES, Part, split_archive
from exporters.readme_html import render_readme
from exporters.spool import ArchiveSpool
from exporters.zipwriter import ArchiveWriter, EntryInfo

JSON_OPTS = orjson.OPT_INDENT_2
PARTS_FILE = "parts.json"
PARTS_VERSION = "1.0.0"
_README_ANCHOR = "<h2>What is in this archive</h2>"  # the parts section goes before it


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


@dataclass(frozen=True)
class Packing:
    """What ``pack_parts`` wrote: the files to deliver, in order, and what they hold."""

    parts: list[Part]  # one (``<stem>.zip``) when the export fits, else ``<stem>-001.zip``..
    entries: list[EntryInfo]  # the export's entries, as the single archive holds them
    manifest: dict[str, Any]  # as written (with ``parts`` when split)


@dataclass(frozen=True)
class _Index:
    """The entries closing an export; for a part layout (parts.py), parts.json first."""

    manifest: dict[str, Any]
    descriptor: dict[str, Any]
    schemas: list[tuple[str, bytes]]
    readme: Callable[[dict[str, Any]], str]  # manifest -> README.html

    def __call__(self, layout: dict[str, Any] | None = None) -> list[tuple[str, bytes]]:
        man, head, section = self.manifest, [], ""
        if layout is not None:
            doc = parts_doc(layout, [PARTS_FILE, *(n for n, _ in self())])
            man = {**man, "parts": manifest_parts([p["file"] for p in doc["parts"]])}
            head, section = [(PARTS_FILE, _json(doc))], _parts_html(doc)
        readme = self.readme(man).replace(_README_ANCHOR, section + _README_ANCHOR, 1)
        return [
            *head,
            *self.schemas,
            ("datapackage.json", _json(self.descriptor)),
            ("manifest.json", _json(man)),
            ("README.html", readme.encode("utf-8")),
        ]


@dataclass(frozen=True)
class ArchiveContent:
    """What goes into an export's archive; ``manifest`` is called with dataset -> data
    file paths once the data files are written."""

    as_of: Any
    formats: tuple[str, ...]
    datasets: list[DatasetInput]
    files: list[FileInput]
    manifest: Callable[[dict[str, list[str]]], dict[str, Any]]
    register: dict[str, Any]
    source_notes: dict[str, str]
    package_name: str


def pack(target: Path, content: ArchiveContent) -> tuple[list[EntryInfo], dict[str, Any]]:
    """Write the archive as one ZIP; its entries and manifest."""
    entries, index = _write(target, content)
    return entries, index.manifest


def pack_parts(
    target: Path,
    content: ArchiveContent,
    *,
    max_part_bytes: int | None,
    part_stem: str | None = None,
    memory_limit: int = 0,
) -> Packing:
    """Write the export as ``target`` or, past ``max_part_bytes``, as parts beside it:
    ``<part_stem>-001.zip`` ... (default stem: ``target``'s), removing any an earlier
    packing left. ``Part.name`` is the name to deliver under (``<part_stem>.zip`` if one).

    An archive of at most ``memory_limit`` bytes that needs no parts stays in memory
    (``Part.data``) and ``target`` is not written (``exporters/spool.py``).
    """
    if max_part_bytes is not None and max_part_bytes < MIN_PART_BYTES:
        raise ValueError(f"max_part_bytes must be at least {MIN_PART_BYTES}")
    stem = part_stem or target.stem
    if target.parent.is_dir():
        for old in target.parent.iterdir():
            if re.fullmatch(re.escape(stem) + r"-\d{3,}\.zip", old.name):
                old.unlink()
    spool = ArchiveSpool(target, memory_limit)
    try:
        entries, index = _write(spool, content)
    finally:
        spool.close()
    data = spool.data
    size = len(data) if data is not None else target.stat().st_size
    if max_part_bytes is None or size <= max_part_bytes:
        names = tuple(e.arcname for e in entries)
        digest = hashlib.sha256(data).hexdigest() if data is not None else file_sha256(target)
        one = Part(1, f"{stem}.zip", target, size, digest, names, data)
        return Packing([one], entries, index.manifest)
    if data is not None:  # parts are cut from a file
        spool.save()
    parts = split_archive(
        target, index, max_part_bytes=max_part_bytes, timestamp=content.as_of, stem=stem
    )
    man = {**index.manifest, "parts": manifest_parts([p.name for p in parts])}
    return Packing(parts, entries, man)


def _write(target: Path | ArchiveSpool, content: ArchiveContent) -> tuple[list[EntryInfo], _Index]:
    c = content
    data_files: dict[str, list[str]] = {}
    resources: list[dict[str, Any]] = []
    with ArchiveWriter(target, timestamp=c.as_of) as zw:
        for ds in c.datasets:
            for fmt in c.formats:
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
        for f in c.files:
            with open(f.staged, "rb") as src:
                zw.add_stream(f.archive_path, src, size=f.size)
        man = c.manifest(data_files)
        desc = datapackage.descriptor(
            name=c.package_name,
            title="Personal data export",
            created=man["as_of"],
            resources=resources,
            description=man["statement"],
        )
        titles = {ds.name: (ds.title, ds.description) for ds in c.datasets}
        schemas = [(f"schemas/{ds.schema_file}", _json(ds.schema_doc)) for ds in c.datasets]
        index = _Index(
            man, desc, schemas, lambda m: render_readme(m, c.register, titles, c.source_notes)
        )
        shared = {name for name, _ in schemas}  # the same in every export: deflated once
        for name, data in index():
            zw.add_bytes(name, data, shared=name in shared)
        entries = list(zw.entries)
    return entries, index


def parts_doc(layout: dict[str, Any], index_names: list[str]) -> dict[str, Any]:
    """parts.json: ``layout`` (exporters/parts.py) with part 001's index names and help."""
    parts = [dict(p, entries=[*p["entries"], *index_names]) if p["number"] == 1 else p
             for p in layout["parts"]]  # fmt: skip
    split = [
        dict(f, join=f"cat {' '.join(map(shlex.quote, f['pieces']))} > {shlex.quote(f['path'])}",
             join_windows=f"copy /b {'+'.join(_win(p) for p in f['pieces'])} {_win(f['path'])}")
        for f in layout["split_files"]
    ]  # fmt: skip
    note = (
        f"This export comes in {layout['count']} ZIP files of at most {layout['max_part_bytes']}"
        " bytes, each opening on its own. Part 1 cannot hold its own size and SHA-256: they come"
        " with the download. Files too large for a part come in pieces (split_files)."
    )
    return {"parts_version": PARTS_VERSION, "note": note, **layout, "parts": parts,
            "split_files": split}  # fmt: skip


def manifest_parts(files: list[str]) -> dict[str, Any]:
    """The manifest's ``parts``: how many, their file names, where their list is."""
    return {"count": len(files), "files": files, "list": PARTS_FILE}


def _parts_html(doc: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{p['number']}</td><td><code>{escape(p['file'])}</code></td>"
        f"<td>{len(p['entries'])}</td><td>{p['bytes'] or 'this file'}</td>"
        f"<td><code>{p['sha256'] or ''}</code></td></tr>"
        for p in doc["parts"]
    )
    pieces = "".join(
        f"<li><code>{escape(f['path'])}</code> ({f['bytes']} bytes, SHA-256 <code>{f['sha256']}"
        f"</code>): {len(f['pieces'])} pieces; once all parts are unpacked in one folder, join "
        f"them: <code>{escape(f['join'])}</code> (Windows: <code>{escape(f['join_windows'])}"
        "</code>)</li>"
        for f in doc["split_files"]
    )
    return (
        f"<h2>This export comes in {doc['count']} parts</h2><p>It is too large for one file "
        f"of at most {doc['max_part_bytes']} bytes, so it comes as {doc['count']} ZIP files. "
        "Each opens on its own; you need all of them for the whole export. This is part 1; "
        f"<code>{PARTS_FILE}</code> lists what each part holds.</p><table><tr><th>Part</th>"
        f"<th>File</th><th>Files in it</th><th>Bytes</th><th>SHA-256</th></tr>{rows}</table>"
        + (f"<p>Files too large for one part, cut into pieces:</p><ul>{pieces}</ul>" * bool(pieces))
    )


def _win(path: str) -> str:
    return '"' + path.replace("/", "\\") + '"'


def _json(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc, option=JSON_OPTS) + b"\n"
