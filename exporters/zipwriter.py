"""A deterministic, streaming ZIP writer on top of the stdlib ``zipfile``.

Every entry is written sequentially through a bounded buffer, counted and hashed
(SHA-256) on the way, so memory stays small whatever the entry size. Everything that
could vary between two runs is fixed: entry order (call order), the date-time of every
entry (the given timestamp), external attributes (regular file, 0o644), the creating
system (Unix) and the deflate level. The same content and timestamp therefore give a
byte-identical archive. Entries of unknown size are written with ZIP64 extensions so
that they may pass 4 GB.
"""

from __future__ import annotations

import hashlib
import os
import stat
import zipfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, BinaryIO

DEFLATE_LEVEL = 6
EXTERNAL_ATTR = (stat.S_IFREG | 0o644) << 16
CREATE_SYSTEM = 3  # Unix, whatever the platform writing the archive
_BUFFER = 1 << 20  # bytes gathered before they go to the compressor
_SPOOL = 4 << 20  # archive bytes held in memory before they go to the file

# Already-compressed containers and media: deflating them again costs time for nothing.
_STORED = """
    .zip .gz .tgz .bz2 .tbz2 .xz .txz .zst .zstd .lz .lz4 .lzma .br .7z .rar .cab .jar .war
    .apk .aab .ipa .whl .egg .deb .rpm .dmg .parquet .orc .avro .arrow .feather
    .docx .xlsx .pptx .docm .xlsm .pptm .odt .ods .odp .odg .epub .pages .numbers .key
    .png .jpg .jpeg .gif .webp .heic .heif .avif .jxl .jp2
    .mp3 .m4a .aac .ogg .oga .opus .flac .wma
    .mp4 .m4v .mov .mkv .avi .webm .wmv .flv .3gp
    .woff .woff2
"""
STORED_SUFFIXES = frozenset(_STORED.split())


def should_compress(name: str) -> bool:
    """Whether an entry called ``name`` is worth deflating (not already compressed).

    PDF is deflated: its streams are mostly compressed but its text parts are not, and
    deflating a compressed stream costs little.
    """
    base = name.rsplit("/", 1)[-1].lower()
    dot = base.rfind(".")
    return dot <= 0 or base[dot:] not in STORED_SUFFIXES


@dataclass(frozen=True)
class EntryInfo:
    """One written entry: its archive name, size (uncompressed) and SHA-256 (hex)."""

    arcname: str
    bytes: int
    sha256: str
    compressed: bool


