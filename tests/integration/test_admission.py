"""Every admission rule, as a user meets it: `kubectl apply` of a bad object is refused with a message that names
the field and says what is allowed (CRD schema and CEL in the apiserver; the webhook for lookups)."""

from __future__ import annotations

import copy
import json

import pytest
from lightkube.resources.core_v1 import PersistentVolumeClaim

from .conftest import wait_for
from .helpers import deep_storage_secret, druid_manifest

pytestmark = pytest.mark.integration


def _druid(**changes):
    manifest = druid_manifest("bad", "NS")
    for path, value in changes.items():
        target = manifest
        keys = path.split("__")
        for k in keys[:-1]:
            target = target.setdefault(k, {})
        if value is DELETE:
            target.pop(keys[-1], None)
        else:
            target[keys[-1]] = value
    return manifest


DELETE = object()
VOLUMES = {"spec": {"volumes": [{"name": "main-config-volume", "emptyDir": {}}]}}


def _mount(path):
    return {"spec": {"containers": [{"name": "druid", "volumeMounts": [{"name": "x", "mountPath": path}]}]}}


DRUID_CASES = {
    "name-too-long": (_druid(metadata__name="d" * 46), "metadata.name must be a DNS label of at most 45 characters"),
    "version-empty": (_druid(spec__version=""), "spec.version"),
    "version-unknown (webhook)": (_druid(spec__version="99.0.0"),
                                  'version not supported: no DruidVersion "99.0.0" exists'),
    "deep-storage-missing": (_druid(spec__deepStorage=DELETE), "spec.deepStorage: Required value"),
    "deep-storage-type-missing": (_druid(spec__deepStorage={"configSecret": {"name": "x"}}),
                                  "spec.deepStorage.type: Required value"),
    "deep-storage-type-invalid": (_druid(spec__deepStorage={"type": "ftp"}),
                                  'spec.deepStorage.type: Unsupported value: "ftp"'),
    "topology-missing": (_druid(spec__topology=DELETE), "spec.topology: Required value"),
    "replicas-zero": (_druid(spec__topology={"brokers": {"replicas": 0}}),
                      "spec.topology.brokers.replicas: Invalid value: 0"),
    "metadata-storage-name-empty": (_druid(spec__metadataStorage={"name": ""}), "spec.metadataStorage.name"),
    "metadata-storage-namespace-empty": (_druid(spec__metadataStorage={"name": "m", "namespace": ""}),
                                         "spec.metadataStorage.namespace"),
    "zookeeper-name-empty": (_druid(spec__zookeeperRef={"name": ""}), "spec.zookeeperRef.name"),
    "reserved-volume": (_druid(spec__topology={"coordinators": {"podTemplate": VOLUMES}}),
                        "spec.topology.coordinators.podTemplate.spec.volumes: the volume names"),
    "reserved-mount-path": (_druid(spec__topology={"brokers": {"podTemplate": _mount("/opt/druid/conf")}}),
                            "must not mount volumes at"),
    "historicals-reserved-data-volume": (
        _druid(spec__topology={"historicals": {"podTemplate": {"spec": {"volumes": [{"name": "data"}]}}}}),
        "spec.topology.historicals.podTemplate.spec.volumes"),
    "middlemanagers-reserved-task-dir": (
        _druid(spec__topology={"middleManagers": {"podTemplate": _mount("/var/druid/task")}}), "/var/druid/task"),
    "storage-type-invalid": (_druid(spec__topology={"historicals": {"storageType": "Tape"}}),
                             'spec.topology.historicals.storageType: Unsupported value: "Tape"'),
    "storage-with-ephemeral": (
        _druid(spec__topology={"historicals": {"storageType": "Ephemeral", "storage": {"resources": {}}}}),
        "spec.topology.historicals.storage is not allowed when storageType is Ephemeral"),
    "ephemeral-storage-with-durable": (
        _druid(spec__topology={"middleManagers": {"storageType": "Durable", "ephemeralStorage": {}}}),
        "spec.topology.middleManagers.ephemeralStorage is allowed only when storageType is Ephemeral"),
    "deletion-policy-invalid": (_druid(spec__deletionPolicy="Sometimes"),
                                'spec.deletionPolicy: Unsupported value: "Sometimes"'),
    "monitor-agent-unknown": (_druid(spec__monitor={"agent": "datadog"}),
                              'spec.monitor.agent: Unsupported value: "datadog"'),
    "monitor-port-invalid": (_druid(spec__monitor={"agent": "prometheus.io/builtin",
                                                   "prometheus": {"exporter": {"port": 70000}}}),
                             "spec.monitor.prometheus.exporter.port"),
    "service-template-alias-unused": (_druid(spec__serviceTemplates=[{"alias": "standby", "spec": {"type": "NodePort"}}]),
                                      'spec.serviceTemplates[0].alias: Unsupported value: "standby"'),
    # Kubernetes' own validation of pod templates and storage (the webhook's dry run).
    "pod-template-quantity (webhook)": (
        _druid(spec__topology={"brokers": {"podTemplate": {"spec": {"containers": [
            {"name": "druid", "resources": {"limits": {"cpu": "lots"}}}]}}}}),
        "spec.topology.brokers.podTemplate: quantities must match the regular expression"),
    "pod-template-unknown-field (webhook)": (
        _druid(spec__topology={"historicals": {"podTemplate": {"spec": {"containers": [
            {"name": "druid", "resourcez": {"limits": {"cpu": "1"}}}]}}}}),
        'unknown field "spec.topology.historicals.podTemplate.spec.containers[0].resourcez"'),
    "pod-template-invalid-value (webhook)": (
        _druid(spec__topology={"coordinators": {"podTemplate": {"spec": {"containers": [
            {"name": "druid", "imagePullPolicy": "Sometimes"}]}}}}),
        'spec.topology.coordinators.podTemplate.spec.containers[0].imagePullPolicy: Unsupported value: "Sometimes"'),
    "storage-invalid (webhook)": (
        _druid(spec__topology={"historicals": {"storage": {"accessModes": ["ReadWriteSometimes"],
                                                           "resources": {"requests": {"storage": "1Gi"}}}}}),
        'spec.topology.historicals.storage.accessModes: Unsupported value: "ReadWriteSometimes"'),
    "storage-quantity (webhook)": (
        _druid(spec__topology={"middleManagers": {"storage": {"accessModes": ["ReadWriteOnce"],
                                                              "resources": {"requests": {"storage": "lots"}}}}}),
        "spec.topology.middleManagers.storage: quantities must match the regular expression"),
}


