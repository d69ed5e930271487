"""Change the issuer or the certificate specs of a Druid that serves TLS: new certificates, then one roll.
(A change of CA cannot keep every call working this way: restarted nodes trust only the new CA. Trust in both CAs
during the change is the next plan to land here.)"""

from __future__ import annotations

from ..plan import CERTIFICATE_SYNCED, FINISH, RESTART_NODES, UPDATE_PETSETS, Phase, Plan
from .base import OpType, needs_issuer, requested_tls

OP = OpType(
    kind="UpdateTLS", request_type="ReconfigureTLS", target=requested_tls, preflight=needs_issuer,
    what="re-issues the certificates from the new issuer or specs, then restarts every pod once",
    plan=Plan("UpdateTLS", (
        Phase(None, (CERTIFICATE_SYNCED, UPDATE_PETSETS, RESTART_NODES, FINISH)),
    )))