def _check_arcname(arcname: str) -> None:
    parts = arcname.split("/")
    if (
        not arcname
        or "\\" in arcname
        or "\x00" in arcname
        or arcname.startswith("/")
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise ValueError(
            "archive names must be relative POSIX paths without empty, '.' or '..' segments"
        )


class _EntryStream:
    """Write-only, non-seekable stream into one open entry; counts and hashes bytes."""

    def __init__(self, sink: IO[bytes]) -> None:
        self._sink = sink
        self._buf = bytearray()
        self._sha = hashlib.sha256()
        self.count = 0
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self.closed:
            raise ValueError("write to a finished archive entry")
        view = memoryview(data).cast("B")
        n = view.nbytes
        self.count += n
        if not self._buf and n >= _BUFFER:
            self._send(view)
        else:
            self._buf += view
            if len(self._buf) >= _BUFFER:
                self.flush()
        return n

    def _send(self, data: bytes | bytearray | memoryview) -> None:
        self._sha.update(data)
        self._sink.write(data)

    def flush(self) -> None:
        if self._buf:
            self._send(self._buf)
            self._buf = bytearray()

    def finish(self) -> str:
        self.flush()
        self.closed = True
        return self._sha.hexdigest()

    def tell(self) -> int:
        return self.count

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        """Writers (pyarrow, csv ...) may close their sink: the entry ends with ``open``."""
        self.flush()


class _WriteBehind:
    """A file opened for writing that zipfile may seek in, holding the bytes since the
    last flush in memory: zipfile writes an entry's header, its data, then seeks back to
    rewrite the header, which costs a seek and a write system call each time on a real
    file (most entries of an export are a few hundred bytes). Past ``limit`` bytes the
    buffer goes to the file, so memory stays bounded; a rewrite of bytes already in the
    file (the header of a large entry) is written there in place.
    """

    def __init__(self, raw: BinaryIO, limit: int) -> None:
        self._raw = raw
        self._limit = limit
        self._buf = bytearray()
        self._base = raw.tell()  # file offset of the buffer's first byte
        self._pos = self._base

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast("B")
        n = view.nbytes
        pos = self._pos
        if pos < self._base:  # rewriting bytes already in the file
            head = min(n, self._base - pos)
            self._raw.seek(pos)
            self._raw.write(view[:head])
            self._raw.seek(self._base)
            view, pos = view[head:], pos + head
        if view.nbytes:
            off = pos - self._base
            self._buf[off : off + view.nbytes] = view
            pos += view.nbytes
        self._pos = pos
        if len(self._buf) >= self._limit and pos == self._base + len(self._buf):
            self._raw.write(self._buf)
            self._base, self._buf = pos, bytearray()
        return n

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        end = self._base + len(self._buf)
        start = end if whence == os.SEEK_END else self._pos if whence == os.SEEK_CUR else 0
        if not 0 <= start + offset <= end:
            raise ValueError("seek outside the written bytes")
        self._pos = start + offset
        return self._pos

    def flush(self) -> None:
        """Everything to the file (zipfile flushes once, after the central directory)."""
        if self._buf:
            self._raw.write(self._buf)
            self._base, self._buf = self._base + len(self._buf), bytearray()
            self._raw.flush()
        self._pos = max(self._pos, self._base)

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True


class ArchiveWriter:
    """Writes one ZIP archive; use as a context manager. Not thread-safe."""

    def __init__(self, target: Path | BinaryIO, *, timestamp: datetime) -> None:
        if timestamp.tzinfo is None or timestamp.utcoffset() is None:
            raise ValueError("timestamp must be time-zone aware")
        utc = timestamp.astimezone(UTC)
        if utc.year < 1980:
            raise ValueError("ZIP time stamps start in 1980")
        self._date_time = (utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second)
        self._own: BinaryIO | None = None
        if isinstance(target, (str, os.PathLike)):
            # Personal data: the archive is private from its first byte.
            self._own = open(target, "wb", opener=lambda p, f: os.open(p, f, 0o600))  # noqa: SIM115
            self._spool: _WriteBehind | None = _WriteBehind(self._own, _SPOOL)
            fileobj: BinaryIO = self._spool  # type: ignore[assignment]
        else:
            self._spool = None
            fileobj = target
        self._zip = zipfile.ZipFile(fileobj, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True)
        self._entries: list[EntryInfo] = []
        self._names: set[str] = set()

    def __enter__(self) -> ArchiveWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Write the central directory and close the file if this writer opened it."""
        try:
            self._zip.close()
            if self._spool is not None:
                self._spool.flush()
        finally:
            if self._own is not None:
                self._own.close()

    @property
    def entries(self) -> list[EntryInfo]:
        """Entries written so far, in archive order."""
        return list(self._entries)

    def _zipinfo(self, arcname: str, compress: bool, size: int | None) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(arcname, date_time=self._date_time)
        info.create_system = CREATE_SYSTEM
        info.external_attr = EXTERNAL_ATTR
        info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        info._compresslevel = DEFLATE_LEVEL if compress else None  # type: ignore[attr-defined]
        if size is not None:
            info.file_size = size  # zipfile decides ZIP64 from this
        return info

    def open(
        self, arcname: str, *, compress: bool | None = None, size: int | None = None
    ) -> AbstractContextManager[BinaryIO]:
        """A write-only stream into a new entry; the entry is finished when the block ends.

        ``compress=None`` decides by name (:func:`should_compress`). A known ``size``
        lets zipfile decide on ZIP64 and is checked; an unknown size forces ZIP64.
        """
        _check_arcname(arcname)
        if arcname in self._names:
            raise ValueError(f"duplicate archive name: {arcname}")
        if size is not None and size < 0:
            raise ValueError("size must not be negative")
        deflate = should_compress(arcname) if compress is None else compress
        self._names.add(arcname)
        return self._open(arcname, deflate, size)

    @contextmanager
    def _open(self, arcname: str, deflate: bool, size: int | None) -> Iterator[BinaryIO]:
        info = self._zipinfo(arcname, deflate, size)
        with self._zip.open(info, "w", force_zip64=size is None) as sink:
            stream = _EntryStream(sink)
            yield stream  # type: ignore[misc]
            digest = stream.finish()
        if size is not None and stream.count != size:
            raise ValueError(f"{arcname}: {stream.count} bytes written, {size} announced")
        self._entries.append(EntryInfo(arcname, stream.count, digest, deflate))

    def add_bytes(self, arcname: str, data: bytes, *, compress: bool | None = None) -> EntryInfo:
        """Add an entry holding ``data``."""
        with self.open(arcname, compress=compress, size=len(data)) as out:
            out.write(data)
        return self._entries[-1]

    def add_stream(
        self,
        arcname: str,
        src: BinaryIO,
        *,
        size: int | None = None,
        compress: bool | None = None,
        chunk_size: int = 1 << 20,
    ) -> EntryInfo:
        """Copy ``src`` into a new entry in chunks of ``chunk_size`` (bounded memory)."""
        with self.open(arcname, compress=compress, size=size) as out:
            while chunk := src.read(chunk_size):
                out.write(chunk)
        return self._entries[-1]
