"""The op types: one module each. `classify` is the one place that decides which one a request is."""

from __future__ import annotations

from kubedruid.druid.tls import TLSMode

from . import add_tls, remove_tls, restart, rotate_certificates, update_tls
from .base import REQUEST_MESSAGES, OpType

OP_TYPES: dict[str, OpType] = {m.OP.kind: m.OP for m in (add_tls, update_tls, rotate_certificates, remove_tls,
                                                         restart)}
SUPPORTED_REQUESTS = tuple(REQUEST_MESSAGES)


def classify(ops: dict, current_mode: TLSMode) -> OpType:
    """The op type of a request, given the TLS mode the Druid runs in when it starts. A ReconfigureTLS that names
    an issuer or certificates adds TLS unless the Druid already serves TLS only (an add that failed half-way is
    completed by asking again)."""
    spec = ops["spec"]
    if spec["type"] == "Restart":
        return restart.OP
    request = spec.get("tls") or {}
    if request.get("remove"):
        return remove_tls.OP
    if request.get("rotateCertificates"):
        return rotate_certificates.OP
    return update_tls.OP if current_mode is TLSMode.TLS_ONLY else add_tls.OP


__all__ = ["OP_TYPES", "REQUEST_MESSAGES", "SUPPORTED_REQUESTS", "OpType", "classify"]
