"""Wires the controllers to the apiserver: informers (kube/cache.py) watch and hold what the reconciles read, the
controllers' work queues converge; kopf runs the admission webhook and the operator's lifecycle.

Watch handlers only map an event to the keys it concerns (a pod to its PetSet, a Secret to its Druid, ...) and
enqueue them; reconciles run in the work queues (controllers/runtime.py). Every watch is of our objects, by label
where the cluster holds others of the kind (Secrets, pods, StatefulSets, Certificates): Secrets a Druid references
but does not own are read by name when it is reconciled.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from pathlib import Path

import kopf

from kubedruid.kube.cache import EXISTS, Cache, Informer, Watched
from kubedruid.kube.client import Kube
from kubedruid.specs import dependencies, petset_pods
from kubedruid.specs.petset_pods import PETSET_API

from . import admission, health, petset
from .leader import LeaderElection
from .serving import CERTIFICATE_EXPIRY, Probes
from .ops import queue as ops_queue
from .ops.manager import OpsManager
from .ops.plan import CLIENT_SWITCH_GRACE_S
from .provisioner import Provisioner
from .runtime import WorkQueue

log = logging.getLogger("kubedruid.operator")

CACHE_SYNC_TIMEOUT_S = 60
INSTANCE = "app.kubernetes.io/instance"
MANAGED_BY = "app.kubernetes.io/managed-by"


# Druids whose ops reconcile at once. A pass spends most of its time waiting on the apiserver (the steps read it
# fresh), so with 4 workers 50 concurrent ops queued behind each other: their overhead (tests/bench/bench_scale.py,
# 60 Druids, 50 add ops) was 1.68 with 4 workers, 1.54 with 8, 1.44 with 16 and 1.41 with 32. At 1,000 Druids an op's
# first pass is 9 round trips (1.3-3.6 s): with 16 workers the last of 50 ops created at once began 7 s after the
# first. Workers are coroutines, so there are more of them than the ops the bench runs at once.
OPS_WORKERS = 64


class Controllers:
    """The running controllers and the little they remember between events (which Druids exist where)."""

    def __init__(self, kube: Kube, petset_enabled: bool, druid_health_check: bool = False,
                 client_switch_grace_s: float = CLIENT_SWITCH_GRACE_S):
        self.kube = kube
        self.provisioner = Provisioner(kube)
        self.druids = WorkQueue("provisioner", lambda key: self.provisioner.reconcile(*key))
        self.checks = None
        if druid_health_check:
            self.provisioner.health = health.HealthChecks(kube, self.provisioner.ca_bundle,
                                                          lambda ns, name: self.druids.add((ns, name)))
            self.checks = WorkQueue("health", lambda key: self.provisioner.health.reconcile(*key),
                                    workers=health.CHECK_WORKERS)
        self.ops_manager = OpsManager(kube, self.provisioner, client_switch_grace_s)
        self.ops = WorkQueue("ops-manager", lambda key: self.ops_manager.reconcile(*key),  # keyed by Druid
                             workers=OPS_WORKERS)
        self.petsets = WorkQueue("petset", lambda key: petset.reconcile(self.kube, *key)) if petset_enabled else None
        self.druid_versions: dict[str, dict[str, str]] = defaultdict(dict)  # namespace -> name -> spec.version
        self.deep_storage_secrets: dict[tuple[str, str], set[str]] = defaultdict(set)

    def queues(self) -> list[WorkQueue]:
        return [q for q in (self.druids, self.ops, self.petsets, self.checks) if q is not None]

    def druid_changed(self, namespace: str, name: str, ops: bool = True, kind: str | None = None) -> None:
        """`kind`: of the object whose event this is, when not the Druid itself (its op may not be waiting for it)."""
        self.druids.add((namespace, name))
        if ops and (kind is None or self.ops_manager.wakes(namespace, name, kind)):
            self.ops.add((namespace, name))
        if self.checks is not None:
            self.checks.add((namespace, name))

    def druids_in(self, namespace: str | None) -> list[tuple[str, str]]:
        spaces = [namespace] if namespace else list(self.druid_versions)
        return [(ns, name) for ns in spaces for name in self.druid_versions.get(ns, {})]

    # -- what each watched kind's events enqueue ----------------------------------------------------------------
    def on_druid(self, type_: str, obj: dict) -> None:
        namespace, name = _where(obj)
        if type_ == "DELETED":
            self.druid_versions[namespace].pop(name, None)
        else:
            self.druid_versions[namespace][name] = (obj.get("spec") or {}).get("version", "")
        self.druid_changed(namespace, name)

    def on_druid_version(self, _type: str, obj: dict) -> None:
        for ns, druids in self.druid_versions.items():
            for druid, version in druids.items():
                if version == obj["metadata"]["name"]:
                    self.druids.add((ns, druid))

    def on_petset(self, _type: str, obj: dict) -> None:
        namespace, name = _where(obj)
        if self.petsets is not None:
            self.petsets.add((namespace, name))
        if (druid := _druid_of(obj)) is not None:
            # An op waits for pods and for the Druid's status, never for a PetSet: during a roll the PetSet
            # controller's status writes would wake it several times a pod for nothing.
            self.druid_changed(namespace, druid, ops=False)

    def on_pod(self, type_: str, obj: dict) -> None:
        namespace, _ = _where(obj)
        for ref in obj["metadata"].get("ownerReferences") or []:
            if ref.get("kind") == "PetSet" and self.petsets is not None:
                self.petsets.add((namespace, ref["name"]))
        # A restart waits for a pod to be back in service: a pod's other changes (created, scheduled, started,
        # marked for eviction, going, gone) would wake a running op four times a restart for nothing.
        if (druid := _druid_of(obj)) is not None and type_ != "DELETED" and petset_pods.in_service(obj) and \
                self.ops_manager.wakes(namespace, druid, "Pod"):
            self.ops.add((namespace, druid))

    def on_ops_request(self, type_: str, obj: dict) -> None:
        namespace, _ = _where(obj)
        db = ((obj.get("spec") or {}).get("databaseRef") or {}).get("name")
        if db:
            # The ops-manager's own status writes (observedGeneration = generation) need no pass of their own: the
            # pass that wrote goes on, or waits for what it named. A new, deleted or edited request does.
            status, meta = obj.get("status") or {}, obj["metadata"]
            if type_ != "MODIFIED" or meta.get("deletionTimestamp") or \
                    status.get("observedGeneration") != meta.get("generation"):
                self.ops.add((namespace, db))
            if type_ == "DELETED" or status.get("phase") in ops_queue.FINISHED:
                self.druids.add((namespace, db))  # a deleted or finished op must not leave its Druid paused

    def on_dependency(self, _type: str, obj: dict) -> None:
        self.druids.add((obj["metadata"]["namespace"], obj["metadata"]["labels"][dependencies.DEPENDENCY_LABEL]))

    def on_owned(self, _type: str, obj: dict) -> None:
        """A Secret or Service of ours changed (a deleted one is made again)."""
        if (druid := _druid_of(obj)) is not None:
            self.druid_changed(obj["metadata"]["namespace"], druid, kind=obj.get("kind"))

    def on_endpoint_slice(self, _type: str, obj: dict) -> None:
        """A Service of ours has other endpoints: only a running op waits for that (a restarted pod in service)."""
        if (druid := _druid_of(obj)) is not None and \
                self.ops_manager.wakes(obj["metadata"]["namespace"], druid, "EndpointSlice"):
            self.ops.add((obj["metadata"]["namespace"], druid))

    def on_certificate(self, type_: str, obj: dict) -> None:
        if (druid := _druid_of(obj)) is not None:
            namespace, name = _where(obj)
            self.druid_changed(namespace, druid, kind="Certificate")
            CERTIFICATE_EXPIRY.observe(namespace, druid, name, (obj.get("status") or {}).get("notAfter"),
                                       deleted=type_ == "DELETED")

    def on_issuer(self, _type: str, obj: dict) -> None:
        for key in self.druids_in(obj["metadata"].get("namespace")):  # a ClusterIssuer: every namespace
            self.druid_changed(*key)

    def informers(self) -> Cache:
        """What the controllers watch, each with the handler its events go to."""
        ours = {MANAGED_BY: "kubedb.com", INSTANCE: EXISTS}
        dependency = {dependencies.DEPENDENCY_LABEL: EXISTS}
        watched = [
            (Watched("kubedb.com/v1alpha2", "Druid", "druids"), self.on_druid),
            (Watched("catalog.kubedb.com/v1alpha1", "DruidVersion", "druidversions", namespaced=False),
             self.on_druid_version),
            (Watched(PETSET_API, "PetSet", "petsets"), self.on_petset),
            (Watched("v1", "Pod", "pods", labels=petset.WATCHED_POD_LABELS), self.on_pod),
            (Watched("ops.kubedb.com/v1alpha1", "DruidOpsRequest", "druidopsrequests"), self.on_ops_request),
            (Watched("apps/v1", "StatefulSet", "statefulsets", labels=dependency), self.on_dependency),
            (Watched("v1", "Secret", "secrets", labels=ours), self.on_owned),
            (Watched("v1", "Service", "services", labels=ours), self.on_owned),
            (Watched("v1", "Service", "services", labels=dependency), self.on_dependency),
            # The EndpointSlice controller copies a Service's labels to its slices.
            (Watched("discovery.k8s.io/v1", "EndpointSlice", "endpointslices", labels=ours), self.on_endpoint_slice),
            (Watched("cert-manager.io/v1", "Certificate", "certificates", labels=ours), self.on_certificate),
            (Watched("cert-manager.io/v1", "Issuer", "issuers"), self.on_issuer),
            (Watched("cert-manager.io/v1", "ClusterIssuer", "clusterissuers", namespaced=False), self.on_issuer),
        ]
        cache = Cache()
        for w, handler in watched:
            cache.add(Informer(self.kube.client, w, handler))
        return cache


def _where(obj: dict) -> tuple[str, str]:
    return obj["metadata"].get("namespace") or "", obj["metadata"]["name"]


def _druid_of(obj: dict) -> str | None:
    """The Druid an object of ours belongs to (KubeDB's labels)."""
    labels = obj["metadata"].get("labels") or {}
    return labels[INSTANCE] if labels.get(MANAGED_BY) == "kubedb.com" and labels.get(INSTANCE) else None


def _release_kopfs_stop_waiter(memo: kopf.Memo) -> None:
    """Sets the stop flag run() gave kopf. Stopped by SIGTERM or SIGINT, kopf leaves its task that waits on that flag
    pending, then waits 5 s for it before it cancels it: every stop of the operator took 5 s longer."""
    if memo.get("stop") is not None:
        memo.stop.set()


def build_registry(webhooks: bool = True) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs):
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, logger, **_):
        try:
            await _start(settings, memo, logger)
        except asyncio.CancelledError:  # a signal during start: see cleanup
            _release_kopfs_stop_waiter(memo)
            raise

    async def _start(settings: kopf.OperatorSettings, memo: kopf.Memo, logger) -> None:
        settings.posting.enabled = False  # we record our own events, with KubeDB's reasons
        settings.watching.server_timeout = 600
        settings.watching.client_timeout = 660
        settings.persistence.finalizer = "kubedruid.dev/kopf"  # never used: we register no change handlers
        if memo.get("webhook_port"):
            settings.admission.server = admission.webhook_server(
                memo.webhook_addr, memo.webhook_port, memo.get("webhook_host"), memo.get("webhook_cert_dir"),
                memo.get("webhook_service"))
            settings.admission.managed = admission.WEBHOOK_CONFIGURATION
        kube = Kube.from_kubeconfig(memo.get("kubeconfig"))
        crd = await kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", petset.CRD_NAME)
        enabled = petset.crd_is_ours(crd)
        if not enabled:
            logger.warning("the PetSet CRD %s is not kubedruid's (label %s=%s missing): our PetSet controller "
                           "stays off, another PetSet controller must run", petset.CRD_NAME, petset.OWNER_LABEL,
                           petset.OWNER_VALUE)
        memo.controllers = Controllers(kube, enabled, memo.get("druid_health_check", False),
                                       memo.get("client_switch_grace_s", CLIENT_SWITCH_GRACE_S))
        kube.cache = memo.controllers.informers()
        kube.cache.start()
        try:  # reconciles start from a full view; an informer that cannot list leaves its reads to the apiserver
            await asyncio.wait_for(kube.cache.wait_synced(), CACHE_SYNC_TIMEOUT_S)
        except TimeoutError:
            logger.warning("informers not synced after %d s (%s): their reads go to the apiserver until they are",
                           CACHE_SYNC_TIMEOUT_S, ", ".join(kube.cache.unsynced()))
        for q in memo.controllers.queues():
            q.start()
        if memo.get("probes"):
            memo.probes.ready = True

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: kopf.Memo, **_):
        _release_kopfs_stop_waiter(memo)
        if memo.get("probes"):
            memo.probes.ready = False
        for q in memo.controllers.queues():
            await q.stop()
        if memo.controllers.kube.cache is not None:
            await memo.controllers.kube.cache.stop()
        await memo.controllers.kube.client.close()

    if webhooks:
        admission.register(registry, lambda memo: memo.controllers.kube)
    return registry


