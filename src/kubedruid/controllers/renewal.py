"""Renewals reach the pods: when cert-manager re-issues a running Druid's server certificate (on its own schedule or
through `cmctl renew`), every pod must serve the new one long before the old one expires.

Level-triggered, from the provisioner's reconcile (also while an op other than a ReconfigureTLS holds the pause —
those check what pods serve themselves). The Druid's `ServingIssuedCertificate` condition remembers the serial every
pod was last seen serving; when the Secret holds another, each pod is touched (the kubelet refreshes its Secret
volume, the keystore sidecar copies, Druid reloads) and checked by a handshake. Pods that cannot reload, or still
serve the old serial after tls.RELOAD_BUDGET_S, are restarted by a Restart DruidOpsRequest the operator creates, so the
restart is queued, paced and recorded like any other; with `spec.autoOps.disabled` (KubeDB's switch for ops the
operator makes on its own) the condition and a Warning event say which pods need one instead. Pods that cannot be reached are reported, not restarted.

The same handshakes are the Druid's served-certificate inventory (`status.servedCertificates`, certs/inventory.py,
and the served-certificate metrics): taken at each renewal, after every op, once after the operator starts and every
inventory.INVENTORY_EVERY_S; a served certificate near its notAfter with no renewal under way is a Warning.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import logging
import re
import time
from dataclasses import dataclass

from cryptography import x509
from pydantic import ValidationError

from kubedruid.api import Druid, apply_defaults
from kubedruid.certs import bundle, inventory
from kubedruid.certs.served import HandshakeFailed, served_certificate
from kubedruid.druid import tls
from kubedruid.druid.nodes import BY_KEY
from kubedruid.kube import conditions as cond
from kubedruid.kube.client import Kube
from kubedruid.specs import cluster, names
from kubedruid.specs import status as st

from . import pause
from .ops.plan import restart_pods
from .serving import SERVED_CERTIFICATES

log = logging.getLogger("kubedruid.renewal")

SERVING = "ServingIssuedCertificate"
# A served certificate nears its notAfter and no renewal is under way (cert-manager is not renewing it).
EXPIRING = "ServedCertificateExpiring"
RENEWAL_OPS_LABEL = "tls.kubedruid.dev/renewal-of"
CHECK_AGAIN_S = 3.0
RESTART_NEEDED = "RestartNeeded"  # the SERVING reason when autoOps is disabled and pods must be restarted
UNVERIFIED_AGAIN_S = 60.0


RESTART, ASK_FOR_RESTART, UNVERIFIED, WAIT = "restart", "ask-for-restart", "unverified", "wait"


def next_move(cannot_reload: bool, stale: bool, unreachable: bool, waited_s: float, auto_ops: bool) -> str:
    """What a renewal does while some pod does not serve the issued serial: restart the pods that cannot reload or
    that still serve the old one after the reload budget (or, without autoOps, ask the user to); report pods it
    cannot reach as unverified; otherwise wait for the reloads."""
    if cannot_reload or (stale and waited_s > tls.RELOAD_BUDGET_S):
        return RESTART if auto_ops else ASK_FOR_RESTART
    if unreachable and not stale:
        return UNVERIFIED
    return WAIT


def _serial_of(message: str | None) -> str | None:
    m = re.search(r"serial ([0-9a-f]+)", message or "")
    return m.group(1) if m else None


def _since(c: dict) -> float:
    t0 = cond.parse_rfc3339(c["lastTransitionTime"])
    return (datetime.datetime.now(datetime.timezone.utc) - t0).total_seconds()


@dataclass
class Checked:
    conditions: list[dict]
    again: float | None  # when to look again
    served: list[dict] | None = None  # a new status.servedCertificates (certs/inventory.py); None: unchanged


class Renewals:
    def __init__(self, kube: Kube):
        self.kube = kube
        # (namespace, name) -> (serial, when) of the last check that could not reach a pod: any reconcile may ask
        # again, but handshakes that time out are not repeated more often than UNVERIFIED_AGAIN_S.
        self._unverified: dict[tuple[str, str], tuple[str, float]] = {}
        # (namespace, name) -> when every pod was last handshaken with (the inventory's age); forgotten while an op
        # holds the pause, so that the first check after it looks again.
        self._checked_at: dict[tuple[str, str], float] = {}

    async def check(self, raw: dict, conditions: list[dict]) -> Checked:
        """The Druid's conditions with SERVING brought up to date, what every pod serves, and when to look again."""
        try:
            db = apply_defaults(Druid.model_validate(raw))
        except ValidationError:
            return Checked(conditions, None)
        ns, name = db.metadata.namespace, db.metadata.name
        recorded = (raw.get("status") or {}).get("servedCertificates")
        if not cluster.tls_mode(db).tls_port or not cluster.server_cert_secret(db):
            SERVED_CERTIFICATES.forget(ns, name)
            self._checked_at.pop((ns, name), None)
            conditions = cond.remove_condition(cond.remove_condition(conditions, SERVING), EXPIRING)
            return Checked(conditions, None, [] if recorded else None)
        paused = cond.get_condition(conditions, st.PAUSED) is not None
        if paused:
            self._checked_at.pop((ns, name), None)
        if await self._tls_op_holds_the_pause(raw, conditions):
            return Checked(conditions, None)
        secret = await self.kube.get("v1", "Secret", cluster.server_cert_secret(db), ns, ours=names.selector_labels(name))
        leaf = ((secret or {}).get("data") or {}).get("tls.crt")
        if not leaf:
            return Checked(conditions, None)
        issued_serial = x509.load_pem_x509_certificate(base64.b64decode(leaf)).serial_number
        issued = f"{issued_serial:x}"
        generation = raw["metadata"].get("generation")
        current = cond.get_condition(conditions, SERVING)
        if current and current["status"] == "True" and _serial_of(current["message"]) == issued:
            due = self._inventory_due(ns, name, recorded)
            if paused or due > 0:  # every pod serves what the Secret holds: nothing to do until the next look
                SERVED_CERTIFICATES.observe(ns, name, recorded, mismatch=False)
                return Checked(conditions, None if paused else due)
        if current is None or _serial_of(current["message"]) != issued:
            if current is not None:  # not the first certificate: a renewal
                await self.kube.event(raw, "Normal", "CertificateRenewed", f"cert-manager issued serial {issued} "
                                      f"for Secret {cluster.server_cert_secret(db)}; the pods reload it")
            conditions = cond.set_condition(conditions, SERVING, "False", "Pending",
                                            f"waiting for every pod to serve serial {issued}", generation)
            current = cond.get_condition(conditions, SERVING)

        last = self._unverified.get((ns, name))
        if current["reason"] == "Unverified" and last and last[0] == issued and \
                time.monotonic() - last[1] < UNVERIFIED_AGAIN_S:
            return Checked(conditions, UNVERIFIED_AGAIN_S - (time.monotonic() - last[1]))
        bundle_secret = await self.kube.get("v1", "Secret", names.ca_bundle_secret(name), ns,
                                            ours=names.selector_labels(name))
        ca_pem = bundle.pem_of(bundle_secret)
        replicas = {k: n.replicas for k, n in db.spec.topology.nodes().items()}
        pods = restart_pods(name, replicas)
        results = await asyncio.gather(*(self._pod(ns, name, p, issued, ca_pem) for p in pods))
        self._checked_at[(ns, name)] = time.monotonic()
        served = [e for _, e in results]
        verdicts = [v for v, _ in results]
        SERVED_CERTIFICATES.observe(ns, name, served, mismatch=bool(inventory.serving_other(served, issued_serial)))
        stale = [p for p, r in zip(pods, verdicts) if r == "stale"]
        unreachable = [p for p, r in zip(pods, verdicts) if r == "unreachable"]
        if not stale and not unreachable:
            conditions = await self._expiring(raw, conditions, served, generation)
            if current["status"] != "True":
                await self.kube.event(raw, "Normal", "CertificateServed", f"every pod serves serial {issued}")
            return Checked(cond.set_condition(conditions, SERVING, "True", "Served",
                                              f"every pod serves serial {issued}", generation),
                           None if paused else inventory.INVENTORY_EVERY_S, served)
        if current["status"] == "True":  # a pod fell behind since the last look: it gets the reload budget again
            conditions = cond.set_condition(conditions, SERVING, "False", "Pending",
                                            f"waiting for every pod to serve serial {issued}", generation)
            current = cond.get_condition(conditions, SERVING)
        cannot_reload = [p for p, r in zip(pods, verdicts) if r == "cannot-reload"]
        move = next_move(bool(cannot_reload), bool(stale), bool(unreachable), _since(current),
                         auto_ops=not (db.spec.autoOps and db.spec.autoOps.disabled))
        if move in (RESTART, ASK_FOR_RESTART):
            behind = ", ".join(cannot_reload + stale)
            if move == ASK_FOR_RESTART:
                if current["reason"] != RESTART_NEEDED:
                    await self.kube.event(raw, "Warning", RESTART_NEEDED, f"pods still serve an older certificate "
                                          f"than serial {issued}: {behind}; spec.autoOps.disabled is true, so no "
                                          "Restart DruidOpsRequest is made for them: create one")
                return Checked(cond.set_condition(conditions, SERVING, "False", RESTART_NEEDED,
                                                  f"waiting for every pod to serve serial {issued}: {behind} need a "
                                                  "restart, which spec.autoOps.disabled leaves to you (a Restart "
                                                  "DruidOpsRequest)", generation),
                               CHECK_AGAIN_S * 10, served)
            await self._request_restart(raw, issued)
            return Checked(cond.set_condition(conditions, SERVING, "False", "RestartRequested",
                                              f"waiting for every pod to serve serial {issued}: restarting "
                                              f"{behind}", generation),
                           CHECK_AGAIN_S * 10, served)
        if move == UNVERIFIED:
            self._unverified[(ns, name)] = (issued, time.monotonic())
            return Checked(cond.set_condition(conditions, SERVING, "False", "Unverified",
                                              f"waiting for every pod to serve serial {issued}: no handshake with "
                                              f"{', '.join(unreachable)}", generation), UNVERIFIED_AGAIN_S, served)
        return Checked(conditions, CHECK_AGAIN_S, served)

    def _inventory_due(self, ns: str, name: str, recorded: list[dict] | None) -> float:
        """Seconds until every pod should be handshaken with again (0: now)."""
        at = self._checked_at.get((ns, name))
        if at is None or recorded is None:
            return 0.0
        every = inventory.UNREACHABLE_AGAIN_S if inventory.unreachable(recorded) else inventory.INVENTORY_EVERY_S
        return max(0.0, every - (time.monotonic() - at))

    async def _expiring(self, raw: dict, conditions: list[dict], served: list[dict], generation) -> list[dict]:
        """EXPIRING while a pod serves a certificate near its notAfter and no renewal is under way (every pod serves
        the issued one): cert-manager is not renewing it. A Warning event when that starts."""
        near = inventory.nearing_expiry(served, datetime.datetime.now(datetime.timezone.utc))
        if not near:
            return cond.remove_condition(conditions, EXPIRING)
        by_pod = {e["pod"]: e for e in served}
        message = (f"no renewal under way, and {len(near)} pod(s) serve a certificate that expires soon: " +
                   ", ".join(f"{p} (notAfter {by_pod[p]['notAfter']})" for p in near))
        if cond.get_condition(conditions, EXPIRING) is None:
            await self.kube.event(raw, "Warning", EXPIRING, message)
        return cond.set_condition(conditions, EXPIRING, "True", "NoRenewal", message, generation)

    async def _pod(self, ns: str, db: str, pod_name: str, issued: str, ca_pem: bytes) -> tuple[str, dict]:
        """(served | stale | cannot-reload | unreachable, the pod's status.servedCertificates entry)"""
        pod = await self.kube.get("v1", "Pod", pod_name, ns)
        if pod is None or not (pod.get("status") or {}).get("podIP"):
            return "unreachable", inventory.entry(pod_name, None, "the pod has no address")
        if not ca_pem:
            return "unreachable", inventory.entry(pod_name, None, "no CA bundle to verify it with")
        if not any(c["name"] == cluster.KEYSTORE_SYNC for c in pod["spec"].get("initContainers") or []):
            cannot = True
        else:
            cannot = False
            if (pod["metadata"].get("annotations") or {}).get(names.SERIAL_ANNOTATION) != issued:
                await self.kube.patch("v1", "Pod", pod_name, {"metadata": {"annotations": {
                    names.SERIAL_ANNOTATION: issued}}}, ns)
        node = BY_KEY[pod["metadata"]["labels"][names.ROLE_LABEL]]
        try:
            served = await served_certificate(pod["status"]["podIP"], node.tls_port,
                                              names.pod_fqdn(db, ns, pod_name), ca_pem)
        except HandshakeFailed as e:
            return "unreachable", inventory.entry(pod_name, None, f"no handshake with port {node.tls_port}: {e}")
        if f"{served.serial:x}" == issued:
            return "served", inventory.entry(pod_name, served)
        return ("cannot-reload" if cannot else "stale"), inventory.entry(pod_name, served)

    async def _tls_op_holds_the_pause(self, raw: dict, conditions: list[dict]) -> bool:
        op = await pause.unfinished_op_holding(self.kube, raw["metadata"]["namespace"],
                                               cond.get_condition(conditions, st.PAUSED))
        return op is not None and op["spec"].get("type") == "ReconfigureTLS"

    async def _request_restart(self, raw: dict, issued: str) -> None:
        """One Restart DruidOpsRequest per renewed serial: the ops-manager queues it behind any running op."""
        ns, name = raw["metadata"]["namespace"], raw["metadata"]["name"]
        op_name = f"{name}-renewal-{issued[:10]}"
        if await self.kube.fresh.get("ops.kubedb.com/v1alpha1", "DruidOpsRequest", op_name, ns) is not None:
            return
        await self.kube.create({
            "apiVersion": "ops.kubedb.com/v1alpha1", "kind": "DruidOpsRequest",
            "metadata": {"name": op_name, "namespace": ns,
                         "labels": {**names.offshoot_labels(name), RENEWAL_OPS_LABEL: issued[:63]}},
            "spec": {"type": "Restart", "databaseRef": {"name": name}, "apply": "Always"}})
        await self.kube.event(raw, "Normal", "RenewalRestart", f"pods did not reload serial {issued}: created "
                              f"DruidOpsRequest {ns}/{op_name} to restart them")
        log.info("druid %s/%s: renewal restart %s", ns, name, op_name)
