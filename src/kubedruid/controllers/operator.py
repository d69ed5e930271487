"""Wires the controllers to the apiserver with kopf: kopf watches, the controllers' work queues converge.

Watch handlers only map an event to the keys it concerns (a pod to its PetSet, a Secret to its Druid, ...) and
enqueue them; reconciles run in the work queues (controllers/runtime.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

import kopf

from kubedruid.kube.client import Kube
from kubedruid.specs import dependencies
from kubedruid.specs.petset_pods import POD_NAME_LABEL

from . import admission, petset
from .leader import LeaderElection
from .serving import CERTIFICATE_EXPIRY, Probes
from .ops.manager import OpsManager
from .provisioner import Provisioner
from .runtime import WorkQueue

log = logging.getLogger("kubedruid.operator")

INSTANCE = "app.kubernetes.io/instance"
MANAGED_BY = "app.kubernetes.io/managed-by"


class Controllers:
    """The running controllers and the little they remember between events (which Druids exist where)."""

    def __init__(self, kube: Kube, petset_enabled: bool):
        self.kube = kube
        self.provisioner = Provisioner(kube)
        self.druids = WorkQueue("provisioner", lambda key: self.provisioner.reconcile(*key))
        self.ops_manager = OpsManager(kube, self.provisioner)
        self.ops = WorkQueue("ops-manager", lambda key: self.ops_manager.reconcile(*key))  # keyed by Druid
        self.petsets = WorkQueue("petset", lambda key: petset.reconcile(self.kube, *key)) if petset_enabled else None
        self.druid_versions: dict[str, dict[str, str]] = defaultdict(dict)  # namespace -> name -> spec.version
        self.deep_storage_secrets: dict[tuple[str, str], set[str]] = defaultdict(set)

    def queues(self) -> list[WorkQueue]:
        return [q for q in (self.druids, self.ops, self.petsets) if q is not None]

    def druid_changed(self, namespace: str, name: str) -> None:
        self.druids.add((namespace, name))
        self.ops.add((namespace, name))

    def druids_in(self, namespace: str | None) -> list[tuple[str, str]]:
        spaces = [namespace] if namespace else list(self.druid_versions)
        return [(ns, name) for ns in spaces for name in self.druid_versions.get(ns, {})]


def build_registry(webhooks: bool = True) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs):
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, logger, **_):
        settings.posting.enabled = False  # we record our own events, with KubeDB's reasons
        settings.watching.server_timeout = 600
        settings.watching.client_timeout = 660
        settings.persistence.finalizer = "kubedruid.dev/kopf"  # never used: we register no change handlers
        if memo.get("webhook_port"):
            settings.admission.server = admission.webhook_server(memo.webhook_addr, memo.webhook_port,
                                                                 memo.get("webhook_host"))
            settings.admission.managed = admission.WEBHOOK_CONFIGURATION
        kube = Kube.from_kubeconfig(memo.get("kubeconfig"))
        crd = await kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", petset.CRD_NAME)
        enabled = petset.crd_is_ours(crd)
        if not enabled:
            logger.warning("the PetSet CRD %s is not kubedruid's (label %s=%s missing): our PetSet controller "
                           "stays off, another PetSet controller must run", petset.CRD_NAME, petset.OWNER_LABEL,
                           petset.OWNER_VALUE)
        memo.controllers = Controllers(kube, enabled)
        for q in memo.controllers.queues():
            q.start()
        if memo.get("probes"):
            memo.probes.ready = True

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: kopf.Memo, **_):
        if memo.get("probes"):
            memo.probes.ready = False
        for q in memo.controllers.queues():
            await q.stop()
        await memo.controllers.kube.client.close()

    @kopf.on.event("kubedb.com", "v1alpha2", "druids", registry=registry)
    def druid_event(event, body, namespace, name, memo: kopf.Memo, **_):
        c: Controllers = memo.controllers
        spec = body.get("spec") or {}
        if event["type"] == "DELETED":
            c.druid_versions[namespace].pop(name, None)
        else:
            c.druid_versions[namespace][name] = spec.get("version", "")
        c.druid_changed(namespace, name)

    @kopf.on.event("catalog.kubedb.com", "v1alpha1", "druidversions", registry=registry)
    def version_event(name, memo: kopf.Memo, **_):
        c: Controllers = memo.controllers
        for ns, druids in c.druid_versions.items():
            for druid, version in druids.items():
                if version == name:
                    c.druids.add((ns, druid))

    @kopf.on.event("apps.k8s.appscode.com", "v1", "petsets", registry=registry)
    def petset_event(namespace, name, labels, memo: kopf.Memo, **_):
        c: Controllers = memo.controllers
        if c.petsets is not None:
            c.petsets.add((namespace, name))
        if labels.get(MANAGED_BY) == "kubedb.com" and labels.get(INSTANCE):
            c.druid_changed(namespace, labels[INSTANCE])

    @kopf.on.event("", "v1", "pods", labels={POD_NAME_LABEL: kopf.PRESENT}, registry=registry)
    def pod_event(namespace, body, labels, memo: kopf.Memo, **_):
        c: Controllers = memo.controllers
        for ref in body["metadata"].get("ownerReferences") or []:
            if ref.get("kind") == "PetSet" and c.petsets is not None:
                c.petsets.add((namespace, ref["name"]))
        if labels.get(MANAGED_BY) == "kubedb.com" and labels.get(INSTANCE):
            c.ops.add((namespace, labels[INSTANCE]))  # a restart waits for this pod

    @kopf.on.event("ops.kubedb.com", "v1alpha1", "druidopsrequests", registry=registry)
    def ops_event(event, namespace, spec, memo: kopf.Memo, **_):
        c: Controllers = memo.controllers
        db = (spec.get("databaseRef") or {}).get("name")
        if db:
            c.ops.add((namespace, db))
            if event["type"] == "DELETED":
                c.druids.add((namespace, db))  # a deleted op must not leave its Druid paused

    @kopf.on.event("apps", "v1", "statefulsets", labels={dependencies.DEPENDENCY_LABEL: kopf.PRESENT}, registry=registry)
    def dependency_event(namespace, labels, memo: kopf.Memo, **_):
        memo.controllers.druids.add((namespace, labels[dependencies.DEPENDENCY_LABEL]))

    @kopf.on.event("", "v1", "secrets", registry=registry)
    def secret_event(namespace, labels, memo: kopf.Memo, **_):
        c: Controllers = memo.controllers
        if labels.get(MANAGED_BY) == "kubedb.com" and labels.get(INSTANCE):
            c.druid_changed(namespace, labels[INSTANCE])
        else:  # maybe a Druid's deep-storage Secret or an externally managed store's credentials
            for key in c.druids_in(namespace):
                c.druids.add(key)

    @kopf.on.event("cert-manager.io", "v1", "certificates", labels={MANAGED_BY: "kubedb.com"}, registry=registry)
    def certificate_event(event, name, namespace, labels, status, memo: kopf.Memo, **_):
        if labels.get(INSTANCE):
            memo.controllers.druid_changed(namespace, labels[INSTANCE])
            CERTIFICATE_EXPIRY.observe(namespace, labels[INSTANCE], name, status.get("notAfter"),
                                       deleted=event["type"] == "DELETED")

    @kopf.on.event("cert-manager.io", "v1", "issuers", registry=registry)
    def issuer_event(namespace, memo: kopf.Memo, **_):
        for key in memo.controllers.druids_in(namespace):
            memo.controllers.druid_changed(*key)

    @kopf.on.event("cert-manager.io", "v1", "clusterissuers", registry=registry)
    def cluster_issuer_event(memo: kopf.Memo, **_):
        for key in memo.controllers.druids_in(None):
            memo.controllers.druid_changed(*key)

    if webhooks:
        admission.register(registry, lambda memo: memo.controllers.kube)
    return registry


async def run(kubeconfig: str | None = None, webhook_addr: str = "127.0.0.1", webhook_port: int | None = 9443,
              probe_addr: str = "127.0.0.1", probe_port: int | None = 9808, leader_elect: bool = False,
              lease_namespace: str = "default", identity: str | None = None, webhook_host: str | None = None,
              stop_flag: asyncio.Event | None = None, ready_flag: asyncio.Event | None = None) -> None:
    """Runs every controller until stopped (SIGTERM/SIGINT, `stop_flag`, or — with leader election — a lost
    Lease). Health, readiness and metrics are served on `probe_addr:probe_port`."""
    import os
    import socket

    stop = stop_flag or asyncio.Event()
    probes = Probes()
    runner = await probes.serve(probe_addr, probe_port) if probe_port else None
    election, keeper = None, None
    try:
        if leader_elect:
            identity = identity or f"{socket.gethostname()}_{os.getpid()}"
            election = LeaderElection(Kube.from_kubeconfig(kubeconfig), lease_namespace, "kubedruid-operator", identity)
            await election.acquire()
            lost = asyncio.Event()
            keeper = asyncio.create_task(election.keep(lost))
            asyncio.create_task(_set_when(lost, stop))
        memo = kopf.Memo(kubeconfig=kubeconfig, webhook_addr=webhook_addr, webhook_port=webhook_port,
                         webhook_host=webhook_host, probes=probes)
        await kopf.operator(registry=build_registry(webhooks=bool(webhook_port)), clusterwide=True, standalone=True,
                            memo=memo, stop_flag=stop, ready_flag=ready_flag)
    finally:
        if keeper:
            keeper.cancel()
        if election:
            await election.release()
            await election.kube.client.close()
        if runner:
            await runner.cleanup()


async def _set_when(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()
