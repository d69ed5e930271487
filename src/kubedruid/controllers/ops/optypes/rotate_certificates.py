"""Rotate certificates: cert-manager re-issues every certificate (new serials, same issuer), then one roll."""

from __future__ import annotations

from ..plan import CERTIFICATE_SYNCED, FINISH, ISSUE_CERTIFICATES, RESTART_NODES, UPDATE_PETSETS, Phase, Plan
from .base import OpType, needs_tls

OP = OpType(
    kind="RotateCertificates", request_type="ReconfigureTLS", preflight=needs_tls("rotateCertificates"),
    what="re-issues every certificate, then restarts every pod once",
    plan=Plan("RotateCertificates", (
        Phase(None, (ISSUE_CERTIFICATES, CERTIFICATE_SYNCED, UPDATE_PETSETS, RESTART_NODES, FINISH)),
    )))
