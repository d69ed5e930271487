"""The real node's volume provisioner: a PersistentVolumeClaim of the default StorageClass gets a `local`
PersistentVolume whose directory lives in the node's state directory.

Why not kube-controller-manager's hostpath provisioner: the kubelet applies a pod's `fsGroup` to `local` volumes but
never to `hostPath` ones, so Druid (uid 1000, non-root, no capabilities) could not write to its segment cache or task
directories. Run as a process of the node (`python -m kubedruid.devcluster.volumes <kubeconfig> <dir> <health port>`);
watch-driven; a claim's directory is removed with its volume when the claim is deleted (reclaim policy Delete).
"""

from __future__ import annotations

import logging
import shutil
import sys
import threading
import time
from pathlib import Path

from lightkube import Client, KubeConfig
from lightkube.core.exceptions import ApiError
from lightkube.models.core_v1 import (
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

from .node_layout import NODE_NAME, STORAGE_CLASS, VOLUME_PROVISIONER

log = logging.getLogger("kubedruid.volumes")
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"


def volume_name(claim_uid: str) -> str:
    return f"pvc-{claim_uid}"


def desired_volume(claim: PersistentVolumeClaim, directory: Path, node: str) -> PersistentVolume:
    """A `local` volume bound to `claim` on `node`, of the claim's size and access modes. Pure."""
    return PersistentVolume(
        metadata=ObjectMeta(name=volume_name(claim.metadata.uid), annotations={PROVISIONED_BY: VOLUME_PROVISIONER}),
        spec=PersistentVolumeSpec(
            capacity={"storage": claim.spec.resources.requests["storage"]},
            accessModes=claim.spec.accessModes, persistentVolumeReclaimPolicy="Delete",
            storageClassName=claim.spec.storageClassName, volumeMode=claim.spec.volumeMode or "Filesystem",
            local=LocalVolumeSource(path=str(directory)),
            claimRef=ObjectReference(kind="PersistentVolumeClaim", namespace=claim.metadata.namespace,
                                     name=claim.metadata.name, uid=claim.metadata.uid),
            nodeAffinity=VolumeNodeAffinity(required=NodeSelector(nodeSelectorTerms=[NodeSelectorTerm(
                matchExpressions=[NodeSelectorRequirement(key="kubernetes.io/hostname", operator="In",
                                                          values=[node])])]))))


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

    def _watch(self, kind, handle) -> None:
        while True:  # a watch ends now and then (apiserver restarts, timeouts): start again from a fresh list
            try:
                scope = {"namespace": "*"} if kind is PersistentVolumeClaim else {}  # every namespace's claims
                for _, obj in self.client.watch(kind, **scope):
                    handle(obj)
            except Exception:  # noqa: BLE001 - logged; the next watch resumes the work (level-triggered)
                log.exception("watching %s failed; again in 1 s", kind.__name__)
                time.sleep(1)

    def run(self, health_port: int) -> None:
        _serve_health(health_port)
        threads = [threading.Thread(target=self._watch, args=(PersistentVolumeClaim, self.provision), daemon=True),
                   threading.Thread(target=self._watch, args=(PersistentVolume, self.reclaim), daemon=True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def _serve_health(port: int) -> None:
    """`/healthz` on loopback, for `dev up` and `dev status`."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Health(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *args):  # no access log
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def main(argv: list[str]) -> None:
    kubeconfig, root, port = argv[0], Path(argv[1]), int(argv[2])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    root.mkdir(parents=True, exist_ok=True)
    Provisioner(Client(KubeConfig.from_file(kubeconfig), field_manager="kubedruid-volumes"), root).run(port)


if __name__ == "__main__":
    main(sys.argv[1:])
