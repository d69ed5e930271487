"""The provisioner on the real control plane: KubeDB-docs Druids become Ready, plain and with TLS."""

from __future__ import annotations

import asyncio
import json

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store
from lightkube import codecs
from lightkube.resources.core_v1 import Pod, Secret, Service
from lightkube.types import PatchType

from kubedruid.controllers.provisioner import Provisioner
from kubedruid.druid import properties
from kubedruid.kube.client import Kube

from .conftest import wait_for
from .helpers import Certificate, Druid, PetSet, ca_issuer, condition, deep_storage_secret, druid_manifest, secret_data

pytestmark = pytest.mark.integration

NODE_PETSETS = {"coordinators": "coordinators", "brokers": "brokers", "historicals": "historicals",
                "middleManagers": "middlemanagers", "routers": "routers"}
PLAIN_PORTS = {"coordinators": 8081, "brokers": 8082, "historicals": 8083, "middleManagers": 8091, "routers": 8888}
TLS_PORTS = {"coordinators": 8281, "brokers": 8282, "historicals": 8283, "middleManagers": 8291, "routers": 9088}


def _phase(kube, name, ns):
    return (kube.get(Druid, name, namespace=ns).get("status") or {}).get("phase")


def _wait_ready(kube, name, ns, operator, timeout=90):
    try:
        wait_for(lambda: _phase(kube, name, ns) == "Ready", timeout=timeout, what=f"Druid {ns}/{name} Ready")
    except AssertionError:
        print(operator.log_text()[-4000:])
        raise


def _config(kube, name, ns, uid) -> dict[str, dict[str, str]]:
    files = secret_data(kube, f"{name}-{uid[-6:]}", ns)
    return {f: properties.parse(text.decode()) for f, text in files.items()}


def test_kubedb_docs_druid_becomes_ready_with_kubedb_names(plane, kube, namespace, operator):
    deep_storage_secret(kube, namespace)
    kube.create(codecs.from_dict(druid_manifest("druid-cluster", namespace)))
    _wait_ready(kube, "druid-cluster", namespace, operator)

    selector = {"app.kubernetes.io/name": "druids.kubedb.com", "app.kubernetes.io/instance": "druid-cluster",
                "app.kubernetes.io/managed-by": "kubedb.com"}
    for role, suffix in NODE_PETSETS.items():
        ps = kube.get(PetSet, f"druid-cluster-{suffix}", namespace=namespace)
        assert ps.metadata.labels["kubedb.com/role"] == role
        assert selector.items() <= ps.metadata.labels.items()
        pod = kube.get(Pod, f"druid-cluster-{suffix}-0", namespace=namespace)
        assert pod.metadata.labels["kubedb.com/role"] == role
        assert selector.items() <= pod.metadata.labels.items()
        container = pod.spec.containers[0]
        assert [p.containerPort for p in container.ports] == [PLAIN_PORTS[role]]
        assert container.readinessProbe.httpGet.scheme == "HTTP"
        assert pod.spec.subdomain == "druid-cluster-pods"

    governing = kube.get(Service, "druid-cluster-pods", namespace=namespace)
    assert governing.spec.clusterIP == "None"
    assert sorted(p.port for p in governing.spec.ports) == sorted(PLAIN_PORTS.values())
    for svc, port in (("coordinators", 8081), ("brokers", 8082), ("routers", 8888)):
        assert [p.port for p in kube.get(Service, f"druid-cluster-{svc}", namespace=namespace).spec.ports] == [port]
    auth = kube.get(Secret, "druid-cluster-auth", namespace=namespace)
    assert auth.type == "kubernetes.io/basic-auth"
    assert secret_data(kube, "druid-cluster-auth", namespace)["username"] == b"admin"

    druid = kube.get(Druid, "druid-cluster", namespace=namespace)
    reasons = {c["type"]: c["reason"] for c in druid["status"]["conditions"]}
    assert reasons == {"ProvisioningStarted": "DatabaseProvisioningStartedSuccessfully",
                       "DatabaseDependencyReady": "DatabaseDependencyReady", "ReplicaReady": "AllReplicasReady",
                       "AcceptingConnection": "DatabaseAcceptingConnectionRequest",
                       "Ready": "ReadinessCheckSucceeded", "Provisioned": "DatabaseSuccessfullyProvisioned"}
    config = _config(kube, "druid-cluster", namespace, druid.metadata.uid)
    assert "druid.enableTlsPort" not in config["common.runtime.properties"]
    assert config["common.runtime.properties"]["druid.storage.bucket"] == "druid"  # from the deep-storage Secret

    table = plane.kubectl("get", "dr", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "VERSION", "STATUS", "AGE"]
    assert table[1].split()[:3] == ["druid-cluster", "36.0.0", "Ready"]


