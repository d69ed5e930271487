"""Where a local control plane keeps its state, and the command line of each component. Pure: no I/O (but for
finding this environment's interpreter)."""

from __future__ import annotations

import ipaddress
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

SERVICE_CIDR = "10.96.0.0/16"  # a kwok plane's Services: nothing routes them (kwok runs no kube-proxy)
# A real-node plane's Services, routed to its bridge: a range of their own, so that kwok planes running beside it on
# the same machine (make test) never reach the node's kube-proxy rules with their ClusterIPs.
REAL_NODE_SERVICE_CIDR = "10.97.0.0/16"
POD_CIDR = "10.244.0.0/16"
CERT_MANAGER_NAMESPACE = "cert-manager"
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_NODE_COUNT = 3

# Start order; `dev down` stops them in reverse. A plane with a real node runs neither kwok nor kwok's claim binder
# (node.py adds the node's own components after these, its volume provisioner among them).
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "kwok-volumes",
              "cert-manager")
REAL_NODE_PLANE_COMPONENTS = tuple(c for c in COMPONENTS if c not in ("kwok", "kwok-volumes"))


def default_state_dir() -> Path:
    if env := os.environ.get("KUBEDRUID_DEV_DIR"):
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return Path(base) / "kubedruid" / "dev"


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int
    cert_manager_healthz: int
    kwok_volumes_health: int


@dataclass(frozen=True)
class Binaries:
    k8s: Path  # kube-apiserver, kube-controller-manager, kube-scheduler, kubectl
    etcd: Path
    kwok: Path | None  # None for a plane with a real node
    cert_manager: Path

    def kubectl(self) -> Path:
        return self.k8s / "kubectl"


