"""The certificate a Druid pod really serves: a TLS handshake with its TLS port, verified against the Druid's CA
bundle and the pod's DNS name (TLS 1.2+, hostname verification on), as a peer would make it."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes

HANDSHAKE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Served:
    serial: int
    issuer: str
    not_before: datetime.datetime
    not_after: datetime.datetime
    fingerprint: str  # SHA-256, hex

    @classmethod
    def of(cls, cert: x509.Certificate) -> Served:
        return cls(cert.serial_number, cert.issuer.rfc4514_string(), cert.not_valid_before_utc,
                   cert.not_valid_after_utc, cert.fingerprint(hashes.SHA256()).hex())


class HandshakeFailed(Exception):
    pass


def client_context(ca_pem: bytes) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


async def served_certificate(address: str, port: int, server_name: str, ca_pem: bytes,
                             timeout: float = HANDSHAKE_TIMEOUT_S) -> Served:
    """The leaf certificate `address:port` presents for `server_name`. Raises HandshakeFailed (unreachable,
    refused, not trusted by the bundle, or not valid for the name), with the reason."""
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(address, port, ssl=client_context(ca_pem), server_hostname=server_name),
            timeout)
    except (OSError, asyncio.TimeoutError, ssl.SSLError) as e:
        raise HandshakeFailed(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__) from None
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return Served.of(x509.load_der_x509_certificate(der))
    finally:
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), 1.0)
        except (OSError, asyncio.TimeoutError, ssl.SSLError):
            pass