def test_tls_druid_from_creation_gets_certificates_tls_ports_and_properties(kube, namespace, operator):
    ca = ca_issuer(kube, namespace, "druid-ca-issuer", "ca")
    deep_storage_secret(kube, namespace)
    kube.create(codecs.from_dict(druid_manifest("druid-cluster-tls", namespace, issuer="druid-ca-issuer")))
    _wait_ready(kube, "druid-cluster-tls", namespace, operator, timeout=120)
    db, ns = "druid-cluster-tls", namespace

    for alias in ("server", "client"):
        cert = kube.get(Certificate, f"{db}-{alias}-cert", namespace=ns)
        assert condition(cert, "Ready")["status"] == "True"
        files = secret_data(kube, f"{db}-{alias}-cert", ns)
        assert {"tls.crt", "tls.key", "ca.crt", "keystore.jks", "truststore.jks"} <= files.keys()
        leaf = x509.load_pem_x509_certificate(files["tls.crt"])
        policy = PolicyBuilder().store(Store([ca]))
        if alias == "server":  # the per-pod FQDN that druid.host announces is in the certificate
            pod_fqdn = f"{db}-brokers-0.{db}-pods.{ns}.svc.cluster.local"
            policy.build_server_verifier(x509.DNSName(pod_fqdn)).verify(leaf, [])
        else:
            policy.build_client_verifier().verify(leaf, [])
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert not [d for d in sans.get_values_for_type(x509.DNSName) if ":" in d]
    cred = secret_data(kube, f"{db}-keystore-cred", ns)
    assert cred.keys() == {"keystore_password", "truststore_password"} and len(cred["keystore_password"]) >= 24

    for role, suffix in NODE_PETSETS.items():
        pod = kube.get(Pod, f"{db}-{suffix}-0", namespace=ns)
        container = pod.spec.containers[0]
        assert [p.containerPort for p in container.ports] == [TLS_PORTS[role]]
        assert container.readinessProbe.httpGet.scheme == "HTTPS"
        mounts = {m.mountPath: m.name for m in container.volumeMounts}
        assert {"/opt/druid/ssl", "/opt/druid/tls-live", "/opt/druid/trust"} <= set(mounts)
        assert [c.name for c in pod.spec.initContainers or []] == ["keystore-sync"]
    governing = kube.get(Service, f"{db}-pods", namespace=ns)
    assert sorted(p.port for p in governing.spec.ports) == sorted(TLS_PORTS.values())
    assert [p.port for p in kube.get(Service, f"{db}-routers", namespace=ns).spec.ports] == [9088]

    druid = kube.get(Druid, db, namespace=ns)
    common = _config(kube, db, ns, druid.metadata.uid)["common.runtime.properties"]
    assert common["druid.enableTlsPort"] == "true" and common["druid.enablePlaintextPort"] == "false"
    # the regular-file copy the keystore sidecar keeps, reloaded by Druid; trust from the operator's CA bundle
    assert common["druid.server.https.keyStorePath"] == "/opt/druid/tls-live/keystore.jks"
    assert common["druid.server.https.reloadSslContext"] == "true"
    assert common["druid.client.https.trustStorePath"] == "/opt/druid/trust/truststore.p12"
    trusted = x509.load_pem_x509_certificates(secret_data(kube, f"{db}-ca-bundle", ns)["ca.crt"])
    assert trusted == x509.load_pem_x509_certificates(secret_data(kube, f"{db}-server-cert", ns)["ca.crt"])
    assert common["druid.client.https.validateHostnames"] == "true"
    assert "simple-client-sslcontext" in json.loads(common["druid.extensions.loadList"])
    assert druid["spec"]["enableSSL"] is True


