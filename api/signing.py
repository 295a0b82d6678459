"""Signing what the service sends (OpenDSR "Signing"): responses and callbacks.

The signature is RSASSA-PKCS1-v1_5 with SHA-256 (FIPS 186-4 RSA, "SHA256withRSA") over
the exact body bytes, i.e. over their SHA-256 digest, base64-encoded in
``X-OpenDSR-Signature``; ``X-OpenDSR-Processor-Domain`` names the domain of the
certificate served at ``/opendsr/v2/certificate.pem`` (named in discovery). A portal
verifies the raw body before parsing it::

    cert.public_key().verify(b64decode(sig), body, padding.PKCS1v15(), hashes.SHA256())

:class:`SigningMiddleware` signs every response body the application produces (JSON
and errors alike, buffered: they are small). A response that already carries a
signature (a results download, signed from the archive's stored SHA-256 so that the
archive streams) passes through untouched.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SIGNATURE_HEADER = "X-OpenDSR-Signature"
DOMAIN_HEADER = "X-OpenDSR-Processor-Domain"
_SIG = SIGNATURE_HEADER.lower().encode()


class Signer:
    """Signs bodies with the processor key; names the processor domain."""

    def __init__(self, key: rsa.RSAPrivateKey, domain: str) -> None:
        self._key, self.domain = key, domain

    def sign(self, body: bytes) -> str:
        return base64.b64encode(self._key.sign(body, padding.PKCS1v15(), hashes.SHA256())).decode()

    def sign_digest(self, sha256_hex: str) -> str:
        """The signature of a body known only by its SHA-256 (a streamed archive)."""
        digest = bytes.fromhex(sha256_hex)
        prehashed = utils.Prehashed(hashes.SHA256())
        return base64.b64encode(self._key.sign(digest, padding.PKCS1v15(), prehashed)).decode()

    def headers(self, body: bytes) -> dict[str, str]:
        return {DOMAIN_HEADER: self.domain, SIGNATURE_HEADER: self.sign(body)}


def verify(certificate_pem: bytes, body: bytes, signature_b64: str) -> bool:
    """True if ``signature_b64`` is the certificate key's signature of ``body`` (what a
    portal does with the certificate named in discovery)."""
    cert = x509.load_pem_x509_certificate(certificate_pem)
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    try:
        key.verify(
            base64.b64decode(signature_b64, validate=True),
            body,
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
    except (InvalidSignature, ValueError):
        return False
    return True


def _has(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bool:
    return any(k.lower() == name for k, _ in headers)


class SigningMiddleware:
    """Buffers each response body, then sends it with its signature headers."""

    def __init__(self, app: ASGIApp, signer: Signer) -> None:
        self.app, self.signer = app, signer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        passthrough = False
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start, passthrough
            kind = message["type"]
            if kind == "http.response.start":
                if _has(message.get("headers", []), _SIG):
                    passthrough = True
                    await send(message)
                else:
                    start = message
                return
            if passthrough or kind != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            headers = [
                (k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"
            ]
            headers.append((b"content-length", str(len(body)).encode()))
            for name, value in self.signer.headers(body).items():
                headers.append((name.lower().encode(), value.encode()))
            if not _has(headers, b"cache-control"):
                headers.append((b"cache-control", b"no-store"))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})

        await self.app(scope, receive, capture)
