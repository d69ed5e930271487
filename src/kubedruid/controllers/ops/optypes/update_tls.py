"""Change the issuer or the certificate specs of a Druid that serves TLS without a call between nodes failing:
the new issuer's CA is learnt first (a probe certificate) and, if it is another CA, every node is rolled to trust
both CAs before any serves a certificate of the new one; then the certificates are re-issued and rolled in; then the
old CA is dropped from the bundle and rolled out. The new certificates reach the pods as a rotation does: reloaded
where Druid can, else by a restart. With the same CA (new certificate specs, or another issuer of the same CA) the
trust phases are not needed."""

from __future__ import annotations

from ..plan import (
    CERTIFICATE_SYNCED,
    FINISH,
    PRUNE_CA_BUNDLE,
    RESTART_NODES,
    TRUST_ISSUER_CA,
    UPDATE_PETSETS,
    Phase,
    Plan,
)
from .base import OpType, needs_issuer, requested_tls
from .rotate_certificates import RELOAD, RESTART_STALE

CA_CHANGED = (TRUST_ISSUER_CA, "CAChanged")

OP = OpType(
    kind="UpdateTLS", request_type="ReconfigureTLS", target=requested_tls, preflight=needs_issuer,
    what="trusts the new CA everywhere, re-issues the certificates from the new issuer, then drops the old CA",
    plan=Plan("UpdateTLS", (
        Phase(None, (TRUST_ISSUER_CA,)),
        Phase("TrustBothCAsRolledOut", (UPDATE_PETSETS, RESTART_NODES), renders_target=False, only_if=CA_CHANGED,
              message="every node trusts the old and the new CA"),
        Phase("CertificatesReissued", (CERTIFICATE_SYNCED, UPDATE_PETSETS),
              message="the certificates are issued by the new issuer"),
        RELOAD,
        RESTART_STALE,
        Phase("OldCADropped", (PRUNE_CA_BUNDLE, RESTART_NODES), only_if=CA_CHANGED,
              message="every node trusts the new CA only"),
        Phase(None, (FINISH,)),
    )))