def _apply(plane, namespace, manifest):
    manifest = json.loads(json.dumps(manifest).replace('"NS"', json.dumps(namespace)))
    return plane.kubectl("apply", "-f", "-", stdin=json.dumps(manifest), check=False)


@pytest.mark.parametrize("case", DRUID_CASES, ids=list(DRUID_CASES))
def test_invalid_druid_is_refused_naming_the_field(plane, namespace, operator, case):
    manifest, expected = DRUID_CASES[case]
    result = _apply(plane, namespace, manifest)
    assert result.returncode != 0, f"{case} was accepted"
    assert expected in result.stderr, result.stderr


def test_kubedb_docs_druid_is_accepted_unchanged(plane, namespace, operator):
    result = _apply(plane, namespace, druid_manifest("druid-cluster", "NS"))
    assert result.returncode == 0, result.stderr


def test_a_pod_template_change_is_validated_by_kubernetes_and_other_updates_go_through(plane, namespace, operator):
    assert _apply(plane, namespace, druid_manifest("druid-cluster", "NS")).returncode == 0
    bad = {"spec": {"topology": {"routers": {"podTemplate": {"spec": {"containers": [
        {"name": "druid", "resources": {"requests": {"memory": "-1Gi"}}}]}}}}}}
    result = plane.kubectl("patch", "druid", "druid-cluster", "-n", namespace, "--type=merge", "-p",
                           json.dumps(bad), check=False)
    assert result.returncode != 0, "a negative memory request was accepted"
    assert "spec.topology.routers.podTemplate.spec.containers[0].resources.requests[memory]" in result.stderr, \
        result.stderr
    good = {"metadata": {"labels": {"team": "analytics"}}}
    result = plane.kubectl("patch", "druid", "druid-cluster", "-n", namespace, "--type=merge", "-p",
                           json.dumps(good), check=False)
    assert result.returncode == 0, result.stderr