@dataclass(frozen=True)
class PlaneLayout:
    state_dir: Path
    ports: Ports
    pod_ready_delay_ms: int = 1000
    real_node: bool = False  # one real kubelet instead of kwok's fake nodes (node.py)

    @property
    def components(self) -> tuple[str, ...]:
        return REAL_NODE_PLANE_COMPONENTS if self.real_node else COMPONENTS

    @property
    def service_cidr(self) -> str:
        return REAL_NODE_SERVICE_CIDR if self.real_node else SERVICE_CIDR

    @property
    def first_service_ip(self) -> str:
        """The `kubernetes` Service's ClusterIP, which the apiserver's certificate names."""
        return str(ipaddress.ip_network(self.service_cidr)[1])

    @property
    def pki(self) -> Path:
        return self.state_dir / "pki"

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "admin.kubeconfig"

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    @property
    def run(self) -> Path:
        return self.state_dir / "run"

    @property
    def kwok_config(self) -> Path:
        return self.state_dir / "kwok.yaml"

    def log_file(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    def pid_file(self, component: str) -> Path:
        return self.run / f"{component}.pid"

    @property
    def apiserver_url(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"

    def to_json(self) -> dict:
        return {"ports": asdict(self.ports), "pod_ready_delay_ms": self.pod_ready_delay_ms,
                "real_node": self.real_node}

    @classmethod
    def from_json(cls, state_dir: Path, data: dict) -> "PlaneLayout":
        return cls(state_dir, Ports(**data["ports"]), data.get("pod_ready_delay_ms", 1000),
                   data.get("real_node", False))


def python() -> str:
    """This environment's interpreter under one name: `.venv/bin/python` (pytest) and `.venv/bin/python3.11` (the
    kubedruid script) are the same, and a different name in the command line made `dev up` restart the component."""
    named = Path(sys.prefix) / "bin" / "python3"
    return str(named) if named.exists() else sys.executable


def command(component: str, layout: PlaneLayout, bins: Binaries) -> list[str]:
    """The argv that starts one component; every listener is bound to loopback."""
    p, pki, kc = layout.ports, layout.pki, str(layout.kubeconfig)
    if component == "etcd":
        return [
            str(bins.etcd / "etcd"), "--name=kubedruid-dev", f"--data-dir={layout.state_dir / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{p.etcd_client}",
            f"--advertise-client-urls=http://127.0.0.1:{p.etcd_client}",
            f"--listen-peer-urls=http://127.0.0.1:{p.etcd_peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{p.etcd_peer}",
            f"--initial-cluster=kubedruid-dev=http://127.0.0.1:{p.etcd_peer}",
            "--unsafe-no-fsync=true", "--quota-backend-bytes=8589934592",
        ]
    if component == "kube-apiserver":
        return [
            str(bins.k8s / "kube-apiserver"), f"--etcd-servers=http://127.0.0.1:{p.etcd_client}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={p.apiserver}",
            f"--cert-dir={pki}", f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}", f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-cluster-ip-range={layout.service_cidr}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--authorization-mode={'Node,RBAC' if layout.real_node else 'RBAC'}", "--allow-privileged=true", "--tls-min-version=VersionTLS12",
            "--enable-priority-and-fairness=false",
            # Webhooks and aggregated APIs behind a Service are called at a ready endpoint of it, as a Service is
            # reached in the cluster, not at its ClusterIP: a kwok plane has no kube-proxy to route that.
            "--enable-aggregator-routing=true",
        ] + (_real_node_apiserver_flags(layout) if layout.real_node else [])
    if component == "kube-controller-manager":
        return [
            str(bins.k8s / "kube-controller-manager"), f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}", "--leader-elect=false", "--bind-address=127.0.0.1",
            f"--secure-port={p.controller_manager}", f"--cert-dir={layout.state_dir / 'kcm-certs'}",
            f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={pki / 'ca.crt'}",
            "--use-service-account-credentials=true", f"--service-cluster-ip-range={layout.service_cidr}",
            "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-route",
            "--concurrent-gc-syncs=20", "--kube-api-qps=100", "--kube-api-burst=200",
        ]
    if component == "kube-scheduler":
        return [
            str(bins.k8s / "kube-scheduler"), f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}", "--leader-elect=false", "--bind-address=127.0.0.1",
            f"--secure-port={p.scheduler}", f"--cert-dir={layout.state_dir / 'scheduler-certs'}",
            "--kube-api-qps=200", "--kube-api-burst=400",
        ]
    if component == "kwok":
        return [
            str(bins.kwok / "kwok"), f"--kubeconfig={kc}", f"--config={layout.kwok_config}",
            "--manage-all-nodes=false", f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
            f"--cidr={POD_CIDR}", "--node-ip=10.0.0.1", "--node-lease-duration-seconds=40",
            f"--server-address=127.0.0.1:{p.kwok}",
        ]
    if component == "kwok-volumes":
        return [python(), "-m", "kubedruid.devcluster.volumes", "--kwok", kc,
                f"--health-address=127.0.0.1:{p.kwok_volumes_health}"]
    if component == "cert-manager":
        return [
            str(bins.cert_manager / "cert-manager-controller"), f"--kubeconfig={kc}",
            f"--cluster-resource-namespace={CERT_MANAGER_NAMESPACE}",
            f"--healthz-listen-address=127.0.0.1:{p.cert_manager_healthz}",
            # Local plane: retry a failed issuance after seconds, not upstream's hour.
            "--certificate-request-minimum-backoff=2s", "--certificate-request-maximum-backoff=30s",
        ]
    raise ValueError(f"unknown component {component!r}")


def _real_node_apiserver_flags(layout: PlaneLayout) -> list[str]:
    """A real kubelet registers as system:node:<name> (Node authorizer) and serves logs/exec to the apiserver,
    which reaches it by its InternalIP (the machine's resolver does not know the node's name)."""
    node_pki = layout.state_dir / "node" / "pki"
    return ["--enable-admission-plugins=NodeRestriction",
            f"--kubelet-client-certificate={node_pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={node_pki / 'apiserver-kubelet-client.key'}",
            "--kubelet-preferred-address-types=InternalIP"]


def health_url(component: str, layout: PlaneLayout) -> str:
    p = layout.ports
    return {
        "etcd": f"http://127.0.0.1:{p.etcd_client}/health",
        "kube-apiserver": f"https://127.0.0.1:{p.apiserver}/readyz",
        "kube-controller-manager": f"https://127.0.0.1:{p.controller_manager}/healthz",
        "kube-scheduler": f"https://127.0.0.1:{p.scheduler}/healthz",
        "kwok": f"http://127.0.0.1:{p.kwok}/healthz",
        "kwok-volumes": f"http://127.0.0.1:{p.kwok_volumes_health}/healthz",
        "cert-manager": f"http://127.0.0.1:{p.cert_manager_healthz}/healthz",
    }[component]


def kubeconfig_yaml(server: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes, name: str = "kubedruid-dev") -> dict:
    import base64

    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)}}],
        "users": [{"name": "admin", "user": {"client-certificate-data": b64(cert_pem), "client-key-data": b64(key_pem)}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": "admin"}}],
        "current-context": name,
    }
