"""Pre-flight checks: what must hold before an op pauses the Druid or touches a pod. Each check has a name; the
first that fails ends the op Failed with a condition `Preflight--<name>` and a message that names it, and nothing
has been paused, issued or restarted. They read the cluster and write nothing.

Some of what a user might expect here holds by construction instead: the certificates' SANs are built from the
Druid's own pods and Services (specs/cluster.certificate_dns_names, user names only added), and the Certificates pin
privateKey.rotationPolicy. Whether pods reload or restart is in the plan (`kubedruid tls plan`), not a failure.
`apply: IfReady` on a Druid that is not Ready waits (KubeDB's behaviour) rather than failing.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pydantic import ValidationError

from kubedruid.api import Druid, apply_defaults
from kubedruid.api.durations import parse_duration
from kubedruid.druid import tls
from kubedruid.kube import conditions as cond
from kubedruid.kube.client import Kube
from kubedruid.specs import names

from .optypes import OpType

CONDITION_PREFIX = "Preflight--"
# keytool and cert-manager's JKS/PKCS#12 keystores need a password of at least six characters.
MIN_KEYSTORE_PASSWORD = 6


@dataclass(frozen=True)
class Inputs:
    kube: Kube
    ops: dict
    druid: dict
    op: OpType

    @property
    def namespace(self) -> str:
        return self.ops["metadata"]["namespace"]


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[Inputs], Awaitable[str | None]]  # a message when it fails


async def _request_valid(i: Inputs) -> str | None:
    """What the op type itself requires of the request and the Druid (an issuer to add, TLS to rotate, ...)."""
    return i.op.preflight(i.ops, i.druid)


async def _issuer_ready(i: Inputs) -> str | None:
    target = i.op.target(i.druid["spec"], i.ops)
    if not (target.get("enableSSL") and i.op.request_type == "ReconfigureTLS"):
        return None
    refs = [(target.get("tls") or {}).get("issuerRef")] + [
        c.get("issuerRef") for c in (target.get("tls") or {}).get("certificates") or []]
    for ref in [r for r in refs if r]:
        kind_, name_ = ref.get("kind"), ref.get("name")
        if kind_ not in ("Issuer", "ClusterIssuer"):
            return f"spec.tls.issuerRef.kind {kind_!r} is not Issuer or ClusterIssuer"
        issuer = await i.kube.get("cert-manager.io/v1", kind_, name_, i.namespace if kind_ == "Issuer" else None)
        if issuer is None:
            return f"{kind_} {name_} (spec.tls.issuerRef) does not exist"
        if not cond.is_true((issuer.get("status") or {}).get("conditions"), "Ready"):
            return f"{kind_} {name_} (spec.tls.issuerRef) is not Ready"
    return None


async def _keystore_password_usable(i: Inputs) -> str | None:
    """The keystore-credential Secret, when it exists (the operator creates it otherwise), holds a password the
    keystores can be made with: cert-manager would otherwise never issue them, and the op would wait for nothing."""
    target = i.op.target(i.druid["spec"], i.ops)
    if not target.get("enableSSL"):
        return None
    try:
        db = apply_defaults(Druid.model_validate({**i.druid, "spec": target}))
    except ValidationError:
        return None  # admission checks the spec; nothing here to add
    name = db.spec.keystoreCredSecret.name
    secret = await i.kube.get("v1", "Secret", name, i.namespace)
    if secret is None:
        return None
    raw = (secret.get("data") or {}).get(tls.KEYSTORE_PASSWORD_KEY)
    if raw is None:
        return f"Secret {i.namespace}/{name} (spec.keystoreCredSecret) has no key {tls.KEYSTORE_PASSWORD_KEY!r}"
    try:
        password = base64.b64decode(raw, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return f"Secret {i.namespace}/{name}: {tls.KEYSTORE_PASSWORD_KEY} is not UTF-8 text"
    if len(password) < MIN_KEYSTORE_PASSWORD:
        return (f"Secret {i.namespace}/{name}: {tls.KEYSTORE_PASSWORD_KEY} is shorter than "
                f"{MIN_KEYSTORE_PASSWORD} characters, which keystores refuse")
    return None


def _selects(selector: dict | None, labels: dict) -> bool:
    """A LabelSelector (matchLabels and matchExpressions) against a pod's labels; an empty selector selects all."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and labels.get(key) in values) or \
                (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels):
            return False
    return True


async def _evictions_allowed(i: Inputs) -> str | None:
    """No PodDisruptionBudget over the Druid's pods allows no eviction now: the op's first restart would wait for
    it until the timeout, with the Druid paused."""
    if i.op.plan.rolls == 0:
        return None
    db = i.druid["metadata"]["name"]
    pods, budgets = await asyncio.gather(i.kube.list("v1", "Pod", i.namespace, labels=names.selector_labels(db)),
                                         i.kube.list("policy/v1", "PodDisruptionBudget", i.namespace))
    for pdb in budgets:
        selected = [p["metadata"]["name"] for p in pods
                    if _selects((pdb.get("spec") or {}).get("selector"), p["metadata"].get("labels") or {})]
        allowed = (pdb.get("status") or {}).get("disruptionsAllowed")
        if selected and allowed == 0:
            return (f"PodDisruptionBudget {i.namespace}/{pdb['metadata']['name']} allows no eviction now "
                    f"(disruptionsAllowed 0) of {', '.join(sorted(selected))}, which the op restarts")
    return None


async def _database_not_halted(i: Inputs) -> str | None:
    if (i.druid.get("spec") or {}).get("halted"):
        return (f"Druid {i.namespace}/{i.druid['metadata']['name']} is halted (spec.halted: true): it has no pods "
                "to change; set spec.halted to false first")
    return None


async def _timeout_readable(i: Inputs) -> str | None:
    try:
        parse_duration(i.ops["spec"].get("timeout") or "0")
    except ValueError:
        return f"spec.timeout {i.ops['spec']['timeout']!r} is not a Go duration such as 90s, 5m or 1h30m"
    return None


# In order: the first failure is the one reported. REQUEST_CHECKS run as soon as the op is next in its Druid's
# queue (a bad request fails at once, even while it waits for the Druid to be Ready); START_CHECKS once it may start,
# as they judge the Druid's state (a budget that allows no eviction while another op's last pod starts is no fault).
REQUEST_CHECKS = (
    Check("TimeoutReadable", _timeout_readable),
    Check("DatabaseNotHalted", _database_not_halted),
    Check("RequestValid", _request_valid),
    Check("IssuerReady", _issuer_ready),
    Check("KeystorePasswordUsable", _keystore_password_usable),
)
START_CHECKS = (
    Check("EvictionsAllowed", _evictions_allowed),
)


async def first_failure(checks: tuple[Check, ...], kube: Kube, ops: dict, druid: dict,
                        op: OpType) -> tuple[str, str] | None:
    """(check name, message) of the first of `checks` that fails, or None. They run at once (each reads, none
    writes: an op's start waits one round trip, not one a check), and are judged in order, as if one by one: the
    first failure is reported, and a check's error counts only if every check before it passed."""
    inputs = Inputs(kube, ops, druid, op)
    outcomes = await asyncio.gather(*(check.run(inputs) for check in checks), return_exceptions=True)
    for check, outcome in zip(checks, outcomes):
        if isinstance(outcome, BaseException):
            raise outcome
        if outcome is not None:
            return check.name, outcome
    return None