async def run(kubeconfig: str | None = None, webhook_addr: str = "127.0.0.1", webhook_port: int | None = 9443,
              probe_addr: str = "127.0.0.1", probe_port: int | None = 9808, leader_elect: bool = False,
              lease_namespace: str = "default", identity: str | None = None, webhook_host: str | None = None,
              stop_flag: asyncio.Event | None = None, ready_flag: asyncio.Event | None = None,
              druid_health_check: bool | None = None, webhook_cert_dir: Path | None = None,
              webhook_service: admission.WebhookService | None = None,
              client_switch_grace_s: float = CLIENT_SWITCH_GRACE_S) -> None:
    """Runs every controller until stopped (SIGTERM/SIGINT, `stop_flag`, or — with leader election — a lost
    Lease). Health, readiness and metrics are served on `probe_addr:probe_port`. `druid_health_check`: whether
    the operator checks each Druid through its Services (controllers/health.py); by default only in a cluster
    (no kubeconfig), where Service addresses are reachable. `webhook_cert_dir` and `webhook_service`: see
    admission.webhook_server. `client_switch_grace_s`: how long clients get to follow a Druid's Services to their
    new ports before an op's next roll closes the old ones (the ClientsFollowed step)."""
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
                         webhook_host=webhook_host, webhook_cert_dir=webhook_cert_dir,
                         webhook_service=webhook_service, probes=probes, stop=stop,
                         client_switch_grace_s=client_switch_grace_s,
                         druid_health_check=kubeconfig is None if druid_health_check is None else druid_health_check)
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
