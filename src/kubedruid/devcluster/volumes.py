"""The real node's volume provisioner: a PersistentVolumeClaim of the default StorageClass gets a `local`
PersistentVolume whose directory lives in the node's state directory.

Why not kube-controller-manager's hostpath provisioner: the kubelet applies a pod's `fsGroup` to `local` volumes but
never to `hostPath` ones, so Druid (uid 1000, non-root, no capabilities) could not write to its segment cache or task
directories. Run as a process of the node (`python -m kubedruid.devcluster.volumes <kubeconfig> <dir> <health port>`);
watch-driven; a claim's directory is removed with its volume when the claim is deleted (reclaim policy Delete).

A kwok plane's claim binder (`python -m kubedruid.devcluster.volumes --kwok <kubeconfig>
--health-address=<ip:port>`) does what kwok's `pvc-provision` and `pv-bind` stages did, many claims at once: kwok
plays stages of kinds other than pods and nodes one at a time (`PlayStageParallelism: 1` in v0.8.0), four requests
a claim, about 1.3 claims a second under load, and 1,000 Druids need 2,000 claims (ZooKeeper and metadata storage).
Nothing runs on a kwok volume: its `hostPath` is never made. kwok's `pvc-delete` and `pv-delete` stages still
release and remove them.
"""

from __future__ import annotations

import logging
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lightkube import Client, KubeConfig
from lightkube.core.exceptions import ApiError
from lightkube.models.core_v1 import (
    HostPathVolumeSource,
    LocalVolumeSource,
    NodeSelector,
    NodeSelectorRequirement,
    NodeSelectorTerm,
    ObjectReference,
    PersistentVolumeSpec,
    VolumeNodeAffinity,
)
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import PersistentVolume, PersistentVolumeClaim
from lightkube.types import PatchType

from .node_layout import NODE_NAME, STORAGE_CLASS, VOLUME_PROVISIONER

log = logging.getLogger("kubedruid.volumes")
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
# kwok's default StorageClass (kwok_stages.STORAGE_CLASS_FILE) and the provisioner it names.
KWOK_STORAGE_CLASS = "kwok-volume"
KWOK_PROVISIONER = "kwok.x-k8s.io/volume"
KWOK_BIND_WORKERS = 16  # claims bound at once; the apiserver, not this, sets the pace
KWOK_BIND_ATTEMPTS = 5


def volume_name(claim_uid: str) -> str:
    return f"pvc-{claim_uid}"


def pre_bound_volume(claim: PersistentVolumeClaim, provisioned_by: str, **source) -> PersistentVolume:
    """A volume of the claim's size, access modes and class, pre-bound to it and removed with it; `source`: where its
    data lives (and on which node). Pure."""
    return PersistentVolume(
        metadata=ObjectMeta(name=volume_name(claim.metadata.uid), annotations={PROVISIONED_BY: provisioned_by}),
        spec=PersistentVolumeSpec(
            capacity={"storage": claim.spec.resources.requests["storage"]},
            accessModes=claim.spec.accessModes, persistentVolumeReclaimPolicy="Delete",
            storageClassName=claim.spec.storageClassName, volumeMode=claim.spec.volumeMode or "Filesystem",
            claimRef=ObjectReference(apiVersion="v1", kind="PersistentVolumeClaim",
                                     namespace=claim.metadata.namespace, name=claim.metadata.name,
                                     uid=claim.metadata.uid),
            **source))


def desired_volume(claim: PersistentVolumeClaim, directory: Path, node: str) -> PersistentVolume:
    """A `local` volume bound to `claim` on `node`, of the claim's size and access modes. Pure."""
    return pre_bound_volume(
        claim, VOLUME_PROVISIONER, local=LocalVolumeSource(path=str(directory)),
        nodeAffinity=VolumeNodeAffinity(required=NodeSelector(nodeSelectorTerms=[NodeSelectorTerm(
            matchExpressions=[NodeSelectorRequirement(key="kubernetes.io/hostname", operator="In",
                                                      values=[node])])])))


def ours(claim: PersistentVolumeClaim) -> bool:
    return (claim.spec.storageClassName in (None, STORAGE_CLASS["metadata"]["name"])
            and not claim.spec.volumeName and claim.metadata.deletionTimestamp is None)


