"""Remove TLS from a Druid in two rolls (the reverse of adding it): every node opens plaintext beside TLS, the
Services move to the plaintext ports, then every node closes its TLS port. The last roll keeps client trust (the
CA bundle), because until its last pod is restarted some peer still announces a TLS port; the Druid stays in
client trust (its tls.kubedruid.dev/mode annotation) until the next Restart drops it."""

from __future__ import annotations

from kubedruid.druid.tls import TLSMode

from ..plan import FINISH, REMOVE_TLS_OBJECTS, RESTART_NODES, UPDATE_PETSETS, UPDATE_SERVICES, Phase, Plan
from .base import OpType, needs_tls


def without_tls(druid_spec: dict, ops: dict) -> dict:
    spec = {k: v for k, v in druid_spec.items() if k not in ("tls", "keystoreCredSecret")}
    spec["enableSSL"] = False
    return spec


# The Services keep their ports during a roll and take the new mode's once every pod runs it.
ROLL = (UPDATE_PETSETS, RESTART_NODES, UPDATE_SERVICES)

OP = OpType(
    kind="RemoveTLS", request_type="ReconfigureTLS", target=without_tls, preflight=needs_tls("remove"),
    what="rolls in plaintext beside TLS, moves the Services to plaintext, then rolls the TLS port off",
    plan=Plan("RemoveTLS", starts_from=TLSMode.TLS_ONLY, phases=(
        Phase("PlaintextOpened", ROLL, TLSMode.TLS_SERVICES, "every node serves plaintext beside TLS",
              renders_target=False),
        Phase("ServicesSwitchedToPlaintext", (UPDATE_PETSETS,), TLSMode.TLS_PORT,
              "the Druid's Services point at the plaintext ports", renders_target=False),
        Phase("TLSPortClosed", ROLL, TLSMode.CLIENT_TRUST,
              "no node serves TLS; a client Service drops its TLS port just before its first pod restarts, once "
              "clients had the grace to follow the Services", renders_target=False),
        # Pods keep their certificate Secret mounted until restarted, so the TLS objects go last.
        Phase(None, (FINISH, REMOVE_TLS_OBJECTS)),
    )))
