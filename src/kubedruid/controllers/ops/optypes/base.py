"""What an op type is: its plan, the Druid spec it leads to, and the checks that fail it before anything is paused.
Pure. One module per op type in this package; the registry is optypes/__init__.py."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

from ..plan import Plan

# The messages of the first and the closing condition, per request type (KubeDB's wording).
REQUEST_MESSAGES = {
    "ReconfigureTLS": ("Druid ops-request has started to reconfigure tls for druid nodes",
                       "Successfully completed reconfigureTLS for druid."),
    "Restart": ("Druid ops-request has started to restart druid nodes", "Successfully Restarted Druid nodes"),
}


def unchanged(druid_spec: dict, ops: dict) -> dict:
    return copy.deepcopy(druid_spec)


def no_problem(ops: dict, druid: dict) -> str | None:
    return None


@dataclass(frozen=True)
class OpType:
    kind: str  # the Plan condition's reason: AddTLS, UpdateTLS, RotateCertificates, RemoveTLS, Restart
    request_type: str  # spec.type
    plan: Plan
    # The Druid spec the op leads to (KubeDB's dbCopy): deterministic, so a re-run computes the same target.
    target: Callable[[dict, dict], dict] = unchanged
    # Checks on the request and the Druid alone: a message fails the op before the Druid is paused.
    preflight: Callable[[dict, dict], str | None] = no_problem
    what: str = ""  # one line for people: what this op does to a running Druid


def requested_tls(druid_spec: dict, ops: dict) -> dict:
    """The Druid spec with the request's issuer and certificate specs: what add and update lead to."""
    spec = copy.deepcopy(druid_spec)
    request = ops["spec"].get("tls") or {}
    tls = dict(spec.get("tls") or {})
    if request.get("issuerRef") is not None:
        tls["issuerRef"] = copy.deepcopy(request["issuerRef"])
    if request.get("certificates") is not None:
        tls["certificates"] = copy.deepcopy(request["certificates"])
    spec["tls"] = tls
    spec["enableSSL"] = True
    return spec


def needs_issuer(ops: dict, druid: dict) -> str | None:
    target = requested_tls(druid["spec"], ops)
    return None if (target.get("tls") or {}).get("issuerRef") else "spec.tls.issuerRef is required to add TLS"


def needs_tls(field: str) -> Callable[[dict, dict], str | None]:
    def check(ops: dict, druid: dict) -> str | None:
        if druid["spec"].get("enableSSL"):
            return None
        meta = druid["metadata"]
        return f"spec.tls.{field}: Druid {meta['namespace']}/{meta['name']} has no TLS (spec.enableSSL is not true)"
    return check