def test_storage_is_still_validated_after_the_operator_deleted_a_druids_claims(plane, kube, namespace, operator):
    """Deleting a Druid (deletionPolicy Delete) has the operator delete its claims, which loads lightkube's typed
    PersistentVolumeClaim class; the webhook's dry run of storage then built the claim wrongly and refused every
    Druid with storage ("'NoneType' object has no attribute 'namespace'")."""
    storage = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    deep_storage_secret(kube, namespace)
    assert _apply(plane, namespace, druid_manifest("claims", "NS")).returncode == 0
    def live_claims():  # a deleted claim stays, terminating, until its pod is gone
        return [c for c in kube.list(PersistentVolumeClaim, namespace=namespace) if not c.metadata.deletionTimestamp]

    wait_for(live_claims, timeout=60, what="the Druid's claims")
    plane.kubectl("delete", "dr", "claims", "-n", namespace)
    wait_for(lambda: not live_claims(), timeout=60, what="the operator to delete the claims")
    good = druid_manifest("valid-storage", "NS", topology={"routers": {"replicas": 1},
                                                             "historicals": {"storage": storage}})
    result = _apply(plane, namespace, good)
    assert result.returncode == 0, result.stderr
    bad = druid_manifest("invalid-storage", "NS", topology={"historicals": {"storage": {**storage, "accessModes": [
        "ReadWriteSometimes"]}}})
    result = _apply(plane, namespace, bad)
    assert 'spec.topology.historicals.storage.accessModes: Unsupported value: "ReadWriteSometimes"' in result.stderr, \
        result.stderr


def _ops(**spec):
    return {"apiVersion": "ops.kubedb.com/v1alpha1", "kind": "DruidOpsRequest",
            "metadata": {"name": "drops", "namespace": "NS"},
            "spec": {"type": "ReconfigureTLS", "databaseRef": {"name": "druid-cluster"}, **spec}}


ISSUER = {"apiGroup": "cert-manager.io", "kind": "Issuer", "name": "druid-ca-issuer"}
OPS_CASES = {
    "type-unknown": (_ops(type="Upgrade", tls={"remove": True}), 'spec.type: Unsupported value: "Upgrade"'),
    "tls-missing": (_ops(), "spec.tls is required for type ReconfigureTLS"),
    "tls-empty": (_ops(tls={}), "spec.tls: no reconfiguration is provided in TLS spec"),
    "remove-and-rotate": (_ops(tls={"remove": True, "rotateCertificates": True}),
                          "more than 1 field have assigned to spec.reconfigureTLS"),
    "rotate-and-issuer": (_ops(tls={"rotateCertificates": True, "issuerRef": ISSUER}),
                          "more than 1 field have assigned to spec.reconfigureTLS"),
    "apply-invalid": (_ops(tls={"remove": True}, apply="Sometimes"), 'spec.apply: Unsupported value: "Sometimes"'),
    "timeout-invalid": (_ops(tls={"remove": True}, timeout="5 minutes"), "spec.timeout must be a Go duration"),
    "max-retries-ignored": (_ops(tls={"remove": True}, maxRetries=3), "spec.maxRetries must be 1, the default"),
    "database-missing (webhook)": (_ops(tls={"remove": True}, databaseRef={"name": "nope"}),
                                   "spec.databaseRef NS/nope, is invalid or not found"),
}


@pytest.mark.parametrize("case", OPS_CASES, ids=list(OPS_CASES))
def test_invalid_ops_request_is_refused_naming_the_field(plane, namespace, operator, case):
    assert _apply(plane, namespace, druid_manifest("druid-cluster", "NS")).returncode == 0
    manifest, expected = OPS_CASES[case]
    result = _apply(plane, namespace, manifest)
    assert result.returncode != 0, f"{case} was accepted"
    assert expected.replace("NS", namespace) in result.stderr, result.stderr


def test_ops_request_spec_is_immutable(plane, namespace, operator):
    assert _apply(plane, namespace, druid_manifest("druid-cluster", "NS")).returncode == 0
    original = _ops(tls={"issuerRef": ISSUER}, timeout="5m")
    assert _apply(plane, namespace, original).returncode == 0
    changed = copy.deepcopy(original)
    changed["spec"]["timeout"] = "10m"
    result = _apply(plane, namespace, changed)
    assert result.returncode != 0
    assert "spec is immutable after creation" in result.stderr


def test_do_not_terminate_refuses_deletion_until_the_policy_changes(plane, namespace, operator):
    assert _apply(plane, namespace, druid_manifest("keep", "NS", deletionPolicy="DoNotTerminate")).returncode == 0
    refused = plane.kubectl("delete", "dr", "keep", "-n", namespace, "--wait=false", check=False)
    assert refused.returncode != 0
    assert "spec.deletionPolicy: DoNotTerminate and cannot be deleted" in refused.stderr
    plane.kubectl("patch", "dr", "keep", "-n", namespace, "--type=merge", "-p", '{"spec":{"deletionPolicy":"Delete"}}')
    plane.kubectl("delete", "dr", "keep", "-n", namespace, "--wait=false")
