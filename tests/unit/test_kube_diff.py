"""Whether a write is needed (kube/diff.py is_subset): desired vs what the apiserver returns."""

from __future__ import annotations

import base64
import copy

import pytest

from kubedruid.api import Druid, apply_defaults
from kubedruid.druid.properties import ClusterConfig, MetadataStore
from kubedruid.kube.diff import is_subset, merge_patched
from kubedruid.specs import cluster


def desired_service() -> dict:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "dc-brokers", "namespace": "demo", "labels": {"app": "druid"},
                         "ownerReferences": [{"apiVersion": "kubedb.com/v1alpha2", "kind": "Druid", "name": "dc",
                                              "uid": "u1", "controller": True, "blockOwnerDeletion": True}]},
            "spec": {"type": "ClusterIP", "selector": {"app": "druid"},
                     "ports": [{"name": "http", "port": 8082, "targetPort": 8082, "protocol": "TCP"}]}}


def as_served(desired: dict) -> dict:
    """The object as the apiserver returns it: server metadata, defaults and status added."""
    obj = copy.deepcopy(desired)
    obj["metadata"].update({"uid": "svc-uid", "resourceVersion": "12345", "generation": 1,
                            "creationTimestamp": "2026-01-01T00:00:00Z",
                            "managedFields": [{"manager": "kubedruid", "operation": "Apply"}],
                            "annotations": {"added-by": "someone-else"}})
    obj["spec"].update({"clusterIP": "10.96.0.12", "clusterIPs": ["10.96.0.12"], "sessionAffinity": "None",
                        "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster"})
    obj["status"] = {"loadBalancer": {}}
    return obj


def test_server_defaults_and_metadata_are_ignored():
    assert is_subset(desired_service(), as_served(desired_service()))


def test_server_metadata_in_desired_never_forces_a_write():
    desired = desired_service()
    desired["metadata"]["resourceVersion"] = "1"  # stale
    desired["metadata"]["generation"] = 7
    assert is_subset(desired, as_served(desired_service()))


def test_missing_field_is_detected():
    served = as_served(desired_service())
    del served["metadata"]["labels"]
    assert not is_subset(desired_service(), served)


@pytest.mark.parametrize("path,value", [
    (("spec", "ports", 0, "port"), 8282),
    (("spec", "ports", 0, "name"), "https"),
    (("spec", "selector", "app"), "other"),
    (("metadata", "labels", "app"), "other"),
    (("spec", "type"), "NodePort"),
])
def test_changed_scalar_is_detected(path, value):
    served = as_served(desired_service())
    target = served
    for p in path[:-1]:
        target = target[p]
    target[path[-1]] = value
    assert not is_subset(desired_service(), served)


def test_list_length_differences_are_detected():
    desired = desired_service()
    served = as_served(desired)
    served["spec"]["ports"].append({"name": "extra", "port": 1, "targetPort": 1, "protocol": "TCP"})
    assert not is_subset(desired, served)  # a port we no longer want must be removed
    desired["spec"]["ports"].append({"name": "tls", "port": 8282, "targetPort": 8282, "protocol": "TCP"})
    assert not is_subset(desired, as_served(desired_service()))  # a port we want is missing


def test_list_order_matters():
    desired = desired_service()
    desired["spec"]["ports"] = [{"name": "a", "port": 1}, {"name": "b", "port": 2}]
    served = as_served(desired)
    assert is_subset(desired, served)
    served["spec"]["ports"].reverse()
    assert not is_subset(desired, served)


def test_list_elements_may_have_server_defaults():
    desired = {"spec": {"containers": [{"name": "druid", "image": "apache/druid:36.0.0"}]}}
    served = {"spec": {"containers": [{"name": "druid", "image": "apache/druid:36.0.0",
                                       "imagePullPolicy": "IfNotPresent",
                                       "terminationMessagePath": "/dev/termination-log"}]}}
    assert is_subset(desired, served)


@pytest.mark.parametrize("desired,actual,expected", [
    (True, True, True), (False, False, True),
    (True, 1, False), (1, True, False), (False, 0, False), (0, False, False),
    (True, "true", False), (True, False, False),
    (1, 1, True), (1, 1.0, True), (2, 1, False), (1.5, 1.5, True),
    ("a", "a", True), ("a", "b", False),
    (None, None, True), (None, "x", False),
])
def test_scalars(desired, actual, expected):
    assert is_subset(desired, actual) is expected
    assert is_subset({"k": desired}, {"k": actual}) is (expected or desired is None)


