"""Renewals reach the pods: when cert-manager re-issues a running Druid's server certificate (on its own schedule or
through `cmctl renew`), every pod must serve the new one long before the old one expires.

Level-triggered, from the provisioner's reconcile (also while an op other than a ReconfigureTLS holds the pause —
those check what pods serve themselves). The Druid's `ServingIssuedCertificate` condition remembers the serial every
pod was last seen serving; when the Secret holds another, each pod is touched (the kubelet refreshes its Secret
volume, the keystore sidecar copies, Druid reloads) and checked by a handshake. Pods that cannot reload, or still
serve the old serial after tls.RELOAD_BUDGET_S, are restarted by a Restart DruidOpsRequest the operator creates, so the
restart is queued, paced and recorded like any other. Pods that cannot be reached are reported, not restarted.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import logging
import re
import time

from cryptography import x509
from pydantic import ValidationError

from kubedruid.api import Druid, apply_defaults
from kubedruid.certs import bundle
from kubedruid.certs.served import HandshakeFailed, served_certificate
from kubedruid.druid import tls
from kubedruid.druid.nodes import BY_KEY
from kubedruid.kube import conditions as cond
from kubedruid.kube.client import Kube
from kubedruid.specs import cluster, names
from kubedruid.specs import status as st

from .ops import queue as ops_queue
from .ops.plan import restart_pods

log = logging.getLogger("kubedruid.renewal")

SERVING = "ServingIssuedCertificate"
RENEWAL_OPS_LABEL = "tls.kubedruid.dev/renewal-of"
CHECK_AGAIN_S = 3.0
UNVERIFIED_AGAIN_S = 60.0


def _serial_of(message: str | None) -> str | None:
    m = re.search(r"serial ([0-9a-f]+)", message or "")
    return m.group(1) if m else None


def _since(c: dict) -> float:
    t0 = datetime.datetime.strptime(c["lastTransitionTime"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc)
    return (datetime.datetime.now(datetime.timezone.utc) - t0).total_seconds()


class Renewals:
    def __init__(self, kube: Kube):
        self.kube = kube
        # (namespace, name) -> (serial, when) of the last check that could not reach a pod: any reconcile may ask
        # again, but handshakes that time out are not repeated more often than UNVERIFIED_AGAIN_S.
        self._unverified: dict[tuple[str, str], tuple[str, float]] = {}

    async def check(self, raw: dict, conditions: list[dict]) -> tuple[list[dict], float | None]:
        """The Druid's conditions with SERVING brought up to date, and when to look again."""
        try:
            db = apply_defaults(Druid.model_validate(raw))
        except ValidationError:
            return conditions, None
        if not cluster.tls_mode(db).tls_port or not cluster.server_cert_secret(db):
            return cond.remove_condition(conditions, SERVING), None
        if await self._tls_op_holds_the_pause(raw, conditions):
            return conditions, None
        ns, name = db.metadata.namespace, db.metadata.name
        secret = await self.kube.get("v1", "Secret", cluster.server_cert_secret(db), ns)
        leaf = ((secret or {}).get("data") or {}).get("tls.crt")
        if not leaf:
            return conditions, None
        issued = f"{x509.load_pem_x509_certificate(base64.b64decode(leaf)).serial_number:x}"
        generation = raw["metadata"].get("generation")
        current = cond.get_condition(conditions, SERVING)
        if current and current["status"] == "True" and _serial_of(current["message"]) == issued:
            return conditions, None  # every pod serves what the Secret holds: nothing to do
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
            return conditions, UNVERIFIED_AGAIN_S - (time.monotonic() - last[1])
        bundle_secret = await self.kube.get("v1", "Secret", names.ca_bundle_secret(name), ns)
        ca_pem = base64.b64decode(((bundle_secret or {}).get("data") or {}).get(bundle.CA_KEY) or "")
        replicas = {k: n.replicas for k, n in db.spec.topology.nodes().items()}
        pods = restart_pods(name, replicas)
        results = await asyncio.gather(*(self._pod(ns, name, p, issued, ca_pem) for p in pods))
        stale = [p for p, r in zip(pods, results) if r == "stale"]
        unreachable = [p for p, r in zip(pods, results) if r == "unreachable"]
        if not stale and not unreachable:
            await self.kube.event(raw, "Normal", "CertificateServed", f"every pod serves serial {issued}")
            return cond.set_condition(conditions, SERVING, "True", "Served",
                                      f"every pod serves serial {issued}", generation), None
        cannot_reload = [p for p, r in zip(pods, results) if r == "cannot-reload"]
        if cannot_reload or (stale and _since(current) > tls.RELOAD_BUDGET_S):
            await self._request_restart(raw, issued)
            return cond.set_condition(conditions, SERVING, "False", "RestartRequested",
                                      f"waiting for every pod to serve serial {issued}: restarting "
                                      f"{', '.join(cannot_reload + stale)}", generation), CHECK_AGAIN_S * 10
        if unreachable and not stale:
            self._unverified[(ns, name)] = (issued, time.monotonic())
            return cond.set_condition(conditions, SERVING, "False", "Unverified",
                                      f"waiting for every pod to serve serial {issued}: no handshake with "
                                      f"{', '.join(unreachable)}", generation), UNVERIFIED_AGAIN_S
        return conditions, CHECK_AGAIN_S

    async def _pod(self, ns: str, db: str, pod_name: str, issued: str, ca_pem: bytes) -> str:
        """served | stale | cannot-reload | unreachable"""
        pod = await self.kube.get("v1", "Pod", pod_name, ns)
        if pod is None or not (pod.get("status") or {}).get("podIP") or not ca_pem:
            return "unreachable"
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
        except HandshakeFailed:
            return "unreachable"
        if f"{served.serial:x}" == issued:
            return "served"
        return "cannot-reload" if cannot else "stale"

    async def _tls_op_holds_the_pause(self, raw: dict, conditions: list[dict]) -> bool:
        paused = cond.get_condition(conditions, st.PAUSED)
        op_name = ops_queue.paused_by((paused or {}).get("message"))
        if op_name is None:
            return False
        op = await self.kube.get("ops.kubedb.com/v1alpha1", "DruidOpsRequest", op_name, raw["metadata"]["namespace"])
        return bool(op) and op["spec"].get("type") == "ReconfigureTLS" and \
            (op.get("status") or {}).get("phase") not in ops_queue.FINISHED

    async def _request_restart(self, raw: dict, issued: str) -> None:
        """One Restart DruidOpsRequest per renewed serial: the ops-manager queues it behind any running op."""
        ns, name = raw["metadata"]["namespace"], raw["metadata"]["name"]
        op_name = f"{name}-renewal-{issued[:10]}"
        if await self.kube.get("ops.kubedb.com/v1alpha1", "DruidOpsRequest", op_name, ns) is not None:
            return
        await self.kube.create({
            "apiVersion": "ops.kubedb.com/v1alpha1", "kind": "DruidOpsRequest",
            "metadata": {"name": op_name, "namespace": ns,
                         "labels": {**names.offshoot_labels(name), RENEWAL_OPS_LABEL: issued[:63]}},
            "spec": {"type": "Restart", "databaseRef": {"name": name}, "apply": "Always"}})
        await self.kube.event(raw, "Normal", "RenewalRestart", f"pods did not reload serial {issued}: created "
                              f"DruidOpsRequest {ns}/{op_name} to restart them")
        log.info("druid %s/%s: renewal restart %s", ns, name, op_name)
