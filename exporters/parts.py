"""Splitting a packed export into parts of at most ``max_part_bytes``, each a whole ZIP.

``pack_parts`` (package.py) writes the export as one archive, as without a limit; if it
fits, that is the result, byte for byte. Otherwise :func:`split_archive` makes
``<stem>-001.zip`` ... ``<stem>-NNN.zip`` of it, written last to first:

* Entries are copied, not recompressed, in archive order (next fit). Each part has its
  own central directory and a ZIP comment naming it, and opens on its own.
* Part 001 holds the index: schemas, datapackage.json (unchanged), manifest.json and
  README.html (both telling of the parts), parts.json (each part's file and entries,
  and the bytes and SHA-256 of parts 002..: a file cannot hold its own hash, part
  001's comes with the return value, for the API status), then what data fits.
* An entry too big for any part (a 5 GB upload, 2 GB parts) is cut into byte ranges
  ``<name>.001``, ``.002`` ..., compressed as the entry was, each alone in a part;
  parts.json (``split_files``) and the README tell how to join them (``cat``).

No part exceeds the limit (copies are measured, new entries bounded by worst-case
deflate); a limit under MIN_PART_BYTES or too small for part 001's index raises
ValueError. Same archive, stem and limit: same parts. Data moves in 1 MB chunks; the
archive is truncated behind each part (peak disk: archive plus one part), then removed.
"""

from __future__ import annotations

import copy
import hashlib
import io
import os
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from exporters.delivery import Archive, file_sha256
from exporters.zipwriter import ArchiveWriter

DEFAULT_MAX_PART_BYTES = 2_000_000_000  # under 2 GiB: no ZIP64 offsets needed
MIN_PART_BYTES = 64 * 1024
Index = Callable[[dict[str, Any] | None], list[tuple[str, bytes]]]  # part 001's index

_END = 22 + 56 + 20  # end of central directory record, ZIP64 end record and locator
_ENTRY = 30 + 20 + 46 + 28  # local and central headers with ZIP64 extras, names aside
_CHUNK = 1 << 20
_COMMENT = "Part {} of {} of a data export; start with {} (README.html)."


@dataclass(frozen=True)
class Part:
    """One file to deliver under ``name``; ``entries`` are the archive names it holds.

    ``data``: its bytes when it was built in memory (then ``path`` was never written)."""

    number: int
    name: str
    path: Path
    bytes: int
    sha256: str
    entries: tuple[str, ...]
    data: bytes | None = field(default=None, repr=False)

    @property
    def source(self) -> Archive:
        """What a delivery reads: the bytes, or the file."""
        return self.data if self.data is not None else self.path


@dataclass(frozen=True)
class _Rec:
    """An entry's local record (header and data): ``span`` bytes at ``start`` in ``src``."""

    src: BinaryIO
    info: zipfile.ZipInfo
    name: str
    start: int
    span: int

    @property
    def size(self) -> int:  # in a part, with its central record (ZIP64 extra included)
        return self.span + 46 + 28 + len(self.name.encode())


@dataclass(frozen=True)
class _Cut:
    """Bytes ``offset`` .. ``offset + length`` of an oversized entry, as entry ``name``."""

    rec: _Rec
    name: str
    offset: int
    length: int


def part_name(stem: str, number: int, count: int) -> str:
    return f"{stem}-{number:0{max(3, len(str(count)))}d}.zip"


def _records(src: BinaryIO, infos: list[zipfile.ZipInfo]) -> list[_Rec]:
    out = []
    for info in infos:
        src.seek(info.header_offset)
        head = src.read(30)
        if head[:4] != b"PK\x03\x04" or info.flag_bits & 0x08:
            raise ValueError(f"{info.filename}: not a local record without data descriptor")
        n, e = struct.unpack("<HH", head[26:30])
        span = 30 + n + e + info.compress_size
        out.append(_Rec(src, info, info.filename, info.header_offset, span))
    return out


