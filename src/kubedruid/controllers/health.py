"""The operator's own health check of each Druid, as KubeDB's health checker and its `spec.healthChecker`: every
`periodSeconds` the operator asks Druid's `/status/health` through each query Service (routers, else brokers), on
every port of it, as a client reaches it; each answer within `timeoutSeconds`. After `failureThreshold` checks in a
row with a port not answering 200, AcceptingConnection turns False (phase NotReady) with what failed; the first
check that passes turns it back. Pod readiness alone cannot say this: the kubelet asks each pod from its own node,
while clients come through the Service, its DNS name, kube-proxy and the certificate the Service's name must match.

The check only reads (`disableWriteCheck` has nothing to turn off). It runs in a queue of its own, so a Druid that
hangs holds a check worker for `timeoutSeconds`, never a provisioning pass; the provisioner reads the verdict.

Service addresses must be reachable from where the operator runs: in a cluster they are. Outside one (a kubeconfig,
as on a laptop or a kwok plane, whose pods run nothing) they usually are not, and a failing check would be the
operator's blindness, not Druid's; there the check is off unless asked for (`kubedruid operator run
--druid-health-check`), and AcceptingConnection follows the query pods' readiness alone, as it always does too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from kubedruid.api import Druid, apply_defaults
from kubedruid.certs import bundle
from kubedruid.druid.nodes import HEALTH_PATH
from kubedruid.kube import conditions as cond
from kubedruid.kube import forwarding
from kubedruid.kube.client import Kube
from kubedruid.specs import cluster, names
from kubedruid.specs import status as st

log = logging.getLogger("kubedruid.health")

# Checks in flight at once: a hung Druid holds one for timeoutSeconds.
CHECK_WORKERS = 16


@dataclass(frozen=True)
class Tally:
    """What the checks of one Druid have found so far: failures in a row, and the last failure's detail."""

    failures: int = 0
    detail: str = ""
    checked_at: float = 0.0  # monotonic


def tally_after(tally: Tally, failed: list[str], now: float) -> Tally:
    """The tally once a check found `failed` (labels of the ports that did not answer; empty: all did)."""
    if not failed:
        return Tally(0, "", now)
    return Tally(tally.failures + 1, ", ".join(failed), now)


def failing(tally: Tally | None, threshold: int) -> bool:
    return tally is not None and tally.failures >= threshold


def recovered_tally(conditions: list[dict] | None, threshold: int) -> Tally | None:
    """The tally a restarted operator starts from: a Druid the last check found failing stays failing until a check
    passes, rather than flipping to Ready for `failureThreshold` periods."""
    c = cond.get_condition(conditions, st.ACCEPTING_CONNECTION) or {}
    if c.get("status") == "False" and c.get("reason") == st.NOT_ANSWERING:
        return Tally(threshold, c.get("message") or "", 0.0)
    return None


def not_answering_message(tally: Tally, period_s: int, timeout_s: int) -> str:
    return (f"{tally.failures} health checks in a row (every {period_s}s) found no answer 200 to {HEALTH_PATH} "
            f"within {timeout_s}s through {tally.detail}")


class HealthChecks:
    """Checks each Druid every healthChecker.periodSeconds and tells `on_change` when a verdict turns."""

    def __init__(self, kube: Kube, ca_bundle, on_change: Callable[[str, str], None]):
        self.kube, self.ca_bundle, self.on_change = kube, ca_bundle, on_change
        self.tallies: dict[tuple[str, str], Tally] = {}

    def verdict(self, db: Druid, conditions: list[dict] | None) -> str | None:
        """Why the Druid does not accept connections, by the operator's check; None when it does, or until the
        check has failed failureThreshold times in a row."""
        key = (db.metadata.namespace, db.metadata.name)
        hc = db.spec.healthChecker
        tally = self.tallies.get(key) or recovered_tally(conditions, hc.failureThreshold)
        if not failing(tally, hc.failureThreshold):
            return None
        return not_answering_message(tally, hc.periodSeconds, hc.timeoutSeconds)

    async def reconcile(self, namespace: str, name: str) -> float | None:
        key = (namespace, name)
        raw = await self.kube.get(names.DRUID_API, "Druid", name, namespace)
        if raw is None or raw["metadata"].get("deletionTimestamp") or (raw.get("spec") or {}).get("halted"):
            self.tallies.pop(key, None)
            return None
        db = apply_defaults(Druid.model_validate(raw))
        hc = db.spec.healthChecker
        conditions = (raw.get("status") or {}).get("conditions")
        if not cond.is_true(conditions, st.PROVISIONED):
            return float(hc.periodSeconds)  # nothing to hold a Druid to before it first served
        tally = self.tallies.get(key) or recovered_tally(conditions, hc.failureThreshold) or Tally()
        due = tally.checked_at + hc.periodSeconds - time.monotonic()
        if tally.checked_at and due > 0:
            return due  # an event brought the Druid here early
        failed = await self._check(db, hc.timeoutSeconds)
        after = tally_after(tally, failed, time.monotonic())
        self.tallies[key] = after
        was, now = failing(tally, hc.failureThreshold), failing(after, hc.failureThreshold)
        if failed:
            log.info("druid %s/%s: health check %d of %d failed: %s", namespace, name, after.failures,
                     hc.failureThreshold, after.detail)
        if was != now or (now and after.detail != tally.detail):
            self.on_change(namespace, name)
        return float(hc.periodSeconds)

    async def _check(self, db: Druid, timeout_s: int) -> list[str]:
        """`<service>:<port name>` of each query Service port that does not answer 200 to /status/health."""
        ns, name = db.metadata.namespace, db.metadata.name
        targets = []
        for node in cluster.query_nodes(db):
            service = names.primary_service(name, node)
            spec = ((await self.kube.get("v1", "Service", service, ns)) or {}).get("spec") or {}
            ports = forwarding.service_ports(service, ns, spec.get("clusterIP"), spec.get("ports") or [],
                                             node.port_name(True))
            if not ports:
                return [f"{service} (no Service address)"]
            targets += ports
        secret, _ = await self.ca_bundle(db)
        ca_pem = bundle.pem_of(secret) or None
        answered = await asyncio.gather(*(forwarding.answers(t, HEALTH_PATH, ca_pem, timeout=timeout_s,
                                                             handshake_suffices=False) for t in targets))
        return [t.label for t, ok in zip(targets, answered) if not ok]
