"""KubeDB's Druid defaulter (`Druid.SetDefaults`, spec §1.2), as a pure function.

KubeDB runs it in a mutating webhook; kubedruid has none, so the provisioner applies it to
what it reads. Defaults the apiserver can apply itself (replicas, storageType,
deletionPolicy, healthChecker, ...) are also in the CRD schema and in the model defaults.
Parts that depend on the DruidVersion (pod security context, resources) are left to the
PetSet builders.
"""

from __future__ import annotations

from kubedruid.api.common import CertificateSpec, SecretReference
from kubedruid.api.druid import (
    Druid,
    DruidClusterTopology,
    DruidDataNode,
    DruidNode,
    MetadataStorage,
    ZookeeperRef,
)

DEFAULT_MYSQL_VERSION = "8.0.35"
DEFAULT_POSTGRES_VERSION = "13.13"
DEFAULT_ZOOKEEPER_VERSION = "3.7.2"
CERT_ALIASES = ("server", "client")


def default_storage() -> dict:
    """The PVC spec KubeDB gives a Durable data node that has none."""
    return {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}


def auth_secret_name(db: str) -> str:
    return f"{db}-auth"


def keystore_cred_secret_name(db: str) -> str:
    return f"{db}-keystore-cred"


def certificate_name(db: str, alias: str) -> str:
    """Name of the cert-manager Certificate (and default Secret) for an alias: <db>-<alias>-cert."""
    return f"{db}-{alias}-cert"


def apply_defaults(druid: Druid) -> Druid:
    """A copy of `druid` with KubeDB's defaults filled in; the input is not changed."""
    db = druid.model_copy(deep=True)
    name, namespace = db.metadata.name or "", db.metadata.namespace
    spec = db.spec

    if spec.topology is not None:
        _default_topology(spec.topology)
    spec.metadataStorage = _default_metadata_storage(spec.metadataStorage or MetadataStorage(), name, namespace)
    spec.zookeeperRef = _default_zookeeper(spec.zookeeperRef or ZookeeperRef(), name, namespace)

    if not spec.disableSecurity:
        spec.authSecret = spec.authSecret or SecretReference()
        spec.authSecret.kind = spec.authSecret.kind or "Secret"
        spec.authSecret.name = spec.authSecret.name or auth_secret_name(name)

    if spec.enableSSL:
        spec.keystoreCredSecret = spec.keystoreCredSecret or SecretReference()
        spec.keystoreCredSecret.kind = spec.keystoreCredSecret.kind or "Secret"
        spec.keystoreCredSecret.name = spec.keystoreCredSecret.name or keystore_cred_secret_name(name)
        if spec.tls is not None and spec.tls.issuerRef is not None:
            spec.tls.certificates = with_default_certificates(spec.tls.certificates, name)

    spec.deletionPolicy = spec.deletionPolicy or "Delete"
    hc = spec.healthChecker
    hc.periodSeconds = hc.periodSeconds or 30
    hc.timeoutSeconds = hc.timeoutSeconds or 10
    hc.failureThreshold = hc.failureThreshold or 3
    return db


def with_default_certificates(certificates: list[CertificateSpec] | None, db: str) -> list[CertificateSpec]:
    """kmapi SetMissingSecretNameForCertificate for server and client: keep user entries and
    their order, fill empty secretNames, append missing aliases."""
    certs = [c.model_copy(deep=True) for c in certificates or []]
    for alias in CERT_ALIASES:
        entry = next((c for c in certs if c.alias == alias), None)
        if entry is None:
            certs.append(CertificateSpec(alias=alias, secretName=certificate_name(db, alias)))
        elif not entry.secretName:
            entry.secretName = certificate_name(db, alias)
    return certs


def _default_topology(topology: DruidClusterTopology) -> None:
    # Mandatory node types are created; optional ones (overlords, routers) only keep their
    # model defaults (replicas 1).
    topology.coordinators = topology.coordinators or DruidNode()
    topology.brokers = topology.brokers or DruidNode()
    topology.historicals = topology.historicals or DruidDataNode()
    topology.middleManagers = topology.middleManagers or DruidDataNode()
    for node in (topology.historicals, topology.middleManagers):
        node.storageType = node.storageType or "Durable"
        if node.storageType == "Durable" and node.storage is None:
            node.storage = default_storage()


def _default_metadata_storage(ms: MetadataStorage, db: str, namespace: str | None) -> MetadataStorage:
    if not ms.name:
        # The name is chosen before the type is defaulted, as in KubeDB.
        ms.externallyManaged = False
        ms.name = f"{db}-pg-metadata" if ms.type == "PostgreSQL" else f"{db}-mysql-metadata"
    ms.namespace = ms.namespace or namespace
    ms.linkedDB = ms.linkedDB or "druid"
    if ms.createTables is None:
        ms.createTables = True
    # KubeDB derives the type of an externally managed store from its AppBinding; that
    # needs a lookup, so only the self-managed case is defaulted here.
    if not ms.type and not ms.externallyManaged:
        ms.type = "MySQL"
    if ms.version is None and ms.type:
        ms.version = DEFAULT_POSTGRES_VERSION if ms.type == "PostgreSQL" else DEFAULT_MYSQL_VERSION
    return ms


def _default_zookeeper(zk: ZookeeperRef, db: str, namespace: str | None) -> ZookeeperRef:
    if not zk.name:
        zk.externallyManaged = False
        zk.name = f"{db}-zk"
    zk.namespace = zk.namespace or namespace
    if zk.version is None:
        zk.version = DEFAULT_ZOOKEEPER_VERSION
    return zk