def _copy(read: Callable[[int], bytes], write: Callable[[bytes], Any], n: int) -> None:
    while n:
        chunk = read(min(_CHUNK, n))
        if not chunk:
            raise ValueError("an archive entry ends before its size")
        write(chunk)
        n -= len(chunk)


def _write(path: Path, recs: list[_Rec], comment: str) -> None:
    """A part of copies of ``recs``; zipfile writes the directory from filelist, start_dir."""
    opener = lambda p, f: os.open(p, f, 0o600)  # noqa: E731
    with open(path, "wb", opener=opener) as out, zipfile.ZipFile(out, "w") as zf:
        for rec in recs:
            info = copy.copy(rec.info)  # ZIP64 extras are recomputed; there are no others
            info.header_offset, info.extra = out.tell(), b""
            rec.src.seek(rec.start)
            _copy(rec.src.read, out.write, rec.span)
            zf.filelist.append(info)  # as ZipFile.write does once the data is written
        zf.start_dir, zf.comment = out.tell(), comment.encode()


def _write_cuts(zf: zipfile.ZipFile, cuts: list[_Cut], paths: list[Path], comments: list[str],
                when: datetime) -> str:  # fmt: skip
    """Write the pieces of one entry, each alone in its part; the entry's SHA-256."""
    sha, deflate = hashlib.sha256(), cuts[0].rec.info.compress_type == zipfile.ZIP_DEFLATED
    with zf.open(cuts[0].rec.info) as data:
        for cut, path, comment in zip(cuts, paths, comments, strict=True):
            with (
                ArchiveWriter(path, timestamp=when) as zw,
                zw.open(cut.name, compress=deflate, size=cut.length) as out,
            ):
                _copy(data.read, lambda c, out=out: (sha.update(c), out.write(c)), cut.length)
            with open(path, "r+b") as f:  # the ZIP comment: the end record's last field
                f.seek(-2, os.SEEK_END)
                f.write(struct.pack("<H", len(comment.encode())) + comment.encode())
    return sha.hexdigest()