def test_second_pass_over_an_unchanged_druid_writes_nothing(plane, kube, namespace, operator):
    deep_storage_secret(kube, namespace)
    kube.create(codecs.from_dict(druid_manifest("idem", namespace)))
    _wait_ready(kube, "idem", namespace, operator)

    async def two_passes() -> int:
        client = Kube.from_kubeconfig(str(plane.kubeconfig))
        try:
            provisioner = Provisioner(client)
            await provisioner.reconcile(namespace, "idem")  # converge whatever the operator had not yet written
            client.writes = 0
            await provisioner.reconcile(namespace, "idem")
            return client.writes
        finally:
            await client.client.close()

    versions_before = {o.metadata.name: o.metadata.resourceVersion
                       for res in (PetSet, Service, Secret) for o in kube.list(res, namespace=namespace)}
    assert asyncio.run(two_passes()) == 0
    versions_after = {o.metadata.name: o.metadata.resourceVersion
                      for res in (PetSet, Service, Secret) for o in kube.list(res, namespace=namespace)}
    assert versions_after == versions_before


def test_a_primary_service_template_exposes_the_routers_and_goes_away_with_it(kube, namespace, operator):
    """KubeDB's `spec.serviceTemplates` (alias primary): the type, annotations and node port reach the client
    Services; removed from the spec, the Services are plain ClusterIP again."""
    ns, db = namespace, "exposed"
    deep_storage_secret(kube, ns)
    manifest = druid_manifest(db, ns, serviceTemplates=[{
        "alias": "primary", "metadata": {"annotations": {"example.com/exposed": "yes"}},
        "spec": {"type": "NodePort", "ports": [{"name": "http", "port": 8888, "nodePort": 31888}]}}])
    kube.create(codecs.from_dict(manifest))
    _wait_ready(kube, db, ns, operator)
    routers = kube.get(Service, f"{db}-routers", namespace=ns)
    assert routers.spec.type == "NodePort" and [p.nodePort for p in routers.spec.ports] == [31888]
    assert routers.metadata.annotations["example.com/exposed"] == "yes"
    assert kube.get(Service, f"{db}-brokers", namespace=ns).spec.type == "NodePort"
    kube.patch(Druid, db, [{"op": "remove", "path": "/spec/serviceTemplates"}], namespace=ns,
               patch_type=PatchType.JSON)
    for node in ("routers", "brokers"):  # one write per Service: both, in either order
        wait_for(lambda node=node: kube.get(Service, f"{db}-{node}", namespace=ns).spec.type == "ClusterIP",
                 timeout=30, what=f"the {node} Service back to ClusterIP")


def test_a_monitored_druid_has_a_stats_service_and_an_exporter_in_every_pod(kube, namespace, operator):
    """KubeDB's `spec.monitor` (builtin Prometheus): the stats Service `<db>-stats` with the scrape annotations and
    every pod's metrics port, the exporter sidecar in every pod, Druid's HTTP emitter pointed at it; removed from
    the spec, the stats Service goes and the emitter is off again."""
    ns, db = namespace, "watched"
    deep_storage_secret(kube, ns)
    kube.create(codecs.from_dict(druid_manifest(db, ns, monitor={"agent": "prometheus.io/builtin"})))
    _wait_ready(kube, db, ns, operator)
    stats = kube.get(Service, f"{db}-stats", namespace=ns)
    assert stats.metadata.labels["kubedb.com/role"] == "stats"
    assert stats.metadata.annotations["prometheus.io/scrape"] == "true"
    assert [(p.name, p.port) for p in stats.spec.ports] == [("metrics", 9104)]
    assert "kubedb.com/role" not in stats.spec.selector  # every node type's pods
    for suffix in NODE_PETSETS.values():
        pod = kube.get(Pod, f"{db}-{suffix}-0", namespace=ns)
        (sidecar,) = [c for c in pod.spec.initContainers or [] if c.name == "exporter"]
        assert sidecar.restartPolicy == "Always" and [p.containerPort for p in sidecar.ports] == [9104]
    druid = kube.get(Druid, db, namespace=ns)
    common = _config(kube, db, ns, druid["metadata"]["uid"])["common.runtime.properties"]
    assert common["druid.emitter"] == "http"
    assert common["druid.emitter.http.recipientBaseUrl"] == "http://127.0.0.1:9104/druid"

    kube.patch(Druid, db, [{"op": "remove", "path": "/spec/monitor"}], namespace=ns, patch_type=PatchType.JSON)

    def stats_gone() -> bool:
        try:
            kube.get(Service, f"{db}-stats", namespace=ns)
            return False
        except Exception as e:  # lightkube ApiError 404
            return getattr(getattr(e, "status", None), "code", None) == 404

    wait_for(stats_gone, timeout=30, what="the stats Service deleted")
    wait_for(lambda: _config(kube, db, ns, druid["metadata"]["uid"])["common.runtime.properties"]["druid.emitter"]
             == "noop", timeout=30, what="the emitter off")


