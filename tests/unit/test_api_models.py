"""The API models read and write KubeDB manifests unchanged."""

from __future__ import annotations

import yaml

from kubedruid.api import (
    Druid,
    DruidOpsRequest,
    DruidVersion,
    PetSet,
    TLSSpec,
    druid_version,
    shipped_druid_versions,
    to_dict,
)

KUBEDB_DRUID = """
apiVersion: kubedb.com/v1alpha2
kind: Druid
metadata:
  name: druid-quickstart
  namespace: demo
  labels: {team: data}
spec:
  version: 36.0.0
  deepStorage: {type: s3, configSecret: {name: deep-storage-config}}
  topology:
    coordinators:
      replicas: 2
      podTemplate:
        spec:
          podPlacementPolicy: {name: default}
          containers:
          - name: druid
            resources: {requests: {cpu: 500m}}
            volumeMounts: [{name: extra, mountPath: /extra}]
          volumes: [{name: extra, emptyDir: {}}]
    historicals:
      storageType: Durable
      storage:
        storageClassName: standard
        accessModes: [ReadWriteOnce]
        resources: {requests: {storage: 5Gi}}
    routers: {replicas: 1}
  serviceTemplates:
  - alias: primary
    spec: {type: LoadBalancer, ports: [{name: http, port: 8888}]}
  monitor:
    agent: prometheus.io/operator
    prometheus: {serviceMonitor: {labels: {release: prometheus}, interval: 10s}}
  futureKubeDBField: {kept: true}
  deletionPolicy: WipeOut
status:
  phase: Ready
  conditions:
  - {type: Ready, status: "True", lastTransitionTime: "2024-10-28T09:43:16Z", reason: ReadinessCheckSucceeded}
"""


def test_kubedb_manifest_round_trips_with_unknown_fields():
    raw = yaml.safe_load(KUBEDB_DRUID)
    druid = Druid.model_validate(raw)
    out = druid.to_dict()
    # Model defaults (the CRD's) are added; everything the user wrote is still there.
    assert out["spec"]["futureKubeDBField"] == {"kept": True}
    coordinators = out["spec"]["topology"]["coordinators"]["podTemplate"]["spec"]
    assert coordinators["podPlacementPolicy"] == {"name": "default"}
    assert coordinators["containers"][0]["resources"] == {"requests": {"cpu": "500m"}}
    assert coordinators["volumes"][0]["emptyDir"] == {}
    assert out["spec"]["monitor"] == raw["spec"]["monitor"]
    assert out["spec"]["serviceTemplates"] == raw["spec"]["serviceTemplates"]
    assert out["spec"]["topology"]["historicals"]["storage"] == raw["spec"]["topology"]["historicals"]["storage"]
    assert out["status"] == raw["status"]
    assert out["metadata"] == raw["metadata"]
    assert Druid.model_validate(out).to_dict() == out


def test_model_defaults_are_the_crd_defaults():
    spec = Druid.model_validate(yaml.safe_load(KUBEDB_DRUID)).spec
    assert spec.topology.routers.replicas == 1
    assert spec.topology.historicals.replicas == 1
    assert spec.deletionPolicy == "WipeOut"
    assert spec.healthChecker.model_dump(exclude_none=True) == {
        "periodSeconds": 30,
        "timeoutSeconds": 10,
        "failureThreshold": 3,
    }


def test_topology_nodes_lists_present_node_types_in_order():
    topology = Druid.model_validate(yaml.safe_load(KUBEDB_DRUID)).spec.topology
    assert list(topology.nodes()) == ["coordinators", "routers", "historicals"]


def test_ops_request_manifest_from_the_reconfigure_tls_guide():
    raw = yaml.safe_load(
        """
apiVersion: ops.kubedb.com/v1alpha1
kind: DruidOpsRequest
metadata: {name: drops-add-tls, namespace: demo}
spec:
  type: ReconfigureTLS
  databaseRef: {name: druid-cluster}
  tls:
    issuerRef: {name: druid-ca-issuer, kind: Issuer, apiGroup: cert-manager.io}
    certificates:
    - alias: client
      subject: {organizations: [druid], organizationalUnits: [client]}
  timeout: 5m
  apply: IfReady
"""
    )
    ops = DruidOpsRequest.model_validate(raw)
    assert ops.spec.tls.certificates[0].subject.organizationalUnits == ["client"]
    assert ops.spec.maxRetries == 1
    out = ops.to_dict()
    assert {k: v for k, v in out["spec"].items() if k != "maxRetries"} == raw["spec"]


def test_resource_identity():
    assert Druid.resource.api_version == "kubedb.com/v1alpha2"
    assert Druid.resource.crd_name == "druids.kubedb.com"
    assert DruidOpsRequest.resource.short_names == ("drops",)
    assert DruidVersion.resource.namespaced is False
    assert PetSet.resource.scale is True
    minimal = {"spec": {"version": "36.0.0", "topology": {}, "deepStorage": {"type": "s3"}}}
    assert Druid.model_validate(minimal).kind == "Druid"


def test_shipped_versions_use_upstream_images_and_uid_1000():
    versions = {v["metadata"]["name"]: v for v in shipped_druid_versions()}
    assert {"36.0.0", "31.0.0"} <= set(versions)
    for name, obj in versions.items():
        parsed = DruidVersion.model_validate(obj)
        assert parsed.spec.version == name
        assert parsed.spec.db.image == f"apache/druid:{name}"
        assert parsed.spec.securityContext.runAsUser == 1000
        assert parsed.spec.initContainer is None
    assert druid_version("36.0.0").to_dict() == versions["36.0.0"]


def test_to_dict_accepts_models_and_mappings():
    obj = {"a": 1}
    assert to_dict(obj) == obj
    assert to_dict(druid_version("31.0.0"))["kind"] == "DruidVersion"


def test_tls_spec_names_its_operation():
    assert TLSSpec(remove=True).operation() == "remove"
    assert TLSSpec(rotateCertificates=True).operation() == "rotate"
    assert TLSSpec(issuerRef={"kind": "Issuer", "name": "ca"}).operation() == "update"
    assert TLSSpec(certificates=[]).operation() == "update"
    assert TLSSpec(remove=False).operation() is None