def _cuts(rec: _Rec, limit: int) -> list[_Cut]:
    """Byte ranges of an oversized entry, each small enough for a part of its own."""
    deflate, size, width = rec.info.compress_type == zipfile.ZIP_DEFLATED, rec.info.file_size, 3
    while True:
        room = limit - _ENTRY - 2 * (len(rec.name.encode()) + 1 + width)
        length = (room - 64) * 1024 // 1025 if deflate else room  # worst-case deflate
        if length <= 0:
            raise ValueError(f"parts too small to cut {rec.name} into")
        if len(str(count := -(-size // length))) <= width:
            break
        width = len(str(count))
    return [
        _Cut(rec, f"{rec.name}.{k + 1:0{width}d}", k * length, min(length, size - k * length))
        for k in range(count)
    ]


def _plan(body: list[_Rec], limit: int, room: int) -> list[Any]:
    """Groups in part order: record lists (the first, part 001's, may be empty), cuts."""
    groups: list[Any] = [[]]
    for rec in body:
        if rec.size > limit:
            groups, room = [*groups, *_cuts(rec, limit)], 0
            continue
        if rec.size > room:
            groups, room = [*groups, []], limit
        groups[-1].append(rec)
        room -= rec.size
    return groups


def _layout(groups: list[Any], max_part_bytes: int, stem: str, done: dict) -> dict[str, Any]:
    """Parts and cut entries; ``done``: part number -> (bytes, sha256), entry -> sha256."""
    count, parts, split = len(groups), [], {}
    for i, g in enumerate(groups, 1):
        if isinstance(g, _Cut):
            split.setdefault(g.rec.name, (g.rec.info.file_size, []))[1].append(g.name)
        size, sha = done.get(i, (max_part_bytes, "0" * 64)) if i > 1 else (None, None)
        names = [g.name] if isinstance(g, _Cut) else [r.name for r in g]
        parts.append({"number": i, "file": part_name(stem, i, count), "bytes": size,
                      "sha256": sha, "entries": names})  # fmt: skip
    return {"count": count, "max_part_bytes": max_part_bytes, "parts": parts, "split_files": [
        {"path": p, "bytes": n, "sha256": done.get(p, "0" * 64), "pieces": pieces}
        for p, (n, pieces) in split.items()
    ]}  # fmt: skip


def split_archive(
    source: Path, index: Index, *, max_part_bytes: int, timestamp: datetime, stem: str
) -> list[Part]:
    """Split the archive ``source`` into parts beside it, then remove it (see above)."""
    if max_part_bytes < MIN_PART_BYTES:
        raise ValueError(f"max_part_bytes must be at least {MIN_PART_BYTES}")
    limit = max_part_bytes - _END - len(_COMMENT.format(10**6, 10**6, "x" * 255).encode())
    paths: list[Path] = []
    try:
        with open(source, "rb") as fh, zipfile.ZipFile(fh) as zf:
            recs, names = _records(fh, zf.infolist()), {n for n, _ in index(None)}
            body, reserve = [r for r in recs if r.name not in names], 0
            while True:  # room in part 001 for its index, whose size depends on the plan
                groups = _plan(body, limit, limit - reserve)
                entries = index(_layout(groups, max_part_bytes, stem, {}))
                need = sum(_ENTRY + 2 * len(n.encode()) + len(d) + (len(d) >> 10) + 64
                           for n, d in entries)  # fmt: skip
                if need <= reserve:
                    break
                if need > limit:
                    raise ValueError(f"max_part_bytes {max_part_bytes} is too small for the index")
                reserve = need
            if {g.name for g in groups if isinstance(g, _Cut)} & {r.name for r in recs}:
                raise ValueError("a name for a piece of a cut entry is taken")
            count, done = len(groups), {}
            paths = [source.parent / part_name(stem, i, count) for i in range(1, count + 1)]
            comments = [_COMMENT.format(i, count, paths[0].name) for i in range(1, count + 1)]
            i = count - 1
            while i > 0:  # last to first, cutting the archive short behind each part
                g, j = groups[i], i
                while isinstance(groups[j], _Cut) and groups[j].offset:
                    j -= 1  # to the entry's first piece: pieces are read in order
                if isinstance(g, _Cut):
                    cuts, at, notes = groups[j : i + 1], paths[j : i + 1], comments[j : i + 1]
                    done[g.rec.name] = _write_cuts(zf, cuts, at, notes, timestamp)
                else:
                    _write(paths[i], g, comments[i])
                os.truncate(source, (g.rec if isinstance(g, _Cut) else g[0]).start)
                i = j - 1
            for k in range(1, count):
                done[k + 1] = (paths[k].stat().st_size, file_sha256(paths[k]))
            buf = io.BytesIO()
            with ArchiveWriter(buf, timestamp=timestamp) as zw:
                for name, data in index(layout := _layout(groups, max_part_bytes, stem, done)):
                    zw.add_bytes(name, data)
            with zipfile.ZipFile(buf) as mini:
                _write(paths[0], groups[0] + (idx := _records(buf, mini.infolist())), comments[0])
            done[1] = (paths[0].stat().st_size, file_sha256(paths[0]))
        if any(done[k][0] > max_part_bytes for k in range(1, count + 1)):
            raise RuntimeError("a part came out larger than the limit")  # a bug: never
    except BaseException:
        for path in [*paths, source]:
            path.unlink(missing_ok=True)
        raise
    source.unlink()
    layout["parts"][0]["entries"] += [r.name for r in idx]
    return [
        Part(p["number"], p["file"], path, *done[p["number"]], tuple(p["entries"]))
        for p, path in zip(layout["parts"], paths, strict=True)
    ]
