"""Objects the integration tests create the way a user would: CA Issuers, the deep-storage Secret, Druid manifests
from KubeDB's docs."""

from __future__ import annotations

import base64

from cryptography import x509
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import StatefulSet
from lightkube.resources.core_v1 import Secret, Service

from kubedruid.certs.pki import make_ca

Druid = create_namespaced_resource("kubedb.com", "v1alpha2", "Druid", "druids")
Issuer = create_namespaced_resource("cert-manager.io", "v1", "Issuer", "issuers")
Certificate = create_namespaced_resource("cert-manager.io", "v1", "Certificate", "certificates")
PetSet = create_namespaced_resource("apps.k8s.appscode.com", "v1", "PetSet", "petsets")

DEEP_STORAGE = {  # KubeDB's docs/guides/druid/.../deep-storage-config.yaml, as a user writes it
    "druid.storage.type": "s3", "druid.storage.bucket": "druid", "druid.storage.baseKey": "druid/segments",
    "druid.s3.accessKey": "minio", "druid.s3.secretKey": "minio123", "druid.s3.protocol": "http",
    "druid.s3.enablePathStyleAccess": "true", "druid.s3.endpoint.signingRegion": "us-east-1",
    "druid.s3.endpoint.url": "http://myminio-hl.demo.svc.cluster.local:9000/",
}


def ca_issuer(kube, namespace: str, name: str, common_name: str, organization: str = "kubedb") -> x509.Certificate:
    """`openssl req -x509 ... -subj /CN=<cn>/O=<org>` + `kubectl create secret tls` + an Issuer, as in the guide."""
    ca, _ = make_ca(common_name, organization)
    kube.create(Secret(metadata=ObjectMeta(name=f"{name}-ca"), type="kubernetes.io/tls",
                       stringData={"tls.crt": ca.cert_pem.decode(), "tls.key": ca.key_pem.decode()}),
                namespace=namespace)
    kube.create(Issuer(metadata=ObjectMeta(name=name), spec={"ca": {"secretName": f"{name}-ca"}}),
                namespace=namespace)
    return x509.load_pem_x509_certificate(ca.cert_pem)


def deep_storage_secret(kube, namespace: str, name: str = "deep-storage-config") -> None:
    kube.create(Secret(metadata=ObjectMeta(name=name), stringData=DEEP_STORAGE), namespace=namespace)


def druid_manifest(name: str, namespace: str, *, issuer: str | None = None, **spec) -> dict:
    """The reconfigure-TLS guide's `druid-cluster` (36.0.0, routers x1, Delete); with `issuer`, the TLS guide's."""
    body = {"version": "36.0.0", "deepStorage": {"type": "s3", "configSecret": {"name": "deep-storage-config"}},
            "topology": {"routers": {"replicas": 1}}, "deletionPolicy": "Delete"}
    if issuer:
        body |= {"enableSSL": True, "tls": {"issuerRef": {"apiGroup": "cert-manager.io", "kind": "Issuer",
                                                          "name": issuer}}}
    body |= spec
    return {"apiVersion": "kubedb.com/v1alpha2", "kind": "Druid", "metadata": {"name": name, "namespace": namespace},
            "spec": body}


def secret_data(kube, name: str, namespace: str) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (kube.get(Secret, name, namespace=namespace).data or {}).items()}


def condition(obj, type_: str) -> dict | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), None)


def scale_druid_manifest(name: str, namespace: str) -> dict:
    """A Druid as the scale tests and benchmark create it by the hundred: the guide's, with its own ZooKeeper and
    metadata storage, no deep-storage Secret, and data nodes on Ephemeral storage (claims are not what is measured)."""
    manifest = druid_manifest(name, namespace, version="28.0.1", deepStorage={"type": "s3"},
                              deletionPolicy="WipeOut")
    manifest["spec"]["topology"] |= {"historicals": {"storageType": "Ephemeral"},
                                     "middleManagers": {"storageType": "Ephemeral"}}
    return manifest


# What the operator writes; an idle operator changes none of them (their resourceVersions stay).
OWNED_KINDS = (Druid, PetSet, Certificate, StatefulSet, Service, Secret)


def resource_versions(kube, namespaces: list[str], kinds=OWNED_KINDS) -> dict[tuple[str, str, str], str]:
    """(kind, namespace, name) -> resourceVersion of every object of `kinds` in `namespaces`."""
    return {(res.__name__, ns, o.metadata.name): o.metadata.resourceVersion
            for ns in namespaces for res in kinds for o in kube.list(res, namespace=ns)}
