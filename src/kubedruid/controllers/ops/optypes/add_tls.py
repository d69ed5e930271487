"""Add TLS to a Druid that serves plaintext, in three rolls that never leave a caller without a way in
(spec druid-tls §3.3): every node first trusts the CA, then opens its TLS port beside plaintext, the Services move
to the TLS ports, and only then is plaintext closed."""

from __future__ import annotations

from kubedruid.druid.tls import TLSMode

from ..plan import CERTIFICATE_SYNCED, FINISH, RESTART_NODES, UPDATE_PETSETS, UPDATE_SERVICES, Phase, Plan
from .base import OpType, needs_issuer, requested_tls

# The Services keep their ports during a roll and take the new mode's once every pod runs it.
ROLL = (UPDATE_PETSETS, RESTART_NODES, UPDATE_SERVICES)

OP = OpType(
    kind="AddTLS", request_type="ReconfigureTLS", target=requested_tls, preflight=needs_issuer,
    what="issues the certificates, then rolls in client trust, the TLS port beside plaintext, and TLS only",
    plan=Plan("AddTLS", starts_from=TLSMode.OFF, phases=(
        Phase(None, (CERTIFICATE_SYNCED,)),
        Phase("ClientTrustRolledOut", ROLL, TLSMode.CLIENT_TRUST,
              "every node trusts the issuer's CA for its calls to peers; all serve plaintext only"),
        Phase("TLSPortOpened", ROLL, TLSMode.TLS_PORT, "every node serves its TLS port beside plaintext"),
        Phase("ServicesSwitchedToTLS", (UPDATE_PETSETS,), TLSMode.TLS_SERVICES,
              "the Druid's Services point at the TLS ports"),
        Phase("PlaintextClosed", (*ROLL, FINISH), TLSMode.TLS_ONLY,
              "every node serves TLS only; a client Service drops plaintext just before its first pod restarts, "
              "once clients had the grace to follow the Services"),
    )))
