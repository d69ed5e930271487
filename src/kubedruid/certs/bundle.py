"""The CA bundle a Druid trusts: the CAs its nodes' internal client accepts, published for clients too. Pure.

During a change of CA it holds the old CA and the new one; otherwise the one that signs the Druid's certificates.
Druid reads it as a PKCS#12 truststore of trusted-certificate entries without a password (CA certificates are
public, and a pod must still start after the keystore password's Secret is gone); people and clients read
`ca.crt`."""

from __future__ import annotations

import base64

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

CA_KEY = "ca.crt"
TRUSTSTORE_KEY = "truststore.p12"


def pem_of(secret: dict | None) -> bytes:
    """The PEM a `<db>-ca-bundle` Secret holds (empty when there is none)."""
    return base64.b64decode(((secret or {}).get("data") or {}).get(CA_KEY) or "")


def parse(pem: bytes | None) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem) if pem and pem.strip() else []


def fingerprint(ca: x509.Certificate) -> str:
    return ca.fingerprint(hashes.SHA256()).hex()


def describe(ca: x509.Certificate) -> str:
    """What a condition or an event says about a CA: its subject and the start of its SHA-256 fingerprint."""
    return f"{ca.subject.rfc4514_string()} (sha256 {fingerprint(ca)[:12]})"


def merged(*groups: list[x509.Certificate]) -> list[x509.Certificate]:
    """The CAs of every group, each once, in the order first seen."""
    seen: dict[str, x509.Certificate] = {}
    for group in groups:
        for ca in group:
            seen.setdefault(fingerprint(ca), ca)
    return list(seen.values())


def same(a: list[x509.Certificate], b: list[x509.Certificate]) -> bool:
    return sorted(map(fingerprint, a)) == sorted(map(fingerprint, b))


def render(cas: list[x509.Certificate]) -> dict[str, bytes]:
    """The bundle Secret's data: ca.crt (PEM, every CA) and truststore.p12 (Java's trusted-certificate entries)."""
    if not cas:
        raise ValueError("a CA bundle needs at least one CA")
    pem = b"".join(ca.public_bytes(serialization.Encoding.PEM) for ca in cas)
    entries = [pkcs12.PKCS12Certificate(ca, f"ca-{i}".encode()) for i, ca in enumerate(cas)]
    truststore = pkcs12.serialize_java_truststore(entries, serialization.NoEncryption())
    return {CA_KEY: pem, TRUSTSTORE_KEY: truststore}
