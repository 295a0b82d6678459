"""The API's key material in its state folder: created once, owner-only, never logged.

- ``secret.key``: 32 random bytes. Two keys are derived from it: one signs results links
  (HMAC), one makes the keyed request digests kept in the request store (409 check).
- ``processor.key`` / ``processor.pem``: the RSA key that signs responses and callbacks
  and its self-signed certificate (local use), unless a real pair is configured.

Files are created with O_EXCL under a temporary name and linked into place, so two
processes starting at once end up with the same material (the loser reads the winner's).
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import os
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

RSA_BITS = 3072
CERT_DAYS = 825  # a self-signed certificate is renewed (same key) within 30 days of expiry
RENEW_BEFORE = timedelta(days=30)


@dataclass(frozen=True)
class KeyMaterial:
    private_key: rsa.RSAPrivateKey = field(repr=False)
    certificate: x509.Certificate
    link_key: bytes = field(repr=False)  # HMAC key of results links
    digest_key: bytes = field(repr=False)  # HMAC key of request digests

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


def derive(secret: bytes, purpose: str) -> bytes:
    return hmac.new(secret, f"opendsr-api/{purpose}".encode(), sha256).digest()


def private_dir(path: Path) -> Path:
    """The state folder, created 0700 (an existing one is tightened to 0700)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def create_once(path: Path, payload: bytes) -> bytes:
    """The file's bytes; if it does not exist, write ``payload`` (0600) atomically first."""
    if path.exists():
        return path.read_bytes()
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # another process won: read theirs
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_bytes()


def self_signed(key: rsa.RSAPrivateKey, domain: str, now: datetime) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain[:64])])
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(domain))
    except ValueError:
        alt = x509.DNSName(domain)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=CERT_DAYS))
        .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )


def _load_key(data: bytes) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the signing key must be an RSA private key (PEM, unencrypted)")
    return key


def load_or_create(
    state_dir: Path,
    domain: str,
    key_file: Path | None = None,
    cert_file: Path | None = None,
    now: datetime | None = None,
) -> KeyMaterial:
    """The API's key material; creates what is missing in ``state_dir``."""
    now = now or datetime.now(UTC)
    state = private_dir(Path(state_dir))
    secret = create_once(state / "secret.key", secrets.token_bytes(32))
    if len(secret) < 32:
        raise ValueError(f"{state / 'secret.key'}: too short (32 random bytes expected)")
    if key_file is not None and cert_file is not None:
        key = _load_key(Path(key_file).read_bytes())
        cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
        if cert.public_key().public_numbers() != key.public_key().public_numbers():
            raise ValueError("the configured certificate does not belong to the configured key")
    else:
        key_path, cert_path = state / "processor.key", state / "processor.pem"
        if key_path.exists():
            key = _load_key(key_path.read_bytes())
        else:
            new = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
            pem = new.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            key = _load_key(create_once(key_path, pem))
        cert = None
        if cert_path.exists():
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            stale = cert.not_valid_after_utc - RENEW_BEFORE < now
            foreign = cert.public_key().public_numbers() != key.public_key().public_numbers()
            if stale or foreign:
                cert_path.unlink(missing_ok=True)
                cert = None
        if cert is None:
            pem = self_signed(key, domain, now).public_bytes(serialization.Encoding.PEM)
            cert = x509.load_pem_x509_certificate(create_once(cert_path, pem))
    return KeyMaterial(key, cert, derive(secret, "results-link"), derive(secret, "request-digest"))
