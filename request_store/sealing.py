"""Sealed secrets: a credential that comes with a request (a recipient's presigned PUT
URL) is kept encrypted at rest, and only until the request closes.

The API seals it with the public half of an age key (``seal``); only the exporter, which
holds the key file, can open it (``unseal``) when it delivers. The sealed text lives in
the store's ``request_secrets`` table and is deleted with the identities when the
request completes, is denied or cancelled, or is purged. A copy of the database
(a backup, a replica) alone reveals nothing: the key file is not in it.

The key file (``PORTABILITY_SEAL_KEY``, default ``$DAGSTER_HOME/seal.key``) is an age
X25519 identity, created 0600 on first use; back it up with the database, or in-flight
transfers cannot be delivered (they fail naming the missing key, and can be re-requested).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from pathlib import Path

import pyrage


class SealError(ValueError):
    """A sealed secret that cannot be opened (wrong or missing key); no value in it."""


def seal_key_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    home = env.get("DAGSTER_HOME") or "dagster_home"
    return Path(env.get("PORTABILITY_SEAL_KEY") or Path(home) / "seal.key")


def _identity(path: Path) -> pyrage.x25519.Identity:
    """The key in ``path``, created (0600, folder 0700) when missing."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = pyrage.x25519.Identity.generate()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            return _identity(path)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(str(key) + "\n")
        return key
    return pyrage.x25519.Identity.from_str(path.read_text(encoding="ascii").strip())


def seal(secret: str, key_file: Path) -> str:
    """``secret`` encrypted to the key's public half (base64 text)."""
    recipient = _identity(key_file).to_public()
    return base64.b64encode(pyrage.encrypt(secret.encode(), [recipient])).decode()


def unseal(sealed: str, key_file: Path) -> str:
    """The secret back; SealError when the key is missing or does not open it."""
    if not key_file.is_file():
        raise SealError(f"the seal key {key_file} is missing: the secret cannot be opened")
    try:
        return pyrage.decrypt(base64.b64decode(sealed), [_identity(key_file)]).decode()
    except (pyrage.DecryptError, pyrage.IdentityError, ValueError) as err:
        raise SealError(f"the sealed secret does not open with {key_file}") from err
