"""The local control plane is a real Kubernetes: version, nodes, scheduling, volumes, eviction and PDBs."""

from __future__ import annotations

import asyncio
import json

import pytest
from lightkube.core.exceptions import ApiError
from lightkube.models.core_v1 import (
    Container,
    PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource,
    PodSpec,
    Volume,
    VolumeMount,
    VolumeResourceRequirements,
)
from lightkube.models.meta_v1 import LabelSelector, ObjectMeta
from lightkube.models.policy_v1 import PodDisruptionBudgetSpec
from lightkube.resources.core_v1 import PersistentVolumeClaim, Pod
from lightkube.resources.policy_v1 import PodDisruptionBudget

from kubedruid.controllers.ops import steps
from kubedruid.kube.client import Kube

from .conftest import wait_for

pytestmark = pytest.mark.integration


def _pod_ready(kube, name, ns):
    pod = kube.get(Pod, name, namespace=ns)
    ready = any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))
    return pod if ready else None


def _pod(name: str, labels: dict | None = None, volumes=None, mounts=None) -> Pod:
    return Pod(
        metadata=ObjectMeta(name=name, labels=labels or {}),
        spec=PodSpec(containers=[Container(name="main", image="busybox", volumeMounts=mounts)], volumes=volumes),
    )


def test_server_version_and_kwok_nodes_ready(plane):
    version = json.loads(plane.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"].startswith("v1.36.")
    assert version["clientVersion"]["gitVersion"].startswith("v1.36.")

    nodes = json.loads(plane.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    kwok_nodes = [n for n in nodes if n["metadata"]["annotations"].get("kwok.x-k8s.io/node") == "fake"]
    assert len(kwok_nodes) >= 3
    for node in kwok_nodes:
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True", node["metadata"]["name"]


def test_pod_without_node_name_is_scheduled_and_becomes_ready(kube, namespace):
    kube.create(_pod("plain"), namespace=namespace)
    pod = wait_for(lambda: _pod_ready(kube, "plain", namespace), what="pod plain Ready")
    assert pod.spec.nodeName.startswith("kwok-node-")
    assert pod.status.phase == "Running"
    assert pod.status.podIP


def test_pod_with_pvc_is_scheduled_and_its_claim_bound(kube, namespace):
    kube.create(
        PersistentVolumeClaim(
            metadata=ObjectMeta(name="data"),
            spec=PersistentVolumeClaimSpec(accessModes=["ReadWriteOnce"],
                                           resources=VolumeResourceRequirements(requests={"storage": "1Gi"})),
        ),
        namespace=namespace,
    )
    kube.create(
        _pod("with-volume", volumes=[Volume(name="data", persistentVolumeClaim=PersistentVolumeClaimVolumeSource(claimName="data"))],
             mounts=[VolumeMount(name="data", mountPath="/data")]),
        namespace=namespace,
    )
    wait_for(lambda: _pod_ready(kube, "with-volume", namespace), what="pod with a PVC Ready")
    pvc = kube.get(PersistentVolumeClaim, "data", namespace=namespace)
    assert pvc.status.phase == "Bound"
    assert pvc.spec.storageClassName == "kwok-volume"  # the default StorageClass


def _evict(kube, name, ns):
    kube.create(Pod.Eviction(metadata=ObjectMeta(name=name, namespace=ns)), name=name, namespace=ns)


def test_eviction_respects_pod_disruption_budget(kube, namespace):
    kube.create(_pod("guarded", labels={"app": "guarded"}), namespace=namespace)
    wait_for(lambda: _pod_ready(kube, "guarded", namespace), what="pod guarded Ready")
    kube.create(
        PodDisruptionBudget(metadata=ObjectMeta(name="keep-one"),
                            spec=PodDisruptionBudgetSpec(minAvailable=1, selector=LabelSelector(matchLabels={"app": "guarded"}))),
        namespace=namespace,
    )
    wait_for(lambda: (s := kube.get(PodDisruptionBudget, "keep-one", namespace=namespace).status)
             and s.observedGeneration == 1 and s.currentHealthy == 1, what="PDB observed by the disruption controller")

    with pytest.raises(ApiError) as refused:
        _evict(kube, "guarded", namespace)
    assert refused.value.status.code == 429
    assert "disruption budget" in refused.value.status.message
    assert kube.get(Pod, "guarded", namespace=namespace).metadata.deletionTimestamp is None

    kube.delete(PodDisruptionBudget, "keep-one", namespace=namespace)
    _evict(kube, "guarded", namespace)

    def gone():
        try:
            kube.get(Pod, "guarded", namespace=namespace)
            return False
        except ApiError as e:
            return e.status.code == 404

    wait_for(gone, what="evicted pod deleted")


def test_an_ops_eviction_evicts_only_the_pod_whose_uid_the_op_recorded(plane, kube, namespace):
    """The roll reads the pod to evict next from the informers (decision 0031); its eviction names the UID the op
    recorded, so a pod that took the name since is left alone."""
    kube.create(_pod("named"), namespace=namespace)
    uid = wait_for(lambda: _pod_ready(kube, "named", namespace), what="pod named Ready").metadata.uid

    def evict(recorded: str) -> bool:
        async def call() -> bool:
            return await steps.evict(Kube.from_kubeconfig(str(plane.kubeconfig)), "named", namespace, recorded)
        return asyncio.run(call())

    # The pod recorded is gone (another UID holds the name): nothing to evict, and the pod there now stays.
    assert evict("00000000-0000-4000-8000-000000000000") is True
    assert kube.get(Pod, "named", namespace=namespace).metadata.deletionTimestamp is None

    assert evict(uid) is True

    def gone_or_going():
        try:
            return kube.get(Pod, "named", namespace=namespace).metadata.deletionTimestamp is not None
        except ApiError as e:
            return e.status.code == 404

    wait_for(gone_or_going, what="the recorded pod evicted")
