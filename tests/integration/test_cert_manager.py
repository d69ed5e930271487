"""The real cert-manager controller in the local plane issues certificates with JKS and PKCS#12 keystores."""

from __future__ import annotations

import base64
import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Secret
from lightkube.types import PatchType

from kubedruid.devcluster.layout import CERT_MANAGER_NAMESPACE
from kubedruid.certs.pki import make_ca

from .conftest import wait_for

pytestmark = pytest.mark.integration

Certificate = create_namespaced_resource("cert-manager.io", "v1", "Certificate", "certificates")
Issuer = create_namespaced_resource("cert-manager.io", "v1", "Issuer", "issuers")
ClusterIssuer = create_global_resource("cert-manager.io", "v1", "ClusterIssuer", "clusterissuers")

KEYSTORE_PASSWORD = "test-keystore-pass"


def _ca_secret(kube, name: str, namespace: str, common_name: str):
    ca, _ = make_ca(common_name, "kubedruid-tests")
    kube.create(Secret(metadata=ObjectMeta(name=name), type="kubernetes.io/tls",
                       stringData={"tls.crt": ca.cert_pem.decode(), "tls.key": ca.key_pem.decode()}),
                namespace=namespace)
    return x509.load_pem_x509_certificate(ca.cert_pem)


def _condition(obj, type_):
    for c in (obj.get("status") or {}).get("conditions", []):
        if c["type"] == type_:
            return c
    return None


def _ready_certificate(kube, name, ns):
    cert = kube.get(Certificate, name, namespace=ns)
    ready = _condition(cert, "Ready")
    if ready and ready["status"] == "True" and ready.get("observedGeneration") == cert.metadata.generation \
            and not _condition(cert, "Issuing"):
        return cert
    return None


def _request_certificate(kube, ns, issuer_kind, issuer_name, dns_name) -> None:
    kube.create(Secret(metadata=ObjectMeta(name="keystore-pass"), stringData={"password": KEYSTORE_PASSWORD}),
                namespace=ns)
    password_ref = {"name": "keystore-pass", "key": "password"}
    kube.create(Certificate(
        metadata=ObjectMeta(name="demo"),
        spec={
            "secretName": "demo-tls",
            "commonName": dns_name,
            "dnsNames": [dns_name],
            "issuerRef": {"group": "cert-manager.io", "kind": issuer_kind, "name": issuer_name},
            "keystores": {
                "jks": {"create": True, "passwordSecretRef": password_ref, "alias": "druid"},
                "pkcs12": {"create": True, "passwordSecretRef": password_ref, "profile": "Modern2023"},
            },
        },
    ), namespace=ns)


def _secret_files(kube, ns) -> dict[str, bytes]:
    secret = kube.get(Secret, "demo-tls", namespace=ns)
    return {k: base64.b64decode(v) for k, v in secret.data.items()}


def _verify_chain(files: dict[str, bytes], ca: x509.Certificate, dns_name: str) -> x509.Certificate:
    leaf = x509.load_pem_x509_certificates(files["tls.crt"])[0]
    verifier = PolicyBuilder().store(Store([ca])).build_server_verifier(x509.DNSName(dns_name))
    chain = verifier.verify(leaf, [])
    assert chain[-1] == ca
    assert x509.load_pem_x509_certificate(files["ca.crt"]) == ca
    return leaf


def _keytool_list(path, storetype: str, password: str) -> str:
    keytool = shutil.which("keytool")
    assert keytool, "keytool (OpenJDK) is required; .ci/run installs it"
    proc = subprocess.run([keytool, "-list", "-keystore", str(path), "-storetype", storetype, "-storepass", password],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _assert_issued_with_keystores(kube, ns, ca, dns_name, tmp_path) -> x509.Certificate:
    wait_for(lambda: _ready_certificate(kube, "demo", ns), timeout=60, what="Certificate demo Ready")
    files = _secret_files(kube, ns)
    assert {"tls.crt", "tls.key", "ca.crt", "keystore.jks", "truststore.jks", "keystore.p12",
            "truststore.p12"} <= files.keys()
    leaf = _verify_chain(files, ca, dns_name)

    for name, storetype in (("keystore.jks", "JKS"), ("keystore.p12", "PKCS12")):
        (tmp_path / name).write_bytes(files[name])
        listing = _keytool_list(tmp_path / name, storetype, KEYSTORE_PASSWORD)
        assert "PrivateKeyEntry" in listing
    assert "druid, " in _keytool_list(tmp_path / "keystore.jks", "JKS", KEYSTORE_PASSWORD)
    return leaf


def test_ca_issuer_issues_keystores_and_reissues_on_issuing_condition(kube, namespace, tmp_path):
    ca = _ca_secret(kube, "test-ca", namespace, "kubedruid-test-ca")
    kube.create(Issuer(metadata=ObjectMeta(name="ca-issuer"), spec={"ca": {"secretName": "test-ca"}}),
                namespace=namespace)
    dns_name = f"demo.{namespace}.svc.cluster.local"
    _request_certificate(kube, namespace, "Issuer", "ca-issuer", dns_name)
    first = _assert_issued_with_keystores(kube, namespace, ca, dns_name, tmp_path)

    # What `cmctl renew` does: set the Issuing condition; cert-manager must issue a new certificate.
    cert = kube.get(Certificate, "demo", namespace=namespace)
    conditions = cert["status"]["conditions"] + [{
        "type": "Issuing", "status": "True", "reason": "ManuallyTriggered", "message": "renewal requested by test",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }]
    kube.patch(Certificate.Status, "demo", {"status": {"conditions": conditions}}, namespace=namespace,
               patch_type=PatchType.MERGE)

    def reissued():
        if not _ready_certificate(kube, "demo", namespace):
            return None
        leaf = x509.load_pem_x509_certificates(_secret_files(kube, namespace)["tls.crt"])[0]
        return leaf if leaf.serial_number != first.serial_number else None

    second = wait_for(reissued, timeout=60, what="a re-issued certificate with a new serial")
    assert second.not_valid_after_utc >= first.not_valid_after_utc
    _verify_chain(_secret_files(kube, namespace), ca, dns_name)


def test_cluster_issuer_issues_from_the_cluster_resource_namespace(kube, namespace, tmp_path):
    secret_name = f"cluster-ca-{namespace}"
    ca = _ca_secret(kube, secret_name, CERT_MANAGER_NAMESPACE, "kubedruid-cluster-test-ca")
    issuer_name = f"cluster-ca-{namespace}"
    kube.create(ClusterIssuer(metadata=ObjectMeta(name=issuer_name), spec={"ca": {"secretName": secret_name}}))
    try:
        dns_name = f"demo.{namespace}.svc.cluster.local"
        _request_certificate(kube, namespace, "ClusterIssuer", issuer_name, dns_name)
        leaf = _assert_issued_with_keystores(kube, namespace, ca, dns_name, tmp_path)
        assert leaf.issuer == ca.subject
    finally:
        kube.delete(ClusterIssuer, issuer_name)
        try:
            kube.delete(Secret, secret_name, namespace=CERT_MANAGER_NAMESPACE)
        except ApiError:
            pass
