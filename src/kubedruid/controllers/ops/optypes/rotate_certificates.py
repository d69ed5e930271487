"""Rotate certificates: cert-manager re-issues every certificate (new serials, same issuer); pods that reload their
keystore (Druid >= 25, with the keystore sidecar) serve the new one without a restart — a handshake with each pod
shows its serial — and only the others are restarted, one at a time."""

from __future__ import annotations

from ..plan import (
    CERTIFICATE_SYNCED,
    FINISH,
    ISSUE_CERTIFICATES,
    NOT_RELOADED,
    RELOAD_CERTIFICATES,
    RESTART_NODES,
    UPDATE_PETSETS,
    Phase,
    Plan,
)
from .base import OpType, needs_tls

RELOAD = Phase("CertificatesReloaded", (RELOAD_CERTIFICATES,),
               message="every pod that reloads its keystore serves the new certificate")
RESTART_STALE = Phase("NotReloadedRestarted", (UPDATE_PETSETS, RESTART_NODES),
                      only_if=(RELOAD_CERTIFICATES, "RestartNeeded"), restart_only_stale=True,
                      message=f"the pods that did not reload ({NOT_RELOADED}) were restarted onto the new certificate")

OP = OpType(
    kind="RotateCertificates", request_type="ReconfigureTLS", preflight=needs_tls("rotateCertificates"),
    what="re-issues every certificate; pods reload it, and only those that cannot are restarted",
    plan=Plan("RotateCertificates", (
        Phase(None, (ISSUE_CERTIFICATES, CERTIFICATE_SYNCED)),
        RELOAD,
        RESTART_STALE,
        Phase(None, (FINISH,)),
    )))