class Provisioner:
    def __init__(self, client: Client, root: Path, node: str = NODE_NAME):
        self.client, self.root, self.node = client, root, node

    def provision(self, claim: PersistentVolumeClaim) -> None:
        if not ours(claim):
            return
        directory = self.root / claim.metadata.uid
        directory.mkdir(parents=True, exist_ok=True)  # the kubelet gives it to the pod's fsGroup when it mounts it
        try:
            self.client.create(desired_volume(claim, directory, self.node))
            log.info("provisioned %s for %s/%s", volume_name(claim.metadata.uid), claim.metadata.namespace,
                     claim.metadata.name)
        except ApiError as e:
            if e.status.code != 409:  # already there: an earlier pass made it
                raise

    def reclaim(self, volume: PersistentVolume) -> None:
        annotations = volume.metadata.annotations or {}
        if annotations.get(PROVISIONED_BY) != VOLUME_PROVISIONER or volume.status is None:
            return
        if volume.status.phase in ("Released", "Failed") and volume.spec.persistentVolumeReclaimPolicy == "Delete":
            path = Path(volume.spec.local.path)
            if path.parent == self.root:  # never outside our directory, whatever a volume says
                shutil.rmtree(path, ignore_errors=True)
            try:
                self.client.delete(PersistentVolume, volume.metadata.name)
                log.info("deleted %s and its directory", volume.metadata.name)
            except ApiError as e:
                if e.status.code != 404:
                    raise

    def run(self, health_port: int) -> None:
        _serve_health(health_port)
        threads = [threading.Thread(target=watch_forever, args=(self.client, PersistentVolumeClaim, self.provision),
                                    daemon=True),
                   threading.Thread(target=watch_forever, args=(self.client, PersistentVolume, self.reclaim),
                                    daemon=True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def kwok_volume(claim: PersistentVolumeClaim) -> PersistentVolume:
    """The volume kwok's `pvc-provision` stage made for `claim`, pre-bound to it. Pure."""
    return pre_bound_volume(claim, KWOK_PROVISIONER, hostPath=HostPathVolumeSource(
        path=f"/tmp/kwok-local-path-provisioner/{volume_name(claim.metadata.uid)}", type="DirectoryOrCreate"))


def bound_claim(claim: PersistentVolumeClaim) -> tuple[dict, dict]:
    """The merge patches that bind `claim` to its kwok volume, as kube-controller-manager's binder would: (metadata
    and spec, status). Pure."""
    name = volume_name(claim.metadata.uid)
    spec = {"metadata": {"annotations": {
        "pv.kubernetes.io/bind-completed": "yes", "pv.kubernetes.io/bound-by-controller": "yes",
        "volume.beta.kubernetes.io/storage-provisioner": KWOK_PROVISIONER,
        "volume.kubernetes.io/storage-provisioner": KWOK_PROVISIONER}},
        "spec": {"volumeName": name}}
    status = {"status": {"phase": "Bound", "accessModes": claim.spec.accessModes,
                         "capacity": {"storage": claim.spec.resources.requests["storage"]}}}
    return spec, status


def kwok_unbound(claim: PersistentVolumeClaim) -> bool:
    return (claim.spec.storageClassName == KWOK_STORAGE_CLASS and not claim.spec.volumeName
            and claim.metadata.deletionTimestamp is None)


class KwokBinder:
    """Binds a kwok plane's claims, `KWOK_BIND_WORKERS` at once. Each step is idempotent: a claim whose binding was
    interrupted is bound again from the next event of it (or the next watch's list)."""

    def __init__(self, client: Client, workers: int = KWOK_BIND_WORKERS):
        self.client = client
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="bind")
        self.in_flight: set[str] = set()
        self.lock = threading.Lock()

    def offer(self, claim: PersistentVolumeClaim) -> None:
        if not kwok_unbound(claim):
            return
        with self.lock:
            if claim.metadata.uid in self.in_flight:
                return
            self.in_flight.add(claim.metadata.uid)
        self.pool.submit(self._bind_with_retries, claim)

    def _bind_with_retries(self, claim: PersistentVolumeClaim) -> None:
        where = f"{claim.metadata.namespace}/{claim.metadata.name}"
        try:
            for attempt in range(1, KWOK_BIND_ATTEMPTS + 1):
                try:
                    self.bind(claim)
                    return
                except ApiError as e:
                    if e.status.code == 404:  # the claim went away meanwhile: nothing to bind
                        return
                    log.warning("binding %s failed (attempt %d): %s", where, attempt, e.status.message)
                except Exception:  # noqa: BLE001 - logged; retried, then left to the claim's next event
                    log.exception("binding %s failed (attempt %d)", where, attempt)
                time.sleep(attempt)
        finally:
            with self.lock:
                self.in_flight.discard(claim.metadata.uid)

    def bind(self, claim: PersistentVolumeClaim) -> None:
        volume = kwok_volume(claim)
        try:
            self.client.create(volume)
        except ApiError as e:
            if e.status.code != 409:  # already there: an earlier attempt made it
                raise
        spec, status = bound_claim(claim)
        ns, name = claim.metadata.namespace, claim.metadata.name
        self.client.patch(PersistentVolumeClaim, name, spec, namespace=ns, patch_type=PatchType.MERGE)
        self.client.patch(PersistentVolumeClaim.Status, name, status, namespace=ns, patch_type=PatchType.MERGE)
        self.client.patch(PersistentVolume.Status, volume.metadata.name, {"status": {"phase": "Bound"}},
                          patch_type=PatchType.MERGE)

    def run(self, health_port: int, health_host: str) -> None:
        _serve_health(health_port, health_host)
        watch_forever(self.client, PersistentVolumeClaim, self.offer)


def watch_forever(client: Client, kind, handle) -> None:
    while True:  # a watch ends now and then (apiserver restarts, timeouts): start again from a fresh list
        try:
            scope = {"namespace": "*"} if kind is PersistentVolumeClaim else {}  # every namespace's claims
            for _, obj in client.watch(kind, **scope):
                handle(obj)
        except Exception:  # noqa: BLE001 - logged; the next watch resumes the work (level-triggered)
            log.exception("watching %s failed; again in 1 s", kind.__name__)
            time.sleep(1)


def _serve_health(port: int, host: str = "127.0.0.1") -> None:
    """`/healthz` (on loopback), for `dev up` and `dev status`."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Health(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *args):  # no access log
            pass

    server = ThreadingHTTPServer((host, port), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # lightkube's HTTP client: not a line per request
    if argv[0] == "--kwok":
        kubeconfig, (host, port) = argv[1], argv[2].removeprefix("--health-address=").rsplit(":", 1)
        KwokBinder(Client(KubeConfig.from_file(kubeconfig), field_manager="kubedruid-kwok-volumes")).run(
            int(port), host)
        return
    kubeconfig, root, port = argv[0], Path(argv[1]), int(argv[2])
    root.mkdir(parents=True, exist_ok=True)
    Provisioner(Client(KubeConfig.from_file(kubeconfig), field_manager="kubedruid-volumes"), root).run(port)


if __name__ == "__main__":
    main(sys.argv[1:])
