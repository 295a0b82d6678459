"""Encrypting a finished archive to keys the recipient holds, in the age format.

Why age (https://age-encryption.org/v1): it is small, modern and fully specified
(X25519, HKDF-SHA-256, ChaCha20-Poly1305 in 64 KiB chunks), has independent, maintained
implementations (the reference ``age`` in Go, ``rage`` in Rust, packaged by Debian and
most systems), and needs no configuration, keyring or trust model: a recipient is one
short public key string. We encrypt with ``pyrage`` (Python bindings of rage) and never
implement the format ourselves.

Recipients are age X25519 public keys (``age1...``, made with ``age-keygen``) or, as age
itself allows, SSH public keys (``ssh-ed25519 ...`` or ``ssh-rsa ...``, one line of
``~/.ssh/id_*.pub``). Up to ``MAX_RECIPIENTS``; any one of them can decrypt.

How a recipient decrypts (with either CLI; ``rage`` takes the same arguments)::

    age -d -i key.txt archive.zip.age > archive.zip        # key.txt from age-keygen
    age -d -i ~/.ssh/id_ed25519 archive.zip.age > archive.zip

What is protected: the content of the archive (confidential, and authenticated: any
change or truncation makes decryption fail). What is not: the file's name (``<name>.age``,
e.g. ``<request_id>.zip.age``), its size (the plaintext size to within a chunk's 16-byte
tags and the header), the times on the file, and the number of recipients; an SSH
recipient's stanza also carries a short tag of that key's fingerprint (X25519 ones name
no key). Anyone may encrypt to a public key: age says nothing about who wrote the file,
so its authenticity comes from the channel it is delivered over.

Encryption streams: the source is read and the output written in small chunks, so
memory stays bounded whatever the archive's size. The output appears under its final
name only once complete (a private temporary name, fsync, rename), with mode 0600.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeAlias

import pyrage

from exporters.delivery import Archive, open_archive

SUFFIX = ".age"
MAX_RECIPIENTS = 10

Recipient: TypeAlias = pyrage.x25519.Recipient | pyrage.ssh.Recipient

_SSH_PREFIXES = ("ssh-ed25519 ", "ssh-rsa ")


@dataclass(frozen=True)
class EncryptedFile:
    path: Path
    bytes: int
    sha256: str


def encrypted_name(name: str) -> str:
    """The encrypted file's name for ``name``: ``archive.zip`` -> ``archive.zip.age``."""
    return name + SUFFIX


def parse_recipients(values: Sequence[str]) -> list[Recipient]:
    """Age recipients from public key strings; ``ValueError`` naming the bad one's position.

    The messages never repeat a value: they name the recipient by its 1-based position.
    """
    if isinstance(values, str | bytes):
        raise ValueError("recipients must be a list of public keys, not a single string")
    if not values:
        raise ValueError("at least one recipient is required")
    if len(values) > MAX_RECIPIENTS:
        raise ValueError(f"at most {MAX_RECIPIENTS} recipients are allowed (got {len(values)})")
    parsed: list[Recipient] = []
    seen: dict[str, int] = {}
    for position, value in enumerate(values, start=1):
        key = value.strip() if isinstance(value, str) else ""
        try:
            if key.startswith("age1"):
                parsed.append(pyrage.x25519.Recipient.from_str(key))
            elif key.startswith(_SSH_PREFIXES):
                parsed.append(pyrage.ssh.Recipient.from_str(key))
                key = " ".join(key.split()[:2])  # without the comment, to find repeats
            else:
                raise pyrage.RecipientError
        except pyrage.RecipientError:
            raise ValueError(
                f"recipient {position} is not an age public key (age1...) "
                "or an SSH public key (ssh-ed25519 / ssh-rsa)"
            ) from None
        if key in seen:
            raise ValueError(f"recipient {position} repeats recipient {seen[key]}")
        seen[key] = position
    return parsed


class _HashingWriter:
    """A binary writer that counts and hashes what passes through it."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self._out.write(data)

    def flush(self) -> None:
        self._out.flush()


def encrypt_file(src: Archive, dst: Path, recipients: Sequence[Recipient]) -> EncryptedFile:
    """Encrypt ``src`` (a file, or an archive's bytes) to ``recipients`` (from
    ``parse_recipients``) as ``dst``, streaming.

    ``dst`` (by convention ``encrypted_name(src.name)``) appears whole or not at all, with
    mode 0600; on any failure no partial file is left and an existing ``dst`` is untouched.
    Raises ``OSError`` when reading, writing or encrypting fails mid-way.
    """
    if not recipients:
        raise ValueError("at least one recipient is required")
    dst = Path(dst)
    with open_archive(src) as reader:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".partial", dir=dst.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                os.fchmod(out.fileno(), 0o600)
                writer = _HashingWriter(out)
                try:
                    pyrage.encrypt_io(reader, writer, list(recipients))
                except pyrage.EncryptError as e:
                    raise OSError(f"age encryption failed: {e}") from None
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, dst)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return EncryptedFile(dst, writer.size, writer.hash.hexdigest())
