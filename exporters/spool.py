"""Where an archive is written while it is built: memory while it is small, then a file.

A typical export's archive is tens of kilobytes; writing it to a staged file, reading it
back for its hash and copying it to the delivery cost more than building it, and every
file made and removed per subject costs the file system too. ``ArchiveSpool`` holds the
bytes in memory up to ``limit``; past that it moves them to a private file (0600, its
folder 0700, both made then) and goes on there, so memory stays bounded whatever the
archive's size. ``ArchiveWriter`` writes to it as to any seekable stream.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO

MEMORY_ARCHIVE = 16 << 20  # an archive up to this size is built and delivered from memory
_BUFFER = 4 << 20  # the file's buffer, once the archive went to disk


class ArchiveSpool:
    """A seekable, write-only stream: in memory up to ``limit`` bytes, then ``path``."""

    def __init__(self, path: Path, limit: int = MEMORY_ARCHIVE) -> None:
        self.path = Path(path)
        self.limit = limit
        self._memory: io.BytesIO | None = io.BytesIO()
        self._out: BinaryIO = self._memory
        if limit <= 0:
            self._to_file()

    @property
    def data(self) -> bytes | None:
        """The archive's bytes while it is in memory; None once it went to ``path``."""
        return self._memory.getvalue() if self._memory is not None else None

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._memory is not None and self._memory.tell() + len(data) > self.limit:
            self._to_file()
        return self._out.write(data)

    def _to_file(self) -> None:
        memory, self._memory = self._memory, None
        self.path.parent.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # private
        self._out = open(fd, "wb", buffering=_BUFFER)  # noqa: SIM115 (closed by close())
        if memory is not None:
            view = memory.getbuffer()
            self._out.write(view)
            pos = memory.tell()
            view.release()
            self._out.seek(pos)

    def tell(self) -> int:
        return self._out.tell()

    def seek(self, pos: int, whence: int = os.SEEK_SET) -> int:
        return self._out.seek(pos, whence)

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        self._out.flush()

    def save(self) -> None:
        """Put the archive in ``path`` if it is still in memory, and close the file."""
        if self._memory is not None:
            self._to_file()
        self.close()

    def close(self) -> None:
        """Close the file (if the archive went there); the memory stays readable."""
        if self._memory is None:
            self._out.close()