# Prometheus Operator's ServiceMonitor API as a minimal CRD of our own: what the operator needs is that the kind is
# served (the operator's real CRD validates much more).
SERVICE_MONITOR_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
    "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
             "names": {"plural": "servicemonitors", "singular": "servicemonitor", "kind": "ServiceMonitor"},
             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                 "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}}


def test_prometheus_operator_monitoring_gets_a_service_monitor(kube, namespace, operator):
    """`spec.monitor.agent: prometheus.io/operator`: while the cluster serves no ServiceMonitor API the Druid says
    so (InputValid False, ServiceMonitorUnavailable); once it does, the ServiceMonitor of the stats Service is made
    with the user's labels and interval; with another agent it goes."""
    from lightkube.resources.apiextensions_v1 import CustomResourceDefinition

    from kubedruid.kube.client import is_not_found, is_not_served, resource

    ns, db = namespace, "operated"
    service_monitor = resource("monitoring.coreos.com/v1", "ServiceMonitor")
    crd_name = SERVICE_MONITOR_CRD["metadata"]["name"]

    def crd_gone() -> bool:
        try:
            kube.get(CustomResourceDefinition, crd_name)
            return False
        except Exception as e:
            return getattr(getattr(e, "status", None), "code", None) == 404

    if not crd_gone():  # a plane reused from an earlier run
        kube.delete(CustomResourceDefinition, crd_name)
        wait_for(crd_gone, timeout=60, what="the ServiceMonitor CRD gone")
    deep_storage_secret(kube, ns)
    kube.create(codecs.from_dict(druid_manifest(db, ns, monitor={
        "agent": "prometheus.io/operator",
        "prometheus": {"serviceMonitor": {"labels": {"release": "prometheus"}, "interval": "10s"}}})))
    blocked = wait_for(lambda: (c := condition(kube.get(Druid, db, namespace=ns), "InputValid")) and
                       c["reason"] == "ServiceMonitorUnavailable" and c, timeout=60,
                       what="the Druid to say the ServiceMonitor API is missing")
    assert blocked["status"] == "False" and "monitoring.coreos.com/v1" in blocked["message"]

    def made():
        try:
            return kube.get(service_monitor, f"{db}-stats", namespace=ns)
        except Exception as e:
            if is_not_found(e) or is_not_served(e):  # no such object yet; the new API not served yet
                return None
            raise

    kube.create(codecs.from_dict(SERVICE_MONITOR_CRD))
    sm = wait_for(made, timeout=90, what="the ServiceMonitor made once the API is served")
    assert sm["metadata"]["labels"]["release"] == "prometheus"
    assert sm["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "scheme": "http", "interval": "10s"}]
    stats = kube.get(Service, f"{db}-stats", namespace=ns)
    assert sm["spec"]["selector"]["matchLabels"].items() <= stats.metadata.labels.items()
    _wait_ready(kube, db, ns, operator)

    kube.patch(Druid, db, {"spec": {"monitor": {"agent": "prometheus.io/builtin", "prometheus": None}}}, namespace=ns,
               patch_type=PatchType.MERGE)

    wait_for(lambda: made() is None, timeout=30, what="the ServiceMonitor deleted with the builtin agent")
    # The ServiceMonitor goes first (the stats Service tells what was made), then the Service is written anew.
    wait_for(lambda: (kube.get(Service, f"{db}-stats", namespace=ns).metadata.annotations or {}).get(
        "prometheus.io/scrape") == "true", timeout=30, what="the stats Service annotated for the builtin agent")
