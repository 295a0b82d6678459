"""Delivery: handing a finished archive over, to a local folder or to S3.

``open_delivery(target)`` picks the kind: a folder path, or an ``s3://bucket/prefix?...``
URL (exporters/s3_delivery.py: endpoint, encryption and part size in the query).

A delivery is all or nothing: the archive appears under its final name only once it is
complete (written to a hidden temporary name, flushed, then renamed).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol


@dataclass(frozen=True)
class Delivered:
    location: str
    bytes: int
    sha256: str


Archive = Path | bytes  # an archive in a file, or built in memory (exporters/spool.py)


class Delivery(Protocol):
    def deliver(self, archive: Archive, name: str) -> Delivered:
        """Hand over ``archive`` under ``name``; raise if it cannot be done whole."""
        ...


def open_archive(archive: Archive) -> BinaryIO:
    """A binary reader over an archive, from its first byte."""
    if isinstance(archive, bytes):
        return io.BytesIO(archive)
    return open(archive, "rb")


def archive_size(archive: Archive) -> int:
    return len(archive) if isinstance(archive, bytes) else Path(archive).stat().st_size


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class LocalFolderDelivery:
    """Archives in a folder readable by its owner only (folder 0700, files 0600)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def deliver(self, archive: Archive, name: str) -> Delivered:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.folder, 0o700)
        final = self.folder / name
        tmp = self.folder / f".{name}.partial"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as dst:
                os.fchmod(fd, 0o600)  # whatever an earlier attempt left
                if isinstance(archive, bytes):
                    dst.write(archive)
                else:
                    with open(archive, "rb") as src:
                        shutil.copyfileobj(src, dst, 1 << 20)
                dst.flush()
                os.fsync(fd)
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if isinstance(archive, bytes):  # the bytes just written and synced: no read back
            return Delivered(str(final), len(archive), hashlib.sha256(archive).hexdigest())
        return Delivered(str(final), final.stat().st_size, file_sha256(final))


def open_delivery(target: str | Path) -> Delivery:
    """Where archives go: ``s3://bucket/prefix?endpoint_url=...`` or a local folder."""
    text = str(target)
    if text.startswith("s3://"):
        from exporters.s3_delivery import S3Delivery  # boto3 only when S3 is used

        return S3Delivery.from_url(text)
    return LocalFolderDelivery(Path(text))
