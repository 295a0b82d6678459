"""Test doubles for streams."""

from __future__ import annotations


class Sink:
    """A write-only, non-seekable stream (no seek, no tell), like a socket, an upload or
    an archive entry seen from outside."""

    closed = False

    def __init__(self) -> None:
        self.buf = bytearray()

    def write(self, data: bytes) -> int:
        self.buf += data
        return len(data)

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def flush(self) -> None:
        pass
