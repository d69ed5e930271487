"""Object names and labels of a Druid's children, as KubeDB names them (spec §2.1, §2.2). Pure."""

from __future__ import annotations

from kubedruid.druid.nodes import NodeType

CLUSTER_DOMAIN = "cluster.local"
ROLE_LABEL = "kubedb.com/role"
DRUID_API = "kubedb.com/v1alpha2"


def selector_labels(db: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "druids.kubedb.com", "app.kubernetes.io/instance": db,
            "app.kubernetes.io/managed-by": "kubedb.com"}


def offshoot_labels(db: str, user_labels: dict[str, str] | None = None) -> dict[str, str]:
    # The Druid's own labels travel to its children, except KubeDB's reserved ones.
    user = {k: v for k, v in (user_labels or {}).items() if "kubedb.com" not in k}
    return {**user, **selector_labels(db), "app.kubernetes.io/component": "database"}


def node_labels(db: str, node: NodeType) -> dict[str, str]:
    return {**selector_labels(db), ROLE_LABEL: node.key}


def petset_name(db: str, node: NodeType) -> str:
    return f"{db}-{node.petset_suffix}"


def governing_service(db: str) -> str:
    return f"{db}-pods"


def primary_service(db: str, node: NodeType) -> str:
    return f"{db}-{node.petset_suffix}"


def stats_service(db: str) -> str:
    """spec.monitor's Service (and the ServiceMonitor of the same name)."""
    return f"{db}-stats"


def pod_fqdn(db: str, namespace: str, pod: str) -> str:
    return f"{pod}.{governing_service(db)}.{namespace}.svc.{CLUSTER_DOMAIN}"


def service_fqdn(service: str, namespace: str) -> str:
    return f"{service}.{namespace}.svc.{CLUSTER_DOMAIN}"


def config_secret(db: str, uid: str) -> str:
    """KubeDB's ConfigSecretName: <db>-<last six characters of the Druid's UID>."""
    return f"{db}-{uid[-6:]}"


def owner_reference(druid: dict) -> dict:
    return {"apiVersion": DRUID_API, "kind": "Druid", "name": druid["metadata"]["name"],
            "uid": druid["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def ca_bundle_secret(db: str) -> str:
    """The CAs the Druid trusts (certs/bundle.py), for its nodes and for its clients."""
    return f"{db}-ca-bundle"


def ca_probe(db: str) -> str:
    """The Certificate (and its Secret) that shows the CA of a new issuer before the Druid's own change."""
    return f"{db}-ca-probe"


def zookeeper_service(db: str) -> str:
    return f"{db}-zk"


# The TLS mode a Druid's pods and Services run in while a ReconfigureTLS op moves it between modes (druid/tls.py),
# set by the ops-manager. Absent: the mode the spec declares. Kept after a failed op, so that the provisioner keeps
# the Druid in the mode its pods run in.
TLS_MODE_ANNOTATION = "tls.kubedruid.dev/mode"
# On a pod: the server certificate serial it should serve. Changing it makes the kubelet refresh the pod's Secret
# volumes at once, so a re-issued keystore reaches the keystore sidecar without waiting for the kubelet's resync.
SERIAL_ANNOTATION = "tls.kubedruid.dev/certificate-serial"