def test_bool_vs_int_nested():
    assert not is_subset({"spec": {"hostNetwork": True}}, {"spec": {"hostNetwork": 1}})
    assert not is_subset({"spec": {"replicas": 1}}, {"spec": {"replicas": True}})


def test_none_in_desired_is_not_compared():
    assert is_subset({"a": None, "b": 1}, {"b": 1})
    assert is_subset({"a": None, "b": 1}, {"a": "set by someone", "b": 1})


def test_type_mismatch():
    assert not is_subset({"a": {"b": 1}}, {"a": [1]})
    assert not is_subset({"a": [1]}, {"a": {"0": 1}})
    assert not is_subset({"a": {}}, {"a": None})
    assert is_subset({"a": {}}, {"a": {"x": 1}})
    assert is_subset([], [])
    assert not is_subset([], [1])


def _druid():
    raw = {"apiVersion": "kubedb.com/v1alpha2", "kind": "Druid",
           "metadata": {"name": "druid-cluster", "namespace": "demo", "uid": "0000-1111-222222"},
           "spec": {"version": "36.0.0", "deepStorage": {"type": "s3", "configSecret": {"name": "deep-storage-config"}},
                    "topology": {"routers": {"replicas": 1}}, "deletionPolicy": "Delete"}}
    db = apply_defaults(Druid.model_validate(raw))
    cfg = ClusterConfig(zookeeper="druid-cluster-zk.demo.svc.cluster.local:2181", zookeeper_base="/druid",
                        metadata=MetadataStore("MySQL", "druid-cluster-mysql-metadata.demo.svc", 3306, "druid", "root"),
                        deep_storage_type="s3", has_overlords=False, has_routers=True)
    return db, cluster.Inputs(cluster=cfg, image="apache/druid:36.0.0", run_as_user=1000,
                              metadata_secret="x-mysql-metadata-auth", uid="0000-1111-222222")


def test_generated_children_match_themselves_as_served():
    db, inputs = _druid()
    objects = cluster.services(db, inputs) + [cluster.petset(db, n, inputs) for n in cluster.nodes(db)]
    for obj in objects:
        served = copy.deepcopy(obj)
        served["metadata"].update({"uid": "x", "resourceVersion": "1", "generation": 1})
        served["status"] = {"replicas": 1}
        assert is_subset(obj, served), obj["metadata"]["name"]
        # and a real change to the spec is seen
        changed = copy.deepcopy(served)
        if obj["kind"] == "PetSet":
            changed["spec"]["template"]["spec"]["containers"][0]["image"] = "apache/druid:37.0.0"
        else:
            changed["spec"]["ports"][0]["port"] += 1
        assert not is_subset(obj, changed), obj["metadata"]["name"]


def test_secret_string_data_matches_the_stored_data():
    """The apiserver stores a Secret's stringData base64-encoded in data and never returns stringData: an unchanged
    configuration Secret must not be rewritten on every pass (DESIGN §4: zero writes on an idle resync)."""
    db, inputs = _druid()
    desired = cluster.config_secret(db, inputs)
    served = {k: copy.deepcopy(v) for k, v in desired.items() if k != "stringData"}
    served["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in desired["stringData"].items()}
    served["metadata"].update({"uid": "x", "resourceVersion": "1"})
    assert is_subset(desired, served)
    # a changed file is a change
    changed = copy.deepcopy(served)
    changed["data"]["brokers.properties"] = base64.b64encode(b"druid.service=druid/broker\n").decode()
    assert not is_subset(desired, changed)
    # so is a missing file
    del changed["data"]["brokers.properties"]
    assert not is_subset(desired, changed)


def test_a_merge_patch_applied_here_leaves_what_the_apiserver_would():
    druid = {"metadata": {"name": "d", "annotations": {"mode": "client-trust", "keep": "x"}},
             "spec": {"enableSSL": False, "tls": {"issuerRef": {"name": "a"}}, "replicas": 1}}
    patch = {"metadata": {"annotations": {"mode": None, "new": "y"}},
             "spec": {"enableSSL": True, "tls": {"issuerRef": {"name": "b"}}, "replicas": None}}
    assert merge_patched(druid, patch) == {
        "metadata": {"name": "d", "annotations": {"keep": "x", "new": "y"}},
        "spec": {"enableSSL": True, "tls": {"issuerRef": {"name": "b"}}}}
    assert druid["metadata"]["annotations"]["mode"] == "client-trust", "the object itself is left as it was"
    assert merge_patched(druid, {}) == druid
    assert merge_patched({"a": {"b": 1}}, {"a": [1, 2]}) == {"a": [1, 2]}, "a list replaces, never merges"
